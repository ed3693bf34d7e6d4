"""What a call costs: the config's price, else litellm's bundled price map (read as JSON, once)."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson

from gateway.offline import litellm_dir
from providers.base import Usage
from providers.deployment import Deployment

_MTOK = Decimal(1_000_000)
_PREFIX = {"gemini": "gemini/", "anthropic": "", "openai": "", "openai_compatible": "", "azure": "azure/"}


# Anthropic's prompt-cache prices as multiples of the input price (its pricing page): what a deployment
# priced only by input and output is charged for cache reads and for 5-minute and 1-hour writes.
ANTHROPIC_CACHE_READ = Decimal("0.1")
ANTHROPIC_CACHE_WRITE_5M = Decimal("1.25")
ANTHROPIC_CACHE_WRITE_1H = Decimal(2)


@dataclass(frozen=True, slots=True)
class TokenPrice:
    """USD per token, exact: fresh input, output, cache reads, and cache writes by lifetime."""

    input: Decimal
    output: Decimal
    cached_input: Decimal
    cache_write_5m: Decimal | None = None
    cache_write_1h: Decimal | None = None

    def cost(self, usage: Usage) -> Decimal:
        # Each part at most what is left of the prompt, so nothing is charged twice.
        cached = min(usage.cached_tokens, usage.prompt_tokens)
        w5 = min(usage.cache_write_5m_tokens, usage.prompt_tokens - cached)
        w1 = min(usage.cache_write_1h_tokens, usage.prompt_tokens - cached - w5)
        write_5m = self.input if self.cache_write_5m is None else self.cache_write_5m
        write_1h = write_5m if self.cache_write_1h is None else self.cache_write_1h
        return (
            (usage.prompt_tokens - cached - w5 - w1) * self.input
            + cached * self.cached_input
            + w5 * write_5m
            + w1 * write_1h
            + usage.completion_tokens * self.output
        )

    @property
    def prompt_ceiling(self) -> Decimal:
        """The most a prompt token can cost: a prompt marked for caching may be written whole."""
        return max(self.input, self.cache_write_5m or self.input, self.cache_write_1h or self.input)


FREE = TokenPrice(Decimal(0), Decimal(0), Decimal(0))


def has_cache_marks(body: dict[str, Any]) -> bool:
    """Whether a chat or messages body marks anything for prompt caching (`cache_control` on a
    system block, a message, a content part or a tool)."""
    for field in ("system", "messages", "tools"):
        items = body.get(field)
        for item in items if isinstance(items, list) else ():
            if not isinstance(item, dict):
                continue
            if "cache_control" in item:
                return True
            content = item.get("content")
            if isinstance(content, list) and any(
                isinstance(p, dict) and "cache_control" in p for p in content
            ):
                return True
    return False


def load_price_map(path: Path | None = None) -> dict[str, Any]:
    if path is None:
        base = litellm_dir()
        if base is None:
            return {}
        path = base / "model_prices_and_context_window_backup.json"
    try:
        return orjson.loads(path.read_bytes())
    except (OSError, orjson.JSONDecodeError):
        return {}


def _map_entries(dep: Deployment, price_map: dict[str, Any]) -> list[dict[str, Any]]:
    """The price map's entries that may describe this deployment, most specific name first."""
    keys = dict.fromkeys([_PREFIX.get(dep.provider, "") + dep.model, dep.model, dep.model.rsplit("/", 1)[-1]])
    return [e for k in keys if isinstance(e := price_map.get(k), dict)]


def _dec(value: Any) -> Decimal:
    return Decimal(str(value)) if value is not None else Decimal(0)


def price_for(dep: Deployment, price_map: dict[str, Any]) -> TokenPrice | None:
    """None means unknown: the call is still served, and its cost is reported as unknown, never $0.
    Cache prices not given: Anthropic's multiples of the input price on an Anthropic deployment;
    elsewhere the input price (a cache read is never charged less than it may cost)."""
    if dep.provider == "local":
        return FREE
    if dep.price is not None:
        p = dep.price
        given = (p.cached_input_per_mtok, p.cache_write_per_mtok, p.cache_write_1h_per_mtok)
        return _with_defaults(
            dep,
            _dec(p.input_per_mtok) / _MTOK,
            _dec(p.output_per_mtok) / _MTOK,
            *(None if v is None else _dec(v) / _MTOK for v in given),
        )
    for entry in _map_entries(dep, price_map):
        if "input_cost_per_token" in entry:
            keys = (
                "cache_read_input_token_cost",
                "cache_creation_input_token_cost",
                "cache_creation_input_token_cost_above_1hr",
            )
            return _with_defaults(
                dep,
                _dec(entry.get("input_cost_per_token")),
                _dec(entry.get("output_cost_per_token")),
                *(None if entry.get(k) is None else _dec(entry[k]) for k in keys),
            )
    return None


def _with_defaults(
    dep: Deployment,
    inp: Decimal,
    out: Decimal,
    read: Decimal | None,
    write_5m: Decimal | None,
    write_1h: Decimal | None,
) -> TokenPrice:
    if dep.provider == "anthropic":
        read = inp * ANTHROPIC_CACHE_READ if read is None else read
        write_5m = inp * ANTHROPIC_CACHE_WRITE_5M if write_5m is None else write_5m
        write_1h = inp * ANTHROPIC_CACHE_WRITE_1H if write_1h is None else write_1h
    return TokenPrice(inp, out, inp if read is None else read, write_5m, write_1h)


def max_output_tokens(dep: Deployment, price_map: dict[str, Any]) -> int | None:
    """The longest answer the model can give: what a budget reserves when max_tokens is absent."""
    if "max_output_tokens" in dep.options:
        return int(dep.options["max_output_tokens"])
    for entry in _map_entries(dep, price_map):
        value = entry.get("max_output_tokens") or entry.get("max_tokens")
        if isinstance(value, int):
            return value
    return None


def format_usd(cost: Decimal | None) -> str:
    return "unknown" if cost is None else f"{cost.normalize():f}"
