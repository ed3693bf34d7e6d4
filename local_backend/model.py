"""The Llama-family graph (Llama 2/3, SmolLM2, Mistral, Qwen2 with q/k/v biases) over a paged KV cache.

q/k/v and gate/up are fused so each layer makes four weight reads, not seven. The plain weights are
kept [out, in] where our C kernels run the CPU decode (`cpu_kernels.py`) and [in, out] otherwise,
multiplied with `x @ w`: on an AVX2 CPU MKL's GEMV streams that layout ~1.5x faster than `F.linear`'s
[out, in]. With the kernels, a one-token decode is one C call per layer, and a batch's decode rows
attend in C while torch runs the products and any prefill rows.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from local_backend.attention import AttnMetadata, paged_attention, prefill_part, prepare_decode
from local_backend.config import ModelConfig
from local_backend.cpu_kernels import CpuKernels, in_one_arena, serves


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
        packed: bool = False,
        kernels: CpuKernels | None = None,
    ) -> None:
        super().__init__()
        self.cfg = cfg
        self.block_size = block_size
        self.scale = cfg.head_dim**-0.5

        def take(name: str) -> torch.Tensor:
            return tensors.pop(name).float()

        self.kernels = kernels if serves(device, dtype) else None

        def place(w: torch.Tensor) -> torch.Tensor:
            return w.to(device=device, dtype=dtype).contiguous()

        def place_matrix(w: torch.Tensor) -> torch.Tensor:
            """w is [out, in]; kept so for our GEMV, else as [in, out]."""
            return place(w if self.out_in else w.t())

        # Interleave each q/k head's halves (0, d/2, 1, d/2+1, ...) so rope is one complex multiply; q.k
        # is unchanged because queries and keys are permuted alike.
        half = cfg.head_dim // 2
        pair = torch.stack([torch.arange(half), torch.arange(half) + half], 1).flatten()
        q_perm = (torch.arange(cfg.num_heads).unsqueeze(1) * cfg.head_dim + pair).flatten()
        k_perm = (torch.arange(cfg.num_kv_heads).unsqueeze(1) * cfg.head_dim + pair).flatten()

        self.layers: list[dict[str, torch.Tensor]] = []
        for i in range(cfg.num_layers):
            p = f"model.layers.{i}."
            ln1, ln2 = take(p + "input_layernorm.weight"), take(p + "post_attention_layernorm.weight")
            q, k, v = (take(p + f"self_attn.{x}_proj.weight") for x in "qkv")
            gate, up = take(p + "mlp.gate_proj.weight"), take(p + "mlp.up_proj.weight")
            # RMSNorm's gain is folded into the next matmul's input rows: one elementwise op fewer.
            layer = {
                "wqkv": place_matrix(torch.cat([q[q_perm], k[k_perm], v], 0) * ln1),
                "wo": place_matrix(take(p + "self_attn.o_proj.weight")),
                "wgu": place_matrix(torch.cat([gate, up], 0) * ln2),
                "wd": place_matrix(take(p + "mlp.down_proj.weight")),
            }
            if cfg.attention_bias:
                bq, bk, bv = (take(p + f"self_attn.{x}_proj.bias") for x in "qkv")
                layer["bqkv"] = place(torch.cat([bq[q_perm], bk[k_perm], bv]))
            self.layers.append(layer)
        self.norm = place(take("model.norm.weight"))
        embed = place(take("model.embed_tokens.weight"))
        self.lm_head: torch.Tensor | None
        if cfg.tie_embeddings:
            # One copy: [out, in] is the embedding itself; [in, out] has its columns gathered.
            self.lm_head = embed if self.out_in else embed.t().contiguous()
            self.embed = None
        else:
            self.embed = embed
            self.lm_head = place_matrix(take("lm_head.weight"))
        del embed
        if self.kernels is not None:
            names = ("wqkv", "wo", "wgu", "wd")
            matrices = [layer[k] for layer in self.layers for k in names]
            moved = iter(in_one_arena([*matrices, self.lm_head]))
            for layer in self.layers:
                layer.update((k, next(moved)) for k in names)
            self.lm_head = next(moved)
            del matrices, moved  # the originals go now, not after packing has made a third copy
            self.kernel_layers = [self.kernels.layer(layer, cfg, self.scale) for layer in self.layers]
        inv = rope_inv_freq(cfg).to(device)
        if "rope_freqs" in tensors:  # llama 3.1 GGUFs carry their frequency factors as a tensor
            inv = inv / take("rope_freqs").to(device)
        self.inv_freq = inv
        self.dtype, self.device = dtype, device
        # oneDNN-packed copies for multi-row matmuls (batched decode, prefill): MKL's sgemm repacks the
        # weights on every call, which at 2-32 rows costs about as much as the arithmetic. In fp32,
        # batch 1 keeps the plain weights (our C GEMV, else MKL's), faster there than the packed kernel;
        # in bf16 (a CPU with native bf16 dot products) the packed kernel is faster at every size: at
        # one row 1.6x MKL's fp32 GEMV and 1.8x torch's own bf16 one, 3.3x for the lm_head (README,
        # "A second host"). The plain matrices are then never read, so they are dropped, all but a
        # tied lm_head, which is also the embedding.
        self.packed: list[dict[str, torch.Tensor]] | None = None
        self.lm_head_packed: torch.Tensor | None = None
        self.pack_from_rows = 1 if dtype == torch.bfloat16 else 2
        if packed and can_pack(device, dtype):
            self.packed = [
                {k: pack(w, self.out_in) for k, w in layer.items() if k != "bqkv"} for layer in self.layers
            ]
            self.lm_head_packed = pack(self.lm_head, self.out_in)
            if self.pack_from_rows == 1:
                self.layers = [{k: w for k, w in layer.items() if k == "bqkv"} for layer in self.layers]
                if self.embed is not None:
                    self.lm_head = None

    @property
    def out_in(self) -> bool:
        """Plain weights are [out, in] for our kernels, else [in, out] for MKL's `x @ w`."""
        return self.kernels is not None

    def embed_tokens(self, ids: torch.Tensor) -> torch.Tensor:
        if self.embed is not None:
            return self.embed[ids]
        assert self.lm_head is not None  # a tied lm_head is never dropped: it is the embedding
        return self.lm_head[ids] if self.out_in else self.lm_head.index_select(1, ids).t()

    def rope(self, positions: torch.Tensor) -> torch.Tensor:
        """Unit complex rotations [T, 1, head_dim / 2], one per position and frequency."""
        freqs = positions.float().unsqueeze(1) * self.inv_freq.unsqueeze(0)
        return torch.polar(torch.ones_like(freqs), freqs).unsqueeze(1)

    def _rms(self, x: torch.Tensor) -> torch.Tensor:
        # vecdot + in-place scalar ops: F.rms_norm and pow/mean each cost several times more per call on
        # CPU, and this runs 61 times per step. Statistics in fp32 whatever the dtype (a no-op on CPU);
        # the gain lives in the following weight.
        xf = x.float()
        ms = torch.linalg.vecdot(xf, xf).unsqueeze(-1)
        return (xf * torch.rsqrt(ms.mul_(1.0 / x.shape[-1]).add_(self.cfg.rms_norm_eps))).to(x.dtype)

    def forward(
        self,
        input_ids: torch.Tensor,
        positions: torch.Tensor,
        meta: AttnMetadata,
        kv_caches: list[tuple[torch.Tensor, torch.Tensor]],
    ) -> torch.Tensor:
        """Hidden states [T, hidden] after the final norm, for every input token."""
        cfg = self.cfg
        n, nd, inter = input_ids.shape[0], meta.num_decode, cfg.intermediate_size
        cis = self.rope(positions)
        x = self.embed_tokens(input_ids)
        rows = None
        if self.kernels is not None and nd:
            # Our kernels take the decode rows' attention (and at batch 1 the whole layer); torch keeps
            # the prefill rows, with their own metadata.
            assert meta.block_tables is not None and meta.context_lens is not None
            rows = self.kernels.decode_rows(
                meta.block_tables, meta.context_lens, cis[:nd], kv_caches[0][0].shape
            )
            if n == 1:
                for kernel_layer, (k_cache, v_cache) in zip(self.kernel_layers, kv_caches, strict=True):
                    self.kernels.decode_layer(x, kernel_layer, rows, k_cache, v_cache)
                return self._rms(x) * self.norm
            meta = prefill_part(meta)
        else:
            prepare_decode(meta, self.block_size, self.dtype)
        packs = self.packed if n >= self.pack_from_rows else None
        for i, (layer, (k_cache, v_cache)) in enumerate(zip(self.layers, kv_caches, strict=True)):
            pk = packs[i] if packs is not None else None
            qkv = self._mm(self._rms(x), layer, pk, "wqkv", layer.get("bqkv"))
            if rows is None:
                o = self._attend(qkv, cis, meta, k_cache, v_cache)
            else:
                assert self.kernels is not None
                o = self.kernels.decode_attention(qkv[:nd], rows, k_cache, v_cache, cfg.num_heads, self.scale)
                if n > nd:
                    o = torch.cat([o, self._attend(qkv[nd:], cis[nd:], meta, k_cache, v_cache)])
            x = x + self._mm(o, layer, pk, "wo")
            gu = self._mm(self._rms(x), layer, pk, "wgu")
            x = x + self._mm(F.silu(gu[:, :inter]) * gu[:, inter:], layer, pk, "wd")
        return self._rms(x) * self.norm

    def _attend(
        self,
        qkv: torch.Tensor,
        cis: torch.Tensor,
        meta: AttnMetadata,
        k_cache: torch.Tensor,
        v_cache: torch.Tensor,
    ) -> torch.Tensor:
        """Rope, then attention over the paged cache for the rows `meta` describes."""
        n, nh, nkv, hd = qkv.shape[0], self.cfg.num_heads, self.cfg.num_kv_heads, self.cfg.head_dim
        qk = qkv[:, : (nh + nkv) * hd].reshape(n, nh + nkv, hd // 2, 2)
        qk = torch.view_as_real(torch.view_as_complex(qk.float()) * cis).to(qkv.dtype).view(n, nh + nkv, hd)
        v = qkv[:, (nh + nkv) * hd :].view(n, nkv, hd)
        return paged_attention(qk[:, :nh], qk[:, nh:], v, k_cache, v_cache, meta, self.scale)

    def _mm(
        self,
        x: torch.Tensor,
        layer: dict[str, torch.Tensor],
        packed: dict[str, torch.Tensor] | None,
        name: str,
        bias: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """x @ W (+ bias): through the oneDNN-packed copy when the caller has one for this batch."""
        if packed is not None:
            return _LINEAR(x, packed[name], bias, "none", [], "")
        y = F.linear(x, layer[name]) if self.out_in else x @ layer[name]
        return y if bias is None else y + bias

    def logits(self, hidden: torch.Tensor) -> torch.Tensor:
        if self.lm_head_packed is not None and hidden.shape[0] >= self.pack_from_rows:
            return _LINEAR(hidden.contiguous(), self.lm_head_packed, None, "none", [], "").float()
        assert self.lm_head is not None  # dropped only where the packed copy serves every batch size
        if self.kernels is not None and hidden.shape[0] == 1:
            return self.kernels.gemv(self.lm_head, hidden.contiguous())
        return (F.linear(hidden, self.lm_head) if self.out_in else hidden @ self.lm_head).float()


def can_pack(device: torch.device, dtype: torch.dtype) -> bool:
    if device.type != "cpu" or not torch.backends.mkldnn.is_available():
        return False
    if dtype == torch.bfloat16:
        # Only where the CPU has native bf16 dot products (AVX512-BF16, AMX): elsewhere oneDNN
        # emulates them, unmeasured here, and bf16 stays on the plain path.
        native = torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported()
        return bool(native and torch.ops.mkldnn._is_mkldnn_bf16_supported())
    return dtype == torch.float32


def pack(w: torch.Tensor, out_in: bool) -> torch.Tensor:
    """A plain weight ([out, in] or [in, out]) in oneDNN's blocked layout for `_LINEAR`."""
    return torch.ops.mkldnn._reorder_linear_weight(w if out_in else w.t().contiguous(), None)


_LINEAR = torch.ops.mkldnn._linear_pointwise
