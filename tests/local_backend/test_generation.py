"""Where a model's sampling defaults come from, and how a request's own fields override them."""

from __future__ import annotations

import logging

import pytest

from local_backend.generation import (
    CHAT_MAX_TOKENS,
    KNOWN_MODEL_DEFAULTS,
    TEXT_MAX_TOKENS,
    GenerationDefaults,
    generation_defaults,
)
from local_backend.openai_api import RequestError, sampling_params
from local_backend.weights import BUNDLED_FILE, Checkpoint

CHAT = {"messages": [{"role": "user", "content": "hi"}]}


def test_the_bundled_file_answers_greedily_with_a_short_cap(checkpoint: Checkpoint) -> None:
    d = generation_defaults(checkpoint.tokenizer_source)
    assert (d.temperature, d.max_tokens) == (0.0, 256)
    assert d.source == f"Switchyard's defaults for {BUNDLED_FILE}"
    assert KNOWN_MODEL_DEFAULTS[BUNDLED_FILE] == {"temperature": 0.0, "max_tokens": 256}


def test_gguf_sampling_keys_win_over_known_file_defaults() -> None:
    meta = {
        "general.sampling.temp": 0.6,
        "general.sampling.top_p": 0.95,
        "general.sampling.top_k": 20,
        "general.sampling.min_p": 0.05,
        "general.sampling.penalty_repeat": 1.1,
        "general.sampling.mirostat": 0,  # no such knob here: ignored
    }
    d = generation_defaults({"gguf": meta, "file": BUNDLED_FILE})
    assert (d.temperature, d.top_p, d.top_k, d.min_p, d.repetition_penalty) == (0.6, 0.95, 20, 0.05, 1.1)
    assert d.max_tokens == CHAT_MAX_TOKENS and d.source == "GGUF general.sampling.*"


def test_a_gguf_that_says_nothing_gets_the_engine_defaults() -> None:
    assert generation_defaults({"gguf": {}, "file": "other.gguf"}) == GenerationDefaults()
    assert GenerationDefaults().max_tokens == CHAT_MAX_TOKENS == 512


def test_generation_config_json() -> None:
    config = {"do_sample": True, "temperature": 0.7, "top_p": 0.8, "top_k": 20, "max_new_tokens": 300}
    d = generation_defaults({"generation_config": config})
    assert (d.temperature, d.top_p, d.top_k, d.max_tokens) == (0.7, 0.8, 20, 300)
    assert d.source == "generation_config.json"
    greedy = generation_defaults({"generation_config": {"do_sample": False, "temperature": 0.6}})
    assert greedy.temperature == 0.0
    assert generation_defaults({"generation_config": {"eos_token_id": 2}}) == GenerationDefaults()


def test_out_of_range_metadata_is_skipped_and_logged(caplog: pytest.LogCaptureFixture) -> None:
    meta = {"general.sampling.temp": 7.0, "general.sampling.top_k": 2.5, "general.sampling.top_p": 0.5}
    with caplog.at_level(logging.WARNING, logger="local_backend"):
        d = generation_defaults({"gguf": meta})
    assert (d.temperature, d.top_k, d.top_p) == (1.0, 0, 0.5)
    assert "general.sampling.temp=7.0" in caplog.text and "general.sampling.top_k=2.5" in caplog.text


def test_request_fields_win_and_the_rest_are_the_models() -> None:
    defaults = GenerationDefaults(temperature=0.2, top_p=0.9, top_k=40, max_tokens=256)
    left_out = sampling_params(CHAT, False, defaults)
    assert (left_out.temperature, left_out.top_p, left_out.top_k, left_out.max_tokens) == (0.2, 0.9, 40, 256)
    given = sampling_params({**CHAT, "temperature": 1.0, "top_k": 0, "max_tokens": 9}, False, defaults)
    assert (given.temperature, given.top_p, given.top_k, given.max_tokens) == (1.0, 0.9, 0, 9)
    assert sampling_params({"prompt": "x"}, True, defaults).max_tokens == TEXT_MAX_TOKENS
    with pytest.raises(RequestError, match="temperature"):
        sampling_params({**CHAT, "temperature": 3}, False, defaults)
