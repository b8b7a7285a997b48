"""`incident` against real servers: redis-server, SecantusDB and the stand-in backend of the
test's own. The evidence at opening, a source down or hanging, the changes made meanwhile in
the timeline (from the audit log), the post-incident record, two writers at once."""

from __future__ import annotations

import json
import re
import socket
import stat
import subprocess
import sys
import textwrap
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from cli import invoke
from fixtures_servers import Backend, RedisServer
from travellr_ops.settings import Settings

CONTACTS = [
    {"level": 1, "name": "Ops on call", "contact": "+44 20 0000 0001"},
    {"level": 2, "name": "Backend engineers", "contact": "#eng-incidents"},
    {"level": 3, "name": "CTO", "contact": "cto@travellr.test"},
]


@dataclass
class Platform:
    redis: RedisServer
    mongo_uri: str
    backend: Backend
    tmp: Path

    def settings(self, **over: Any) -> Settings:
        values: dict[str, Any] = {
            "platform": "none",
            "state_dir": self.tmp / "state",
            "disk_paths": [self.tmp],
            "mongo": {"uri": self.mongo_uri, "timeout_s": 3.0},
            "redis": {"url": self.redis.url, "timeout_s": 3.0},
            "api": {"url": self.backend.url, "timeout_s": 5.0},
            "backup": {"dir": self.tmp / "backups"},
            "logs": {"access_log": self.backend.access_log, "app_log": self.backend.app_log},
            "incident": {"contacts": CONTACTS, "evidence_log_lines": 20},
            # limits this shared 2-core machine cannot breach by load alone: the evidence is
            # about what answered, not how fast
            "thresholds": {"api_response_ms": 60_000.0, "db_query_ms": 60_000.0, "disk_pct": 100.0},
        }
        values.update(over)
        return Settings(**values)


@pytest.fixture
def platform(
    tmp_path: Path,
    redis_factory: Callable[[], RedisServer],
    seeded_mongo_uri: str,
    backend_factory: Callable[..., Backend],
) -> Platform:
    redis = redis_factory()
    backend = backend_factory(redis_url=redis.url, mongo_uri=seeded_mongo_uri)
    return Platform(redis, seeded_mongo_uri, backend, tmp_path)


def evidence(doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {e["source"]: e for e in doc["evidence"]}


@pytest.mark.redis
@pytest.mark.mongo
def test_open_with_everything_up_captures_the_evidence(platform: Platform) -> None:
    with urllib.request.urlopen(platform.backend.url + "/api/search?destination=Oslo") as r:
        assert r.status == 200
    s = platform.settings()
    res = invoke("incident", "open", "Checkout returns 500", "--severity", "2", settings=s)
    assert res.exit_code == 0, res.stderr
    lines = res.stdout.splitlines()
    assert re.fullmatch(r"INC-\d{8}-1", lines[0])  # the ID first, alone on its line
    incident_id = lines[0]
    assert "Level 2 (engineering)" in res.stdout and "Backend engineers" in res.stdout
    for n, step in enumerate(("Identify", "Contain", "Eradicate", "Recover", "Document"), 1):
        assert f"{n}. {step}" in res.stdout

    doc = invoke("incident", "show", incident_id, "--json", settings=s).json()
    ev = evidence(doc)
    assert set(ev) == {
        "health",
        "db status",
        "cache stats",
        "maintenance",
        "access log",
        "app log",
        "doctor",
    }
    assert all(e["state"] == "ok" for e in ev.values()), ev
    assert ev["doctor"]["data"]["verdict"] in ("healthy", "fail")  # doctor's ranked causes
    assert {c["check"] for c in ev["doctor"]["data"]["checks"]} >= {"health", "mongodb", "cache"}
    assert ev["health"]["detail"].startswith("healthy")
    assert {c["name"]: c["verdict"] for c in ev["health"]["data"]["checks"]}["redis"] == "ok"
    assert ev["maintenance"]["detail"] == "off"
    assert ev["db status"]["data"]["version"]  # serverStatus vitals
    assert "hit rate" in ev["cache stats"]["detail"]
    assert any("/api/search?destination=Oslo" in line for line in ev["access log"]["data"]["lines"])
    assert doc["escalation"]["call"] == [CONTACTS[1]]
    assert doc["escalation"]["engaged"] == [CONTACTS[0]]
    assert doc["status"] == "open" and doc["severity"] == 2

    md = s.state_dir / "incidents" / f"{incident_id}.md"
    js = s.state_dir / "incidents" / f"{incident_id}.json"
    text = md.read_text()
    for heading in ("## 1. Identify", "## 2. Contain", "## 3. Eradicate", "## 4. Recover"):
        assert heading in text
    assert "## 5. Document" in text and "#eng-incidents" in text
    assert json.loads(js.read_text())["id"] == incident_id
    assert stat.S_IMODE(md.stat().st_mode) == 0o600 == stat.S_IMODE(js.stat().st_mode)

    again = invoke("incident", "open", "second", "-s", "1", "--json", settings=s)
    assert again.json()["id"] == incident_id.rsplit("-", 1)[0] + "-2"


@pytest.mark.redis
@pytest.mark.mongo
def test_open_with_redis_stopped_records_it_down_and_opens(platform: Platform) -> None:
    platform.redis.stop()
    s = platform.settings()
    res = invoke("incident", "open", "Cache down", "--severity", "3", "--json", settings=s)
    assert res.exit_code == 0, res.stderr
    ev = evidence(res.json())
    assert ev["cache stats"]["state"] == ev["maintenance"]["state"] == "down"
    assert "cannot reach Redis" in ev["cache stats"]["detail"]
    assert ev["db status"]["state"] == "ok"
    assert "redis down" in ev["health"]["detail"]
    assert "no answer from cache stats, maintenance" in res.stderr
    assert res.json()["escalation"]["name"] == "Level 3 (senior engineering)"


@pytest.fixture
def black_hole() -> Iterator[int]:
    """A port that accepts connections (the kernel's backlog) and never answers."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    yield int(sock.getsockname()[1])
    sock.close()


@pytest.mark.redis
@pytest.mark.mongo
def test_a_source_that_hangs_is_recorded_as_timeout(platform: Platform, black_hole: int) -> None:
    s = platform.settings(
        redis={"url": f"redis://127.0.0.1:{black_hole}/0", "timeout_s": 6.0},
        incident={"evidence_timeout_s": 1.0},
    )
    res = invoke("incident", "open", "Redis hangs", "-s", "2", "--json", settings=s)
    assert res.exit_code == 0, res.stderr
    ev = evidence(res.json())
    assert ev["cache stats"]["state"] == ev["maintenance"]["state"] == "timeout"
    assert ev["cache stats"]["detail"] == "no answer within 1 s"
    assert ev["access log"]["state"] == "ok"  # the rest is still there


@pytest.mark.redis
@pytest.mark.mongo
def test_changes_during_the_incident_are_in_its_timeline_and_close_writes_the_record(
    platform: Platform,
) -> None:
    s = platform.settings()
    before = invoke("maintenance", "off", "--yes", settings=s)  # before the incident: not in it
    assert before.exit_code == 0
    incident_id = invoke("incident", "open", "Bookings fail", "-s", "1", "--json", settings=s)
    incident_id = incident_id.json()["id"]
    assert (
        invoke("incident", "step", incident_id, "contain", "stop traffic", settings=s).exit_code
        == 0
    )
    on = invoke("maintenance", "on", "--message", "fixing bookings", "--yes", settings=s)
    assert on.exit_code == 0, on.stderr
    assert (
        invoke("incident", "note", incident_id, "bookings index missing", settings=s).exit_code == 0
    )
    assert invoke("incident", "step", incident_id, "eradicate", settings=s).exit_code == 0
    assert invoke("incident", "step", incident_id, "recover", settings=s).exit_code == 0
    assert invoke("maintenance", "off", "--yes", settings=s).exit_code == 0
    assert invoke("incident", "step", incident_id, "document", settings=s).exit_code == 0

    shown = invoke("incident", "show", incident_id, "--json", settings=s).json()
    assert [c["action"] for c in shown["commands"]] == ["maintenance on", "maintenance off"]
    res = invoke("incident", "close", incident_id, "index created", "--json", settings=s)
    assert res.exit_code == 0, res.stderr
    doc = res.json()
    assert doc["status"] == "closed"
    assert [(c["action"], c["outcome"]) for c in doc["commands"]] == [
        ("maintenance on", "ok"),
        ("maintenance off", "ok"),
    ]
    assert "--message fixing bookings" in doc["commands"][0]["command"]
    assert 0 <= doc["time_to_recovery_s"] <= doc["duration_s"]
    kinds = [(t["kind"], t["step"]) for t in doc["timeline"]]
    assert ("command", "") in kinds and ("step", "recover") in kinds
    note = doc["steps"]["contain"]["entries"]
    assert [e["text"] for e in note] == ["stop traffic", "bookings index missing"]

    md = Path(doc["record"]["markdown"]).read_text()
    js = json.loads(Path(doc["record"]["json"]).read_text())
    assert js["closed_at"] == doc["closed_at"] and js["commands"] == doc["commands"]
    assert "**Duration:**" in md and "**Time to recovery:**" in md
    assert "| maintenance on | ok |" in md and "| maintenance off | ok |" in md

    # after closing: an untagged change is not the incident's; one made with --incident is
    assert invoke("maintenance", "off", "--yes", settings=s).exit_code == 0
    tagged = invoke("--incident", incident_id, "maintenance", "on", "--yes", settings=s)
    assert tagged.exit_code == 0, tagged.stderr
    later = invoke("incident", "show", incident_id, "--json", settings=s).json()
    assert [(c["action"], c["tagged"]) for c in later["commands"]] == [
        ("maintenance on", False),
        ("maintenance off", False),
        ("maintenance on", True),
    ]
    assert invoke("incident", "close", incident_id, settings=s).exit_code == 2  # closed already


def test_bad_severity_unknown_id_and_bad_step_exit_2(tmp_path: Path) -> None:
    s = Settings(platform="none", state_dir=tmp_path / "state")
    for bad in ("0", "4", "high"):
        res = invoke("incident", "open", "x", "--severity", bad, settings=s)
        assert res.exit_code == 2, bad
    assert invoke("incident", "open", "no severity", settings=s).exit_code == 2
    for args in (
        ("note", "INC-20990101-1", "text"),
        ("step", "INC-20990101-1", "recover"),
        ("close", "INC-20990101-1"),
        ("show", "INC-20990101-1"),
    ):
        res = invoke("incident", *args, settings=s)
        assert res.exit_code == 2 and "no incident 'INC-20990101-1'" in res.stderr, args
    res = invoke("--incident", "INC-20990101-1", "maintenance", "off", "--yes", settings=s)
    assert res.exit_code == 2 and "no incident" in res.stderr
    assert not (tmp_path / "state" / "audit.log").exists()  # refused before any change

    from travellr_ops.ops.incident import record
    from travellr_ops.ops.incident.procedure import store_for

    store = store_for(s)
    incident_id = record.create(store, "t", 1, "me", 1_800_000_000.0).id
    store.close()
    res = invoke("incident", "step", incident_id, "celebrate", settings=s)
    assert res.exit_code == 2 and "unknown step 'celebrate'" in res.stderr
    assert invoke("incident", "list", "--json", settings=s).json()["incidents"][0]["id"] == (
        incident_id
    )


def test_two_processes_noting_at_once_lose_nothing(tmp_path: Path) -> None:
    state = tmp_path / "state"
    config = tmp_path / "travellr-ops.toml"
    config.write_text(
        f'platform = "none"\nstate_dir = "{state}"\n[monitor]\nstore_timeout_s = 60\n'
    )
    from travellr_ops.ops.incident import record
    from travellr_ops.ops.incident.procedure import store_for

    store = store_for(Settings(platform="none", state_dir=state))
    incident_id = record.create(store, "two engineers", 2, "me", 1_800_000_000.0).id
    store.close()
    script = textwrap.dedent(
        """
        import sys
        from travellr_ops.cli.app import run
        config, incident, who = sys.argv[1:]
        codes = [run(["--config", config, "incident", "note", incident, f"{who}-{i}", "-q"])
                 for i in range(40)]
        sys.exit(max(codes))
        """
    )
    procs = [
        subprocess.Popen([sys.executable, "-c", script, str(config), incident_id, who])
        for who in ("ana", "ben")
    ]
    assert [p.wait(timeout=300) for p in procs] == [0, 0]
    # the record the last writer left holds every note, as the store does
    md = (state / "incidents" / f"{incident_id}.md").read_text()
    assert all(f": ana-{i}\n" in md and f": ben-{i}\n" in md for i in range(40))
    doc = invoke("--config", str(config), "incident", "show", incident_id, "--json").json()
    notes = sorted(t["text"] for t in doc["timeline"] if t["kind"] == "note")
    assert notes == sorted(f"{who}-{i}" for who in ("ana", "ben") for i in range(40))
