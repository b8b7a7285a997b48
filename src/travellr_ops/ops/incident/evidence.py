"""The "Identify" evidence an `incident open` captures at once, as a first responder would by
hand: health, service status, the last lines of each service's logs, `db status`, `cache
stats` and the maintenance state.

Every source runs in its own daemon thread, all at once, against one deadline: a source that
does not answer is recorded as ``down`` (with why) and one still running when the time is up
as ``timeout``; neither holds up the opening, and a daemon thread left behind never keeps the
process alive. What each source keeps is bounded (lines, characters, bytes).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from travellr_ops.errors import TravellrError
from travellr_ops.ops import logsource
from travellr_ops.ops.incident.record import Evidence
from travellr_ops.output import to_jsonable
from travellr_ops.redact import mask
from travellr_ops.settings import Settings
from travellr_ops.vocab.verdict import Verdict

if TYPE_CHECKING:
    from travellr_ops.runtime import Runtime

#: the most JSON one source may keep; larger data is cut (and says so)
MAX_SOURCE_BYTES = 64 << 10
#: the longest log line kept
MAX_LINE_CHARS = 500
#: seconds between the two samples `db status` and `cache stats` take their rates from
RATE_WINDOW_S = 0.5
#: keys `cache stats` samples for its per-prefix breakdown here (kept small: it is evidence)
CACHE_SAMPLE = 200

Probe = Callable[[], tuple[Any, str]]


def _line(text: str) -> str:
    text = text.rstrip("\n")
    return text if len(text) <= MAX_LINE_CHARS else text[:MAX_LINE_CHARS] + " [cut]"


def _bounded(data: Any) -> tuple[Any, str]:
    plain = to_jsonable(data)
    text = mask(json.dumps(plain, default=str))
    if len(text) <= MAX_SOURCE_BYTES:
        return json.loads(text), ""
    return text[:MAX_SOURCE_BYTES], f"cut to {MAX_SOURCE_BYTES} of {len(text)} bytes"


def probes(rt: Runtime, timeout_s: float) -> list[tuple[str, Probe]]:
    """The sources to capture, each a function returning (data, one-line detail). Each opens
    its own clients from the run context, none waiting longer than ``timeout_s``."""
    s = rt.settings
    lines = s.incident.evidence_log_lines
    preload(s)

    def health() -> tuple[Any, str]:
        report = rt.health(fresh=True, timeout_s=timeout_s)
        bad = [f"{c.name} {c.verdict}" for c in report.checks if c.verdict != Verdict.OK]
        return report, report.verdict + (f" ({', '.join(bad)})" if bad else "")

    def db_status() -> tuple[Any, str]:
        from travellr_ops.ops.db.server import status

        with rt.mongo(timeout_s=timeout_s) as mongo:
            report = status(mongo, RATE_WINDOW_S)
        conns = report.connections.get("current")
        return report, f"{report.process or 'MongoDB'} {report.version or ''}, up " + (
            f"{report.uptime_s:.0f} s" if report.uptime_s is not None else "?"
        ) + (f", {conns} connections" if conns is not None else "")

    def cache_stats() -> tuple[Any, str]:
        from travellr_ops.ops.cache import stats

        with rt.redis(timeout_s=timeout_s) as redis:
            report = stats(redis, RATE_WINDOW_S, CACHE_SAMPLE, s.thresholds.cache_hit_rate_pct)
        rate = report.window_hit_rate_pct or report.hit_rate_pct
        return report, f"{report.verdict}, hit rate " + ("-" if rate is None else f"{rate:.1f} %")

    def maintenance() -> tuple[Any, str]:
        from travellr_ops.ops.maintenance import status

        with rt.redis(timeout_s=timeout_s) as redis:
            flag = status(redis, s.maintenance.key)
        return flag, (f"on since {flag.since} by {flag.by}: {flag.message}" if flag.on else "off")

    found: list[tuple[str, Probe]] = [
        ("health", health),
        ("db status", db_status),
        ("cache stats", cache_stats),
        ("maintenance", maintenance),
    ]
    if rt.has_platform:

        def service_status() -> tuple[Any, str]:
            with rt.platform() as platform:
                statuses = platform.status()
            return statuses, ", ".join(f"{st.name} {st.ready}/{st.desired}" for st in statuses)

        def service_logs() -> tuple[Any, str]:
            got: dict[str, list[str]] = {}
            with rt.platform() as platform:
                for service in platform.services():
                    try:
                        got[service] = [
                            _line(f"{ln.source} {ln.text}")
                            for ln in platform.logs([service], tail=lines)
                        ]
                    except TravellrError as exc:
                        got[service] = [f"(no logs: {exc.message})"]
            return got, ", ".join(f"{k}: {len(v)} lines" for k, v in got.items())

        found += [("service status", service_status), ("service logs", service_logs)]
    platform = rt.platform_factory()
    for name, kind in (("access log", "access"), ("app log", "app")):
        source = logsource.log_source(s, kind)  # type: ignore[arg-type]

        def log_tail(source: logsource.LogSource = source) -> tuple[Any, str]:
            got = logsource.last_lines(source, platform, lines, s.logs.read_bytes)
            if not any(source.matches(ln.text.encode("utf-8", "replace")) for ln in got):
                raise source.nothing_found(len(got))
            kept = [_line(ln.text) for ln in got]
            return {
                "path": source.label,
                "lines": kept,
            }, f"last {len(kept)} lines of {source.label}"

        found.append((name, log_tail))

    def doctor() -> tuple[Any, str]:
        from travellr_ops.ops.doctor.run import evidence

        return evidence(rt)

    found.append(("doctor", doctor))
    return found


def preload(settings: Settings) -> None:
    """Import the clients' SDKs here, before the threads start: two threads importing pymongo
    (or docker, kubernetes) for the first time at once can fail with KeyError('pymongo')."""
    import contextlib
    import importlib

    sdks = ["httpx", "pymongo", "redis"]
    sdks += {"compose": ["docker"], "kubernetes": ["kubernetes"]}.get(settings.platform, [])
    for name in sdks:
        with contextlib.suppress(ImportError):  # its adapter reports that, as a failure
            importlib.import_module(name)


def capture(
    sources: list[tuple[str, Probe]], timeout_s: float, clock: Callable[[], float] = time.monotonic
) -> list[Evidence]:
    """Run every source at once; whatever has not answered by ``timeout_s`` is ``timeout``."""
    results: dict[str, Evidence] = {}
    lock = threading.Lock()
    started = clock()

    def run(name: str, probe: Probe) -> None:
        t0 = clock()
        try:
            data, detail = probe()
            state = "skipped" if detail.startswith("skipped:") else "ok"
            data, cut = _bounded(data)
            detail = f"{detail}; {cut}" if cut else detail
        except TravellrError as exc:
            state, data, detail = "down", None, exc.message
        except Exception as exc:  # evidence is best effort: one broken source never stops it
            state, data, detail = "down", None, f"{type(exc).__name__}: {exc}"
        took = round((clock() - t0) * 1000, 1)
        with lock:
            results[name] = Evidence(name, state, took, mask(detail), data)

    threads = [
        threading.Thread(target=run, args=src, name=f"evidence-{src[0]}", daemon=True)
        for src in sources
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(max(0.0, started + timeout_s - clock()))
    with lock:
        return [
            results.get(name)
            or Evidence(name, "timeout", None, f"no answer within {timeout_s:g} s")
            for name, _ in sources
        ]
