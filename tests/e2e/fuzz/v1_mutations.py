"""Random, reproducible mutations of valid /v1 request bodies: wrong types at every field, nested garbage,
huge numbers, NULs and odd unicode. `bodies(seed, count)` yields (path, body) pairs.

Each body is a valid seed (chat, legacy completions, embeddings, Anthropic messages; every model of
FUZZ_MODELS; streamed or not) with one to three mutations at random places in its JSON tree, so most
of the request stays valid and the fault reaches deep into validation and translation. The Responses
API's seeds (`responses_seeds`) are a pool of their own.
"""

from __future__ import annotations

import copy
import random
from collections.abc import Iterator
from typing import Any

from tests.e2e.fuzz.fuzz_harness import CHAT_MODELS

_IMAGE = "data:image/png;base64,iVBORw0KGgo="
_PNG_SOURCE = {"type": "base64", "media_type": "image/png", "data": "iV"}
_TOOL_SCHEMA = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}


def _chat_seeds(model: str) -> list[dict[str, Any]]:
    tool = {"type": "function", "function": {"name": "get_weather", "parameters": _TOOL_SCHEMA}}
    call = {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": "{}"}}
    return [
        {"model": model, "messages": [{"role": "user", "content": "Hi"}]},
        {
            "model": model,
            "messages": [
                {"role": "system", "content": "Be brief."},
                {"role": "user", "content": [{"type": "text", "text": "What is this?"}]},
                {"role": "user", "content": [{"type": "image_url", "image_url": {"url": _IMAGE}}]},
            ],
            "max_tokens": 20,
            "temperature": 0.5,
            "top_p": 1,
            "stop": ["\n\n"],
            "user": "fuzz",
            "stream": True,
            "stream_options": {"include_usage": True},
        },
        {
            "model": model,
            "messages": [
                {"role": "user", "content": "Weather in Paris?"},
                {"role": "assistant", "content": None, "tool_calls": [call]},
                {"role": "tool", "tool_call_id": "call_1", "content": "sunny"},
            ],
            "tools": [tool],
            "tool_choice": {"type": "function", "function": {"name": "get_weather"}},
            "parallel_tool_calls": False,
            "response_format": {"type": "json_schema", "json_schema": {"name": "w", "schema": _TOOL_SCHEMA}},
        },
    ]


def _messages_seeds(model: str) -> list[dict[str, Any]]:
    tool = {"name": "get_weather", "description": "Weather.", "input_schema": _TOOL_SCHEMA}
    return [
        {"model": model, "max_tokens": 20, "messages": [{"role": "user", "content": "Hi"}]},
        {
            "model": model,
            "max_tokens": 20,
            "system": [{"type": "text", "text": "Be brief."}],
            "messages": [
                {"role": "user", "content": [{"type": "text", "text": "Weather in Paris?"}]},
                {
                    "role": "assistant",
                    "content": [{"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {}}],
                },
                {
                    "role": "user",
                    "content": [
                        {"type": "tool_result", "tool_use_id": "toolu_1", "content": "sunny"},
                        {
                            "type": "image",
                            "source": {"type": "base64", "media_type": "image/png", "data": "iV"},
                        },
                    ],
                },
            ],
            "tools": [tool],
            "tool_choice": {"type": "tool", "name": "get_weather", "disable_parallel_tool_use": True},
            "metadata": {"user_id": "fuzz"},
            "stop_sequences": ["END"],
            "temperature": 0.2,
            "stream": True,
        },
    ]


def _responses_seeds(model: str) -> list[dict[str, Any]]:
    tool = {"type": "function", "name": "get_weather", "parameters": _TOOL_SCHEMA}
    schema = {"type": "json_schema", "name": "v", "schema": {"type": "object"}, "strict": True}
    return [
        {"model": model, "input": "Hi", "instructions": "Be brief.", "max_output_tokens": 20},
        {
            "model": model,
            "input": [
                {"role": "developer", "content": "Terse."},
                {"role": "user", "content": [{"type": "input_text", "text": "What is this?"}]},
                {
                    "type": "message",
                    "role": "user",
                    "content": [{"type": "input_image", "image_url": _IMAGE}],
                },
                {"type": "function_call", "call_id": "call_1", "name": "get_weather", "arguments": "{}"},
                {"type": "function_call_output", "call_id": "call_1", "output": "sunny"},
            ],
            "tools": [tool],
            "tool_choice": {"type": "function", "name": "get_weather"},
            "text": {"format": schema},
            "reasoning": {"effort": "low"},
            "metadata": {"k": "v"},
            "store": False,
            "stream": True,
        },
    ]


def responses_seeds() -> list[tuple[str, dict[str, Any]]]:
    """The Responses door's seeds: a pool of their own, so the other doors' sequences stay as they were."""
    return [("/v1/responses", b) for model in (*CHAT_MODELS, "gpt-native") for b in _responses_seeds(model)]


def seeds() -> list[tuple[str, dict[str, Any]]]:
    out: list[tuple[str, dict[str, Any]]] = []
    for model in (*CHAT_MODELS, "auto"):
        out += [("/v1/chat/completions", b) for b in _chat_seeds(model)]
        out += [("/v1/messages", b) for b in _messages_seeds(model)]
    out += [
        ("/v1/completions", {"model": "gpt-3.5-turbo-instruct", "prompt": "Say hi", "max_tokens": 5}),
        ("/v1/completions", {"model": "gpt-3.5-turbo-instruct", "prompt": ["a", "b"], "stream": True}),
        ("/v1/embeddings", {"model": "text-embedding-3-small", "input": "hello"}),
        ("/v1/embeddings", {"model": "text-embedding-3-small", "input": ["a", "b"], "dimensions": 8}),
        ("/v1/embeddings", {"model": "gemini", "input": [[1, 2, 3]], "encoding_format": "float"}),
    ]
    return out


def _garbage(rng: random.Random, depth: int = 0) -> Any:
    simple: list[Any] = [
        None,
        True,
        False,
        0,
        -1,
        1,
        2**31,
        2**63,
        -(2**63),
        2**64 + 1,
        10**30,
        1e308,
        -1e308,
        0.5,
        "",
        "\x00",
        "a\x00b",
        "🦄" * 3,
        "\ud7ff\ufffd\u202e",
        "x" * rng.choice((1, 300, 5000)),
        "user",
        "text",
        "function",
        "tool_result",
        "data:",
        "data:image/png;base64,",
    ]
    if depth >= 3 or rng.random() < 0.6:
        return rng.choice(simple)
    if rng.random() < 0.5:
        return [_garbage(rng, depth + 1) for _ in range(rng.randint(0, 3))]
    keys = ["type", "role", "text", "content", "name", "function", "source", "url", "\x00", ""]
    return {rng.choice(keys): _garbage(rng, depth + 1) for _ in range(rng.randint(0, 3))}


def _paths(node: Any, prefix: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    yield prefix
    if isinstance(node, dict):
        for k, v in node.items():
            yield from _paths(v, (*prefix, k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from _paths(v, (*prefix, i))


def _mutate(rng: random.Random, body: dict[str, Any]) -> None:
    paths = [p for p in _paths(body) if p]
    if not paths:  # earlier mutations deleted every field
        return
    path = rng.choice(paths)
    parent: Any = body
    for step in path[:-1]:
        parent = parent[step]
    last = path[-1]
    roll = rng.random()
    if roll < 0.15 and isinstance(parent, dict):
        del parent[last]
    elif roll < 0.25 and isinstance(parent, dict):
        parent[rng.choice(["extra", "\x00", "role", "type", "content", "n", "tools"])] = _garbage(rng)
    elif roll < 0.35:
        parent[last] = [parent[last]]
    else:
        parent[last] = _garbage(rng)


def bodies(
    seed: int, count: int, pool: list[tuple[str, dict[str, Any]]] | None = None
) -> Iterator[tuple[str, dict[str, Any]]]:
    rng = random.Random(seed)
    pool = pool or seeds()
    for _ in range(count):
        path, body = rng.choice(pool)
        body = copy.deepcopy(body)
        for _ in range(rng.randint(1, 3)):
            _mutate(rng, body)
        yield path, body
