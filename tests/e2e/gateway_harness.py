"""The end-to-end gateway harness: its config, settings and handle, and the helpers tests share.

`gateway_config` has one name per scenario, so tests that count calls, cool deployments down or rotate a
load-balanced name never disturb each other:

  gpt-4o-mini        openai_compatible fake, upstream id `gpt-4o-mini-upstream`
  gpt-native         openai fake as `provider: openai` (its own /v1/responses), price 1.0 / 2.0;
                     native-<fault> the same for the fake's fault models (fail-400, die-midstream
                     and the malformed 200s of `tests.fakes.responses_faults`)
  priced             openai fake, price 1.0 / 2.0 USD per Mtok (exact cost header)
  claude             anthropic fake (native Messages API), upstream id `claude-upstream`
  gemini             gemini fake, upstream id `gemini-upstream`
  fail-400 ... die-midstream, flaky-1-retry, flaky-1-header   openai fake fault models (tests.fakes)
  claude-die-midstream   anthropic fake `die-midstream`
  claude-<fault>, gemini-<fault>   the anthropic / gemini fakes' fault models (fail-400/429/500,
                     overloaded-midstream/-late, die-midstream)
  hang               openai fake `hang`, deployment timeout 0.5 s
  refused            a closed port
  fallback           [closed port, openai fake]      same name, two deployments
  cooldown           [closed port, openai fake]      same name, two deployments
  hang-fallback      [hang with 0.5 s timeout, openai fake]
  broken             openai fake `fail-500` (only ever used as the first candidate of `auto-fallback`)
  slow               `tests.e2e.slow_upstream.SlowUpstream`: streams slowly and records client disconnects
  defaulted, embed-defaulted, claude-defaulted   the openai / anthropic fakes behind `defaults:`
  cascade-unsure, cascade-sure   openai fake `conf-0.41` / `conf-0.9` (tests.fakes.confidence), small
  routes: auto -> [gpt-4o-mini, claude]; auto-fallback -> [broken, gpt-4o-mini];
          auto-cascade-unsure / auto-cascade-sure -> [cascade-unsure / cascade-sure, claude], mode
          cascade at min_confidence 0.6
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import select

from gateway.config import GatewayConfig, parse_config
from gateway.db.engine import make_engine
from gateway.db.models import RequestLog
from gateway.settings import Settings
from tests.e2e.slow_upstream import SlowUpstream
from tests.fakes.responses_faults import FAULTS as RESPONSE_FAULTS
from tests.fakes.server import ServerThread, closed_port

MASTER_KEY = "sk-master"
MAX_BODY_BYTES = 64 * 1024
HANG_TIMEOUT_S = 0.5
PRICE_IN = Decimal("1.0")
PRICE_OUT = Decimal("2.0")
MTOK = Decimal(1_000_000)
CLIENT_TIMEOUT_S = 10.0
CASCADE_THRESHOLD = 0.6
# The `defaults:` of the deployments named *-defaulted behind the OpenAI fake.
DEFAULTS = {"temperature": 0.3, "top_p": 0.8, "max_tokens": 50}


# --------------------------------------------------------------------------- the gateway


def gateway_config(openai_url: str, anthropic_url: str, gemini_url: str, slow_url: str) -> GatewayConfig:
    oa_base = openai_url + "/v1"
    cheap = {"input_per_mtok": 0.15, "output_per_mtok": 0.6}

    def oa(name: str, model: str | None = None, base: str = oa_base, **extra: Any) -> dict[str, Any]:
        return {
            "name": name,
            "provider": "openai_compatible",
            "model": model or name,
            "api_base": base,
            "api_key": "sk-upstream-openai",
            "timeout": 5.0,
            "connect_timeout": 1.0,
            "price": cheap,
            **extra,
        }

    refused = f"http://127.0.0.1:{closed_port()}/v1"
    models = [
        oa("gpt-4o-mini", "gpt-4o-mini-upstream", tier="small"),
        oa("text-embedding-3-small", "text-embedding-3-small"),
        oa("gpt-3.5-turbo-instruct", "gpt-3.5-turbo-instruct"),
        oa("priced", "priced-upstream", price={"input_per_mtok": 1.0, "output_per_mtok": 2.0}),
        oa(
            "gpt-native",
            "gpt-native-upstream",
            provider="openai",
            price={"input_per_mtok": 1.0, "output_per_mtok": 2.0},
        ),
        *(oa(f"native-{f}", f, provider="openai") for f in ("fail-400", "die-midstream", *RESPONSE_FAULTS)),
        {
            "name": "claude",
            "provider": "anthropic",
            "model": "claude-upstream",
            "api_base": anthropic_url,
            "api_key": "sk-ant-upstream",
            "timeout": 5.0,
            "connect_timeout": 1.0,
            "tier": "large",
            "price": {"input_per_mtok": 3.0, "output_per_mtok": 15.0},
        },
        {
            "name": "gemini",
            "provider": "gemini",
            "model": "gemini-upstream",
            "api_base": gemini_url,
            "api_key": "gemini-upstream-key",
            "timeout": 5.0,
            "connect_timeout": 1.0,
            "price": {"input_per_mtok": 0.1, "output_per_mtok": 0.4},
        },
        {
            "name": "claude-die-midstream",
            "provider": "anthropic",
            "model": "die-midstream",
            "api_base": anthropic_url,
            "api_key": "sk-ant-upstream",
            "timeout": 5.0,
            "connect_timeout": 1.0,
            "price": {"input_per_mtok": 3.0, "output_per_mtok": 15.0},
        },
        *(
            {
                "name": f"claude-{fault}",
                "provider": "anthropic",
                "model": fault,
                "api_base": anthropic_url,
                "api_key": "sk-ant-upstream",
                "timeout": 5.0,
                "connect_timeout": 1.0,
                "price": {"input_per_mtok": 3.0, "output_per_mtok": 15.0},
            }
            for fault in ("fail-400", "fail-429", "fail-500", "overloaded-midstream", "overloaded-late")
        ),
        *(
            {
                "name": f"gemini-{fault}",
                "provider": "gemini",
                "model": fault,
                "api_base": gemini_url,
                "api_key": "gemini-upstream-key",
                "timeout": 5.0,
                "connect_timeout": 1.0,
                "price": {"input_per_mtok": 0.1, "output_per_mtok": 0.4},
            }
            for fault in ("fail-400", "fail-429", "fail-500", "die-midstream")
        ),
        *(oa(name) for name in ("fail-400", "fail-401", "fail-429", "fail-500", "die-midstream")),
        oa("flaky-1-retry"),
        oa("flaky-1-header"),
        oa("hang", timeout=HANG_TIMEOUT_S),
        oa("refused", "gpt-4o-mini", base=refused),
        oa("fallback", "gpt-4o-mini", base=refused),
        oa("fallback", "gpt-4o-mini"),
        oa("cooldown", "gpt-4o-mini", base=refused),
        oa("cooldown", "gpt-4o-mini"),
        oa("hang-fallback", "hang", timeout=HANG_TIMEOUT_S),
        oa("hang-fallback", "gpt-4o-mini"),
        # Same tier as gpt-4o-mini and cheaper, so the router picks it first and must fall back.
        oa("broken", "fail-500", tier="small", price={"input_per_mtok": 0.01, "output_per_mtok": 0.01}),
        oa("slow", "slow-upstream", base=slow_url + "/v1"),
        oa("defaulted", "gpt-4o-mini", defaults=DEFAULTS),
        oa("embed-defaulted", "text-embedding-3-small", defaults=DEFAULTS),
        {
            "name": "claude-defaulted",
            "provider": "anthropic",
            "model": "claude-upstream",
            "api_base": anthropic_url,
            "api_key": "sk-ant-upstream",
            "timeout": 5.0,
            "connect_timeout": 1.0,
            "defaults": {"temperature": 0.4, "top_k": 7, "max_tokens": 33},
        },
        oa("cascade-unsure", "conf-0.41", tier="small"),
        oa("cascade-sure", "conf-0.9", tier="small"),
    ]
    cascade = {"quality": 0.0, "mode": "cascade", "min_confidence": CASCADE_THRESHOLD}
    routes = {
        # A loose quality knob: the small tier is good enough for a greeting.
        "auto": {"candidates": ["gpt-4o-mini", "claude"], "quality": 0.5},
        "auto-fallback": {"candidates": ["broken", "gpt-4o-mini"]},
        "auto-cascade-unsure": {"candidates": ["cascade-unsure", "claude"], **cascade},
        "auto-cascade-sure": {"candidates": ["cascade-sure", "claude"], **cascade},
    }
    return parse_config({"models": models, "routes": routes}, env={})


def db_url(state_dir: Path) -> str:
    return f"sqlite+aiosqlite:///{state_dir / 'switchyard.db'}"


def gateway_settings(state_dir: Path) -> Settings:
    return Settings(
        _env_file=None,  # type: ignore[call-arg]
        database_url=db_url(state_dir),
        spool_dir=state_dir / "spool",
        master_key=MASTER_KEY,
        retries=1,
        retry_backoff_s=0.0,
        retry_backoff_max_s=0.0,
        cooldown_failures=2,
        cooldown_s=60.0,
        max_body_bytes=MAX_BODY_BYTES,
    )


@dataclass
class Gateway:
    url: str
    openai_fake: ServerThread
    anthropic_fake: ServerThread
    gemini_fake: ServerThread
    slow: SlowUpstream
    db_url: str

    @property
    def openai_requests(self) -> list[Any]:
        """What the OpenAI fake received: `RecordedRequest(path, headers, body)`."""
        return self.openai_fake.app.state.requests

    @property
    def anthropic_requests(self) -> list[dict[str, Any]]:
        return self.anthropic_fake.app.state.requests

    @property
    def gemini_requests(self) -> list[dict[str, Any]]:
        return self.gemini_fake.app.state.requests

    def openai_sent(self, marker: str) -> list[dict[str, Any]]:
        """Bodies the OpenAI fake received whose `user` field is `marker`."""
        return [
            r.body for r in self.openai_requests if isinstance(r.body, dict) and r.body.get("user") == marker
        ]

    def metrics(self) -> str:
        return httpx.get(self.url + "/metrics", timeout=CLIENT_TIMEOUT_S).text

    def healthy(self) -> bool:
        return httpx.get(self.url + "/health/live", timeout=CLIENT_TIMEOUT_S).status_code == 200

    def record(self, request_id: str) -> RequestLog:
        """The request log's row of `request_id`, once the writer has flushed it (asserts it comes)."""
        return asyncio.run(read_record(self.db_url, request_id))


async def read_record(url: str, request_id: str) -> RequestLog:
    """The request log's row of `request_id` in the database at `url`, waiting for the writer's flush."""
    engine = make_engine(url)
    try:
        for _ in range(200):
            async with engine.connect() as conn:
                query = select(RequestLog).where(RequestLog.request_id == request_id)
                row = (await conn.execute(query)).first()
            if row is not None:
                return row  # type: ignore[return-value]
            await asyncio.sleep(0.05)
    finally:
        await engine.dispose()
    raise AssertionError(f"no record of {request_id}")


# --------------------------------------------------------------------------- helpers

# One weather tool, in the OpenAI (`WEATHER_TOOL`) and the Anthropic (`CLAUDE_WEATHER_TOOL`) shape.
_WEATHER = {"name": "get_weather", "description": "Current weather in a city."}
_CITY_SCHEMA = {
    "type": "object",
    "properties": {"city": {"type": "string"}},
    "required": ["city"],
}
WEATHER_TOOL = {"type": "function", "function": {**_WEATHER, "parameters": _CITY_SCHEMA}}
CLAUDE_WEATHER_TOOL = {**_WEATHER, "input_schema": _CITY_SCHEMA}

# Each chat backend and the greeting its fake answers with.
GREETINGS = {
    "gpt-4o-mini": "Hello from openai!",
    "claude": "Hello from anthropic!",
    "gemini": "Hello from gemini!",
}


def expected_cost(prompt_tokens: int, completion_tokens: int) -> Decimal:
    """The exact cost of a call to the `priced` deployment."""
    return (prompt_tokens * PRICE_IN + completion_tokens * PRICE_OUT) / MTOK


def wait_for(predicate: Callable[[], bool], timeout: float = 3.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return predicate()


def error_of(resp: httpx.Response) -> dict[str, Any]:
    """The OpenAI error object of a gateway answer (asserts the shape)."""
    assert resp.headers["content-type"].startswith("application/json"), resp.text
    doc = resp.json()
    assert isinstance(doc, dict) and isinstance(doc.get("error"), dict), doc
    assert isinstance(doc["error"].get("message"), str) and doc["error"]["message"]
    assert "Traceback" not in resp.text
    return doc["error"]
