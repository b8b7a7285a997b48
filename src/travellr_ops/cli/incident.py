"""`travellr-ops incident`: the runbook's incident response (Identify, Contain, Eradicate,
Recover, Document) and its escalation levels, as a record with a timeline."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console

from travellr_ops.cli.common import AppContext, JsonOpt, QuietOpt, new_group, use

if TYPE_CHECKING:
    from travellr_ops.ops.incident.procedure import Written
    from travellr_ops.output import Output
    from travellr_ops.store import Store

app = new_group(
    "incident",
    "Incident response: open (with the Identify evidence), note, step, close, list, show.",
)

IdArg = Annotated[str, typer.Argument(metavar="ID", help="The incident, e.g. INC-20261130-1.")]
STEP_NAMES = ("contain", "eradicate", "recover", "document")


@contextmanager
def _store(app_ctx: AppContext) -> Iterator[Store]:
    from travellr_ops.ops.incident.procedure import store_for

    store = store_for(app_ctx.settings)
    try:
        yield store
    finally:
        store.close()


def _author() -> str:
    from travellr_ops.ops.maintenance import who

    return who()


@app.command("open")
def open_(
    ctx: typer.Context,
    title: Annotated[str, typer.Argument(help="What is wrong, in a few words.")],
    severity: Annotated[
        int,
        typer.Option(
            "--severity",
            "-s",
            min=1,
            max=3,
            help="1: operations handle it; 2: engineering is called; 3: senior engineering.",
        ),
    ],
    json_: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Open an incident: print its ID, the escalation its severity calls, the five steps, and
    capture the Identify evidence (health, services, their last log lines, db status, cache
    stats, maintenance) at once; a source that is down is recorded as down."""
    from travellr_ops.ops.incident.procedure import open_incident

    app_ctx = use(ctx)
    out = app_ctx.output(json_, quiet)
    with _store(app_ctx) as store:
        written = open_incident(
            app_ctx.runtime, store, title, severity, _author(), announce=out.info
        )
    _result(out, written)
    down = [e["source"] for e in written.doc["evidence"] if e["state"] in ("down", "timeout")]
    if down:
        out.warn(f"no answer from {', '.join(down)} (recorded as such in the evidence)")
    out.success(f"{written.doc['id']} opened; record: {written.markdown_path}")


@app.command()
def note(
    ctx: typer.Context,
    incident_id: IdArg,
    text: Annotated[str, typer.Argument(help="What was seen or done.")],
    json_: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Add a timestamped note (it belongs to the step under way)."""
    from travellr_ops.ops.incident.procedure import note as add_note

    app_ctx = use(ctx)
    out = app_ctx.output(json_, quiet)
    with _store(app_ctx) as store:
        written = add_note(app_ctx.settings, store, incident_id, text, _author())
    out.result(_brief(written), None)
    out.success(f"noted on {incident_id}")


@app.command()
def step(
    ctx: typer.Context,
    incident_id: IdArg,
    name: Annotated[
        str, typer.Argument(metavar="STEP", help="contain, eradicate, recover or document.")
    ],
    text: Annotated[str, typer.Argument(help="What this step is (optional).")] = "",
    json_: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Start the next step of the procedure: contain, eradicate, recover (its time is the time
    to recovery), document."""
    from travellr_ops.ops.incident.procedure import step as add_step

    app_ctx = use(ctx)
    out = app_ctx.output(json_, quiet)
    with _store(app_ctx) as store:
        written = add_step(app_ctx.settings, store, incident_id, name.lower(), text, _author())
    out.result(_brief(written), None)
    out.success(f"{incident_id}: {name.lower()} started")


@app.command()
def close(
    ctx: typer.Context,
    incident_id: IdArg,
    text: Annotated[str, typer.Argument(help="The closing summary (optional).")] = "",
    json_: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Close the incident: its duration, time to recovery, the travellr-ops commands that
    changed something meanwhile; writes the post-incident record (Markdown and JSON)."""
    from travellr_ops.ops.incident.procedure import close as do_close

    app_ctx = use(ctx)
    out = app_ctx.output(json_, quiet)
    with _store(app_ctx) as store:
        written = do_close(app_ctx.settings, store, incident_id, text, _author())
    _result(out, written)
    out.success(f"{incident_id} closed; records: {written.markdown_path}, {written.json_path}")


@app.command()
def show(ctx: typer.Context, incident_id: IdArg, json_: JsonOpt = False) -> None:
    """The incident as it stands: steps, evidence, timeline (notes, steps and the commands that
    changed something), duration and time to recovery."""
    from travellr_ops.ops.incident.procedure import write_record

    app_ctx = use(ctx)
    out = app_ctx.output(json_)
    with _store(app_ctx) as store:
        written = write_record(app_ctx.settings, store, incident_id)
    _result(out, written)


@app.command("list")
def list_(
    ctx: typer.Context,
    open_only: Annotated[bool, typer.Option("--open", help="Only open incidents.")] = False,
    json_: JsonOpt = False,
) -> None:
    """Every incident, newest first."""
    from travellr_ops.ops.incident.record import iso, listing
    from travellr_ops.ops.incident.report import duration

    app_ctx = use(ctx)
    out = app_ctx.output(json_)
    with _store(app_ctx) as store:
        found = listing(store, open_only)
    rows: list[dict[str, Any]] = [
        {
            "id": i.id,
            "status": i.status,
            "severity": i.severity,
            "opened_at": iso(i.opened_at),
            "closed_at": iso(i.closed_at) or None,
            "duration_s": i.duration_s,
            "title": i.title,
        }
        for i in found
    ]

    def render(console: Console) -> None:
        from travellr_ops.output import escape, table

        if not rows:
            console.print("no incidents")
            return
        console.print(
            table(
                None,
                ["id", "status", "severity", "opened", "duration", "title"],
                [
                    [
                        r["id"],
                        r["status"],
                        r["severity"],
                        r["opened_at"],
                        duration(r["duration_s"]),
                        escape(r["title"]),
                    ]
                    for r in rows
                ],
            )
        )

    out.result({"incidents": rows}, render)


def _brief(written: Written) -> dict[str, Any]:
    doc = written.doc
    return {
        "id": doc["id"],
        "status": doc["status"],
        "timeline": doc["timeline"][-1:],
        "record": {"json": written.json_path, "markdown": written.markdown_path},
    }


def _result(out: Output, written: Written) -> None:
    doc = {
        **written.doc,
        "record": {"json": written.json_path, "markdown": written.markdown_path},
    }
    out.result(doc, _render(doc))


def _render(doc: dict[str, Any]) -> Callable[[Console], None]:
    def render(console: Console) -> None:
        from travellr_ops.ops.incident.report import duration
        from travellr_ops.output import escape, table
        from travellr_ops.vocab.verdict import styled

        console.print(doc["id"], markup=False, highlight=False)
        esc = doc["escalation"]
        console.print(f"[bold]{escape(doc['title'])}[/]  ({doc['status']})")
        calls = ", ".join(
            escape(c["name"] + (f" ({c['contact']})" if c["contact"] else "")) for c in esc["call"]
        )
        console.print(
            f"severity {doc['severity']}: escalate to [bold]{esc['name']}[/]: "
            f"{calls or '(no contact configured: incident.contacts)'}"
        )
        console.print(f"opened {doc['opened_at']} by {escape(doc['opened_by'])}")
        if doc["closed_at"]:
            console.print(
                f"closed {doc['closed_at']}; duration {duration(doc['duration_s'])}; "
                f"time to recovery {duration(doc['time_to_recovery_s'])}"
            )
        for number, section in enumerate(doc["steps"].values(), 1):
            started = section["started"] or "not started"
            console.print(f"\n[bold]{number}. {escape(section['title'])}[/]  ({started})")
            for e in section["entries"]:
                console.print(f"  {e['time']} {e['kind']}: {escape(e['text'])}", highlight=False)
        if doc["evidence"]:
            rows = [
                [
                    e["source"],
                    styled(e["state"]),
                    "-" if e["duration_ms"] is None else f"{e['duration_ms']:.0f} ms",
                    escape(e["detail"]),
                ]
                for e in doc["evidence"]
            ]
            console.print(table("Identify evidence", ["source", "state", "took", "detail"], rows))
        if doc["commands"]:
            rows = [
                [c["time"], escape(c["user"]), c["action"], styled(c["outcome"]), c["command"]]
                for c in doc["commands"]
            ]
            console.print(
                table(
                    "commands that changed something",
                    ["time", "user", "action", "outcome", "command"],
                    rows,
                )
            )
        console.print(f"\nrecord: {doc['record']['markdown']}", highlight=False)

    return render
