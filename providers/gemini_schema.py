"""JSON schemas (tool parameters, response_format) reduced to the subset Gemini's `Schema` accepts."""

from __future__ import annotations

from typing import Any

import orjson

from providers.gemini_errors import bad_request

# The OpenAPI-3 subset Gemini's `Schema` accepts; anything else (additionalProperties, $schema, strict,
# const, patternProperties...) is rejected with a 400, so it is dropped rather than forwarded.
_SCHEMA_KEYS = frozenset(
    {
        "type",
        "format",
        "title",
        "description",
        "nullable",
        "enum",
        "items",
        "minItems",
        "maxItems",
        "properties",
        "required",
        "minProperties",
        "maxProperties",
        "minLength",
        "maxLength",
        "pattern",
        "example",
        "anyOf",
        "propertyOrdering",
        "default",
        "minimum",
        "maximum",
    }
)
# Gemini rejects other string formats ("uri", "email"...) outright.
_FORMATS = frozenset({"enum", "date-time", "int32", "int64", "float", "double"})
_MAX_SCHEMA_DEPTH = 32


def clean_schema(schema: Any) -> dict[str, Any]:
    """An OpenAI/JSON-schema object reduced to what Gemini's Schema accepts; local `$ref`s are inlined
    because Gemini has no `$defs`."""
    if not isinstance(schema, dict):
        return {}
    defs = {**(schema.get("definitions") or {}), **(schema.get("$defs") or {})}
    return _clean(schema, defs, 0)


def _clean(node: dict[str, Any], defs: dict[str, Any], depth: int) -> dict[str, Any]:
    if depth > _MAX_SCHEMA_DEPTH:
        raise bad_request("JSON schema nested too deeply (or a recursive $ref) for Gemini")
    ref = node.get("$ref")
    if isinstance(ref, str):
        target = defs.get(ref.rsplit("/", 1)[-1])
        if not isinstance(target, dict):
            raise bad_request(f"JSON schema $ref {ref!r} cannot be resolved")
        merged = {**target, **{k: v for k, v in node.items() if k != "$ref"}}
        return _clean(merged, defs, depth + 1)
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key == "properties" and isinstance(value, dict):
            out[key] = {
                name: _clean(sub, defs, depth + 1) for name, sub in value.items() if isinstance(sub, dict)
            }
        elif key == "items" and isinstance(value, dict):
            out[key] = _clean(value, defs, depth + 1)
        elif key in ("anyOf", "oneOf") and isinstance(value, list):
            options = [_clean(sub, defs, depth + 1) for sub in value if isinstance(sub, dict)]
            non_null = [o for o in options if o.get("type") != "null"]
            if len(non_null) < len(options):
                out["nullable"] = True
            if len(non_null) == 1:
                out.update({k: v for k, v in non_null[0].items() if k not in out})
            elif non_null:
                out["anyOf"] = non_null
        elif key == "type" and isinstance(value, list):
            types = [t for t in value if t != "null"]
            if len(types) < len(value):
                out["nullable"] = True
            if len(types) == 1:
                out["type"] = types[0]
            elif types:
                out["anyOf"] = [{"type": t} for t in types]
        elif key == "allOf" and isinstance(value, list):
            # pydantic wraps a described $ref as allOf: [ref]; Gemini has no allOf, so the parts merge.
            for sub in value:
                if isinstance(sub, dict):
                    out.update({k: v for k, v in _clean(sub, defs, depth + 1).items() if k not in out})
        elif key == "const":
            out["enum"] = [value]
        elif key == "format":
            if value in _FORMATS:
                out[key] = value
        elif key in _SCHEMA_KEYS:
            out[key] = value
    if "enum" in out:
        if out.get("type", "string") == "string":
            # Gemini enums are strings only.
            out["enum"] = [v if isinstance(v, str) else orjson.dumps(v).decode() for v in out["enum"]]
            out["type"] = "string"
        else:
            del out["enum"]  # a numeric enum would be rejected; keeping the type matters more
    return out
