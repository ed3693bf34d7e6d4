"""The benchmark's table: what it reports beside the speeds."""

from __future__ import annotations

import argparse

from local_backend.bench import format_table

RESULT = {
    "model": "m",
    "device": "cpu",
    "dtype": "torch.bfloat16",
    "threads": 2,
    "load_avg": 0.1,
    "weight_bytes": 269e6,
    "kv_cache_bytes": 189e6,
    "rss_after_load_mb": 604.2,
    "peak_rss_load_mb": 650.9,
    "rss_after_run_mb": 640.0,
    "bandwidth_gb_s": 30.0,
    "prefill_tok_s": 600.0,
    "decode_b1_tok_s": 80.0,
    "ttft_p50_ms": 900.0,
    "ttft_max_ms": 1000.0,
    "tpot_p50_ms": 30.0,
    "throughput_tok_s": 400.0,
    "one_stream_tok_s": 62.5,
    "streams_vs_one_x": 6.4,
    "engine_fixed_tok_s": 500.0,
    "engine_natural_tok_s": 450.0,
}


def test_table_reports_memory_and_the_gain_of_sixteen_streams() -> None:
    args = argparse.Namespace(prompt_tokens=512, concurrency=16, output_tokens=64)
    table = dict(
        (cells[1].strip(), cells[2].strip())
        for cells in (line.split("|") for line in format_table(RESULT, args).splitlines())
    )
    assert (
        table["process RSS after load / peak during load / after the engine's runs"] == "604 / 651 / 640 MB"
    )
    assert table["KV-cache budget (pages committed as used)"] == "189 MB"
    assert table["16 streams: total throughput / one stream alone"] == "400.0 / 62.5 tok/s = 6.4x"
