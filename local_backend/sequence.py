"""A request as the engine sees it: its tokens, how many have keys in the cache, and its blocks."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum, auto
from typing import Any


@dataclass(slots=True)
class SamplingParams:
    max_tokens: int = 256
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0  # 0: off
    min_p: float = 0.0
    seed: int | None = None
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    repetition_penalty: float = 1.0
    stop: list[str] = field(default_factory=list)
    stop_token_ids: list[int] = field(default_factory=list)
    ignore_eos: bool = False
    logprobs: bool = False
    top_logprobs: int = 0

    @property
    def greedy(self) -> bool:
        return self.temperature < 1e-5 or self.top_k == 1

    @property
    def has_penalties(self) -> bool:
        return bool(self.presence_penalty or self.frequency_penalty or self.repetition_penalty != 1.0)


class SeqStatus(Enum):
    WAITING = auto()
    RUNNING = auto()
    FINISHED = auto()


class Sequence:
    def __init__(
        self,
        seq_id: str,
        prompt_ids: list[int],
        params: SamplingParams,
        eos_ids: frozenset[int] = frozenset(),
    ) -> None:
        if not prompt_ids:
            raise ValueError("empty prompt")
        self.seq_id = seq_id
        self.token_ids = list(prompt_ids)
        self.num_prompt_tokens = len(prompt_ids)
        self.params = params
        self.eos_ids = eos_ids
        self.status = SeqStatus.WAITING
        self.num_computed_tokens = 0  # tokens whose keys/values are in the cache
        self.num_cached_tokens = 0  # of the prompt, served by the prefix cache at first admission
        self.block_table: list[int] = []
        self.block_hashes: list[int] = []  # hashes of the leading full blocks registered in the cache
        self.finish_reason: str | None = None
        self.num_preemptions = 0
        self.generator: Any = None  # the sampler's seeded RNG, created on first use

    def __len__(self) -> int:
        return len(self.token_ids)

    @property
    def output_ids(self) -> list[int]:
        return self.token_ids[self.num_prompt_tokens :]

    @property
    def num_output_tokens(self) -> int:
        return len(self.token_ids) - self.num_prompt_tokens

    @property
    def num_pending(self) -> int:
        """Tokens still to run through the model before the next sample."""
        return len(self.token_ids) - self.num_computed_tokens

    @property
    def is_decode(self) -> bool:
        return self.status is SeqStatus.RUNNING and self.num_pending == 1 and self.num_output_tokens > 0

    def append(self, token_id: int) -> None:
        self.token_ids.append(token_id)

    def check_finished(self) -> str | None:
        """Finish reason from the last token alone (stop strings are the detokenizer's call)."""
        last = self.token_ids[-1]
        if last in self.params.stop_token_ids or (not self.params.ignore_eos and last in self.eos_ids):
            return "stop"
        if self.num_output_tokens >= self.params.max_tokens:
            return "length"
        return None
