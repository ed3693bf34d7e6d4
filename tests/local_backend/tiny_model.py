"""A tiny random Qwen2-like model (q/k/v biases, its own lm_head) for tests that need no real weights."""

from __future__ import annotations

import dataclasses

import torch

from local_backend.config import ModelConfig

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


# Llama-like: no biases, tied embeddings, one kv head for all four query heads (MQA).
LLAMA_CFG = dataclasses.replace(
    CFG, architecture="llama", attention_bias=False, tie_embeddings=True, num_kv_heads=1
)


def tiny_tensors(cfg: ModelConfig = CFG) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    h, i, q, kv = (
        cfg.hidden_size,
        cfg.intermediate_size,
        cfg.num_heads * cfg.head_dim,
        cfg.num_kv_heads * cfg.head_dim,
    )
    shapes: dict[str, tuple[int, ...]] = {
        "model.norm.weight": (h,),
        "model.embed_tokens.weight": (cfg.vocab_size, h),
    }
    if not cfg.tie_embeddings:
        shapes["lm_head.weight"] = (cfg.vocab_size, h)
    for n in range(cfg.num_layers):
        p = f"model.layers.{n}."
        shapes |= {
            p + "input_layernorm.weight": (h,),
            p + "post_attention_layernorm.weight": (h,),
            p + "self_attn.q_proj.weight": (q, h),
            p + "self_attn.k_proj.weight": (kv, h),
            p + "self_attn.v_proj.weight": (kv, h),
            p + "self_attn.o_proj.weight": (h, q),
            p + "mlp.gate_proj.weight": (i, h),
            p + "mlp.up_proj.weight": (i, h),
            p + "mlp.down_proj.weight": (h, i),
        }
        if cfg.attention_bias:
            shapes |= {p + "self_attn.q_proj.bias": (q,), p + "self_attn.k_proj.bias": (kv,)}
            shapes[p + "self_attn.v_proj.bias"] = (kv,)
    return {name: torch.randn(shape, generator=g) * 0.1 for name, shape in shapes.items()}
