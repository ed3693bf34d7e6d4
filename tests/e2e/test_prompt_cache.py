"""Prompt caching billed exactly: cache_control reaches Anthropic from both doors, the cache usage the
upstream reports reaches the client in its door's fields, and each request's record keeps cache reads,
5-minute and 1-hour writes apart and is charged each at its price (exact decimals).

The Anthropic fake caches as Anthropic does (tests.fakes.anthropic_upstream._cache_usage, a token a
word): the prompt up to a cache_control mark is written the first time and read by later requests.
Each test uses a system prompt of its own, so the fake's cache holds nothing of it at the start.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import anthropic
import httpx
import openai
import pytest

from gateway.app import create_app
from gateway.config import parse_config
from gateway.db.models import RequestLog
from tests.e2e.gateway_harness import CLIENT_TIMEOUT_S, MASTER_KEY, MTOK, gateway_settings, read_record
from tests.fakes import anthropic_upstream, gemini_upstream, openai_upstream
from tests.fakes.server import ServerThread

# claude-priced: $3 in, $15 out per Mtok, no cache prices set: Anthropic's multiples of the input.
IN, OUT = Decimal(3), Decimal(15)
READ, WRITE_5M, WRITE_1H = Decimal("0.3"), Decimal("3.75"), Decimal(6)
# openai-cached: cache reads at the configured cached_input price.
OA_IN, OA_OUT, OA_READ = Decimal(2), Decimal(8), Decimal("0.5")


class Stack:
    def __init__(self, url: str, anthropic_fake: ServerThread, db: Path) -> None:
        self.url = url
        self.anthropic_fake = anthropic_fake
        self.db = db

    def sent(self) -> dict[str, Any]:
        """The last body the Anthropic fake received."""
        return self.anthropic_fake.app.state.requests[-1]["body"]

    def record(self, request_id: str) -> RequestLog:
        return asyncio.run(read_record(f"sqlite+aiosqlite:///{self.db}", request_id))


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    state = tmp_path_factory.mktemp("prompt-cache")
    with (
        ServerThread(anthropic_upstream.create_app()) as an,
        ServerThread(openai_upstream.create_app()) as oa,
        ServerThread(gemini_upstream.create_app()) as ge,
    ):
        models = [
            {
                "name": "claude-priced",
                "provider": "anthropic",
                "model": "claude-cache",
                "api_base": an.url,
                "api_key": "k",
                "price": {"input_per_mtok": 3, "output_per_mtok": 15},
            },
            {
                # Priced from litellm's bundled map, 1-hour writes included.
                "name": "claude-mapped",
                "provider": "anthropic",
                "model": "claude-sonnet-4-5",
                "api_base": an.url,
                "api_key": "k",
            },
            {
                "name": "openai-cached",
                "provider": "openai",
                "model": "cached-gpt",
                "api_base": oa.url + "/v1",
                "api_key": "k",
                "price": {"input_per_mtok": 2, "output_per_mtok": 8, "cached_input_per_mtok": 0.5},
            },
            {
                "name": "gemini-cached",
                "provider": "gemini",
                "model": "cached-gemini",
                "api_base": ge.url,
                "api_key": "k",
                "price": {"input_per_mtok": 2, "output_per_mtok": 8, "cached_input_per_mtok": 0.5},
            },
        ]
        config = parse_config({"models": models}, env={})
        with ServerThread(create_app(gateway_settings(state), config)) as gw:
            yield Stack(gw.url, an, state / "switchyard.db")


@pytest.fixture(scope="module")
def claude(stack: Stack) -> Iterator[anthropic.Anthropic]:
    with anthropic.Anthropic(
        base_url=stack.url, api_key=MASTER_KEY, max_retries=0, timeout=CLIENT_TIMEOUT_S
    ) as c:
        yield c


@pytest.fixture(scope="module")
def oai(stack: Stack) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(
        base_url=stack.url + "/v1", api_key=MASTER_KEY, max_retries=0, timeout=CLIENT_TIMEOUT_S
    ) as c:
        yield c


def claude_cost(fresh: int, read: int, w5: int, w1: int, out: int) -> Decimal:
    return (fresh * IN + read * READ + w5 * WRITE_5M + w1 * WRITE_1H + out * OUT) / MTOK


def system(text: str, ttl: str | None = None) -> list[dict[str, Any]]:
    mark: dict[str, Any] = {"type": "ephemeral", **({"ttl": ttl} if ttl else {})}
    return [{"type": "text", "text": text, "cache_control": mark}]


USER = [{"role": "user", "content": "one two three"}]


def test_anthropic_door_write_then_read(claude: anthropic.Anthropic, stack: Stack) -> None:
    sys_prompt = system("You are a careful assistant who answers briefly")  # 8 tokens
    first = claude.messages.with_raw_response.create(
        model="claude-priced", max_tokens=64, system=sys_prompt, messages=USER
    )
    assert stack.sent()["system"] == sys_prompt  # passed through as sent
    u = first.parse().usage
    assert (u.input_tokens, u.cache_creation_input_tokens, u.cache_read_input_tokens) == (3, 8, 0)
    cost = claude_cost(3, 0, 8, 0, 3)
    assert cost == Decimal("0.000084")
    assert Decimal(first.headers["x-switchyard-cost-usd"]) == cost
    row = stack.record(first.headers["x-switchyard-request-id"])
    assert (row.prompt_tokens, row.cached_tokens, row.cache_write_5m_tokens, row.cache_write_1h_tokens) == (
        11,
        0,
        8,
        0,
    )
    assert row.cost_usd == cost

    second = claude.messages.with_raw_response.create(
        model="claude-priced", max_tokens=64, system=sys_prompt, messages=USER
    )
    u = second.parse().usage
    assert (u.input_tokens, u.cache_creation_input_tokens, u.cache_read_input_tokens) == (3, 0, 8)
    cost = claude_cost(3, 8, 0, 0, 3)
    assert cost == Decimal("0.0000564")
    assert Decimal(second.headers["x-switchyard-cost-usd"]) == cost
    row = stack.record(second.headers["x-switchyard-request-id"])
    assert (row.cached_tokens, row.cache_write_5m_tokens, row.cost_usd) == (8, 0, cost)
    metrics = httpx.get(stack.url + "/metrics", timeout=CLIENT_TIMEOUT_S).text
    assert 'switchyard_tokens_total{deployment="claude-priced",kind="cache_read"}' in metrics
    assert 'switchyard_tokens_total{deployment="claude-priced",kind="cache_write"}' in metrics


def test_anthropic_door_stream_one_hour_and_five_minute_writes(
    claude: anthropic.Anthropic, stack: Stack
) -> None:
    """A 1-hour mark then a 5-minute one: each stretch is written at its lifetime's price; the usage
    comes from message_start (input side) and message_delta (output)."""
    sys_prompt = [
        *system("Streaming tests share this long stable preamble", ttl="1h"),  # 7 tokens
        *system("and this shorter part"),  # 4 tokens
    ]
    raw = claude.messages.with_raw_response.create(
        model="claude-priced", max_tokens=64, system=sys_prompt, messages=USER, stream=True
    )
    request_id = raw.headers["x-switchyard-request-id"]
    events = list(raw.parse())
    start = next(e for e in events if e.type == "message_start")
    u = start.message.usage
    assert (u.cache_creation_input_tokens, u.cache_read_input_tokens, u.input_tokens) == (11, 0, 3)
    assert u.cache_creation is not None
    assert (u.cache_creation.ephemeral_1h_input_tokens, u.cache_creation.ephemeral_5m_input_tokens) == (7, 4)
    row = stack.record(request_id)
    assert row.streamed and not row.tokens_estimated
    assert (row.prompt_tokens, row.completion_tokens) == (14, 3)
    assert (row.cached_tokens, row.cache_write_5m_tokens, row.cache_write_1h_tokens) == (0, 4, 7)
    assert row.cost_usd == claude_cost(3, 0, 4, 7, 3) == Decimal("0.000111")

    # Again: the whole prefix is read.
    raw = claude.messages.with_raw_response.create(
        model="claude-priced", max_tokens=64, system=sys_prompt, messages=USER, stream=True
    )
    request_id = raw.headers["x-switchyard-request-id"]
    list(raw.parse())
    row = stack.record(request_id)
    assert (row.cached_tokens, row.cache_write_5m_tokens, row.cache_write_1h_tokens) == (11, 0, 0)
    assert row.cost_usd == claude_cost(3, 11, 0, 0, 3)


def test_litellm_map_prices_cache_reads_and_both_writes(claude: anthropic.Anthropic, stack: Stack) -> None:
    """claude-sonnet-4-5 in the bundled map: input 3e-6, 5m write 3.75e-6, 1h write 6e-6 per token."""
    sys_prompt = [*system("Mapped prices one two", ttl="1h"), *system("three four five six")]
    raw = claude.messages.with_raw_response.create(
        model="claude-mapped", max_tokens=64, system=sys_prompt, messages=USER
    )
    row = stack.record(raw.headers["x-switchyard-request-id"])
    assert (row.cache_write_1h_tokens, row.cache_write_5m_tokens) == (4, 4)
    expected = 3 * Decimal("3e-6") + 4 * Decimal("6e-6") + 4 * Decimal("3.75e-6") + 3 * Decimal("1.5e-5")
    assert row.cost_usd == expected == Decimal(raw.headers["x-switchyard-cost-usd"])


def test_openai_door_cache_control_reaches_anthropic(oai: openai.OpenAI, stack: Stack) -> None:
    """cache_control on a content part, and on a message with string content (LiteLLM's form), marks
    the Anthropic block it becomes; the client reads the cache in prompt_tokens_details.cached_tokens."""
    mark = {"type": "ephemeral"}
    messages: Any = [
        {
            "role": "system",
            "content": [{"type": "text", "text": "OpenAI door system prompt here", "cache_control": mark}],
        },
        {"role": "user", "content": "first question words", "cache_control": mark},
        {"role": "assistant", "content": "an answer"},
        {"role": "user", "content": "next"},
    ]
    first = oai.chat.completions.with_raw_response.create(model="claude-priced", messages=messages)
    sent = stack.sent()
    assert sent["system"] == [
        {"type": "text", "text": "OpenAI door system prompt here", "cache_control": mark}
    ]
    assert sent["messages"][0]["content"] == [
        {"type": "text", "text": "first question words", "cache_control": mark}
    ]
    usage = first.parse().usage
    assert usage is not None and usage.prompt_tokens == 11
    assert usage.prompt_tokens_details is not None and usage.prompt_tokens_details.cached_tokens == 0
    assert (usage.model_extra or {}).get("cache_creation_input_tokens") == 8
    row = stack.record(first.headers["x-switchyard-request-id"])
    assert (row.cached_tokens, row.cache_write_5m_tokens, row.cost_usd) == (0, 8, claude_cost(3, 0, 8, 0, 3))

    stream = oai.chat.completions.create(
        model="claude-priced", messages=messages, stream=True, stream_options={"include_usage": True}
    )
    last = list(stream)[-1]
    assert last.usage is not None and last.usage.prompt_tokens_details is not None
    assert last.usage.prompt_tokens_details.cached_tokens == 8
    assert last.usage.prompt_tokens == 11


def test_openai_cached_tokens_billed_at_cached_price(oai: openai.OpenAI, stack: Stack) -> None:
    """The OpenAI fake's `cached-*` models cache the conversation so far, as OpenAI does on its own."""
    messages: Any = [
        {"role": "user", "content": "alpha beta gamma delta"},
        {"role": "assistant", "content": "epsilon"},
        {"role": "user", "content": "zeta eta"},
    ]
    raw = oai.chat.completions.with_raw_response.create(model="openai-cached", messages=messages)
    usage = raw.parse().usage
    assert usage is not None and usage.prompt_tokens_details is not None
    assert (usage.prompt_tokens, usage.prompt_tokens_details.cached_tokens) == (7, 5)
    cost = (2 * OA_IN + 5 * OA_READ + 3 * OA_OUT) / MTOK
    assert cost == Decimal("0.0000305")
    assert Decimal(raw.headers["x-switchyard-cost-usd"]) == cost
    row = stack.record(raw.headers["x-switchyard-request-id"])
    assert (row.cached_tokens, row.cache_write_5m_tokens, row.cost_usd) == (5, 0, cost)


@pytest.mark.parametrize("stream", [False, True])
def test_gemini_cached_content_billed_at_cached_price(oai: openai.OpenAI, stack: Stack, stream: bool) -> None:
    """Gemini's cachedContentTokenCount is the OpenAI door's cached_tokens and costs the cached price."""
    messages: Any = [
        {"role": "user", "content": "alpha beta gamma delta"},
        {"role": "assistant", "content": "epsilon"},
        {"role": "user", "content": "zeta eta"},
    ]
    if stream:
        raw = oai.chat.completions.with_raw_response.create(
            model="gemini-cached", messages=messages, stream=True, stream_options={"include_usage": True}
        )
        usage = list(raw.parse())[-1].usage
    else:
        raw = oai.chat.completions.with_raw_response.create(model="gemini-cached", messages=messages)
        usage = raw.parse().usage
    assert usage is not None and usage.prompt_tokens_details is not None
    assert (usage.prompt_tokens, usage.prompt_tokens_details.cached_tokens) == (7, 5)
    row = stack.record(raw.headers["x-switchyard-request-id"])
    assert (row.cached_tokens, row.cost_usd) == (5, (2 * OA_IN + 5 * OA_READ + 3 * OA_OUT) / MTOK)


def test_anthropic_door_reads_openai_cache(claude: anthropic.Anthropic, stack: Stack) -> None:
    """An Anthropic client of an OpenAI deployment sees OpenAI's cached tokens as cache reads."""
    messages: Any = [
        {"role": "user", "content": "alpha beta gamma delta"},
        {"role": "assistant", "content": "epsilon"},
        {"role": "user", "content": "zeta eta"},
    ]
    msg = claude.messages.create(model="openai-cached", max_tokens=64, messages=messages)
    assert (msg.usage.input_tokens, msg.usage.cache_read_input_tokens) == (2, 5)
