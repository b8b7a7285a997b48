"""`security report`: the weekly security review in one page: the dependency audit, the log
review and the posture checks together, with what changed since the previous report.

The three parts run at once; one that cannot run is shown as unknown with why, and the page
still comes out. Each report's summary (advisories found, checks' verdicts, the log figures)
is kept in the shared store, so the next report can say what is new, what is resolved and
how the figures moved. The page is a list of blocks (headings, paragraphs, bullet lists,
tables) rendered to Markdown or to one self-contained HTML file (inline style, no script, no
outside resource).
"""

from __future__ import annotations

import html
import json
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from travellr_ops.errors import TravellrError
from travellr_ops.ops.security.audit import AuditResult
from travellr_ops.ops.security.logs import DENIED, LogReport
from travellr_ops.ops.security.posture import PostureCheck
from travellr_ops.runtime import Runtime
from travellr_ops.store import Store
from travellr_ops.vocab.files import write_output
from travellr_ops.vocab.verdict import Verdict

COMPONENT = "security"
SCHEMA = [
    """
    CREATE TABLE security_reports (
        time REAL NOT NULL,
        since TEXT NOT NULL,
        summary TEXT NOT NULL
    );
    CREATE INDEX security_reports_by_time ON security_reports (time)
    """,
]


@dataclass
class WeeklyReport:
    generated_at: datetime
    since: str
    audit: AuditResult | None
    audit_error: str
    logs: LogReport | None
    logs_error: str
    posture: list[PostureCheck]
    posture_error: str
    summary: dict[str, Any] = field(default_factory=dict)
    previous_at: datetime | None = None
    changes: list[str] = field(default_factory=list)

    @property
    def problems(self) -> list[str]:
        found = []
        if self.audit is not None and self.audit.status == "vulnerable":
            found.append(f"{len(self.audit.at_level)} advisory finding(s) at {self.audit.level}+")
        if self.logs is not None and self.logs.suspects:
            found.append(f"{len(self.logs.suspects)} brute-force suspect(s)")
        failed = [c.name for c in self.posture if c.verdict == Verdict.FAIL]
        if failed:
            found.append(f"{len(failed)} failed posture check(s)")
        return found

    @property
    def unknown(self) -> list[str]:
        parts = []
        if self.audit is None or self.audit.status == "unknown":
            parts.append("audit")
        if self.logs is None or not self.logs.read_any:
            parts.append("logs")
        if self.posture_error:
            parts.append("posture")
        return parts

    @property
    def verdict(self) -> Verdict:
        """fail when something needs action, else unknown when a part could not be assessed."""
        if self.problems:
            return Verdict.FAIL
        return Verdict.UNKNOWN if self.unknown else Verdict.OK


def run(
    rt: Runtime,
    since: str,
    start: datetime | None,
    *,
    top: int,
    path: Path | None = None,
    live: bool | None = None,
    html_file: Path | None = None,
) -> WeeklyReport:
    """`security report`: the three parts (the logs from ``start`` on, ``since`` as the user
    wrote it), compared with the previous report (this one's summary is kept in the store for
    the next), and the page written to ``html_file`` when given."""
    report = build(rt, since, start, path=path, live=live)
    with rt.store() as store:
        compare_and_keep(open_store(store), report)
    if html_file is not None:
        write_output(html_file, html_page(blocks(report, top)), "the security report", private=True)
    return report


def _try(fn: Callable[[], Any]) -> tuple[Any, str]:
    try:
        return fn(), ""
    except TravellrError as exc:
        return None, exc.message


def build(
    rt: Runtime,
    since: str,
    start: datetime | None,
    *,
    path: Path | None = None,
    live: bool | None = None,
    now: datetime | None = None,
) -> WeeklyReport:
    from travellr_ops.ops.security import osvdb
    from travellr_ops.ops.security.audit import audit
    from travellr_ops.ops.security.posture import check
    from travellr_ops.ops.security.review import review

    sec = rt.settings.security
    database = osvdb.location(rt.settings.state_dir)
    with ThreadPoolExecutor(3, thread_name_prefix="security-report") as pool:
        audited = pool.submit(
            _try, lambda: audit(path or sec.backend_dir, sec, live=live, database=database)
        )
        reviewed = pool.submit(_try, lambda: review(rt, [], start))
        posture = pool.submit(_try, lambda: check(rt))
        (a, a_err), (logs, l_err), (checks, p_err) = (
            audited.result(),
            reviewed.result(),
            posture.result(),
        )
    report = WeeklyReport(
        generated_at=now or datetime.now(UTC),
        since=since,
        audit=a,
        audit_error=a_err or (_audit_unknown(a) if a is not None else ""),
        logs=logs,
        logs_error=l_err or (_logs_unread(logs) if logs is not None else ""),
        posture=checks or [],
        posture_error=p_err,
    )
    report.summary = summarize(report)
    return report


def _audit_unknown(result: AuditResult) -> str:
    if result.status != "unknown":
        return ""
    return "no advisory source answered: " + "; ".join(
        f"{s.name}: {s.detail}" for s in result.sources
    )


def _logs_unread(logs: LogReport) -> str:
    if logs.read_any:
        return ""
    return "no log could be read: " + "; ".join(f"{f.path}: {f.error}" for f in logs.files)


def summarize(report: WeeklyReport) -> dict[str, Any]:
    """What the next report compares against (plain JSON)."""
    summary: dict[str, Any] = {"audit": None, "logs": None, "posture": {}}
    if report.audit is not None and report.audit.status != "unknown":
        summary["audit"] = {
            "status": report.audit.status,
            "findings": sorted(
                {
                    f"{f.advisory} {f.package} {f.installed}": f.severity
                    for f in report.audit.findings
                }.items()
            ),
        }
    logs = report.logs
    if logs is not None and logs.read_any:
        summary["logs"] = {
            "requests": logs.requests,
            **{str(s): logs.denied[s] for s in DENIED},
            "failed_logins": logs.failed_logins,
            "rate_limit_hits": logs.rate_limit_hits,
            "suspects": sorted(logs.suspects),
        }
    summary["posture"] = {c.name: c.verdict for c in report.posture}
    return summary


def changes(previous: dict[str, Any] | None, current: dict[str, Any]) -> list[str]:
    """What moved between two summaries, in words."""
    if previous is None:
        return ["first report: nothing to compare with yet"]
    out: list[str] = []
    before_audit, now_audit = previous.get("audit"), current.get("audit")
    if before_audit is not None and now_audit is not None:
        old = dict(map(tuple, before_audit["findings"]))
        new = dict(map(tuple, now_audit["findings"]))
        out += [f"new advisory: {k} ({new[k]})" for k in sorted(set(new) - set(old))]
        out += [f"resolved advisory: {k} ({old[k]})" for k in sorted(set(old) - set(new))]
    elif (before_audit is None) != (now_audit is None):
        out.append(
            "the audit is unknown this time"
            if now_audit is None
            else "the audit has an answer again (it was unknown)"
        )
    before_logs, now_logs = previous.get("logs"), current.get("logs")
    if before_logs is not None and now_logs is not None:
        for key, label in (
            ("401", "401 responses"),
            ("403", "403 responses"),
            ("429", "429 responses"),
            ("failed_logins", "failed logins"),
            ("rate_limit_hits", "rate-limit hits"),
        ):
            a, b = before_logs.get(key, 0), now_logs.get(key, 0)
            if a != b:
                out.append(f"{label}: {a} -> {b} ({b - a:+d})")
        old_s, new_s = set(before_logs["suspects"]), set(now_logs["suspects"])
        out += [f"new brute-force suspect: {ip}" for ip in sorted(new_s - old_s)]
        out += [f"no longer a brute-force suspect: {ip}" for ip in sorted(old_s - new_s)]
    elif (before_logs is None) != (now_logs is None):
        out.append(
            "the logs could not be read this time" if now_logs is None else "logs read again"
        )
    old_p, new_p = previous.get("posture", {}), current.get("posture", {})
    for name in sorted(set(old_p) | set(new_p)):
        a, b = old_p.get(name, "-"), new_p.get(name, "-")
        if a != b:
            out.append(f"check {name}: {a} -> {b}")
    return out or ["no change"]


def open_store(store: Store) -> Store:
    store.migrate(COMPONENT, SCHEMA)
    return store


def previous(store: Store) -> tuple[datetime, dict[str, Any]] | None:
    rows = store.query(
        "SELECT time, summary FROM security_reports ORDER BY time DESC LIMIT 1",
        doing="reading the previous security report",
    )
    if not rows:
        return None
    return datetime.fromtimestamp(rows[0][0], UTC), json.loads(rows[0][1])


def compare_and_keep(store: Store, report: WeeklyReport) -> None:
    """Fill in what changed since the previous report, then keep this one's summary."""
    before = previous(store)
    report.previous_at = before[0] if before else None
    report.changes = changes(before[1] if before else None, report.summary)
    with store.write("keeping the security report's summary") as conn:
        conn.execute(
            "INSERT INTO security_reports (time, since, summary) VALUES (?, ?, ?)",
            (report.generated_at.timestamp(), report.since, json.dumps(report.summary)),
        )


# -- the page -----------------------------------------------------------------------------------
Block = tuple[str, Any]  # ("h1"|"h2"|"p"|"ul", text or items) or ("table", (columns, rows))


def blocks(report: WeeklyReport, top: int) -> list[Block]:
    stamp = report.generated_at.isoformat(timespec="seconds").replace("+00:00", "Z")
    out: list[Block] = [
        ("h1", f"Travellr security report, {stamp}"),
        ("p", f"Log window: since {report.since}."),
    ]
    problems, unknown = report.problems, report.unknown
    verdict = (
        "Action needed: " + "; ".join(problems)
        if problems
        else "Unknown: " + ", ".join(unknown) + " could not be assessed"
        if unknown
        else "Nothing to act on."
    )
    out.append(("p", verdict + "."))
    since_when = (
        report.previous_at.isoformat(timespec="seconds").replace("+00:00", "Z")
        if report.previous_at
        else None
    )
    out.append(
        (
            "h2",
            f"What changed since the previous report ({since_when})"
            if since_when
            else "What changed since the previous report",
        )
    )
    out.append(("ul", report.changes))
    out += _audit_blocks(report)
    out += _log_blocks(report, top)
    out += _posture_blocks(report)
    return out


def _audit_blocks(report: WeeklyReport) -> list[Block]:
    out: list[Block] = [("h2", "Dependency audit")]
    a = report.audit
    if a is None or a.status == "unknown":
        out.append(("p", f"Unknown: {report.audit_error}"))
        return out
    sources = ", ".join(f"{s.name} {s.state}" for s in a.sources)
    out.append(
        (
            "p",
            f"{a.status}: {len(a.findings)} finding(s), {len(a.at_level)} at or above "
            f"{a.level}, in {a.packages} packages of {a.directory} ({sources}).",
        )
    )
    if a.findings:
        rows = [
            [
                f.package,
                f.ecosystem,
                f.installed,
                f.fixed_in or "-",
                f.severity,
                f.advisory,
                f.summary,
            ]
            for f in a.findings
        ]
        cols = ["package", "ecosystem", "installed", "fixed in", "severity", "advisory", "summary"]
        out.append(("table", (cols, rows)))
    return out


def _log_blocks(report: WeeklyReport, top: int) -> list[Block]:
    out: list[Block] = [("h2", f"Log review (since {report.since})")]
    logs = report.logs
    if logs is None or not logs.read_any:
        out.append(("p", f"Unknown: {report.logs_error}"))
        return out
    out.append(
        (
            "p",
            f"{logs.requests} requests; 401: {logs.denied[401]}, 403: {logs.denied[403]}, "
            f"429: {logs.denied[429]}; {logs.failed_logins} failed logins; "
            f"{logs.rate_limit_hits} rate-limit hits; {logs.malformed} malformed lines.",
        )
    )
    if logs.suspects:
        rows = [
            [s.ip, s.failures, s.detected_at, ", ".join(s.accounts[:5])]
            for s in sorted(logs.suspects.values(), key=lambda s: (-s.failures, s.ip))
        ]
        out.append(
            (
                "p",
                f"Brute-force suspects (at least {logs.bruteforce_failures} failed logins "
                f"within {logs.bruteforce_window_s:g} s):",
            )
        )
        out.append(("table", (["ip", "failed logins", "detected at", "accounts"], rows)))
    offenders = logs.offenders()[:top]
    if offenders:
        out.append(("p", "Top offenders:"))
        out.append(
            (
                "table",
                (
                    ["ip", "401/403/429", "failed logins", "rate limited", "total"],
                    [list(o) for o in offenders],
                ),
            )
        )
    if logs.failed_by_account:
        out.append(("p", "Failed logins by account:"))
        out.append(
            ("table", (["account", "failed logins"], logs.failed_by_account.most_common(top)))
        )
    return out


def _posture_blocks(report: WeeklyReport) -> list[Block]:
    out: list[Block] = [("h2", "Posture")]
    if report.posture_error:
        out.append(("p", f"Unknown: {report.posture_error}"))
        return out
    failed = sum(c.verdict == Verdict.FAIL for c in report.posture)
    out.append(("p", f"{len(report.posture)} checks, {failed} failed."))
    rows = [[c.name, c.verdict, c.detail, c.fix] for c in report.posture]
    out.append(("table", (["check", "verdict", "detail", "fix"], rows)))
    return out


def _md_cell(value: Any) -> str:
    return str(value).replace("|", "\\|").replace("\n", " ")


def markdown(page: list[Block]) -> str:
    out: list[str] = []
    for kind, body in page:
        if kind == "h1":
            out += [f"# {body}", ""]
        elif kind == "h2":
            out += [f"## {body}", ""]
        elif kind == "p":
            out += [str(body), ""]
        elif kind == "ul":
            out += [f"- {item}" for item in body] + [""]
        elif kind == "table":
            columns, rows = body
            out.append("| " + " | ".join(columns) + " |")
            out.append("|" + " --- |" * len(columns))
            out += ["| " + " | ".join(_md_cell(c) for c in row) + " |" for row in rows]
            out.append("")
    return "\n".join(out)


#: Rich's colour names (``Verdict.style``) as CSS colours that read well on white
_CSS_COLOURS = {"green": "#070", "red": "#b00", "magenta": "#a0a", "yellow": "#a60", "cyan": "#088"}


def _verdict_css(verdict: Verdict) -> str:
    """A verdict's cell in the colour the terminal gives it."""
    words = verdict.style.split()
    rules = [f"color:{_CSS_COLOURS[w]}" for w in words if w in _CSS_COLOURS]
    rules += ["font-weight:600"] if "bold" in words else []
    rules += ["color:#777"] if "dim" in words else []
    return f"td.{verdict.value}{{{';'.join(rules)}}}"


STYLE = (
    """
body{font-family:system-ui,sans-serif;margin:2rem auto;max-width:72rem;color:#222;padding:0 1rem}
h1{font-size:1.5rem}h2{font-size:1.2rem;margin-top:2rem;border-bottom:1px solid #ddd}
table{border-collapse:collapse;margin:.5rem 0 1rem;font-size:.9rem}
th,td{border:1px solid #ccc;padding:.25rem .5rem;text-align:left;vertical-align:top}
th{background:#f3f3f3}td.critical,td.high{color:#b00;font-weight:600}
"""
    + "".join(_verdict_css(v) for v in Verdict)
    + "\n"
)


#: cells coloured by their word (a verdict or a severity)
MARKED = {*Verdict, "critical", "high"}


def _td(value: Any) -> str:
    text = html.escape(str(value))
    return f'<td class="{text}">{text}</td>' if str(value) in MARKED else f"<td>{text}</td>"


def html_page(page: list[Block]) -> str:
    title = next((str(body) for kind, body in page if kind == "h1"), "Security report")
    out = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{html.escape(title)}</title>",
        f"<style>{STYLE}</style></head><body>",
    ]
    for kind, body in page:
        if kind in ("h1", "h2", "p"):
            out.append(f"<{kind}>{html.escape(str(body))}</{kind}>")
        elif kind == "ul":
            out.append("<ul>" + "".join(f"<li>{html.escape(str(i))}</li>" for i in body) + "</ul>")
        elif kind == "table":
            columns, rows = body
            head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
            lines = ["<tr>" + "".join(_td(c) for c in row) + "</tr>" for row in rows]
            out.append(
                f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(lines)}</tbody></table>"
            )
    out.append("</body></html>")
    return "\n".join(out) + "\n"


def to_json(report: WeeklyReport, top: int) -> dict[str, Any]:
    from travellr_ops.ops.security.logs import to_json as logs_json

    return {
        "generated_at": report.generated_at,
        "since": report.since,
        "problems": report.problems,
        "unknown": report.unknown,
        "previous_at": report.previous_at,
        "changes": report.changes,
        "audit": None
        if report.audit is None
        else {
            "status": report.audit.status,
            "level": report.audit.level,
            "packages": report.audit.packages,
            "findings": report.audit.findings,
            "sources": [
                {"name": x.name, "state": x.state, "detail": x.detail} for x in report.audit.sources
            ],
        },
        "audit_error": report.audit_error,
        "logs": None if report.logs is None else logs_json(report.logs, top),
        "logs_error": report.logs_error,
        "posture": report.posture,
        "posture_error": report.posture_error,
        "summary": report.summary,
    }
