"""A budget caps a call's answer at what is left of it instead of refusing the call (issue 15, item
12b), and a deployment without a price cannot serve a budgeted key (12a).

One in-process gateway per limiter (shared Redis, and the in-process one), in front of an upstream
that always writes as long as it is allowed (tests.fakes.verbose_upstream: it echoes the max_tokens it
got and bills that many tokens) and the Anthropic fake. Prices are a cent a token either way, so a
budget of $1.00 pays for 100 tokens, prompt and answer together.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import anthropic
import openai
import pytest

from gateway.app import create_app
from gateway.config import parse_config
from gateway.control import MIN_CAPPED_OUTPUT
from gateway.planner import InOrderPlanner
from gateway.settings import Settings
from gateway.usage import prompt_tokens
from providers.anthropic_translate import anthropic_request_to_openai
from tests.fakes import anthropic_upstream, verbose_upstream
from tests.fakes.server import ServerThread
from tests.integration.gateway_proc import MASTER_KEY
from tests.integration.harness import deployment, new_key, wait_rows, words

CENT = Decimal("0.01")
PER_MTOK = 10_000.0  # a cent a token
DEAR = 20 * PER_MTOK


@dataclass
class Gateway:
    url: str
    limiter: str
    # What the upstreams received, in order: bodies (verbose) and {"headers", "body"} (Anthropic).
    verbose: list[dict[str, Any]]
    claude: list[dict[str, Any]]

    def client(self, key: str) -> openai.AsyncOpenAI:
        return openai.AsyncOpenAI(base_url=self.url + "/v1", api_key=key, max_retries=0, timeout=30.0)

    def received(self, marker: str) -> dict[str, Any]:
        """The body the verbose upstream got for the one request whose prompt holds `marker`."""
        found = [b for b in self.verbose if _marker(b) == marker]
        assert len(found) == 1, (marker, len(found))
        return found[0]


def _marker(body: dict[str, Any]) -> str:
    """The first word of a request's first message: each test's requests start with their own."""
    messages = body.get("messages") or [{"content": body.get("prompt")}]
    content = messages[0].get("content")
    return content.split()[0] if isinstance(content, str) and content else ""


def _models(verbose_url: str, claude_url: str) -> list[dict[str, Any]]:
    def at_verbose(name: str, **extra: Any) -> dict[str, Any]:
        return {**deployment(name, verbose_url, PER_MTOK, PER_MTOK), **extra}

    return [
        at_verbose("verbose"),  # gpt-4o-mini upstream: the price map knows its longest answer
        at_verbose("verbose-oai", provider="openai"),
        at_verbose("bespoke", model="bespoke-model"),  # priced, longest answer unknown
        deployment("down", "http://127.0.0.1:9", PER_MTOK, PER_MTOK),  # nothing listens there
        at_verbose("dear", model="dear-model", price={"input_per_mtok": DEAR, "output_per_mtok": DEAR}),
        {**at_verbose("mystery", model="mystery-model"), "price": None},  # no price anywhere
        # One name, a priced deployment and one without a price (or without tool calling).
        at_verbose("half", model="half-priced"),
        {**at_verbose("half", model="half-unpriced"), "price": None},
        at_verbose("tooled", model="tooled-priced"),
        {**at_verbose("tooled", model="tooled-plain"), "price": None, "capabilities": []},
        {
            "name": "claude",
            "provider": "anthropic",
            "model": "claude-upstream",
            "api_base": claude_url,
            "api_key": "sk-ant-upstream",
            "timeout": 10.0,
            "price": {"input_per_mtok": PER_MTOK, "output_per_mtok": PER_MTOK},
        },
    ]


@pytest.fixture(scope="module", params=["redis", "cluster", "memory"])
def gw(
    request: pytest.FixtureRequest, pg_url: str, redis_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Gateway]:
    workdir: Path = tmp_path_factory.mktemp(f"budget-cap-{request.param}")
    cluster = request.getfixturevalue("redis_cluster_url") if request.param == "cluster" else None
    with (
        ServerThread(verbose_upstream.create_app()) as verbose,
        ServerThread(anthropic_upstream.create_app()) as claude,
    ):
        routes = {
            "mixed": {"candidates": ["mystery", "verbose"]},
            "unpriced": {"candidates": ["mystery"]},
            "dear-fallback": {"candidates": ["down", "dear"]},
            "dear-then-cheap": {"candidates": ["down", "dear", "verbose"]},
        }
        config = parse_config({"models": _models(verbose.url, claude.url), "routes": routes}, env={})
        settings = Settings(
            _env_file=None,  # type: ignore[call-arg]
            database_url=pg_url,
            redis_url={"redis": redis_url, "cluster": cluster, "memory": None}[request.param],
            redis_cluster=request.param == "cluster",
            redis_timeout_s=2.0,
            master_key=MASTER_KEY,
            spool_dir=workdir / "spool",
            spend_flush_interval_s=0.1,
            local_model=False,
        )
        with ServerThread(create_app(settings, config, planner=InOrderPlanner(config))) as srv:
            yield Gateway(srv.url, request.param, verbose.app.state.requests, claude.app.state.requests)


def chat_of(marker: str, n_words: int = 2) -> list[dict[str, Any]]:
    return [{"role": "user", "content": f"{marker} {words(n_words - 1)}".strip()}]


def affordable(budget: Decimal, messages: list[dict[str, Any]]) -> int:
    """Output tokens `budget` pays for after the prompt, as the gateway counts the prompt."""
    return int((budget - prompt_tokens({"messages": messages}) * CENT) / CENT)


async def test_a_call_without_max_tokens_is_capped_to_what_the_budget_pays_for(
    gw: Gateway, pg_url: str
) -> None:
    creds = await new_key(pg_url, key={"budget_usd": Decimal("1.00")})
    messages = chat_of(f"uncapped-{gw.limiter}")
    cap = affordable(Decimal("1.00"), messages)
    async with gw.client(creds.key) as client:
        raw = await client.chat.completions.with_raw_response.create(model="verbose", messages=messages)
        done = raw.parse()
        # Without the cap the whole 16,384-token answer was reserved ($163.92) and refused.
        assert raw.headers["x-switchyard-max-tokens-capped"] == str(cap)
        assert done.choices[0].message.content == f"max_tokens={cap}"
        sent = gw.received(f"uncapped-{gw.limiter}")
        assert sent["max_tokens"] == cap and "max_completion_tokens" not in sent
        assert Decimal(raw.headers["x-switchyard-cost-usd"]) == (2 + cap) * CENT <= Decimal("1.00")

        # What is left ($0.98 - cost) pays for no 16-token answer: refused as before.
        with pytest.raises(openai.RateLimitError) as refused:
            await client.chat.completions.create(model="verbose", messages=chat_of(f"after-{gw.limiter}"))
    err = refused.value.body
    assert isinstance(err, dict) and err["code"] == "budget_exceeded", err
    assert f"an answer of {MIN_CAPPED_OUTPUT} tokens" in err["message"]
    assert not [b for b in gw.verbose if _marker(b) == f"after-{gw.limiter}"]


async def test_a_stream_is_capped_too(gw: Gateway, pg_url: str) -> None:
    creds = await new_key(pg_url, team={"budget_usd": Decimal("0.60")})
    messages = chat_of(f"stream-{gw.limiter}")
    cap = affordable(Decimal("0.60"), messages)
    async with gw.client(creds.key) as client:
        raw = await client.chat.completions.with_raw_response.create(
            model="verbose", messages=messages, stream=True, stream_options={"include_usage": True}
        )
        assert raw.headers["x-switchyard-max-tokens-capped"] == str(cap)
        text, usage = "", None
        async for chunk in raw.parse():
            text += "".join(c.delta.content or "" for c in chunk.choices)
            usage = chunk.usage or usage
    assert text == f"max_tokens={cap}"
    assert usage is not None and usage.completion_tokens == cap
    assert gw.received(f"stream-{gw.limiter}")["max_tokens"] == cap
    rows = await wait_rows(pg_url, creds.key_id, 1)
    assert rows[0].cost_usd == (2 + cap) * CENT <= Decimal("0.60")


async def test_an_explicit_max_tokens_is_kept_when_it_fits_and_capped_when_not(
    gw: Gateway, pg_url: str
) -> None:
    """Key $1.00 under a team of $0.75: the team's budget is the tighter, so it decides."""
    creds = await new_key(pg_url, team={"budget_usd": Decimal("0.75")}, key={"budget_usd": Decimal("1.00")})
    first, second = chat_of(f"fits-{gw.limiter}"), chat_of(f"capped-{gw.limiter}")
    async with gw.client(creds.key) as client:
        raw = await client.chat.completions.with_raw_response.create(
            model="verbose", messages=first, max_tokens=40
        )
        assert "x-switchyard-max-tokens-capped" not in raw.headers
        assert gw.received(f"fits-{gw.limiter}")["max_tokens"] == 40
        left = Decimal("0.75") - Decimal(raw.headers["x-switchyard-cost-usd"])  # $0.33
        cap = affordable(left, second)
        assert MIN_CAPPED_OUTPUT <= cap < 40
        raw = await client.chat.completions.with_raw_response.create(
            model="verbose", messages=second, max_completion_tokens=40
        )
    assert raw.headers["x-switchyard-max-tokens-capped"] == str(cap)
    sent = gw.received(f"capped-{gw.limiter}")
    assert sent["max_completion_tokens"] == cap and "max_tokens" not in sent, "the client's own field"


async def test_the_cap_goes_in_the_field_the_provider_reads_and_counts_every_choice(
    gw: Gateway, pg_url: str
) -> None:
    creds = await new_key(pg_url, key={"budget_usd": Decimal("1.00")})
    messages = chat_of(f"choices-{gw.limiter}")
    async with gw.client(creds.key) as client:
        raw = await client.chat.completions.with_raw_response.create(
            model="verbose-oai", messages=messages, n=2
        )
    cap = affordable(Decimal("1.00"), messages) // 2
    assert raw.headers["x-switchyard-max-tokens-capped"] == str(cap)
    sent = gw.received(f"choices-{gw.limiter}")
    assert sent["max_completion_tokens"] == cap and "max_tokens" not in sent, "OpenAI's current field"
    assert Decimal(raw.headers["x-switchyard-cost-usd"]) == (2 + 2 * cap) * CENT <= Decimal("1.00")


async def test_an_unknown_longest_answer_is_capped_at_the_default_reservation(
    gw: Gateway, pg_url: str
) -> None:
    """`bespoke`'s longest answer is unknown: a budgeted call reserves 4,096 tokens and carries that cap,
    so it cannot run on past what was reserved. A key without a budget is left alone."""
    budgeted = await new_key(pg_url, key={"budget_usd": Decimal("100")})
    free = await new_key(pg_url)
    async with gw.client(budgeted.key) as client:
        raw = await client.chat.completions.with_raw_response.create(
            model="bespoke", messages=chat_of(f"bespoke-{gw.limiter}")
        )
    assert raw.headers["x-switchyard-max-tokens-capped"] == "4096"
    assert gw.received(f"bespoke-{gw.limiter}")["max_tokens"] == 4096
    async with gw.client(free.key) as client:
        raw = await client.chat.completions.with_raw_response.create(
            model="bespoke", messages=chat_of(f"unbudgeted-{gw.limiter}")
        )
    assert "x-switchyard-max-tokens-capped" not in raw.headers
    assert "max_tokens" not in gw.received(f"unbudgeted-{gw.limiter}")


async def test_a_legacy_completion_without_max_tokens_keeps_its_short_default(
    gw: Gateway, pg_url: str
) -> None:
    """/v1/completions stops at 16 tokens without max_tokens: a cap would only lengthen it."""
    creds = await new_key(pg_url, key={"budget_usd": Decimal("1.00")})
    bare, capped = f"legacy-{gw.limiter}", f"legacy-capped-{gw.limiter}"
    async with gw.client(creds.key) as client:
        raw = await client.completions.with_raw_response.create(model="verbose", prompt=f"{bare} w0")
        assert "x-switchyard-max-tokens-capped" not in raw.headers
        assert "max_tokens" not in gw.received(bare)
        raw = await client.completions.with_raw_response.create(
            model="verbose", prompt=f"{capped} w0", max_tokens=500
        )
    cap = int(raw.headers["x-switchyard-max-tokens-capped"])
    assert MIN_CAPPED_OUTPUT <= cap < 500 and gw.received(capped)["max_tokens"] == cap
    assert raw.parse().choices[0].text == f"max_tokens={cap}"


async def test_concurrent_capped_calls_never_overspend(gw: Gateway, pg_url: str) -> None:
    """Bursts of 16 concurrent calls (every third a stream) on a $5.00 budget until nothing more is
    admitted. Every admitted call holds what its answer can cost at most (its cap is cut to what it
    holds) and the limiter never lets spent + held pass the limit, so the settled total stays within
    the budget itself: no slack at all, as long as the upstream counts no more prompt tokens than the
    gateway does (true at this fake)."""
    budget = Decimal("5.00")
    creds = await new_key(pg_url, team={"budget_usd": budget})
    statuses: list[int] = []
    caps: list[int] = []

    async def one(client: openai.AsyncOpenAI, i: int) -> None:
        messages = chat_of(f"burst-{gw.limiter}-{i}", 1 + i % 4)
        try:
            raw = await client.chat.completions.with_raw_response.create(
                model="verbose", messages=messages, max_tokens=60, stream=i % 3 == 0
            )
            if i % 3 == 0:
                async for _ in raw.parse():
                    pass
        except openai.RateLimitError as exc:
            assert isinstance(exc.body, dict) and exc.body["code"] == "budget_exceeded", exc.body
            statuses.append(429)
            return
        statuses.append(raw.status_code)
        if "x-switchyard-max-tokens-capped" in raw.headers:
            caps.append(int(raw.headers["x-switchyard-max-tokens-capped"]))

    async with gw.client(creds.key) as client:
        for burst in range(8):
            before = len([s for s in statuses if s == 200])
            await asyncio.gather(*(one(client, 16 * burst + i) for i in range(16)))
            if len([s for s in statuses if s == 200]) == before:
                break
            await asyncio.sleep(0.2)  # settlements land off the request path
    admitted = statuses.count(200)
    assert set(statuses) <= {200, 429} and admitted >= 3
    assert caps and all(MIN_CAPPED_OUTPUT <= c < 60 for c in caps), caps
    rows = await wait_rows(pg_url, creds.key_id, len(statuses))
    spent = sum((r.cost_usd for r in rows), Decimal(0))
    assert len(rows) == len(statuses) and sum(r.status == 200 for r in rows) == admitted
    assert spent <= budget, f"settled ${spent} of a ${budget} budget"
    # And the budget was used: what is left would not pay for the largest prompt and 16 tokens.
    assert budget - spent < (max(prompt_tokens({"messages": chat_of("x", 4)}), 1) + MIN_CAPPED_OUTPUT) * CENT
    print(f"[{gw.limiter}] {admitted} admitted ({len(caps)} capped: {sorted(caps)}), settled ${spent}")


async def test_a_fallback_dearer_than_the_reservation_is_passed_over(gw: Gateway, pg_url: str) -> None:
    """`down` (reserved for, a cent a token) fails; what is held for it pays for no 16-token answer
    on `dear` (20 cents a token): the call moves on to the next candidate, or is refused when none
    is left, instead of going to `dear` with a cap of 1 and costing more than was held."""
    budget = Decimal("1.00")
    moved_on, refused_key = [await new_key(pg_url, key={"budget_usd": budget}) for _ in range(2)]
    async with gw.client(moved_on.key) as client:
        raw = await client.chat.completions.with_raw_response.create(
            model="dear-then-cheap", messages=chat_of(f"past-dear-{gw.limiter}")
        )
    async with gw.client(refused_key.key) as client:
        with pytest.raises(openai.RateLimitError) as refused:
            await client.chat.completions.create(
                model="dear-fallback", messages=chat_of(f"only-dear-{gw.limiter}")
            )
    assert raw.headers["x-switchyard-model"] == "verbose"
    assert gw.received(f"past-dear-{gw.limiter}")["model"] == "gpt-4o-mini"
    assert Decimal(raw.headers["x-switchyard-cost-usd"]) <= budget
    err = refused.value.body
    assert isinstance(err, dict) and err["code"] == "budget_exceeded", err
    assert "`dear`" in err["message"] and "16 tokens" in err["message"]
    assert not [b for b in gw.verbose if b.get("model") == "dear-model"]
    (row,) = await wait_rows(pg_url, refused_key.key_id, 1)
    assert (row.status, row.cost_usd) == (429, 0)


async def test_every_choice_counts_toward_a_tpm_limit(gw: Gateway, pg_url: str) -> None:
    """n=3 answers of up to 40 tokens: an estimate of the prompt and 120 tokens, past a 100 TPM key
    (the prompt and 40 would fit); n=2 fits."""
    creds = await new_key(pg_url, key={"tpm": 100})
    async with gw.client(creds.key) as client:
        with pytest.raises(openai.RateLimitError) as refused:
            await client.chat.completions.create(
                model="verbose", messages=chat_of(f"three-{gw.limiter}"), max_tokens=40, n=3
            )
        raw = await client.chat.completions.with_raw_response.create(
            model="verbose", messages=chat_of(f"two-{gw.limiter}"), max_tokens=40, n=2
        )
    err = refused.value.body
    assert isinstance(err, dict) and err["code"] == "rate_limit_exceeded", err
    assert not [b for b in gw.verbose if _marker(b) == f"three-{gw.limiter}"]
    assert len(raw.parse().choices) == 2


_TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "lookup_order",
            "description": "Find an order by its number and say where it is and when it should arrive.",
            "parameters": {
                "type": "object",
                "properties": {"order": {"type": "string", "description": "the order number"}},
                "required": ["order"],
            },
        },
    }
]
_SCHEMA = {
    "type": "json_schema",
    "json_schema": {
        "name": "answer",
        "schema": {
            "type": "object",
            "properties": {"verdict": {"type": "string"}, "why": {"type": "string"}},
        },
    },
}


@pytest.mark.parametrize(
    ("carries", "budget"),
    [("tools", Decimal("2.00")), ("response_format", Decimal("2.00")), ("image", Decimal("10.00"))],
)
async def test_a_capped_call_leaves_room_for_what_the_prompt_carries_besides_text(
    gw: Gateway, pg_url: str, carries: str, budget: Decimal
) -> None:
    """Tool definitions, a response schema and images are prompt tokens too (the upstream bills
    them): the cap is what is left after them, so the answer cannot spend past the budget."""
    creds = await new_key(pg_url, key={"budget_usd": budget})
    messages = chat_of(f"beyond-text-{gw.limiter}")
    extra: dict[str, Any] = {}
    if carries == "tools":
        extra["tools"] = _TOOLS
    elif carries == "response_format":
        extra["response_format"] = _SCHEMA
    else:
        image = {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA", "detail": "high"}}
        messages = [{"role": "user", "content": [{"type": "text", "text": messages[0]["content"]}, image]}]
    async with gw.client(creds.key) as client:
        raw = await client.chat.completions.with_raw_response.create(
            model="verbose", messages=messages, **extra
        )
    cap = int((budget - prompt_tokens({"messages": messages, **extra}) * CENT) / CENT)
    assert cap >= MIN_CAPPED_OUTPUT
    assert raw.headers["x-switchyard-max-tokens-capped"] == str(cap)
    cost = Decimal(raw.headers["x-switchyard-cost-usd"])
    assert cost <= budget, f"settled ${cost} of a ${budget} budget"


async def test_a_deployment_without_a_price_refuses_budgeted_keys_only(gw: Gateway, pg_url: str) -> None:
    budgeted = await new_key(pg_url, team={"budget_usd": Decimal("5")})
    free = await new_key(pg_url)
    async with gw.client(budgeted.key) as client:
        with pytest.raises(openai.PermissionDeniedError) as refused:
            await client.chat.completions.create(model="mystery", messages=chat_of("mystery-direct"))
        with pytest.raises(openai.PermissionDeniedError):
            await client.chat.completions.create(model="unpriced", messages=chat_of("mystery-route"))
        # A route with a priced candidate skips the unpriced one and says so.
        raw = await client.chat.completions.with_raw_response.create(
            model="mixed", messages=chat_of(f"mixed-{gw.limiter}")
        )
    assert refused.value.status_code == 403
    err = refused.value.body
    assert isinstance(err, dict) and (err["type"], err["code"]) == ("permission_error", "price_unknown")
    assert "`mystery`" in err["message"] and "price:" in err["message"]
    assert raw.headers["x-switchyard-model"] == "verbose"
    assert "skipped without a price: mystery" in raw.headers["x-switchyard-route"]
    async with gw.client(free.key) as client:
        raw = await client.chat.completions.with_raw_response.create(
            model="mixed", messages=chat_of(f"free-{gw.limiter}")
        )
    assert raw.headers["x-switchyard-model"] == "mystery", "keys without a budget are unaffected"
    assert raw.headers["x-switchyard-cost-usd"] == "unknown"


async def test_a_budgeted_key_passes_over_the_unpriced_deployments_of_a_name(
    gw: Gateway, pg_url: str
) -> None:
    budgeted = await new_key(pg_url, key={"budget_usd": Decimal("5")})
    free = await new_key(pg_url)
    tools = [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}]
    served: dict[str, set[str]] = {"budgeted": set(), "free": set()}
    for who, creds in (("budgeted", budgeted), ("free", free)):
        async with gw.client(creds.key) as client:
            for i in range(4):  # the two deployments of `half` take turns
                raw = await client.chat.completions.with_raw_response.create(
                    model="half", messages=chat_of(f"half-{who}-{i}-{gw.limiter}"), max_tokens=20
                )
                served[who].add(raw.headers["x-switchyard-model"])
                if who == "budgeted":
                    assert "skipped without a price: half#2" in raw.headers["x-switchyard-route"]
    assert served == {"budgeted": {"half#1"}, "free": {"half#1", "half#2"}}
    # `tooled#2` has no price but no tool calling either: a tools request skips it, and says nothing.
    async with gw.client(budgeted.key) as client:
        raw = await client.chat.completions.with_raw_response.create(
            model="tooled", messages=chat_of(f"tooled-{gw.limiter}"), tools=tools, max_tokens=20
        )
    assert raw.headers["x-switchyard-model"] == "tooled#1"
    assert "without a price" not in raw.headers["x-switchyard-route"]


def _anthropic(gw: Gateway, key: str) -> anthropic.AsyncAnthropic:
    return anthropic.AsyncAnthropic(base_url=gw.url, api_key=key, max_retries=0, timeout=30.0)


async def test_the_anthropic_door_caps_its_required_max_tokens(gw: Gateway, pg_url: str) -> None:
    """Anthropic clients always send max_tokens: it is capped like an explicit OpenAI one, on an
    Anthropic deployment (native) and on an OpenAI-shaped one (translated)."""
    creds = await new_key(pg_url, key={"budget_usd": Decimal("0.50")})
    native, translated = f"native-{gw.limiter}", f"translated-{gw.limiter}"
    async with _anthropic(gw, creds.key) as client:
        raw = await client.messages.with_raw_response.create(
            model="claude", max_tokens=1000, messages=chat_of(native), stream=True
        )
        async for _ in await raw.parse():
            pass
        cap = int(raw.headers["x-switchyard-max-tokens-capped"])
        sent = next(r["body"] for r in gw.claude if _marker(r["body"]) == native)
        assert sent["max_tokens"] == cap < 1000
        raw = await client.messages.with_raw_response.create(
            model="verbose", max_tokens=1000, messages=chat_of(translated)
        )
        cap = int(raw.headers["x-switchyard-max-tokens-capped"])
        assert MIN_CAPPED_OUTPUT <= cap < 1000
        assert (await raw.parse()).content[0].text == f"max_tokens={cap}"
        assert gw.received(translated)["max_tokens"] == cap

        # The verbose upstream used it all: refused, in Anthropic's shape.
        with pytest.raises(anthropic.RateLimitError) as refused:
            await client.messages.create(model="verbose", max_tokens=1000, messages=chat_of("late"))
        with pytest.raises(anthropic.PermissionDeniedError) as unpriced:
            await client.messages.create(model="mystery", max_tokens=10, messages=chat_of("mystery"))
    err = refused.value.body
    assert isinstance(err, dict) and err["error"]["type"] == "rate_limit_error", err
    assert "Budget exceeded for key" in err["error"]["message"]
    err = unpriced.value.body
    assert isinstance(err, dict) and err["error"]["type"] == "permission_error", err
    assert "price:" in err["error"]["message"]


async def test_a_prompt_marked_for_caching_is_reserved_at_the_cache_write_price(
    gw: Gateway, pg_url: str
) -> None:
    """The whole prompt may be written to a 1-hour cache at twice the input price (claude's default
    multiples): the cap leaves room for that, so the settled cost stays within the budget."""
    creds = await new_key(pg_url, key={"budget_usd": Decimal("2.00")})
    marker = f"cached-{gw.limiter}"
    system = [{"type": "text", "text": words(10), "cache_control": {"type": "ephemeral", "ttl": "1h"}}]
    messages = chat_of(marker)
    prompt = prompt_tokens(
        anthropic_request_to_openai({"system": system, "messages": messages, "max_tokens": 1})
    )
    async with _anthropic(gw, creds.key) as client:
        raw = await client.messages.with_raw_response.create(
            model="claude",
            max_tokens=1000,
            system=system,
            messages=messages,  # type: ignore[arg-type]
        )
    # A cent a token in and out, two cents a token written for an hour.
    assert int(raw.headers["x-switchyard-max-tokens-capped"]) == 200 - 2 * prompt
    usage = (await raw.parse()).usage
    assert usage.cache_creation_input_tokens == 10
    assert Decimal(raw.headers["x-switchyard-cost-usd"]) <= Decimal("2.00")
