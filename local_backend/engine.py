"""The synchronous engine: requests in, one scheduled step at a time, per-request deltas out."""

from __future__ import annotations

import dataclasses
import logging
import time
from dataclasses import dataclass, field

from local_backend.block_manager import BlockManager
from local_backend.config import EngineConfig
from local_backend.detokenizer import IncrementalDetokenizer
from local_backend.generation import generation_defaults
from local_backend.memory import trim_heap
from local_backend.runner import ModelRunner
from local_backend.sampler import TokenLogprobs
from local_backend.scheduler import Scheduler
from local_backend.sequence import SamplingParams, SeqStatus, Sequence
from local_backend.tokenizer import load_tokenizer
from local_backend.weights import Checkpoint, load_checkpoint

log = logging.getLogger("local_backend")


@dataclass(slots=True)
class RequestOutput:
    request_id: str
    token_ids: list[int]  # new this step
    text: str  # new this step
    logprobs: list[TokenLogprobs] = field(default_factory=list)
    finished: bool = False
    finish_reason: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0


@dataclass(slots=True)
class Completion:
    """A whole answer, for callers that do not stream (tests, bench)."""

    token_ids: list[int]
    text: str
    finish_reason: str | None
    logprobs: list[TokenLogprobs]
    prompt_tokens: int
    cached_tokens: int


class LLMEngine:
    def __init__(self, model: str | Checkpoint, config: EngineConfig | None = None) -> None:
        """model: a name or path to load, or a Checkpoint already loaded (engines may share one)."""
        self.config = config or EngineConfig()
        started = time.perf_counter()
        checkpoint = load_checkpoint(model) if isinstance(model, str) else model
        self.model_name = checkpoint.name
        self.model_config = checkpoint.config
        self.checkpoint_bytes = checkpoint.quant_bytes
        self.tokenizer = load_tokenizer(checkpoint.tokenizer_source)
        # What an OpenAI request that leaves sampling out gets (local_backend.openai_api).
        self.generation_defaults = generation_defaults(checkpoint.tokenizer_source)
        self.runner = ModelRunner(checkpoint, self.config)
        del checkpoint
        self.block_manager = BlockManager(
            self.runner.num_blocks, self.runner.block_size, self.config.enable_prefix_caching
        )
        self.scheduler = Scheduler(
            self.block_manager, self.config.max_num_seqs, self.config.max_num_batched_tokens
        )
        self.max_model_len = min(self.config.max_model_len, self.model_config.max_position)
        self._seqs: dict[str, Sequence] = {}
        self._detok: dict[str, IncrementalDetokenizer] = {}
        self.num_preemptions = 0
        self.load_seconds = time.perf_counter() - started
        runner, kernels = self.runner, self.runner.model.kernels
        products = f"torch ops on {runner.device}"
        if kernels:
            products = f"C kernels on {kernels.threads} thread(s)" + (", AMX tiles" if kernels.amx else "")
        log.info(
            "loaded %s in %.1f s, weights %.0f MB (%s), kv cache %.0f MB (%d tokens, taken as used), %s",
            self.model_name,
            self.load_seconds,
            runner.model.weight_bytes() / 1e6,
            runner.model.layout,
            runner.kv_cache_bytes / 1e6,
            runner.num_blocks * runner.block_size,
            products,
        )

    @property
    def has_work(self) -> bool:
        return self.scheduler.has_work

    def live_requests(self) -> list[str]:
        return list(self._seqs)

    def add_request(self, request_id: str, prompt_ids: list[int], params: SamplingParams) -> None:
        if request_id in self._seqs:
            raise ValueError(f"duplicate request id {request_id}")
        if len(prompt_ids) >= self.max_model_len:
            raise ValueError(
                f"prompt is {len(prompt_ids)} tokens; this model serves at most {self.max_model_len - 1}"
            )
        params.max_tokens = max(1, min(params.max_tokens, self.max_model_len - len(prompt_ids)))
        seq = Sequence(request_id, prompt_ids, params, frozenset(self.tokenizer.eos_ids))
        self.scheduler.add(seq)
        self._seqs[request_id] = seq
        self._detok[request_id] = IncrementalDetokenizer(
            self.tokenizer.token_bytes, params.stop, self.tokenizer.strip_leading_space
        )

    def abort(self, request_id: str) -> None:
        seq = self._seqs.pop(request_id, None)
        self._detok.pop(request_id, None)
        if seq is not None:
            self.scheduler.finish(seq, "abort")

    def step(self) -> list[RequestOutput]:
        batch = self.scheduler.schedule()
        if batch is None:
            return []
        self.num_preemptions += len(batch.preempted)
        sampled, logprobs = self.runner.run(batch)
        outputs = []
        for seq in self.scheduler.postprocess(batch, sampled):
            token = seq.token_ids[-1]
            detok = self._detok[seq.seq_id]
            # A token that ends the request by id (EOS, stop_token_ids) is not part of the answer.
            text = "" if seq.finish_reason == "stop" else detok.add(token)
            if detok.stopped:
                self.scheduler.finish(seq, "stop")
            if seq.status is SeqStatus.FINISHED:
                text += detok.flush()
                del self._seqs[seq.seq_id], self._detok[seq.seq_id]
            info = logprobs.get(seq.seq_id)
            outputs.append(
                RequestOutput(
                    seq.seq_id,
                    [token],
                    text,
                    [info] if info else [],
                    seq.status is SeqStatus.FINISHED,
                    seq.finish_reason,
                    seq.num_prompt_tokens,
                    seq.num_output_tokens,
                    seq.num_cached_tokens,
                )
            )
        if not self.has_work:
            trim_heap()  # idle: a batch's freed activations go back to the system, not held till next
        return outputs

    def generate(
        self, prompts: list[list[int]], params: SamplingParams | list[SamplingParams]
    ) -> list[Completion]:
        """Run prompts to completion together (continuous batching), answers in prompt order."""
        plist = params if isinstance(params, list) else [params] * len(prompts)
        base = f"gen-{time.monotonic_ns()}-"
        results: dict[str, Completion] = {}
        for i, (ids, p) in enumerate(zip(prompts, plist, strict=True)):
            self.add_request(base + str(i), ids, dataclasses.replace(p))
            results[base + str(i)] = Completion([], "", None, [], len(ids), 0)
        while self.has_work:
            for out in self.step():
                done = results[out.request_id]
                done.token_ids += out.token_ids
                done.text += out.text
                done.logprobs += out.logprobs
                done.cached_tokens = out.cached_tokens
                if out.finished:
                    done.finish_reason = out.finish_reason
        return [results[base + str(i)] for i in range(len(prompts))]
