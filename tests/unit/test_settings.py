"""oms.settings: OMS_ environment variables, their validation, and what is shown to a person."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from oms.settings import Settings, SettingsError, load_settings


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """No OMS_ variable from the outside world leaks into a test."""
    for name in list(os.environ):
        if name.startswith("OMS_"):
            monkeypatch.delenv(name)


@pytest.mark.parametrize(
    ("var", "value"),
    [
        ("OMS_KAFKA_BOOTSTRAP", "nonsense"),
        ("OMS_KAFKA_BOOTSTRAP", "host:port"),
        ("OMS_KAFKA_BOOTSTRAP", ","),
        ("OMS_PARTITIONS", "0"),
        ("OMS_PARTITIONS", "many"),
        ("OMS_CLICKHOUSE_URL", "ftp://x"),
        ("OMS_REDIS_URL", "http://127.0.0.1:6379"),
        ("OMS_TENANT", "9lives"),
        ("OMS_TOPIC_PREFIX", "has space"),
        ("OMS_LOG_LEVEL", "verbose"),
        ("OMS_WORKER_WEB_PORT", "70000"),
        ("OMS_SHORT_POLICY", "refuse"),
        ("OMS_SHORT_POLICY", "lazada=backorder"),
        ("OMS_UNPAID_HOLD_S", "*=0"),
        ("OMS_UNPAID_HOLD_S", "*=30m"),
        ("OMS_UNPAID_HOLD_S", "*=60,lazada=10,lazada=20"),
    ],
)
def test_invalid_value_raises_settings_error_naming_the_variable_and_value(
    monkeypatch: pytest.MonkeyPatch, var: str, value: str
) -> None:
    monkeypatch.setenv(var, value)
    with pytest.raises(SettingsError) as info:
        load_settings()
    message = str(info.value)
    assert f"{var}={value!r}" in message
    assert "Fix the environment variable" in message


def test_every_bad_variable_is_reported_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OMS_KAFKA_BOOTSTRAP", "nonsense")
    monkeypatch.setenv("OMS_PARTITIONS", "0")
    monkeypatch.setenv("OMS_CLICKHOUSE_URL", "ftp://x")
    with pytest.raises(SettingsError) as info:
        load_settings()
    message = str(info.value)
    for var in ("OMS_KAFKA_BOOTSTRAP", "OMS_PARTITIONS", "OMS_CLICKHOUSE_URL"):
        assert var in message


def test_unknown_variable_is_refused_with_the_closest_setting_suggested(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OMS_KAFKA_BOOTSTRAPS", "127.0.0.1:9092")
    with pytest.raises(SettingsError, match="OMS_KAFKA_BOOTSTRAPS is not an OMS setting") as info:
        load_settings()
    assert "Did you mean OMS_KAFKA_BOOTSTRAP?" in str(info.value)


def test_variables_without_the_oms_prefix_are_ignored(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KAFKA_BOOTSTRAP", "nonsense")
    assert load_settings().kafka_bootstrap == "127.0.0.1:9092"


def test_valid_variables_are_read_and_normalized(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OMS_KAFKA_BOOTSTRAP", " k1:9092 , k2:9093 ,")
    monkeypatch.setenv("OMS_PARTITIONS", "12")
    monkeypatch.setenv("OMS_CLICKHOUSE_URL", "https://ch.example.com:8443/")
    monkeypatch.setenv("OMS_TOPIC_PREFIX", "t123.")
    settings = load_settings()
    assert settings.kafka_bootstrap == "k1:9092,k2:9093"
    assert settings.partitions == 12
    assert settings.clickhouse_url == "https://ch.example.com:8443"
    assert settings.topic_prefix == "t123."
    assert settings.kafka_port == 9092
    assert not settings.kafka_is_local
    assert not settings.clickhouse_embedded


def test_overrides_win_over_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OMS_PARTITIONS", "12")
    assert load_settings(partitions=2).partitions == 2


def test_settings_are_frozen() -> None:
    settings = load_settings()
    with pytest.raises(Exception, match="frozen"):
        settings.partitions = 9  # type: ignore[misc]


def test_defaults_point_at_local_embedded_services() -> None:
    settings = load_settings()
    assert settings.kafka_bootstrap == "127.0.0.1:9092"
    assert settings.kafka_is_local
    assert settings.kafka_port == 9092
    assert settings.redis_url == "redis://127.0.0.1:6379/0"
    assert settings.redis_is_local
    assert settings.redis_port == 6379
    assert settings.clickhouse_embedded
    assert settings.worker_web_host == "127.0.0.1"
    assert settings.topic_prefix == ""
    assert settings.tenant == "default"


def test_data_path_is_absolute(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("OMS_DATA_DIR", "rel/dir")
    assert load_settings().data_path == tmp_path / "rel" / "dir"


def test_masked_hides_the_clickhouse_password(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OMS_CLICKHOUSE_PASSWORD", "hunter2")
    settings = load_settings()
    masked = settings.masked()
    assert masked["OMS_CLICKHOUSE_PASSWORD"] == "********"
    assert "hunter2" not in repr(masked)
    assert settings.clickhouse_password.get_secret_value() == "hunter2"


def test_masked_shows_an_empty_password_as_empty() -> None:
    assert load_settings().masked()["OMS_CLICKHOUSE_PASSWORD"] == ""


@pytest.mark.parametrize(
    ("var", "url"),
    [
        ("OMS_REDIS_URL", "redis://u:secret@127.0.0.1:6379/0"),
        ("OMS_REDIS_URL", "rediss://default:secret@cache.example.com:6380/1"),
        ("OMS_CLICKHOUSE_URL", "https://admin:secret@ch.example.com:8443"),
    ],
)
def test_masked_hides_a_password_inside_a_url(monkeypatch: pytest.MonkeyPatch, var: str, url: str) -> None:
    monkeypatch.setenv(var, url)
    masked = load_settings().masked()
    assert "secret" not in repr(masked)
    assert "********@" in masked[var]


def test_masked_hides_a_password_in_a_url_without_user_name(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OMS_REDIS_URL", "redis://:secret@127.0.0.1:6379/0")
    assert "secret" not in repr(load_settings().masked())


def test_masked_lists_every_setting_under_its_variable_name() -> None:
    masked = load_settings().masked()
    assert set(masked) == {"OMS_" + name.upper() for name in Settings.model_fields}
    assert masked["OMS_KAFKA_BOOTSTRAP"] == "127.0.0.1:9092"
    assert masked["OMS_REDIS_URL"] == "redis://127.0.0.1:6379/0"


def test_per_channel_settings_fall_back_to_the_default_for_unlisted_channels() -> None:
    settings = Settings(short_policy="*=reject, tiktok=backorder", unpaid_hold_s="*=3600,lazada=1800")
    assert settings.short_policy_for("tiktok") == "backorder"
    assert settings.short_policy_for("shopee") == "reject"
    assert settings.unpaid_hold_ms("lazada") == 1_800_000
    assert settings.unpaid_hold_ms("pos") == 3_600_000
    assert Settings(short_policy="partial").short_policy_for("grab") == "partial"


def test_a_copy_with_another_data_dir_has_that_data_path_not_the_cached_one(tmp_path: Path) -> None:
    settings = Settings()
    assert settings.data_path == Path(".oms").resolve()
    copy = settings.model_copy(update={"data_dir": tmp_path / "other"})
    assert copy.data_path == (tmp_path / "other").resolve()
    assert settings.data_path == Path(".oms").resolve(), "the original keeps its own"
