"""The one place the engine meets torch on the hot path: turns a scheduled batch into tensors, runs the
model over the paged cache, samples. Also owns the KV cache, sized from the configured byte budget."""

from __future__ import annotations

import os

import torch

from local_backend.attention import AttnMetadata, PrefillSpan, flash_available
from local_backend.config import EngineConfig
from local_backend.cpu_kernels import build_cpu_kernels, serves
from local_backend.cuda_graphs import StaticDecode, capture_buckets
from local_backend.memory import lazy_zeros, trim_heap
from local_backend.model import LlamaModel
from local_backend.sampler import TokenLogprobs, sample
from local_backend.scheduler import ScheduledBatch
from local_backend.weights import Checkpoint

_DTYPES = {
    "float32": torch.float32,
    "fp32": torch.float32,
    "bfloat16": torch.bfloat16,
    "bf16": torch.bfloat16,
    "float16": torch.float16,
    "fp16": torch.float16,
}
_FLASH_BLOCK = 256  # flash-attn's paged kernel wants blocks that are multiples of 256 tokens


def _cpus() -> int:
    """The CPUs this process may run on (torch's own default thread count)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


def pick_device(cfg: EngineConfig) -> torch.device:
    name = cfg.device
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(name)


def pick_dtype(cfg: EngineConfig, device: torch.device, kernels: bool) -> torch.dtype:
    if cfg.dtype != "auto":
        return _DTYPES[cfg.dtype]
    return torch.bfloat16 if device.type == "cuda" or kernels else torch.float32


class ModelRunner:
    def __init__(self, checkpoint: Checkpoint, cfg: EngineConfig) -> None:
        self.device = pick_device(cfg)
        # What a step runs on: torch's threads, or our kernels' pool, which then leaves torch one. Two
        # pools that spin-wait on the same cores starve each other: with both on two threads of a
        # 2-core EPYC a 512-token prompt took 1.9-5.4 s, against 1.0 s with torch on one.
        self.threads = cfg.num_threads or _cpus()
        wanted = serves(self.device, torch.bfloat16 if cfg.dtype == "auto" else _DTYPES[cfg.dtype])
        kernels = build_cpu_kernels(self.threads) if cfg.cpu_kernels and wanted else None
        torch.set_num_threads(1 if kernels is not None else self.threads)
        self.dtype = pick_dtype(cfg, self.device, kernels is not None)
        self.use_flash = flash_available(self.device)
        self.block_size = _FLASH_BLOCK if self.use_flash else cfg.block_size
        mc = self.model_config = checkpoint.config
        torch.manual_seed(cfg.seed)
        self.model = LlamaModel(mc, checkpoint.tensors, self.dtype, self.device, self.block_size, kernels)
        itemsize = torch.empty((), dtype=self.dtype).element_size()
        self.weight_bytes = mc.weight_bytes(itemsize)
        block_bytes = self.block_size * mc.kv_bytes_per_token(itemsize)
        max_model_len = min(cfg.max_model_len, mc.max_position)
        budget = cfg.kv_cache_bytes or max_model_len * mc.kv_bytes_per_token(itemsize)
        self.num_blocks = int(budget // block_bytes)
        if self.num_blocks < 1:
            raise ValueError(f"kv_cache_bytes={budget} is smaller than one block ({block_bytes})")
        self.kv_cache_bytes = self.num_blocks * block_bytes
        # One spare block past the managed ones: padded CUDA-graph rows write there. On CPU the pages are
        # committed as blocks are first written, so an unused part of the budget costs no memory.
        shape = (self.num_blocks + 1, self.block_size, mc.num_kv_heads, mc.head_dim)
        if self.device.type == "cpu":
            self.kv_caches = [
                (lazy_zeros(shape, self.dtype), lazy_zeros(shape, self.dtype)) for _ in range(mc.num_layers)
            ]
        else:
            self.kv_caches = [
                (
                    torch.zeros(shape, dtype=self.dtype, device=self.device),
                    torch.zeros(shape, dtype=self.dtype, device=self.device),
                )
                for _ in range(mc.num_layers)
            ]
        trim_heap()  # the load's fp32 transients go back to the system
        self.max_blocks_per_seq = -(-cfg.max_model_len // self.block_size)
        self.static_decode: StaticDecode | None = None
        if self.device.type == "cuda" and not cfg.enforce_eager:
            # Without flash-attn the captured decode gathers every block its table could hold, so the
            # graphs cover contexts up to 1024 tokens; longer ones run eagerly.
            cap = self.max_blocks_per_seq if self.use_flash else 1024 // self.block_size
            graph_blocks = min(self.max_blocks_per_seq, cap)
            self.static_decode = StaticDecode(
                self.model,
                self.kv_caches,
                capture_buckets(cfg.cuda_graph_max_batch),
                graph_blocks,
                self.block_size,
                self.num_blocks,
                self.use_flash,
                capture=True,
            )

    def _tensor(self, data: list[int], dtype: torch.dtype = torch.long) -> torch.Tensor:
        return torch.tensor(data, dtype=dtype).to(self.device, non_blocking=True)

    def prepare(self, batch: ScheduledBatch) -> tuple[torch.Tensor, torch.Tensor, AttnMetadata, list[int]]:
        """input ids, positions, attention metadata, and the rows whose logits are sampled."""
        bs = self.block_size
        ids: list[int] = []
        positions: list[int] = []
        slots: list[int] = []
        sample_rows: list[int] = []
        prefills: list[PrefillSpan] = []
        tables: list[list[int]] = []
        lens: list[int] = []
        table_dtype = torch.int32 if self.use_flash else torch.long
        for i, (seq, n) in enumerate(zip(batch.seqs, batch.num_new, strict=True)):
            start, row = seq.num_computed_tokens, len(ids)
            end = start + n
            ids.extend(seq.token_ids[start:end])
            positions.extend(range(start, end))
            table = seq.block_table
            slots.extend(table[p // bs] * bs + p % bs for p in range(start, end))
            if i < batch.num_decode:
                tables.append(table)
                lens.append(end)
            else:
                span = PrefillSpan(row, row + n, start)
                if self.use_flash:
                    span.block_table = self._tensor(table, torch.int32).unsqueeze(0)
                elif start > 0:
                    span.slots = self._tensor([table[p // bs] * bs + p % bs for p in range(end)])
                prefills.append(span)
            if end == len(seq):
                sample_rows.append(row + n - 1)
        meta = AttnMetadata(
            self._tensor(slots), batch.num_decode, prefills=prefills, use_flash=self.use_flash
        )
        if tables:
            width = max(len(t) for t in tables)
            meta.block_tables = self._tensor([t + [0] * (width - len(t)) for t in tables], table_dtype)
            meta.context_lens = self._tensor(lens, torch.int32 if self.use_flash else torch.long)
        return self._tensor(ids), self._tensor(positions), meta, sample_rows

    @torch.inference_mode()
    def run(self, batch: ScheduledBatch) -> tuple[dict[str, int], dict[str, TokenLogprobs]]:
        ids, positions, meta, rows = self.prepare(batch)
        decode_only = not meta.prefills
        if self.static_decode is not None and decode_only and self.static_decode.fits(meta):
            hidden = self.static_decode.run(ids, positions, meta)
        else:
            hidden = self.model(ids, positions, meta, self.kv_caches)
        if not rows:
            return {}, {}
        sampling = [
            s for s, n in zip(batch.seqs, batch.num_new, strict=True) if s.num_computed_tokens + n == len(s)
        ]
        # Every decode row samples, ahead of the prompts that end this step.
        picked = hidden[rows] if len(rows) < hidden.shape[0] else hidden
        logits = self.model.logits(picked, exact_from=batch.num_decode)
        tokens, infos = sample(logits, sampling, self.model.kernels)
        sampled = {s.seq_id: t for s, t in zip(sampling, tokens, strict=True)}
        logprobs = {s.seq_id: info for s, info in zip(sampling, infos, strict=True) if info is not None}
        return sampled, logprobs
