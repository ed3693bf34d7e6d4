"""Where the engine's memory goes: the weights' arena, a KV cache whose pages are committed when written,
and what a default engine holds and logs as it loads."""

from __future__ import annotations

import logging
import sys

import pytest
import torch

from local_backend.config import EngineConfig
from local_backend.engine import LLMEngine
from local_backend.memory import Arena, lazy_zeros, rss_mb
from local_backend.sequence import SamplingParams

linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")


def test_arena_tensors_are_aligned_in_order_and_bounded() -> None:
    shapes = [((3, 5), torch.float32), ((7,), torch.bfloat16), ((2, 16), torch.float32)]
    arena = Arena(Arena.size(shapes))
    taken = [arena.take(s, d) for s, d in shapes]
    starts = [t.data_ptr() for t in taken]
    assert starts == sorted(starts) and all(p % 64 == 0 for p in starts)
    assert starts[1] - starts[0] == 64  # 60 bytes rounded up
    assert [(tuple(t.shape), t.dtype) for t in taken] == shapes
    with pytest.raises(ValueError, match="full"):
        arena.take((1,), torch.float32)


@linux_only
def test_lazy_zeros_take_memory_only_where_written() -> None:
    before = rss_mb()
    cache = lazy_zeros((256, 1024, 1024), torch.uint8)  # 268 MB of address space
    assert cache.shape == (256, 1024, 1024) and rss_mb() - before < 16
    assert int(cache[::64, ::256, ::256].sum()) == 0
    cache[:32].fill_(1)  # 33 MB written
    assert 30 < rss_mb() - before < 60


def test_default_engine_loads_bf16_weights_and_says_so(caplog: pytest.LogCaptureFixture) -> None:
    """The load logs where it is (file, every 10 layers, the totals); with the kernels, SmolLM2's weights
    are 269 MB of bf16 and the KV-cache budget, in bf16, room for max_model_len tokens."""
    with caplog.at_level(logging.INFO, logger="local_backend"):
        engine = LLMEngine("smollm2", EngineConfig(num_threads=1, max_model_len=512))
    lines = [r.getMessage() for r in caplog.records if r.name == "local_backend"]
    assert lines[0].startswith("loading ") and lines[0].endswith("SmolLM2-135M-Instruct.Q4_1.gguf (98 MB)")
    assert [line.split(" in ")[0] for line in lines[1:4]] == [
        f"weights: {n} of 30 layers" for n in (10, 20, 30)
    ]
    runner = engine.runner
    assert runner.num_blocks * runner.block_size == 512
    if runner.model.kernels is None:  # no compiler: fp32 weights, torch's ops
        assert "float32 [in, out]" in lines[-1]
        return
    assert lines[-1].startswith("loaded ") and "weights 269 MB (bf16 panels), kv cache 12 MB" in lines[-1]
    assert 268e6 < runner.model.weight_bytes() < 270e6


@linux_only
def test_an_idle_engine_holds_its_cache_pages_and_no_more(default_engine: LLMEngine) -> None:
    """A long prompt's activations are freed when the step ends; once the engine is idle they go back
    to the system too (malloc keeps freed memory otherwise: ~40 MB more after this prompt, seen)."""
    ids = default_engine.tokenizer.encode(" ".join(["bees"] * 700))[:600]
    before = rss_mb()
    default_engine.generate([ids], SamplingParams(max_tokens=1))
    itemsize = default_engine.runner.kv_caches[0][0].element_size()
    kv_mb = 600 * default_engine.model_config.kv_bytes_per_token(itemsize) / 1e6  # at most
    assert rss_mb() - before < kv_mb + 8
