"""Settings that say what they are: the old names keep working, with a warning naming the new
one. No server."""

from __future__ import annotations

from pathlib import Path

from cli import invoke
from travellr_ops.settings import DeploySettings, Settings, load_settings


def test_old_names_still_set_the_new_ones_with_a_warning(tmp_path: Path) -> None:
    config = tmp_path / "travellr-ops.toml"
    config.write_text(
        f'platform = "none"\nstate_dir = "{tmp_path / "state"}"\n'
        "[monitor]\nstore_timeout_s = 60\n"
        '[kubernetes]\ndeployment = "web"\n'
        '[deploy]\nwebhook_url = "http://127.0.0.1:9/a"\nwebhook_urls = ["http://127.0.0.1:9/b"]\n'
    )
    loaded = load_settings(config)
    s = loaded.settings
    assert s.store.timeout_s == 60
    assert s.kubernetes.backend_deployment == "web"
    assert s.deploy.webhook_urls == ["http://127.0.0.1:9/a", "http://127.0.0.1:9/b"]
    assert loaded.deprecations == [
        "monitor.store_timeout_s is deprecated: use store.timeout_s instead",
        "kubernetes.deployment is deprecated: use kubernetes.backend_deployment instead",
        "deploy.webhook_url is deprecated: use deploy.webhook_urls instead",
    ]

    shown = invoke("--config", str(config), "config", "show")
    assert shown.exit_code == 0, shown.stderr
    assert "warning: monitor.store_timeout_s is deprecated: use store.timeout_s" in shown.stderr


def test_new_names_warn_of_nothing(tmp_path: Path) -> None:
    config = tmp_path / "travellr-ops.toml"
    config.write_text('platform = "none"\n[store]\ntimeout_s = 9\n')
    loaded = load_settings(config)
    assert loaded.settings.store.timeout_s == 9
    assert loaded.deprecations == []
    assert Settings(monitor={"store_timeout_s": 2}).store.timeout_s == 2
    assert DeploySettings(webhook_url="http://127.0.0.1:9/x").webhook_urls == [
        "http://127.0.0.1:9/x"
    ]


def test_the_example_config_uses_no_old_name() -> None:
    example = Path(__file__).parents[1] / "config" / "travellr-ops.example.toml"
    assert load_settings(example).deprecations == []
