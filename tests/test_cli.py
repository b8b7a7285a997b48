"""The contracts every command shares: help, exit codes, one-line errors, JSON, no secrets."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from cli import invoke
from servers import free_port
from travellr_ops import __version__
from travellr_ops.settings import Settings

HEAVY_SDKS = ("docker", "kubernetes", "pymongo", "redis", "httpx")
GROUPS = ["service", "db", "cache", "backup", "monitor", "deploy", "security"]
GROUPS += ["maintenance", "checklist", "config"]


def _modules_loaded_by(*args: str) -> set[str]:
    code = (
        "import sys\n"
        "from travellr_ops.cli.app import run\n"
        f"code = run({list(args)!r})\n"
        "print(' '.join(sorted({m.split('.')[0] for m in sys.modules})), file=sys.stderr)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return set(done.stderr.split())  # the help text itself went to stdout


@pytest.mark.parametrize("args", [["--help"], ["health", "--help"], ["cache", "--help"]])
def test_help_loads_no_heavy_sdk(args: list[str]) -> None:
    loaded = _modules_loaded_by(*args)
    assert not loaded & set(HEAVY_SDKS), f"--help imported {loaded & set(HEAVY_SDKS)}"


def test_help_lists_every_group() -> None:
    result = invoke("--help")
    assert result.exit_code == 0
    for group in [*GROUPS, "health"]:
        assert group in result.stdout


def test_console_script_and_module_entry_points() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "travellr_ops", "--version"], capture_output=True, text=True
    )
    assert (done.returncode, done.stdout.strip()) == (0, f"travellr-ops {__version__}")
    exe = Path(sys.executable).parent / "travellr-ops"
    done = subprocess.run([str(exe), "--version"], capture_output=True, text=True)
    assert done.returncode == 0


def test_unknown_command_is_a_usage_error() -> None:
    result = invoke("frobnicate")
    assert result.exit_code == 2
    assert "frobnicate" in result.stderr


def test_bad_config_is_exit_2_with_one_line_and_a_hint(tmp_path: Path) -> None:
    config = tmp_path / "c.toml"
    config.write_text('platform = "swarm"\n')
    result = invoke("--config", str(config), "config", "show")
    assert result.exit_code == 2
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert lines[0].startswith("error: invalid configuration: platform")
    assert lines[1].startswith("hint:")
    assert "Traceback" not in result.stderr


def test_config_show_masks_secrets_and_names_sources(tmp_path: Path) -> None:
    config = tmp_path / "c.toml"
    config.write_text('[redis]\nurl = "redis://:hunter2@127.0.0.1:6379/0"\n')
    result = invoke(
        "--config",
        str(config),
        "--mongo-uri",
        "mongodb://admin:pa55@db:1/travellr",
        "config",
        "show",
        "--json",
    )
    assert result.exit_code == 0
    assert "hunter2" not in result.stdout + result.stderr
    assert "pa55" not in result.stdout + result.stderr
    rows = {row["key"]: row for row in result.json()["settings"]}
    assert rows["redis.url"] == {
        "key": "redis.url",
        "value": "redis://:***@127.0.0.1:6379/0",
        "source": f"file {config}",
    }
    assert rows["mongo.uri"]["source"] == "flag"
    assert rows["thresholds.cpu_pct"] == {
        "key": "thresholds.cpu_pct",
        "value": 70.0,
        "source": "default",
    }


def _nowhere(tmp_path: Path) -> Settings:
    """Settings naming servers where nothing listens (real refused connections)."""
    return Settings(
        mongo={"uri": f"mongodb://u:mpass@127.0.0.1:{free_port()}/travellr", "timeout_s": 0.5},
        redis={"url": f"redis://:rpass@127.0.0.1:{free_port()}/0", "timeout_s": 0.5},
        api={"url": f"http://127.0.0.1:{free_port()}", "timeout_s": 0.5},
        state_dir=tmp_path / "state",
        backup={"dir": tmp_path / "backups"},
    )


def test_health_with_nothing_running_exits_3_without_secrets(tmp_path: Path) -> None:
    result = invoke("health", "--json", settings=_nowhere(tmp_path))
    assert result.exit_code == 3
    report = json.loads(result.stdout)
    verdicts = {c["name"]: c["verdict"] for c in report["checks"]}
    assert verdicts["api"] == verdicts["mongodb"] == verdicts["redis"] == "down"
    assert verdicts["disk"] in ("ok", "warn")
    assert report["verdict"] == "unreachable"
    everything = result.stdout + result.stderr
    assert "mpass" not in everything and "rpass" not in everything
    assert "Traceback" not in everything


def test_config_validate_reports_each_unreachable_server(tmp_path: Path) -> None:
    result = invoke("config", "validate", "--json", settings=_nowhere(tmp_path))
    assert result.exit_code == 3
    findings = {f["item"]: f for f in result.json()["findings"]}
    for item in ("mongo.uri", "redis.url", "api.url"):
        assert findings[item]["ok"] is False
        assert findings[item]["unreachable"] is True
    assert findings["backup.dir"]["ok"] is True
    assert "rpass" not in result.stdout


@pytest.mark.mongo
@pytest.mark.redis
def test_config_validate_passes_when_every_server_answers(
    redis_url: str, seeded_mongo_uri: str, backend_url: str, tmp_path: Path
) -> None:
    s = Settings(
        state_dir=tmp_path / "state",
        mongo={"uri": seeded_mongo_uri},
        redis={"url": redis_url},
        api={"url": backend_url},
        backup={"dir": tmp_path / "backups"},
    )
    result = invoke("config", "validate", "--json", settings=s)
    assert result.exit_code == 0, result.stdout
    findings = {f["item"]: f for f in result.json()["findings"]}
    assert all(findings[i]["ok"] for i in ("mongo.uri", "redis.url", "api.url"))
    assert "answers" in findings["api.url"]["detail"]


def test_quiet_prints_nothing_on_stdout(tmp_path: Path) -> None:
    result = invoke("health", "--quiet", settings=_nowhere(tmp_path))
    assert result.exit_code == 3
    assert result.stdout == ""
    assert "error:" in result.stderr


def test_shell_completion_completes_group_names() -> None:
    exe = Path(sys.executable).parent / "travellr-ops"
    env = {"COMP_WORDS": "travellr-ops ca", "COMP_CWORD": "1"}
    env["_TRAVELLR_OPS_COMPLETE"] = "complete_bash"
    done = subprocess.run([str(exe)], env=env, capture_output=True, text=True)
    assert done.returncode == 0
    assert done.stdout.split() == ["cache"]


@pytest.mark.parametrize("args", [["backup", "restore"], ["db", "explain"], ["service", "scale"]])
def test_a_missing_required_argument_is_a_usage_error(args: list[str]) -> None:
    result = invoke(*args)
    assert result.exit_code == 2
    assert "Missing argument" in result.stdout + result.stderr
