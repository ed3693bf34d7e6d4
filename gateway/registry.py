"""Building one adapter per deployment; each adapter module is imported only if a deployment uses it."""

from __future__ import annotations

import importlib
from collections.abc import Mapping

from providers.base import Provider
from providers.deployment import Deployment

_ADAPTERS = {
    "openai": ("providers.openai_compatible", "OpenAICompatibleProvider"),
    "openai_compatible": ("providers.openai_compatible", "OpenAICompatibleProvider"),
    "azure": ("providers.openai_compatible", "OpenAICompatibleProvider"),
    "anthropic": ("providers.anthropic", "AnthropicProvider"),
    "gemini": ("providers.gemini", "GeminiProvider"),
    "litellm": ("providers.litellm_sdk", "LitellmProvider"),
    "local": ("providers.local", "LocalProvider"),
}


def build_provider(dep: Deployment) -> Provider:
    module_name, class_name = _ADAPTERS[dep.provider]
    cls = getattr(importlib.import_module(module_name), class_name)
    return cls(dep)


def build_providers(
    deployments: list[Deployment], local_engines: Mapping[str, str] | None = None
) -> dict[str, Provider]:
    """`local_engines`: deployment id -> URL of the engine process serving that local model, for
    the workers of `serve --workers N` (their models are not loaded in this process)."""
    engines = local_engines or {}
    providers: dict[str, Provider] = {}
    for dep in deployments:
        if dep.provider == "local" and dep.id in engines:
            from providers.local_remote import RemoteLocalProvider

            providers[dep.id] = RemoteLocalProvider(dep, engines[dep.id])
        else:
            providers[dep.id] = build_provider(dep)
    return providers
