"""What a budget changes about a call before it leaves: which deployments may serve it (one whose
price is unknown cannot be charged) and how long its answer may be (what the reservation pays for)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any

from gateway.auth import Principal
from gateway.errors import GatewayError
from gateway.pipeline.door import Parsed
from gateway.pipeline.outcome import Outcome
from gateway.pricing import TokenPrice
from providers.deployment import Deployment
from routing.capabilities import served_by

OUTPUT_FIELDS = ("max_tokens", "max_completion_tokens", "max_output_tokens")
# Providers whose chat API takes max_completion_tokens (their reasoning models refuse max_tokens).
_COMPLETION_TOKENS_PROVIDERS = frozenset({"openai", "azure"})


def budgeted(principal: Principal) -> bool:
    return principal.key_budget_usd is not None or principal.team_budget_usd is not None


def price_unknown(model: str, unpriced: list[Deployment]) -> GatewayError:
    """A budgeted key asked for deployments whose calls cannot be charged. 403: the request is
    valid and the same one passes for a key without a budget; the fix is the admin's, not the body's."""
    ids = ", ".join(f"`{d.id}`" for d in unpriced)
    return GatewayError(
        403,
        f"`{model}` cannot serve a key or team with a budget: no price is known for deployment {ids},"
        " so its calls cannot be charged to the budget. An admin can set"
        " `price: {input_per_mtok: ..., output_per_mtok: ...}` on it in the gateway config.",
        type="permission_error",
        code="price_unknown",
        param="model",
    )


def priced_names(
    names: list[str],
    deployments: Callable[[str], list[Deployment]],
    prices: dict[str, TokenPrice | None],
    model: str,
    outcome: Outcome,
) -> list[str]:
    """`names` less those none of whose deployments able to serve the request has a price, for a
    budgeted key (the others' calls are charged by the limiter; these would not be); the unpriced
    deployments of the names kept are passed over (`chargeable`). Raises price_unknown when no name
    is left."""
    if not budgeted(outcome.principal):
        return names
    capable = {n: [d for d in deployments(n) if served_by(outcome.needs, d.capabilities)] for n in names}
    unpriced = {n: [d for d in deps if prices.get(d.id) is None] for n, deps in capable.items()}
    kept = [n for n in names if not capable[n] or len(unpriced[n]) < len(capable[n])]
    if not kept:
        raise price_unknown(model, [d for n in names for d in unpriced[n]])
    skipped = [n for n in names if n not in kept] + [d.id for n in kept for d in unpriced[n]]
    if skipped:
        outcome.route_explain += f"; skipped without a price: {', '.join(skipped)}"
    return kept


def chargeable(prices: dict[str, TokenPrice | None]) -> Callable[[Deployment], bool]:
    """Which deployments a budgeted key's call may go to: those whose calls can be charged."""
    return lambda dep: prices.get(dep.id) is not None


def needs_cap(endpoint: str, parsed: Parsed) -> bool:
    """Whether a cap can matter: embeddings write nothing, and a legacy completion without max_tokens
    stops at 16 tokens (OpenAI's default there, and vLLM's), less than any cap a budget sets."""
    if endpoint == "embed":
        return False
    return endpoint != "text" or any(isinstance(parsed.body.get(f), int) for f in OUTPUT_FIELDS)


def output_field(endpoint: str, dep: Deployment) -> str:
    """The field that carries an output cap the client did not set."""
    if endpoint == "responses":
        return "max_output_tokens"
    if endpoint == "chat" and dep.provider in _COMPLETION_TOKENS_PROVIDERS:
        return "max_completion_tokens"
    return "max_tokens"


def _capped(body: dict[str, Any], cap: int, field: str) -> dict[str, Any]:
    out = dict(body)
    present = [f for f in OUTPUT_FIELDS if isinstance(body.get(f), int)]
    for f in present or (field,):
        out[f] = min(body[f], cap) if f in present else cap
    return out


def cap_output(parsed: Parsed, cap: int, field: str) -> Parsed:
    """`parsed` with its output capped at `cap` tokens, in its wire body and its OpenAI-shaped one
    (the same object on the OpenAI doors); `field` where the client set no cap."""
    body = _capped(parsed.body, cap, field)
    routing = body if parsed.routing is parsed.body else _capped(parsed.routing, cap, "max_tokens")
    return replace(parsed, body=body, routing=routing)
