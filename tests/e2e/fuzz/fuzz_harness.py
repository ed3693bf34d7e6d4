"""What the fuzz tests share: a throwaway PostgreSQL database, the gateway's config and settings, and a
log handler that keeps the tracebacks of the 500s the gateway logs (so a failure shows where it broke).

FUZZ_MODELS: one name per way a request travels (OpenAI-compatible, native Anthropic, Gemini,
embeddings, legacy completions), so mutated bodies reach every translation.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gateway.config import GatewayConfig, parse_config
from gateway.db.migrate import upgrade
from gateway.settings import Settings
from tests.e2e.gateway_harness import MASTER_KEY, MAX_BODY_BYTES
from tests.integration.harness import pg_url_for
from tests.stores import create_pg_database, drop_pg_database

CHAT_MODELS = ("gpt-4o-mini", "claude", "gemini")
FUZZ_MODELS = (*CHAT_MODELS, "text-embedding-3-small", "gpt-3.5-turbo-instruct", "auto")
AUTH = {"authorization": f"Bearer {MASTER_KEY}"}


@asynccontextmanager
async def pg_database(purpose: str) -> AsyncIterator[str]:
    """A new, migrated PostgreSQL database on the shared server, dropped afterwards."""
    name = await create_pg_database(purpose)
    try:
        await upgrade(pg_url_for(name))
        yield pg_url_for(name)
    finally:
        await drop_pg_database(name)


def fuzz_config(openai_url: str, anthropic_url: str, gemini_url: str) -> GatewayConfig:
    common = {
        "timeout": 5.0,
        "connect_timeout": 1.0,
        "price": {"input_per_mtok": 1.0, "output_per_mtok": 2.0},
    }

    def oa(name: str, tier: str = "small", provider: str = "openai_compatible") -> dict[str, Any]:
        base = {"provider": provider, "api_base": openai_url + "/v1", "api_key": "sk-up"}
        return {"name": name, "model": name, "tier": tier, **base, **common}

    models = [
        oa("gpt-4o-mini"),
        oa("text-embedding-3-small"),
        oa("gpt-3.5-turbo-instruct"),
        oa("gpt-native", provider="openai"),  # /v1/responses passed through
        {"name": "claude", "provider": "anthropic", "model": "claude-upstream", "api_base": anthropic_url}
        | {"api_key": "sk-ant-up", "tier": "large", **common},
        {"name": "gemini", "provider": "gemini", "model": "gemini-upstream", "api_base": gemini_url}
        | {"api_key": "gemini-up", **common},
    ]
    routes = {"auto": {"candidates": ["gpt-4o-mini", "claude"], "quality": 0.5}}
    return parse_config({"models": models, "routes": routes}, env={})


def fuzz_settings(state_dir: Path, database_url: str) -> Settings:
    return Settings(
        _env_file=None,  # type: ignore[call-arg]
        database_url=database_url,
        spool_dir=state_dir / "spool",
        master_key=MASTER_KEY,
        retries=0,
        max_body_bytes=MAX_BODY_BYTES,
    )


class LoggedErrors(logging.Handler):
    """Collects the gateway's ERROR records (an unhandled exception is logged with its traceback)."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[str] = []
        self._logger = logging.getLogger("switchyard")

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(self.format(record))

    def __enter__(self) -> LoggedErrors:
        self._logger.addHandler(self)
        return self

    def __exit__(self, *exc: object) -> None:
        self._logger.removeHandler(self)

    def last_frames(self) -> list[str]:
        """Each logged traceback's last line and the line that raised, for a short failure report."""
        out = []
        for r in self.records:
            lines = [ln for ln in r.splitlines() if ln.strip()]
            frames = [ln.strip() for ln in lines if ln.strip().startswith("File ")]
            out.append(f"{frames[-1] if frames else ''} -> {lines[-1]}")
        return out


@dataclass
class FuzzGateway:
    url: str
    errors: LoggedErrors
