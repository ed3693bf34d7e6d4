"""The bundled model is loaded once per session; engines with other budgets share its checkpoint."""

from __future__ import annotations

import pytest

from local_backend.config import EngineConfig
from local_backend.engine import LLMEngine
from local_backend.weights import Checkpoint, load_checkpoint

QUESTIONS = [
    "What is the capital of France?",
    "Write a haiku about the sea.",
    "What is 2+2?",
    "Name three colors.",
]


@pytest.fixture(scope="session")
def checkpoint() -> Checkpoint:
    return load_checkpoint("smollm2")


@pytest.fixture(scope="session")
def engine(checkpoint: Checkpoint) -> LLMEngine:
    """fp32, the exact mode: a batch and one row give the same tokens, and logits match transformers.
    One thread: the suite shares small machines, where spin-waits collapse under contention."""
    return LLMEngine(checkpoint, EngineConfig(dtype="float32", kv_cache_bytes=64 * 1024**2, num_threads=1))


@pytest.fixture(scope="session")
def default_engine(checkpoint: Checkpoint) -> LLMEngine:
    """The engine as shipped: bf16 weights where the C kernels build."""
    return LLMEngine(checkpoint, EngineConfig(kv_cache_bytes=16 * 1024**2, num_threads=1))


@pytest.fixture(scope="session")
def chat_prompts(engine: LLMEngine) -> list[list[int]]:
    return [engine.tokenizer.encode_chat([{"role": "user", "content": q}]) for q in QUESTIONS]
