"""The Llama-family graph (Llama 2/3, SmolLM2, Mistral, Qwen2 with q/k/v biases) over a paged KV cache.

q/k/v and gate/up are fused so each layer makes four weight reads, not seven. Where our C kernels run
(CPU, `cpu_kernels.py`) the matrices sit in one arena in the order a decode step reads them: bf16
panels (the default) or fp32 [out, in] (the exact mode), activations fp32 either way; a decode step is
one C call per layer (a batch's decode rows in fp32 mode: C attention, torch products), and a batch
with prompt rows runs the products in C (bf16) and the prompt rows' attention in torch. Elsewhere
(CUDA, no compiler) the matrices are [in, out] in the model's dtype, multiplied with `x @ w`: on an
AVX2 CPU MKL's GEMV streams that layout ~1.5x faster than `F.linear`'s [out, in].
"""

from __future__ import annotations

import logging
import math

import torch
import torch.nn.functional as F
from torch import nn

from local_backend.attention import AttnMetadata, paged_attention, prefill_part, prepare_decode
from local_backend.config import ModelConfig
from local_backend.cpu_kernels import CpuKernels, Panels, serves
from local_backend.memory import Arena, trim_heap
from local_backend.weights import Tensors

log = logging.getLogger("local_backend")
EMBED_CHUNK_ROWS = 4096  # the embedding is converted in runs of rows: no whole fp32 copy at load


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


Weight = torch.Tensor | Panels
MATRICES = ("wqkv", "wo", "wgu", "wd")


class LlamaModel(nn.Module):
    def __init__(
        self,
        cfg: ModelConfig,
        tensors: Tensors | dict[str, torch.Tensor],
        dtype: torch.dtype,
        device: torch.device,
        block_size: int,
        kernels: CpuKernels | None = None,
    ) -> None:
        """`dtype` is the weights' (and the KV cache's); with the kernels, activations are fp32."""
        super().__init__()
        if isinstance(tensors, dict):
            tensors = Tensors.from_dict(tensors)
        self.cfg = cfg
        self.block_size = block_size
        self.scale = cfg.head_dim**-0.5
        self.kernels = kernels if serves(device, dtype) else None
        self.dtype, self.device = dtype, device
        self.act_dtype = torch.float32 if self.kernels is not None else dtype
        self.panels = self.kernels is not None and dtype == torch.bfloat16
        self.shape = None if self.kernels is None else self.kernels.shape(cfg, self.scale, dtype, block_size)
        self._arena = Arena(self._arena_bytes()) if self.kernels is not None else None

        def take(name: str) -> torch.Tensor:
            return tensors[name].float()

        # Interleave each q/k head's halves (0, d/2, 1, d/2+1, ...) so rope is one complex multiply; q.k
        # is unchanged because queries and keys are permuted alike.
        half = cfg.head_dim // 2
        pair = torch.stack([torch.arange(half), torch.arange(half) + half], 1).flatten()
        q_perm = (torch.arange(cfg.num_heads).unsqueeze(1) * cfg.head_dim + pair).flatten()
        k_perm = (torch.arange(cfg.num_kv_heads).unsqueeze(1) * cfg.head_dim + pair).flatten()

        self.layers: list[dict[str, Weight]] = []
        for i in range(cfg.num_layers):
            p = f"model.layers.{i}."
            ln1, ln2 = take(p + "input_layernorm.weight"), take(p + "post_attention_layernorm.weight")
            q, k, v = (take(p + f"self_attn.{x}_proj.weight") for x in "qkv")
            gate, up = take(p + "mlp.gate_proj.weight"), take(p + "mlp.up_proj.weight")
            # RMSNorm's gain is folded into the next matmul's input rows: one elementwise op fewer.
            layer: dict[str, Weight] = {
                "wqkv": self._matrix(torch.cat([q[q_perm], k[k_perm], v], 0) * ln1),
                "wo": self._matrix(take(p + "self_attn.o_proj.weight")),
                "wgu": self._matrix(torch.cat([gate, up], 0) * ln2),
                "wd": self._matrix(take(p + "mlp.down_proj.weight")),
            }
            del q, k, v, gate, up
            if cfg.attention_bias:
                bq, bk, bv = (take(p + f"self_attn.{x}_proj.bias") for x in "qkv")
                layer["bqkv"] = self._place(torch.cat([bq[q_perm], bk[k_perm], bv]), self.act_dtype)
            self.layers.append(layer)
            if (i + 1) % 10 == 0 or i + 1 == cfg.num_layers:
                trim_heap()  # the layers' fp32 transients, or they add up to a peak of their own
                log.info("weights: %d of %d layers in %s", i + 1, cfg.num_layers, self.layout)
        self.norm = self._place(take("model.norm.weight"), self.act_dtype)
        self.embed: torch.Tensor | None = None
        head = "model.embed_tokens.weight" if cfg.tie_embeddings else "lm_head.weight"
        if not cfg.tie_embeddings:
            self.embed = self._place(take("model.embed_tokens.weight"), dtype)
        self.lm_head = self._matrix_by_rows(tensors, head)
        if self.kernels is not None:
            assert self.shape is not None
            self.kernel_layers = [self.kernels.layer(layer, self.shape) for layer in self.layers]
            self.kernel_stack = self.kernels.stack(self.kernel_layers)
        inv = rope_inv_freq(cfg).to(device)
        if "rope_freqs" in tensors:  # llama 3.1 GGUFs carry their frequency factors as a tensor
            inv = inv / take("rope_freqs").to(device)
        self.inv_freq = inv

    @property
    def layout(self) -> str:
        if self.panels:
            return "bf16 panels"
        return (
            "fp32 [out, in]" if self._arena is not None else f"{self.dtype} [in, out]".replace("torch.", "")
        )

    def weight_bytes(self) -> int:
        """What the model holds for its weights."""
        tensors = [
            self.norm,
            self.inv_freq,
            self.lm_head,
            *(w for layer in self.layers for w in layer.values()),
        ]
        if self.embed is not None:
            tensors.append(self.embed)
        data = [w.data if isinstance(w, Panels) else w for w in tensors]
        return sum(t.numel() * t.element_size() for t in data)

    def _arena_bytes(self) -> int:
        """The arena holds every matrix a decode step reads, in that order: the layers', then the lm_head."""
        cfg = self.cfg
        h, i, d = cfg.hidden_size, cfg.intermediate_size, cfg.head_dim
        sizes = [((cfg.num_heads + 2 * cfg.num_kv_heads) * d, h), (h, cfg.num_heads * d), (2 * i, h), (h, i)]
        sizes = sizes * cfg.num_layers + [(cfg.vocab_size, h)]
        if self.panels:
            return Arena.size([(Panels.shape(n, k), torch.bfloat16) for n, k in sizes])
        return Arena.size([((n, k), torch.float32) for n, k in sizes])

    def _place(self, w: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        return w.to(device=self.device, dtype=dtype).contiguous()

    def _matrix(self, w: torch.Tensor) -> Weight:
        """w is [out, in]: bf16 panels or fp32 [out, in] in the arena for our kernels, else [in, out] in
        the model's dtype."""
        if self._arena is None:
            return self._place(w.t(), self.dtype)
        into = self._slot(*w.shape)
        _fill(into, w, 0)
        return into

    def _slot(self, n: int, k: int) -> Weight:
        assert self._arena is not None
        if self.panels:
            return Panels(self._arena.take(Panels.shape(n, k), torch.bfloat16), n)
        return self._arena.take((n, k), torch.float32)

    def _matrix_by_rows(self, tensors: Tensors, name: str) -> Weight:
        """A large matrix (the lm_head, maybe the embedding too) converted a run of rows at a time."""
        if self._arena is None:
            return self._matrix(tensors[name].float())
        n, k = tensors.shape(name)
        into = self._slot(n, k)
        for start in range(0, n, EMBED_CHUNK_ROWS):
            _fill(into, tensors.rows(name, start, min(start + EMBED_CHUNK_ROWS, n)), start)
        return into

    def embed_tokens(self, ids: torch.Tensor) -> torch.Tensor:
        if self.embed is not None:
            return self.embed[ids].to(self.act_dtype)
        head = self.lm_head
        if isinstance(head, Panels):
            return head.rows(ids)
        return head[ids] if self._arena is not None else head.index_select(1, ids).t()

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
        # A prompt's last row stays fp32 through the batch's bf16-rounded products: its logits pick the
        # answer's first token (a near-tie in the bundled model's own demo question flipped otherwise).
        exact = torch.tensor([s.q_end - 1 for s in meta.prefills]) if self.panels and meta.prefills else None
        if self.kernels is not None and nd:
            assert self.shape is not None
            # Our kernels take the decode rows' attention, and a step of decode rows alone whole (fp32
            # weights: one row); torch keeps the prefill rows, with their own metadata.
            assert meta.block_tables is not None and meta.context_lens is not None
            rows = self.kernels.decode_rows(
                meta.block_tables, meta.context_lens, cis[:nd], kv_caches[0][0].shape
            )
            if n == nd and (self.panels or n == 1):
                self.kernels.decode_layers(x, self.shape, self.kernel_stack, rows, kv_caches)
                return self._rms(x) * self.norm
            meta = prefill_part(meta)
        else:
            prepare_decode(meta, self.block_size, self.act_dtype)
        for layer, (k_cache, v_cache) in zip(self.layers, kv_caches, strict=True):
            qkv = self._mm(self._rms(x), layer["wqkv"], layer.get("bqkv"), exact)
            if rows is None:
                o = self._attend(qkv, cis, meta, k_cache, v_cache)
            else:
                assert self.kernels is not None and self.shape is not None
                o = self.kernels.decode_attention(qkv[:nd], self.shape, rows, k_cache, v_cache)
                if n > nd:
                    o = torch.cat([o, self._attend(qkv[nd:], cis[nd:], meta, k_cache, v_cache)])
            x = x + self._mm(o, layer["wo"], exact=exact)
            gu = self._mm(self._rms(x), layer["wgu"], exact=exact)
            x = x + self._mm(F.silu(gu[:, :inter]) * gu[:, inter:], layer["wd"], exact=exact)
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
        self, x: torch.Tensor, w: Weight, bias: torch.Tensor | None = None, exact: torch.Tensor | None = None
    ) -> torch.Tensor:
        """x @ W.T (+ bias); with bf16 panels, rows `exact` are not rounded to bf16."""
        if isinstance(w, Panels):
            assert self.kernels is not None
            return self.kernels.matmul(w, x.contiguous(), bias, exact)
        y = F.linear(x, w) if self._arena is not None else x @ w
        return y if bias is None else y + bias

    def logits(self, hidden: torch.Tensor, exact_from: int | None = None) -> torch.Tensor:
        """Logits for rows of hidden states; rows from `exact_from` on (prompts' last rows, after the
        decode rows) are not rounded to bf16 on the way (see forward)."""
        head = self.lm_head
        if self.kernels is not None and not isinstance(head, Panels) and hidden.shape[0] == 1:
            return self.kernels.gemv(head, hidden.contiguous())
        n = hidden.shape[0]
        exact = None
        if self.panels and exact_from is not None and exact_from < n:
            exact = torch.arange(exact_from, n)
        return self._mm(hidden, head, exact=exact).float()


def _fill(into: Weight, rows: torch.Tensor, start: int) -> None:
    """Rows [start, start + len(rows)) of an arena matrix, from fp32 [rows, in]."""
    if isinstance(into, Panels):
        Panels.fill(into.data, rows, start)
    else:
        into[start : start + rows.shape[0]].copy_(rows)
