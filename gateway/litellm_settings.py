"""A LiteLLM proxy config's `router_settings`, `litellm_settings` and `general_settings`, as Switchyard
settings (gateway/settings.py), the master key and a default deployment timeout.

A key with no Switchyard equivalent is logged once, one line naming it, so a migration is never
silently partial; such keys are not read at all (an unset `os.environ/VAR` in one is no error). The
values that are used go through the same interpolation as the rest of the file.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

from gateway.config import ConfigError

log = logging.getLogger("switchyard.config")

_SECTIONS = ("router_settings", "litellm_settings", "general_settings")
# Top-level keys the config loader itself reads.
_READ_ELSEWHERE = ("model_list", "routes", "environment_variables")

# Settings field <- LiteLLM keys, the first one present wins.
_SETTINGS: dict[str, tuple[tuple[str, str], ...]] = {
    "retries": (("router_settings", "num_retries"), ("litellm_settings", "num_retries")),
    "cooldown_s": (("router_settings", "cooldown_time"),),
    "cooldown_failures": (("router_settings", "allowed_fails"),),
    "database_url": (("general_settings", "database_url"),),
    "redis_url": (("router_settings", "redis_url"),),
}
_TIMEOUT = (("router_settings", "timeout"), ("litellm_settings", "request_timeout"))
_MASTER_KEY = ("general_settings", "master_key")
_REDIS_PARTS = ("redis_host", "redis_port", "redis_password")
_REDIS_HOST = "router_settings.redis_host"
_FALLBACKS = "Switchyard has no per-model fallbacks; a route (`routes:`) falls over between its candidates"
_HINTS = {
    "fallbacks": _FALLBACKS,
    "context_window_fallbacks": _FALLBACKS,
    "content_policy_fallbacks": _FALLBACKS,
    "default_fallbacks": _FALLBACKS,
    "routing_strategy": "deployments sharing a name take turns, cooled-down ones last",
    "redis_port": "read only with redis_host",
    "redis_password": "read only with redis_host",
}


def _plus_one(value: Any) -> Any:
    """LiteLLM cools a deployment down after more than `allowed_fails` failures; Switchyard after
    `cooldown_failures`. A value that is no whole number is left for the settings check to report."""
    if isinstance(value, int | str) and not isinstance(value, bool) and str(value).strip().isdigit():
        return int(value) + 1
    return value


_CONVERT: dict[str, Callable[[Any], Any]] = {"cooldown_failures": _plus_one}


@dataclass(slots=True)
class LiteLLMSettings:
    # Settings field -> value, and the LiteLLM key each came from (for error messages).
    settings: dict[str, Any] = field(default_factory=dict)
    origins: dict[str, str] = field(default_factory=dict)
    master_key: str | None = None
    # For deployments whose litellm_params set no `timeout`.
    timeout: Any = None


def translate(raw: Mapping[str, Any], read: Callable[[Any, str], Any]) -> LiteLLMSettings:
    """`read(value, where)` interpolates one value the result uses; `where` names it for errors."""
    sections = {name: _section(raw, name) for name in _SECTIONS}
    used: set[tuple[str, str]] = set()

    def take(section: str, key: str) -> Any:
        used.add((section, key))
        return read(sections[section][key], f"{section}.{key}")

    out = LiteLLMSettings()
    out.settings, out.origins = _settings(sections, read)
    for section, key in _TIMEOUT:
        if key in sections[section]:
            out.timeout = take(section, key)
            break
    # The other one of a pair is read too: it has its equivalent, only overridden.
    used.update(s for sources in (*_SETTINGS.values(), _TIMEOUT) for s in sources)
    if out.origins.get("redis_url") == _REDIS_HOST:
        used.update(("router_settings", k) for k in _REDIS_PARTS)
    if _MASTER_KEY[1] in sections[_MASTER_KEY[0]]:
        out.master_key = take(*_MASTER_KEY)
    for section, values in sections.items():
        for key in values:
            if (section, key) not in used:
                hint = _HINTS.get(key, "Switchyard has no equivalent")
                log.warning("LiteLLM setting %s.%s ignored: %s", section, key, hint)
    for key in raw:
        if key not in (*_SECTIONS, *_READ_ELSEWHERE):
            log.warning("LiteLLM section %s ignored: Switchyard has no equivalent", key)
    return out


def settings_of(
    raw: Mapping[str, Any], read: Callable[[Any, str], Any]
) -> tuple[dict[str, Any], dict[str, str]]:
    """Only the Settings fields of `translate` (and their origins): nothing else is read or logged,
    so a command that needs no more (`switchyard migrate`) does not fail on the rest."""
    return _settings({name: _section(raw, name) for name in _SECTIONS}, read)


def _settings(
    sections: Mapping[str, dict[str, Any]], read: Callable[[Any, str], Any]
) -> tuple[dict[str, Any], dict[str, str]]:
    settings: dict[str, Any] = {}
    origins: dict[str, str] = {}
    for setting, sources in _SETTINGS.items():
        for section, key in sources:
            if key in sections[section]:
                value = read(sections[section][key], f"{section}.{key}")
                settings[setting] = _CONVERT.get(setting, lambda v: v)(value)
                origins[setting] = f"{section}.{key}"
                break
    router = sections["router_settings"]
    if "redis_url" not in settings and "redis_host" in router:
        parts = {k: read(router[k], f"router_settings.{k}") for k in _REDIS_PARTS if k in router}
        password = parts.get("redis_password")
        auth = f":{quote(str(password), safe='')}@" if password else ""
        settings["redis_url"] = f"redis://{auth}{parts['redis_host']}:{parts.get('redis_port') or 6379}"
        origins["redis_url"] = _REDIS_HOST
    return settings, origins


def _section(raw: Mapping[str, Any], name: str) -> dict[str, Any]:
    value = raw.get(name) or {}
    if not isinstance(value, dict):
        raise ConfigError(f"{name}: expected a mapping")
    return value
