"""Decode at fixed shapes, for CUDA graphs.

Each bucket batch size gets static input buffers and, on CUDA, one captured graph; a step pads its batch
up to the next bucket (padded rows write to a spare cache block and read one key) and replays. The
static-shape forward is plain tensor code, so on CPU it runs eagerly (capture=False) and is tested there.
"""

from __future__ import annotations

import torch

from local_backend.attention import AttnMetadata
from local_backend.model import LlamaModel


def capture_buckets(max_batch: int) -> list[int]:
    small = [b for b in (1, 2, 4, 8) if b <= max_batch]
    return small + list(range(16, max_batch + 1, 16))


class StaticDecode:
    def __init__(
        self,
        model: LlamaModel,
        kv_caches: list[tuple[torch.Tensor, torch.Tensor]],
        buckets: list[int],
        max_blocks: int,
        block_size: int,
        spare_block: int,
        use_flash: bool,
        capture: bool,
    ) -> None:
        self.model, self.kv_caches = model, kv_caches
        self.buckets = sorted(buckets)
        self.max_blocks, self.block_size = max_blocks, block_size
        self.pad_slot = spare_block * block_size
        self.use_flash = use_flash
        dev, top = model.device, self.buckets[-1]
        small = torch.int32 if use_flash else torch.long
        self.ids = torch.zeros(top, dtype=torch.long, device=dev)
        self.positions = torch.zeros(top, dtype=torch.long, device=dev)
        self.slots = torch.full((top,), self.pad_slot, dtype=torch.long, device=dev)
        self.tables = torch.full((top, max_blocks), spare_block, dtype=small, device=dev)
        self.lens = torch.ones(top, dtype=small, device=dev)
        self.graphs: dict[int, torch.cuda.CUDAGraph] = {}
        self.outputs: dict[int, torch.Tensor] = {}
        if capture:
            self._capture()

    def _meta(self, b: int) -> AttnMetadata:
        return AttnMetadata(
            self.slots[:b],
            b,
            block_tables=self.tables[:b],
            context_lens=self.lens[:b],
            use_flash=self.use_flash,
        )

    def _forward(self, b: int) -> torch.Tensor:
        return self.model(self.ids[:b], self.positions[:b], self._meta(b), self.kv_caches)

    @torch.inference_mode()
    def _capture(self) -> None:
        pool = None
        for b in reversed(self.buckets):  # largest first, so smaller graphs reuse its memory pool
            self._forward(b)  # warm-up: lazy cuBLAS / flash-attn init must not happen under capture
            torch.cuda.synchronize()
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph, pool):
                self.outputs[b] = self._forward(b)
            pool = graph.pool()
            self.graphs[b] = graph
        torch.cuda.synchronize()

    def fits(self, meta: AttnMetadata) -> bool:
        assert meta.block_tables is not None
        return meta.num_decode <= self.buckets[-1] and meta.block_tables.shape[1] <= self.max_blocks

    def run(self, ids: torch.Tensor, positions: torch.Tensor, meta: AttnMetadata) -> torch.Tensor:
        assert meta.block_tables is not None and meta.context_lens is not None
        b = meta.num_decode
        bucket = next(x for x in self.buckets if x >= b)
        self.ids[:b].copy_(ids)
        self.positions[:b].copy_(positions)
        self.slots.fill_(self.pad_slot)
        self.slots[:b].copy_(meta.slot_mapping)
        self.tables.fill_(self.pad_slot // self.block_size)
        self.tables[:b, : meta.block_tables.shape[1]].copy_(meta.block_tables)
        self.lens.fill_(1)
        self.lens[:b].copy_(meta.context_lens)
        if bucket in self.graphs:
            self.graphs[bucket].replay()
            return self.outputs[bucket][:b]
        return self._forward(bucket)[:b]
