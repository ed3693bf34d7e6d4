"""Continuous batching: every step runs all decoding sequences plus as many prompt tokens as the token
budget allows (long prompts in chunks). When the cache runs out, the newest sequence is preempted and
recomputed later; nothing is ever refused for lack of memory, it waits. Pure Python."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

from local_backend.block_manager import BlockManager
from local_backend.sequence import SeqStatus, Sequence


@dataclass(slots=True)
class ScheduledBatch:
    seqs: list[Sequence]
    num_new: list[int]  # tokens each sequence runs this step
    num_decode: int  # the first num_decode entries are single-token decodes
    preempted: list[Sequence] = field(default_factory=list)

    @property
    def num_tokens(self) -> int:
        return sum(self.num_new)


class Scheduler:
    def __init__(self, block_manager: BlockManager, max_num_seqs: int, max_num_batched_tokens: int) -> None:
        self.bm = block_manager
        self.max_num_seqs = max_num_seqs
        self.max_num_batched_tokens = max_num_batched_tokens
        self.waiting: deque[Sequence] = deque()
        self.running: list[Sequence] = []

    def add(self, seq: Sequence) -> None:
        if self.bm.blocks_for(len(seq) + seq.params.max_tokens) > self.bm.num_blocks:
            raise ValueError("prompt plus max_tokens exceeds the whole KV cache")
        self.waiting.append(seq)

    @property
    def has_work(self) -> bool:
        return bool(self.waiting or self.running)

    def schedule(self) -> ScheduledBatch | None:
        budget = self.max_num_batched_tokens
        batch = ScheduledBatch([], [], 0)
        i = 0
        while i < len(self.running) and budget > 0:
            seq = self.running[i]
            if not seq.is_decode:
                i += 1
                continue
            while not self.bm.ensure(seq, len(seq)):
                victim = self.running[-1]
                self._preempt(victim)
                batch.preempted.append(victim)
                if victim is seq:
                    break
            if seq.status is SeqStatus.RUNNING:
                batch.seqs.append(seq)
                batch.num_new.append(1)
                budget -= 1
            i += 1
        batch.num_decode = len(batch.seqs)
        for seq in self.running:  # chunked prefills already under way
            if budget <= 0:
                break
            if not seq.is_decode and seq.num_pending > 0:
                n = min(seq.num_pending, budget)
                batch.seqs.append(seq)
                batch.num_new.append(n)
                budget -= n
        while self.waiting and budget > 0 and len(self.running) < self.max_num_seqs:
            seq = self.waiting[0]
            # Headroom of one block per running sequence, so admissions do not force preemptions.
            if not self.bm.can_admit(seq, reserve=len(self.running)):
                break
            self.waiting.popleft()
            self.bm.admit(seq)
            seq.status = SeqStatus.RUNNING
            self.running.append(seq)
            n = min(seq.num_pending, budget)
            batch.seqs.append(seq)
            batch.num_new.append(n)
            budget -= n
        return batch if batch.seqs else None

    def _preempt(self, seq: Sequence) -> None:
        self.running.remove(seq)
        self.bm.release(seq)
        seq.status = SeqStatus.WAITING
        seq.num_preemptions += 1
        self.waiting.appendleft(seq)

    def postprocess(self, batch: ScheduledBatch, sampled: dict[str, int]) -> list[Sequence]:
        """Account the step: advance computed counts, append sampled tokens, finish what ended.
        Returns the sequences that received a token."""
        got = []
        for seq, n in zip(batch.seqs, batch.num_new, strict=True):
            if seq.status is not SeqStatus.RUNNING:
                continue  # aborted while the step ran
            seq.num_computed_tokens += n
            self.bm.commit(seq)
            token = sampled.get(seq.seq_id)
            if token is None:
                continue
            seq.append(token)
            got.append(seq)
            reason = seq.check_finished()
            if reason:
                self.finish(seq, reason)
        return got

    def finish(self, seq: Sequence, reason: str) -> None:
        if seq.status is SeqStatus.FINISHED:
            return
        if seq.status is SeqStatus.RUNNING:
            self.running.remove(seq)
            self.bm.release(seq)
        else:
            self.waiting.remove(seq)
        seq.status = SeqStatus.FINISHED
        seq.finish_reason = reason
