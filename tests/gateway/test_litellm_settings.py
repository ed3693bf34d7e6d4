"""A LiteLLM proxy config.yaml, as teams run it, loaded as it is: what maps, what is warned about."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from gateway.config import ConfigError, apply_settings, load_config, parse_config
from gateway.settings import Settings

# Shaped on LiteLLM's proxy docs (config.yaml, router_settings / litellm_settings / general_settings).
LITELLM_CONFIG = """
model_list:
  - model_name: gpt-4o
    litellm_params:
      model: azure/gpt-4o-eu
      api_base: https://eu.example.openai.azure.com/
      api_key: os.environ/AZURE_API_KEY
      api_version: "2024-02-01"
      rpm: 480
  - model_name: gpt-4o
    litellm_params:
      model: azure/gpt-4o-ca
      api_base: https://ca.example.openai.azure.com/
      api_key: os.environ/AZURE_API_KEY_CA
      api_version: "2024-02-01"
      timeout: 45
  - model_name: claude-sonnet
    litellm_params:
      model: anthropic/claude-sonnet-4-5
      api_key: os.environ/ANTHROPIC_API_KEY
  - model_name: local-vllm
    litellm_params:
      model: hosted_vllm/meta-llama/Llama-3.1-8B-Instruct
      api_base: http://127.0.0.1:8000/v1
      api_key: none

router_settings:
  routing_strategy: usage-based-routing-v2
  num_retries: 4
  timeout: 30
  allowed_fails: 2
  cooldown_time: 45
  redis_host: 127.0.0.1
  redis_port: 6379
  redis_password: os.environ/REDIS_PASSWORD
  fallbacks: [{"gpt-4o": ["claude-sonnet"]}]
  enable_pre_call_checks: true

litellm_settings:
  drop_params: true
  num_retries: 1
  request_timeout: 600
  set_verbose: false
  success_callback: ["langfuse"]
  langfuse_public_key: os.environ/LANGFUSE_PUBLIC_KEY
  context_window_fallbacks: [{"gpt-4o": ["claude-sonnet"]}]

general_settings:
  master_key: os.environ/LITELLM_MASTER_KEY
  database_url: os.environ/DATABASE_URL
  store_model_in_db: true
  alerting: ["slack"]

environment_variables:
  REDIS_PASSWORD: "p@ss word"

litellm_guardrails: []
"""
ENV = {
    "AZURE_API_KEY": "az-eu",
    "AZURE_API_KEY_CA": "az-ca",
    "ANTHROPIC_API_KEY": "sk-ant",
    "LITELLM_MASTER_KEY": "sk-master",
    "DATABASE_URL": "postgresql://llm:secret@127.0.0.1:5432/litellm?sslmode=disable",
}
IGNORED = [
    "LiteLLM setting router_settings.routing_strategy ignored",
    "LiteLLM setting router_settings.fallbacks ignored",
    "LiteLLM setting router_settings.enable_pre_call_checks ignored",
    "LiteLLM setting litellm_settings.drop_params ignored",
    "LiteLLM setting litellm_settings.set_verbose ignored",
    "LiteLLM setting litellm_settings.success_callback ignored",
    "LiteLLM setting litellm_settings.langfuse_public_key ignored",
    "LiteLLM setting litellm_settings.context_window_fallbacks ignored",
    "LiteLLM setting general_settings.store_model_in_db ignored",
    "LiteLLM setting general_settings.alerting ignored",
    "LiteLLM section litellm_guardrails ignored",
]


def _warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]


@pytest.fixture
def litellm_file(tmp_path: Path) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(LITELLM_CONFIG)
    return path


def test_router_general_and_litellm_settings_map_to_switchyard(
    litellm_file: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="switchyard.config")
    cfg = load_config(litellm_file, ENV)
    # LANGFUSE_PUBLIC_KEY is unset: an ignored key is never read, so that is no error.
    assert [w.split(":")[0] for w in _warnings(caplog)] == IGNORED
    assert "no equivalent" in _warnings(caplog)[-1]
    assert "falls over between its candidates" in _warnings(caplog)[1]
    eu, ca, claude, vllm = cfg.models
    # router_settings.timeout beats litellm_settings.request_timeout; a model's own timeout beats both.
    assert (eu.timeout, ca.timeout, claude.timeout, vllm.timeout) == (30, 45, 30, 30)
    assert (eu.provider, eu.api_key, ca.api_key, eu.rpm) == ("azure", "az-eu", "az-ca", 480)
    assert cfg.master_key == "sk-master"

    settings = apply_settings(Settings(_env_file=None), cfg)
    assert settings.retries == 4  # router_settings.num_retries wins over litellm_settings.num_retries
    assert settings.cooldown_s == 45
    # LiteLLM cools down after more than allowed_fails failures.
    assert settings.cooldown_failures == 3
    assert settings.database_url == "postgresql+asyncpg://llm:secret@127.0.0.1:5432/litellm?ssl=disable"
    # environment_variables fill in for the process environment.
    assert settings.redis_url == "redis://:p%40ss%20word@127.0.0.1:6379"


def test_the_environment_and_the_command_line_win_over_the_file(litellm_file: Path) -> None:
    cfg = load_config(litellm_file, ENV)
    settings = apply_settings(
        Settings(_env_file=None, retries=0, database_url="sqlite+aiosqlite:///./x.db"), cfg
    )
    assert (settings.retries, settings.database_url, settings.cooldown_s) == (
        0,
        "sqlite+aiosqlite:///./x.db",
        45,
    )


def test_litellm_settings_apply_when_router_settings_are_silent() -> None:
    raw = {
        "model_list": [{"model_name": "m", "litellm_params": {"model": "openai/m", "api_key": "k"}}],
        "litellm_settings": {"num_retries": 5, "request_timeout": 12.5},
    }
    cfg = parse_config(raw, {})
    assert cfg.models[0].timeout == 12.5
    assert apply_settings(Settings(_env_file=None), cfg).retries == 5


def test_unset_key_variable_skips_the_model_with_one_warning(
    litellm_file: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="switchyard.config")
    env = {k: v for k, v in ENV.items() if k not in ("AZURE_API_KEY_CA", "ANTHROPIC_API_KEY")}
    cfg = load_config(litellm_file, env)
    assert [(d.name, d.api_key) for d in cfg.models] == [("gpt-4o", "az-eu"), ("local-vllm", "none")]
    (skipped,) = [w for w in _warnings(caplog) if "skipping" in w]
    assert skipped == (
        "skipping models whose API key is not set: "
        "gpt-4o (AZURE_API_KEY_CA); claude-sonnet (ANTHROPIC_API_KEY)"
    )


@pytest.mark.parametrize(
    ("unset", "where"),
    [
        ("LITELLM_MASTER_KEY", "general_settings.master_key"),
        ("DATABASE_URL", "general_settings.database_url"),
    ],
)
def test_unset_secret_outside_a_model_key_is_an_error(litellm_file: Path, unset: str, where: str) -> None:
    env = {k: v for k, v in ENV.items() if k != unset}
    with pytest.raises(ConfigError, match=rf"^{where}: environment variable {unset} is not set$"):
        load_config(litellm_file, env)


def test_unset_variable_in_a_used_model_param_is_an_error() -> None:
    raw = {
        "model_list": [
            {"model_name": "m", "litellm_params": {"model": "openai/m", "api_base": "os.environ/BASE"}}
        ]
    }
    with pytest.raises(
        ConfigError, match=r"model_list\.0\.litellm_params\.api_base: environment variable BASE"
    ):
        parse_config(raw, {})


def test_invalid_mapped_value_names_the_litellm_key() -> None:
    raw = {
        "model_list": [{"model_name": "m", "litellm_params": {"model": "openai/m", "api_key": "k"}}],
        "router_settings": {"num_retries": -1},
        "general_settings": {"database_url": "mysql://u:hunter2@db/litellm"},
    }
    cfg = parse_config(raw, {})
    with pytest.raises(ConfigError) as err:
        apply_settings(Settings(_env_file=None), cfg)
    message = str(err.value)
    assert "router_settings.num_retries: Input should be greater than or equal to 0" in message
    assert "general_settings.database_url: unsupported database URL scheme 'mysql'" in message
    assert "hunter2" not in message and "\n" not in message


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"model_list": ["gpt-4o"]}, "model_list.0: expected a mapping with model_name and litellm_params"),
        ({"model_list": [], "router_settings": ["x"]}, "router_settings: expected a mapping"),
        (
            {
                "model_list": [
                    {"model_name": "m", "litellm_params": {"model": "openai/m", "input_cost_per_token": "x"}}
                ]
            },
            "model_list.0: could not convert string to float",
        ),
    ],
)
def test_malformed_litellm_sections_are_one_clear_error(raw: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace(".", r"\.")):
        parse_config(raw, {})
