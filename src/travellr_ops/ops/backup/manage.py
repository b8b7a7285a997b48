"""`backup list`, `backup verify`, `backup clean`, and the node_exporter metrics file."""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from travellr_ops.adapters.mongo_dump import MongoDump
from travellr_ops.errors import TravellrError, UsageError
from travellr_ops.ops.backup import archive, drills, store
from travellr_ops.ops.backup.objectives import Window, describe, recoverable_window
from travellr_ops.output import ProgressFactory
from travellr_ops.safety import Change, Guard
from travellr_ops.settings import Settings
from travellr_ops.store import Store

if TYPE_CHECKING:
    from travellr_ops.prometheus import Gauge

T = TypeVar("T")


@dataclass
class BackupRow:
    name: str
    time: str
    age_hours: float
    size: int
    collections: int
    documents: int
    status: str  # complete | unreadable
    verified_at: str | None
    verify_result: str | None
    consistent_at: str | None
    pitr: bool  # taken with an oplog (can be rolled forward)
    over_retention: bool
    #: the newest restore test of this backup (`backup verify --restore-test`): when, how
    #: long the restore took, and whether it matched the manifest
    restore_tested_at: str | None = None
    restore_test_s: float | None = None
    restore_test_ok: bool | None = None
    #: the newest moment this backup restores to (rolled forward by the oplog archive)
    reaches: str | None = None


@dataclass
class BackupList:
    directory: Path
    backups: list[BackupRow]
    #: the newest backup is older than backup.max_age_hours (or there is none)
    gap: bool
    newest_age_hours: float | None
    unfinished: list[str]
    oplog_archive: dict[str, object] | None
    #: the recoverable window, its gaps, and the RPO now
    window: Window | None = None
    warnings: list[str] = field(default_factory=list)


def list_backups(
    settings: Settings,
    now: datetime | None = None,
    restore_tests: Mapping[str, drills.RestoreTest] | None = None,
) -> BackupList:
    """The backups, the oplog archive and the recoverable window; ``restore_tests`` (each
    backup's newest, from the store) fills in when each was last restore-tested."""
    now = now or datetime.now(UTC)
    cutoff = now - timedelta(days=settings.backup.retention_days)
    rows: list[BackupRow] = []
    for path, manifest in store.backups(settings.backup.dir):
        taken = store.time_of(path.name)
        age = round((now - taken).total_seconds() / 3600, 2)
        if manifest is None:
            rows.append(
                BackupRow(path.name, taken.isoformat(), age, 0, 0, 0, "unreadable", None, None,
                          None, False, taken < cutoff)
            )  # fmt: skip
            continue
        rows.append(
            BackupRow(
                name=path.name,
                time=taken.isoformat(),
                age_hours=age,
                size=manifest.size,
                collections=len(manifest.collections),
                documents=manifest.documents,
                status=manifest.status,
                verified_at=manifest.verified_at,
                verify_result=manifest.verify_result,
                consistent_at=manifest.consistent_at.isoformat(),
                pitr=manifest.oplog is not None,
                over_retention=taken < cutoff,
            )
        )
    good = [r for r in rows if r.status == "complete"]
    newest_age = good[-1].age_hours if good else None
    gap = newest_age is None or newest_age > settings.backup.max_age_hours
    warnings = []
    if newest_age is None:
        warnings.append("there is no backup at all")
    elif gap:
        warnings.append(f"the newest backup is {newest_age:.1f} h old: daily backups are missing")
    unfinished = [p.name for p in store.leftovers(settings.backup.dir)]
    if unfinished:
        warnings.append(
            f"{len(unfinished)} unfinished backup(s) left over: `backup clean` removes them"
        )
    state = archive.read_state(archive.archive_dir(settings))
    oplog_info: dict[str, object] | None = None
    if state is not None:
        reach = max(state.covered_to[0], state.covered_wall)
        oplog_info = {
            "files": len(state.files),
            "covered_to": datetime.fromtimestamp(reach, UTC).isoformat(),
            "lag_s": round(now.timestamp() - reach, 1),
            "gaps": len(state.gaps),
        }
    window = recoverable_window(settings, now)
    for row in rows:
        stretch = window.reach_of(row.name)
        if stretch is not None:
            row.reaches = datetime.fromtimestamp(stretch.end, UTC).isoformat(timespec="seconds")
        test = (restore_tests or {}).get(row.name)
        if test is not None:
            row.restore_tested_at, row.restore_test_s = test.at, test.seconds
            row.restore_test_ok = test.ok
    if window.rpo_breach:
        warnings.append(
            f"RPO breach: {describe(window)}; a crash now loses {window.rpo_s:g} s of writes"
            " (is `backup oplog-archive` running?)"
        )
    listing = BackupList(
        settings.backup.dir, rows, gap, newest_age, unfinished, oplog_info, window, warnings
    )
    return listing


# -- verify ---------------------------------------------------------------------------------


@dataclass
class VerifyResult:
    name: str
    ok: bool
    files_checked: int
    problems: list[str]
    restore_test: dict[str, object] | None
    verified_at: str
    #: how the backup was chosen: "named", "latest" or "random"
    picked: str = "named"


def pick_random(settings: Settings) -> str:
    """One of the whole backups in the directory, each as likely (restic's `check
    --read-data-subset` spirit: over many runs every retained backup gets restored)."""
    whole = [
        path.name
        for path, manifest in store.backups(settings.backup.dir)
        if manifest is not None and manifest.status == "complete"
    ]
    if not whole:
        raise UsageError(
            f"no whole backup in {settings.backup.dir} to pick from",
            hint="create one: `backup create`",
        )
    return secrets.choice(whole)


def verify(
    settings: Settings,
    name: str | None,
    *,
    restore_test: bool,
    dump: Callable[[], MongoDump],
    progress: ProgressFactory,
    history: Store | None = None,
) -> VerifyResult:
    """Verify backup ``name`` ("latest"; None: one picked at random). A restore test is
    recorded in ``history`` (when given) with its time and duration."""
    from travellr_ops.ops.backup.create import choose_parallelism
    from travellr_ops.ops.backup.restore import check_files, restore_data

    picked = "random" if name is None else ("latest" if name == "latest" else "named")
    path = store.resolve(settings.backup.dir, pick_random(settings) if name is None else name)
    name = path.name  # "latest" names the backup it found
    manifest = store.read_manifest(path)
    problems = check_files(path, manifest, decompress=True)
    test: dict[str, object] | None = None
    if restore_test and not problems:
        mongo = dump()
        scratch = f"{manifest.database}_verify_{secrets.token_hex(4)}"[:63]
        started = time.monotonic()
        restore_s: float | None = None
        try:
            workers = choose_parallelism(settings, mongo).workers
            restore_data(mongo, path, manifest.collections, scratch, workers, progress=progress)
            restore_s = round(time.monotonic() - started, 2)
            for entry in manifest.collections:
                count = mongo.count(scratch, entry.name)
                if count != entry.documents:
                    problems.append(
                        f"{entry.name}: {count} documents restored, manifest says {entry.documents}"
                    )
                indexes = mongo.index_names(scratch, entry.name)
                if indexes != sorted(entry.indexes):
                    problems.append(
                        f"{entry.name}: indexes {indexes} restored, manifest says {entry.indexes}"
                    )
        except TravellrError as exc:
            problems.append(f"restore test failed: {exc.message}")
        finally:
            mongo.drop_database(scratch)
        test = {
            "database": scratch,
            "seconds": round(time.monotonic() - started, 2),
            "restore_s": restore_s,
        }
        if history is not None:
            drills.record(
                history,
                drills.RestoreTest(
                    time.time(),
                    name,
                    not problems,
                    restore_s if restore_s is not None else round(time.monotonic() - started, 2),
                    manifest.documents,
                    picked,
                    "; ".join(problems),
                ),
            )
    verified_at = datetime.now(UTC).isoformat(timespec="seconds")
    manifest.verified_at = verified_at
    manifest.verify_result = (
        "fail" if problems else ("restore-test ok" if restore_test else "checksums ok")
    )
    store.write_manifest(path, manifest)
    return VerifyResult(
        name, not problems, len(manifest.files), problems, test, verified_at, picked
    )


# -- clean ----------------------------------------------------------------------------------


@dataclass
class CleanPlan:
    delete: list[str]
    keep: dict[str, str]  # name -> why kept
    leftovers: list[str]
    archive_files: list[str]
    freed_bytes: int
    dry_run: bool = False
    done: bool = False


def plan_clean(
    settings: Settings, keep_days: int, keep_last: int, now: datetime | None = None
) -> CleanPlan:
    now = now or datetime.now(UTC)
    cutoff = now - timedelta(days=keep_days)
    found = store.backups(settings.backup.dir)
    good = [(p, m) for p, m in found if m is not None and m.status == "complete"]
    keep: dict[str, str] = {}
    for path, _ in good[-keep_last:] if keep_last > 0 else []:
        keep[path.name] = f"one of the newest {keep_last}"
    verified = [p for p, m in good if m.verify_result and m.verify_result != "fail"]
    if verified:
        keep.setdefault(verified[-1].name, "the newest verified backup")
    # Recovering to the oldest moment still inside the retention needs the newest backup
    # taken before it, rolled forward by the archived oplog.
    state = archive.read_state(archive.archive_dir(settings))
    older = [(p, m) for p, m in good if store.time_of(p.name) < cutoff and m.oplog is not None]
    if state is not None and older:
        base_path, base = older[-1]
        if base.oplog is not None and state.since <= base.oplog.end:
            keep.setdefault(base_path.name, "the base of the point-in-time window")
    for path, _ in found:
        if path.name not in keep and store.time_of(path.name) >= cutoff:
            keep[path.name] = f"newer than {keep_days} days"
    delete = [p for p, _ in found if p.name not in keep]
    freed = sum(m.size for p, m in found if p.name not in keep and m is not None)
    kept = [m for p, m in good if p.name in keep and m.oplog is not None]
    archive_files: list[Path] = []
    if kept and kept[0].oplog is not None:
        archive_files = archive.prune(settings, kept[0].oplog.end)
    return CleanPlan(
        delete=[p.name for p in delete],
        keep=keep,
        leftovers=[p.name for p in store.leftovers(settings.backup.dir)],
        archive_files=[p.name for p in archive_files],
        freed_bytes=freed,
    )


def clean(
    settings: Settings, guard: Guard, keep_days: int | None, keep_last: int | None
) -> CleanPlan:
    days = settings.backup.retention_days if keep_days is None else keep_days
    last = settings.backup.keep_last if keep_last is None else keep_last
    # The backup lock: a backup being written now is not a leftover.
    with guard.lock("backup"):
        plan = plan_clean(settings, days, last)
        if not (plan.delete or plan.leftovers or plan.archive_files):
            plan.done = True
            return plan
        details = [f"delete {n}" for n in plan.delete]
        details += [f"remove unfinished {n}" for n in plan.leftovers]
        details += [f"delete archived oplog {n}" for n in plan.archive_files]
        details += [f"keep {n}: {why}" for n, why in sorted(plan.keep.items())]
        change = Change(
            action="backup clean",
            summary=f"delete {len(plan.delete)} backup(s) older than {days} days"
            f" and {len(plan.leftovers)} unfinished one(s) in {settings.backup.dir}",
            details=details,
            target=str(settings.backup.dir),
        )
        # deleting backups destroys what a recovery may need: --read-only refuses it too
        with guard.mutation(change) as proceed:
            if not proceed:
                plan.dry_run = True
                return plan
            for name in plan.delete + plan.leftovers:
                store.remove_tree(settings.backup.dir / name)
            removed = [archive.archive_dir(settings) / n for n in plan.archive_files]
            for path in removed:
                path.unlink(missing_ok=True)
            archive.forget(settings, removed)
            store.fsync_dir(settings.backup.dir)
            plan.done = True
    return plan


# -- metrics --------------------------------------------------------------------------------


RestoreTests = Callable[[], Mapping[str, drills.RestoreTest]]


def metered(
    settings: Settings,
    metrics: Path | None,
    command: str,
    run: Callable[[], T],
    restore_tests: RestoreTests | None = None,
) -> T:
    """``run()``, then the metrics file (when asked) written whether it succeeded or not: a
    failed cron run must show in the metrics as much as a good one. ``restore_tests`` reads
    each backup's newest restore test once the run is over."""
    started = time.monotonic()
    ok = False
    try:
        result = run()
        ok = getattr(result, "ok", True) is not False
        return result
    finally:
        if metrics is not None:
            tests = restore_tests() if restore_tests is not None else None
            write_metrics(settings, metrics, command, ok, time.monotonic() - started, tests)


def write_metrics(
    settings: Settings,
    path: Path,
    command: str,
    ok: bool,
    duration_s: float,
    restore_tests: Mapping[str, drills.RestoreTest] | None = None,
) -> None:
    """node_exporter textfile metrics, in prometheus_client's format, replaced atomically
    (never read half-written); the same writer as `monitor once --metrics-file`."""
    from travellr_ops.prometheus import Gauge, write_textfile

    listing = list_backups(settings, restore_tests=restore_tests)
    good = [r for r in listing.backups if r.status == "complete"]
    run = ("command",)
    gauges = [
        Gauge(
            "travellr_backup_last_run_success",
            "Whether the last run of the command succeeded.",
            [((command,), float(ok))],
            run,
        ),
        Gauge(
            "travellr_backup_last_run_duration_seconds",
            "Duration of the last run of the command.",
            [((command,), round(duration_s, 3))],
            run,
        ),
        Gauge(
            "travellr_backup_last_run_timestamp_seconds",
            "When the last run of the command ended.",
            [((command,), float(int(time.time())))],
            run,
        ),
        Gauge(
            "travellr_backup_count", "Complete backups in the backup directory.", [((), len(good))]
        ),
    ]
    if good:
        newest = good[-1]
        finished = store.read_manifest(settings.backup.dir / newest.name).finished_at
        gauges += [
            Gauge(
                "travellr_backup_last_success_timestamp_seconds",
                "End of the newest complete backup.",
                [((), float(int(datetime.fromisoformat(finished).timestamp())))],
            ),
            Gauge(
                "travellr_backup_last_size_bytes", "Size of the newest backup.", [((), newest.size)]
            ),
            Gauge(
                "travellr_backup_last_documents",
                "Documents in the newest backup.",
                [((), newest.documents)],
            ),
        ]
        verified = [r for r in good if r.verified_at]
        if verified:
            last = verified[-1]
            stamp = datetime.fromisoformat(str(last.verified_at)).timestamp()
            gauges += [
                Gauge(
                    "travellr_backup_last_verify_ok",
                    "Whether the newest verification of a backup passed.",
                    [((), float(last.verify_result != "fail"))],
                ),
                Gauge(
                    "travellr_backup_last_verify_timestamp_seconds",
                    "When a backup was last verified.",
                    [((), float(int(stamp)))],
                ),
            ]
    gauges += _recovery_gauges(listing, restore_tests or {})
    write_textfile(path, gauges)


def _recovery_gauges(
    listing: BackupList, restore_tests: Mapping[str, drills.RestoreTest]
) -> list[Gauge]:
    """The recovery window and point, and the newest restore test. The newest recoverable
    moment is a timestamp, so an alert on ``time() - it`` fires even when the job that
    writes this file has stopped too."""
    from travellr_ops.prometheus import Gauge

    window = listing.window
    gauges: list[Gauge] = []
    if window is not None and window.newest_s is not None and window.rpo_s is not None:
        assert window.oldest is not None
        gauges += [
            Gauge(
                "travellr_backup_rpo_seconds",
                "Seconds of writes a crash now would lose (now - newest recoverable moment).",
                [((), window.rpo_s)],
            ),
            Gauge(
                "travellr_backup_rpo_target_seconds",
                "The recovery point objective (backup.rpo_target_s).",
                [((), window.rpo_target_s)],
            ),
            Gauge(
                "travellr_backup_recoverable_newest_timestamp_seconds",
                "The newest moment a restore can reach (oplog archive or newest backup).",
                [((), round(window.newest_s, 3))],
            ),
            Gauge(
                "travellr_backup_recoverable_oldest_timestamp_seconds",
                "The oldest moment a restore can reach (the oldest whole backup).",
                [((), float(int(datetime.fromisoformat(window.oldest).timestamp())))],
            ),
            Gauge(
                "travellr_backup_recoverable_gaps",
                "Stretches inside the recoverable window that no restore can reach.",
                [((), float(len(window.gaps)))],
            ),
        ]
    if restore_tests:
        newest = max(restore_tests.values(), key=lambda t: t.time)
        gauges += [
            Gauge(
                "travellr_backup_last_restore_test_timestamp_seconds",
                "When a backup was last restore-tested.",
                [((), float(int(newest.time)))],
            ),
            Gauge(
                "travellr_backup_last_restore_test_duration_seconds",
                "How long the newest restore test's restore took.",
                [((), newest.seconds)],
            ),
            Gauge(
                "travellr_backup_last_restore_test_ok",
                "Whether the newest restore test matched its manifest.",
                [((), float(newest.ok))],
            ),
        ]
    return gauges
