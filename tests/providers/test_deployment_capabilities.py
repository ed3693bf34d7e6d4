"""A deployment's capabilities: its provider's defaults, or the config entry's own list."""

from __future__ import annotations

import pytest

from gateway.config import ConfigError, parse_config
from providers.deployment import ALL_CAPABILITIES, Deployment


@pytest.mark.parametrize("provider", ["openai", "azure", "openai_compatible", "litellm", "gemini"])
def test_openai_shaped_adapters_carry_everything(provider: str) -> None:
    assert Deployment(name="m", model="m", provider=provider).capabilities == ALL_CAPABILITIES


def test_anthropic_and_local_defaults() -> None:
    anthropic = Deployment(name="c", model="c", provider="anthropic").capabilities
    assert anthropic == {"tools", "response_format", "vision"}
    # The bundled engine would answer a tool call or a JSON schema with plain text.
    assert Deployment(name="s", model="s", provider="local").capabilities == {"logprobs"}


def test_config_entry_overrides_the_defaults() -> None:
    base = {"provider": "openai_compatible", "api_base": "http://127.0.0.1:9/v1"}
    models = [
        {**base, "name": "plain", "model": "llama", "capabilities": []},
        {**base, "name": "tooled", "model": "qwen", "capabilities": ["tools", "tools"]},
        {"name": "local", "provider": "local", "model": "smollm2", "capabilities": ["tools"]},
    ]
    plain, tooled, local = parse_config({"models": models}, env={}).models
    assert (plain.capabilities, tooled.capabilities, local.capabilities) == (set(), {"tools"}, {"tools"})


@pytest.mark.parametrize("bad", [["function_calling"], "tools", [None]])
def test_unknown_capability_is_a_config_error(bad: object) -> None:
    entry = {"name": "m", "model": "m", "capabilities": bad}
    with pytest.raises(ConfigError, match=r"models\.0\.capabilities"):
        parse_config({"models": [entry]}, env={})
