"""The one Settings object: built at the entry point from the environment and passed down."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlparse

from pydantic import AliasChoices, Field, SecretStr, ValidationError, ValidationInfo, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from gateway.db.engine import normalize_url

# Their values are never repeated in an error message.
_SECRET = (
    "master_key",
    "config_secret_key",
    "database_url",
    "redis_url",
    "openai_api_key",
    "anthropic_api_key",
    "gemini_api_key",
)


class SettingsError(ValueError):
    """Some settings are invalid: `problems` holds (field, what was expected) pairs."""

    def __init__(self, problems: list[tuple[str, str]], values: Mapping[str, Any]) -> None:
        self.problems = problems
        super().__init__(
            "; ".join(
                f"invalid setting SWITCHYARD_{field.upper()}"
                + ("" if field in _SECRET or field not in values else f"={values[field]!r}")
                + f": {why}"
                for field, why in problems
            )
        )


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="SWITCHYARD_", env_file=".env", extra="ignore", populate_by_name=True
    )

    config: Path | None = None
    # postgresql:// and postgres:// get the asyncpg driver, sqlite:// aiosqlite (gateway/db/engine.py).
    database_url: str = "sqlite+aiosqlite:///./switchyard.db"
    redis_url: str | None = None
    # The Redis URL names one node of a Redis Cluster (any node; the rest are discovered): limits,
    # budgets, key invalidations and config announcements then go through redis-py's cluster client.
    # Ignored without a Redis URL.
    redis_cluster: bool = False
    master_key: SecretStr | None = None
    # Encrypts the secrets (API keys, credential headers) an admin writes into the routing config
    # through the admin API, so the database holds them only encrypted (gateway/live/secrets.py). A
    # Fernet key, or any long random string; without it a config may name secrets only as ${ENV}.
    config_secret_key: SecretStr | None = None

    host: str = "127.0.0.1"
    port: int = Field(default=4000, ge=1, le=65535)
    workers: int = Field(default=1, ge=1)
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    # On SIGTERM, how long in-flight requests (long streams included) may take to finish before they are
    # cut; an orchestrator's grace period must cover it (deploy/k8s: terminationGracePeriodSeconds).
    shutdown_drain_s: int = Field(default=30, ge=0)

    max_body_bytes: int = Field(default=32 * 1024 * 1024, ge=1024)
    # Attempts per deployment beyond the first, on connect errors, 429 and 5xx.
    retries: int = Field(default=2, ge=0)
    retry_backoff_s: float = Field(default=0.05, ge=0)
    retry_backoff_max_s: float = Field(default=2.0, ge=0)
    # A deployment failing this many calls in a row sits out `cooldown_s` seconds.
    cooldown_failures: int = Field(default=3, ge=1)
    cooldown_s: float = Field(default=30.0, ge=0)

    # Rate limits and budgets: what to do when Redis is unreachable.
    limits_fail_mode: Literal["open", "closed"] = "open"
    # Send a call upstream while its Redis check is still out, when the last answers left at least
    # this share of every limit and budget free (gateway/limits/headroom.py); 1 turns it off.
    limits_overlap_margin: float = Field(default=0.25, gt=0, le=1)
    # Past this a Redis call counts as down (fail-open/closed); too short and a busy host flaps.
    redis_timeout_s: float = Field(default=0.5, gt=0)
    # How often budget totals in Redis are raised to at least what the database recorded.
    limits_reconcile_interval_s: float = Field(default=60.0, ge=0)
    # Records wait here (append-only files) while the database is unreachable.
    spool_dir: Path = Path("./switchyard-spool")
    spend_batch_size: int = Field(default=500, ge=1)
    spend_flush_interval_s: float = Field(default=0.5, gt=0)
    auth_cache_ttl_s: float = Field(default=60.0, ge=0)
    # /health/ready answers from states probed this often in the background (gateway/readiness.py);
    # a probe slower than the timeout counts the dependency as down.
    health_probe_interval_s: float = Field(default=1.0, gt=0)
    health_probe_timeout_s: float = Field(default=1.0, gt=0)
    # How long a key stays cached while invalidations may be missed (Redis unreachable): a revoke
    # takes effect on every replica within this.
    auth_cache_degraded_ttl_s: float = Field(default=3.0, ge=0)
    auth_cache_max_keys: int = Field(default=10_000, ge=1)
    # Unknown keys: remembered briefly in their own smaller LRU, so random keys cannot evict live ones.
    auth_negative_ttl_s: float = Field(default=5.0, ge=0)
    auth_negative_max_keys: int = Field(default=1_000, ge=1)
    # Failed authentications per client address (token bucket, per process); past it a 429 without
    # any key lookup. 0 turns it off.
    auth_failures_per_minute: float = Field(default=60.0, ge=0)
    auth_failures_burst: int = Field(default=20, ge=1)
    auth_failures_max_clients: int = Field(default=10_000, ge=1)
    # Live config (gateway/live/sync.py): a change is announced on this Redis channel, and every
    # replica also reads the newest version number this often, so a lost announcement is healed within it.
    config_poll_interval_s: float = Field(default=2.0, gt=0, le=300)
    config_channel: str = "switchyard:config"
    # File mode (`serve --config FILE`): how often the file is checked for a change
    # (gateway/live/filewatch.py).
    config_watch_interval_s: float = Field(default=1.0, gt=0, le=300)
    # /dashboard sign-ins last this long (seconds). A session is a signed, encrypted cookie, so every
    # replica honours it without a shared store; unset, its secret is derived from the master key
    # (a new master key ends every session; with this set, only the admins').
    dashboard_session_ttl_s: float = Field(default=12 * 3600.0, gt=0)
    dashboard_secret: SecretStr | None = None
    # A /dashboard/api answer is served again to the same viewer for this long (0: never): a page
    # refreshed every second then costs the gateway a query every few seconds (gateway/dashboard/answers.py).
    dashboard_cache_s: float = Field(default=5.0, ge=0, le=300)
    # Shadow judging (a route's `shadow:`, gateway/quality/shadow.py): jobs waiting past this many are
    # dropped (and counted), never waited for; the tasks that work them; a seed makes the sampling
    # repeatable (tests).
    shadow_queue_size: int = Field(default=64, ge=1)
    shadow_workers: int = Field(default=1, ge=1, le=32)
    shadow_seed: int | None = None
    # How often captured prompts past their team's retention are deleted (gateway/quality/capture.py).
    capture_purge_interval_s: float = Field(default=3600.0, gt=0)

    # OpenTelemetry (gateway/tracing.py, the `otel` extra): an OTLP/HTTP collector's base URL
    # (http://collector:4318) or its traces URL. Unset, nothing is traced and nothing of it is loaded.
    otel_endpoint: str | None = None
    otel_service_name: str = "switchyard"
    # How often finished spans are sent (they are batched in between).
    otel_export_interval_s: float = Field(default=1.0, gt=0, le=60)

    # Responses API answers stored with `store: true` (the default) are deleted this many days after
    # they were made; previous_response_id and GET /v1/responses/{id} find them until then. 0 keeps
    # them until deleted.
    responses_retention_days: float = Field(default=30.0, ge=0)

    # Provider keys for the embedded defaults (no config file), under their usual names.
    openai_api_key: SecretStr | None = Field(
        default=None, validation_alias=AliasChoices("SWITCHYARD_OPENAI_API_KEY", "OPENAI_API_KEY")
    )
    anthropic_api_key: SecretStr | None = Field(
        default=None, validation_alias=AliasChoices("SWITCHYARD_ANTHROPIC_API_KEY", "ANTHROPIC_API_KEY")
    )
    gemini_api_key: SecretStr | None = Field(
        default=None,
        validation_alias=AliasChoices("SWITCHYARD_GEMINI_API_KEY", "GEMINI_API_KEY", "GOOGLE_API_KEY"),
    )
    # Serve the bundled local model in the embedded defaults when its engine is installed.
    local_model: bool = True
    # Set by `serve --workers N` for its workers (JSON in SWITCHYARD_LOCAL_ENGINES): deployment id ->
    # URL of the one engine process that serves that local model to all of them.
    local_engines: dict[str, str] = Field(default_factory=dict)

    def __init__(self, **values: Any) -> None:
        try:
            super().__init__(**values)
        except ValidationError as exc:
            raise SettingsError(_problems(exc), _inputs(exc)) from None

    @field_validator("database_url")
    @classmethod
    def _database_url(cls, url: str) -> str:
        return normalize_url(url)

    @field_validator("redis_cluster")
    @classmethod
    def _cluster(cls, cluster: bool, info: ValidationInfo) -> bool:
        url = info.data.get("redis_url")
        # Without a URL here it may still come from the config file, which is checked on its own.
        if not cluster or not url:
            return cluster
        u = urlparse(url)
        if u.scheme not in ("redis", "rediss"):
            raise ValueError("a Redis Cluster node is reached by redis:// or rediss://")
        if u.path.strip("/") not in ("", "0") or "db=" in u.query:
            raise ValueError("a Redis Cluster has only database 0: leave the database out of the URL")
        return cluster

    @field_validator("otel_endpoint")
    @classmethod
    def _otel_endpoint(cls, url: str | None) -> str | None:
        if not url:
            return None
        if not url.startswith(("http://", "https://")) or len(url) > 2048:
            raise ValueError("an http:// or https:// URL of an OTLP/HTTP collector")
        return url

    @field_validator("config_channel")
    @classmethod
    def _channel(cls, name: str) -> str:
        if not name or any(c.isspace() for c in name):
            raise ValueError("a Redis channel name: not empty, no spaces")
        return name

    def filled_from(self, file_values: Mapping[str, Any]) -> Settings:
        """These settings with the config file's values where neither the environment nor the command
        line set the field; SettingsError names the file's invalid ones."""
        extra = {k: v for k, v in file_values.items() if k not in self.model_fields_set}
        if not extra:
            return self
        # Validated on their own and copied in: rebuilding these settings would read the environment
        # and .env again, which their maker may have ruled out (`_env_file=None`).
        valid = Settings(_env_file=None, **extra)  # type: ignore[call-arg]
        return self.model_copy(update={k: getattr(valid, k) for k in extra})


def _problems(exc: ValidationError) -> list[tuple[str, str]]:
    out = []
    for err in exc.errors():
        field = str(err["loc"][0]) if err["loc"] else "settings"
        why = str(err["ctx"]["error"]) if err["type"] == "value_error" else err["msg"]
        out.append((field.removeprefix("SWITCHYARD_").lower(), why))
    return out


def _inputs(exc: ValidationError) -> dict[str, Any]:
    return {
        str(e["loc"][0]).removeprefix("SWITCHYARD_").lower(): e["input"] for e in exc.errors() if e["loc"]
    }
