"""`cache` and `maintenance` on a real three-primary Redis Cluster on 127.0.0.1.

The cluster is this module's own (it is flushed here), started like the shared fixture's.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from redis.cluster import RedisCluster as ClusterClient

from cli import invoke
from fixtures_servers import RedisCluster, _discard_quietly, _require, _started
from travellr_ops.settings import Settings

pytestmark = pytest.mark.redis

MATCHING = 3000
NEAR_MISSES = ["searchX", "search", "xsearch:1", "Search:1", "trip:search:1"]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisCluster]:
    _require("redis-server", "scripts/testbed/redis.sh install")
    started = _started(RedisCluster(tmp_path_factory.mktemp("cache-cluster")))
    yield started
    _discard_quietly(started)


@pytest.fixture
def cc(cluster: RedisCluster) -> Iterator[ClusterClient]:
    client = ClusterClient.from_url(cluster.url)
    client.flushall(target_nodes=ClusterClient.PRIMARIES)
    yield client
    client.close()


def settings(url: str, tmp_path: Path, **cache: Any) -> Settings:
    return Settings(redis={"url": url, "timeout_s": 3.0}, cache=cache, state_dir=tmp_path / "state")


def fill(cc: ClusterClient) -> None:
    pipe = cc.pipeline()
    for i in range(MATCHING):
        pipe.set(f"search:{i}", "x", ex=600)
    for key in NEAR_MISSES:
        pipe.set(key, "keep")
    for i in range(50):
        pipe.set(f"trip:{i}", "keep")
    pipe.execute()


def all_keys(cc: ClusterClient) -> set[str]:
    return {k.decode() for k in cc.scan_iter(count=1000)}


def per_node_counts(cluster: RedisCluster) -> dict[str, int]:
    counts = {}
    for port in cluster.ports:
        node = redis.Redis(host="127.0.0.1", port=port)
        counts[f"127.0.0.1:{port}"] = node.dbsize()
        node.close()
    return counts


def test_clear_walks_every_primary_and_deletes_exactly_the_matches(
    cluster: RedisCluster, cc: ClusterClient, tmp_path: Path
) -> None:
    fill(cc)
    before = per_node_counts(cluster)
    assert all(n > 0 for n in before.values())  # the keys really are spread
    result = invoke(
        "cache", "clear", "search:*", "--yes", "--json", settings=settings(cluster.url, tmp_path)
    )
    assert result.exit_code == 0, result.stderr
    doc = result.json()
    assert doc["report"]["deleted"] == MATCHING
    assert len(doc["plan"]["nodes"]) == 3 and doc["plan"]["matching"] == MATCHING
    per_node = doc["report"]["per_node"]
    assert set(per_node) == set(before) and all(n > 0 for n in per_node.values())
    assert sum(per_node.values()) == MATCHING
    assert all_keys(cc) == {*NEAR_MISSES, *(f"trip:{i}" for i in range(50))}


def test_dry_run_on_a_cluster_changes_nothing(
    cluster: RedisCluster, cc: ClusterClient, tmp_path: Path
) -> None:
    fill(cc)
    before = all_keys(cc)
    result = invoke(
        "cache",
        "clear",
        "search:*",
        "--dry-run",
        "--json",
        settings=settings(cluster.url, tmp_path),
    )
    assert result.exit_code == 0, result.stderr
    assert result.json()["plan"]["matching"] == MATCHING
    assert all_keys(cc) == before


def test_clear_everything_flushes_each_primary_but_keeps_the_flag(
    cluster: RedisCluster, cc: ClusterClient, tmp_path: Path
) -> None:
    fill(cc)
    s = settings(cluster.url, tmp_path)
    total = len(all_keys(cc))
    flushed = invoke("cache", "clear", "--yes", "--json", settings=s)
    assert flushed.exit_code == 0, flushed.stderr
    assert flushed.json()["report"]["method"] == "flushdb async"
    assert flushed.json()["report"]["deleted"] == total
    assert all_keys(cc) == set()

    fill(cc)
    cc.set(s.maintenance.key, json.dumps({"message": "m"}))
    kept = invoke("cache", "clear", "--yes", "--json", settings=s)
    assert kept.exit_code == 0, kept.stderr
    assert kept.json()["report"]["method"] == "scan+unlink"
    assert all_keys(cc) == {s.maintenance.key}


def test_stats_per_node_and_in_total(
    cluster: RedisCluster, cc: ClusterClient, tmp_path: Path
) -> None:
    fill(cc)
    for i in range(40):
        cc.get(f"search:{i}")
    result = invoke(
        "cache", "stats", "--window", "0.2", "--json", settings=settings(cluster.url, tmp_path)
    )
    assert result.exit_code in (0, 1), result.stderr
    doc = result.json()
    assert doc["cluster"] is True and len(doc["nodes"]) == 3
    assert doc["total"]["node"] == "total"
    keys = [n["databases"]["db0"]["keys"] for n in doc["nodes"]]
    assert sum(keys) == doc["total"]["databases"]["db0"]["keys"] == MATCHING + len(NEAR_MISSES) + 50
    counts = per_node_counts(cluster)
    assert {n["node"]: n["databases"]["db0"]["keys"] for n in doc["nodes"]} == counts
    assert doc["total"]["keyspace_hits"] == sum(n["keyspace_hits"] for n in doc["nodes"])
    assert {p["prefix"] for p in doc["prefixes"]} >= {"search:", "trip:"}
    human = invoke("cache", "stats", "--window", "0.1", settings=settings(cluster.url, tmp_path))
    assert "total" in human.stdout and "3 primaries" in human.stdout


def test_keys_and_bigkeys_span_the_primaries(
    cluster: RedisCluster, cc: ClusterClient, tmp_path: Path
) -> None:
    fill(cc)
    cc.hset("trip:big", mapping={f"f{i}": "v" * 30 for i in range(3000)})
    s = settings(cluster.url, tmp_path)
    listed = invoke("cache", "keys", "trip:*", "--limit", "1000", "--json", settings=s)
    assert listed.exit_code == 0, listed.stderr
    entries = listed.json()["keys"]
    assert {e["key"] for e in entries} == {
        *(f"trip:{i}" for i in range(50)),
        "trip:big",
        "trip:search:1",
    }
    assert len({e["node"] for e in entries}) == 3
    big = invoke("cache", "bigkeys", "--sample", "10000", "--top", "1", "--json", settings=s)
    assert big.exit_code == 0, big.stderr
    assert big.json()["keys"][0]["key"] == "trip:big"
    every = invoke("cache", "bigkeys", "--top", "1", "--json", settings=s).json()
    assert every["method"] == "scan" and every["seen"] == every["total_keys"] == cc.dbsize(
        target_nodes=ClusterClient.PRIMARIES
    )
    assert every["keys"][0]["key"] == "trip:big"


def test_maintenance_on_a_cluster(cluster: RedisCluster, cc: ClusterClient, tmp_path: Path) -> None:
    s = settings(cluster.url, tmp_path)
    on = invoke("maintenance", "on", "-m", "cluster work", "--until", "10m", "--yes", settings=s)
    assert on.exit_code == 0, on.stderr
    flag = json.loads(cc.get(s.maintenance.key) or b"{}")
    assert flag["message"] == "cluster work" and flag["until"]
    assert 0 < cc.ttl(s.maintenance.key) <= 600
    assert invoke("maintenance", "status", "--json", settings=s).json()["on"] is True
    assert invoke("maintenance", "off", "--yes", settings=s).exit_code == 0
    assert cc.get(s.maintenance.key) is None


def test_a_cluster_has_only_database_0(cluster: RedisCluster, tmp_path: Path) -> None:
    url = cluster.url.rsplit("/", 1)[0] + "/2"
    result = invoke("cache", "keys", "*", settings=settings(url, tmp_path))
    assert result.exit_code == 2 and "database 0" in result.stderr
