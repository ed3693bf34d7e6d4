import logging
from pathlib import Path

import pytest

from gateway.config import ConfigError, apply_settings, entry_settings, load_config, parse_config
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


EXAMPLE = Path(__file__).resolve().parents[2] / "switchyard.example.yaml"


def _warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]


def test_example_without_keys_serves_the_local_model(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="switchyard.config")
    cfg = load_config(EXAMPLE, {})
    assert [d.name for d in cfg.models] == ["smollm2"]
    assert cfg.routes["auto"].candidates == ["smollm2"]
    assert _warnings(caplog) == [
        "skipping models whose API key is not set: gpt-4o-mini, gpt-4o (OPENAI_API_KEY); "
        "claude-sonnet (ANTHROPIC_API_KEY)"
    ]


def test_example_with_one_key_serves_that_provider(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="switchyard.config")
    cfg = load_config(EXAMPLE, {"OPENAI_API_KEY": "sk-o", "ANTHROPIC_API_KEY": ""})
    assert [d.name for d in cfg.models] == ["gpt-4o-mini", "gpt-4o", "smollm2"]
    assert cfg.routes["auto"].candidates == ["smollm2", "gpt-4o-mini", "gpt-4o"]
    # Set but empty counts as unset: such a key could only fail upstream.
    assert _warnings(caplog) == [
        "skipping models whose API key is not set: claude-sonnet (ANTHROPIC_API_KEY)"
    ]


def test_route_left_without_candidates_is_dropped(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="switchyard.config")
    raw = {
        "models": [
            {"name": "a", "model": "m", "api_key": "${KEY_A}"},
            {"name": "b", "model": "m", "api_key": "k"},
            # A variable inside the value counts as well.
            {"name": "c", "model": "m", "api_key": "Bearer ${KEY_C}"},
            {"name": "d", "model": "m", "api_key": "${KEY_D:-}"},
        ],
        "routes": {
            "ab": {"candidates": ["a", "b"]},
            "cc": {"candidates": ["c"]},
            "ad": {"candidates": ["d"]},
        },
    }
    cfg = parse_config(raw, {})
    assert [d.name for d in cfg.models] == ["b", "d"]
    assert cfg.models[1].api_key == ""  # an explicit default, as for servers that take no key
    assert {n: r.candidates for n, r in cfg.routes.items()} == {"ab": ["b"], "ad": ["d"]}
    assert _warnings(caplog) == [
        "skipping models whose API key is not set: a (KEY_A); c (KEY_C)",
        "route cc dropped: all its candidates were skipped for want of an API key",
    ]


def test_shared_name_keeps_its_routes_while_one_deployment_has_a_key() -> None:
    raw = {
        "models": [{"name": "a", "model": "m1", "api_key": "${UNSET}"}, {"name": "a", "model": "m2"}],
        "routes": {"r": {"candidates": ["a"]}},
    }
    cfg = parse_config(raw, {})
    assert [d.model for d in cfg.models] == ["m2"] and cfg.routes["r"].candidates == ["a"]


def test_no_models_left_is_one_clear_error() -> None:
    raw = {
        "models": [
            {"name": "a", "model": "m", "api_key": "${K1}"},
            {"name": "b", "model": "m", "api_key": "${K2}"},
        ]
    }
    with pytest.raises(
        ConfigError, match=r"^no models left to serve: every model's API key is unset \(set K1 or K2\)$"
    ):
        parse_config(raw, {})


def test_litellm_errors_name_the_entry_by_its_place_in_model_list() -> None:
    raw = {
        "model_list": [
            {"model_name": "a", "litellm_params": {"model": "openai/m", "api_key": "os.environ/UNSET"}},
            {"model_name": "b", "litellm_params": {"model": "openai/m"}, "model_info": {"tier": "huge"}},
        ]
    }
    with pytest.raises(ConfigError, match=r"^invalid config: model_list\.1\.tier: "):
        parse_config(raw, {})


def test_unset_variable_elsewhere_names_where() -> None:
    raw = {"models": [{"name": "a", "model": "m", "api_key": "k", "api_base": "${BASE}/v1"}]}
    with pytest.raises(ConfigError, match=r"^models\.0\.api_base: environment variable BASE is not set$"):
        parse_config(raw, {})


def test_errors_name_the_model_by_its_place_in_the_file() -> None:
    raw = {
        "models": [
            {"name": "a", "model": "m", "api_key": "${UNSET}"},
            {"name": "b", "model": "m", "tier": "huge"},
        ]
    }
    with pytest.raises(ConfigError, match=r"models\.1\.tier"):
        parse_config(raw, {})


def test_settings_section_fills_in_under_environment_and_flags() -> None:
    cfg = parse_config(
        {"settings": {"retries": 5, "cooldown_s": 1.5, "database_url": "postgres://u@h/db"}}, {}
    )
    settings = apply_settings(Settings(_env_file=None, cooldown_s=9), cfg)
    assert (settings.retries, settings.cooldown_s) == (5, 9)
    assert settings.database_url == "postgresql+asyncpg://u@h/db"


@pytest.mark.parametrize(
    ("section", "message"),
    [
        ({"config": "other.yaml"}, r"settings: unknown setting\(s\) \['config'\]"),
        ({"retrys": 1}, r"settings: unknown setting\(s\) \['retrys'\]"),
    ],
)
def test_settings_section_rejects_unknown_names(section: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_config({"settings": section}, {})


def test_settings_section_invalid_value_names_the_key() -> None:
    cfg = parse_config({"settings": {"retries": "many"}}, {})
    with pytest.raises(
        ConfigError, match=r"^invalid config: settings\.retries: Input should be a valid integer"
    ):
        apply_settings(Settings(_env_file=None), cfg)


def test_invalid_yaml_is_one_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("models:\n  - name: a\n   model: m\n")
    with pytest.raises(ConfigError) as err:
        load_config(path, {})
    assert "\n" not in str(err.value) and "invalid YAML at line 3" in str(err.value)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # No model left to serve: only `serve` minds, the settings are still read.
        (
            "models: [{name: a, model: m, api_key: '${UNSET}'}]\nsettings: {retries: 5}\n",
            {"retries": 5, "redis_url": None},
        ),
        # An unset master key is no settings' business either.
        (
            "model_list: [{model_name: a, litellm_params: {model: openai/m, api_key: os.environ/UNSET}}]\n"
            "router_settings: {redis_host: r, num_retries: 4}\n"
            "general_settings: {master_key: os.environ/UNSET}\n",
            {"retries": 4, "redis_url": "redis://r:6379"},
        ),
    ],
)
def test_entry_settings_read_only_the_files_settings(tmp_path: Path, text: str, expected: dict) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(text)
    settings = entry_settings({}, _env_file=None, config=path)
    assert {k: getattr(settings, k) for k in expected} == expected
    # What the entry point was given wins over the file.
    assert entry_settings({}, _env_file=None, config=path, retries=1).retries == 1


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("settings: {retrys: 1}\n", r"settings: unknown setting\(s\) \['retrys'\]"),
        ("settings: {database_url: '${UNSET}'}\n", r"^settings\.database_url: environment variable UNSET"),
        (
            "model_list: []\nrouter_settings: {num_retries: many}\n",
            r"^invalid config: router_settings\.num_retries: Input should be a valid integer",
        ),
    ],
)
def test_entry_settings_name_what_is_wrong_in_the_file(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message):
        entry_settings({}, _env_file=None, config=path)


def test_entry_settings_without_a_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert entry_settings({}, _env_file=None).retries == Settings(_env_file=None).retries
    (tmp_path / "switchyard.yaml").write_text("settings: {retries: 6}\n")
    assert entry_settings({}, _env_file=None).retries == 6
