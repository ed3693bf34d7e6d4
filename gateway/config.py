"""The YAML config: deployments (`models:`), routed names (`routes:`) and settings (`settings:`).

A LiteLLM proxy `config.yaml` (`model_list` with `litellm_params`) is accepted as it is, so teams can
point Switchyard at the file they already run (its other sections: gateway/litellm_settings.py).
`${VAR}` / `${VAR:-default}` (and LiteLLM's `os.environ/VAR`) are read from the environment mapping the
entry point passes in. A model whose `api_key` names an unset (or empty) variable is skipped with a
warning, so one example file serves whichever provider keys are set; any other unset variable the
config uses is an error.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Collection, Mapping, Sequence
from pathlib import Path
from typing import Annotated, Any, Literal

import pydantic
import yaml
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, model_validator

from gateway.quality.route_config import Shadow
from gateway.settings import Settings, SettingsError
from providers.deployment import Deployment, Price, Tier
from routing.artifact import loadable
from routing.overrides import Fraction

log = logging.getLogger("switchyard.config")
_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
_ENV_PREFIX = "os.environ/"
# Read when neither --config nor SWITCHYARD_CONFIG names a file.
DEFAULT_CONFIG_FILE = Path("switchyard.yaml")


class ConfigError(ValueError):
    """The config file cannot be used; the message says where and why."""


class Route(BaseModel):
    model_config = ConfigDict(extra="forbid")

    candidates: list[str] = Field(min_length=1)
    # The same rules as a team's overrides of them (routing.overrides).
    quality: Fraction | None = None
    strong_fraction: Fraction | None = None
    # Admin pin: requests that offer tools go to at least this tier.
    tools_min_tier: Tier | None = "medium"
    shadow: Shadow | None = None
    # `cascade`: the chosen candidate answers first, and an answer it was unsure of (its token
    # logprobs, routing.cascade) goes to the next tier up; `single`: one candidate answers.
    mode: Literal["single", "cascade"] = "single"
    # The cascade's threshold: a fixed confidence, or the share of answers to escalate (the threshold
    # is then the quantile of the deployment's recent confidences). One of the two with `cascade`.
    min_confidence: Fraction | None = None
    escalate_fraction: Fraction | None = None
    # Streamed tokens held back before the cascade decides (a shorter answer is decided at its end).
    cascade_hold_tokens: int = Field(default=64, ge=1, le=4096, strict=True)

    @model_validator(mode="after")
    def _cascade(self) -> Route:
        knobs = [k for k in ("min_confidence", "escalate_fraction") if getattr(self, k) is not None]
        if self.mode == "cascade" and len(knobs) != 1:
            raise ValueError("mode: cascade takes one of min_confidence or escalate_fraction")
        if self.mode != "cascade" and knobs:
            raise ValueError(f"{knobs[0]} applies to mode: cascade only")
        return self


class GatewayConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    models: list[Deployment] = Field(default_factory=list)
    routes: dict[str, Route] = Field(default_factory=dict)
    # Live config: a router artifact (a path on the gateway's host) to use instead of the embedded one.
    router_artifact: Annotated[str, pydantic.AfterValidator(loadable)] | None = None
    # From a LiteLLM file's general_settings.master_key; SWITCHYARD_MASTER_KEY wins over it.
    master_key: str | None = Field(default=None, repr=False)
    # Settings fields (gateway/settings.py) the file sets, as a LiteLLM file's router_settings do:
    # the environment and the command line win over them (`apply_settings`).
    settings: dict[str, Any] = Field(default_factory=dict, repr=False)
    # Setting -> the file key it came from, where that is not `settings.<name>`.
    _origins: dict[str, str] = PrivateAttr(default_factory=dict)

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
        # `config` would name another file; the file cannot say where it is.
        unknown = sorted(set(self.settings) - (set(Settings.model_fields) - {"config"}))
        if unknown:
            raise ValueError(f"settings: unknown setting(s) {unknown}")
        problems = reference_errors(
            counts,
            {n: r.candidates for n, r in self.routes.items()},
            {n: r.shadow.judge for n, r in self.routes.items() if r.shadow is not None},
        )
        if problems:
            raise ValueError("; ".join(message for _, message in problems))
        return self

    def names(self) -> list[str]:
        return list(dict.fromkeys([d.name for d in self.models] + list(self.routes)))


def reference_errors(
    models: Collection[str], routes: Mapping[str, Sequence[str]], judges: Mapping[str, str] | None = None
) -> list[tuple[str, str]]:
    """Every route that has the name of a model or names an unknown candidate or judge, as (where,
    why): `models`: the model names served; `routes`: each route's candidates; `judges`: each
    shadowed route's judge."""
    problems = []
    for name, judge in (judges or {}).items():
        if judge not in models:
            problems.append((f"routes.{name}.shadow.judge", f"route {name!r}: unknown judge {judge!r}"))
    for name, candidates in routes.items():
        if name in models:
            problems.append((f"routes.{name}", f"route {name!r} has the name of a model"))
        missing = [c for c in candidates if c not in models]
        if missing:
            problems.append((f"routes.{name}.candidates", f"route {name!r}: unknown candidate(s) {missing}"))
    return problems


def interpolate(value: Any, env: Mapping[str, str], where: str = "") -> Any:
    """`value` with its variables read from `env`; an unset one is a ConfigError naming `where`."""
    if isinstance(value, str):

        def unset(name: str) -> ConfigError:
            return ConfigError(f"{where or 'config'}: environment variable {name} is not set")

        if value.startswith(_ENV_PREFIX):
            name = value.removeprefix(_ENV_PREFIX)
            if name not in env:
                raise unset(name)
            return env[name]

        def sub(m: re.Match[str]) -> str:
            if m.group(1) in env:
                return env[m.group(1)]
            if m.group(2) is not None:
                return m.group(2)
            raise unset(m.group(1))

        return _VAR.sub(sub, value)
    if isinstance(value, list):
        return [interpolate(v, env, f"{where}.{i}" if where else str(i)) for i, v in enumerate(value)]
    if isinstance(value, dict):
        return {k: interpolate(v, env, f"{where}.{k}" if where else str(k)) for k, v in value.items()}
    return value


def _unset_key_vars(api_key: Any, env: Mapping[str, str]) -> list[str]:
    """The variables an `api_key` value names that are unset or empty and have no default."""
    if not isinstance(api_key, str):
        return []
    if api_key.startswith(_ENV_PREFIX):
        name = api_key.removeprefix(_ENV_PREFIX)
        return [] if env.get(name) else [name]
    return [m.group(1) for m in _VAR.finditer(api_key) if m.group(2) is None and not env.get(m.group(1))]


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


class _Skipped:
    """Models left out for want of an API key: model name -> the unset variables."""

    def __init__(self) -> None:
        self.models: dict[str, list[str]] = {}

    def check(self, name: Any, api_key: Any, env: Mapping[str, str]) -> bool:
        missing = _unset_key_vars(api_key, env)
        if missing:
            seen = self.models.setdefault(str(name), [])
            seen.extend(v for v in missing if v not in seen)
        return bool(missing)

    def report(self, served: list[dict[str, Any]]) -> None:
        if not self.models:
            return
        variables = sorted({v for vs in self.models.values() for v in vs})
        if not served:
            raise ConfigError(
                f"no models left to serve: every model's API key is unset (set {' or '.join(variables)})"
            )
        by_vars: dict[tuple[str, ...], list[str]] = {}
        for name, vs in self.models.items():
            by_vars.setdefault(tuple(vs), []).append(name)
        log.warning(
            "skipping models whose API key is not set: %s",
            "; ".join(f"{', '.join(names)} ({', '.join(vs)})" for vs, names in by_vars.items()),
        )

    def prune(self, routes: Any, served: list[dict[str, Any]]) -> Any:
        """Routes without the skipped models (a name still served by another entry stays)."""
        gone = set(self.models) - {d.get("name") for d in served}
        if not gone or not isinstance(routes, dict):
            return routes
        kept = {}
        for name, route in routes.items():
            cands = route.get("candidates") if isinstance(route, dict) else None
            if not isinstance(cands, list) or not set(cands) & gone:
                kept[name] = route
            elif left := [c for c in cands if c not in gone]:
                kept[name] = {**route, "candidates": left}
            else:
                log.warning("route %s dropped: all its candidates were skipped for want of an API key", name)
        return kept


def _native(
    raw: dict[str, Any], env: Mapping[str, str], skipped: _Skipped
) -> tuple[dict[str, Any], list[int]]:
    entries = raw.get("models")
    if not isinstance(entries, list):
        return interpolate(raw, env), []
    indexes = [
        i
        for i, e in enumerate(entries)
        if not (isinstance(e, dict) and skipped.check(e.get("name"), e.get("api_key"), env))
    ]
    rest = {k: v for k, v in raw.items() if k != "models"}
    models = [interpolate(entries[i], env, f"models.{i}") for i in indexes]
    return {**interpolate(rest, env), "models": models}, indexes


def _from_litellm(
    raw: dict[str, Any], env: Mapping[str, str], skipped: _Skipped
) -> tuple[dict[str, Any], dict[str, str], list[int]]:
    # Imported here: gateway.litellm_settings raises this module's ConfigError.
    from gateway.litellm_settings import translate

    mapped = translate(raw, lambda value, where: interpolate(value, env, where))
    models = []
    indexes = []
    for i, entry in enumerate(raw.get("model_list") or []):
        where = f"model_list.{i}"
        if not isinstance(entry, dict) or not isinstance(entry.get("litellm_params") or {}, dict):
            raise ConfigError(f"{where}: expected a mapping with model_name and litellm_params")
        if skipped.check(entry.get("model_name"), (entry.get("litellm_params") or {}).get("api_key"), env):
            continue
        try:
            dep = _from_litellm_entry(interpolate(entry, env, where))
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"{where}: {exc}") from None
        if mapped.timeout is not None:
            dep.setdefault("timeout", mapped.timeout)
        models.append(dep)
        indexes.append(i)
    native = {
        "models": models,
        "routes": interpolate(raw.get("routes") or {}, env, "routes"),
        "master_key": mapped.master_key,
        "settings": mapped.settings,
    }
    return native, mapped.origins, indexes


def _litellm_env(raw: dict[str, Any], env: Mapping[str, str]) -> Mapping[str, str]:
    """LiteLLM sets a file's `environment_variables` in its environment; here they fill in for
    variables the process lacks."""
    file_env = raw.get("environment_variables") or {}
    if not isinstance(file_env, dict):
        raise ConfigError("environment_variables: expected a mapping")
    return {**{str(k): str(v) for k, v in file_env.items()}, **env}


def parse_config(raw: dict[str, Any], env: Mapping[str, str]) -> GatewayConfig:
    raw = raw or {}
    skipped = _Skipped()
    origins: dict[str, str] = {}
    section = "models"
    if "model_list" in raw:
        section = "model_list"
        raw, origins, indexes = _from_litellm(raw, _litellm_env(raw, env), skipped)
    else:
        raw, indexes = _native(raw, env, skipped)
    served = raw.get("models") if isinstance(raw.get("models"), list) else []
    skipped.report(served)
    if "routes" in raw:
        raw = {**raw, "routes": skipped.prune(raw["routes"], served)}
    try:
        config = GatewayConfig.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(_explain(exc, indexes, section)) from None
    config._origins = origins
    return config


def apply_settings(settings: Settings, config: GatewayConfig) -> Settings:
    """`settings` (environment and command line) over the config file's `settings:`."""
    try:
        return settings.filled_from(config.settings)
    except SettingsError as exc:
        problems = (f"{config._origins.get(f, f'settings.{f}')}: {why}" for f, why in exc.problems)
        raise ConfigError("invalid config: " + "; ".join(problems)) from None


def load_config(path: str | Path, env: Mapping[str, str]) -> GatewayConfig:
    return parse_config(_read(path), env)


def config_path(settings: Settings) -> Path | None:
    """--config / SWITCHYARD_CONFIG, else ./switchyard.yaml when present; None: the embedded defaults."""
    if settings.config is not None:
        return settings.config
    return DEFAULT_CONFIG_FILE if DEFAULT_CONFIG_FILE.is_file() else None


def entry_settings(env: Mapping[str, str], **given: Any) -> Settings:
    """The Settings an entry point runs with: `given` (its command line) and the environment, over
    the config file's settings. Only that part of the file is read, so a command that needs no more
    (`switchyard migrate`, `keys ...`) works whichever models the file could serve."""
    settings = Settings(**given)
    path = config_path(settings)
    if path is None:
        return settings
    raw = _read(path)
    if "model_list" in raw:
        # Imported here: gateway.litellm_settings raises this module's ConfigError.
        from gateway.litellm_settings import settings_of

        file_env = _litellm_env(raw, env)
        values, origins = settings_of(raw, lambda value, where: interpolate(value, file_env, where))
    else:
        values, origins = interpolate(raw.get("settings") or {}, env, "settings"), {}
    try:
        part = GatewayConfig.model_validate({"settings": values})
    except ValidationError as exc:
        raise ConfigError(_explain(exc, [])) from None
    part._origins = origins
    return apply_settings(settings, part)


def _read(path: str | Path) -> dict[str, Any]:
    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise ConfigError(f"cannot read config {path}: {exc.strerror}") from None
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ConfigError(f"{path}: invalid YAML{at}: {getattr(exc, 'problem', None) or exc}") from None
    if raw is not None and not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping with `models:` (or LiteLLM's `model_list:`)")
    return raw or {}


def _explain(exc: ValidationError, indexes: list[int], section: str = "models") -> str:
    """One line; `indexes` maps the position of a served model back to its place in the file's
    `section` (a LiteLLM file's `model_list`)."""
    lines = []
    for err in exc.errors():
        loc = list(err["loc"])
        if indexes and len(loc) > 1 and loc[0] == "models" and isinstance(loc[1], int):
            loc[:2] = [section, indexes[loc[1]]]
        where = ".".join(str(p) for p in loc) or "config"
        lines.append(f"{where}: {err['msg']}")
    return "invalid config: " + "; ".join(lines)


__all__ = [
    "ConfigError",
    "Deployment",
    "GatewayConfig",
    "Price",
    "Route",
    "apply_settings",
    "config_path",
    "entry_settings",
    "load_config",
    "parse_config",
]
