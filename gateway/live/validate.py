"""Checking a whole routing config document, reporting every problem at once.

`validate_document` takes the file's shape (`models:` and `routes:`) and returns the config it
describes, or every error as {"loc": "models.2.api_key", "message": ...}: the schema (types, ranges,
unknown keys: gateway.config.GatewayConfig and providers.deployment.Deployment, whose rules these
are), the references (gateway.config.reference_errors), the secrets (gateway.live.secrets) and, for a
document from the admin API, every `${ENV_VAR}` it names being set here. A team's routing overrides
are checked against the running config by `team_routing_errors`.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from gateway.config import (
    _ENV_PREFIX,
    _VAR,
    ConfigError,
    GatewayConfig,
    interpolate,
    parse_config,
    reference_errors,
)
from gateway.live.document import NATIVE_SECTIONS, live_part
from gateway.live.secrets import SecretBox, Source, is_secret_name, loc, resolve
from providers.deployment import TIER_RANK
from routing.overrides import TeamRouting

ConfigIssue = dict[str, str]

_START_ONLY = ("settings", "master_key")


@dataclass
class Validation:
    """`config`: what the document describes (None when it has errors); `stored`: the document as
    it is written to the database (secrets encrypted or references); `errors`: every problem."""

    config: GatewayConfig | None
    stored: dict[str, Any] | None
    errors: list[ConfigIssue] = field(default_factory=list)

    @property
    def valid(self) -> bool:
        return not self.errors

    def summary(self, limit: int = 20) -> str:
        shown = [f"{e['loc']}: {e['message']}" if e["loc"] else e["message"] for e in self.errors[:limit]]
        more = len(self.errors) - limit
        return "; ".join(shown) + (f"; and {more} more" if more > 0 else "")


def issue(where: str, message: str) -> ConfigIssue:
    return {"loc": where, "message": message}


def validate_document(
    document: Any,
    *,
    env: Mapping[str, str],
    box: SecretBox,
    previous: Mapping[str, Any] | None = None,
    source: Source = "api",
) -> Validation:
    """Every problem of `document`, or the config it describes. `previous`: the stored document it
    replaces (MASK in a secret keeps that document's value). `source`: "api" is strict (only the
    live sections, every `${ENV_VAR}` set); "file" and "stored" read as a --config file is read
    (a model whose API key variable is unset is left out, with a warning)."""
    if not isinstance(document, dict):
        return Validation(None, None, [issue("", "expected a mapping with models: and routes:")])
    errors: list[ConfigIssue] = []
    if "model_list" in document:
        if source == "api":
            return Validation(None, None, [issue("model_list", _LITELLM)])
    else:
        for key in document:
            if key in NATIVE_SECTIONS:
                continue
            if key in _START_ONLY:
                if source == "api":
                    errors.append(issue(str(key), f"{key} are read at start only: {_AT_START}"))
            elif source == "api":
                errors.append(
                    issue(str(key), "unknown section: a config has models:, routes: and router_artifact:")
                )
    secrets = resolve(document, box, previous, source)
    errors += secrets.errors
    if source == "api":
        errors += _unset_variables(secrets.plain, env)
    if source != "api" or "model_list" in secrets.plain:
        # As a file is read: gateway.config does it all, and says what is wrong in one message.
        if errors:
            return Validation(None, None, errors)
        try:
            return Validation(parse_config(secrets.plain, env), live_part(secrets.stored))
        except ConfigError as exc:
            return Validation(None, None, [issue("", str(exc))])
    errors += _schema_errors(secrets.plain, env)
    if errors:
        return Validation(None, None, _unique(errors))
    try:
        config = parse_config(secrets.plain, env)
    except ConfigError as exc:  # nothing above missed it, but the parser has the last word
        return Validation(None, None, [issue("", str(exc))])
    return Validation(config, secrets.stored)


_LITELLM = (
    "a LiteLLM config (model_list:) is read from a --config file, but the admin API takes the "
    "native form: models: and routes: (as `switchyard config get` prints it)"
)
_AT_START = "set them in the environment, on the command line or in the --config file"


def _strings(node: Any, path: tuple[Any, ...]) -> Iterator[tuple[tuple[Any, ...], str]]:
    if isinstance(node, str):
        yield path, node
    elif isinstance(node, dict):
        for k, v in node.items():
            yield from _strings(v, (*path, k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from _strings(v, (*path, i))


def _unset_variables(plain: Mapping[str, Any], env: Mapping[str, str]) -> list[ConfigIssue]:
    """Every `${VAR}` (without a default) and `os.environ/VAR` in the document that is not set here;
    for a credential, one set to an empty value too."""
    errors = []
    for path, value in _strings({k: plain.get(k) for k in NATIVE_SECTIONS if k in plain}, ()):
        names = [m.group(1) for m in _VAR.finditer(value) if m.group(2) is None]
        if value.startswith(_ENV_PREFIX):
            names.append(value.removeprefix(_ENV_PREFIX))
        credential = isinstance(path[-1], str) and is_secret_name(path[-1])
        for name in names:
            if name not in env or (credential and not env[name]):
                state = "is not set" if name not in env else "is empty"
                errors.append(issue(loc(path), f"environment variable {name} {state} on this gateway"))
    return errors


class _Anything(dict):  # type: ignore[type-arg]
    """An environment in which every variable is set (to ""), for reading types past unset ones."""

    def __init__(self, env: Mapping[str, str]) -> None:
        super().__init__(env)

    def __contains__(self, key: object) -> bool:
        return True

    def __getitem__(self, key: str) -> str:
        return dict.get(self, key, "")


def _schema_errors(plain: Mapping[str, Any], env: Mapping[str, str]) -> list[ConfigIssue]:
    live = {k: plain[k] for k in NATIVE_SECTIONS if k in plain}
    values = interpolate(live, _Anything(env))
    errors: list[ConfigIssue] = []
    references = _references(values)
    try:
        GatewayConfig.model_validate(values)
    except ValidationError as exc:
        for err in exc.errors():
            if not err["loc"] and references:
                continue  # the config's own check of the references: listed one by one below
            errors.append(issue(loc(err["loc"]), _message(err)))
    errors += [issue(where, why) for where, why in references]
    ids: dict[str, int] = {}
    models = values.get("models")
    for i, entry in enumerate(models if isinstance(models, list) else []):
        if isinstance(entry, dict) and isinstance(entry.get("id"), str) and entry["id"]:
            if entry["id"] in ids:
                errors.append(
                    issue(f"models.{i}.id", f"id {entry['id']!r} is also models.{ids[entry['id']]}")
                )
            ids.setdefault(entry["id"], i)
    return errors


def _message(err: Any) -> str:
    # "Value error, ..." is pydantic's prefix for a validator's own words.
    return re.sub(r"^Value error, ", "", str(err["msg"]))


def _references(values: Mapping[str, Any]) -> list[tuple[str, str]]:
    """gateway.config's reference check on what can be read of a document that may have other errors."""
    models = values.get("models")
    names = {
        e["name"]
        for e in (models if isinstance(models, list) else [])
        if isinstance(e, dict) and isinstance(e.get("name"), str)
    }
    routes = values.get("routes")
    candidates = {
        name: [c for c in r["candidates"] if isinstance(c, str)]
        for name, r in (routes.items() if isinstance(routes, dict) else [])
        if isinstance(r, dict) and isinstance(r.get("candidates"), list)
    }
    judges = {
        name: r["shadow"]["judge"]
        for name, r in (routes.items() if isinstance(routes, dict) else [])
        if isinstance(r, dict)
        and isinstance(r.get("shadow"), dict)
        and isinstance(r["shadow"].get("judge"), str)
    }
    return reference_errors(names, candidates, judges)


def _unique(errors: list[ConfigIssue]) -> list[ConfigIssue]:
    seen = set()
    out = []
    for e in errors:
        key = (e["loc"], e["message"])
        if key not in seen:
            seen.add(key)
            out.append(e)
    return out


# -- team routing overrides -----------------------------------------------------------------------


def team_routing_errors(
    routing: TeamRouting, config: GatewayConfig, where: str = "routing"
) -> list[ConfigIssue]:
    """What of a team's overrides the running config cannot honour: a routed name it does not have,
    or tier bounds that leave a route no candidate. (Types and ranges: TeamRouting itself.)"""
    tiers: dict[str, str] = {}
    for dep in config.models:
        tiers.setdefault(dep.name, dep.tier)
    route_tiers = {name: {tiers[c] for c in r.candidates if c in tiers} for name, r in config.routes.items()}
    errors = []
    for name in routing.routes:
        if name not in config.routes:
            known = ", ".join(sorted(config.routes)) or "none"
            errors.append(
                issue(f"{where}.routes.{name}", f"no route {name!r} in the running config (routes: {known})")
            )
            continue
        bounds = routing.for_route(name)
        if not _admits(route_tiers[name], bounds.min_tier, bounds.max_tier):
            errors.append(
                issue(
                    f"{where}.routes.{name}",
                    _no_tier(name, route_tiers[name], bounds.min_tier, bounds.max_tier),
                )
            )
    bounded = routing.min_tier is not None or routing.max_tier is not None
    if bounded and not any(_admits(t, routing.min_tier, routing.max_tier) for t in route_tiers.values()):
        span = _span(routing.min_tier, routing.max_tier)
        errors.append(issue(where, f"min_tier/max_tier leave no candidate in any route ({span})"))
    return errors


def _admits(tiers: set[str], low: str | None, high: str | None) -> bool:
    lo = TIER_RANK[low] if low else 0
    hi = TIER_RANK[high] if high else max(TIER_RANK.values())
    return any(lo <= TIER_RANK[t] <= hi for t in tiers)


def _span(low: str | None, high: str | None) -> str:
    return f"tiers {low or 'local'}..{high or 'large'}"


def _no_tier(name: str, tiers: set[str], low: str | None, high: str | None) -> str:
    have = ", ".join(sorted(tiers, key=TIER_RANK.__getitem__)) or "none"
    return f"{_span(low, high)} leave route {name!r} no candidate (its tiers: {have})"
