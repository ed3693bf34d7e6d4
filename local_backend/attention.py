"""Attention over the paged KV cache.

The cache is one tensor per layer, [num_blocks, block_size, kv_heads, head_dim]; a token's slot is
block_id * block_size + offset. The kernels: SDPA over keys gathered from the blocks (CPU, and CUDA
without flash-attn), and flash-attn's paged kernel on CUDA when it can be imported. On CPU, where our
C kernels were built, decode rows go to them instead (`cpu_kernels.py`), reading the blocks in place;
this module then sees only the prefill rows (`prefill_part`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

try:  # optional: only on CUDA hosts that built it
    from flash_attn import flash_attn_with_kvcache
except ImportError:
    flash_attn_with_kvcache = None


def flash_available(device: torch.device) -> bool:
    return flash_attn_with_kvcache is not None and device.type == "cuda"


@dataclass(slots=True)
class PrefillSpan:
    """One sequence's chunk of new tokens: rows [q_start, q_end) of the batch, at positions
    [start_pos, start_pos + q_end - q_start). `slots` lists the cache slots of all its positions so far
    (None when the chunk is the whole context: it then attends to its own keys, no gather)."""

    q_start: int
    q_end: int
    start_pos: int
    slots: torch.Tensor | None = None
    block_table: torch.Tensor | None = None  # [1, blocks] int32, flash-attn only


@dataclass(slots=True)
class AttnMetadata:
    slot_mapping: torch.Tensor  # [T] where each new token's key/value goes
    num_decode: int  # the first num_decode rows are single-token decodes, one per sequence
    block_tables: torch.Tensor | None = None  # [Bd, max_blocks] decode block tables
    context_lens: torch.Tensor | None = None  # [Bd] tokens in cache after this step, per decode
    prefills: list[PrefillSpan] = field(default_factory=list)
    use_flash: bool = False
    # Derived once per forward by `prepare_decode`, shared by every layer.
    decode_slots: torch.Tensor | None = None
    decode_mask: torch.Tensor | None = None


def prepare_decode(meta: AttnMetadata, block_size: int, dtype: torch.dtype) -> None:
    """Slot index and mask for every (decode row, key position). Pure tensor ops with shapes fixed by
    block_tables, so the same code runs eagerly and inside a captured CUDA graph."""
    if meta.num_decode == 0 or meta.use_flash:
        return
    assert meta.block_tables is not None and meta.context_lens is not None
    max_len = meta.block_tables.shape[1] * block_size
    pos = torch.arange(max_len, device=meta.block_tables.device)
    blocks = meta.block_tables.index_select(1, pos // block_size)
    meta.decode_slots = blocks * block_size + pos % block_size
    # Additive float mask, built once: SDPA converts a boolean mask on every call (every layer).
    hidden = (pos >= meta.context_lens.unsqueeze(1)).view(meta.num_decode, 1, 1, max_len)
    meta.decode_mask = torch.zeros(hidden.shape, dtype=dtype, device=hidden.device).masked_fill_(
        hidden, float("-inf")
    )


def prefill_part(meta: AttnMetadata) -> AttnMetadata:
    """The metadata of a batch's prefill rows alone, renumbered from 0, for when the decode rows are
    attended elsewhere (our CPU kernels)."""
    nd = meta.num_decode
    spans = [
        PrefillSpan(s.q_start - nd, s.q_end - nd, s.start_pos, s.slots, s.block_table) for s in meta.prefills
    ]
    return AttnMetadata(meta.slot_mapping[nd:], 0, prefills=spans, use_flash=meta.use_flash)


def _causal_mask(n: int, start: int, total: int, device: torch.device) -> torch.Tensor:
    q_pos = torch.arange(start, start + n, device=device).unsqueeze(1)
    return torch.arange(total, device=device).unsqueeze(0) <= q_pos


def paged_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    k_cache: torch.Tensor,
    v_cache: torch.Tensor,
    meta: AttnMetadata,
    scale: float,
) -> torch.Tensor:
    """q [T, H, D], k/v [T, Hkv, D] for the new tokens; returns [T, H * D]."""
    n_tok, n_head, dim = q.shape
    n_kv = k.shape[1]
    k_flat, v_flat = k_cache.view(-1, n_kv, dim), v_cache.view(-1, n_kv, dim)
    # The cache may be narrower than q/k/v (bf16 beside our kernels' fp32 activations): rounded on write,
    # widened on read.
    k_flat.index_copy_(0, meta.slot_mapping, k.to(k_flat.dtype))
    v_flat.index_copy_(0, meta.slot_mapping, v.to(v_flat.dtype))
    if meta.use_flash:
        return _flash(q, k_cache, v_cache, meta, scale).reshape(n_tok, n_head * dim)
    out = q.new_empty(n_tok, n_head, dim)
    nd, group = meta.num_decode, n_head // n_kv
    if nd:
        # index_select, not k_flat[2-D index]: the latter takes milliseconds on CPU. One query per row,
        # so GQA is a reshape of q ([Bd, kv_heads, group, D]) instead of repeating keys; SDPA's own
        # enable_gqa with a mask is just as slow on CPU.
        flat = meta.decode_slots.reshape(-1)
        kd = k_flat.index_select(0, flat).view(nd, -1, n_kv, dim).transpose(1, 2)
        vd = v_flat.index_select(0, flat).view(nd, -1, n_kv, dim).transpose(1, 2)
        qd = q[:nd].reshape(nd, n_kv, group, dim)
        od = F.scaled_dot_product_attention(qd, kd, vd, attn_mask=meta.decode_mask, scale=scale)
        out[:nd] = od.reshape(nd, n_head, dim)
    for span in meta.prefills:
        # [1, H, n, D] with the kv heads repeated: SDPA's fused CPU kernel takes 4-D inputs without GQA;
        # 3-D ones, or enable_gqa, fall back to bmm + softmax, ~3x slower at 512 tokens (one thread).
        qs, qe = span.q_start, span.q_end
        qp = q[qs:qe].transpose(0, 1).unsqueeze(0)
        if span.slots is None:
            kp, vp = k[qs:qe], v[qs:qe]
            mask, causal = None, True
        else:
            kp = k_flat.index_select(0, span.slots).to(q.dtype)
            vp = v_flat.index_select(0, span.slots).to(q.dtype)
            mask, causal = _causal_mask(qe - qs, span.start_pos, kp.shape[0], q.device), False
        kp = kp.transpose(0, 1).repeat_interleave(group, 0).unsqueeze(0)
        vp = vp.transpose(0, 1).repeat_interleave(group, 0).unsqueeze(0)
        op = F.scaled_dot_product_attention(qp, kp, vp, attn_mask=mask, is_causal=causal, scale=scale)
        out[qs:qe] = op[0].transpose(0, 1)
    return out.view(n_tok, n_head * dim)


def _flash(
    q: torch.Tensor, k_cache: torch.Tensor, v_cache: torch.Tensor, meta: AttnMetadata, scale: float
) -> torch.Tensor:
    """flash-attn's paged kernel aligns the causal mask bottom-right, so one call serves a decode batch
    and each prefill chunk alike."""
    out = torch.empty_like(q)
    nd = meta.num_decode
    if nd:
        out[:nd] = flash_attn_with_kvcache(
            q[:nd].unsqueeze(1),
            k_cache,
            v_cache,
            cache_seqlens=meta.context_lens,
            block_table=meta.block_tables,
            softmax_scale=scale,
            causal=True,
        ).squeeze(1)
    for span in meta.prefills:
        n = span.q_end - span.q_start
        lens = torch.tensor([span.start_pos + n], dtype=torch.int32, device=q.device)
        out[span.q_start : span.q_end] = flash_attn_with_kvcache(
            q[span.q_start : span.q_end].unsqueeze(0),
            k_cache,
            v_cache,
            cache_seqlens=lens,
            block_table=span.block_table,
            softmax_scale=scale,
            causal=True,
        ).squeeze(0)
    return out
