from pathlib import Path

import pytest

from gateway.config import ConfigError, load_config, parse_config
from gateway.defaults import default_config
from gateway.settings import Settings


def test_yaml_with_interpolation_and_routes(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(
        """
models:
  - name: small
    provider: openai_compatible
    model: gpt-4o-mini
    api_base: http://127.0.0.1:9000/v1
    api_key: ${KEY}
    tier: small
    price: {input_per_mtok: 0.15, output_per_mtok: 0.6}
  - name: big
    model: gpt-4o
    api_key: ${MISSING:-fallback}
    tier: large
routes:
  auto: {candidates: [small, big], quality: 0.9}
"""
    )
    cfg = load_config(path, {"KEY": "sk-x"})
    assert [d.id for d in cfg.models] == ["small", "big"]
    assert cfg.models[0].api_key == "sk-x"
    assert cfg.models[1].api_key == "fallback"
    assert cfg.routes["auto"].candidates == ["small", "big"]
    assert cfg.names() == ["small", "big", "auto"]


def test_missing_variable_is_a_clear_error() -> None:
    with pytest.raises(ConfigError, match="UNSET_VAR"):
        parse_config({"models": [{"name": "a", "model": "m", "api_key": "${UNSET_VAR}"}]}, {})


def test_route_to_unknown_model_rejected() -> None:
    with pytest.raises(ConfigError, match="unknown candidate"):
        parse_config({"models": [{"name": "a", "model": "m"}], "routes": {"r": {"candidates": ["b"]}}}, {})


def test_invalid_field_reports_location() -> None:
    with pytest.raises(ConfigError, match=r"models\.0\.tier"):
        parse_config({"models": [{"name": "a", "model": "m", "tier": "huge"}]}, {})


def test_invalid_yaml(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("models: [unclosed")
    with pytest.raises(ConfigError, match="invalid YAML"):
        load_config(path, {})


def test_shared_names_get_unique_ids() -> None:
    cfg = parse_config({"models": [{"name": "a", "model": "m1"}, {"name": "a", "model": "m2"}]}, {})
    assert [d.id for d in cfg.models] == ["a#1", "a#2"]


def test_litellm_model_list_accepted_as_is() -> None:
    raw = {
        "model_list": [
            {
                "model_name": "gpt-4o-mini",
                "litellm_params": {
                    "model": "openai/gpt-4o-mini",
                    "api_base": "http://127.0.0.1:18000/v1",
                    "api_key": "os.environ/UPSTREAM_KEY",
                },
            },
            {
                "model_name": "claude",
                "litellm_params": {"model": "anthropic/claude-sonnet-4-5", "api_key": "k"},
            },
            {
                "model_name": "groq",
                "litellm_params": {"model": "groq/llama-3.1-8b-instant", "temperature": 0.2},
            },
            {
                "model_name": "priced",
                "litellm_params": {
                    "model": "openai/x",
                    "input_cost_per_token": 0.000001,
                    "output_cost_per_token": 0.000002,
                },
            },
        ],
        "general_settings": {"master_key": "sk-bench-1234"},
        "litellm_settings": {"drop_params": True},
    }
    cfg = parse_config(raw, {"UPSTREAM_KEY": "sk-up"})
    first, claude, groq, priced = cfg.models
    assert (first.provider, first.model, first.api_key) == ("openai_compatible", "gpt-4o-mini", "sk-up")
    assert (claude.provider, claude.model) == ("anthropic", "claude-sonnet-4-5")
    assert (groq.provider, groq.model, groq.options) == (
        "litellm",
        "groq/llama-3.1-8b-instant",
        {"temperature": 0.2},
    )
    assert priced.price is not None and priced.price.input_per_mtok == pytest.approx(1.0)
    assert cfg.master_key == "sk-bench-1234"


def test_defaults_from_provider_keys() -> None:
    settings = Settings(_env_file=None, openai_api_key="sk-o", anthropic_api_key="sk-a", local_model=False)
    cfg = default_config(settings)
    names = cfg.names()
    assert "gpt-4o-mini" in names and "claude-sonnet-4-5" in names and "text-embedding-3-small" in names
    assert not any(n.startswith("gemini") for n in names)
    assert cfg.routes["auto"].candidates[0] == "gpt-4o-mini"


def test_no_keys_no_models() -> None:
    settings = Settings(_env_file=None, local_model=False)
    assert default_config(settings).models == []


def test_bundled_local_model_lacks_tools_response_format_and_vision() -> None:
    settings = Settings(_env_file=None, local_model=True)
    smollm2 = next(d for d in default_config(settings).models if d.name == "smollm2")
    assert smollm2.provider == "local"
    assert not smollm2.capabilities & {"tools", "response_format", "vision"}
