"""`cache` against a real redis-server of each test's own (redis_factory) on 127.0.0.1."""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import redis

from cli import invoke
from fixtures_servers import Backend, RedisServer
from servers import free_port
from travellr_ops.ops.cache import glob_regex
from travellr_ops.settings import Settings

pytestmark = pytest.mark.redis


MATCHING = 2500  # several SCAN batches at the default scan_count
NEAR_MISSES = ["searchX", "search", "xsearch:1", "Search:1", "sear:1", "trip:search:1", "s:search:"]


def settings(url: str, tmp_path: Path, **cache: Any) -> Settings:
    return Settings(
        redis={"url": url, "timeout_s": 2.0},
        cache=cache,
        state_dir=tmp_path / "state",
    )


def client(url: str) -> redis.Redis:
    return redis.Redis.from_url(url)


def fill(url: str) -> None:
    """search:* keys of several types (and one big hash), and keys that nearly match."""
    r = client(url)
    pipe = r.pipeline(transaction=False)
    for i in range(MATCHING):
        pipe.set(f"search:Lisbon:{i}", "x" * 50, ex=300)
    pipe.hset("search:big", mapping={f"f{i}": "v" * 20 for i in range(5000)})
    pipe.rpush("search:list", *range(100))
    for key in NEAR_MISSES:
        pipe.set(key, "keep")
    pipe.set("trip:1", "keep")
    pipe.execute()
    r.close()


@pytest.fixture
def server(redis_factory: Callable[[], RedisServer]) -> RedisServer:
    return redis_factory()


def remaining(url: str) -> set[str]:
    r = client(url)
    keys = {k.decode() for k in r.scan_iter(count=1000)}
    r.close()
    return keys


# ---------------------------------------------------------------------------------- clear


def test_clear_deletes_exactly_the_matching_keys(server: RedisServer, tmp_path: Path) -> None:
    fill(server.url)
    result = invoke(
        "cache", "clear", "search:*", "--yes", "--json", settings=settings(server.url, tmp_path)
    )
    assert result.exit_code == 0, result.stderr
    doc = result.json()
    assert doc["report"]["deleted"] == MATCHING + 2
    assert doc["report"]["method"] == "scan+unlink"
    assert doc["plan"]["matching"] == MATCHING + 2 and doc["plan"]["exact"] is True
    assert remaining(server.url) == {*NEAR_MISSES, "trip:1"}
    audit = [json.loads(x) for x in (tmp_path / "state" / "audit.log").read_text().splitlines()]
    assert audit[-1]["action"] == "cache clear" and audit[-1]["outcome"] == "ok"


def test_clear_with_a_small_scan_count_and_a_rate_still_deletes_exactly(
    server: RedisServer, tmp_path: Path
) -> None:
    fill(server.url)
    s = settings(server.url, tmp_path, scan_count=7)
    result = invoke(
        "cache", "clear", "search:Lisbon:1*", "--yes", "--rate", "100000", "--json", settings=s
    )
    assert result.exit_code == 0, result.stderr
    expected = {f"search:Lisbon:{i}" for i in range(MATCHING) if str(i).startswith("1")}
    assert result.json()["report"]["deleted"] == len(expected)
    left = remaining(server.url)
    assert not expected & left
    assert len(left) == MATCHING + 2 + len(NEAR_MISSES) + 1 - len(expected)


def test_clear_estimates_the_count_of_a_big_keyspace_and_shows_a_sample(
    server: RedisServer, tmp_path: Path
) -> None:
    fill(server.url)
    s = settings(server.url, tmp_path, clear_exact_limit=100)
    result = invoke(
        "cache", "clear", "search:*", "--json", settings=s, interactive=True, input="y\n"
    )
    assert result.exit_code == 0, result.stderr
    plan = result.json()["plan"]
    assert plan["exact"] is False
    assert 0.8 * MATCHING < plan["matching"] < 1.1 * (MATCHING + len(NEAR_MISSES) + 3)
    assert "about" in result.stderr and "search:" in result.stderr
    assert len(plan["sample"]) == 10 and all(k.startswith("search:") for k in plan["sample"])
    assert remaining(server.url) == {*NEAR_MISSES, "trip:1"}


def test_dry_run_counts_exactly_and_changes_nothing(server: RedisServer, tmp_path: Path) -> None:
    fill(server.url)
    before = remaining(server.url)
    s = settings(server.url, tmp_path, clear_exact_limit=0)
    result = invoke("cache", "clear", "search:*", "--dry-run", "--json", settings=s)
    assert result.exit_code == 0, result.stderr
    doc = result.json()
    assert doc["plan"]["matching"] == MATCHING + 2 and doc["plan"]["exact"] is True
    assert doc["report"]["dry_run"] is True and doc["report"]["deleted"] == 0
    assert f"would delete {MATCHING + 2:,} of" in result.stderr
    assert remaining(server.url) == before


def test_clear_asks_first_and_refuses_without_a_terminal(
    server: RedisServer, tmp_path: Path
) -> None:
    fill(server.url)
    before = remaining(server.url)
    s = settings(server.url, tmp_path)
    refused = invoke("cache", "clear", "search:*", settings=s)
    assert refused.exit_code == 4
    assert "--yes" in refused.stderr and f"{MATCHING + 2:,}" in refused.stderr
    declined = invoke("cache", "clear", "search:*", settings=s, interactive=True, input="n\n")
    assert declined.exit_code == 4
    assert remaining(server.url) == before
    accepted = invoke("cache", "clear", "search:*", settings=s, interactive=True, input="y\n")
    assert accepted.exit_code == 0, accepted.stderr
    assert remaining(server.url) == {*NEAR_MISSES, "trip:1"}


def test_clear_everything_flushes_async_but_keeps_the_maintenance_flag(
    server: RedisServer, tmp_path: Path
) -> None:
    fill(server.url)
    s = settings(server.url, tmp_path)
    total = len(remaining(server.url))
    flushed = invoke("cache", "clear", "--yes", "--json", settings=s)
    assert flushed.exit_code == 0, flushed.stderr
    assert flushed.json()["report"]["method"] == "flushdb async"
    assert flushed.json()["report"]["deleted"] == total
    assert remaining(server.url) == set()

    fill(server.url)
    r = client(server.url)
    r.set(s.maintenance.key, json.dumps({"message": "upgrade"}))
    kept = invoke("cache", "clear", "*", "--yes", "--json", settings=s)
    assert kept.exit_code == 0, kept.stderr
    assert kept.json()["report"]["method"] == "scan+unlink"
    assert kept.json()["report"]["deleted"] == total
    assert remaining(server.url) == {s.maintenance.key}
    r.close()


def test_scan_match_and_our_glob_agree_on_tricky_patterns(server: RedisServer) -> None:
    keys = [
        "search:1", "search:", "searchX", "search", "xsearch:1", "a*b", "a?b", "axb", "a[b",
        "h\\llo", "hello", "hallo", "hzllo", "h-llo", "h]llo", "ab", "a", "", "é:1",
    ]  # fmt: skip
    r = client(server.url)
    for key in keys:
        r.set(key, 1)
    patterns = [
        "search:*", "search*", "*search*", "a\\*b", "a?b", "h[ae]llo", "h[^e]llo", "h[a-f]llo",
        "h[f-a]llo", "h[\\]]llo", "h\\\\llo", "a\\[b", "*", "?", "??", "é:*", "h[-]llo",
    ]  # fmt: skip
    for pattern in patterns:
        by_redis = {k.decode() for k in r.scan_iter(match=pattern, count=1000)}
        ours = {k for k in keys if glob_regex(pattern).fullmatch(k.encode())}
        assert ours == by_redis, pattern
    r.close()


@pytest.mark.parametrize("pattern", ["", "sea[rch", "search\\", "a\nb"])
def test_a_bad_pattern_is_a_usage_error(pattern: str, server: RedisServer, tmp_path: Path) -> None:
    fill(server.url)
    result = invoke("cache", "clear", pattern, "--yes", settings=settings(server.url, tmp_path))
    assert result.exit_code == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert len(remaining(server.url)) == MATCHING + 2 + len(NEAR_MISSES) + 1


def test_bad_url_window_and_rate_are_usage_errors(server: RedisServer, tmp_path: Path) -> None:
    bad_url = invoke("cache", "stats", settings=settings("http://127.0.0.1:1/0", tmp_path))
    assert bad_url.exit_code == 2 and "not a Redis URL" in bad_url.stderr
    s = settings(server.url, tmp_path)
    for window in ("0", "-1", "99999"):
        assert invoke("cache", "stats", "--window", window, settings=s).exit_code == 2
    assert invoke("cache", "stats", "--window", "soon", settings=s).exit_code == 2
    assert invoke("cache", "clear", "x*", "--rate", "0", "--yes", settings=s).exit_code == 2


def test_window_takes_the_tools_durations(server: RedisServer, tmp_path: Path) -> None:
    s = settings(server.url, tmp_path)
    result = invoke("cache", "stats", "--window", "300ms", "--json", settings=s)
    assert result.exit_code == 0, result.stderr
    assert result.json()["window_s"] == 0.3


def test_unreachable_redis_and_refused_password_exit_3_without_the_password(
    server: RedisServer, tmp_path: Path
) -> None:
    port = free_port()
    down = invoke(
        "cache", "clear", "x*", "--yes", settings=settings(f"redis://127.0.0.1:{port}/0", tmp_path)
    )
    assert down.exit_code == 3 and "cannot reach Redis" in down.stderr

    r = client(server.url)
    r.set("search:1", 1)
    r.config_set("requirepass", "s3cret-pw")
    r.close()
    wrong = f"redis://:wrong-pw@127.0.0.1:{server.port}/0"
    refused = invoke("cache", "stats", "--window", "0.1", settings=settings(wrong, tmp_path))
    assert refused.exit_code == 3, refused.stderr
    assert "wrong-pw" not in refused.stderr + refused.stdout

    right = f"redis://:s3cret-pw@127.0.0.1:{server.port}/0"
    ok = invoke("cache", "clear", "search:*", "--yes", settings=settings(right, tmp_path))
    assert ok.exit_code == 0, ok.stderr
    audit = (tmp_path / "state" / "audit.log").read_text()
    assert "cache clear" in audit and "s3cret-pw" not in audit
    assert "s3cret-pw" not in ok.stderr + ok.stdout


def test_a_connection_lost_mid_clear_exits_3_and_says_how_many_went(
    server: RedisServer, tmp_path: Path
) -> None:
    r = client(server.url)
    pipe = r.pipeline(transaction=False)
    for i in range(20000):
        pipe.set(f"search:{i}", 1)
    pipe.execute()
    s = settings(server.url, tmp_path, scan_count=100)

    def stop_when_clearing() -> None:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and r.dbsize() > 19000:
            time.sleep(0.02)
        server.stop()

    stopper = threading.Thread(target=stop_when_clearing)
    stopper.start()
    try:
        result = invoke("cache", "clear", "search:*", "--yes", "--rate", "2000", settings=s)
    finally:
        stopper.join()
        r.close()
    assert result.exit_code == 3, result.stderr
    found = re.search(r"([\d,]+) keys already deleted", result.stderr)
    assert found, result.stderr
    # the count is what the server confirmed before the drop: some, not all (replies still in
    # flight when it stopped are not counted, so it may be below what the stopper saw go)
    assert 0 < int(found.group(1).replace(",", "")) < 20000
    audit = [json.loads(x) for x in (tmp_path / "state" / "audit.log").read_text().splitlines()]
    assert audit[-1]["outcome"] == "failed" and "already deleted" in audit[-1]["error"]


# ---------------------------------------------------------------------------------- stats


def test_stats_reports_memory_keys_and_hit_rates(server: RedisServer, tmp_path: Path) -> None:
    fill(server.url)
    r = client(server.url)
    r3 = redis.Redis(host="127.0.0.1", port=server.port, db=3)
    r3.set("other-db", 1)
    r3.close()
    for i in range(90):
        r.get(f"search:Lisbon:{i}")  # hits
    for i in range(10):
        r.get(f"missing:{i}")  # misses
    s = settings(server.url, tmp_path, sample_size=500)
    result = invoke("cache", "stats", "--window", "0.2", "--json", settings=s)
    assert result.exit_code == 0, result.stderr
    doc = result.json()
    assert doc["cluster"] is False and len(doc["nodes"]) == 1
    total = doc["total"]
    assert total["databases"]["db0"]["keys"] == MATCHING + 2 + len(NEAR_MISSES) + 1
    assert total["databases"]["db0"]["expires"] == MATCHING
    assert total["databases"]["db3"]["keys"] == 1
    assert total["used_memory"] > 0 and total["maxmemory_policy"]
    assert doc["hit_rate_pct"] == 90.0
    assert doc["window_hits"] == 0 and doc["window_hit_rate_pct"] is None
    assert doc["verdict"] == "ok"
    shares = {p["prefix"]: p for p in doc["prefixes"]}
    assert doc["sample_size"] == 500
    assert shares["search:"]["share_pct"] > 90 and shares["search:"]["sampled_bytes"] > 0
    assert shares["search:"]["estimated_keys"] > 2000
    r.close()


def test_stats_judges_by_the_recent_window_and_exits_1_under_the_threshold(
    server: RedisServer, tmp_path: Path
) -> None:
    fill(server.url)
    r = client(server.url)
    for i in range(1000):
        r.get(f"search:Lisbon:{i}")  # a warm past: cumulative hit rate 100 %
    stop = threading.Event()

    def misses() -> None:
        c = client(server.url)
        while not stop.is_set():
            c.get("missing")
        c.close()

    worker = threading.Thread(target=misses)
    worker.start()
    try:
        result = invoke(
            "cache", "stats", "--window", "0.5", "--json", settings=settings(server.url, tmp_path)
        )
    finally:
        stop.set()
        worker.join()
        r.close()
    assert result.exit_code == 1, result.stderr
    doc = result.json()
    assert doc["hit_rate_pct"] > 50
    assert doc["window_misses"] > 0 and doc["window_hit_rate_pct"] == 0.0
    assert doc["verdict"] == "warn"
    assert "threshold" in result.stderr


def test_stats_for_people(server: RedisServer, tmp_path: Path) -> None:
    fill(server.url)
    result = invoke("cache", "stats", "--window", "0.1", settings=settings(server.url, tmp_path))
    assert result.exit_code == 0, result.stderr
    assert "memory used" in result.stdout and "search:" in result.stdout
    assert "hit rate" in result.stdout


# ----------------------------------------------------------------------------- keys, bigkeys


def test_keys_lists_type_and_ttl_and_stops_at_the_limit(
    server: RedisServer, tmp_path: Path
) -> None:
    fill(server.url)
    s = settings(server.url, tmp_path)
    result = invoke("cache", "keys", "search:[bl]i*", "--json", settings=s)
    assert result.exit_code == 0, result.stderr
    doc = result.json()
    assert doc["truncated"] is False
    by_key = {k["key"]: k for k in doc["keys"]}
    assert set(by_key) == {"search:big", "search:list"}
    assert by_key["search:big"]["type"] == "hash" and by_key["search:big"]["ttl_s"] is None
    assert by_key["search:list"]["type"] == "list"
    limited = invoke("cache", "keys", "search:Lisbon:*", "--limit", "5", "--json", settings=s)
    entries = limited.json()["keys"]
    assert len(entries) == 5 and limited.json()["truncated"] is True
    assert all(0 < e["ttl_s"] <= 300 and e["type"] == "string" for e in entries)
    assert "more keys match" in limited.stderr


def test_bigkeys_puts_the_big_hash_first(server: RedisServer, tmp_path: Path) -> None:
    fill(server.url)
    result = invoke(
        "cache",
        "bigkeys",
        "--sample",
        "5000",
        "--top",
        "3",
        "--json",
        settings=settings(server.url, tmp_path),
    )
    assert result.exit_code == 0, result.stderr
    doc = result.json()
    total = MATCHING + 2 + len(NEAR_MISSES) + 1
    assert doc["method"] == "sample" and doc["seen"] == total and doc["total_keys"] == total
    assert doc["keys"][0]["key"] == "search:big"
    assert doc["keys"][0]["bytes"] > 100_000 and len(doc["keys"]) == 3


def test_bigkeys_walks_every_key_and_finds_the_one_big_key(
    server: RedisServer, tmp_path: Path
) -> None:
    r = client(server.url)
    pipe = r.pipeline(transaction=False)
    for i in range(20_000):
        pipe.set(f"search:{i}", "x" * 40)
    pipe.set("trip:huge", b"y" * (5 * 2**20))  # 5 MiB among 20,000 small keys
    pipe.execute()
    s = settings(server.url, tmp_path)
    doc = invoke("cache", "bigkeys", "--top", "3", "--json", settings=s).json()
    assert doc["method"] == "scan"
    assert doc["seen"] == doc["total_keys"] == 20_001
    assert doc["keys"][0]["key"] == "trip:huge" and doc["keys"][0]["bytes"] >= 5 * 2**20
    assert doc["keys"][0]["type"] == "string" and len(doc["keys"]) == 3
    human = invoke("cache", "bigkeys", "--top", "3", settings=s).stdout
    assert "trip:huge" in human and "20,001 of 20,001 keys" in human
    paced = invoke("cache", "bigkeys", "--rate", "100000", "--json", settings=s).json()
    assert paced["seen"] == 20_001 and paced["keys"][0]["key"] == "trip:huge"
    r.close()


# ----------------------------------------------------------------------------------- warm

WARM_PATHS = [
    "/api/trips/popular",
    "/api/search?destination=Lisbon&page=1",
    "/api/search?destination=Kyoto&page=1",
    "/api/search?destination=Lima&page=2",
]


@pytest.mark.mongo
def test_warm_fills_the_cache_through_the_backend(
    server: RedisServer,
    seeded_mongo_uri: str,
    backend_factory: Callable[..., Backend],
    tmp_path: Path,
) -> None:
    backend = backend_factory(redis_url=server.url, mongo_uri=seeded_mongo_uri)
    s = Settings(
        redis={"url": server.url, "timeout_s": 2.0},
        api={"url": backend.url, "timeout_s": 10.0},
        cache={"warm_paths": WARM_PATHS, "warm_concurrency": 2},
        state_dir=tmp_path / "state",
    )
    first = invoke("cache", "warm", "--json", settings=s)
    assert first.exit_code == 0, first.stderr
    doc = first.json()
    assert [r["path"] for r in doc["results"]] == WARM_PATHS
    assert all(r["status"] == 200 and r["cache"] == "MISS" for r in doc["results"])
    assert all(r["latency_ms"] > 0 for r in doc["results"])
    assert doc["concurrency"] == 2
    cached = remaining(server.url)
    assert {"trips:popular", "search:Lisbon:1", "search:Kyoto:1", "search:Lima:2"} <= cached

    again = invoke("cache", "warm", "--json", settings=s)
    assert again.exit_code == 0, again.stderr
    doc = again.json()
    assert all(r["cache"] == "HIT" for r in doc["results"])
    assert doc["hit_rate_after_pct"] > (doc["hit_rate_before_pct"] or 0)

    human = invoke(
        "cache", "warm", "--path", "/api/trips/popular", "--path", "/api/nope", settings=s
    )
    assert human.exit_code == 1
    assert "404" in human.stdout and "1 of 2 endpoints failed" in human.stderr


def test_warm_needs_endpoints_and_a_backend(server: RedisServer, tmp_path: Path) -> None:
    s = settings(server.url, tmp_path)
    none = invoke("cache", "warm", settings=s)
    assert none.exit_code == 2 and "warm_paths" in none.stderr
    bad = invoke("cache", "warm", "--path", "api/x", settings=s)
    assert bad.exit_code == 2
    port = free_port()
    s = Settings(
        redis={"url": server.url},
        api={"url": f"http://127.0.0.1:{port}", "timeout_s": 2.0},
        state_dir=tmp_path / "state",
    )
    down = invoke("cache", "warm", "--path", "/api/trips/popular", "--json", settings=s)
    assert down.exit_code == 1
    assert "connection refused" in down.json()["results"][0]["error"]


def test_rate_paces_the_deletes_in_small_batches(server: RedisServer) -> None:
    from travellr_ops.adapters.redis import RedisAdapter
    from travellr_ops.ops.cache import clear, plan_clear

    fill(server.url)
    adapter = RedisAdapter(server.url)
    plan = plan_clear(
        adapter, "search:*", keep=[], count_exactly=True, exact_limit=0, scan_count=1000
    )
    pauses: list[float] = []
    report = clear(adapter, plan, scan_count=1000, rate=1000, sleep=pauses.append)
    adapter.close()
    assert report.deleted == MATCHING + 2
    # 2,502 keys at 1,000/s: the pauses owed add up to about 2.5 s by the last batch
    assert max(pauses) > 2.0
    assert len(pauses) >= 20  # batches of about rate/10 keys, not one big one
    assert remaining(server.url) == {*NEAR_MISSES, "trip:1"}


def test_nothing_to_delete_needs_no_confirmation(server: RedisServer, tmp_path: Path) -> None:
    fill(server.url)
    result = invoke(
        "cache", "clear", "nomatch:*", "--json", settings=settings(server.url, tmp_path)
    )
    assert result.exit_code == 0, result.stderr
    assert result.json()["report"]["deleted"] == 0
    assert "nothing to delete" in result.stderr
    assert not (tmp_path / "state" / "audit.log").exists()


def test_a_pattern_that_covers_the_maintenance_flag_leaves_it(
    server: RedisServer, tmp_path: Path
) -> None:
    s = settings(server.url, tmp_path)
    r = client(server.url)
    r.set(s.maintenance.key, json.dumps({"message": "upgrade"}))
    r.set("travellr:counter", 1)
    r.set("travellr:sessions", 2)
    result = invoke("cache", "clear", "travellr:*", settings=s, interactive=True, input="y\n")
    assert result.exit_code == 0, result.stderr
    assert f"keeping {s.maintenance.key}" in result.stderr
    assert remaining(server.url) == {s.maintenance.key}
    r.close()


def test_a_clear_matching_only_the_maintenance_flag_says_so(
    server: RedisServer, tmp_path: Path
) -> None:
    s = settings(server.url, tmp_path)
    r = client(server.url)
    r.set(s.maintenance.key, json.dumps({"message": "upgrade"}))
    r.set("search:1", 1)
    r.close()
    result = invoke("cache", "clear", "travellr:*", settings=s)
    assert result.exit_code == 0, result.stderr
    assert "no key matches" not in result.stderr
    assert f"only {s.maintenance.key} matches" in result.stderr
    assert "maintenance off" in result.stderr
    assert remaining(server.url) == {s.maintenance.key, "search:1"}


@pytest.mark.parametrize("refusal", ["readonly", "noperm"])
def test_a_clear_refused_by_a_running_redis_does_not_wait_for_it_to_come_back(
    refusal: str, server: RedisServer, tmp_path: Path
) -> None:
    r = client(server.url)
    r.mset({f"search:{i}": 1 for i in range(50)})
    url = server.url
    if refusal == "readonly":  # a replica (of a primary that is not there) refuses writes
        r.replicaof("127.0.0.1", free_port())
    else:  # an ACL user allowed to read but not to delete
        r.acl_setuser(
            "reader",
            enabled=True,
            passwords=["+pw"],
            keys=["*"],
            commands=["+@all", "-unlink", "-del", "-flushdb"],
        )
        url = f"redis://reader:pw@127.0.0.1:{server.port}/0"
    try:
        for pattern in ("search:*", "*"):
            result = invoke("cache", "clear", pattern, "--yes", settings=settings(url, tmp_path))
            assert result.exit_code == 3, result.stderr
            assert ("READONLY" if refusal == "readonly" else "NOPERM") in result.stderr
            assert "when Redis is back" not in result.stderr
            assert "run the same clear again" in result.stderr
            hint = "replica" if refusal == "readonly" else "ACL"
            assert hint in result.stderr.split("hint:")[1]
        assert r.dbsize() == 50
    finally:
        r.replicaof("NO", "ONE")
        r.close()


def test_stats_over_too_few_lookups_is_insufficient_not_a_warning(
    server: RedisServer, tmp_path: Path
) -> None:
    r = client(server.url)
    for i in range(5):
        r.get(f"missing:{i}")  # 0 % since start, over 5 lookups: says nothing yet
    r.close()
    result = invoke(
        "cache", "stats", "--window", "0.1", "--json", settings=settings(server.url, tmp_path)
    )
    assert result.exit_code == 0, result.stderr
    doc = result.json()
    assert doc["hit_rate_pct"] == 0.0 and doc["verdict"] == "insufficient"
