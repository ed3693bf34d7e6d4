"""Our CPU decode kernels against the torch path they replace, and the engine with and without them."""

from __future__ import annotations

import pytest
import torch

from local_backend.attention import AttnMetadata, PrefillSpan
from local_backend.config import EngineConfig, ModelConfig
from local_backend.cpu_kernels import CpuKernels, build_cpu_kernels, in_one_arena
from local_backend.engine import LLMEngine
from local_backend.model import LlamaModel
from local_backend.sequence import SamplingParams
from local_backend.weights import Checkpoint
from tests.local_backend.tiny_model import CFG, LLAMA_CFG, tiny_tensors

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def kernels() -> CpuKernels:
    built = build_cpu_kernels()
    if built is None:
        pytest.skip("no C compiler on this machine")
    return built


def test_gemv_matches_torch(kernels: CpuKernels) -> None:
    g = torch.Generator().manual_seed(0)
    w, x = torch.randn(300, 96, generator=g), torch.randn(1, 96, generator=g)
    torch.testing.assert_close(kernels.gemv(w, x), x @ w.t(), atol=1e-4, rtol=1e-5)


# Blocks of 4. Sequence A: blocks 5, 1, 7, its token at position 10 (slot 30). B: blocks 4, 6, position 5
# (slot 25). C: blocks 2, 3, a 3-token chunk at positions 4-6 that reads its positions 0-3 from the cache.
BATCHES = {
    "one decode, whole layers in C": ([42], [10], [30], [[5, 1, 7]], [11], []),
    "two decodes": ([42, 7], [10, 5], [30, 25], [[5, 1, 7], [4, 6, 0]], [11, 6], []),
    "decodes beside a chunk": (
        [42, 7, 3, 9, 11],
        [10, 5, 4, 5, 6],
        [30, 25, 12, 13, 14],
        [[5, 1, 7], [4, 6, 0]],
        [11, 6],
        [PrefillSpan(2, 5, 4, slots=torch.arange(8, 15))],
    ),
}


def _step(model: LlamaModel, caches: list[tuple[torch.Tensor, torch.Tensor]], batch: str) -> torch.Tensor:
    ids, positions, slots, tables, lens, spans = BATCHES[batch]
    meta = AttnMetadata(
        torch.tensor(slots),
        len(lens),
        block_tables=torch.tensor(tables),
        context_lens=torch.tensor(lens),
        prefills=spans,
    )
    with torch.inference_mode():
        return model.logits(model(torch.tensor(ids), torch.tensor(positions), meta, caches))


@pytest.mark.parametrize("batch", list(BATCHES))
@pytest.mark.parametrize("cfg", [CFG, LLAMA_CFG], ids=["qwen2-like", "llama-like"])
def test_kernels_match_the_torch_path(kernels: CpuKernels, cfg: ModelConfig, batch: str) -> None:
    """Biases or none, GQA or MQA, tied or own lm_head, scattered blocks; logits and every layer's cache."""
    fast = LlamaModel(cfg, tiny_tensors(cfg), torch.float32, CPU, block_size=4, kernels=kernels)
    slow = LlamaModel(cfg, tiny_tensors(cfg), torch.float32, CPU, block_size=4)
    assert len(fast.kernel_layers) == cfg.num_layers and slow.kernels is None
    g = torch.Generator().manual_seed(1)
    shape = (9, 4, cfg.num_kv_heads, cfg.head_dim)
    caches = [
        (torch.randn(shape, generator=g), torch.randn(shape, generator=g)) for _ in range(cfg.num_layers)
    ]
    copies = [(k.clone(), v.clone()) for k, v in caches]
    got, want = _step(fast, caches, batch), _step(slow, copies, batch)
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)
    for (k, v), (k_ref, v_ref) in zip(caches, copies, strict=True):
        torch.testing.assert_close(k, k_ref, atol=1e-6, rtol=1e-6)  # each new token's key and value
        torch.testing.assert_close(v, v_ref, atol=1e-6, rtol=1e-6)


def test_kernels_refuse_what_they_would_read_past(kernels: CpuKernels) -> None:
    with pytest.raises(ValueError):
        kernels.gemv(torch.randn(8, 16), torch.randn(1, 15))
    with pytest.raises(ValueError):
        kernels.gemv(torch.randn(8, 16).double(), torch.randn(1, 16).double())
    model = LlamaModel(CFG, tiny_tensors(), torch.float32, CPU, block_size=4, kernels=kernels)
    weights = dict(model.layers[0])
    weights["wd"] = weights["wd"][:, :-1].contiguous()
    with pytest.raises(ValueError):
        kernels.layer(weights, CFG, model.scale)
    cache = torch.zeros(4, 4, CFG.num_kv_heads, CFG.head_dim)
    cis = torch.ones(CFG.head_dim // 2, dtype=torch.complex64)
    tables, lens = torch.tensor([[1, 2]]), torch.tensor([5])
    with pytest.raises(ValueError):
        kernels.decode_rows(torch.tensor([[1, 4]]), lens, cis, cache.shape)  # block 4 is past the cache
    with pytest.raises(ValueError):
        kernels.decode_rows(tables, torch.tensor([9]), cis, cache.shape)  # 9 tokens need a third block
    with pytest.raises(ValueError):
        kernels.decode_rows(tables, torch.tensor([0]), cis, cache.shape)  # no token
    with pytest.raises(ValueError):
        kernels.decode_rows(tables, lens, cis, torch.Size((4, 4, CFG.num_kv_heads, 15)))  # odd head_dim
    row = kernels.decode_rows(tables, lens, cis, cache.shape)
    with pytest.raises(ValueError):  # qkv rows must match the decode rows
        kernels.decode_attention(torch.randn(2, 100), row, cache, cache.clone(), CFG.num_heads, 0.25)
    layer = model.kernel_layers[0]
    with pytest.raises(ValueError):
        kernels.decode_layer(torch.randn(1, CFG.hidden_size + 1), layer, row, cache, cache.clone())
    with pytest.raises(ValueError):
        kernels.decode_layer(torch.randn(1, CFG.hidden_size), layer, row, cache, cache[:3].clone())


def test_arena_copies_are_equal_aligned_and_in_order() -> None:
    tensors = [torch.randn(3, 5), torch.randn(7), torch.randn(2, 16)]
    copies = in_one_arena(tensors)
    assert all(torch.equal(a, b) for a, b in zip(tensors, copies, strict=True))
    starts = [c.data_ptr() for c in copies]
    assert all(p % 64 == 0 for p in starts) and starts == sorted(starts)
    assert starts[1] - starts[0] == 64  # 15 floats padded to 16


def test_no_compiler_means_torch_ops(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "")
    assert build_cpu_kernels() is None


def test_engine_answers_alike_with_and_without_the_kernels(
    checkpoint: Checkpoint, engine: LLMEngine, chat_prompts: list[list[int]]
) -> None:
    if engine.runner.model.kernels is None:
        pytest.skip("no C compiler on this machine")
    plain = LLMEngine(checkpoint, EngineConfig(kv_cache_bytes=8 * 1024**2, num_threads=1, cpu_kernels=False))
    assert plain.runner.model.kernels is None
    greedy = SamplingParams(max_tokens=12, temperature=0, logprobs=True, top_logprobs=2)
    for prompt in chat_prompts[:2]:
        [ours] = engine.generate([prompt], greedy)
        [torch_ops] = plain.generate([prompt], greedy)
        assert ours.token_ids == torch_ops.token_ids and len(ours.logprobs) == len(ours.token_ids) > 0
        for a, b in zip(ours.logprobs, torch_ops.logprobs, strict=True):
            assert abs(a.logprob - b.logprob) < 1e-3
