"""Our batch-1 CPU kernels against the torch path they replace, and the engine with and without them."""

from __future__ import annotations

import pytest
import torch

from local_backend.attention import AttnMetadata, PrefillSpan
from local_backend.config import EngineConfig
from local_backend.cpu_kernels import CpuKernels, build_cpu_kernels, in_one_arena
from local_backend.engine import LLMEngine
from local_backend.model import LlamaModel
from local_backend.sequence import SamplingParams
from local_backend.weights import Checkpoint
from tests.local_backend.tiny_model import CFG, tiny_tensors

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


def _step(model: LlamaModel, caches: list[tuple[torch.Tensor, torch.Tensor]], batched: bool) -> torch.Tensor:
    """Token 42 at position 10 of a sequence whose blocks (of 4) are 5, 1, 7 (cache slot 30). Batched:
    also a second decode (blocks 4, 6; position 5, slot 25) and a 3-token chunk of a third sequence
    (blocks 2, 3; positions 4-6) that reads the keys of its positions 0-3 from the cache."""
    if not batched:
        meta = AttnMetadata(
            torch.tensor([30]), 1, block_tables=torch.tensor([[5, 1, 7]]), context_lens=torch.tensor([11])
        )
        ids, positions = torch.tensor([42]), torch.tensor([10])
    else:
        meta = AttnMetadata(
            torch.tensor([30, 25, 12, 13, 14]),
            2,
            block_tables=torch.tensor([[5, 1, 7], [4, 6, 0]]),
            context_lens=torch.tensor([11, 6]),
            prefills=[PrefillSpan(2, 5, 4, slots=torch.arange(8, 15))],
        )
        ids, positions = torch.tensor([42, 7, 3, 9, 11]), torch.tensor([10, 5, 4, 5, 6])
    with torch.inference_mode():
        return model.logits(model(ids, positions, meta, caches))


@pytest.mark.parametrize(
    "batched", [False, True], ids=["one decode, whole layers", "decode rows beside a chunk"]
)
def test_kernels_match_the_torch_path_biases_gqa_and_scattered_blocks(
    kernels: CpuKernels, batched: bool
) -> None:
    fast = LlamaModel(CFG, tiny_tensors(), torch.float32, CPU, block_size=4, kernels=kernels)
    slow = LlamaModel(CFG, tiny_tensors(), torch.float32, CPU, block_size=4)
    assert len(fast.kernel_layers) == CFG.num_layers and slow.kernels is None
    g = torch.Generator().manual_seed(1)
    shape = (9, 4, CFG.num_kv_heads, CFG.head_dim)
    caches = [
        (torch.randn(shape, generator=g), torch.randn(shape, generator=g)) for _ in range(CFG.num_layers)
    ]
    copies = [(k.clone(), v.clone()) for k, v in caches]
    got, want = _step(fast, caches, batched), _step(slow, copies, batched)
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
