"""Feature extraction: pure, deterministic, and reading the signals it claims to."""

from __future__ import annotations

import numpy as np

from routing.features import DENSE_NAMES, HASH_SIZE, TOKEN_HASH_SIZE, extract, hash_tokens, hash_words
from routing.tokens import count_tokens


def _body(text: str, **extra: object) -> dict:
    return {"messages": [{"role": "user", "content": text}], **extra}


def test_dense_vector_matches_names_and_is_deterministic() -> None:
    a = extract(_body("What is the capital of France?"))
    b = extract(_body("What is the capital of France?"))
    assert a.dense.shape == (len(DENSE_NAMES),)
    assert np.array_equal(a.dense, b.dense)
    assert np.array_equal(a.hashed, b.hashed)
    assert a.get("bias") == 1.0


def test_token_counts_cover_system_and_turns() -> None:
    short = extract(_body("hi"))
    body = {
        "messages": [
            {"role": "system", "content": "You are terse."},
            {"role": "user", "content": "first question about databases"},
            {"role": "assistant", "content": "an answer"},
            {"role": "user", "content": [{"type": "text", "text": "and a follow-up"}, {"type": "image_url"}]},
        ]
    }
    long = extract(body)
    assert long.prompt_tokens > short.prompt_tokens
    assert long.get("has_system") == 1.0 and short.get("has_system") == 0.0
    assert long.get("assistant_turns") > 0
    assert long.get("user_turns") > short.get("user_turns")


def test_code_math_script_and_constraint_signals() -> None:
    code = extract(_body("```python\ndef f(x):\n    return {x: x == 1}\n```\nFix this function."))
    prose = extract(_body("Tell me a short story about a cat."))
    assert code.get("code_fence") == 1.0 and code.get("code_density") > prose.get("code_density")
    math = extract(_body("Solve the equation 3x^2 + 2x = 17 and compute \\frac{1}{2} of the result."))
    assert math.get("math_density") > prose.get("math_density") and math.get("latex") > 0
    cjk = extract(_body("运行中变压器温度最高的部分是"))
    assert cjk.get("cjk_ratio") > 0.5 and cjk.get("non_ascii_ratio") > 0.5
    strict = extract(_body("Answer in exactly three bullet points, at most 20 words, and explain why."))
    assert strict.get("constraints") > prose.get("constraints")
    assert strict.get("reasoning_words") > prose.get("reasoning_words")


def test_request_options_max_tokens_tools_json() -> None:
    plain = extract(_body("hello"))
    rich = extract(
        _body("hello", max_tokens=256, tools=[{"type": "function"}], response_format={"type": "json_object"})
    )
    assert plain.max_tokens is None and rich.max_tokens == 256
    assert rich.has_tools and not plain.has_tools
    assert rich.get("tools") > 0 and rich.get("json_output") == 1.0 and rich.get("log_max_tokens") > 0


def test_legacy_prompt_and_empty_bodies() -> None:
    assert extract({"prompt": "Complete this sentence"}).prompt_tokens > 0
    empty = extract({"messages": []})
    assert empty.prompt_tokens == 0 and empty.hashed.size == 0


def test_hashing_is_normalised_and_in_range() -> None:
    buckets, values = hash_tokens(np.array([1, 2, 3, 2, 1, 99999], dtype=np.int64))
    assert buckets.min() >= 0 and buckets.max() < HASH_SIZE
    assert np.isclose(float(values @ values), 1.0)


def test_word_bag_is_case_blind_normalised_and_after_the_token_bag() -> None:
    buckets, values = hash_words("Prove the theorem, then PROVE the lemma.")
    assert np.array_equal(buckets, hash_words("prove the theorem then prove the lemma")[0])
    assert buckets.min() >= TOKEN_HASH_SIZE and buckets.max() < HASH_SIZE
    assert np.isclose(float(values @ values), 1.0)
    # 5 distinct words + 6 bigrams ("a" and "," are not words); "prove"/"the" repeat
    assert buckets.size <= 11 and hash_words("a , .")[0].size == 0
    both = extract(_body("Prove the theorem"))
    assert (both.hashed < TOKEN_HASH_SIZE).any() and (both.hashed >= TOKEN_HASH_SIZE).any()


def test_very_long_prompts_are_counted_on_a_window() -> None:
    text = "The quick brown fox jumps over the lazy dog near 42 riverbanks. " * 4000  # ~260k chars
    features = extract(_body(text))
    exact = count_tokens(text)
    assert abs(features.prompt_tokens - exact) / exact < 0.05
    assert features.get("log_last_user_tokens") > 10


def test_texts_tokenised_whole_are_noted_for_the_caller() -> None:
    system, first, last = "You are terse.", "first question about databases", "and now the second one"
    body = {
        "messages": [
            {"role": "system", "content": system},
            {"role": "user", "content": first},
            {"role": "assistant", "content": "an answer"},
            {"role": "user", "content": last},
        ]
    }
    assert extract(body).token_counts == {t: count_tokens(t) for t in (system, first, last)}


def test_a_windowed_count_is_not_noted_as_exact() -> None:
    text = "The quick brown fox jumps over the lazy dog near 42 riverbanks. " * 4000
    assert text not in extract(_body(text)).token_counts
