"""`security report`: the audit (the sandbox lockfile against the shipped OSV records), the log
review (generated logs with known counts) and the posture (a real redis-server) on one page,
and what changed between two reports."""

from __future__ import annotations

import shutil
import stat
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

from cli import invoke
from fixtures_servers import REPO, RedisServer
from travellr_ops.settings import Settings

SANDBOX = REPO / "scripts" / "sandbox"
OSV = Path(__file__).parent / "data" / "osv"


def _access(ip: str, when: datetime, path: str, status: int) -> str:
    stamp = when.strftime("%d/%b/%Y:%H:%M:%S +0000")
    return f'{ip} - - [{stamp}] "GET {path} HTTP/1.1" {status} 17 "-" "curl/8.0"\n'


def _failed_login(when: datetime, email: str, ip: str) -> str:
    stamp = when.strftime("%Y-%m-%dT%H:%M:%S.000Z")
    return f"{stamp} WARN login failed email={email} ip={ip}\n"


class _Page(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[str] = []
        self.outside: list[str] = []  # any attribute that would load something
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        self.outside += [f"{tag} {k}={v}" for k, v in attrs if k in ("src", "href")]

    def handle_data(self, data: str) -> None:
        self.text.append(data)


@pytest.mark.redis
def test_one_page_and_what_changed_since_the_previous_report(
    tmp_path: Path, redis_factory: Callable[[], RedisServer]
) -> None:
    redis = redis_factory()
    now = datetime.now(UTC).replace(microsecond=0)
    logs = tmp_path / "logs"
    logs.mkdir()
    access, app = logs / "access.log", logs / "app.log"
    access.write_text(
        _access("10.2.0.1", now - timedelta(hours=3), "/admin", 403) * 4
        + _access("10.2.0.2", now - timedelta(hours=2), "/api/bookings", 401) * 2
        + _access("10.2.0.3", now - timedelta(days=10), "/admin", 403) * 5  # outside 7d
        + _access("10.2.0.4", now - timedelta(hours=1), "/api/search", 200) * 20
    )
    app.write_text(_failed_login(now - timedelta(hours=1), "ana@travellr.test", "10.2.0.2") * 3)
    backend = tmp_path / "backend"
    backend.mkdir()
    for name in ("package.json", "package-lock.json"):
        shutil.copy(SANDBOX / name, backend / name)
    state = tmp_path / "state"
    state.mkdir(mode=0o700)

    def settings(redis_url: str) -> Settings:
        return Settings(
            platform="none",
            state_dir=state,
            redis={"url": redis_url, "timeout_s": 3.0},
            mongo={"uri": "mongodb://127.0.0.1:1/travellr", "timeout_s": 1.0},
            backup={"dir": tmp_path / "backups"},
            logs={"access_log": access, "app_log": app},
            security={
                "backend_dir": backend,
                "advisories_dir": OSV,
                "live_audit": False,
                "bruteforce_failures": 5,
            },
        )

    first = invoke("security", "report", settings=settings(redis.url))
    assert first.exit_code == 1, first.stderr  # advisories at high+ and redis.auth fails
    md = first.stdout
    assert md.startswith("# Travellr security report, ")
    for heading in ("## Dependency audit", "## Log review (since 7d)", "## Posture"):
        assert heading in md
    assert "- first report: nothing to compare with yet" in md
    for advisory in ("GHSA-35jh-r3h4-6jhm", "GHSA-xvch-5gv4-984h", "GHSA-27h2-hvpr-p74q"):
        assert advisory in md
    assert "26 requests; 401: 2, 403: 4, 429: 0; 3 failed logins; 0 rate-limit hits" in md
    assert "| redis.auth | fail |" in md and "| mongo.auth | unknown |" in md

    # a week later: lodash patched, Redis given a password, a brute force, more 401s
    lock = backend / "package-lock.json"
    lock.write_text(lock.read_text().replace('"version": "4.17.20"', '"version": "4.17.21"'))
    import redis as redis_py

    redis_py.Redis.from_url(redis.url).config_set("requirepass", "weekly-pw")
    with app.open("a") as f:
        f.write(_failed_login(now - timedelta(minutes=30), "ben@travellr.test", "10.9.9.9") * 6)
    with access.open("a") as f:
        f.write(_access("10.9.9.9", now - timedelta(minutes=20), "/api/auth/login", 401) * 6)
    page = tmp_path / "out" / "report.html"
    page.parent.mkdir()
    locked = f"redis://:weekly-pw@127.0.0.1:{redis.port}/0"
    second = invoke("security", "report", "--html", str(page), settings=settings(locked))
    assert second.exit_code == 1, second.stderr  # still minimist/jsonwebtoken, a suspect
    assert second.stdout == ""  # the page went to the file
    parsed = _Page()
    parsed.feed(page.read_text())
    assert parsed.outside == [] and "script" not in parsed.tags  # self-contained
    assert {"table", "h1", "h2", "ul", "style"} <= set(parsed.tags)
    text = "\n".join(parsed.text)
    for change in (
        "resolved advisory: GHSA-35jh-r3h4-6jhm lodash 4.17.20 (high)",
        "401 responses: 2 -> 8 (+6)",
        "failed logins: 3 -> 9 (+6)",
        "new brute-force suspect: 10.9.9.9",
        "check redis.auth: fail -> pass",
    ):
        assert change in text, change
    assert "new advisory" not in text and "weekly-pw" not in page.read_text()
    assert stat.S_IMODE(page.stat().st_mode) == 0o600

    third = invoke("security", "report", "--json", settings=settings(locked))
    doc: dict[str, Any] = third.json()
    assert doc["changes"] == ["no change"]
    assert doc["previous_at"] is not None
    assert sorted(doc["summary"]["logs"]["suspects"]) == ["10.9.9.9"]
    assert doc["problems"] == [
        "2 advisory finding(s) at high+",
        "1 brute-force suspect(s)",
    ]


def test_nothing_assessable_is_unknown_exit_3_and_bad_since_exit_2(tmp_path: Path) -> None:
    s = Settings(
        platform="none",
        state_dir=tmp_path / "state",
        redis={"url": "redis://127.0.0.1:1/0", "timeout_s": 1.0},
        mongo={"uri": "mongodb://127.0.0.1:1/travellr", "timeout_s": 1.0},
        logs={"access_log": tmp_path / "none.log", "app_log": tmp_path / "none2.log"},
        security={"backend_dir": SANDBOX, "live_audit": False},  # no advisory database
    )
    res = invoke("security", "report", settings=s)
    assert res.exit_code == 3, res.stderr
    assert "Unknown: audit, logs could not be assessed." in res.stdout
    assert "no advisory source answered" in res.stdout
    assert invoke("security", "report", "--since", "last week", settings=s).exit_code == 2
    # an --html file that cannot be written is the user's to fix (exit 2), as in `monitor report`
    nowhere = tmp_path / "no-such-dir" / "report.html"
    unwritable = invoke("security", "report", "--html", str(nowhere), settings=s)
    assert unwritable.exit_code == 2, unwritable.stderr
    assert str(nowhere) in unwritable.stderr and not nowhere.parent.exists()
