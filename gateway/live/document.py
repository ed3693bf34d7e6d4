"""The routing config as a document (what is stored, shown and edited): `models:`, `routes:` and an
optional `router_artifact:`, the YAML file's shape; how its model entries are told apart; and a
compact diff of two documents.

A document is plain JSON data. Secrets in it are `${ENV}` references or values encrypted by
gateway.live.secrets; what leaves the gateway is masked (`secrets.mask`).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

from gateway.config import GatewayConfig
from providers.deployment import PROVIDER_CAPABILITIES

# The sections of a document that are live config; a file's other sections (`settings:`, LiteLLM's
# `general_settings:` ...) are read at start only.
NATIVE_SECTIONS = ("models", "routes", "router_artifact")
LITELLM_SECTIONS = ("model_list", "routes")
# The key naming a model entry in each list section.
NAME_KEY = {"models": "name", "model_list": "model_name"}
_AUTO_ID = re.compile(r".+#\d+")


def live_part(raw: Mapping[str, Any]) -> dict[str, Any]:
    """The live sections of a config file's content."""
    sections = LITELLM_SECTIONS if "model_list" in raw else NATIVE_SECTIONS
    return {k: raw[k] for k in sections if k in raw}


def entry_keys(entries: Any, section: str = "models") -> list[str | None]:
    """A stable key for each entry of a model list: its `id` when it has one, else its name (with
    `#k` for the k-th entry of a name used more than once). None for an entry that is not a mapping."""
    name_key = NAME_KEY[section]
    if not isinstance(entries, list):
        return []
    seen: dict[str, int] = {}
    keys: list[str | None] = []
    for entry in entries:
        if not isinstance(entry, dict):
            keys.append(None)
            continue
        if isinstance(entry.get("id"), str) and entry["id"]:
            keys.append(entry["id"])
            continue
        name = str(entry.get(name_key))
        seen[name] = seen.get(name, 0) + 1
        keys.append(name if seen[name] == 1 else f"{name}#{seen[name]}")
    return keys


def keyed(entries: Any, section: str = "models") -> dict[str, Any]:
    """A model list as {entry key: entry}."""
    return {k: e for k, e in zip(entry_keys(entries, section), entries or [], strict=False) if k is not None}


def config_document(config: GatewayConfig, refs: Mapping[str, str] | None = None) -> dict[str, Any]:
    """`config` as a document: what a file would say to get it. `refs` maps secret values to the
    `${ENV}` reference to write instead (the embedded defaults' provider keys)."""
    refs = refs or {}
    models = []
    for dep in config.models:
        entry = dep.model_dump(mode="json", exclude_defaults=True)
        entry.pop("capabilities", None)
        if dep.capabilities != PROVIDER_CAPABILITIES[dep.provider]:
            entry["capabilities"] = sorted(dep.capabilities)
        if entry.get("id") in (dep.name, None) or _AUTO_ID.fullmatch(entry.get("id", "")):
            entry.pop("id", None)
        if dep.api_key is not None and dep.api_key in refs:
            entry["api_key"] = refs[dep.api_key]
        if entry.get("defaults") == {}:
            entry.pop("defaults")
        models.append(entry)
    routes = {name: r.model_dump(mode="json", exclude_defaults=True) for name, r in config.routes.items()}
    document: dict[str, Any] = {"models": models, "routes": routes}
    if config.router_artifact is not None:
        document["router_artifact"] = config.router_artifact
    return document


# -- diff -----------------------------------------------------------------------------------------


def _comparable(document: Mapping[str, Any]) -> dict[str, Any]:
    """Model lists keyed by entry (an entry moved or added elsewhere is not a change of the others)."""
    out = dict(document)
    for section in NAME_KEY:
        if isinstance(out.get(section), list):
            out[section] = keyed(out[section], section)
    return out


Mask = Callable[[tuple[str, ...], Any], Any]


def diff(
    old: Mapping[str, Any] | None, new: Mapping[str, Any], mask: Mask | None = None
) -> list[dict[str, Any]]:
    """What changed from `old` to `new`, as [{"op": "added" | "removed" | "changed", "path": ...,
    "old": ..., "new": ...}]; model entries are named by their key (`models.gpt-4o.tier`), not their
    position. `mask(path, value)` is what a value is shown as (secrets.mask_at)."""
    out: list[dict[str, Any]] = []
    _walk(_comparable(old or {}), _comparable(new), (), out, mask or (lambda _, value: value))
    return out


def _walk(old: Any, new: Any, path: tuple[str, ...], out: list[dict[str, Any]], mask: Mask) -> None:
    if isinstance(old, dict) and isinstance(new, dict):
        for key in list(old) + [k for k in new if k not in old]:
            where = (*path, str(key))
            if key not in new:
                out.append({"op": "removed", "path": ".".join(where), "old": mask(where, old[key])})
            elif key not in old:
                out.append({"op": "added", "path": ".".join(where), "new": mask(where, new[key])})
            else:
                _walk(old[key], new[key], where, out, mask)
    elif old != new:
        change = {"op": "changed", "path": ".".join(path), "old": mask(path, old), "new": mask(path, new)}
        out.append(change)
