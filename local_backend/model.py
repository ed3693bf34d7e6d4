"""The Llama-family graph (Llama 2/3, SmolLM2, Mistral, Qwen2 with q/k/v biases) over a paged KV cache.

Weights are stored transposed, [in, out], and multiplied with `x @ w`: on this kind of AVX2 CPU MKL's
GEMV streams that layout ~1.5x faster than `F.linear`'s [out, in] at batch 1, which is the case that is
bandwidth-bound. q/k/v and gate/up are fused so each layer makes three weight reads, not seven.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from local_backend.attention import AttnMetadata, paged_attention, prepare_decode
from local_backend.config import ModelConfig


def rope_inv_freq(cfg: ModelConfig) -> torch.Tensor:
    dim = cfg.head_dim
    inv = 1.0 / (cfg.rope_theta ** (torch.arange(0, dim, 2, dtype=torch.float64) / dim))
    scaling = cfg.rope_scaling or {}
    kind = scaling.get("rope_type") or scaling.get("type")
    if kind == "linear":
        inv = inv / float(scaling["factor"])
    elif kind == "llama3":
        factor, low, high = (
            float(scaling["factor"]),
            float(scaling["low_freq_factor"]),
            float(scaling["high_freq_factor"]),
        )
        old_len = float(scaling["original_max_position_embeddings"])
        wavelen = 2 * math.pi / inv
        smooth = (old_len / wavelen - low) / (high - low)
        scaled = torch.where(wavelen > old_len / low, inv / factor, inv)
        mid = (wavelen <= old_len / low) & (wavelen >= old_len / high)
        inv = torch.where(mid, (1 - smooth) * scaled / factor + smooth * scaled, scaled)
    return inv.float()


class LlamaModel(nn.Module):
    def __init__(
        self,
        cfg: ModelConfig,
        tensors: dict[str, torch.Tensor],
        dtype: torch.dtype,
        device: torch.device,
        block_size: int,
    ) -> None:
        super().__init__()
        self.cfg = cfg
        self.block_size = block_size
        self.scale = cfg.head_dim**-0.5

        def take(name: str) -> torch.Tensor:
            return tensors.pop(name).to(device=device, dtype=dtype)

        def cat_t(*names: str) -> torch.Tensor:
            return torch.cat([take(n) for n in names], 0).t().contiguous()

        self.layers: list[dict[str, torch.Tensor]] = []
        for i in range(cfg.num_layers):
            p = f"model.layers.{i}."
            layer = {
                "ln1": take(p + "input_layernorm.weight"),
                "ln2": take(p + "post_attention_layernorm.weight"),
                "wqkv": cat_t(*(p + f"self_attn.{x}_proj.weight" for x in "qkv")),
                "wo": take(p + "self_attn.o_proj.weight").t().contiguous(),
                "wgu": cat_t(p + "mlp.gate_proj.weight", p + "mlp.up_proj.weight"),
                "wd": take(p + "mlp.down_proj.weight").t().contiguous(),
            }
            if cfg.attention_bias:
                layer["bqkv"] = torch.cat([take(p + f"self_attn.{x}_proj.bias") for x in "qkv"])
            self.layers.append(layer)
        self.norm = take("model.norm.weight")
        embed = take("model.embed_tokens.weight")
        if cfg.tie_embeddings:
            # One copy: rows are gathered from the transposed matrix rather than keeping both layouts.
            self.lm_head = embed.t().contiguous()
            self.embed = None
        else:
            self.embed = embed
            self.lm_head = take("lm_head.weight").t().contiguous()
        del embed
        inv = rope_inv_freq(cfg).to(device)
        if "rope_freqs" in tensors:  # llama 3.1 GGUFs carry their frequency factors as a tensor
            inv = inv / take("rope_freqs").float()
        self.inv_freq = inv
        self.dtype, self.device = dtype, device

    def embed_tokens(self, ids: torch.Tensor) -> torch.Tensor:
        if self.embed is not None:
            return self.embed[ids]
        return self.lm_head.index_select(1, ids).t()

    def rope(self, positions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        freqs = positions.float().unsqueeze(1) * self.inv_freq.unsqueeze(0)
        emb = torch.cat([freqs, freqs], -1).unsqueeze(1)
        return emb.cos().to(self.dtype), emb.sin().to(self.dtype)

    def forward(
        self,
        input_ids: torch.Tensor,
        positions: torch.Tensor,
        meta: AttnMetadata,
        kv_caches: list[tuple[torch.Tensor, torch.Tensor]],
    ) -> torch.Tensor:
        """Hidden states [T, hidden] after the final norm, for every input token."""
        cfg = self.cfg
        nh, nkv, hd = cfg.num_heads, cfg.num_kv_heads, cfg.head_dim
        n = input_ids.shape[0]
        cos, sin = self.rope(positions)
        prepare_decode(meta, self.block_size)
        x = self.embed_tokens(input_ids)
        half = hd // 2
        for layer, (k_cache, v_cache) in zip(self.layers, kv_caches, strict=True):
            h = F.rms_norm(x, (x.shape[-1],), layer["ln1"], cfg.rms_norm_eps)
            qkv = h @ layer["wqkv"]
            if "bqkv" in layer:
                qkv = qkv + layer["bqkv"]
            qk = qkv[:, : (nh + nkv) * hd].view(n, nh + nkv, hd)
            rotated = torch.cat([-qk[..., half:], qk[..., :half]], -1)
            qk = qk * cos + rotated * sin
            v = qkv[:, (nh + nkv) * hd :].view(n, nkv, hd)
            o = paged_attention(qk[:, :nh], qk[:, nh:], v, k_cache, v_cache, meta, self.scale)
            x = x + o @ layer["wo"]
            h = F.rms_norm(x, (x.shape[-1],), layer["ln2"], cfg.rms_norm_eps)
            gu = h @ layer["wgu"]
            x = x + (F.silu(gu[:, : cfg.intermediate_size]) * gu[:, cfg.intermediate_size :]) @ layer["wd"]
        return F.rms_norm(x, (x.shape[-1],), self.norm, cfg.rms_norm_eps)

    def logits(self, hidden: torch.Tensor) -> torch.Tensor:
        return (hidden @ self.lm_head).float()
