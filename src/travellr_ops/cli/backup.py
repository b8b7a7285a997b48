"""`travellr-ops backup`: the runbook's `npm run backup:create|list|clean|restore`, "verify
backup", "test restore procedure", and oplog point-in-time recovery."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console

from travellr_ops.cli.common import (
    DryRunOpt,
    JsonOpt,
    QuietOpt,
    YesOpt,
    exit_with,
    new_group,
    use,
)
from travellr_ops.output import Mode

if TYPE_CHECKING:
    from collections.abc import Mapping

    from travellr_ops.cli.common import AppContext
    from travellr_ops.ops.backup.archive import ArchiveResult
    from travellr_ops.ops.backup.create import CreateResult
    from travellr_ops.ops.backup.drills import RestoreTest
    from travellr_ops.ops.backup.manage import BackupList, CleanPlan, VerifyResult
    from travellr_ops.ops.backup.restore import RestoreResult

app = new_group(
    "backup",
    "MongoDB backups: create, list, verify, clean, restore (point in time), oplog archive.",
)

MetricsOpt = Annotated[
    Path | None,
    typer.Option(
        "--metrics-file",
        help="Write node_exporter textfile metrics here (atomically), success or not.",
    ),
]
CollectionsOpt = Annotated[
    list[str] | None,
    typer.Option("--collections", "-c", help="Only these collections (repeat the option)."),
]
NameArg = Annotated[
    str, typer.Argument(help="A backup name, as `backup list` shows it, or `latest`.")
]


def _size(n: float) -> str:
    from travellr_ops.vocab.units import format_bytes

    return format_bytes(n)


def _restore_tests(app_ctx: AppContext) -> Mapping[str, RestoreTest]:
    """Each backup's newest restore test, from the store."""
    from travellr_ops.ops.backup.drills import newest_per_backup

    with app_ctx.runtime.store() as history:
        return newest_per_backup(history)


# --------------------------------------------------------------------------------- create


@app.command()
def create(
    ctx: typer.Context,
    collections: CollectionsOpt = None,
    metrics_file: MetricsOpt = None,
    dry_run: DryRunOpt = False,
    json_: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Back up every collection (the 2 AM cron job).

    Raw BSON, gzipped, several collections at once; on a replica set with the oplog written
    meanwhile. Asks nothing (cron runs it); exits 4 at once if another backup is running.
    """
    from travellr_ops.ops.backup.create import create as run_create
    from travellr_ops.ops.backup.manage import metered

    app_ctx = use(ctx)
    out = app_ctx.output(json_, quiet)
    with app_ctx.runtime.dump() as dump:
        result = metered(
            app_ctx.settings,
            metrics_file,
            "create",
            lambda: run_create(
                app_ctx.settings,
                dump,
                app_ctx.guard(dry_run=dry_run),
                out.progress,
                out.warn,
                collections or None,
                count_first=out.mode is Mode.HUMAN and out.stderr.is_terminal,
            ),
            lambda: _restore_tests(app_ctx),
        )
    out.result(result, lambda console: _render_create(console, result))
    if not result.dry_run:
        out.success(f"backup {result.name} written")


def _render_create(console: Console, r: CreateResult) -> None:
    if r.dry_run:
        console.print(f"would write {r.path} with {', '.join(r.collections)}")
        return
    console.print(
        f"{r.name}: {len(r.collections)} collections, {r.documents:,} documents, "
        f"{_size(r.size)} in {r.duration_s:.1f} s"
    )
    if r.oplog_entries is not None:
        console.print(f"consistent at {r.consistent_at} ({r.oplog_entries} oplog entries)")
    console.print(f"{r.parallelism} collection(s) at a time ({r.parallelism_source})")


# ----------------------------------------------------------------------------------- list


@app.command("list")
def list_(
    ctx: typer.Context,
    metrics_file: MetricsOpt = None,
    json_: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """List backups: age, size, documents, status, last verification and restore test.

    Shows the recoverable window (oldest to newest moment a restore reaches), its gaps, and
    the RPO now (seconds of writes a crash now would lose) against backup.rpo_target_s.
    Flags backups past the retention, and a gap (exit 1) when the newest is over a day old.
    """
    from travellr_ops.ops.backup.manage import list_backups, metered

    app_ctx = use(ctx)
    out = app_ctx.output(json_, quiet)
    tests = _restore_tests(app_ctx)
    listing = metered(
        app_ctx.settings,
        metrics_file,
        "list",
        lambda: list_backups(app_ctx.settings, restore_tests=tests),
        lambda: tests,
    )
    out.result(listing, lambda console: _render_list(console, listing))
    for warning in listing.warnings:
        out.warn(warning)
    exit_with(not listing.gap)


def _render_list(console: Console, r: BackupList) -> None:
    from travellr_ops.output import table

    rows = []
    for b in reversed(r.backups):
        flags = []
        if b.over_retention:
            flags.append("past retention")
        if b.pitr:
            flags.append("oplog")
        tested = "never"
        if b.restore_tested_at is not None:
            tested = f"{b.restore_tested_at[:16]} {b.restore_test_s:g} s" + (
                "" if b.restore_test_ok else " [red]fail[/]"
            )
        rows.append(
            [
                b.name,
                f"{b.age_hours:.1f} h",
                _size(b.size),
                b.collections,
                f"{b.documents:,}",
                f"[green]{b.status}[/]" if b.status == "complete" else f"[red]{b.status}[/]",
                (b.verified_at or "never")[:16]
                + (f" {b.verify_result}" if b.verify_result else ""),
                tested,
                (b.reaches or "")[:19],
                ", ".join(flags),
            ]
        )
    console.print(
        table(
            f"backups in {r.directory}",
            [
                "name",
                "age",
                "size",
                "colls",
                "docs",
                "status",
                "verified",
                "restore-tested",
                "reaches",
                "notes",
            ],
            rows,
        )
    )
    if r.oplog_archive:
        o = r.oplog_archive
        console.print(
            f"oplog archive: {o['files']} files, up to {o['covered_to']} ({o['lag_s']} s ago)"
        )
    _render_window(console, r)


def _render_window(console: Console, r: BackupList) -> None:
    from travellr_ops.output import verdict

    w = r.window
    if w is None or w.newest is None:
        console.print("recoverable window: none (no whole backup)")
        return
    console.print(
        f"recoverable window: {w.oldest} -> {w.newest} ({w.newest_from}); {len(w.gaps)} gap(s)"
    )
    for gap in w.gaps:
        console.print(f"  gap {gap.start} -> {gap.end} ({gap.seconds:g} s): {gap.reason}")
    console.print(
        f"RPO now: {w.rpo_s:g} s (target {w.rpo_target_s:g} s)"
        f" {verdict('breach' if w.rpo_breach else 'ok')}"
    )


# --------------------------------------------------------------------------------- verify


@app.command()
def verify(
    ctx: typer.Context,
    name: Annotated[
        str | None,
        typer.Argument(help="A backup name, as `backup list` shows it, or `latest` (the default)."),
    ] = None,
    restore_test: Annotated[
        bool,
        typer.Option(
            "--restore-test",
            help="Also restore into a scratch database, compare counts and indexes, drop it;"
            " the restore time is recorded (`backup list` shows it).",
        ),
    ] = False,
    random: Annotated[
        bool,
        typer.Option(
            "--random",
            help="Pick one of the whole backups at random (a drill from cron, over time"
            " every retained backup gets restored).",
        ),
    ] = False,
    metrics_file: MetricsOpt = None,
    json_: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Check a backup's checksums and decompress it (exit 1 on any mismatch).

    Records the verification in the manifest, and a restore test (its time and how long the
    restore took) in the store.
    """
    from travellr_ops.errors import UsageError
    from travellr_ops.ops.backup.manage import metered
    from travellr_ops.ops.backup.manage import verify as run_verify

    if random and name is not None:
        raise UsageError("--random picks the backup: give no NAME with it")
    app_ctx = use(ctx)
    out = app_ctx.output(json_, quiet)
    with app_ctx.runtime.dump() as dump, app_ctx.runtime.store() as history:
        result = metered(
            app_ctx.settings,
            metrics_file,
            "verify",
            lambda: run_verify(
                app_ctx.settings,
                None if random else (name or "latest"),
                restore_test=restore_test,
                dump=lambda: dump,
                progress=out.progress,
                history=history,
            ),
            lambda: _restore_tests(app_ctx),
        )
    out.result(result, lambda console: _render_verify(console, result))
    if result.ok:
        out.success(f"{result.name} verified")
    else:
        out.error(f"{result.name} failed verification: {len(result.problems)} problem(s)")
    exit_with(result.ok)


def _render_verify(console: Console, r: VerifyResult) -> None:
    from travellr_ops.output import verdict

    picked = " (picked at random)" if r.picked == "random" else ""
    console.print(
        f"{r.name}{picked}: {verdict('ok' if r.ok else 'fail')} ({r.files_checked} files)"
    )
    for problem in r.problems:
        console.print(f"  {problem}")
    if r.restore_test:
        console.print(
            f"restore test in {r.restore_test['database']}: restored in"
            f" {r.restore_test['restore_s']} s, {r.restore_test['seconds']} s in all"
        )


# ---------------------------------------------------------------------------------- clean


@app.command()
def clean(
    ctx: typer.Context,
    keep_days: Annotated[
        int | None, typer.Option(help="Delete backups older than this (default: retention).")
    ] = None,
    keep_last: Annotated[
        int | None, typer.Option(help="Always keep this many of the newest backups.")
    ] = None,
    yes: YesOpt = False,
    dry_run: DryRunOpt = False,
    json_: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Delete backups past the retention, and leftovers of unfinished ones.

    Never the newest verified backup, nor the base of the point-in-time window.
    """
    from travellr_ops.ops.backup.manage import clean as run_clean

    app_ctx = use(ctx)
    out = app_ctx.output(json_, quiet)
    plan = run_clean(app_ctx.settings, app_ctx.guard(yes, dry_run), keep_days, keep_last)
    out.result(plan, lambda console: _render_clean(console, plan))


def _render_clean(console: Console, p: CleanPlan) -> None:
    if not (p.delete or p.leftovers or p.archive_files):
        console.print("nothing to delete")
        return
    verb = "would delete" if p.dry_run else "deleted"
    for name in p.delete:
        console.print(f"{verb} {name}")
    for name in p.leftovers:
        console.print(f"{verb} unfinished {name}")
    for name in p.archive_files:
        console.print(f"{verb} archived oplog {name}")
    console.print(f"{_size(p.freed_bytes)} {'would be ' if p.dry_run else ''}freed")


# -------------------------------------------------------------------------------- restore


@app.command()
def restore(
    ctx: typer.Context,
    name: NameArg,
    db: Annotated[
        str | None, typer.Option("--db", help="Restore into this database instead.")
    ] = None,
    collections: CollectionsOpt = None,
    drop: Annotated[
        bool,
        typer.Option(
            "--drop", help="Replace (and with --until drop) the target's existing collections."
        ),
    ] = False,
    until: Annotated[
        str | None,
        typer.Option(
            "--until",
            help="Point in time: replay the oplog up to this time (2024-01-01T10:30:00Z;"
            " HH:MM UTC, the last one past; or a duration ago: 2h), or to just before an oplog"
            " timestamp SECONDS:INC (like --oplogLimit); `latest`: as far as the backup and"
            " the oplog archive reach (`backup list` shows it).",
        ),
    ] = None,
    with_downtime: Annotated[
        bool,
        typer.Option(
            "--with-downtime",
            help="The runbook's procedure: stop the backend, restore, start it, health check.",
        ),
    ] = False,
    yes: YesOpt = False,
    dry_run: DryRunOpt = False,
    json_: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Restore a backup, optionally to a point in time (--until).

    Checksums are verified first. Everything is written into staging collections that are
    swapped in only when all of it succeeded: a failed restore leaves the database as it was.
    With --until the database ends as it was then (collections created later are dropped).
    Asks first, naming every collection it drops or overwrites.
    """
    from travellr_ops.ops.backup.restore import Until
    from travellr_ops.ops.backup.restore import restore as run_restore

    limit = Until.parse(until) if until is not None else None
    app_ctx = use(ctx)
    out = app_ctx.output(json_, quiet)
    result = run_restore(
        app_ctx.guarded(yes, dry_run),
        name,
        target_db=db,
        collections=collections or None,
        drop=drop,
        until=limit,
        with_downtime=with_downtime,
    )
    out.result(result, lambda console: _render_restore(console, result))
    for skipped in result.skipped_entries:
        out.warn(f"oplog entry not replayed: {skipped}")
    if not result.dry_run:
        out.success(f"{name} restored into {result.database}")
    if result.healthy is False:
        out.error(f"the backend is not healthy after the restore: {result.health}")
        exit_with(False)


def _render_restore(console: Console, r: RestoreResult) -> None:
    if r.dry_run:
        console.print(f"dry run: nothing restored into {r.database}")
        return
    console.print(
        f"{r.name} -> {r.database}: {len(r.collections)} collections, {r.documents:,} documents,"
        f" {r.indexes} indexes in {r.duration_s:.1f} s"
    )
    console.print(f"{r.parallelism} collection(s) at a time ({r.parallelism_source})")
    if r.until:
        console.print(
            f"replayed {r.oplog_applied} captured + {r.archived_applied} archived oplog entries"
            f" up to {r.until}"
        )
    if r.from_oplog:
        console.print(
            f"rebuilt from the oplog (created after the backup): {', '.join(r.from_oplog)}"
        )
    if r.dropped:
        console.print(f"dropped (did not exist at {r.until}): {', '.join(r.dropped)}")
    if r.downtime:
        console.print(f"backend restarted; health: {r.health}")


# -------------------------------------------------------------------------- oplog-archive


@app.command("oplog-archive")
def oplog_archive(
    ctx: typer.Context,
    follow: Annotated[
        bool,
        typer.Option(
            "--follow", help="Keep archiving every backup.oplog_poll_s seconds (a watcher)."
        ),
    ] = False,
    reset: Annotated[
        bool,
        typer.Option(
            "--reset",
            help="Start again after the newest backup (after the oplog rolled past the archive).",
        ),
    ] = False,
    rounds: Annotated[int | None, typer.Option(hidden=True)] = None,
    metrics_file: MetricsOpt = None,
    json_: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Archive the oplog for point-in-time recovery (cron, or --follow).

    Copies the oplog past the saved position into compressed, checksummed files, so that
    `restore --until` reaches any moment after the last backup. Resumes exactly where it
    stopped; reports (exit 1) an oplog that rolled past its position.
    """
    from travellr_ops.ops.backup.archive import oplog_archive as run_archive
    from travellr_ops.ops.backup.manage import metered

    app_ctx = use(ctx)
    out = app_ctx.output(json_, quiet)
    with app_ctx.runtime.dump() as dump:
        result = metered(
            app_ctx.settings,
            metrics_file,
            "oplog-archive",
            lambda: run_archive(
                app_ctx.settings,
                dump,
                app_ctx.guard(),
                out.info,
                follow=follow,
                reset=reset,
                rounds=rounds,
            ),
            lambda: _restore_tests(app_ctx),
        )
    out.result(result, lambda console: _render_archive(console, result))


def _render_archive(console: Console, r: ArchiveResult) -> None:
    console.print(
        f"archived {r.entries} oplog entries in {len(r.files)} file(s) to {r.directory};"
        f" covered up to {r.covered_to}"
    )
    for name in r.adopted:
        console.print(f"adopted {name} (written before an interruption)")
