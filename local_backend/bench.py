"""`switchyard local bench`: the numbers the issue asks for, gpt-fast style: short, and it prints the
achieved bandwidth beside the machine's.

Bandwidth is measured, not looked up: the best of five passes of torch.sum over a 1 GiB float32 tensor
(32x a typical L3, so it streams from DRAM), with the same thread count the engine uses. A decode step
at batch 1 must read every weight once, so tokens/s x weight bytes / that bandwidth is the roofline
fraction.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import gc
import os
import statistics
import time
from typing import Any

import orjson
import torch

from local_backend.async_engine import AsyncEngine
from local_backend.config import EngineConfig
from local_backend.engine import LLMEngine
from local_backend.memory import peak_rss_mb, rss_mb
from local_backend.sequence import SamplingParams
from local_backend.weights import Checkpoint, load_checkpoint

TOPICS = [
    "the ocean",
    "volcanoes",
    "bread",
    "chess",
    "rivers",
    "the moon",
    "bees",
    "trains",
    "glaciers",
    "libraries",
    "violins",
    "deserts",
    "owls",
    "bridges",
    "coffee",
    "comets",
]


def measure_bandwidth(device: torch.device, threads: int | None = None) -> float:
    """GB/s for a streaming read (torch.sum over 1 GiB, best of 5), with `threads` CPU threads."""
    engine_threads = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        return _sum_bandwidth(device)
    finally:
        torch.set_num_threads(engine_threads)


def _sum_bandwidth(device: torch.device) -> float:
    x = torch.ones(256 * 1024**2, dtype=torch.float32, device=device)
    best = float("inf")
    for _ in range(6):
        _sync(device)
        start = time.perf_counter()
        x.sum()
        _sync(device)
        best = min(best, time.perf_counter() - start)
    return x.numel() * 4 / best / 1e9


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def prompts(engine: LLMEngine, n: int) -> list[list[int]]:
    tok = engine.tokenizer
    return [
        tok.encode_chat(
            [{"role": "user", "content": f"Write a short story about {TOPICS[i % 16]} (story {i})."}]
        )
        for i in range(n)
    ]


QUESTIONS = [
    "What is the capital of France?",
    "What is 7 times 8?",
    "Name a primary colour.",
    "Is water wet? Answer yes or no.",
    "Who wrote Hamlet?",
    "What is the boiling point of water?",
    "Translate 'hello' into French.",
    "How many legs does a spider have?",
]


def mixed_prompts(engine: LLMEngine, n: int) -> list[list[int]]:
    """Serving traffic: half one-line answers, half long stories, so outputs end at different times."""
    tok = engine.tokenizer
    asks = [
        QUESTIONS[i // 2 % 8] if i % 2 else f"Write a long story about {TOPICS[i % 16]}." for i in range(n)
    ]
    return [tok.encode_chat([{"role": "user", "content": a}]) for a in asks]


def engine_throughput(engine: LLMEngine, ids: list[list[int]], tokens: int, ignore_eos: bool) -> float:
    """Generated tokens per second, all requests submitted at once."""
    start = time.perf_counter()
    outs = engine.generate(ids, SamplingParams(max_tokens=tokens, temperature=0, ignore_eos=ignore_eos))
    return sum(len(o.token_ids) for o in outs) / (time.perf_counter() - start)


def bench_prefill(engine: LLMEngine, length: int) -> float:
    ids = (engine.tokenizer.encode(" ".join(TOPICS) + ". ") * length)[:length]
    engine.generate([ids[:32]], SamplingParams(max_tokens=1))  # warm-up
    start = time.perf_counter()
    engine.generate([ids], SamplingParams(max_tokens=1, temperature=0))
    return length / (time.perf_counter() - start)


def bench_decode(engine: LLMEngine, batch: int, tokens: int) -> float:
    """Decode tokens/s with `batch` sequences running, prefill excluded."""
    params = SamplingParams(max_tokens=tokens, temperature=0, ignore_eos=True)
    for i, ids in enumerate(prompts(engine, batch)):
        engine.add_request(f"dec-{batch}-{i}-{time.monotonic_ns()}", ids, params)
    produced = 0
    while engine.scheduler.waiting or any(not s.is_decode for s in engine.scheduler.running):
        engine.step()
    start = time.perf_counter()
    while engine.has_work:
        produced += len(engine.step())
    return produced / (time.perf_counter() - start)


async def _streams(engine: AsyncEngine, ids: list[list[int]], tokens: int) -> dict[str, float]:
    params = SamplingParams(max_tokens=tokens, temperature=0, ignore_eos=True)

    async def one(p: list[int]) -> tuple[float, float, int]:
        start = time.perf_counter()
        first = last = 0.0
        n = 0
        async for out in engine.generate(p, dataclasses.replace(params)):
            last = time.perf_counter()
            first = first or last
            n += len(out.token_ids)
        return first - start, (last - first) / max(n - 1, 1), n

    await engine.wait_ready()
    start = time.perf_counter()
    results = await asyncio.gather(*(one(p) for p in ids))
    wall = time.perf_counter() - start
    return {
        "ttft_p50_ms": 1e3 * statistics.median(r[0] for r in results),
        "ttft_max_ms": 1e3 * max(r[0] for r in results),
        "tpot_p50_ms": 1e3 * statistics.median(r[1] for r in results),
        "throughput_tok_s": sum(r[2] for r in results) / wall,
    }


def hf_llama_config(mc: Any, **extra: Any) -> Any:
    """transformers' LlamaConfig with our model's shape: the reference the engine is compared with."""
    import transformers

    return transformers.LlamaConfig(
        vocab_size=mc.vocab_size,
        hidden_size=mc.hidden_size,
        intermediate_size=mc.intermediate_size,
        num_hidden_layers=mc.num_layers,
        num_attention_heads=mc.num_heads,
        num_key_value_heads=mc.num_kv_heads,
        head_dim=mc.head_dim,
        rms_norm_eps=mc.rms_norm_eps,
        rope_theta=mc.rope_theta,
        max_position_embeddings=mc.max_position,
        tie_word_embeddings=mc.tie_embeddings,
        attention_bias=mc.attention_bias,
        **extra,
    )


def bench_hf(
    checkpoint: Checkpoint,
    workloads: dict[str, tuple[list[list[int]], int]],
    eos_ids: set[int],
    dtype: torch.dtype = torch.float32,
) -> dict[str, float]:
    """The same greedy workloads through transformers `generate`: one request at a time, then one padded
    batch. Weights are our dequantised tensors in the engine's dtype, so only the serving differs.
    Tokens are counted up to each request's end of sequence, as the engine counts them."""
    pad_id = min(eos_ids)
    import transformers

    model = transformers.LlamaForCausalLM(hf_llama_config(checkpoint.config, pad_token_id=pad_id)).eval()
    model.load_state_dict(checkpoint.tensors.state_dict(), strict=False)
    model.tie_weights()
    model.to(dtype)
    for module in model.modules():  # rope frequencies stay fp32, as the engine keeps them
        for name in ("inv_freq", "original_inv_freq"):
            buffer = getattr(module, name, None)
            if isinstance(buffer, torch.Tensor):
                setattr(module, name, buffer.float())
    res = {}
    with torch.inference_mode():
        warm = next(iter(workloads.values()))[0][0]
        model.generate(torch.tensor([warm]), max_new_tokens=2, do_sample=False, pad_token_id=pad_id)
        for name, (ids, tokens) in workloads.items():
            fixed = name == "fixed"
            kwargs = {
                "max_new_tokens": tokens,
                "do_sample": False,
                "pad_token_id": pad_id,
                "eos_token_id": None if fixed else sorted(eos_ids),
            }
            if fixed:
                kwargs["min_new_tokens"] = tokens
            start, produced = time.perf_counter(), 0
            for p in ids:
                out = model.generate(
                    torch.tensor([p]), attention_mask=torch.ones(1, len(p), dtype=torch.long), **kwargs
                )
                produced += out.shape[1] - len(p)
            res[f"hf_serial_{name}_tok_s"] = produced / (time.perf_counter() - start)
            width = max(len(p) for p in ids)
            batch = torch.tensor([[pad_id] * (width - len(p)) + p for p in ids])
            mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in ids])
            start = time.perf_counter()
            out = model.generate(batch, attention_mask=mask, **kwargs)[:, width:].tolist()
            elapsed = time.perf_counter() - start
            res[f"hf_padded_{name}_tok_s"] = sum(_useful(row, eos_ids, fixed) for row in out) / elapsed
    return res


def _useful(row: list[int], eos_ids: set[int], fixed: bool) -> int:
    """A padded row's real tokens: up to and including its first end-of-sequence."""
    if fixed:
        return len(row)
    return next((i + 1 for i, t in enumerate(row) if t in eos_ids), len(row))


def run_bench(args: argparse.Namespace) -> int:
    from local_backend.cli import engine_options

    options = engine_options(args)
    options.setdefault("max_num_batched_tokens", max(args.prompt_tokens, 1024))
    config = EngineConfig.from_options(options)
    checkpoint = load_checkpoint(args.model)
    engine = LLMEngine(checkpoint, config)
    runner = engine.runner
    threads = runner.threads
    res: dict[str, Any] = {
        "model": engine.model_name,
        "device": str(runner.device),
        "dtype": str(runner.dtype),
        "threads": threads,
        "load_avg": os.getloadavg()[0],
        "weight_bytes": runner.weight_bytes,
        "kv_blocks": runner.num_blocks,
        "kv_cache_bytes": runner.kv_cache_bytes,
        # Read before the bandwidth test's 1 GiB buffer raises the peak for the rest of the run.
        "rss_after_load_mb": rss_mb(),
        "peak_rss_load_mb": peak_rss_mb(),
    }

    def note(key: str, value: float) -> None:
        res[key] = value
        print(f"{key}: {value:.2f}", flush=True)  # a long run shows progress as it goes

    note("bandwidth_gb_s", measure_bandwidth(runner.device, threads))
    if runner.device.type == "cpu":
        note("bandwidth_all_cores_gb_s", measure_bandwidth(runner.device, os.cpu_count()))
    note("prefill_tok_s", bench_prefill(engine, args.prompt_tokens))
    for b in (int(x) for x in args.batch_sizes.split(",")):
        note(f"decode_b{b}_tok_s", bench_decode(engine, b, args.output_tokens))
    b1 = res.get("decode_b1_tok_s")
    if b1:
        res["achieved_gb_s_b1"] = b1 * runner.weight_bytes / 1e9
        res["roofline_fraction_b1"] = res["achieved_gb_s_b1"] / res["bandwidth_gb_s"]
        if "bandwidth_all_cores_gb_s" in res:
            res["roofline_fraction_all_cores_b1"] = res["achieved_gb_s_b1"] / res["bandwidth_all_cores_gb_s"]
    ids = prompts(engine, args.concurrency)
    mixed = mixed_prompts(engine, args.concurrency)
    natural_cap = 2 * args.output_tokens
    note("engine_fixed_tok_s", engine_throughput(engine, ids, args.output_tokens, ignore_eos=True))
    note("engine_natural_tok_s", engine_throughput(engine, mixed, natural_cap, ignore_eos=False))
    eos_ids = set(engine.tokenizer.eos_ids) or {0}
    # transformers runs on the CPU: in the engine's dtype there, in fp32 beside a GPU engine
    hf_dtype = runner.dtype if runner.device.type == "cpu" else torch.float32
    note("rss_after_run_mb", rss_mb())
    del engine, runner  # its weights and KV cache must not share memory with the next engines
    gc.collect()
    streaming = AsyncEngine(checkpoint, config)
    one = asyncio.run(_streams(streaming, ids[:1], args.output_tokens))
    note("one_stream_tok_s", one["throughput_tok_s"])
    for key, value in asyncio.run(_streams(streaming, ids, args.output_tokens)).items():
        note(key, value)
    res["streams_vs_one_x"] = res["throughput_tok_s"] / res["one_stream_tok_s"]
    streaming.shutdown()
    if not args.no_hf:
        hf = bench_hf(
            checkpoint,
            {"fixed": (ids, args.output_tokens), "natural": (mixed, natural_cap)},
            eos_ids,
            hf_dtype,
        )
        for key, value in hf.items():
            note(key, value)
        for name in ("fixed", "natural"):
            res[f"x_vs_hf_serial_{name}"] = res[f"engine_{name}_tok_s"] / res[f"hf_serial_{name}_tok_s"]
            res[f"x_vs_hf_padded_{name}"] = res[f"engine_{name}_tok_s"] / res[f"hf_padded_{name}_tok_s"]
    print(format_table(res, args))
    if args.json:
        with open(args.json, "wb") as f:
            f.write(orjson.dumps(res, option=orjson.OPT_INDENT_2))
    return 0


def format_table(r: dict[str, Any], args: argparse.Namespace) -> str:
    rows = [
        ("model / device / dtype / threads", f"{r['model']} / {r['device']} / {r['dtype']} / {r['threads']}"),
        ("weights read per decode step", f"{r['weight_bytes'] / 1e6:.0f} MB"),
        (
            f"measured bandwidth, {r['threads']} thread(s) (torch.sum, 1 GiB)",
            f"{r['bandwidth_gb_s']:.1f} GB/s",
        ),
        (f"prefill ({args.prompt_tokens}-token prompt)", f"{r['prefill_tok_s']:.0f} tok/s"),
    ]
    rows += [(f"decode, batch {k[8:-6]}", f"{v:.1f} tok/s") for k, v in r.items() if k.startswith("decode_b")]
    if "achieved_gb_s_b1" in r:
        rows.append(
            (
                "achieved bandwidth, batch 1",
                f"{r['achieved_gb_s_b1']:.1f} GB/s = {100 * r['roofline_fraction_b1']:.0f}% of roofline",
            )
        )
    if "roofline_fraction_all_cores_b1" in r:
        share = 100 * r["roofline_fraction_all_cores_b1"]
        rows.append(
            (
                f"all {os.cpu_count()} cores' bandwidth / batch-1 share of it",
                f"{r['bandwidth_all_cores_gb_s']:.1f} GB/s / {share:.0f}%",
            )
        )
    rows += [
        (
            "process RSS after load / peak during load / after the engine's runs",
            f"{r['rss_after_load_mb']:.0f} / {r['peak_rss_load_mb']:.0f} / {r['rss_after_run_mb']:.0f} MB",
        ),
        ("KV-cache budget (pages committed as used)", f"{r['kv_cache_bytes'] / 1e6:.0f} MB"),
    ]
    n = args.concurrency
    rows += [
        (f"{n} streams: TTFT p50 / max", f"{r['ttft_p50_ms']:.0f} / {r['ttft_max_ms']:.0f} ms"),
        (f"{n} streams: time per output token p50", f"{r['tpot_p50_ms']:.1f} ms"),
        (
            f"{n} streams: total throughput / one stream alone",
            f"{r['throughput_tok_s']:.1f} / {r['one_stream_tok_s']:.1f} tok/s = {r['streams_vs_one_x']:.1f}x",
        ),
    ]
    cap = 2 * args.output_tokens
    for name, what in (("fixed", f"{args.output_tokens} tokens each"), ("natural", f"to EOS, cap {cap}")):
        rows.append((f"{n} requests ({what}): engine", f"{r[f'engine_{name}_tok_s']:.1f} tok/s"))
        if f"hf_serial_{name}_tok_s" in r:
            rows += [
                (
                    f"{n} requests ({what}): transformers one at a time",
                    f"{r[f'hf_serial_{name}_tok_s']:.1f} tok/s (engine {r[f'x_vs_hf_serial_{name}']:.1f}x)",
                ),
                (
                    f"{n} requests ({what}): transformers padded batch",
                    f"{r[f'hf_padded_{name}_tok_s']:.1f} tok/s (engine {r[f'x_vs_hf_padded_{name}']:.2f}x)",
                ),
            ]
    rows.append(("load average during run", f"{r['load_avg']:.1f}"))
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"| {k.ljust(width)} | {v} |" for k, v in rows)
