"""The sampling a model answers with when the request does not say: its authors' recommendation.

Looked up once per load, from the first source that has any:
  1. a GGUF's llama.cpp `general.sampling.*` keys (temp, top_p, top_k, min_p, penalty_repeat);
  2. a safetensors folder's `generation_config.json` (temperature, top_p, top_k, min_p,
     repetition_penalty, max_new_tokens; `do_sample: false` means greedy);
  3. KNOWN_MODEL_DEFAULTS, for a known file whose metadata says nothing (the bundled SmolLM2).
Fields a source leaves out keep the engine's own defaults below. A value out of range is a metadata
bug, not a reason to refuse the model: it is logged and skipped.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from typing import Any

from local_backend.weights import BUNDLED_FILE

log = logging.getLogger("local_backend")

# What a chat request may generate when it sets no max_tokens. Small models ramble rather than stop
# (SmolLM2-135M at temperature 1 filled 1,024 tokens with noise, 58 s on CPU); 512 tokens still hold
# a long answer and bound the worst case to ~20-30 s at this engine's CPU decode speed.
CHAT_MAX_TOKENS = 512
# OpenAI's documented default for legacy /v1/completions.
TEXT_MAX_TOKENS = 16


@dataclass(frozen=True, slots=True)
class GenerationDefaults:
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0  # 0: off
    min_p: float = 0.0
    repetition_penalty: float = 1.0
    max_tokens: int = CHAT_MAX_TOKENS  # chat only; legacy completions keep TEXT_MAX_TOKENS
    source: str = "engine defaults"  # where the values came from, for the load log


# Defaults for known files whose metadata says nothing, keyed by file name: the one place to change
# what the bundled model answers with. SmolLM2-135M-Instruct's own generation_config.json holds only
# token ids, so transformers decodes it greedily; its card's examples sample at 0.2 / top_p 0.9,
# but its Q4_1 file is a coin toss at the first token of "What is the capital of France?" ("The" 0.152,
# "L" 0.140, "La" 0.104 at temperature 1): at 0.2/0.9, 7 of 24 answers here were French rambling
# ("L'Étoile, la Cité, ..."), so five right in a row about one time in four. Greedy answers "The
# capital of France is Paris." every time, so greedy is the default; a request's temperature samples.
# Past ~256 tokens the 135M model rambles rather than says more.
KNOWN_MODEL_DEFAULTS = {
    BUNDLED_FILE: {"temperature": 0.0, "max_tokens": 256},
}

# (field, low, high) for every value a source may set.
_RANGES = {
    "temperature": (0.0, 2.0),
    "top_p": (0.0, 1.0),
    "top_k": (0, 1 << 30),
    "min_p": (0.0, 1.0),
    "repetition_penalty": (0.01, 10.0),
    "max_tokens": (1, 1 << 30),
}
_GGUF_KEYS = {
    "general.sampling.temp": "temperature",
    "general.sampling.top_p": "top_p",
    "general.sampling.top_k": "top_k",
    "general.sampling.min_p": "min_p",
    "general.sampling.penalty_repeat": "repetition_penalty",
}
_HF_KEYS = {
    "temperature": "temperature",
    "top_p": "top_p",
    "top_k": "top_k",
    "min_p": "min_p",
    "repetition_penalty": "repetition_penalty",
    "max_new_tokens": "max_tokens",
}


def generation_defaults(source: dict[str, Any]) -> GenerationDefaults:
    """The defaults for a checkpoint, from its `tokenizer_source` (see module docstring)."""
    if "gguf" in source:
        found = _pick(source["gguf"], _GGUF_KEYS, "GGUF general.sampling")
        if found:
            return _build(found, "GGUF general.sampling.*")
        known = KNOWN_MODEL_DEFAULTS.get(source.get("file", ""))
        if known:
            return _build(known, f"Switchyard's defaults for {source['file']}")
        return GenerationDefaults()
    config = source.get("generation_config") or {}
    found = _pick(config, _HF_KEYS, "generation_config.json")
    if config.get("do_sample") is False:
        found["temperature"] = 0.0
    return _build(found, "generation_config.json") if found else GenerationDefaults()


def _pick(values: dict[str, Any], names: dict[str, str], where: str) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for key, name in names.items():
        value = values.get(key)
        if value is None:
            continue
        low, high = _RANGES[name]
        integral = isinstance(low, int)
        number = isinstance(value, int | float) and not isinstance(value, bool) and low <= value <= high
        if not number or (integral and value != int(value)):
            log.warning("ignoring %s %s=%r: not a number in [%s, %s]", where, key, value, low, high)
            continue
        found[name] = int(value) if integral else float(value)
    return found


def _build(values: dict[str, Any], source: str) -> GenerationDefaults:
    return dataclasses.replace(GenerationDefaults(), **values, source=source)
