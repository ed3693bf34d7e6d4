"""Prompt token counts when the upstream reports none, and reuse of the router's counts."""

from __future__ import annotations

from gateway.usage import prompt_tokens
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
