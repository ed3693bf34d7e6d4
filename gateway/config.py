"""The YAML config: deployments (`models:`) and routed names (`routes:`).

A LiteLLM proxy `config.yaml` (`model_list` with `litellm_params`) is accepted as it is, so teams can
point Switchyard at the file they already run. `${VAR}` / `${VAR:-default}` (and LiteLLM's
`os.environ/VAR`) are read from the environment mapping the entry point passes in.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from providers.deployment import Deployment, Price, Tier

_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


class ConfigError(ValueError):
    """The config file cannot be used; the message says where and why."""


class Route(BaseModel):
    model_config = ConfigDict(extra="forbid")

    candidates: list[str] = Field(min_length=1)
    quality: float | None = Field(default=None, ge=0, le=1)
    strong_fraction: float | None = Field(default=None, ge=0, le=1)
    # Admin pin: requests that offer tools go to at least this tier.
    tools_min_tier: Tier | None = "medium"


class GatewayConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    models: list[Deployment] = Field(default_factory=list)
    routes: dict[str, Route] = Field(default_factory=dict)
    # From a LiteLLM file's general_settings.master_key; SWITCHYARD_MASTER_KEY wins over it.
    master_key: str | None = Field(default=None, repr=False)

    @model_validator(mode="after")
    def _check(self) -> GatewayConfig:
        counts: dict[str, int] = {}
        for dep in self.models:
            counts[dep.name] = counts.get(dep.name, 0) + 1
        seen: dict[str, int] = {}
        for dep in self.models:
            if not dep.id:
                if counts[dep.name] == 1:
                    dep.id = dep.name
                else:
                    seen[dep.name] = seen.get(dep.name, 0) + 1
                    dep.id = f"{dep.name}#{seen[dep.name]}"
        for name, route in self.routes.items():
            if name in counts:
                raise ValueError(f"route {name!r} has the name of a model")
            missing = [c for c in route.candidates if c not in counts]
            if missing:
                raise ValueError(f"route {name!r}: unknown candidate(s) {missing}")
        return self

    def names(self) -> list[str]:
        return list(dict.fromkeys([d.name for d in self.models] + list(self.routes)))


def interpolate(value: Any, env: Mapping[str, str]) -> Any:
    if isinstance(value, str):
        if value.startswith("os.environ/"):
            return env.get(value.removeprefix("os.environ/"), "")

        def sub(m: re.Match[str]) -> str:
            if m.group(1) in env:
                return env[m.group(1)]
            if m.group(2) is not None:
                return m.group(2)
            raise ConfigError(f"environment variable {m.group(1)} is not set")

        return _VAR.sub(sub, value)
    if isinstance(value, list):
        return [interpolate(v, env) for v in value]
    if isinstance(value, dict):
        return {k: interpolate(v, env) for k, v in value.items()}
    return value


_LITELLM_PREFIX = {
    "openai": "openai_compatible",
    "azure": "azure",
    "anthropic": "anthropic",
    "gemini": "gemini",
    "hosted_vllm": "openai_compatible",
}


def _from_litellm_entry(entry: dict[str, Any]) -> dict[str, Any]:
    params = dict(entry.get("litellm_params") or {})
    model = str(params.pop("model", ""))
    prefix, _, rest = model.partition("/")
    provider = _LITELLM_PREFIX.get(prefix) if rest else None
    if provider is None:
        provider, upstream = "litellm", model
    else:
        upstream = rest
    dep: dict[str, Any] = {"name": entry.get("model_name"), "provider": provider, "model": upstream}
    for key in ("api_base", "api_key", "api_version", "rpm", "tpm", "timeout"):
        if params.get(key) is not None:
            dep[key] = params.pop(key)
    if "input_cost_per_token" in params or "output_cost_per_token" in params:
        dep["price"] = {
            "input_per_mtok": float(params.pop("input_cost_per_token", 0)) * 1e6,
            "output_per_mtok": float(params.pop("output_cost_per_token", 0)) * 1e6,
        }
    info = entry.get("model_info") or {}
    if info.get("tier"):
        dep["tier"] = info["tier"]
    if provider == "litellm":
        params.pop("stream_timeout", None)
        dep["options"] = params
    return dep


def parse_config(raw: dict[str, Any], env: Mapping[str, str]) -> GatewayConfig:
    raw = interpolate(raw or {}, env)
    if "model_list" in raw:
        general = raw.get("general_settings") or {}
        raw = {
            "models": [_from_litellm_entry(e) for e in raw.get("model_list") or []],
            "routes": raw.get("routes") or {},
            "master_key": general.get("master_key"),
        }
    try:
        return GatewayConfig.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(_explain(exc)) from None


def load_config(path: str | Path, env: Mapping[str, str]) -> GatewayConfig:
    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise ConfigError(f"cannot read config {path}: {exc.strerror}") from None
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: invalid YAML: {exc}") from None
    if raw is not None and not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping with `models:` (or LiteLLM's `model_list:`)")
    return parse_config(raw or {}, env)


def _explain(exc: ValidationError) -> str:
    lines = []
    for err in exc.errors():
        where = ".".join(str(p) for p in err["loc"]) or "config"
        lines.append(f"{where}: {err['msg']}")
    return "invalid config: " + "; ".join(lines)


__all__ = ["ConfigError", "Deployment", "GatewayConfig", "Price", "Route", "load_config", "parse_config"]
