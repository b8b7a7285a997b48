"""Settings: sources and their order, the documented environment names, errors."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from travellr_ops.errors import ConfigError
from travellr_ops.settings import Settings, flatten, load_settings

EXAMPLE = Path(__file__).parent.parent / "config" / "travellr-ops.example.toml"


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import os

    for name in list(os.environ):
        if name.startswith("TRAVELLR_"):
            monkeypatch.delenv(name)
    # No config file lying around in the working directory or home.
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))


def test_defaults_are_the_runbooks() -> None:
    s = Settings()
    assert s.mongo.uri == "mongodb://localhost:27017/travellr"
    assert s.mongo.database == "travellr"
    assert s.redis.url == "redis://localhost:6379/0"
    assert s.api.url == "http://localhost:5000"
    assert s.kubernetes.backend_deployment == "travellr-backend"
    assert s.backup.retention_days == 7
    t = s.thresholds
    assert (t.api_response_ms, t.db_query_ms, t.cache_hit_rate_pct) == (200, 50, 80)
    assert (t.cpu_pct, t.memory_pct, t.disk_pct, t.error_rate_pct) == (70, 80, 80, 1)


def test_flags_beat_env_beat_file_beat_defaults(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "ops.toml"
    config.write_text(
        '[mongo]\nuri = "mongodb://file:27017/fromfile"\n'
        '[redis]\nurl = "redis://file:6379/1"\n'
        '[api]\nurl = "http://file:5000"\n'
    )
    monkeypatch.setenv("TRAVELLR_REDIS__URL", "redis://env:6379/2")
    monkeypatch.setenv("TRAVELLR_API__URL", "http://env:5000")
    loaded = load_settings(config, {"api": {"url": "http://flag:5000"}})
    s = loaded.settings
    assert s.mongo.uri == "mongodb://file:27017/fromfile"
    assert s.redis.url == "redis://env:6379/2"
    assert s.api.url == "http://flag:5000"
    assert s.backup.retention_days == 7
    assert loaded.sources["mongo.uri"] == f"file {config}"
    assert loaded.sources["redis.url"] == "env TRAVELLR_REDIS__URL"
    assert loaded.sources["api.url"] == "flag"
    assert loaded.sources["backup.retention_days"] == "default"


def test_documented_environment_names(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "from-env.toml"
    config.write_text('platform = "kubernetes"\n')
    env = {
        "TRAVELLR_MONGO__URI": "mongodb://m:1/db1",
        "TRAVELLR_REDIS__URL": "redis://r:2/3",
        "TRAVELLR_API__URL": "http://a:3",
        "TRAVELLR_BACKUP__DIR": str(tmp_path / "b"),
        "TRAVELLR_STATE_DIR": str(tmp_path / "state"),
        "TRAVELLR_CONFIG": str(config),
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    loaded = load_settings()
    s = loaded.settings
    assert loaded.config_file == config
    assert s.platform == "kubernetes"
    assert (s.mongo.uri, s.mongo.database) == ("mongodb://m:1/db1", "db1")
    assert s.redis.url == "redis://r:2/3"
    assert s.api.url == "http://a:3"
    assert s.backup.dir == tmp_path / "b"
    assert s.state_dir == tmp_path / "state"


def test_platform_env_name(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRAVELLR_PLATFORM", "kubernetes")
    assert load_settings().settings.platform == "kubernetes"


def test_config_file_found_in_working_directory(tmp_path: Path) -> None:
    (tmp_path / "travellr-ops.toml").write_text('[api]\nurl = "http://cwd:1"\n')
    loaded = load_settings()
    assert loaded.settings.api.url == "http://cwd:1"
    assert loaded.config_file is not None


def test_invalid_values_are_a_config_error_naming_the_setting(tmp_path: Path) -> None:
    config = tmp_path / "bad.toml"
    config.write_text('platform = "swarm"\n[backup]\nretention_days = "seven"\n')
    with pytest.raises(ConfigError) as err:
        load_settings(config)
    assert "platform" in err.value.message
    assert "backup.retention_days" in err.value.message


def test_unknown_setting_is_refused(tmp_path: Path) -> None:
    config = tmp_path / "typo.toml"
    config.write_text('[mongo]\nurl = "mongodb://x"\n')  # uri, not url
    with pytest.raises(ConfigError, match=r"mongo\.url"):
        load_settings(config)


def test_missing_explicit_config_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        load_settings(tmp_path / "nope.toml")


def test_broken_toml_is_a_config_error(tmp_path: Path) -> None:
    config = tmp_path / "broken.toml"
    config.write_text("[mongo\nuri=")
    with pytest.raises(ConfigError, match="cannot read"):
        load_settings(config)


def test_example_config_is_valid_and_documents_every_setting() -> None:
    loaded = load_settings(EXAMPLE)
    assert loaded.settings.model_dump(exclude={"state_dir"}) == Settings().model_dump(
        exclude={"state_dir"}
    )
    text = EXAMPLE.read_text()
    sections = {m for m in re.findall(r"^\[([\w.]+)\]", text, re.M)}
    for key, _ in flatten(Settings().model_dump()):
        section, _, name = key.rpartition(".")
        assert re.search(rf"^#?\s*{name}\s*=", text, re.M), f"{key} is not documented"
        if section:
            assert section in sections, f"section [{section}] missing"
