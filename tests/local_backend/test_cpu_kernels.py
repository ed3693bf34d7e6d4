"""Our CPU kernels against torch: the products on bf16 panels, whole steps of a tiny random model (fp32
and bf16 weights) against the torch path with the same weights, and the engine with and without them."""

from __future__ import annotations

import platform
import re
from pathlib import Path

import pytest
import torch

from local_backend.attention import AttnMetadata, PrefillSpan
from local_backend.config import EngineConfig, ModelConfig
from local_backend.cpu_kernels import CpuKernels, Panels, build_cpu_kernels
from local_backend.engine import LLMEngine
from local_backend.model import LlamaModel
from local_backend.runner import pick_dtype
from local_backend.sequence import SamplingParams
from local_backend.weights import Checkpoint
from tests.local_backend.tiny_model import CFG, LLAMA_CFG, tiny_tensors

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def kernels() -> CpuKernels:
    built = build_cpu_kernels(2)  # two threads: the pool's hand-off is exercised too
    if built is None:
        pytest.skip("no C compiler on this machine")
    return built


def _panels(w: torch.Tensor) -> Panels:
    data = torch.empty(Panels.shape(*w.shape), dtype=torch.bfloat16)
    Panels.fill(data, w)
    return Panels(data, w.shape[0])


def _dense(w: Panels) -> torch.Tensor:
    return w.rows(torch.arange(w.n))


def test_gemv_matches_torch(kernels: CpuKernels) -> None:
    g = torch.Generator().manual_seed(0)
    w, x = torch.randn(300, 96, generator=g), torch.randn(1, 96, generator=g)
    torch.testing.assert_close(kernels.gemv(w, x), x @ w.t(), atol=1e-4, rtol=1e-5)


def test_a_product_with_no_outputs_is_empty(kernels: CpuKernels) -> None:
    assert kernels.gemv(torch.empty(0, 8), torch.randn(1, 8)).shape == (1, 0)
    assert kernels.matmul(_panels(torch.empty(0, 8)), torch.randn(1, 8)).shape == (1, 0)


def test_panels_hold_the_rounded_matrix_filled_at_once_or_by_runs() -> None:
    w = torch.randn(40, 12)  # two whole panels and a part one
    whole = _panels(w)
    assert whole.data.shape == (3, 6, 16, 2) and whole.k == 12
    assert torch.equal(_dense(whole), w.bfloat16().float())
    assert torch.equal(whole.data[2, :, 8:], torch.zeros(6, 8, 2, dtype=torch.bfloat16))  # rows past 40
    runs = torch.empty_like(whole.data)
    Panels.fill(runs, w[:16])
    Panels.fill(runs, w[16:], start=16)
    assert torch.equal(runs, whole.data)
    assert torch.equal(whole.rows(torch.tensor([39, 0, 17])), w[[39, 0, 17]].bfloat16().float())


# Panels whole and part (n % 16), an odd and an even number of k pairs (the one-row loop takes two a
# turn), and SmolLM2's q/k/v and down shapes.
SHAPES = [(300, 96), (49, 64), (16, 2), (33, 78), (17, 6), (960, 576), (576, 1536)]


@pytest.mark.parametrize(("n", "k"), SHAPES)
def test_matmul_matches_torch_on_bf16_rounded_rows(kernels: CpuKernels, n: int, k: int) -> None:
    """One row multiplies in fp32; several are rounded to bf16 first (tiles of panels x rows: AMX 3 x 16,
    AVX512-BF16 3 x 8, AVX2 1 x 4, plain 1 x 4, and every leftover size). Both against torch's fp32
    product of the same rounded numbers."""
    g = torch.Generator().manual_seed(n)
    w, bias = torch.randn(n, k, generator=g), torch.randn(n, generator=g)
    panels, dense = _panels(w), w.bfloat16().float()
    tol = {"atol": 1e-4 * k**0.5, "rtol": 1e-4}
    for rows in range(1, 18):
        x = torch.randn(rows, k, generator=g)
        xr = x if rows == 1 else x.bfloat16().float()
        torch.testing.assert_close(kernels.matmul(panels, x, bias), xr @ dense.t() + bias, **tol)
        # Rows that must not be rounded (prompts' last rows) go through the fp32 tile, in the same pass.
        exact = torch.arange(rows)[rows // 2 :: 3]
        xr[exact] = x[exact]
        torch.testing.assert_close(kernels.matmul(panels, x, bias, exact), xr @ dense.t() + bias, **tol)
    x = torch.randn(4, k, generator=g)
    every = kernels.matmul(panels, x, exact=torch.arange(4))
    torch.testing.assert_close(every, x @ dense.t(), **tol)
    assert kernels.matmul(panels, torch.empty(0, k)).shape == (0, n)


def test_xeon_tiles_take_the_batches_where_the_cpu_has_them(kernels: CpuKernels) -> None:
    """On a CPU with AMX (and Linux granting it), the tests above ran on its tiles for k a multiple of
    32 and on the AVX512-BF16 tiles for the other shapes: both paths were checked."""
    cpuinfo = Path("/proc/cpuinfo")
    flags = set(cpuinfo.read_text().split()) if cpuinfo.exists() else set()
    if not {"amx_tile", "amx_bf16", "avx512_bf16"} <= flags:
        pytest.skip("no AMX on this CPU")
    kernel = tuple(int(part) for part in re.findall(r"\d+", platform.release())[:2])
    if kernel < (5, 16):
        pytest.skip(f"Linux {platform.release()} cannot grant the tile state (5.16 on)")
    assert kernels.amx


@pytest.mark.parametrize(("n", "k"), SHAPES)
def test_a_rows_sums_do_not_depend_on_its_batch(kernels: CpuKernels, n: int, k: int) -> None:
    """A row's product is the same to the bit in a batch of 2 and of 17, wherever it sits in the tiles,
    and so is a row kept in fp32 among rounded ones: a stream's tokens do not depend on its batch-mates
    (one row alone is the fp32 product, which is another matter)."""
    g = torch.Generator().manual_seed(k)
    panels = _panels(torch.randn(n, k, generator=g))
    x = torch.randn(17, k, generator=g)
    full = kernels.matmul(panels, x)
    for rows in range(2, 17):
        assert torch.equal(kernels.matmul(panels, x[:rows]), full[:rows])
        assert torch.equal(kernels.matmul(panels, x[-rows:]), full[-rows:])
    exact = kernels.matmul(panels, x, exact=torch.tensor([5, 16]))
    assert torch.equal(exact[[0, 1, 2, 3, 4, 6, 15]], full[[0, 1, 2, 3, 4, 6, 15]])
    alone = kernels.matmul(panels, x[[5, 16]], exact=torch.tensor([0, 1]))
    assert torch.equal(exact[[5, 16]], alone)


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


def _carry_bf16_weights(slow: LlamaModel, fast: LlamaModel) -> None:
    """The torch path (fp32, [in, out]) given the bf16 model's rounded matrices."""
    for theirs, ours in zip(slow.layers, fast.layers, strict=True):
        for name, w in ours.items():
            theirs[name] = _dense(w).t().contiguous() if isinstance(w, Panels) else w
    assert isinstance(fast.lm_head, Panels)
    slow.lm_head = _dense(fast.lm_head).t().contiguous()
    if fast.embed is not None:
        slow.embed = fast.embed.float()


# fp32 weights: the same sums in another order. bf16: the same rounded weights, but a batch's products
# round their activations to bf16 and the cache holds bf16 keys and values (seen: 5e-4 on logits of
# magnitude 0.1-0.25, 7e-4 on the cache; one row alone, 7e-6 on the logits).
TOLERANCE = {torch.float32: (1e-5, 1e-6), torch.bfloat16: (2e-3, 2e-3)}


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["fp32", "bf16"])
@pytest.mark.parametrize("batch", list(BATCHES))
@pytest.mark.parametrize("cfg", [CFG, LLAMA_CFG], ids=["qwen2-like", "llama-like"])
def test_kernels_match_the_torch_path(
    kernels: CpuKernels, cfg: ModelConfig, batch: str, dtype: torch.dtype
) -> None:
    """Biases or none, GQA or MQA, tied or own lm_head, scattered blocks; logits and every layer's cache."""
    fast = LlamaModel(cfg, tiny_tensors(cfg), dtype, CPU, block_size=4, kernels=kernels)
    slow = LlamaModel(cfg, tiny_tensors(cfg), torch.float32, CPU, block_size=4)
    assert len(fast.kernel_layers) == cfg.num_layers and slow.kernels is None
    if dtype is torch.bfloat16:
        _carry_bf16_weights(slow, fast)
    g = torch.Generator().manual_seed(1)
    shape = (9, 4, cfg.num_kv_heads, cfg.head_dim)
    caches = [
        (torch.randn(shape, generator=g).to(dtype), torch.randn(shape, generator=g).to(dtype))
        for _ in range(cfg.num_layers)
    ]
    copies = [(k.float(), v.float()) for k, v in caches]
    got, want = _step(fast, caches, batch), _step(slow, copies, batch)
    logits_tol, cache_tol = TOLERANCE[dtype]
    torch.testing.assert_close(got, want, atol=logits_tol, rtol=logits_tol)
    for (k, v), (k_ref, v_ref) in zip(caches, copies, strict=True):
        torch.testing.assert_close(k.float(), k_ref, atol=cache_tol, rtol=cache_tol)  # the new k and v
        torch.testing.assert_close(v.float(), v_ref, atol=cache_tol, rtol=cache_tol)


def test_bf16_model_holds_its_matrices_once_in_panels(kernels: CpuKernels) -> None:
    """No fp32 copy and no second layout: the layers' matrices and the lm_head, in the order a step
    reads them, in one arena; an untied embedding in bf16 beside it."""
    model = LlamaModel(CFG, tiny_tensors(), torch.bfloat16, CPU, block_size=4, kernels=kernels)
    matrices = [layer[k] for layer in model.layers for k in ("wqkv", "wo", "wgu", "wd")] + [model.lm_head]
    assert all(isinstance(m, Panels) and m.data.dtype is torch.bfloat16 for m in matrices)
    starts = [m.data.data_ptr() for m in matrices]
    assert starts == sorted(starts) and all(p % 64 == 0 for p in starts)
    assert model.embed is not None and model.embed.dtype is torch.bfloat16
    ids = torch.tensor([3, 50, 95])
    want = tiny_tensors()["model.embed_tokens.weight"][ids].bfloat16().float()
    assert torch.equal(model.embed_tokens(ids), want)
    tied = LlamaModel(LLAMA_CFG, tiny_tensors(LLAMA_CFG), torch.bfloat16, CPU, block_size=4, kernels=kernels)
    assert tied.embed is None and torch.equal(tied.embed_tokens(ids), _dense(tied.lm_head)[ids])


def test_kernels_refuse_what_they_would_read_past(kernels: CpuKernels) -> None:
    with pytest.raises(ValueError):
        kernels.gemv(torch.randn(8, 16), torch.randn(1, 15))
    with pytest.raises(ValueError):
        kernels.gemv(torch.randn(8, 16).double(), torch.randn(1, 16).double())
    panels = _panels(torch.randn(20, 16))
    with pytest.raises(ValueError):
        kernels.matmul(panels, torch.randn(3, 14))
    with pytest.raises(ValueError):
        kernels.matmul(panels, torch.randn(3, 16), bias=torch.randn(19))
    for exact in ([0, 3], [1, 1], [2, 0], [-1]):  # past the rows, repeated, descending, negative
        with pytest.raises(ValueError):
            kernels.matmul(panels, torch.randn(3, 16), exact=torch.tensor(exact))
    model = LlamaModel(CFG, tiny_tensors(), torch.float32, CPU, block_size=4, kernels=kernels)
    assert model.shape is not None
    weights = dict(model.layers[0])
    weights["wd"] = weights["wd"][:, :-1].contiguous()
    with pytest.raises(ValueError):
        kernels.layer(weights, model.shape)
    with pytest.raises(ValueError):  # fp32 matrices for a bf16 shape
        bf16 = kernels.shape(CFG, model.scale, torch.bfloat16, 4)
        kernels.layer(dict(model.layers[0]), bf16)
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
        kernels.decode_attention(torch.randn(2, 64), model.shape, row, cache, cache.clone())
    with pytest.raises(ValueError):  # a bf16 cache where the shape says fp32
        kernels.decode_attention(torch.randn(1, 64), model.shape, row, cache.bfloat16(), cache.bfloat16())
    layer, x = model.kernel_layers[0], torch.randn(1, CFG.hidden_size)
    with pytest.raises(ValueError):
        kernels.decode_layer(
            torch.randn(1, CFG.hidden_size + 1), model.shape, layer, row, cache, cache.clone()
        )
    with pytest.raises(ValueError):
        kernels.decode_layer(x, model.shape, layer, row, cache, cache[:3].clone())
    caches = [(cache, cache.clone()) for _ in model.kernel_layers]
    with pytest.raises(ValueError):  # a cache pair for each layer
        kernels.decode_layers(x, model.shape, model.kernel_stack, row, caches[1:])
    with pytest.raises(ValueError):  # each of them whole
        kernels.decode_layers(
            x, model.shape, model.kernel_stack, row, [*caches[1:], (cache, cache[:3].clone())]
        )
    kernels.decode_layers(x, model.shape, model.kernel_stack, row, caches)


def test_no_compiler_means_torch_ops_in_fp32(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "")
    assert build_cpu_kernels(1) is None
    assert pick_dtype(EngineConfig(), CPU, kernels=False) is torch.float32
    assert pick_dtype(EngineConfig(), CPU, kernels=True) is torch.bfloat16


def test_engine_answers_alike_with_and_without_the_kernels(
    checkpoint: Checkpoint, engine: LLMEngine, chat_prompts: list[list[int]]
) -> None:
    if engine.runner.model.kernels is None:
        pytest.skip("no C compiler on this machine")
    plain = LLMEngine(
        checkpoint,
        EngineConfig(dtype="float32", kv_cache_bytes=8 * 1024**2, num_threads=1, cpu_kernels=False),
    )
    assert plain.runner.model.kernels is None
    greedy = SamplingParams(max_tokens=12, temperature=0, logprobs=True, top_logprobs=2)
    for prompt in chat_prompts[:2]:
        [ours] = engine.generate([prompt], greedy)
        [torch_ops] = plain.generate([prompt], greedy)
        assert ours.token_ids == torch_ops.token_ids and len(ours.logprobs) == len(ours.token_ids) > 0
        for a, b in zip(ours.logprobs, torch_ops.logprobs, strict=True):
            assert abs(a.logprob - b.logprob) < 1e-3
