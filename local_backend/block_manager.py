"""Paged KV-cache bookkeeping: ref-counted blocks and a prefix cache keyed by chained block hashes.

Pure Python. A full block's hash covers its tokens and every block before it, so equal hashes mean equal
prefixes. Hashes are registered only once the block's keys are computed, so a sequence never reuses a
block another sequence has not finished writing. Freed blocks keep their hash and stay reusable until
they are handed out again, oldest first.
"""

from __future__ import annotations

from collections import OrderedDict

from local_backend.sequence import Sequence


class Block:
    __slots__ = ("block_id", "hash", "ref_count", "token_ids")

    def __init__(self, block_id: int) -> None:
        self.block_id = block_id
        self.ref_count = 0
        self.hash: int | None = None
        self.token_ids: tuple[int, ...] = ()


def block_hash(prev: int | None, token_ids: tuple[int, ...]) -> int:
    # Python hashes ints and tuples deterministically (no PYTHONHASHSEED salt), and hits are verified.
    return hash((prev, token_ids))


class BlockManager:
    def __init__(self, num_blocks: int, block_size: int, enable_prefix_caching: bool = True) -> None:
        if num_blocks <= 0:
            raise ValueError("the KV-cache budget leaves no blocks")
        self.block_size = block_size
        self.enable_prefix_caching = enable_prefix_caching
        self.blocks = [Block(i) for i in range(num_blocks)]
        self.free: OrderedDict[int, None] = OrderedDict((i, None) for i in range(num_blocks))
        self.cached: dict[int, int] = {}  # block hash -> block id
        self.prefix_hits = 0  # tokens served from the cache, for the metrics

    @property
    def num_blocks(self) -> int:
        return len(self.blocks)

    @property
    def num_free(self) -> int:
        return len(self.free)

    def blocks_for(self, num_tokens: int) -> int:
        return -(-num_tokens // self.block_size)

    def _match_prefix(self, seq: Sequence) -> list[int]:
        """Cached blocks for the sequence's leading full blocks, leaving at least one token to compute
        (the step that samples needs that token's logits)."""
        if not self.enable_prefix_caching:
            return []
        hits, prev = [], None
        bs = self.block_size
        for i in range((len(seq) - 1) // bs):
            tokens = tuple(seq.token_ids[i * bs : (i + 1) * bs])
            h = block_hash(prev, tokens)
            block_id = self.cached.get(h)
            if block_id is None or self.blocks[block_id].token_ids != tokens:
                break
            hits.append(block_id)
            prev = h
        return hits

    def can_admit(self, seq: Sequence, reserve: int = 0) -> bool:
        hits = self._match_prefix(seq)
        revived = sum(1 for b in hits if b in self.free)
        needed = self.blocks_for(len(seq)) - len(hits)
        return self.num_free - revived >= needed + reserve

    def admit(self, seq: Sequence) -> None:
        """Blocks for every token the sequence holds now: prefix-cache hits first, fresh blocks after."""
        assert not seq.block_table
        hits = self._match_prefix(seq)
        for block_id in hits:
            block = self.blocks[block_id]
            if block.ref_count == 0:
                del self.free[block_id]
            block.ref_count += 1
            seq.block_hashes.append(block.hash)
        seq.block_table = hits
        seq.num_computed_tokens = len(hits) * self.block_size
        if seq.num_preemptions == 0:
            seq.num_cached_tokens = seq.num_computed_tokens
        self.prefix_hits += seq.num_computed_tokens
        if not self.ensure(seq, len(seq)):
            self.release(seq)
            raise RuntimeError("admit() called without can_admit()")

    def ensure(self, seq: Sequence, num_tokens: int) -> bool:
        """Grow the block table to hold num_tokens; all or nothing."""
        needed = self.blocks_for(num_tokens) - len(seq.block_table)
        if needed > self.num_free:
            return False
        for _ in range(needed):
            seq.block_table.append(self._take_free())
        return True

    def _take_free(self) -> int:
        block_id, _ = self.free.popitem(last=False)
        block = self.blocks[block_id]
        if block.hash is not None and self.cached.get(block.hash) == block_id:
            del self.cached[block.hash]
        block.hash, block.token_ids, block.ref_count = None, (), 1
        return block_id

    def commit(self, seq: Sequence) -> None:
        """Register the blocks the last step filled, so later requests can reuse them."""
        if not self.enable_prefix_caching:
            return
        bs = self.block_size
        for i in range(len(seq.block_hashes), seq.num_computed_tokens // bs):
            tokens = tuple(seq.token_ids[i * bs : (i + 1) * bs])
            h = block_hash(seq.block_hashes[-1] if seq.block_hashes else None, tokens)
            block = self.blocks[seq.block_table[i]]
            block.hash, block.token_ids = h, tokens
            self.cached.setdefault(h, block.block_id)
            seq.block_hashes.append(h)

    def release(self, seq: Sequence) -> None:
        # Tail blocks go back first so they are evicted first: prefixes are the likelier reuse.
        for block_id in reversed(seq.block_table):
            block = self.blocks[block_id]
            block.ref_count -= 1
            if block.ref_count == 0:
                self.free[block_id] = None
        seq.block_table = []
        seq.block_hashes = []
        seq.num_computed_tokens = 0
