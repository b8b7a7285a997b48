"""bench/doctor: the fault suite. Each fault is planted on a healthy platform, `doctor` runs,
the fault is repaired; five healthy runs are spread among them.

    .venv/bin/python bench/doctor/run.py [--no-platforms] [--only NAME]

Sandbox faults run on a sandbox of the bench's own (bench/doctor/faults.py: redis-server,
SecantusDB --auth, the Node.js backend, light traffic). Platform faults (a crash loop, an OOM
kill, a bad image deployed a minute ago) run on the Kubernetes testbed (scripts/testbed/k8s.sh
and its node simulator; the same sandbox serves the API and the data beside it) and on a
Compose stack of the bench's own (config/docker-compose.yml, the images as they are tagged:
none is built). bench/doctor/platforms.py has both.

For each run: the top cause doctor names and whether it is the planted one, the exit code
(1 for a fault, 0 healthy), the time to the verdict and the slowest check's own time (the
baseline: checks run at once, so the verdict should come within 1.2x of it), beside the
checks' times added up (what running them one after another takes at least). Targets: top-1
right on >= 95 % of faults, no cause on a healthy platform, time <= 1.2x the slowest check
(+ 0.1 s of thread start) and <= 5 s on the sandbox.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import faults
import platforms

from travellr_ops.ops.doctor import diagnose
from travellr_ops.runtime import Runtime
from travellr_ops.settings import Settings

HEALTHY_RUNS = 5
SANDBOX_BOUND_S = 5.0


@dataclass
class Row:
    platform: str
    fault: str
    expected: str
    top: str
    exit_code: int
    seconds: float
    slowest_s: float
    #: the checks' times added up: the least it takes to run them one after another
    sum_s: float
    also: str

    @property
    def right(self) -> bool:
        want = 0 if self.expected == "-" else 1
        return self.top == self.expected and self.exit_code == want

    @property
    def in_time(self) -> bool:
        bound = max(self.slowest_s * 1.2, self.slowest_s + 0.1)
        return self.seconds <= bound and (
            self.platform != "sandbox" or self.seconds <= SANDBOX_BOUND_S
        )


def doctor(platform: str, name: str, expected: str, settings: Settings, symptom: str | None) -> Row:
    d = diagnose(Runtime(settings), symptom)
    top = d.top.id if d.top else "-"
    also = ", ".join(c.id for c in d.causes[1:4])
    if d.unreachable and not d.causes:
        also = "unknown: " + "; ".join(d.unreachable)
    total = sum(o.seconds for o in d.observations)
    return Row(
        platform, name, expected, top, int(d.exit_code), d.seconds, d.slowest_check_s, total, also
    )


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--no-platforms", action="store_true", help="only the sandbox faults")
    parser.add_argument("--only", help="only faults whose name contains this")
    args = parser.parse_args()
    rows: list[Row] = []
    work = Path(tempfile.mkdtemp(prefix="bench-doctor-"))
    sb = faults.Sandbox(work / "sandbox").start()
    try:
        chosen = [f for f in faults.SANDBOX_FAULTS if not args.only or args.only in f.name]
        if not faults.can_mount():
            chosen = [f for f in chosen if "tmpfs" not in f.name]
        every = max(1, len(chosen) // (HEALTHY_RUNS - 1))
        healthy = 0
        for n, fault in enumerate(chosen):
            if n % every == 0 and healthy < HEALTHY_RUNS:
                rows.append(doctor("sandbox", "healthy", "-", sb.settings(), None))
                healthy += 1
            with sb.planted(fault):
                rows.append(
                    doctor("sandbox", fault.name, fault.expected, sb.settings(), fault.symptom)
                )
            print(_line(rows[-1]), file=sys.stderr, flush=True)
        while healthy < HEALTHY_RUNS:
            rows.append(doctor("sandbox", "healthy", "-", sb.settings(), None))
            healthy += 1
        if not args.no_platforms:
            rows += platforms.k8s_suite(sb, work / "k8s", doctor, args.only)
            rows += platforms.compose_suite(work / "compose", doctor, args.only)
    finally:
        sb.stop()
    _table(rows)
    faults_ = [r for r in rows if r.expected != "-"]
    fine = [r for r in rows if r.expected == "-"]
    right = sum(r.right for r in faults_)
    print(
        f"\nfaults: top-1 right {right}/{len(faults_)} ({right * 100 / max(1, len(faults_)):.0f} %,"
        f" target >= 95 %); healthy runs with no cause {sum(r.right for r in fine)}/{len(fine)};"
        f" within time bound {sum(r.in_time for r in rows)}/{len(rows)}"
    )
    ratio = [r.seconds / r.slowest_s for r in rows if r.slowest_s]
    serial = [r.sum_s / r.seconds for r in rows if r.seconds]
    print(
        f"time to verdict: max {max(r.seconds for r in rows):.2f} s, median ratio to the slowest"
        f" check {sorted(ratio)[len(ratio) // 2]:.2f}x, max {max(ratio):.2f}x; the checks one"
        f" after another would take {sorted(serial)[len(serial) // 2]:.1f}x as long (median)"
    )
    ok = right * 100 >= 95 * len(faults_) and all(r.right for r in fine)
    return 0 if ok else 1


def _line(r: Row) -> str:
    mark = "ok " if r.right else "BAD"
    return (
        f"{mark} {r.platform:8} {r.fault:30} expected {r.expected:22} top {r.top:22}"
        f" exit {r.exit_code} {r.seconds:5.2f} s (slowest check {r.slowest_s:.2f} s) {r.also}"
    )


def _table(rows: list[Row]) -> None:
    print(
        "| platform | fault | expected top cause | doctor's top cause | right | exit |"
        " time s | slowest check s | checks one by one s | in bound |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        right, in_time = ("yes" if ok else "NO" for ok in (r.right, r.in_time))
        print(
            f"| {r.platform} | {r.fault} | {r.expected} | {r.top} | {right} | {r.exit_code} |"
            f" {r.seconds:.2f} | {r.slowest_s:.2f} | {r.sum_s:.2f} | {in_time} |"
        )


if __name__ == "__main__":
    sys.exit(main())
