"""The contracts every command keeps whatever it does: --debug adds only a traceback, --json
errors are a document, one confirmation rule, --quiet keeps warnings, output to a pipe is whole.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from cli import Result, invoke
from fixtures_servers import MongoServer
from travellr_ops.settings import Settings

REPO = Path(__file__).resolve().parents[1]
REFUSED_REDIS = "redis://127.0.0.1:1/0"  # nothing listens on port 1: a real refused connection


def _settings(tmp_path: Path, redis_url: str = REFUSED_REDIS) -> Settings:
    return Settings(
        redis={"url": redis_url, "timeout_s": 2.0},
        state_dir=tmp_path / "state",
        backup={"dir": tmp_path / "backups"},
    )


def _with_and_without_debug(settings: Settings, *args: str) -> tuple[Result, Result]:
    return invoke(*args, settings=settings), invoke("--debug", *args, settings=settings)


@pytest.mark.parametrize(
    ("args", "code"),
    [
        (["backup", "verify", "nosuch"], 2),
        (["cache", "stats"], 3),
    ],
)
def test_debug_adds_a_traceback_and_keeps_the_exit_code(
    tmp_path: Path, args: list[str], code: int
) -> None:
    plain, debug = _with_and_without_debug(_settings(tmp_path), *args)
    assert (plain.exit_code, debug.exit_code) == (code, code)
    assert "Traceback" not in plain.stderr
    assert "Traceback" in debug.stderr
    # the one-line error and its hint are still there, after the traceback
    assert plain.stderr.strip().splitlines()[0] in debug.stderr


@pytest.mark.redis
def test_debug_keeps_exit_4_of_a_refused_change(tmp_path: Path, redis_url: str) -> None:
    plain, debug = _with_and_without_debug(
        _settings(tmp_path, redis_url), "maintenance", "on", "--message", "x"
    )
    assert (plain.exit_code, debug.exit_code) == (4, 4)
    assert "Traceback" in debug.stderr


@pytest.mark.parametrize(
    ("args", "code", "kind"),
    [
        (["--json", "backup", "verify", "nosuch"], 2, "usage"),
        (["backup", "verify", "nosuch", "--json"], 2, "usage"),
        (["--json", "cache", "stats"], 3, "unreachable"),
        (["cache", "stats", "--json"], 3, "unreachable"),
        (["--json", "cache", "stats", "--frobnicate"], 2, "usage"),
    ],
)
def test_json_errors_print_one_document_on_stdout_and_the_line_on_stderr(
    tmp_path: Path, args: list[str], code: int, kind: str
) -> None:
    result = invoke(*args, settings=_settings(tmp_path))
    assert result.exit_code == code
    document = result.json()  # exactly one JSON document, nothing else on stdout
    assert document["ok"] is False
    assert document["exit_code"] == code
    assert set(document["error"]) == {"message", "hint", "kind"}
    assert document["error"]["kind"] == kind
    assert document["error"]["message"]
    assert "rror" in result.stderr  # `error: ...` (ours) or `Error: ...` (a usage error)


def test_a_json_error_keeps_secrets_masked(tmp_path: Path) -> None:
    settings = _settings(tmp_path, "redis://:hunter2@127.0.0.1:1/0")
    result = invoke("--json", "cache", "stats", settings=settings)
    assert result.exit_code == 3
    assert "hunter2" not in result.stdout + result.stderr
    assert "127.0.0.1:1" in result.json()["error"]["message"]


def test_root_help_shows_no_none_defaults_and_v_as_a_flag(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("COLUMNS", "200")
    result = invoke("--help")
    assert result.exit_code == 0
    assert "[default: None]" not in result.stdout
    verbose = next(line for line in result.stdout.splitlines() if "--verbose" in line)
    assert "INTEGER" not in verbose
    assert "[default: 0]" not in verbose
    # a docstring's wrapped lines are one sentence in the listing, not two lines
    assert "exit 0 healthy, 1 unhealthy, 3 down." in result.stdout


@pytest.mark.parametrize("flags", [["-v"], ["-vv"], ["-v", "-v"], ["--verbose"]])
def test_v_and_vv_both_log_what_travellr_ops_does(tmp_path: Path, flags: list[str]) -> None:
    result = invoke(*flags, "config", "show", settings=_settings(tmp_path))
    assert result.exit_code == 0
    assert "INFO travellr_ops" in result.stderr
    quiet = invoke("config", "show", settings=_settings(tmp_path))
    assert "INFO" not in quiet.stderr


@pytest.mark.mongo
def test_quiet_still_warns_of_a_lock_taken_over_from_a_dead_run(
    tmp_path: Path, mongo_server: MongoServer
) -> None:
    client = mongo_server.client()
    client.contracts_quiet.users.insert_one({"name": "a"})
    client.close()
    settings = Settings(
        mongo={"uri": mongo_server.uri_for("contracts_quiet"), "timeout_s": 5.0},
        backup={"dir": tmp_path / "backups"},
        state_dir=tmp_path / "state",
    )
    locks = tmp_path / "state" / "locks"
    locks.mkdir(parents=True)
    (locks / "backup.lock").write_text(
        '{"pid": 999999, "host": "h", "since": "2020-01-01", "command": "backup create"}'
    )
    result = invoke("backup", "create", "--quiet", settings=settings)
    assert result.exit_code == 0, result.stderr
    assert result.stdout == ""
    assert "warning:" in result.stderr
    assert "stale backup lock left by pid 999999" in result.stderr


def _audit(tmp_path: Path) -> list[dict[str, Any]]:
    path = tmp_path / "state" / "audit.log"
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.mark.mongo
def test_index_ensure_asks_like_every_change(tmp_path: Path, fresh_seeded_mongo_uri: str) -> None:
    settings = Settings(mongo={"uri": fresh_seeded_mongo_uri}, state_dir=tmp_path / "state")
    indexes = _index_names(fresh_seeded_mongo_uri, "bookings")
    refused = invoke("db", "indexes", "ensure", settings=settings)  # no terminal, no --yes
    assert refused.exit_code == 4
    assert "pass --yes" in refused.stderr
    assert _index_names(fresh_seeded_mongo_uri, "bookings") == indexes
    [entry] = _audit(tmp_path)
    assert (entry["action"], entry["outcome"]) == ("db indexes ensure", "refused")
    assert entry["reason"] == "no terminal to confirm on, and no --yes"

    made = invoke("db", "indexes", "ensure", "--yes", settings=settings)
    assert made.exit_code == 0, made.stderr
    assert _index_names(fresh_seeded_mongo_uri, "bookings") > indexes
    assert [e["outcome"] for e in _audit(tmp_path)] == ["refused", "ok"]


def _index_names(uri: str, collection: str) -> set[str]:
    from pymongo import MongoClient

    client: MongoClient[dict[str, Any]] = MongoClient(uri)
    try:
        return set(client.get_default_database()[collection].index_information())
    finally:
        client.close()


@pytest.mark.redis
def test_maintenance_off_asks_and_refusals_are_audited(tmp_path: Path, redis_url: str) -> None:
    settings = Settings(
        redis={"url": redis_url},
        maintenance={"key": "contracts:maintenance"},
        state_dir=tmp_path / "state",
    )
    assert invoke("maintenance", "on", "-m", "x", "--yes", settings=settings).exit_code == 0
    refused = invoke("maintenance", "off", settings=settings)
    assert refused.exit_code == 4
    declined = invoke("maintenance", "off", settings=settings, interactive=True, input="n\n")
    assert declined.exit_code == 4
    read_only = invoke("--read-only", "maintenance", "off", "--yes", settings=settings)
    assert read_only.exit_code == 4
    status = invoke("maintenance", "status", "--json", settings=settings)
    assert status.json()["on"] is True
    accepted = invoke("maintenance", "off", settings=settings, interactive=True, input="y\n")
    assert accepted.exit_code == 0, accepted.stderr
    assert invoke("maintenance", "status", "--json", settings=settings).json()["on"] is False
    assert [(e["action"], e["outcome"], e.get("reason")) for e in _audit(tmp_path)] == [
        ("maintenance on", "ok", None),
        ("maintenance off", "refused", "no terminal to confirm on, and no --yes"),
        ("maintenance off", "refused", "declined"),
        ("maintenance off", "refused", "read-only"),
        ("maintenance off", "ok", None),
    ]


LONG_API_URL = "http://127.0.0.1:50001/an/api/path/long/enough/to/be/cut/at/eighty/columns"
LONG_REDIS_URL = "redis://127.0.0.1:50002/0?client_name=travellr-ops-nightly-cache-check"


def _piped(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """travellr-ops as cron or CI runs it: stdout and stderr are pipes, not a terminal."""
    environ = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "FORCE_COLOR")}
    environ.pop("NO_COLOR", None)
    environ.update(env)
    exe = Path(sys.executable).parent / "travellr-ops"
    return subprocess.run(
        [str(exe), *args], capture_output=True, text=True, env=environ, timeout=60
    )


@pytest.mark.parametrize("columns", [None, "60"])
def test_output_to_a_pipe_never_cuts_an_identifier_and_has_no_escapes(
    tmp_path: Path, columns: str | None
) -> None:
    env = {"TRAVELLR_STATE_DIR": str(tmp_path / "state")}
    if columns:
        env["COLUMNS"] = columns
    done = _piped("--api-url", LONG_API_URL, "--redis-url", LONG_REDIS_URL, "config", "show", **env)
    assert done.returncode == 0, done.stderr
    assert LONG_API_URL in done.stdout
    assert LONG_REDIS_URL in done.stdout
    assert "…" not in done.stdout
    assert "\x1b" not in done.stdout + done.stderr


def test_force_color_is_respected_on_a_pipe(tmp_path: Path) -> None:
    done = _piped("config", "show", TRAVELLR_STATE_DIR=str(tmp_path / "state"), FORCE_COLOR="1")
    assert done.returncode == 0, done.stderr
    assert "\x1b[" in done.stdout


def test_a_value_and_its_unit_stay_together_in_a_narrow_table() -> None:
    from travellr_ops.output import WholeConsole, table

    detail = "a sentence long enough that the column must wrap at the words of this text"
    rows = [["backup-2026-11-30T02-00-00", "12.5 MiB", "1,234,567", detail]]
    buffer = io.StringIO()
    console = WholeConsole(file=buffer, width=70, highlight=False, soft_wrap=False)
    console.print(table("backups", ["name", "size", "documents", "detail"], rows))
    text = buffer.getvalue()
    assert "backup-2026-11-30T02-00-00" in text
    assert "12.5 MiB" in text and "1,234,567" in text
    assert "…" not in text
    assert max(len(line.rstrip()) for line in text.splitlines()) <= 70  # wrapped, not widened
    words = " ".join(
        line.split("│")[4].strip() for line in text.splitlines() if line.count("│") == 5
    )
    assert " ".join(words.split()) == detail


def test_the_demo_logs_no_escape_codes_when_not_on_a_terminal() -> None:
    script = REPO / "scripts" / "demo.sh"
    text = script.read_text()
    helpers = text[text.index("# Bold and dim") : text.index("bash scripts/sandbox.sh up")]
    snippet = f"ops={Path(sys.executable).parent / 'travellr-ops'}\n{helpers}\nnote hello\nstep --version\n"
    for env, escapes in (({}, False), ({"FORCE_COLOR": "1"}, True)):
        environ = {k: v for k, v in os.environ.items() if k not in ("FORCE_COLOR", "NO_COLOR")}
        done = subprocess.run(
            ["bash", "-c", snippet], capture_output=True, text=True, env={**environ, **env}
        )
        assert done.returncode == 0, done.stderr
        assert "# hello" in done.stdout and "$ travellr-ops --version" in done.stdout
        assert ("\x1b" in done.stdout) is escapes
