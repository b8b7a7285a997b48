"""`security db update/status` and the audit against the imported OSV database: OSV exports
built here from OSV-format records, served over HTTP on 127.0.0.1 or given as files; a bad
or cut-off archive never replaces the database; stale data is unknown, not clean; ignores,
dev scope, CVSS severity, the fix plan and SARIF."""

from __future__ import annotations

import hashlib
import json
import os
import re
import threading
import time
import zipfile
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from cli import invoke
from travellr_ops.ops.security.deps import NPM, PYPI, Dependency
from travellr_ops.ops.security.osvdb import OsvDatabase, location
from travellr_ops.settings import Settings

SARIF_SCHEMA = Path(__file__).parent / "data" / "sarif" / "sarif-2.1.0-audit.schema.json"
NOW = datetime.now(UTC)


def record(
    ident: str,
    package: str,
    events: list[dict[str, str]],
    *,
    ecosystem: str = NPM,
    severity: str | None = "HIGH",
    cvss: str | None = None,
    modified: str = "2026-11-20T10:00:00Z",
    range_type: str = "SEMVER",
    aliases: tuple[str, ...] = (),
) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "schema_version": "1.6.0",
        "id": ident,
        "modified": modified,
        "published": "2026-01-01T00:00:00Z",
        "aliases": list(aliases),
        "summary": f"{package} is vulnerable ({ident})",
        "affected": [
            {
                "package": {"ecosystem": ecosystem, "name": package},
                "ranges": [{"type": range_type, "events": events}],
            }
        ],
        "references": [{"type": "ADVISORY", "url": f"https://github.com/advisories/{ident}"}],
    }
    if severity:
        doc["database_specific"] = {"severity": severity}
    if cvss:
        doc["severity"] = [{"type": "CVSS_V3", "score": cvss}]
    return doc


NPM_RECORDS = [
    record("GHSA-lo00-0000-0001", "lodash", [{"introduced": "0"}, {"fixed": "4.17.21"}]),
    # two ranges and an inclusive end
    record(
        "GHSA-mi00-0000-0002",
        "minimist",
        [{"introduced": "0"}, {"fixed": "0.2.4"}, {"introduced": "1.0.0"}, {"fixed": "1.2.6"}],
        severity="CRITICAL",
    ),
    record(
        "GHSA-ms00-0000-0003",
        "ms",
        [{"introduced": "2.0.0"}, {"last_affected": "2.1.1"}],
        severity="MODERATE",
        modified="2026-11-25T08:30:00Z",
    ),
    # no label: rated from its CVSS vector (9.8, critical)
    record(
        "GHSA-cv00-0000-0004",
        "vm2",
        [{"introduced": "0"}, {"fixed": "3.9.18"}],
        severity=None,
        cvss="CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H",
        aliases=("CVE-2026-0004",),
    ),
    # a devDependency's advisory
    record("GHSA-je00-0000-0005", "jest-util", [{"introduced": "0"}, {"fixed": "29.0.0"}]),
]
PYPI_RECORDS = [
    record(
        "PYSEC-2026-1",
        "Requests",
        [{"introduced": "0"}, {"fixed": "2.20.0"}],
        ecosystem=PYPI,
        modified="2026-11-28T00:00:00Z",
    ),
    record(
        "PYSEC-2026-2",
        "pytest",
        [{"introduced": "0"}, {"fixed": "8.0.0"}],
        ecosystem=PYPI,
    ),
]


def osv_zip(
    path: Path,
    records: list[dict[str, Any]],
    *,
    age_days: float = 0,
    method: int = zipfile.ZIP_DEFLATED,
) -> Path:
    """An OSV export as OSV publishes it: one ``<id>.json`` per advisory in one zip."""
    with zipfile.ZipFile(path, "w", method) as zf:
        for rec in records:
            zf.writestr(f"{rec['id']}.json", json.dumps(rec))
    if age_days:
        then = time.time() - age_days * 86400
        os.utime(path, (then, then))
    return path


def backend(tmp_path: Path) -> Path:
    app = tmp_path / "app"
    app.mkdir(exist_ok=True)
    packages = {
        "": {"name": "api", "dependencies": {"lodash": "^4"}, "devDependencies": {"jest": "*"}},
        "node_modules/lodash": {"version": "4.17.20"},
        "node_modules/minimist": {"version": "1.2.5"},
        "node_modules/mkdirp/node_modules/minimist": {"version": "0.2.3"},
        "node_modules/mkdirp": {"version": "0.5.5"},
        "node_modules/ms": {"version": "2.1.1"},
        "node_modules/vm2": {"version": "3.9.17"},
        "node_modules/jest-util": {"version": "28.1.3", "dev": True},
        "node_modules/debug": {"version": "4.3.4", "devOptional": True},
    }
    (app / "package-lock.json").write_text(
        json.dumps({"lockfileVersion": 3, "packages": packages}, indent=2)
    )
    (app / "requirements.txt").write_text("flask==3.0.0\nrequests==2.19.1\n")
    (app / "requirements-dev.txt").write_text("pytest==7.4.0\n")
    return app


def settings(tmp_path: Path, **security: Any) -> Settings:
    security.setdefault("live_audit", False)
    return Settings(platform="none", state_dir=tmp_path / "state", security=security)


def update(tmp_path: Path, *sources: str, **security: Any) -> Any:
    args = [a for s in sources for a in ("--from", s)]
    return invoke(
        "security", "db", "update", *args, "--json", settings=settings(tmp_path, **security)
    )


def audit(tmp_path: Path, *args: str, **security: Any) -> Any:
    return invoke(
        "security",
        "audit",
        "--path",
        str(tmp_path / "app"),
        "--json",
        *args,
        settings=settings(tmp_path, **security),
    )


def findings(doc: dict[str, Any]) -> set[tuple[str, str, str]]:
    return {(f["package"], f["installed"], f["advisory"]) for f in doc["findings"]}


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def imported(tmp_path: Path) -> Path:
    """The backend and both ecosystems imported from files."""
    backend(tmp_path)
    npm = osv_zip(tmp_path / "npm.zip", NPM_RECORDS)
    pypi = osv_zip(tmp_path / "pypi.zip", PYPI_RECORDS)
    res = update(tmp_path, str(npm), str(pypi))
    assert res.exit_code == 0, res.stderr
    return location(tmp_path / "state")


# ------------------------------------------------------------------------ serving exports
class _Exports(BaseHTTPRequestHandler):
    files: dict[str, bytes]
    #: "ok", "404", or "cut" (announce the whole body, send a third, then hang up)
    mode: list[str]
    last_modified: datetime

    def do_GET(self) -> None:
        body = self.files.get(self.path)
        if body is None or self.mode[0] == "404":
            self.send_response(404)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        self.send_response(200)
        self.send_header("Content-Type", "application/zip")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Last-Modified", format_datetime(self.last_modified, usegmt=True))
        self.end_headers()
        if self.mode[0] == "cut":
            self.wfile.write(body[: len(body) // 3])
            self.wfile.flush()
            self.close_connection = True
            return
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def exports(tmp_path: Path) -> Iterator[tuple[str, list[str]]]:
    """OSV's npm and PyPI exports served on 127.0.0.1: (base URL, mode switch)."""
    files = {
        "/npm/all.zip": osv_zip(tmp_path / "served-npm.zip", NPM_RECORDS).read_bytes(),
        "/PyPI/all.zip": osv_zip(tmp_path / "served-pypi.zip", PYPI_RECORDS).read_bytes(),
    }
    mode = ["ok"]
    handler = type(
        "Exports",
        (_Exports,),
        {"files": files, "mode": mode, "last_modified": NOW - timedelta(hours=5)},
    )
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}", mode
    finally:
        server.shutdown()
        server.server_close()


# ------------------------------------------------------------------------------- update
def test_update_from_urls_then_audit_reports_age_and_newest(
    tmp_path: Path, exports: tuple[str, list[str]]
) -> None:
    base, _ = exports
    backend(tmp_path)
    urls = [f"{base}/npm/all.zip", f"{base}/PyPI/all.zip"]
    res = invoke("security", "db", "update", "--json", settings=settings(tmp_path, db_urls=urls))
    assert res.exit_code == 0, res.stderr
    doc = res.json()
    assert {(e["ecosystem"], e["records"]) for e in doc["updated"]} == {(NPM, 5), (PYPI, 2)}
    # the archive's date is the server's Last-Modified: 5 hours ago
    npm = next(e for e in doc["updated"] if e["ecosystem"] == NPM)
    archive = datetime.fromisoformat(npm["archive_date"])
    assert abs((NOW - timedelta(hours=5) - archive).total_seconds()) < 2
    assert npm["newest"] == "2026-11-25T08:30:00+00:00" and npm["source"] == urls[0]
    assert not list((tmp_path / "state" / "osv").glob(".*"))  # no download left behind

    res = audit(tmp_path)
    assert res.exit_code == 1, res.stderr
    audited = res.json()
    assert audited["database"]["stale"] is False
    # the age counts from the archive's date (5 h before this module was loaded)
    age = (datetime.now(UTC) - archive).total_seconds()
    assert age - 60 <= audited["database"]["age_s"] <= age + 5
    assert audited["database"]["newest_record"] == "2026-11-28T00:00:00+00:00"
    human = invoke(
        "security", "audit", "--path", str(tmp_path / "app"), settings=settings(tmp_path)
    )
    # 5h, or 5h and the minutes since this module was loaded
    assert re.search(r"OSV database: 5h(\d+m)? old, newest record 2026-11-28", human.stdout)


def test_boundaries_of_ranges_in_the_imported_database(imported: Path) -> None:
    db = OsvDatabase(imported)

    def hit(name: str, version: str, eco: str = NPM) -> bool:
        return bool(db.match(Dependency(name, version, eco, "x")))

    try:
        # introduced 0 ... fixed: the fixed version is not affected, the one before is
        assert hit("lodash", "0.0.1") and hit("lodash", "4.17.20")
        assert not hit("lodash", "4.17.21") and not hit("lodash", "5.0.0")
        # two ranges: < 0.2.4 and 1.0.0 <= v < 1.2.6, nothing between them
        assert hit("minimist", "0.2.3") and not hit("minimist", "0.2.4")
        assert not hit("minimist", "0.9.9") and hit("minimist", "1.0.0")
        assert hit("minimist", "1.2.5") and not hit("minimist", "1.2.6")
        # last_affected is affected; the next version is not; introduced is inclusive
        assert not hit("ms", "1.9.9") and hit("ms", "2.0.0")
        assert hit("ms", "2.1.1") and not hit("ms", "2.1.2")
        # PyPI names are canonical (the record says "Requests"), PEP 440 order
        assert hit("requests", "2.20.0rc1", PYPI) and not hit("requests", "2.20.0", PYPI)
    finally:
        db.close()


def test_audit_scope_ignores_cvss_and_fix_plan(imported: Path, tmp_path: Path) -> None:
    res = audit(tmp_path)
    assert res.exit_code == 1, res.stderr
    doc = res.json()
    assert findings(doc) == {
        ("lodash", "4.17.20", "GHSA-lo00-0000-0001"),
        ("minimist", "1.2.5", "GHSA-mi00-0000-0002"),
        ("minimist", "0.2.3", "GHSA-mi00-0000-0002"),
        ("ms", "2.1.1", "GHSA-ms00-0000-0003"),
        ("vm2", "3.9.17", "GHSA-cv00-0000-0004"),
        ("requests", "2.19.1", "PYSEC-2026-1"),
    }
    # production scope: jest-util (dev: true) and requirements-dev.txt's pytest left out;
    # devOptional counts as production, as for npm audit --omit=dev
    assert doc["dev_left_out"] == 2 and doc["packages"] == 9
    vm2 = next(f for f in doc["findings"] if f["package"] == "vm2")
    assert vm2["severity"] == "critical" and vm2["cvss_score"] == 9.8
    assert doc["fix_plan"] == {
        "npm": [
            "npm install lodash@4.17.21",
            "npm install minimist@1.2.6",
            "npm install vm2@3.9.18",
        ],
        "npm_overrides": {"minimist": "0.2.4"},
        "pip": ["requests==2.20.0  # in requirements.txt:2"],
    }
    human = invoke(
        "security", "audit", "--path", str(tmp_path / "app"), settings=settings(tmp_path)
    )
    assert "2 dev dependencies left out" in human.stdout
    assert "npm install lodash@4.17.21" in human.stdout

    dev = audit(tmp_path, "--include-dev")
    assert {
        ("jest-util", "28.1.3", "GHSA-je00-0000-0005"),
        ("pytest", "7.4.0", "PYSEC-2026-2"),
    } <= (findings(dev.json()))
    assert dev.json()["dev_left_out"] == 0

    # --level filters on the computed severity too: critical = minimist and vm2
    crit = audit(tmp_path, "--level", "critical").json()
    assert crit["at_level"] == 3
    fixable = audit(tmp_path, "--fixable").json()
    assert findings(fixable) == findings(doc) - {("ms", "2.1.1", "GHSA-ms00-0000-0003")}

    # accept everything at high+ for now: one ignore by alias, one expired, one per package
    later = (NOW + timedelta(days=30)).date().isoformat()
    ignores = [
        {"id": "GHSA-lo00-0000-0001", "reason": "not reachable", "expires": later},
        {"id": "CVE-2026-0004", "reason": "sandbox unused", "expires": later},
        {
            "id": "GHSA-mi00-0000-0002",
            "reason": "argv only",
            "expires": later,
            "package": "minimist",
        },
        {"id": "PYSEC-2026-1", "reason": "was accepted", "expires": "2026-01-01"},
    ]
    res = audit(tmp_path, ignore=ignores)
    assert res.exit_code == 1, res.stderr
    doc = res.json()
    assert findings(doc) == {
        ("ms", "2.1.1", "GHSA-ms00-0000-0003"),
        ("requests", "2.19.1", "PYSEC-2026-1"),
    }
    assert {(i["package"], i["advisory"], i["reason"]) for i in doc["ignored"]} == {
        ("lodash", "GHSA-lo00-0000-0001", "not reachable"),
        ("vm2", "GHSA-cv00-0000-0004", "sandbox unused"),
        ("minimist", "GHSA-mi00-0000-0002", "argv only"),
    }
    assert len(doc["ignored"]) == 4  # both minimist copies
    expired = [i for i in doc["ignores"] if i["expired"]]
    assert [(i["id"], i["matched"]) for i in expired] == [("PYSEC-2026-1", 1)]
    assert "ignore of PYSEC-2026-1 expired on 2026-01-01 (was accepted)" in res.stderr
    # with the expired one renewed, nothing at high+ remains: exit 0, ignored still listed
    ignores[3]["expires"] = later
    res = audit(tmp_path, ignore=ignores)
    assert res.exit_code == 0, res.stderr
    assert res.json()["status"] == "ok" and len(res.json()["ignored"]) == 5


def test_stale_database_alone_is_unknown_unless_allowed(tmp_path: Path) -> None:
    backend(tmp_path)
    old = osv_zip(tmp_path / "npm.zip", NPM_RECORDS[2:3], age_days=10)  # ms only
    assert update(tmp_path, str(old)).exit_code == 0
    (tmp_path / "app" / "package-lock.json").write_text(
        json.dumps({"lockfileVersion": 3, "packages": {"node_modules/ms": {"version": "1.0.0"}}})
    )
    res = audit(tmp_path)
    assert res.exit_code == 3
    assert res.json()["status"] == "unknown" and res.json()["database"]["stale"] is True
    assert "the OSV database is stale: 1w3d old, more than 1w" in res.stderr
    assert "only source that answered is a stale database" in res.stderr
    assert audit(tmp_path, "--allow-stale").exit_code == 0
    assert audit(tmp_path, "--max-age", "2w").exit_code == 0
    assert audit(tmp_path, db_max_age_days=30).exit_code == 0
    assert audit(tmp_path, "--max-age", "soon").exit_code == 2
    # a finding in stale data is still a finding (ms's advisory is moderate)
    (tmp_path / "app" / "package-lock.json").write_text(
        json.dumps({"lockfileVersion": 3, "packages": {"node_modules/ms": {"version": "2.1.0"}}})
    )
    assert audit(tmp_path, "--level", "moderate").exit_code == 1
    status = invoke("security", "db", "status", "--json", settings=settings(tmp_path))
    assert status.exit_code == 1 and status.json()["verdict"] == "warn"
    empty = invoke("security", "db", "status", settings=settings(tmp_path / "other"))
    assert empty.exit_code == 3 and "no OSV database" in empty.stdout


def test_an_update_of_one_ecosystem_keeps_the_other(imported: Path, tmp_path: Path) -> None:
    newer = [*NPM_RECORDS[:1], record("GHSA-ax00-0000-0009", "axios", [{"introduced": "0"}])]
    reading = OsvDatabase(imported)  # an audit that opened the database before the update
    # stored, not deflated: read as well
    res = update(tmp_path, str(osv_zip(tmp_path / "npm2.zip", newer, method=zipfile.ZIP_STORED)))
    assert res.exit_code == 0, res.stderr
    doc = res.json()
    assert [(e["ecosystem"], e["records"]) for e in doc["updated"]] == [(NPM, 2)]
    assert [(e["ecosystem"], e["records"]) for e in doc["kept"]] == [(PYPI, 2)]
    # it goes on reading the whole old database; a new reader sees the new one
    try:
        assert reading.match(Dependency("minimist", "1.2.5", NPM, "x"))
        assert not reading.match(Dependency("axios", "1.0.0", NPM, "x"))
    finally:
        reading.close()
    fresh = OsvDatabase(imported)
    try:
        assert fresh.match(Dependency("axios", "1.0.0", NPM, "x"))
        assert not fresh.match(Dependency("minimist", "1.2.5", NPM, "x"))
    finally:
        fresh.close()
    got = findings(audit(tmp_path).json())
    assert ("requests", "2.19.1", "PYSEC-2026-1") in got
    assert ("lodash", "4.17.20", "GHSA-lo00-0000-0001") in got
    assert ("minimist", "1.2.5", "GHSA-mi00-0000-0002") not in got  # npm was replaced


# ------------------------------------------------------------------- bad input and faults
def test_bad_archives_keep_the_previous_database(
    imported: Path, tmp_path: Path, exports: tuple[str, list[str]]
) -> None:
    before = digest(imported)
    good = osv_zip(tmp_path / "good.zip", NPM_RECORDS).read_bytes()

    (tmp_path / "text.zip").write_text("this is not a zip")
    res = update(tmp_path, str(tmp_path / "text.zip"))
    assert res.exit_code == 2 and "is not a readable zip archive" in res.stderr

    (tmp_path / "cut.zip").write_bytes(good[: len(good) // 2])
    res = update(tmp_path, str(tmp_path / "cut.zip"))
    assert res.exit_code == 2 and "not a readable zip archive" in res.stderr

    with zipfile.ZipFile(tmp_path / "other.zip", "w") as zf:
        zf.writestr("README", "an npm package")
        zf.writestr("package.json", '{"name": "x"}')
    res = update(tmp_path, str(tmp_path / "other.zip"))
    assert res.exit_code == 2
    assert "is not an OSV archive: none of its 1 JSON files is an OSV record" in res.stderr

    strange = record("GHSA-gi00-0000-0007", "left-pad", [{"introduced": "0"}], range_type="HG")
    broken = dict(record("GHSA-mo00-0000-0008", "moment", [{"introduced": "0"}]), modified=7)
    mixed = osv_zip(tmp_path / "mixed.zip", [*NPM_RECORDS, strange, broken])
    res = update(tmp_path, str(mixed))
    assert res.exit_code == 2
    assert (
        "2 bad record(s): GHSA-gi00-0000-0007.json: GHSA-gi00-0000-0007: unknown range type 'HG'"
        in (res.stderr.replace("\n", " "))
    )
    assert "GHSA-mo00-0000-0008: no modified time" in res.stderr

    base, mode = exports
    mode[0] = "cut"
    res = update(tmp_path, f"{base}/npm/all.zip")
    assert res.exit_code == 3 and "cannot download" in res.stderr
    mode[0] = "404"
    res = update(tmp_path, f"{base}/npm/all.zip")
    assert res.exit_code == 3 and "answered HTTP 404" in res.stderr
    assert update(tmp_path, str(tmp_path / "missing.zip")).exit_code == 2

    assert digest(imported) == before
    assert sorted(p.name for p in imported.parent.iterdir()) == ["advisories.sqlite"]
    assert audit(tmp_path).exit_code == 1  # the previous database still answers


def test_ignore_without_reason_or_expiry_is_refused(tmp_path: Path) -> None:
    backend(tmp_path)
    config = tmp_path / "travellr-ops.toml"
    config.write_text(
        "[[security.ignore]]\nid = 'GHSA-lo00-0000-0001'\nexpires = 2027-01-01\n"
        "[[security.ignore]]\nid = 'GHSA-mi00-0000-0002'\nreason = '  '\n"
    )
    for args in (["config", "validate"], ["security", "audit", "--path", str(tmp_path / "app")]):
        res = invoke("--config", str(config), *args)
        assert res.exit_code == 2, res.stderr
        assert "security.ignore.0.reason: Field required" in res.stderr
        assert "security.ignore.1.reason" in res.stderr
        assert "security.ignore.1.expires: Field required" in res.stderr


# ------------------------------------------------------------------------------- SARIF
def test_sarif_validates_and_marks_ignored_as_suppressed(imported: Path, tmp_path: Path) -> None:
    import jsonschema

    later = (NOW + timedelta(days=3)).date().isoformat()
    ignores = [{"id": "GHSA-lo00-0000-0001", "reason": "not reachable", "expires": later}]
    out = tmp_path / "audit.sarif"
    res = audit(tmp_path, "--sarif", str(out), ignore=ignores)
    assert res.exit_code == 1 and res.json()["status"] == "vulnerable"
    sarif = json.loads(out.read_text())
    schema = json.loads(SARIF_SCHEMA.read_text())
    jsonschema.Draft7Validator.check_schema(schema)
    jsonschema.validate(sarif, schema, cls=jsonschema.Draft7Validator)

    assert sarif["version"] == "2.1.0"
    (run,) = sarif["runs"]
    driver = run["tool"]["driver"]
    assert driver["name"] == "travellr-ops security audit"
    rules = {r["id"]: r for r in driver["rules"]}
    assert rules["GHSA-cv00-0000-0004"]["properties"]["security-severity"] == "9.8"
    assert rules["GHSA-lo00-0000-0001"]["properties"]["security-severity"] == "7.0"
    by_rule: dict[str, list[dict[str, Any]]] = {}
    for result in run["results"]:
        assert result["ruleId"] in rules and result["message"]["text"]
        assert result["level"] in ("error", "warning", "note")
        by_rule.setdefault(result["ruleId"], []).append(result)
    (lodash,) = by_rule["GHSA-lo00-0000-0001"]
    assert lodash["suppressions"] == [
        {
            "kind": "external",
            "status": "accepted",
            "justification": f"not reachable (until {later})",
        }
    ]
    assert "suppressions" not in by_rule["GHSA-ms00-0000-0003"][0]
    assert by_rule["GHSA-ms00-0000-0003"][0]["level"] == "warning"
    # located at the lockfile line that installs the copy, the requirements line of a pin
    place = lodash["locations"][0]["physicalLocation"]
    lock = (tmp_path / "app" / "package-lock.json").read_text().splitlines()
    assert lock[place["region"]["startLine"] - 1].strip().startswith('"node_modules/lodash"')
    assert place["artifactLocation"]["uri"].endswith("app/package-lock.json")
    (requests,) = by_rule["PYSEC-2026-1"]
    req = requests["locations"][0]["physicalLocation"]
    assert req["artifactLocation"]["uri"].endswith("app/requirements.txt")
    assert req["region"] == {"startLine": 2}

    stdout = audit(tmp_path, "--format", "sarif", ignore=ignores)
    assert stdout.exit_code == 1
    assert json.loads(stdout.stdout) == sarif
    bad = audit(tmp_path, "--sarif", str(tmp_path / "no" / "such" / "dir.sarif"))
    assert bad.exit_code == 2 and "cannot write the SARIF file" in bad.stderr


def test_sarif_schema_catches_what_code_scanning_needs() -> None:
    """The vendored schema refuses the mistakes an upload would refuse."""
    import jsonschema

    schema = json.loads(SARIF_SCHEMA.read_text())
    ok = {
        "version": "2.1.0",
        "runs": [
            {
                "tool": {"driver": {"name": "t", "rules": [{"id": "R"}]}},
                "results": [{"ruleId": "R", "level": "error", "message": {"text": "m"}}],
            }
        ],
    }
    jsonschema.validate(ok, schema)
    for broken in (
        {**ok, "version": "2.0.0"},
        {"version": "2.1.0", "runs": [{"tool": {"driver": {}}}]},
        {"version": "2.1.0", "runs": [{"tool": {"driver": {"name": "t"}}, "results": [{}]}]},
        {
            "version": "2.1.0",
            "runs": [
                {
                    "tool": {"driver": {"name": "t"}},
                    "results": [{"message": {"text": "m"}, "level": "high"}],
                }
            ],
        },
    ):
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(broken, schema)
