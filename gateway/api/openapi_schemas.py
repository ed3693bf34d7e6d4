"""What the OpenAPI document says the /v1 routes take and send, and the 400 it says every route answers.

The /v1 routes read their body as raw JSON (gateway.body.read_json, for speed), so FastAPI cannot see
it: the request bodies and answers are declared here as JSON Schema instead, through `openapi_extra`
and `responses`. Nothing here runs per request. The gateway sends a bad request as 400 with an error
object (gateway.errors), never FastAPI's 422: `install_openapi` rewrites the generated document so.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

JSON = "application/json"
SSE = "text/event-stream"

_STRING_OR_NULL = {"type": ["string", "null"]}
OPENAI_ERROR: dict[str, Any] = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["message", "type"],
            "properties": {
                "message": {"type": "string"},
                "type": {"type": "string"},
                "param": _STRING_OR_NULL,
                "code": _STRING_OR_NULL,
            },
        }
    },
}
ANTHROPIC_ERROR: dict[str, Any] = {
    "type": "object",
    "required": ["type", "error"],
    "properties": {
        "type": {"const": "error"},
        "error": {
            "type": "object",
            "required": ["type", "message"],
            "properties": {"type": {"type": "string"}, "message": {"type": "string"}},
        },
    },
}

_ERRORS = {
    400: "Malformed request: not JSON, a missing or mistyped field",
    401: "Missing or invalid API key",
    404: "Unknown model",
    413: "Request body over the size limit",
    429: "Rate limit or budget exceeded (retry-after says when to retry)",
    502: "The upstream provider failed",
    503: "No deployment available, or a dependency (database, limiter) is down",
    504: "The upstream provider timed out",
}

_MODEL = {"type": "string", "minLength": 1, "description": "A model or route name this gateway serves"}
_TEMPERATURE = {"type": "number", "minimum": 0, "maximum": 2}
_TOP_P = {"type": "number", "minimum": 0, "maximum": 1}
_POSITIVE = {"type": "integer", "minimum": 1}
_STOP = {"oneOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}]}
_PART = {"type": "object", "required": ["type"], "properties": {"type": {"type": "string"}}}
_CONTENT = {"oneOf": [{"type": "string"}, {"type": "array", "items": _PART}, {"type": "null"}]}
_FUNCTION = {
    "type": "object",
    "required": ["name"],
    "properties": {
        "name": {"type": "string"},
        "description": {"type": "string"},
        "parameters": {"type": "object"},
    },
}

_CALLED = {
    "type": "object",
    "required": ["name"],
    "properties": {"name": {"type": "string"}, "arguments": {"type": "string"}},
}

CHAT_REQUEST: dict[str, Any] = {
    "type": "object",
    "required": ["model", "messages"],
    "properties": {
        "model": _MODEL,
        "messages": {
            "type": "array",
            "minItems": 1,
            "items": {
                "type": "object",
                "required": ["role"],
                "properties": {
                    "role": {"enum": ["system", "developer", "user", "assistant", "tool", "function"]},
                    "content": _CONTENT,
                    "name": {"type": "string"},
                    "tool_call_id": {"type": "string"},
                    "tool_calls": {
                        "type": "array",
                        "items": {
                            "type": "object",
                            "required": ["id", "function"],
                            "properties": {
                                "id": {"type": "string"},
                                "type": {"const": "function"},
                                "function": _CALLED,
                            },
                        },
                    },
                },
            },
        },
        "max_tokens": _POSITIVE,
        "max_completion_tokens": _POSITIVE,
        "n": _POSITIVE,
        "temperature": _TEMPERATURE,
        "top_p": _TOP_P,
        "stop": _STOP,
        "stream": {"type": "boolean"},
        "stream_options": {"type": "object", "properties": {"include_usage": {"type": "boolean"}}},
        "tools": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {"type": {"type": "string"}, "function": _FUNCTION},
            },
        },
        "tool_choice": {"oneOf": [{"type": "string"}, {"type": "object"}]},
        "response_format": {"type": "object", "properties": {"type": {"type": "string"}}},
        "user": {"type": "string"},
    },
}

COMPLETION_REQUEST: dict[str, Any] = {
    "type": "object",
    "required": ["model", "prompt"],
    "properties": {
        "model": _MODEL,
        "prompt": {"oneOf": [{"type": "string"}, {"type": "array"}]},
        "max_tokens": _POSITIVE,
        "n": _POSITIVE,
        "temperature": _TEMPERATURE,
        "top_p": _TOP_P,
        "stop": _STOP,
        "stream": {"type": "boolean"},
        "user": {"type": "string"},
    },
}

EMBEDDING_REQUEST: dict[str, Any] = {
    "type": "object",
    "required": ["model", "input"],
    "properties": {
        "model": _MODEL,
        "input": {"oneOf": [{"type": "string"}, {"type": "array", "minItems": 1}]},
        "dimensions": _POSITIVE,
        "encoding_format": {"enum": ["float", "base64"]},
        "user": {"type": "string"},
    },
}

_BLOCK = {"type": "object", "required": ["type"], "properties": {"type": {"type": "string"}}}
MESSAGES_REQUEST: dict[str, Any] = {
    "type": "object",
    "required": ["model", "messages", "max_tokens"],
    "properties": {
        "model": _MODEL,
        "max_tokens": _POSITIVE,
        "system": {"oneOf": [{"type": "string"}, {"type": "array", "items": _BLOCK}]},
        "messages": {
            "type": "array",
            "minItems": 1,
            "items": {
                "type": "object",
                "required": ["role", "content"],
                "properties": {
                    "role": {"enum": ["user", "assistant"]},
                    "content": {"oneOf": [{"type": "string"}, {"type": "array", "items": _BLOCK}]},
                },
            },
        },
        "temperature": {"type": "number", "minimum": 0, "maximum": 1},
        "top_p": _TOP_P,
        "top_k": _POSITIVE,
        "stop_sequences": {"type": "array", "items": {"type": "string"}},
        "stream": {"type": "boolean"},
        "metadata": {"type": "object", "properties": {"user_id": {"type": "string"}}},
        "tools": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["name"],
                "properties": {"name": {"type": "string"}, "input_schema": {"type": "object"}},
            },
        },
        "tool_choice": {"type": "object", "required": ["type"], "properties": {"type": {"type": "string"}}},
    },
}

_ITEM = {"type": "object", "properties": {"type": {"type": "string"}}}
RESPONSES_REQUEST: dict[str, Any] = {
    "type": "object",
    "required": ["model", "input"],
    "properties": {
        "model": _MODEL,
        "input": {"oneOf": [{"type": "string"}, {"type": "array", "items": _ITEM}]},
        "instructions": _STRING_OR_NULL,
        "previous_response_id": _STRING_OR_NULL,
        "store": {"type": "boolean"},
        "stream": {"type": "boolean"},
        "tools": {"type": "array", "items": {"type": "object", "required": ["type"]}},
        "text": {"type": "object", "properties": {"format": {"type": "object", "required": ["type"]}}},
        "reasoning": {"type": "object", "properties": {"effort": _STRING_OR_NULL}},
        "max_output_tokens": _POSITIVE,
        "metadata": {"type": "object", "additionalProperties": {"type": "string"}},
        "temperature": _TEMPERATURE,
        "top_p": _TOP_P,
    },
}

_OBJECT_WITH = {
    "chat": ["id", "object", "choices"],
    "text": ["id", "object", "choices"],
    "embed": ["object", "data"],
    "messages": ["id", "type", "role", "content"],
    "responses": ["id", "object", "output"],
}


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """`responses` entries for these error statuses of the OpenAI-shaped routes."""
    schema = {JSON: {"schema": OPENAI_ERROR}}
    return {status: {"description": _ERRORS[status], "content": schema} for status in statuses}


def v1_operation(request: dict[str, Any], kind: str, *, streams: bool) -> dict[str, Any]:
    """`openapi_extra` and `responses` for one /v1 POST route (keyword arguments of the decorator)."""
    error = ANTHROPIC_ERROR if kind == "messages" else OPENAI_ERROR
    ok: dict[str, Any] = {JSON: {"schema": {"type": "object", "required": _OBJECT_WITH[kind]}}}
    if streams:
        ok[SSE] = {"schema": {"type": "string", "description": "Server-sent events, when stream is true"}}
    responses: dict[int | str, dict[str, Any]] = {200: {"description": "The answer", "content": ok}}
    for status, description in _ERRORS.items():
        responses[status] = {"description": description, "content": {JSON: {"schema": error}}}
    body = {"required": True, "content": {JSON: {"schema": request}}}
    return {"openapi_extra": {"requestBody": body}, "responses": responses}


ADMIN_ERRORS: dict[int | str, dict[str, Any]] = {
    status: {"description": description, "content": {JSON: {"schema": OPENAI_ERROR}}}
    for status, description in {
        400: "Malformed request: a missing, mistyped or out-of-range field",
        401: "Missing or invalid master key",
        403: "The admin API is disabled (no master key configured)",
        404: "No such team or key",
        409: "Conflict (a team of that name exists)",
        503: "The database is unreachable (retry-after says when to retry)",
    }.items()
}


def _without_422(doc: dict[str, Any]) -> dict[str, Any]:
    for path in doc.get("paths", {}).values():
        for operation in path.values():
            responses = operation.get("responses", {})
            if responses.pop("422", None) is not None and "400" not in responses:
                responses["400"] = {
                    "description": "Malformed request",
                    "content": {JSON: {"schema": OPENAI_ERROR}},
                }
    schemas = doc.get("components", {}).get("schemas", {})
    for name in ("HTTPValidationError", "ValidationError"):
        schemas.pop(name, None)
    return doc


def install_openapi(app: FastAPI) -> None:
    """app.openapi() returns the document with 400 wherever FastAPI would say 422 (built once, cached)."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            doc = get_openapi(
                title=app.title, version=app.version, openapi_version=app.openapi_version, routes=app.routes
            )
            app.openapi_schema = _without_422(doc)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
