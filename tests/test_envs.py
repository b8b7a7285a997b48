"""Named environments: two sandboxes as staging and production, on real servers.

Production is protected: a change there needs its name typed (or --yes --confirm-env
production without a terminal); a typo, or no terminal, changes nothing. The reading commands
fan out over both (`--env all`), and one environment being down is reported beside the other.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import redis as redis_lib

from cli import Result, invoke
from fixtures_servers import Backend, MongoServer, RedisServer, ServerSet

pytestmark = [pytest.mark.redis, pytest.mark.mongo]


@dataclass
class Sandbox:
    redis: RedisServer
    mongo: MongoServer
    backend: Backend

    def keys(self) -> list[str]:
        client = redis_lib.Redis.from_url(self.redis.url, decode_responses=True)
        try:
            return sorted(client.keys("trip:*"))
        finally:
            client.close()

    def fill(self) -> None:
        client = redis_lib.Redis.from_url(self.redis.url)
        try:
            client.mset({f"trip:{n}": "x" for n in range(5)})
        finally:
            client.close()


@pytest.fixture(scope="module")
def sandboxes(module_servers: ServerSet) -> dict[str, Sandbox]:
    made = {}
    for name in ("staging", "production"):
        r = module_servers.redis()
        m = module_servers.mongo(memory=True)
        b = module_servers.backend(redis_url=r.url, mongo_uri=m.uri)
        made[name] = Sandbox(r, m, b)
    return made


@pytest.fixture(autouse=True)
def _no_outside_settings(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import os

    for name in list(os.environ):
        if name.startswith("TRAVELLR_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)


@pytest.fixture
def config(tmp_path: Path, sandboxes: dict[str, Sandbox]) -> Iterator[Path]:
    """Both sandboxes as environments of one config file; each starts with 5 trip keys."""
    lines = [
        'platform = "none"',
        'default_env = "staging"',
        f'state_dir = "{tmp_path / "state"}"',
        f"disk_paths = [{json.dumps(str(tmp_path))}]",
        "[mongo]\ntimeout_s = 2.0",
        "[redis]\ntimeout_s = 2.0",
        "[api]\ntimeout_s = 2.0",
        "[monitor]\nwindow_s = 0.2\napi_probes = 1\ndb_query_runs = 1",
        # a loaded CI machine must not turn these tests about environments into slow-API ones
        "[thresholds]\napi_response_ms = 60000\ndb_query_ms = 60000",
        f'[backup]\ndir = "{tmp_path / "backups"}"',
    ]
    for name, box in sandboxes.items():
        lines += [
            f"[env.{name}]",
            f'mongo.uri = "{box.mongo.uri}"',
            f'redis.url = "{box.redis.url}"',
            f'api.url = "{box.backend.url}"',
        ]
        if name == "production":
            lines.append("protected = true")
        box.fill()
    path = tmp_path / "travellr-ops.toml"
    path.write_text("\n".join(lines) + "\n")
    yield path
    for box in sandboxes.values():
        if not box.redis.running:
            box.redis.start()


def run(config: Path, *args: str, **kwargs: Any) -> Result:
    return invoke("--config", str(config), *args, **kwargs)


def audit(config: Path, environment: str = "production") -> list[dict[str, Any]]:
    """The audit log of ``environment`` (each keeps its state in STATE_DIR/env/NAME)."""
    path = config.parent / "state" / "env" / environment / "audit.log"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


# -- the production guard ---------------------------------------------------------------------
def test_a_change_in_production_needs_its_name_typed(
    config: Path, sandboxes: dict[str, Sandbox]
) -> None:
    result = run(
        config, "--env", "production", "cache", "clear", "trip:*",
        interactive=True, input="production\n",
    )  # fmt: skip
    assert result.exit_code == 0, result.stderr
    assert "production: about to" in result.stderr
    assert "type production to go ahead" in result.stderr
    assert sandboxes["production"].keys() == []
    assert sandboxes["staging"].keys() != []
    (entry,) = audit(config)
    assert (entry["environment"], entry["outcome"], entry["action"]) == (
        "production", "ok", "cache clear",
    )  # fmt: skip


@pytest.mark.parametrize("typed", ["prodution\n", "y\n", "\n", "staging\n"])
def test_anything_but_the_name_changes_nothing(
    typed: str, config: Path, sandboxes: dict[str, Sandbox]
) -> None:
    result = run(
        config, "cache", "clear", "trip:*", "--env", "production", interactive=True, input=typed
    )
    assert result.exit_code == 4
    assert "nothing changed" in result.stderr
    assert len(sandboxes["production"].keys()) == 5
    (entry,) = audit(config)
    assert (entry["environment"], entry["outcome"]) == ("production", "refused")


def test_without_a_terminal_yes_alone_is_refused_and_confirm_env_must_name_it(
    config: Path, sandboxes: dict[str, Sandbox]
) -> None:
    alone = run(config, "--env", "production", "cache", "clear", "trip:*", "--yes")
    assert alone.exit_code == 4
    assert "--yes --confirm-env production" in alone.stderr
    wrong = run(
        config, "--env", "production", "cache", "clear", "trip:*", "--yes",
        "--confirm-env", "staging",
    )  # fmt: skip
    assert wrong.exit_code == 4
    assert len(sandboxes["production"].keys()) == 5
    named = run(
        config, "--env", "production", "cache", "clear", "trip:*", "--yes",
        "--confirm-env", "production",
    )  # fmt: skip
    assert named.exit_code == 0, named.stderr
    assert sandboxes["production"].keys() == []
    assert [e["outcome"] for e in audit(config)] == ["refused", "refused", "ok"]
    assert {e["environment"] for e in audit(config)} == {"production"}


def test_dry_run_in_production_asks_nothing_and_changes_nothing(
    config: Path, sandboxes: dict[str, Sandbox]
) -> None:
    result = run(config, "--env", "production", "cache", "clear", "trip:*", "--dry-run")
    assert result.exit_code == 0, result.stderr
    assert "production: dry run: would" in result.stderr
    assert len(sandboxes["production"].keys()) == 5


def test_staging_is_not_protected_and_is_the_default(
    config: Path, sandboxes: dict[str, Sandbox]
) -> None:
    result = run(config, "cache", "clear", "trip:*", interactive=True, input="y\n")
    assert result.exit_code == 0, result.stderr
    assert sandboxes["staging"].keys() == []
    assert len(sandboxes["production"].keys()) == 5
    assert audit(config, "production") == []
    (entry,) = audit(config, "staging")
    assert (entry["environment"], entry["outcome"]) == ("staging", "ok")


def test_a_variable_cannot_lift_production_protection(
    config: Path, sandboxes: dict[str, Sandbox], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TRAVELLR_PROTECTED", "false")
    monkeypatch.setenv("TRAVELLR_ENV", "production")
    result = run(config, "cache", "clear", "trip:*", "--yes")
    assert result.exit_code == 4
    assert len(sandboxes["production"].keys()) == 5


# -- fan-out ------------------------------------------------------------------------------------
def test_health_over_all_environments_is_one_table_and_one_document(config: Path) -> None:
    table = run(config, "health", "--env", "all")
    assert table.exit_code == 0, table.stderr
    header = table.stdout.splitlines()[1]
    assert header.split("┃")[1].strip() == "environment"
    for name in ("staging", "production"):
        assert sum(f"│ {name} " in line for line in table.stdout.splitlines()) == 4
    document = run(config, "--env", "staging,production", "health", "--json").json()
    assert list(document) == ["staging", "production"]
    assert {d["verdict"] for d in document.values()} == {"healthy"}


def test_one_environment_down_still_shows_the_other_and_exits_3(
    config: Path, sandboxes: dict[str, Sandbox]
) -> None:
    sandboxes["production"].redis.stop()
    result = run(config, "--env", "all", "health", "--json")
    assert result.exit_code == 3
    document = result.json()
    assert document["staging"]["verdict"] == "healthy"
    assert document["production"]["verdict"] == "unreachable"
    cache = run(config, "--env", "all", "cache", "stats", "--window", "100ms")
    assert cache.exit_code == 3
    assert "staging" in cache.stdout and "production: error:" in cache.stderr


def test_an_environment_that_never_answers_is_cut_at_its_fanout_timeout(
    config: Path, tmp_path: Path
) -> None:
    import socket

    with socket.socket() as silent:  # accepts connections (the kernel does), never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(16)
        address = f"127.0.0.1:{silent.getsockname()[1]}"
        config.write_text(
            config.read_text()
            + "[env.silent]\nfanout_timeout_s = 0.5\n"
            + f'mongo.uri = "mongodb://{address}/travellr"\nredis.url = "redis://{address}/0"\n'
            + f'api.url = "http://{address}"\n'
        )
        result = run(config, "--env", "staging,silent", "health", "--json")
        table = run(config, "--env", "staging,silent", "health")
    assert result.exit_code == table.exit_code == 3
    document = result.json()
    assert document["staging"]["verdict"] == "healthy"
    assert document["silent"]["error"]["message"] == "no answer within 0.5 s"
    assert document["silent"]["error"]["kind"] == "unreachable"
    assert "silent: error: no answer within 0.5 s" in table.stderr
    assert any(line.startswith("│ silent ") for line in table.stdout.splitlines())


@pytest.mark.parametrize(
    "command",
    [
        ["health"],
        ["monitor", "once"],
        ["backup", "list"],
        ["db", "ping"],
        ["cache", "stats", "--window", "100ms"],
        ["checklist", "last"],
        ["service", "status"],
        ["deploy", "status"],
    ],
    ids=lambda c: " ".join(c[:2]),
)
def test_every_reading_command_fans_out_as_each_environment_alone(
    command: list[str], config: Path
) -> None:
    alone = {
        name: run(config, "--env", name, *command, "--json") for name in ("staging", "production")
    }
    both = run(config, "--env", "all", *command, "--json")
    assert both.exit_code == max(r.exit_code for r in alone.values())
    document = both.json()
    assert list(document) == ["staging", "production"]
    for name, single in alone.items():
        assert set(document[name]) == set(single.json()), name


def test_a_change_refuses_several_environments(config: Path, sandboxes: dict[str, Sandbox]) -> None:
    result = run(config, "--env", "all", "cache", "clear", "trip:*", "--yes")
    assert result.exit_code == 2
    assert "one environment at a time" in result.stderr
    assert all(len(box.keys()) == 5 for box in sandboxes.values())
    assert audit(config, "staging") == audit(config, "production") == []


def test_an_unknown_environment_is_exit_2_naming_the_known_ones(config: Path) -> None:
    for args in (["--env", "prod", "health"], ["health", "--env", "staging,prod"]):
        result = run(config, *args)
        assert result.exit_code == 2
        assert "no environment 'prod'" in result.stderr
        assert "known environments: staging, production" in result.stderr


# -- config show ----------------------------------------------------------------------------
def test_config_show_names_the_environment_and_where_each_value_came_from(
    config: Path, sandboxes: dict[str, Sandbox], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TRAVELLR_ENV", "production")
    monkeypatch.setenv("TRAVELLR_API__TIMEOUT_S", "3")
    view = run(config, "--redis-url", "redis://127.0.0.1:1/0", "config", "show", "--json").json()
    assert (view["environment"], view["environment_source"]) == ("production", "env TRAVELLR_ENV")
    assert view["environments"] == ["staging", "production"]
    rows = {row["key"]: row for row in view["settings"]}
    table = f"env table production ({config})"
    uri = sandboxes["production"].mongo.uri
    assert rows["mongo.uri"] == {"key": "mongo.uri", "value": uri, "source": table}
    assert rows["protected"]["value"] is True and rows["protected"]["source"] == table
    assert rows["mongo.timeout_s"]["source"] == f"file {config}"
    assert rows["api.timeout_s"]["source"] == "env TRAVELLR_API__TIMEOUT_S"
    assert rows["redis.url"]["source"] == "flag"
    assert rows["thresholds.cpu_pct"]["source"] == "default"
    assert rows["state_dir"] == {
        "key": "state_dir",
        "value": str(config.parent / "state" / "env" / "production"),
        "source": f"file {config}, + env/production",
    }
    monkeypatch.delenv("TRAVELLR_ENV")
    default = run(config, "config", "show").stdout
    assert "environment: staging, chosen by file" in default


def test_at_a_real_terminal_production_is_red_and_its_name_is_asked_for(
    config: Path, sandboxes: dict[str, Sandbox]
) -> None:
    """The whole path a person takes: stdin a terminal (a pty), the plan's environment in
    red, the name typed at the prompt."""
    import os
    import pty
    import subprocess
    import sys
    import time

    src = Path(__file__).resolve().parents[1] / "src"
    primary, secondary = pty.openpty()
    env = {**os.environ, "PYTHONPATH": str(src), "TERM": "xterm-256color", "COLUMNS": "100"}
    argv = ["--config", str(config), "--env", "production", "cache", "clear", "trip:*"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "travellr_ops", *argv],
        stdin=secondary,
        stdout=secondary,
        stderr=secondary,
        env=env,
    )
    os.close(secondary)
    seen = b""
    try:
        deadline = time.monotonic() + 30
        while b"to go ahead" not in seen and time.monotonic() < deadline:
            try:
                seen += os.read(primary, 4096)
            except OSError:  # the command ended (EIO): the assertions below say why
                break
        os.write(primary, b"production\n")
        assert proc.wait(30) == 0, seen.decode(errors="replace")
    finally:
        proc.kill()
        os.close(primary)
    assert b"\x1b[1;31mproduction\x1b[0m: about to" in seen
    assert sandboxes["production"].keys() == []


def test_a_read_only_environment_refuses_changes_and_confirm_env_must_match_on_staging_too(
    config: Path, sandboxes: dict[str, Sandbox]
) -> None:
    staging = sandboxes["staging"]
    config.write_text(
        config.read_text() + f'[env.replica]\nread_only = true\nredis.url = "{staging.redis.url}"\n'
    )
    replica = run(config, "--env", "replica", "cache", "clear", "trip:*", "--yes")
    assert replica.exit_code == 4 and "read-only" in replica.stderr
    mistaken = run(
        config, "--env", "staging", "cache", "clear", "trip:*", "--yes",
        "--confirm-env", "production",
    )  # fmt: skip
    assert mistaken.exit_code == 4
    assert "this is staging, but --confirm-env says 'production'" in mistaken.stderr
    assert len(staging.keys()) == 5


# -- logic that needs no server -------------------------------------------------------------
def test_env_options_are_lifted_from_after_the_command_but_not_a_commands_own() -> None:
    import click

    from travellr_ops.cli.app import build_app
    from travellr_ops.cli.fanout import lift_global_options

    root = click.Group("root", params=[click.Option(["--env"]), click.Option(["--config"])])
    own = click.Command("exec", params=[click.Option(["--env"], multiple=True)])
    plain = click.Command("stats", params=[click.Option(["--window"])])
    group = click.Group("service", commands={"exec": own, "stats": plain})
    root.add_command(group)
    assert lift_global_options(["service", "stats", "--window", "1s", "--env", "all"], root) == [
        "--env", "all", "service", "stats", "--window", "1s",
    ]  # fmt: skip
    exec_args = ["--env", "prod", "service", "exec", "--env", "A=1", "--", "--env", "x"]
    assert lift_global_options(exec_args, root) == exec_args
    import typer

    real = typer.main.get_command(build_app(["cache"]))
    assert lift_global_options(["cache", "stats", "--confirm-env=p", "--env", "a,b"], real) == [
        "--confirm-env=p", "--env", "a,b", "cache", "stats",
    ]  # fmt: skip


def test_every_audit_record_names_the_environment_even_those_written_directly(
    tmp_path: Path,
) -> None:
    from travellr_ops.safety import Change, Guard

    guard = Guard(tmp_path, yes=True, environment="staging")
    with guard.mutation(Change("cache clear", "delete nothing")):
        pass
    guard.audit.record(action="deploy rollout", phase="start")  # as deploy's step audit does
    assert [e["environment"] for e in guard.audit.entries()] == ["staging", "staging"]
    unnamed = Guard(tmp_path / "unnamed", yes=True)
    unnamed.audit.record(action="cache clear")
    assert "environment" not in unnamed.audit.entries()[0]
