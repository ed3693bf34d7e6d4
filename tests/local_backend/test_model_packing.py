"""oneDNN-packed weights, on a tiny random model whose lm_head is its own matrix (Qwen2-like)."""

from __future__ import annotations

import pytest
import torch

from local_backend.config import ModelConfig
from local_backend.model import LlamaModel, can_pack

CFG = ModelConfig(
    architecture="qwen2",
    vocab_size=96,
    hidden_size=32,
    intermediate_size=64,
    num_layers=2,
    num_heads=4,
    num_kv_heads=2,
    head_dim=8,
    rms_norm_eps=1e-6,
    rope_theta=10000.0,
    max_position=128,
    tie_embeddings=False,
    attention_bias=True,
)


def _tensors() -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    h, i, q, kv = (
        CFG.hidden_size,
        CFG.intermediate_size,
        CFG.num_heads * CFG.head_dim,
        CFG.num_kv_heads * CFG.head_dim,
    )
    shapes: dict[str, tuple[int, ...]] = {
        "model.norm.weight": (h,),
        "model.embed_tokens.weight": (CFG.vocab_size, h),
    }
    shapes["lm_head.weight"] = (CFG.vocab_size, h)
    for n in range(CFG.num_layers):
        p = f"model.layers.{n}."
        shapes |= {
            p + "input_layernorm.weight": (h,),
            p + "post_attention_layernorm.weight": (h,),
            p + "self_attn.q_proj.weight": (q, h),
            p + "self_attn.k_proj.weight": (kv, h),
            p + "self_attn.v_proj.weight": (kv, h),
            p + "self_attn.o_proj.weight": (h, q),
            p + "self_attn.q_proj.bias": (q,),
            p + "self_attn.k_proj.bias": (kv,),
            p + "self_attn.v_proj.bias": (kv,),
            p + "mlp.gate_proj.weight": (i, h),
            p + "mlp.up_proj.weight": (i, h),
            p + "mlp.down_proj.weight": (h, i),
        }
    return {name: torch.randn(shape, generator=g) * 0.1 for name, shape in shapes.items()}


@pytest.mark.skipif(not can_pack(torch.device("cpu"), torch.bfloat16), reason="no native bf16 on this CPU")
def test_bf16_packed_everywhere_drops_plain_matrices_and_answers_alike() -> None:
    cpu = torch.device("cpu")
    packed = LlamaModel(CFG, _tensors(), torch.bfloat16, cpu, block_size=16, packed=True)
    plain = LlamaModel(CFG, _tensors(), torch.bfloat16, cpu, block_size=16, packed=False)
    assert packed.pack_from_rows == 1
    assert packed.lm_head is None  # its own matrix, read only through the packed copy
    assert all(set(layer) == {"bqkv"} for layer in packed.layers)  # the bias stays: it is added as is
    ids = torch.tensor([3, 50, 95])
    assert torch.equal(packed.embed_tokens(ids), plain.embed_tokens(ids))
    for rows in (1, 3):
        hidden = torch.randn(rows, CFG.hidden_size).bfloat16()
        got, want = packed.logits(hidden), plain.logits(hidden)
        assert got.dtype is torch.float32 and got.shape == (rows, CFG.vocab_size)
        torch.testing.assert_close(got, want, atol=2e-2, rtol=2e-2)


def test_fp32_keeps_the_plain_gemv_for_one_row() -> None:
    model = LlamaModel(CFG, _tensors(), torch.float32, torch.device("cpu"), block_size=16, packed=True)
    assert model.pack_from_rows == 2
    assert model.lm_head is not None and all("wqkv" in layer for layer in model.layers)
