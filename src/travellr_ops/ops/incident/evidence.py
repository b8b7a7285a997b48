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
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any

from travellr_ops.errors import TravellrError
from travellr_ops.ops.incident.record import Evidence
from travellr_ops.output import to_jsonable
from travellr_ops.redact import mask
from travellr_ops.settings import Settings

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


def tail_file(path: Path, lines: int) -> list[str]:
    """The last ``lines`` lines of a file, reading at most a bounded stretch from its end."""
    budget = lines * (MAX_LINE_CHARS + 1) * 4
    with open(path, "rb") as f:
        size = f.seek(0, 2)
        f.seek(max(0, size - budget))
        chunk = f.read()
    kept = deque(chunk.decode("utf-8", "replace").splitlines(), maxlen=lines)
    return [_line(line) for line in kept]


def _bounded(data: Any) -> tuple[Any, str]:
    plain = to_jsonable(data)
    text = mask(json.dumps(plain, default=str))
    if len(text) <= MAX_SOURCE_BYTES:
        return json.loads(text), ""
    return text[:MAX_SOURCE_BYTES], f"cut to {MAX_SOURCE_BYTES} of {len(text)} bytes"


def probes(settings: Settings, timeout_s: float) -> list[tuple[str, Probe]]:
    """The sources to capture, each a function returning (data, one-line detail)."""
    from travellr_ops.adapters.http import HttpAdapter
    from travellr_ops.adapters.mongo import MongoAdapter
    from travellr_ops.adapters.redis import RedisAdapter

    s = settings
    lines = s.incident.evidence_log_lines
    preload(s)

    def health() -> tuple[Any, str]:
        from travellr_ops.ops.health import check_all

        http = HttpAdapter(min(s.api.timeout_s, timeout_s))
        mongo = MongoAdapter(s.mongo.uri, s.mongo.database, min(s.mongo.timeout_s, timeout_s))
        redis = RedisAdapter(s.redis.url, min(s.redis.timeout_s, timeout_s))
        platform = None if s.platform == "none" else _platform_factory(s)
        try:
            report = check_all(s, http, mongo, redis, platform)
        finally:
            http.close()
            mongo.close()
            redis.close()
        bad = [f"{c.name} {c.verdict}" for c in report.checks if c.verdict not in ("ok",)]
        return report, report.verdict + (f" ({', '.join(bad)})" if bad else "")

    def db_status() -> tuple[Any, str]:
        from travellr_ops.ops.db.server import status

        mongo = MongoAdapter(s.mongo.uri, s.mongo.database, min(s.mongo.timeout_s, timeout_s))
        try:
            report = status(mongo, RATE_WINDOW_S)
        finally:
            mongo.close()
        conns = report.connections.get("current")
        return report, f"{report.process or 'MongoDB'} {report.version or ''}, up " + (
            f"{report.uptime_s:.0f} s" if report.uptime_s is not None else "?"
        ) + (f", {conns} connections" if conns is not None else "")

    def cache_stats() -> tuple[Any, str]:
        from travellr_ops.ops.cache import stats

        redis = RedisAdapter(s.redis.url, min(s.redis.timeout_s, timeout_s))
        try:
            report = stats(redis, RATE_WINDOW_S, CACHE_SAMPLE, s.thresholds.cache_hit_rate_pct)
        finally:
            redis.close()
        rate = report.window_hit_rate_pct or report.hit_rate_pct
        return report, f"{report.verdict}, hit rate " + ("-" if rate is None else f"{rate:.1f} %")

    def maintenance() -> tuple[Any, str]:
        from travellr_ops.ops.maintenance import status

        redis = RedisAdapter(s.redis.url, min(s.redis.timeout_s, timeout_s))
        try:
            flag = status(redis, s.maintenance.key)
        finally:
            redis.close()
        return flag, (f"on since {flag.since} by {flag.by}: {flag.message}" if flag.on else "off")

    found: list[tuple[str, Probe]] = [
        ("health", health),
        ("db status", db_status),
        ("cache stats", cache_stats),
        ("maintenance", maintenance),
    ]
    if s.platform != "none":

        def service_status() -> tuple[Any, str]:
            platform = _platform_factory(s)()
            try:
                statuses = platform.status()
            finally:
                platform.close()
            return statuses, ", ".join(f"{st.name} {st.ready}/{st.desired}" for st in statuses)

        def service_logs() -> tuple[Any, str]:
            platform = _platform_factory(s)()
            try:
                got: dict[str, list[str]] = {}
                for service in platform.services():
                    try:
                        got[service] = [
                            _line(f"{ln.source} {ln.text}")
                            for ln in platform.logs([service], tail=lines)
                        ]
                    except TravellrError as exc:
                        got[service] = [f"(no logs: {exc.message})"]
            finally:
                platform.close()
            return got, ", ".join(f"{k}: {len(v)} lines" for k, v in got.items())

        found += [("service status", service_status), ("service logs", service_logs)]
    for name, path in (("access log", s.logs.access_log), ("app log", s.logs.app_log)):

        def log_file(p: Path = path) -> tuple[Any, str]:
            try:
                kept = tail_file(p, lines)
            except FileNotFoundError:
                return None, f"skipped: {p} does not exist"
            except OSError as exc:
                raise TravellrError(f"{p}: {exc.strerror or exc}") from None
            return {"path": str(p), "lines": kept}, f"last {len(kept)} lines of {p}"

        found.append((name, log_file))
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


def _platform_factory(settings: Settings) -> Callable[[], Any]:
    from travellr_ops.adapters.connect import platform_factory

    make = platform_factory(settings)
    if make is None:
        raise AssertionError("evidence asks for the platform only when there is one")
    return make


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
