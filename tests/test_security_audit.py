"""`security audit`: the sandbox backend's real lockfile against real published advisories
(tests/data/osv), the live npm audit through a stand-in registry on 127.0.0.1, and the
"unknown, never clean" rule."""

from __future__ import annotations

import json
import shutil
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from cli import invoke
from fixtures_servers import REPO
from servers import need
from travellr_ops.ops.security.deps import NPM, PYPI, Dependency, npm_lock, requirements
from travellr_ops.ops.security.osv import load
from travellr_ops.settings import Settings

SANDBOX = REPO / "scripts" / "sandbox"
OSV = Path(__file__).parent / "data" / "osv"

SANDBOX_FINDINGS = {
    ("lodash", "4.17.20", "GHSA-35jh-r3h4-6jhm", "4.17.21", "high"),
    ("minimist", "1.2.5", "GHSA-xvch-5gv4-984h", "1.2.6", "critical"),
    ("jsonwebtoken", "8.5.1", "GHSA-27h2-hvpr-p74q", "9.0.0", "high"),
}


class _Registry(BaseHTTPRequestHandler):
    """The npm registry as this machine sees it: the advisory endpoints answer 405."""

    posts: list[str]

    def do_POST(self) -> None:
        self.posts.append(self.path)
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.send_response(405)
        self.send_header("Allow", "GET,HEAD")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def registry_405(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """npm pointed at a registry on 127.0.0.1 whose audit endpoints refuse (405)."""
    if shutil.which("npm") is None:
        need("npm is not installed (the machine's Node.js ships it)")
    posts: list[str] = []
    handler = type("Registry", (_Registry,), {"posts": posts})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    monkeypatch.setenv("npm_config_registry", f"http://127.0.0.1:{server.server_port}/")
    try:
        yield posts
    finally:
        server.shutdown()
        server.server_close()


def settings(tmp_path: Path, **security: Any) -> Settings:
    return Settings(platform="none", state_dir=tmp_path / "state", security=security)


def found(doc: dict[str, Any]) -> set[tuple[str, str, str, str, str]]:
    return {
        (f["package"], f["installed"], f["advisory"], f["fixed_in"], f["severity"])
        for f in doc["findings"]
    }


def test_sandbox_lock_has_exactly_the_published_advisories(
    tmp_path: Path, registry_405: list[str]
) -> None:
    res = invoke(
        "security",
        "audit",
        "--path",
        str(SANDBOX),
        "--json",
        settings=settings(tmp_path, advisories_dir=OSV),
    )
    assert res.exit_code == 1, res.stderr
    doc = res.json()
    assert found(doc) == SANDBOX_FINDINGS
    # the patched copies in the same lock do not match: minimist 1.2.8 under mkdirp, semver 5.7.3
    assert {f["location"] for f in doc["findings"] if f["package"] == "minimist"} == {
        "node_modules/minimist"
    }
    assert not [f for f in doc["findings"] if f["package"] == "semver"]
    sources = {s["name"]: s["state"] for s in doc["sources"]}
    # npm really asked its audit endpoint, which refused: unknown, while the offline DB counts
    assert registry_405 and sources == {"npm audit": "unknown", "osv-offline": "ok"}
    assert doc["status"] == "vulnerable" and doc["packages"] == 111
    assert "npm audit: unknown" in res.stderr


def test_no_source_answering_is_unknown_exit_3_never_clean(
    tmp_path: Path, registry_405: list[str]
) -> None:
    res = invoke("security", "audit", "--path", str(SANDBOX), "--json", settings=settings(tmp_path))
    assert res.exit_code == 3
    doc = res.json()
    assert doc["status"] == "unknown" and doc["findings"] == []
    assert "no advisory source answered" in res.stderr
    # human output says unknown too, not "0 vulnerabilities"
    human = invoke("security", "audit", "--path", str(SANDBOX), settings=settings(tmp_path))
    assert human.exit_code == 3 and "unknown" in human.stdout


def test_offline_directory_missing_is_unknown(tmp_path: Path) -> None:
    res = invoke(
        "security",
        "audit",
        "--path",
        str(SANDBOX),
        "--offline",
        "--json",
        settings=settings(tmp_path, advisories_dir=tmp_path / "nowhere"),
    )
    assert res.exit_code == 3
    assert res.json()["sources"] == [
        {
            "name": "osv-offline",
            "state": "unknown",
            "detail": f"advisory directory not found: {tmp_path / 'nowhere'}",
            "findings": 0,
        }
    ]


def test_level_and_only_fixable(tmp_path: Path) -> None:
    s = settings(tmp_path, advisories_dir=OSV)
    crit = invoke(
        "security",
        "audit",
        "--path",
        str(SANDBOX),
        "--offline",
        "--level",
        "critical",
        "--json",
        settings=s,
    )
    assert crit.exit_code == 1 and crit.json()["at_level"] == 1
    (tmp_path / "app").mkdir()
    (tmp_path / "app" / "package-lock.json").write_text(
        json.dumps(
            {
                "lockfileVersion": 3,
                "packages": {"": {"name": "x"}, "node_modules/semver": {"version": "7.5.1"}},
            }
        )
    )
    moderate = invoke(
        "security", "audit", "--path", str(tmp_path / "app"), "--offline", "--json", settings=s
    )
    # one moderate finding, below the default level (high): reported, exit 0
    assert moderate.exit_code == 0
    assert found(moderate.json()) == {
        ("semver", "7.5.1", "GHSA-c2qf-rxjj-qqgw", "7.5.2", "moderate")
    }
    assert (
        invoke(
            "security",
            "audit",
            "--path",
            str(tmp_path / "app"),
            "--offline",
            "--level",
            "moderate",
            settings=s,
        ).exit_code
        == 1
    )
    assert invoke("security", "audit", "--level", "severe", settings=s).exit_code == 2


def test_requirements_pinned_matched_by_pep440_unpinned_reported(tmp_path: Path) -> None:
    app = tmp_path / "app"
    app.mkdir()
    (app / "requirements.txt").write_text(
        "# the API's Python helpers\n"
        "Requests==2.19.1 \\\n    --hash=sha256:0000\n"
        "flask>=2  # not pinned\n"
        "-r requirements-dev.txt\n"
    )
    (app / "requirements-dev.txt").write_text("requests==2.20.0\n")
    res = invoke(
        "security",
        "audit",
        "--path",
        str(app),
        "--offline",
        "--json",
        settings=settings(tmp_path, advisories_dir=OSV),
    )
    assert res.exit_code == 1, res.stderr
    doc = res.json()
    assert found(doc) == {("requests", "2.19.1", "GHSA-x84v-xcm2-53pg", "2.20.0", "high")}
    assert doc["unpinned"] == ["requirements.txt:4 flask>=2"]
    assert "not audited (no exact version)" in res.stderr


def test_nothing_to_audit_is_a_usage_error(tmp_path: Path) -> None:
    res = invoke("security", "audit", "--path", str(tmp_path), settings=settings(tmp_path))
    assert res.exit_code == 2 and "nothing to audit" in res.stderr


# ------------------------------------------------------------------------- pure logic
def test_osv_ranges_by_each_ecosystems_rules(tmp_path: Path) -> None:
    db = load(OSV)

    def ids(name: str, version: str, eco: str = NPM) -> set[str]:
        return {f.advisory for f in db.match(Dependency(name, version, eco, "x"))}

    # minimist: two ranges, < 0.2.4 and 1.0.0 - 1.2.5
    assert ids("minimist", "0.2.3") == ids("minimist", "1.0.0") == {"GHSA-xvch-5gv4-984h"}
    assert ids("minimist", "0.2.4") == ids("minimist", "1.2.6") == set()
    assert ids("lodash", "4.17.21") == set() and ids("lodash", "4.17.21-beta.1") != set()
    # PEP 440: 2.20.0rc1 comes before 2.20.0; names are canonicalised
    assert ids("requests", "2.20.0rc1", PYPI) == {"GHSA-x84v-xcm2-53pg"}
    assert ids("requests", "2.20.0.post1", PYPI) == set()
    # a withdrawn record and a broken file never match, and the broken one is reported
    (tmp_path / "w.json").write_text(
        json.dumps(
            {
                **json.loads((OSV / "npm" / "GHSA-35jh-r3h4-6jhm.json").read_text()),
                "withdrawn": "2023-01-01T00:00:00Z",
            }
        )
    )
    (tmp_path / "broken.json").write_text("{")
    other = load(tmp_path)
    assert other.count == 0 and len(other.unreadable) == 1
    last = {
        "ranges": [
            {"type": "SEMVER", "events": [{"introduced": "1.0.0"}, {"last_affected": "1.4.0"}]}
        ]
    }
    from travellr_ops.ops.security.osv import affects

    assert affects(last, NPM, "1.4.0") == (True, "")
    assert affects(last, NPM, "1.4.1") == (False, "")


def test_lockfile_parsing_scoped_nested_links_v1(tmp_path: Path) -> None:
    deps = npm_lock(SANDBOX / "package-lock.json")
    assert ("minimist", "1.2.8", "node_modules/mkdirp/node_modules/minimist") in {
        (d.name, d.version, d.location) for d in deps
    }
    lock = tmp_path / "package-lock.json"
    lock.write_text(
        json.dumps(
            {
                "lockfileVersion": 1,
                "dependencies": {
                    "@babel/core": {
                        "version": "7.0.0",
                        "dev": True,
                        "dependencies": {"json5": {"version": "2.1.0"}},
                    }
                },
            }
        )
    )
    assert [(d.name, d.version, d.location, d.dev) for d in npm_lock(lock)] == [
        ("@babel/core", "7.0.0", "node_modules/@babel/core", True),
        ("json5", "2.1.0", "node_modules/@babel/core/node_modules/json5", False),
    ]
    req = tmp_path / "requirements.txt"
    req.write_text("Django===4.2.1\nnumpy==1.*\n")
    pinned, unpinned = requirements(req)
    assert [(d.name, d.version) for d in pinned] == [("django", "4.2.1")]
    assert unpinned == ["requirements.txt:2 numpy==1.*"]
