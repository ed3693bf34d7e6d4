"""Building one adapter per deployment; each adapter module is imported only if a deployment uses it."""

from __future__ import annotations

import importlib

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


def build_providers(deployments: list[Deployment]) -> dict[str, Provider]:
    return {dep.id: build_provider(dep) for dep in deployments}
