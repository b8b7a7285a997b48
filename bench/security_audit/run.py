"""`travellr-ops security db update` and `security audit` on an OSV-sized database, in one run.

Generates --records OSV records (default 200,000, about npm's export) over 50,000 package
names, written as OSV publishes them: one ``<id>.json`` per advisory in one deflated
``all.zip``. Ranges of every kind the matcher handles: introduced/fixed, last_affected, two
ranges, ``introduced: 0``; a fifth of the records have a CVSS vector and no label. Then a
package-lock.json of --packages (default 1,000) packages of those names. In a directory of
its own under /var/tmp (deleted at the end), with the state directory and config inside it:

  baseline  python: zipfile + json.loads of every member (reading the zip, nothing else)
  import    travellr-ops security db update --from all.zip --json
  audit     travellr-ops security audit --path LOCKDIR --offline --json

Each runs --repeat times (default 1), alternating, as its own process (start-up included);
the best of each is compared, in CPU time (user + system of the process, which other work on
a shared machine does not inflate) and, for the record, in wall time. The audit's findings must equal the ones the
generator computed itself, by integer version arithmetic independent of the tool's semver
code, and the import must count every record.

Targets (issue 21): import within 1.5x of the baseline; audit under 1 s.

    .venv/bin/python bench/security_audit/run.py [--records 200000] [--packages 1000]
        [--repeat 1] [--keep]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
NAMES = 50_000
CVSS = "CVSS:3.1/AV:N/AC:L/PR:N/UI:R/S:U/C:H/I:N/A:N"
LABELS = ("LOW", "MODERATE", "HIGH", "CRITICAL")
BASELINE = """
import json, sys, zipfile
count = 0
with zipfile.ZipFile(sys.argv[1]) as zf:
    for info in zf.infolist():
        json.loads(zf.read(info))
        count += 1
print(count)
"""


def name(index: int) -> str:
    return f"pkg-{index % NAMES:05d}"


def ranges(
    index: int,
) -> tuple[list[dict[str, str]], list[tuple[tuple[int, ...], tuple[int, ...], bool]]]:
    """The OSV events of record ``index`` and the same ranges as (start, end, end inclusive)
    integer tuples, for the independent check."""
    minor = (index // NAMES) * 2 % 8
    start = (1, minor, 0)
    if index % 7 == 3:
        end, inclusive = (1, minor, 9), True
        events = [{"introduced": f"1.{minor}.0"}, {"last_affected": f"1.{minor}.9"}]
    else:
        end, inclusive = (1, minor + 1, 0), False
        events = [{"introduced": f"1.{minor}.0"}, {"fixed": f"1.{minor + 1}.0"}]
    spans = [(start, end, inclusive)]
    if index % 10 == 5:
        events = [{"introduced": "0"}, {"fixed": "0.5.0"}, *events]
        spans.append(((0, 0, 0), (0, 5, 0), False))
    return events, spans


def record(index: int) -> dict[str, object]:
    events, _ = ranges(index)
    ident = f"GHSA-bench-{index:07d}"
    doc: dict[str, object] = {
        "schema_version": "1.6.0",
        "id": ident,
        "modified": f"2026-11-{1 + index % 28:02d}T12:00:00Z",
        "published": "2026-01-01T00:00:00Z",
        "aliases": [f"CVE-2026-{index:07d}"],
        "summary": f"{name(index)} allows something it should not ({ident})",
        "details": "Generated for the benchmark. " * 4,
        "affected": [
            {
                "package": {
                    "ecosystem": "npm",
                    "name": name(index),
                    "purl": f"pkg:npm/{name(index)}",
                },
                "ranges": [{"type": "SEMVER", "events": events}],
            }
        ],
        "references": [{"type": "ADVISORY", "url": f"https://github.com/advisories/{ident}"}],
    }
    if index % 5 == 0:
        doc["severity"] = [{"type": "CVSS_V3", "score": CVSS}]
    else:
        doc["database_specific"] = {"severity": LABELS[index % 4], "github_reviewed": True}
    return doc


def write_zip(path: Path, count: int) -> None:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=6) as zf:
        for index in range(count):
            zf.writestr(f"GHSA-bench-{index:07d}.json", json.dumps(record(index), indent=2))


def write_lock(directory: Path, count: int, records: int) -> set[tuple[str, str]]:
    """A lock of ``count`` packages; the (package, advisory) pairs that must be found."""
    packages: dict[str, dict[str, object]] = {"": {"name": "bench"}}
    expected: set[tuple[str, str]] = set()
    step = max(1, NAMES // count)
    for i in range(count):
        n = (i * step) % NAMES
        version = (1, i % 8, i % 10)
        packages[f"node_modules/{name(n)}"] = {"version": ".".join(map(str, version))}
        for index in range(n, records, NAMES):
            for start, end, inclusive in ranges(index)[1]:
                if start <= version and (version <= end if inclusive else version < end):
                    expected.add((name(n), f"GHSA-bench-{index:07d}"))
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "package-lock.json").write_text(
        json.dumps({"lockfileVersion": 3, "packages": packages}, indent=1)
    )
    return expected


class Timing:
    def __init__(self) -> None:
        self.cpu = float("inf")
        self.wall = float("inf")

    def __str__(self) -> str:
        return f"{self.cpu:.2f} s CPU ({self.wall:.2f} s wall)"


def timed(
    argv: list[str], env: dict[str, str], cwd: Path, into: Timing
) -> subprocess.CompletedProcess[str]:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    proc = subprocess.run(argv, env=env, cwd=cwd, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    into.cpu, into.wall = min(into.cpu, cpu), min(into.wall, wall)
    return proc


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--records", type=int, default=200_000)
    parser.add_argument("--packages", type=int, default=1_000)
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--keep", action="store_true", help="keep the generated files")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="travellr-bench-osv-", dir="/var/tmp"))
    try:
        archive = work / "all.zip"
        started = time.perf_counter()
        write_zip(archive, args.records)
        expected = write_lock(work / "app", args.packages, args.records)
        print(
            f"generated {args.records:,} records ({archive.stat().st_size / 1e6:.1f} MB zip) and"
            f" a {args.packages:,}-package lock in {time.perf_counter() - started:.1f} s;"
            f" {len(expected)} findings expected"
        )
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(work),
            "XDG_CONFIG_HOME": str(work / "config"),
            "PYTHONPATH": os.pathsep.join(
                filter(None, [str(ROOT / "src"), os.environ.get("PYTHONPATH")])
            ),
            "TRAVELLR_PLATFORM": "none",
            "TRAVELLR_STATE_DIR": str(work / "state"),
            "TRAVELLR_SECURITY__LIVE_AUDIT": "false",
        }
        tool = [sys.executable, "-m", "travellr_ops"]
        baseline, imported, audited = Timing(), Timing(), Timing()
        for _ in range(args.repeat):
            proc = timed([sys.executable, "-c", BASELINE, str(archive)], env, work, baseline)
            assert proc.returncode == 0 and int(proc.stdout) == args.records, proc.stderr

            update = [*tool, "security", "db", "update", "--from", str(archive), "--json"]
            proc = timed(update, env, work, imported)
            assert proc.returncode == 0, proc.stderr
            (npm,) = json.loads(proc.stdout)["updated"]
            assert npm["records"] == args.records, npm

            audit = [*tool, "security", "audit", "--path", str(work / "app"), "--offline"]
            proc = timed([*audit, "--json", "--level", "critical"], env, work, audited)
            assert proc.returncode in (0, 1), proc.stderr
            doc = json.loads(proc.stdout)
            found = {(f["package"], f["advisory"]) for f in doc["findings"]}
            assert found == expected, (len(found), len(expected))
            assert doc["packages"] == args.packages and doc["database"]["stale"] is False

        ratio = imported.cpu / baseline.cpu
        print(f"baseline  zipfile + json.loads of {args.records:,} members: {baseline}")
        print(
            f"import    security db update --from all.zip: {imported}"
            f"  {ratio:.2f}x the baseline's CPU (target <= 1.5x)"
        )
        print(
            f"audit     {args.packages:,} packages, {len(expected)} findings: {audited}"
            "  (target < 1 s)"
        )
        ok = ratio <= 1.5 and audited.cpu < 1.0
        print("PASS" if ok else "FAIL")
        return 0 if ok else 1
    finally:
        if args.keep:
            print(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
