"""The engine on a CUDA GPU, checked and timed; run it through `bash local_backend/gpu_check.sh`.

1. Greedy tokens: a few chat prompts on CUDA (bf16) against the CPU in bf16, the same dtype, and in fp32.
   Where two runs' token ids first part, each side's logprobs say how far apart it put the two
   candidates. Within --tie-nats on both sides that is a near tie, which bf16's rounding may flip (a
   logit near 16-32 is rounded to 0.125); further apart on either side, CUDA and the CPU computed
   different things, and against the CPU's bf16 that fails the check.
2. Decode tokens/s at batch 1, 16 and 64 (bench.bench_decode, prefill excluded) and the HBM bandwidth
   they imply: a decode step reads every weight once, so weight bytes x steps/s, beside a streaming read
   measured on the same GPU (bench.measure_bandwidth).

Exit status: 0 checked, no disagreement; 1 CUDA and the CPU's bf16 disagree; 3 no CUDA device here.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from dataclasses import dataclass

import torch

from local_backend.bench import bench_decode, measure_bandwidth, prompts
from local_backend.config import EngineConfig
from local_backend.engine import LLMEngine
from local_backend.sampler import TokenLogprobs
from local_backend.sequence import SamplingParams
from local_backend.weights import Checkpoint, load_checkpoint

NO_CUDA = 3
DISAGREE = 1
TOP_LOGPROBS = 5


@dataclass(frozen=True)
class Greedy:
    tokens: list[int]
    logprobs: list[TokenLogprobs]


@dataclass(frozen=True)
class Agreement:
    matched: int  # leading token ids the two runs share
    total: int
    gap: float | None  # at the first difference, the wider side's logprob gap; None when all match

    def within(self, tie_nats: float) -> bool:
        return self.gap is None or self.gap <= tie_nats

    def describe(self, ref: Greedy, got: Greedy) -> str:
        if self.gap is None:
            return f"all {self.total} equal"
        k = self.matched
        parted = f"at {k}: {ref.tokens[k]} vs {got.tokens[k]}, gap {self.gap:.3f} nats"
        return f"first {k} of {self.total} equal; {parted}"


def greedy(engine: LLMEngine, ids: list[list[int]], tokens: int) -> list[Greedy]:
    params = SamplingParams(
        max_tokens=tokens, temperature=0, ignore_eos=True, logprobs=True, top_logprobs=TOP_LOGPROBS
    )
    return [Greedy(c.token_ids, c.logprobs) for c in engine.generate(ids, params)]


def agreement(ref: Greedy, got: Greedy) -> Agreement:
    total = min(len(ref.tokens), len(got.tokens))
    k = next((i for i in range(total) if ref.tokens[i] != got.tokens[i]), None)
    if k is None:
        return Agreement(total, total, None)
    gap = max(
        _preference(ref.logprobs[k], got.tokens[k]),
        _preference(got.logprobs[k], ref.tokens[k]),
    )
    return Agreement(k, total, gap)


def _preference(info: TokenLogprobs, theirs: int) -> float:
    """How much more this side liked its own (greedy) token than the other's (inf: not in its top list)."""
    top = dict(info.top)
    return info.logprob - top[theirs] if theirs in top else math.inf


@dataclass(frozen=True)
class DecodeRow:
    batch: int
    tok_s: float
    weight_bytes: int

    @property
    def steps_s(self) -> float:
        return self.tok_s / self.batch

    @property
    def weights_gb_s(self) -> float:
        return self.weight_bytes * self.steps_s / 1e9


def decode_rows(engine: LLMEngine, batches: list[int], tokens: int) -> list[DecodeRow]:
    weight_bytes = engine.runner.weight_bytes
    return [DecodeRow(b, bench_decode(engine, b, tokens), weight_bytes) for b in batches]


def decode_table(rows: list[DecodeRow], measured_gb_s: float) -> str:
    lines = [
        "| batch | decode tok/s | steps/s | weights read, GB/s | of measured read bandwidth |",
        "|---|---|---|---|---|",
    ]
    for r in rows:
        share = 100 * r.weights_gb_s / measured_gb_s
        lines.append(f"| {r.batch} | {r.tok_s:.0f} | {r.steps_s:.0f} | {r.weights_gb_s:.0f} | {share:.1f}% |")
    return "\n".join(lines)


def _compare(name: str, refs: list[Greedy], gots: list[Greedy], tie_nats: float) -> bool:
    ok = True
    for i, (ref, got) in enumerate(zip(refs, gots, strict=True)):
        a = agreement(ref, got)
        ok = ok and a.within(tie_nats)
        verdict = "" if a.within(tie_nats) else f"  <- over {tie_nats} nats: not a near tie"
        print(f"  prompt {i}, CUDA vs {name}: {a.describe(ref, got)}{verdict}")
    return ok


def run(checkpoint: Checkpoint, args: argparse.Namespace) -> int:
    started = time.perf_counter()
    cpu = LLMEngine(checkpoint, EngineConfig(device="cpu", dtype="bfloat16"))
    ids = prompts(cpu, args.prompts)
    cpu_bf16 = greedy(cpu, ids, args.tokens)
    del cpu
    cpu_fp32 = greedy(LLMEngine(checkpoint, EngineConfig(device="cpu", dtype="float32")), ids, args.tokens)
    print(f"CPU references: {time.perf_counter() - started:.0f} s", flush=True)
    gpu = LLMEngine(checkpoint, EngineConfig(device="cuda", dtype="bfloat16"))
    print(
        f"{torch.cuda.get_device_name()} / torch {torch.__version__} / {gpu.runner.dtype} / "
        f"flash-attn {gpu.runner.use_flash} / CUDA graphs {gpu.runner.static_decode is not None}"
    )
    on_gpu = greedy(gpu, ids, args.tokens)
    print(f"greedy, {args.prompts} prompts x {args.tokens} tokens (near tie: <= {args.tie_nats} nats):")
    agreed = _compare("CPU bf16", cpu_bf16, on_gpu, args.tie_nats)
    _compare("CPU fp32 (for reference)", cpu_fp32, on_gpu, args.tie_nats)
    measured = measure_bandwidth(gpu.runner.device)
    rows = decode_rows(gpu, args.batches, args.decode_tokens)
    print(f"\nweights read per decode step: {gpu.runner.weight_bytes / 1e6:.0f} MB")
    print(f"measured read bandwidth (torch.sum over 1 GiB): {measured:.0f} GB/s")
    print(f"decode, {args.decode_tokens} tokens per sequence:")
    print(decode_table(rows, measured))
    print(
        f"\ntotal {time.perf_counter() - started:.0f} s; greedy vs CPU bf16: {'ok' if agreed else 'FAILED'}"
    )
    return 0 if agreed else DISAGREE


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="gpu_check", description=__doc__.split("\n", 1)[0])
    p.add_argument(
        "--model", default="smollm2", help="smollm2 (bundled), a .gguf file or a safetensors folder"
    )
    p.add_argument("--prompts", type=int, default=4)
    p.add_argument("--tokens", type=int, default=32, help="greedy tokens per prompt")
    p.add_argument("--tie-nats", type=float, default=0.25)
    p.add_argument("--batches", type=lambda s: [int(x) for x in s.split(",")], default=[1, 16, 64])
    p.add_argument("--decode-tokens", type=int, default=128, help="tokens per sequence when timing decode")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    if not torch.cuda.is_available():
        print(f"gpu_check: no CUDA device here (torch {torch.__version__}): nothing checked")
        return NO_CUDA
    return run(load_checkpoint(args.model), args)


if __name__ == "__main__":
    sys.exit(main())
