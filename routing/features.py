"""Request features for the router: pure functions of an OpenAI chat body, no I/O.

`extract(body)` returns a `Features`: a small dense vector of named, explainable signals (token
counts, turns, system prompt, code, math, script, constraints, output limits, tools) plus two hashed
bags: tiktoken token ids and id bigrams (ids come for free from the count we need anyway, and their
BPE rank doubles as a word-rarity signal), and lower-cased word unigrams and bigrams hashed with
CRC-32 (deterministic across processes, unlike `hash()`; whole words and word pairs carry topic that
sub-word pieces split up). Each bag is L2-normalised on its own. Everything here runs on every routed
request, so it stays well under a millisecond for a 1,000-token prompt.
"""

from __future__ import annotations

import math
import re
import zlib
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from routing.tokens import encoding

TOKEN_HASH_SIZE = 1 << 14
WORD_HASH_SIZE = 1 << 18
# Bucket ids: the token bag in [0, TOKEN_HASH_SIZE), the word bag after it.
HASH_SIZE = TOKEN_HASH_SIZE + WORD_HASH_SIZE
# The hashed bag only looks at the last user turn's tail and the system prompt's head: long pasted
# context adds little signal and would make the cost linear in conversation length.
MAX_HASHED_TOKENS = 1536
# Past this many characters a text is tokenised on a window and its count extrapolated: an exact
# count of a 100k-token paste costs tens of ms, and routing needs only its magnitude.
MAX_EXACT_CHARS = 24_000
_WINDOW_CHARS = 12_000
_BIGRAM_MULT = 1_000_003
# The word bag reads the same spans as the token bag, by characters: the last user turn's tail and
# the system prompt's head.
MAX_HASHED_CHARS = 6_000
_WORD = re.compile(r"\w\w+")

DENSE_NAMES: tuple[str, ...] = (
    "log_prompt_tokens",
    "log_last_user_tokens",
    "log_system_tokens",
    "has_system",
    "user_turns",
    "assistant_turns",
    "code_fence",
    "code_density",
    "math_density",
    "latex",
    "digit_ratio",
    "non_ascii_ratio",
    "cjk_ratio",
    "question_marks",
    "choices",
    "constraints",
    "reasoning_words",
    "list_items",
    "lines_log",
    "mean_word_len",
    "token_rarity",
    "chars_per_token",
    "log_max_tokens",
    "tools",
    "json_output",
    "bias",
)


# Word lists are matched against a lower-cased, punctuation-stripped split of the text: set lookups
# are ~10x faster than one big alternation regex, and the routing budget is a couple of ms.
def _wordset(words: str) -> frozenset[str]:
    return frozenset(words.split())


_CODE_WORDS = _wordset(
    "def class return import function const var let public static void int struct lambda elif println "
    "printf select from where async await fn impl func package namespace"
)
_CODE_SYMBOLS = ("{", "}", ";", "=>", "->", "==", "!=", "++", "()")
_MATH_WORDS = _wordset(
    "solve equation integral derivative prove probability sum matrix theorem compute calculate "
    "polynomial remainder prime factor"
)
_MATH_SYMBOLS = tuple("=+*/^<>%")
_CONSTRAINT_WORDS = _wordset(
    "must exactly only without format json words sentences bullet paragraph paragraphs include "
    "ensure strictly"
)
_CONSTRAINT_PHRASES = ("at least", "at most", "no more than", "do not", "don't")
_REASONING_WORDS = _wordset(
    "why explain reason analyze analyse compare evaluate derive justify prove design optimize optimise "
    "tradeoff tradeoffs implication implications critique"
)
_REASONING_PHRASES = ("step by step", "trade-off")
_PUNCT_TO_SPACE = str.maketrans({c: " " for c in "!\"#$%&'()*+,-./:;<=>?@[\\]^`{|}~\n\t\r"})
_LATEX = re.compile(r"\\(?:frac|sqrt|sum|int|cdot|times|alpha|beta|pi|theta|le|ge|left|right)|\$[^$]+\$")
_CJK = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af]")
_CHOICES = re.compile(r"(?m)^\s*\(?[A-Ha-h][.)]\s")
_LIST_ITEM = re.compile(r"(?m)^\s*(?:\d+[.)]|[-*•])\s")
_DIGITS = tuple("0123456789")


@dataclass(frozen=True, slots=True)
class Features:
    """One request's features: `dense` is aligned with DENSE_NAMES; `hashed` are bucket ids in
    [0, HASH_SIZE) with `hashed_values` their weights (each bag already L2-normalised)."""

    dense: np.ndarray
    hashed: np.ndarray
    hashed_values: np.ndarray
    prompt_tokens: int
    max_tokens: int | None
    has_tools: bool
    # text -> o200k count of each text tokenised whole, for a caller that counts the prompt again
    # (usage, rate limits) without tokenising it twice.
    token_counts: dict[str, int]

    def get(self, name: str) -> float:
        return float(self.dense[DENSE_NAMES.index(name)])


def content_text(content: Any) -> str:
    """Text of an OpenAI message content: a string or a list of parts (images are ignored)."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(
            str(part.get("text", "")) for part in content if isinstance(part, Mapping) and "text" in part
        )
    return ""


def _split_messages(messages: Iterable[Any]) -> tuple[str, list[str], int]:
    system: list[str] = []
    users: list[str] = []
    assistants = 0
    for message in messages:
        if not isinstance(message, Mapping):
            continue
        role = message.get("role")
        text = content_text(message.get("content"))
        if role in ("system", "developer"):
            system.append(text)
        elif role == "user":
            users.append(text)
        elif role == "assistant":
            assistants += 1
    return "\n".join(system), users, assistants


def _hits(counts: Counter[str], vocabulary: frozenset[str]) -> int:
    return sum(counts[w] for w in vocabulary if w in counts)


def _ratio(count: int, total: int) -> float:
    return count / total if total else 0.0


def _bag(codes: np.ndarray, size: int, offset: int) -> tuple[np.ndarray, np.ndarray]:
    """Buckets (shifted by `offset`) and L2-normalised log-count weights of the codes' unigrams and
    bigrams hashed into `size` buckets."""
    if codes.size == 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32)
    bigrams = (codes[:-1] * _BIGRAM_MULT + codes[1:] + size // 2) % size
    buckets, counts = np.unique(np.concatenate([codes % size, bigrams]), return_counts=True)
    values = np.log1p(counts).astype(np.float32)
    values /= np.float32(np.sqrt(float(values @ values)))
    return buckets + offset, values


def hash_tokens(ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Bucket ids and L2-normalised log-count weights of token unigrams and bigrams."""
    return _bag(ids.astype(np.int64), TOKEN_HASH_SIZE, 0)


def hash_words(text: str) -> tuple[np.ndarray, np.ndarray]:
    """Bucket ids (after the token bag's) and L2-normalised log-count weights of the lower-cased
    words (two or more word characters) and word bigrams of `text`."""
    words = _WORD.findall(text.lower())
    crc = {w: zlib.crc32(w.encode()) for w in set(words)}
    codes = np.array(list(map(crc.__getitem__, words)), dtype=np.int64)
    return _bag(codes, WORD_HASH_SIZE, TOKEN_HASH_SIZE)


def _encode(text: str, counts: dict[str, int], tail: bool = True) -> tuple[list[int], int]:
    """Token ids of the text (or of a window at its tail / head when it is long) and its token count
    (exact, or extrapolated from the window). Exact counts are noted in `counts`."""
    if len(text) <= MAX_EXACT_CHARS:
        ids = encoding().encode_ordinary(text)
        if text:
            counts[text] = len(ids)
        return ids, len(ids)
    window = text[-_WINDOW_CHARS:] if tail else text[:_WINDOW_CHARS]
    ids = encoding().encode_ordinary(window)
    return ids, round(len(ids) * len(text) / len(window))


def _max_tokens(body: Mapping[str, Any]) -> int | None:
    for key in ("max_completion_tokens", "max_tokens"):
        value = body.get(key)
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return value
    return None


def extract(body: Mapping[str, Any]) -> Features:
    """Features of an OpenAI chat-completions body (`messages`, optional `max_tokens`, `tools`,
    `response_format`). A body with `prompt` instead of messages (legacy completions) works too."""
    messages = body.get("messages")
    if isinstance(messages, list):
        system, users, assistants = _split_messages(messages)
    else:
        system, users, assistants = "", [content_text(body.get("prompt"))], 0
    last_user = users[-1] if users else ""
    counts: dict[str, int] = {}
    last_ids, last_count = _encode(last_user, counts)
    system_ids, system_count = _encode(system, counts, tail=False)
    earlier_tokens = sum(_encode(u, counts)[1] for u in users[:-1])
    prompt_tokens = last_count + system_count + earlier_tokens + 4 * (len(users) + assistants)

    hashed_ids = last_ids[-MAX_HASHED_TOKENS:] + system_ids[: MAX_HASHED_TOKENS // 4]
    token_buckets, token_values = hash_tokens(np.asarray(hashed_ids, dtype=np.int64))
    word_buckets, word_values = hash_words(
        last_user[-MAX_HASHED_CHARS:] + "\n" + system[: MAX_HASHED_CHARS // 4]
    )
    buckets = np.concatenate([token_buckets, word_buckets])
    values = np.concatenate([token_values, word_values])

    text = last_user if len(last_user) <= MAX_EXACT_CHARS else last_user[-_WINDOW_CHARS:]
    n_chars = max(len(text), 1)
    lower = text.lower()
    words = lower.translate(_PUNCT_TO_SPACE).split()
    n_words = max(len(words), 1)
    word_counts = Counter(words)
    code_hits = _hits(word_counts, _CODE_WORDS) + sum(text.count(sym) for sym in _CODE_SYMBOLS)
    math_hits = _hits(word_counts, _MATH_WORDS) + sum(text.count(sym) for sym in _MATH_SYMBOLS)
    constraint_hits = _hits(word_counts, _CONSTRAINT_WORDS) + sum(lower.count(p) for p in _CONSTRAINT_PHRASES)
    reasoning_hits = _hits(word_counts, _REASONING_WORDS) + sum(lower.count(p) for p in _REASONING_PHRASES)
    non_ascii = len(text) - len(text.encode("ascii", "ignore"))
    max_tokens = _max_tokens(body)
    tools = body.get("tools") or body.get("functions") or []
    response_format = body.get("response_format")
    json_output = isinstance(response_format, Mapping) and response_format.get("type") in (
        "json_object",
        "json_schema",
    )
    rarity = float(np.log1p(np.asarray(last_ids, dtype=np.float64)).mean()) / 12.0 if last_ids else 0.0
    dense = np.array(
        [
            math.log1p(prompt_tokens),
            math.log1p(last_count),
            math.log1p(system_count),
            1.0 if system else 0.0,
            math.log1p(len(users)),
            math.log1p(assistants),
            1.0 if "```" in text else 0.0,
            min(_ratio(code_hits, n_words), 1.0),
            min(_ratio(math_hits, n_words), 1.0),
            math.log1p(len(_LATEX.findall(text))),
            _ratio(sum(text.count(d) for d in _DIGITS), n_chars),
            _ratio(non_ascii, n_chars),
            _ratio(len(_CJK.findall(text)) if non_ascii else 0, n_chars),
            math.log1p(text.count("?")),
            math.log1p(len(_CHOICES.findall(text))),
            math.log1p(constraint_hits),
            math.log1p(reasoning_hits),
            math.log1p(len(_LIST_ITEM.findall(text))),
            math.log1p(text.count("\n")),
            min(sum(map(len, words)) / n_words, 20.0) / 10.0,
            rarity,
            min(_ratio(len(text), len(last_ids)), 10.0) / 5.0,
            math.log1p(max_tokens) if max_tokens else 0.0,
            math.log1p(len(tools)) if isinstance(tools, list) else 0.0,
            1.0 if json_output else 0.0,
            1.0,
        ],
        dtype=np.float32,
    )
    return Features(
        dense=dense,
        hashed=buckets,
        hashed_values=values,
        prompt_tokens=prompt_tokens,
        max_tokens=max_tokens,
        has_tools=bool(tools),
        token_counts=counts,
    )
