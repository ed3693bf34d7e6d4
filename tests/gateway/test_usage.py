"""Prompt token counts when the upstream reports none, and reuse of the router's counts."""

from __future__ import annotations

from typing import Any

import orjson

from gateway.usage import IMAGE_TOKENS, IMAGE_TOKENS_LOW, prompt_tokens
from routing.features import extract
from routing.tokens import count_tokens

BODY = {
    "messages": [
        {"role": "system", "content": "You are a careful reviewer of contracts."},
        {"role": "user", "content": "Is clause 4 enforceable in Delaware?"},
        {"role": "assistant", "content": "It depends on the notice period."},
        {"role": "user", "content": [{"type": "text", "text": "Thirty days."}]},
    ]
}


def test_router_counts_give_the_same_total() -> None:
    counts = extract(BODY).token_counts
    assert counts  # the router tokenised the system prompt and the string user turn whole
    assert prompt_tokens(BODY, counts) == prompt_tokens(BODY)


def test_known_counts_are_used_instead_of_tokenising_again() -> None:
    system = BODY["messages"][0]["content"]
    planted = {system: count_tokens(system) + 1000}  # a count no tokeniser would give: proves it is read
    assert prompt_tokens(BODY, planted) == prompt_tokens(BODY) + 1000


def test_multi_part_content_is_the_text_the_router_counted() -> None:
    parts = [
        {"type": "text", "text": "First part."},
        {"type": "image_url"},
        {"type": "text", "text": "Second."},
    ]
    body = {"messages": [{"role": "user", "content": parts}]}
    counts = extract(body).token_counts
    assert counts == {"First part.\nSecond.": count_tokens("First part.\nSecond.")}
    planted = {text: n + 1000 for text, n in counts.items()}  # proves the router's entry is found
    assert prompt_tokens(body, planted) == prompt_tokens(body) + 1000


def test_definitions_and_images_are_prompt_tokens_too() -> None:
    tools = [{"type": "function", "function": {"name": "lookup", "parameters": {"type": "object"}}}]
    schema = {"type": "json_schema", "json_schema": {"name": "a", "schema": {"type": "object"}}}
    body = {**BODY, "tools": tools, "response_format": schema}
    definitions = orjson.dumps({"tools": tools, "response_format": schema}).decode()
    assert prompt_tokens(body) == prompt_tokens(BODY) + count_tokens(definitions)
    assert prompt_tokens({**BODY, "functions": tools}) > prompt_tokens(BODY)

    def image(detail: str | None) -> dict[str, Any]:
        url = {"url": "data:image/png;base64,AAAA", **({"detail": detail} if detail else {})}
        return {"type": "image_url", "image_url": url}

    parts = [{"type": "text", "text": "Both?"}, image("low"), image(None), image("high")]
    seen = {"messages": [{"role": "user", "content": parts}]}
    text_only = {"messages": [{"role": "user", "content": parts[:1]}]}
    assert prompt_tokens(seen) == prompt_tokens(text_only) + IMAGE_TOKENS_LOW + 2 * IMAGE_TOKENS
