"""Our batch-1 CPU kernels against the torch ops they replace, and the engine with and without them."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from local_backend.config import EngineConfig
from local_backend.cpu_kernels import CpuKernels, build_cpu_kernels, in_one_arena
from local_backend.engine import LLMEngine
from local_backend.sequence import SamplingParams
from local_backend.weights import Checkpoint


@pytest.fixture(scope="module")
def kernels() -> CpuKernels:
    built = build_cpu_kernels()
    if built is None:
        pytest.skip("no C compiler on this machine")
    return built


def test_gemv_matches_torch_plain_normed_swiglu_and_accumulated(kernels: CpuKernels) -> None:
    g = torch.Generator().manual_seed(0)
    w = torch.randn(300, 96, generator=g)
    x = torch.randn(1, 96, generator=g)
    assert torch.allclose(kernels.gemv(w, x), x @ w.t(), atol=1e-4)
    normed = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-5)
    assert torch.allclose(kernels.gemv(w, x, rms_eps=1e-5), normed @ w.t(), atol=1e-4)
    gu = torch.randn(1, 192, generator=g)
    swiglu = F.silu(gu[:, :96]) * gu[:, 96:]
    assert torch.allclose(kernels.gemv(w, gu, swiglu=True), swiglu @ w.t(), atol=1e-4)
    residual = torch.randn(1, 300, generator=g)
    expected = residual + x @ w.t()
    out = kernels.gemv(w, x, add_to=residual)
    assert out is residual and torch.allclose(residual, expected, atol=1e-4)


def _reference_attention(
    qkv: torch.Tensor, cis: torch.Tensor, keys: torch.Tensor, values: torch.Tensor, heads: int, scale: float
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """rope (interleaved halves) then SDPA of the one query over earlier keys plus its own."""
    kv, dim = keys.shape[1], keys.shape[2]
    pairs = qkv[0, : (heads + kv) * dim].reshape(-1, dim // 2, 2)
    qk = torch.view_as_real(torch.view_as_complex(pairs) * cis).reshape(heads + kv, dim)
    q, k_new = qk[:heads], qk[heads:]
    v_new = qkv[0, (heads + kv) * dim :].view(kv, dim)
    k_all, v_all = torch.cat([keys, k_new[None]]), torch.cat([values, v_new[None]])
    group = heads // kv
    out = F.scaled_dot_product_attention(
        q.view(kv, group, 1, dim),
        k_all.transpose(0, 1)[:, None],
        v_all.transpose(0, 1)[:, None],
        scale=scale,
    )
    return out.reshape(1, heads * dim), k_new, v_new


def test_decode_attention_writes_the_cache_and_matches_sdpa_over_scattered_blocks(
    kernels: CpuKernels,
) -> None:
    g = torch.Generator().manual_seed(1)
    heads, kv, dim, block, ctx = 6, 2, 16, 4, 11
    k_cache = torch.randn(8, block, kv, dim, generator=g)
    v_cache = torch.randn(8, block, kv, dim, generator=g)
    table = torch.tensor([5, 1, 7])  # 11 tokens: the new one is position 10, slot 7 * 4 + 2
    positions = [int(table[p // block]) * block + p % block for p in range(ctx - 1)]
    keys = k_cache.view(-1, kv, dim)[positions].clone()
    values = v_cache.view(-1, kv, dim)[positions].clone()
    qkv = torch.randn(1, (heads + 2 * kv) * dim, generator=g)
    cis = torch.polar(torch.ones(dim // 2), torch.rand(dim // 2, generator=g) * 6)
    expected, k_new, v_new = _reference_attention(qkv.clone(), cis, keys, values, heads, 0.25)
    row = kernels.decode_row(table, ctx, cis, k_cache.shape)
    out = kernels.decode_attention(qkv, row, k_cache, v_cache, heads, 0.25)
    assert torch.allclose(out, expected, atol=1e-5)
    assert torch.allclose(k_cache[7, 2], k_new, atol=1e-6) and torch.equal(v_cache[7, 2], v_new)


def test_kernels_refuse_shapes_they_would_read_past(kernels: CpuKernels) -> None:
    w = torch.randn(8, 16)
    with pytest.raises(ValueError):
        kernels.gemv(w, torch.randn(1, 15))
    with pytest.raises(ValueError):
        kernels.gemv(w, torch.randn(1, 16), swiglu=True)  # SwiGLU reads 2K values
    with pytest.raises(ValueError):
        kernels.gemv(w, torch.randn(1, 16), add_to=torch.randn(1, 7))
    with pytest.raises(ValueError):
        kernels.gemv(w.double(), torch.randn(1, 16).double())
    cache = torch.zeros(4, 4, 2, 16)
    cis = torch.ones(8, dtype=torch.complex64)
    with pytest.raises(ValueError):
        kernels.decode_row(torch.tensor([1, 4]), 5, cis, cache.shape)  # block 4 is past the cache
    with pytest.raises(ValueError):
        kernels.decode_row(torch.tensor([1, 2]), 9, cis, cache.shape)  # 9 tokens need a third block
    row = kernels.decode_row(torch.tensor([1, 2]), 5, cis, cache.shape)
    with pytest.raises(ValueError):
        kernels.decode_attention(torch.randn(1, 100), row, cache, cache.clone(), 4, 0.25)


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
