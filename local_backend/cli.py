"""Command line: `python -m local_backend serve|bench`, and the same under `switchyard local`."""

from __future__ import annotations

import argparse
from typing import Any

ENGINE_FLAGS = (
    "device",
    "dtype",
    "kv_cache_mb",
    "max_num_seqs",
    "max_num_batched_tokens",
    "max_model_len",
    "block_size",
    "num_threads",
    "enforce_eager",
    "cpu_kernels",
)


def _engine_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--model", default="smollm2", help="smollm2 (bundled), a .gguf file or a safetensors folder"
    )
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:N (default: cuda if available)")
    p.add_argument(
        "--dtype",
        default=None,
        help="weights: float32 (exact), bfloat16, float16 (default bf16; fp32 on a cpu without a C compiler)",
    )
    p.add_argument(
        "--kv-cache-mb",
        type=float,
        default=None,
        help="KV-cache budget (default: room for --max-model-len tokens; pages taken as used)",
    )
    p.add_argument("--max-num-seqs", type=int, default=None, help="most sequences in one batch")
    p.add_argument("--max-num-batched-tokens", type=int, default=None, help="token budget per step")
    p.add_argument("--max-model-len", type=int, default=None)
    p.add_argument("--block-size", type=int, default=None)
    p.add_argument(
        "--num-threads", type=int, default=None, help="CPU threads: torch's, and the C kernels' for batches"
    )
    p.add_argument("--enforce-eager", action="store_true", default=None, help="no CUDA graphs")
    p.add_argument(
        "--no-cpu-kernels",
        dest="cpu_kernels",
        action="store_false",
        default=None,
        help="CPU decode through torch's ops instead of our compiled C kernels (fp32 by default then)",
    )


def engine_options(args: argparse.Namespace) -> dict[str, Any]:
    return {k: getattr(args, k) for k in ENGINE_FLAGS if getattr(args, k, None) is not None}


def _add(sub: Any) -> None:
    serve = sub.add_parser("serve", help="OpenAI-compatible server for a local model")
    _engine_args(serve)
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8001)
    serve.add_argument(
        "--served-model-name", default=None, help="the model id clients send (default: --model)"
    )
    serve.set_defaults(local_command="serve")
    bench = sub.add_parser("bench", help="throughput, latency and achieved bandwidth")
    _engine_args(bench)
    bench.add_argument("--batch-sizes", default="1,8,32", help="decode batch sizes")
    bench.add_argument("--concurrency", type=int, default=16, help="concurrent streams for TTFT/TPOT")
    bench.add_argument("--output-tokens", type=int, default=64)
    bench.add_argument("--prompt-tokens", type=int, default=512, help="prefill benchmark prompt length")
    bench.add_argument("--no-hf", action="store_true", help="skip the transformers comparison")
    bench.add_argument("--json", default=None, help="also write the results here")
    bench.set_defaults(local_command="bench")


def add_local_commands(subparsers: Any) -> None:
    """Adds `local serve` and `local bench` to a parent CLI's subparsers; dispatch with run_local_command."""
    local = subparsers.add_parser("local", help="the bundled torch engine")
    _add(local.add_subparsers(dest="local_command", required=True))
    local.set_defaults(func=run_local_command)


def run_local_command(args: argparse.Namespace) -> int:
    if args.local_command == "serve":
        from local_backend.server import run_server

        options = engine_options(args)
        if args.served_model_name:
            options["served_model_name"] = args.served_model_name
        run_server(args.model, args.host, args.port, **options)
        return 0
    from local_backend.bench import run_bench

    return run_bench(args)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m local_backend")
    _add(parser.add_subparsers(dest="local_command", required=True))
    return run_local_command(parser.parse_args(argv))
