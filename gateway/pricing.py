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


@dataclass(frozen=True, slots=True)
class TokenPrice:
    """USD per token, exact."""

    input: Decimal
    output: Decimal
    cached_input: Decimal

    def cost(self, usage: Usage) -> Decimal:
        cached = min(usage.cached_tokens, usage.prompt_tokens)
        return (
            (usage.prompt_tokens - cached) * self.input
            + cached * self.cached_input
            + usage.completion_tokens * self.output
        )


FREE = TokenPrice(Decimal(0), Decimal(0), Decimal(0))


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
    """None means unknown: the call is still served, and its cost is reported as unknown, never $0."""
    if dep.provider == "local":
        return FREE
    if dep.price is not None:
        p = dep.price
        cached = p.cached_input_per_mtok if p.cached_input_per_mtok is not None else p.input_per_mtok
        return TokenPrice(
            _dec(p.input_per_mtok) / _MTOK, _dec(p.output_per_mtok) / _MTOK, _dec(cached) / _MTOK
        )
    for entry in _map_entries(dep, price_map):
        if "input_cost_per_token" in entry:
            inp = _dec(entry.get("input_cost_per_token"))
            cached = entry.get("cache_read_input_token_cost")
            return TokenPrice(inp, _dec(entry.get("output_cost_per_token")), _dec(cached) if cached else inp)
    return None


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
