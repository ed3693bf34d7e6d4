"""Settings from the environment: a bad value is one line naming the variable and what it expects."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.settings import Settings, SettingsError


@pytest.mark.parametrize(
    ("env", "message"),
    [
        (
            {"SWITCHYARD_RETRIES": "abc"},
            "invalid setting SWITCHYARD_RETRIES='abc': Input should be a valid integer",
        ),
        ({"SWITCHYARD_WORKERS": "0"}, "invalid setting SWITCHYARD_WORKERS='0': Input should be greater"),
        ({"SWITCHYARD_PORT": "70000"}, "invalid setting SWITCHYARD_PORT='70000': Input should be less"),
        (
            {"SWITCHYARD_LIMITS_FAIL_MODE": "maybe"},
            "invalid setting SWITCHYARD_LIMITS_FAIL_MODE='maybe': Input should be 'open' or 'closed'",
        ),
        (
            {"SWITCHYARD_DATABASE_URL": "mysql://u:hunter2@db/app"},
            "invalid setting SWITCHYARD_DATABASE_URL: unsupported database URL scheme 'mysql'",
        ),
        (
            {"SWITCHYARD_CONFIG_POLL_INTERVAL_S": "0"},
            "invalid setting SWITCHYARD_CONFIG_POLL_INTERVAL_S='0': Input should be greater than 0",
        ),
        (
            {"SWITCHYARD_CONFIG_WATCH_INTERVAL_S": "3600"},
            "invalid setting SWITCHYARD_CONFIG_WATCH_INTERVAL_S='3600': Input should be less than or equal",
        ),
        (
            {"SWITCHYARD_SHUTDOWN_DRAIN_S": "-1"},
            "invalid setting SWITCHYARD_SHUTDOWN_DRAIN_S='-1': Input should be greater than or equal to 0",
        ),
        (
            {"SWITCHYARD_CONFIG_CHANNEL": "my channel"},
            "invalid setting SWITCHYARD_CONFIG_CHANNEL='my channel': a Redis channel name: not empty, no",
        ),
    ],
)
def test_invalid_environment_value_is_named(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], message: str
) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(SettingsError) as err:
        Settings(_env_file=None)
    assert str(err.value).startswith(message)
    assert "hunter2" not in str(err.value) and "\n" not in str(err.value)


def test_postgres_urls_from_the_environment_get_asyncpg(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SWITCHYARD_DATABASE_URL", "postgres://u:p@db:5432/app?sslmode=require")
    assert Settings(_env_file=None).database_url == "postgresql+asyncpg://u:p@db:5432/app?ssl=require"


def test_file_values_fill_in_only_what_nothing_else_set(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SWITCHYARD_RETRIES", "1")
    settings = Settings(_env_file=None, port=5000)
    merged = settings.filled_from({"retries": 7, "port": 6000, "cooldown_s": 2.5})
    assert (merged.retries, merged.port, merged.cooldown_s) == (1, 5000, 2.5)
    assert settings.filled_from({}) is settings
    with pytest.raises(SettingsError) as err:
        settings.filled_from({"cooldown_s": "soon"})
    assert err.value.problems == [
        ("cooldown_s", "Input should be a valid number, unable to parse string as a number")
    ]


def test_file_values_do_not_read_a_dotenv_the_caller_ruled_out(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / ".env").write_text("SWITCHYARD_PORT=7000\nSWITCHYARD_DATABASE_URL=postgres://u@db/app\n")
    settings = Settings(_env_file=None)
    merged = settings.filled_from({"retries": 7, "database_url": "sqlite:///./file.db"})
    assert (merged.port, merged.retries) == (4000, 7)
    assert merged.database_url == "sqlite+aiosqlite:///./file.db"
    assert merged.model_fields_set == {"retries", "database_url"}


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("unix:///run/redis.sock", "redis:// or rediss://"),
        ("redis://127.0.0.1:7000/3", "only database 0"),
        ("redis://127.0.0.1:7000?db=2", "only database 0"),
    ],
)
def test_a_cluster_url_that_cannot_name_a_cluster_node_is_refused(url: str, why: str) -> None:
    with pytest.raises(SettingsError) as err:
        Settings(_env_file=None, redis_url=url, redis_cluster=True)  # type: ignore[call-arg]
    assert "SWITCHYARD_REDIS_CLUSTER" in str(err.value) and why in str(err.value)
    assert url not in str(err.value)  # the URL may carry a password


def test_cluster_mode_takes_a_node_url() -> None:
    s = Settings(_env_file=None, redis_url="rediss://:pw@10.0.0.5:7000", redis_cluster="true")  # type: ignore[call-arg]
    assert s.redis_cluster and s.redis_url == "rediss://:pw@10.0.0.5:7000"


def test_otel_endpoint_is_off_unless_an_http_url(monkeypatch: pytest.MonkeyPatch) -> None:
    assert Settings(_env_file=None).otel_endpoint is None  # type: ignore[call-arg]
    monkeypatch.setenv("SWITCHYARD_OTEL_ENDPOINT", "")
    assert Settings(_env_file=None).otel_endpoint is None  # type: ignore[call-arg]
    monkeypatch.setenv("SWITCHYARD_OTEL_ENDPOINT", "http://127.0.0.1:4318")
    assert Settings(_env_file=None).otel_endpoint == "http://127.0.0.1:4318"  # type: ignore[call-arg]
    monkeypatch.setenv("SWITCHYARD_OTEL_ENDPOINT", "collector:4318")
    with pytest.raises(SettingsError, match="SWITCHYARD_OTEL_ENDPOINT='collector:4318': an http"):
        Settings(_env_file=None)  # type: ignore[call-arg]
