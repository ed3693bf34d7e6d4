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
import os
import statistics
import time
from typing import Any

import orjson
import torch

from local_backend.async_engine import AsyncEngine
from local_backend.config import EngineConfig
from local_backend.engine import LLMEngine
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


def bench_hf(checkpoint: Checkpoint, ids: list[list[int]], tokens: int, pad_id: int) -> dict[str, float]:
    """The same greedy workload through transformers `generate`: one request at a time, then one padded
    batch. Weights are our dequantised tensors, so only the serving differs."""
    import transformers

    mc = checkpoint.config
    config = transformers.LlamaConfig(
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
        pad_token_id=pad_id,
    )
    model = transformers.LlamaForCausalLM(config).eval()
    model.load_state_dict(checkpoint.tensors, strict=False)
    model.tie_weights()
    kwargs = {"max_new_tokens": tokens, "min_new_tokens": tokens, "do_sample": False, "pad_token_id": pad_id}
    with torch.inference_mode():
        model.generate(torch.tensor([ids[0]]), max_new_tokens=2, do_sample=False, pad_token_id=pad_id)
        start = time.perf_counter()
        for p in ids:
            model.generate(
                torch.tensor([p]), attention_mask=torch.ones(1, len(p), dtype=torch.long), **kwargs
            )
        serial = len(ids) * tokens / (time.perf_counter() - start)
        width = max(len(p) for p in ids)
        batch = torch.tensor([[pad_id] * (width - len(p)) + p for p in ids])
        mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in ids])
        start = time.perf_counter()
        model.generate(batch, attention_mask=mask, **kwargs)
        padded = len(ids) * tokens / (time.perf_counter() - start)
    return {"hf_serial_tok_s": serial, "hf_padded_batch_tok_s": padded}


def run_bench(args: argparse.Namespace) -> int:
    from local_backend.cli import engine_options

    options = engine_options(args)
    options.setdefault("max_num_batched_tokens", max(args.prompt_tokens, 1024))
    config = EngineConfig.from_options(options)
    checkpoint = load_checkpoint(args.model)
    engine = LLMEngine(checkpoint, config)
    runner = engine.runner
    threads = torch.get_num_threads()
    res: dict[str, Any] = {
        "model": engine.model_name,
        "device": str(runner.device),
        "dtype": str(runner.dtype),
        "threads": threads,
        "load_avg": os.getloadavg()[0],
        "weight_bytes": runner.weight_bytes,
        "kv_blocks": runner.num_blocks,
    }

    def note(key: str, value: float) -> None:
        res[key] = value
        print(f"{key}: {value:.2f}", flush=True)  # a long run shows progress as it goes

    note("bandwidth_gb_s", measure_bandwidth(runner.device))
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
    start = time.perf_counter()
    engine.generate(ids, SamplingParams(max_tokens=args.output_tokens, temperature=0, ignore_eos=True))
    note("engine_batch_tok_s", args.concurrency * args.output_tokens / (time.perf_counter() - start))
    pad = min(engine.tokenizer.eos_ids or {0})
    del engine
    streaming = AsyncEngine(checkpoint, config)
    for key, value in asyncio.run(_streams(streaming, ids, args.output_tokens)).items():
        note(key, value)
    streaming.shutdown()
    if not args.no_hf:
        for key, value in bench_hf(checkpoint, ids, args.output_tokens, pad).items():
            note(key, value)
        res["x_vs_hf_serial"] = res["engine_batch_tok_s"] / res["hf_serial_tok_s"]
        res["x_vs_hf_padded"] = res["engine_batch_tok_s"] / res["hf_padded_batch_tok_s"]
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
    n = args.concurrency
    rows += [
        (f"{n} streams: TTFT p50 / max", f"{r['ttft_p50_ms']:.0f} / {r['ttft_max_ms']:.0f} ms"),
        (f"{n} streams: time per output token p50", f"{r['tpot_p50_ms']:.1f} ms"),
        (f"{n} streams: total throughput", f"{r['throughput_tok_s']:.1f} tok/s"),
        (f"{n} requests, engine.generate", f"{r['engine_batch_tok_s']:.1f} tok/s"),
    ]
    if "hf_serial_tok_s" in r:
        rows += [
            (
                f"{n} requests, transformers one at a time",
                f"{r['hf_serial_tok_s']:.1f} tok/s (engine {r['x_vs_hf_serial']:.1f}x)",
            ),
            (
                f"{n} requests, transformers padded batch",
                f"{r['hf_padded_batch_tok_s']:.1f} tok/s (engine {r['x_vs_hf_padded']:.2f}x)",
            ),
        ]
    rows.append(("load average during run", f"{r['load_avg']:.1f}"))
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"| {k.ljust(width)} | {v} |" for k, v in rows)
