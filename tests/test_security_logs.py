"""`security logs`: counts from the real sandbox backend driven by a test (failed logins from
one address, requests past its rate limit), and from generated logs with known counts, rotated
and gzipped copies, planted garbage and a truncated gzip."""

from __future__ import annotations

import gzip
import json
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from cli import invoke
from fixtures_servers import Backend
from travellr_ops.settings import Settings

ATTACKER, SCRAPER, TYPO = "198.51.100.7", "198.51.100.8", "198.51.100.9"


def settings(tmp_path: Path, **security: Any) -> Settings:
    return Settings(platform="none", state_dir=tmp_path / "state", security=security)


def request(url: str, ip: str, data: dict[str, Any] | None = None) -> int:
    body = json.dumps(data).encode() if data is not None else None
    req = urllib.request.Request(
        url, data=body, headers={"X-Forwarded-For": ip, "Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as err:
        return int(err.code)


@pytest.mark.redis
@pytest.mark.mongo
def test_counts_from_the_real_backend(
    tmp_path: Path,
    backend_factory: Callable[..., Backend],
    redis_url: str,
    seeded_mongo_uri: str,
) -> None:
    backend = backend_factory(
        redis_url=redis_url, mongo_uri=seeded_mongo_uri, RATE_LIMIT_PER_MIN="20"
    )
    # the backend counts per minute: start the bursts early in one, so none straddles two
    if datetime.now(UTC).second > 45:
        time.sleep(61 - datetime.now(UTC).second)
    login = backend.url + "/api/auth/login"
    accounts = ["admin@travellr.test", "root@travellr.test", "ops@travellr.test"]
    for i in range(12):
        assert request(login, ATTACKER, {"email": accounts[i % 3], "password": "guess"}) == 401
    for _ in range(2):
        assert request(login, TYPO, {"email": "ana@travellr.test", "password": "x"}) == 401
    statuses = [request(backend.url + "/api/trips/popular", SCRAPER) for _ in range(25)]
    assert statuses.count(429) == 5

    res = invoke(
        "security",
        "logs",
        "--json",
        "--source",
        str(backend.access_log),
        "--source",
        str(backend.app_log),
        settings=settings(tmp_path),
    )
    assert res.exit_code == 1, res.stderr  # a brute-force suspect
    doc = res.json()
    health = sum("/api/health" in line for line in backend.access_log.read_text().splitlines())
    assert doc["requests"] == 12 + 2 + 25 + health
    assert doc["denied"] == {"401": 14, "403": 0, "429": 5}
    by_ip = {r["key"]: (r["401"], r["429"]) for r in doc["denied_by_ip"]}
    assert by_ip == {ATTACKER: (12, 0), TYPO: (2, 0), SCRAPER: (0, 5)}
    by_path = {r["key"]: r["total"] for r in doc["denied_by_path"]}
    assert by_path == {"/api/auth/login": 14, "/api/trips/popular": 5}
    assert sum(r["total"] for r in doc["denied_by_hour"]) == 19
    assert doc["failed_logins"] == 14
    assert doc["failed_logins_by_ip"] == {ATTACKER: 12, TYPO: 2}
    assert doc["failed_logins_by_account"] == {
        "admin@travellr.test": 4,
        "root@travellr.test": 4,
        "ops@travellr.test": 4,
        "ana@travellr.test": 2,
    }
    assert [(s["ip"], s["failures"], s["accounts"]) for s in doc["bruteforce"]["suspects"]] == [
        (ATTACKER, 12, sorted(accounts))
    ]
    assert doc["rate_limit_hits"] == 5 and doc["rate_limited_by_ip"] == {SCRAPER: 5}
    assert doc["top_offenders"][0] == {
        "ip": ATTACKER,
        "denied": 12,
        "failed_logins": 12,
        "rate_limited": 0,
        "total": 24,
    }
    assert doc["malformed_lines"] == 0


def _access(ip: str, when: datetime, path: str, status: int) -> str:
    stamp = when.strftime("%d/%b/%Y:%H:%M:%S +0000")
    return f'{ip} - - [{stamp}] "GET {path} HTTP/1.1" {status} 17 "-" "curl/8.0"\n'


def _app(when: datetime, message: str, **fields: str) -> str:
    stamp = when.strftime("%Y-%m-%dT%H:%M:%S.") + f"{when.microsecond // 1000:03d}Z"
    rest = " ".join(f"{k}={json.dumps(v) if ' ' in v else v}" for k, v in fields.items())
    return f"{stamp} WARN {message} {rest}\n"


def test_generated_logs_rotation_gzip_garbage_and_window(tmp_path: Path) -> None:
    now = datetime.now(UTC).replace(microsecond=0)
    old = now - timedelta(days=3)  # outside --since 24h
    logs = tmp_path / "logs"
    logs.mkdir()
    access = logs / "access.log"
    # the current file: 7 lines of 403 from .1, 3 of 401 from .2, 100 OK, garbage planted
    current = (
        [_access("10.1.0.1", now - timedelta(minutes=5), "/admin/users", 403)] * 7
        + [_access("10.1.0.2", now - timedelta(minutes=4), "/api/auth/login", 401)] * 3
        + [_access("10.1.0.3", now - timedelta(minutes=3), "/api/search?destination=Oslo", 200)]
        * 100
    )
    garbage = b"\x00\xff\xfe binary\x1b[0m junk\n" + b"10.1.0.9 - - [30/Nov/2026:1" + b"\n"
    access.write_bytes("".join(current[:50]).encode() + garbage + "".join(current[50:]).encode())
    # .1: plain, 4 x 429 inside the window and 6 x 403 three days ago (outside it)
    (logs / "access.log.1").write_text(
        "".join([_access("10.1.0.4", now - timedelta(hours=2), "/api/trips/popular", 429)] * 4)
        + "".join([_access("10.1.0.1", old, "/admin", 403)] * 6)
    )
    # .2.gz: complete; 5 x 401 within the window
    with gzip.open(logs / "access.log.2.gz", "wt") as f:
        f.write(
            "".join([_access("10.1.0.2", now - timedelta(hours=5), "/api/auth/login", 401)] * 5)
        )
    # .3.gz: a complete member with 2 x 403, then a second member cut off after its header
    whole = gzip.compress(
        "".join([_access("10.1.0.5", now - timedelta(hours=6), "/.env", 403)] * 2).encode()
    )
    (logs / "access.log.3.gz").write_bytes(whole + gzip.compress(b"lost\n" * 1000)[:12])
    # an over-long line with no newline (2 MB) is one malformed line, never fatal
    (logs / "access.log.4").write_bytes(b"A" * (2 << 20) + b"\n" + current[0].encode())

    app = logs / "app.log"
    base = now - timedelta(minutes=30)
    fast = [  # 10 failures in 90 s from one IP: a brute-force suspect
        _app(
            base + timedelta(seconds=10 * i),
            "login failed",
            email=f"u{i % 2}@x.test",
            ip="10.2.0.1",
            reason="bad password",
        )
        for i in range(10)
    ]
    slow = [  # 10 failures 60 s apart (540 s from first to last): not one
        _app(
            base + timedelta(seconds=60 * i),
            "login failed",
            email="v@x.test",
            ip="10.2.0.2",
            reason="unknown user",
        )
        for i in range(10)
    ]
    limited = [
        _app(base, "rate limit exceeded", ip="10.1.0.4", path="/api/trips/popular", limit="600")
    ] * 3
    outside = [_app(old, "login failed", email="w@x.test", ip="10.2.0.3", reason="x")] * 20
    app.write_text("".join(outside + sorted(fast + slow) + limited) + "not a log line at all\n")

    res = invoke(
        "security",
        "logs",
        "--json",
        "--since",
        "24h",
        "--source",
        str(access),
        "--source",
        str(app),
        settings=settings(tmp_path, bruteforce_failures=10, bruteforce_window_s=300),
    )
    assert res.exit_code == 1, res.stderr
    doc = res.json()
    assert doc["denied"] == {"401": 3 + 5, "403": 7 + 2 + 1, "429": 4}
    assert {r["key"]: r["total"] for r in doc["denied_by_ip"]} == {
        "10.1.0.1": 7 + 1,
        "10.1.0.2": 8,
        "10.1.0.4": 4,
        "10.1.0.5": 2,
    }
    assert doc["requests"] == 110 + 4 + 5 + 2 + 1
    assert [f["path"].rsplit("/", 1)[1] for f in doc["files"]] == [
        "access.log.4",
        "access.log.3.gz",
        "access.log.2.gz",
        "access.log.1",
        "access.log",
        "app.log",
    ]
    malformed = {f["path"].rsplit("/", 1)[1]: f["malformed"] for f in doc["files"]}
    assert malformed == {
        "access.log.4": 1,
        "access.log.3.gz": 0,
        "access.log.2.gz": 0,
        "access.log.1": 0,
        "access.log": 2,
        "app.log": 1,
    }
    assert doc["malformed_lines"] == 4
    assert doc["truncated_files"] == [str(logs / "access.log.3.gz")]
    assert doc["failed_logins"] == 20
    assert doc["failed_logins_by_ip"] == {"10.2.0.1": 10, "10.2.0.2": 10}
    assert [s["ip"] for s in doc["bruteforce"]["suspects"]] == ["10.2.0.1"]
    assert doc["rate_limit_hits"] == 3
    assert "gzip file ends early" in res.stderr and "malformed line(s) skipped" in res.stderr

    # --since all takes in what is three days old too
    everything = invoke(
        "security",
        "logs",
        "--json",
        "--since",
        "all",
        "--source",
        str(access),
        "--source",
        str(app),
        settings=settings(tmp_path),
    ).json()
    assert everything["denied"]["403"] == 10 + 6 and everything["failed_logins"] == 40


def test_default_sources_missing_is_exit_3(tmp_path: Path) -> None:
    s = Settings(
        platform="none",
        state_dir=tmp_path / "s",
        logs={"access_log": tmp_path / "no.log", "app_log": tmp_path / "no-app.log"},
    )
    res = invoke("security", "logs", settings=s)
    assert res.exit_code == 3 and "no log could be read" in res.stderr
    assert invoke("security", "logs", "--since", "soon", settings=s).exit_code == 2
    # the tool's one time grammar: what kubectl takes, a bare number of seconds, a week, 'all'
    for since in ("1h30m", "90", "1w", "16:30", "2026-11-28T04:00:00Z", "all"):
        accepted = invoke("security", "logs", "--since", since, settings=s)
        assert accepted.exit_code == 3, (since, accepted.stderr)
    refused = invoke("security", "logs", "--since", "1x", settings=s)
    assert refused.exit_code == 2
    assert "--since '1x' is not a duration or a time" in refused.stderr


def test_big_access_log_scanned_in_ranges_counts_the_same(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A plain access log past logs.PARALLEL_MIN is cut into one byte range per core and
    scanned by several processes: the counts are exactly those of one stream, with garbage
    lying across the cuts (scaled down here: 3 ranges, 4 KB blocks, an 8 KB line limit)."""
    from travellr_ops.ops.security import logs

    now = datetime.now(UTC).replace(microsecond=0)
    statuses = [200, 401, 200, 403, 200, 429, 404, 200]
    rows = []
    for i in range(3000):
        ip, status = f"10.3.{i % 7}.{i % 5}", statuses[i % 8]
        when = now - (timedelta(days=3) if i % 10 == 9 else timedelta(minutes=i % 50))
        rows.append((ip, status, i % 10 != 9, _access(ip, when, f"/p{i % 3}?q={i}", status)))
    last = _access("10.9.9.9", now, "/p0", 401).rstrip("\n")  # no newline at the end
    long_line = "B" * 20_000 + "\n"  # longer than a block and the line limit
    binary = "\x00\x01 junk \x7f" * 30 + "\n"
    size = sum(len(r[3]) for r in rows) + len(last) + len(long_line) + len(binary)
    # each piece of garbage lies across the point where a cut is sought
    parts, offset = [], 0
    for *_, line in rows:
        if offset <= size // 3 < offset + len(long_line) and long_line not in parts:
            parts.append(long_line)
            offset += len(long_line)
        if offset <= 2 * size // 3 < offset + len(binary) and binary not in parts:
            parts.append(binary)
            offset += len(binary)
        parts.append(line)
        offset += len(line)
    assert long_line in parts and binary in parts
    log = tmp_path / "access.log"
    log.write_bytes(("".join(parts) + last).encode("latin-1"))

    monkeypatch.setattr(logs, "BLOCK", 4096)
    monkeypatch.setattr(logs, "MAX_LINE", 8192)
    monkeypatch.setattr(logs, "_workers", lambda: 3)
    cut_into: list[int] = []
    real_ranges = logs._ranges

    def ranges(stream: Any, stat: Any) -> list[tuple[int, int | None]]:
        found = real_ranges(stream, stat)
        cut_into.append(len(found))
        return found

    monkeypatch.setattr(logs, "_ranges", ranges)

    def review(parallel_min: int) -> dict[str, Any]:
        monkeypatch.setattr(logs, "PARALLEL_MIN", parallel_min)
        res = invoke(
            "security", "logs", "--json", "--since", "24h", "--top", "1000", "--source", str(log),
            settings=settings(tmp_path),
        )  # fmt: skip
        assert res.exit_code == 0, res.stderr
        doc = dict(res.json())
        doc.pop("since")  # now - 24h, a moment apart
        return doc

    in_ranges = review(0)
    assert cut_into == [3]
    recent = [(ip, status) for ip, status, kept, _ in rows if kept and status in (401, 403, 429)]
    by_ip: dict[str, int] = {"10.9.9.9": 1}
    for ip, _ in recent:
        by_ip[ip] = by_ip.get(ip, 0) + 1
    assert {r["key"]: r["total"] for r in in_ranges["denied_by_ip"]} == by_ip
    assert in_ranges["denied"] == {
        str(s): sum(st == s for _, st in recent) + (s == 401) for s in (401, 403, 429)
    }
    assert in_ranges["requests"] == sum(kept for _, _, kept, _ in rows) + 1
    assert in_ranges["malformed_lines"] == 2
    assert in_ranges["files"][0]["lines"] == len(rows) + 3

    one_stream = review(1 << 40)
    assert cut_into == [3, 0]
    assert one_stream == in_ranges


def test_a_request_with_escaped_quotes_is_read_as_the_shared_format_reads_it(
    tmp_path: Path,
) -> None:
    """A combined line whose request holds \\" (Apache escapes quotes so) is one request, as
    vocab.logformat.parse_access reads it, not a malformed line."""
    from travellr_ops.vocab.logformat import parse_access

    when = datetime.now(UTC) - timedelta(minutes=5)
    stamp = when.strftime("%d/%b/%Y:%H:%M:%S +0000")
    quoted = f'10.4.0.1 - - [{stamp}] "GET /search?q=\\"x\\" HTTP/1.1" 401 12 "-" "curl/8.0"\n'
    record = parse_access(quoted)
    assert record is not None and record.status == 401
    log = tmp_path / "access.log"
    log.write_text(quoted * 3 + _access("10.4.0.2", when, "/api/trips", 200))
    res = invoke(
        "security", "logs", "--json", "--since", "1h", "--source", str(log),
        settings=settings(tmp_path),
    )  # fmt: skip
    assert res.exit_code == 0, res.stderr
    doc = res.json()
    assert doc["requests"] == 4 and doc["malformed_lines"] == 0
    assert doc["denied"] == {"401": 3, "403": 0, "429": 0}
    assert {r["key"]: r["total"] for r in doc["denied_by_path"]} == {"/search": 3}
