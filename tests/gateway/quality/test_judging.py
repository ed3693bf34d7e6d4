"""The judge's votes, how two position-swapped votes combine, and the Wilson interval."""

from __future__ import annotations

import pytest

from gateway.quality.judging import (
    JUDGE_INSTRUCTIONS,
    combine,
    conversation_text,
    judge_messages,
    read_vote,
)
from gateway.quality.stats import wilson


@pytest.mark.parametrize(
    ("text", "vote"),
    [
        ("A", "A"),
        (" b.", "B"),
        ("TIE", "tie"),
        ("tie - both fine", "tie"),
        ("**A**", "A"),
        ("", None),
        ("Neither", None),
    ],
)
def test_read_vote(text: str, vote: str | None) -> None:
    assert read_vote(text) == vote


@pytest.mark.parametrize(
    ("first", "second", "outcome"),
    [
        ("A", "B", "win"),  # the cheaper answer chosen in both positions
        ("B", "A", "loss"),
        ("A", "A", "tie"),  # a judge that always picks position A
        ("B", "B", "tie"),
        ("tie", "tie", "tie"),
        ("A", "tie", "win"),
        ("tie", "A", "loss"),
        ("A", None, None),
        (None, None, None),
    ],
)
def test_combine_cancels_position_bias(first: str | None, second: str | None, outcome: str | None) -> None:
    assert combine(first, second) == outcome  # type: ignore[arg-type]


def test_the_judging_prompt_shows_the_conversation_and_both_answers() -> None:
    messages = [
        {"role": "system", "content": "Be brief."},
        {
            "role": "user",
            "content": [{"type": "text", "text": "2+2?"}, {"type": "image_url", "image_url": {}}],
        },
    ]
    assert conversation_text(messages) == "[system] Be brief.\n\n[user] 2+2?"
    system, user = judge_messages(messages, "4", "five")
    assert system == {"role": "system", "content": JUDGE_INSTRUCTIONS}
    assert "[Answer A]\n4\n\n[Answer B]\nfive" in user["content"]
    assert "[user] 2+2?" in user["content"]


def test_wilson_interval() -> None:
    assert wilson(0, 0) == (0.0, 1.0)
    low, high = wilson(2, 4)
    assert (round(low, 4), round(high, 4)) == (0.15, 0.85)
    low, high = wilson(10, 10)
    assert high == pytest.approx(1.0) and 0.72 < low < 0.73
