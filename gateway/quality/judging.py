"""The pairwise judging prompt, and how the judge's two answers make one verdict.

The judge sees the request and two answers labelled A and B and answers with one of `A`, `B` or
`TIE`. It is asked twice with the answers' positions swapped (the cheaper tier's answer first as A,
then as B): a judge that favours a position then votes for each answer once, which reads as a tie,
instead of crediting whichever answer happened to come first. The cheaper answer's score is +1 for a
vote for it, -1 for a vote against, 0 for a tie; the two scores' sum says win (> 0), tie (0) or loss
(< 0). A verdict needs both votes readable.
"""

from __future__ import annotations

from typing import Any, Literal

Vote = Literal["A", "B", "tie"]
Outcome = Literal["win", "tie", "loss"]
OUTCOMES: tuple[Outcome, ...] = ("win", "tie", "loss")

JUDGE_INSTRUCTIONS = """\
You are an impartial judge comparing two AI assistant answers to the same conversation.
Judge which answer better serves the user's last request: correctness first, then completeness,
helpfulness and clarity. Ignore length for its own sake and the order the answers are shown in.
If neither is better, say so.
Reply with exactly one word: A if answer A is better, B if answer B is better, TIE if they are
equally good (or equally bad)."""

JUDGE_TEMPLATE = """\
[Conversation]
{conversation}

[Answer A]
{answer_a}

[Answer B]
{answer_b}

Which answer is better? Reply with exactly one word: A, B or TIE."""


def conversation_text(messages: Any) -> str:
    """A chat request's messages as plain text, one `[role] text` paragraph each (text parts only)."""
    if isinstance(messages, str):
        return messages
    lines = []
    for m in messages if isinstance(messages, list) else []:
        if not isinstance(m, dict):
            continue
        content = m.get("content")
        if isinstance(content, list):
            content = "\n".join(
                p.get("text", "") for p in content if isinstance(p, dict) and p.get("type") == "text"
            )
        lines.append(f"[{m.get('role', 'user')}] {content if isinstance(content, str) else ''}")
    return "\n\n".join(lines)


def judge_messages(messages: Any, answer_a: str, answer_b: str) -> list[dict[str, str]]:
    prompt = JUDGE_TEMPLATE.format(
        conversation=conversation_text(messages), answer_a=answer_a, answer_b=answer_b
    )
    return [{"role": "system", "content": JUDGE_INSTRUCTIONS}, {"role": "user", "content": prompt}]


def read_vote(text: str) -> Vote | None:
    """The judge's answer: its first word, A, B or TIE (any case, punctuation around it ignored)."""
    words = text.strip().split()
    if not words:
        return None
    word = words[0].strip(".,:;!*\"'()[]").upper()
    if word in ("A", "B"):
        return word  # type: ignore[return-value]
    return "tie" if word == "TIE" else None


def combine(cheap_as_a: Vote | None, cheap_as_b: Vote | None) -> Outcome | None:
    """The cheaper answer's verdict from the two position-swapped votes; None unless both were read."""
    if cheap_as_a is None or cheap_as_b is None:
        return None
    score = {"A": 1, "B": -1, "tie": 0}[cheap_as_a] + {"A": -1, "B": 1, "tie": 0}[cheap_as_b]
    return "win" if score > 0 else "loss" if score < 0 else "tie"
