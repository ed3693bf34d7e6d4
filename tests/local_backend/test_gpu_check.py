"""local_backend/gpu_check.sh on a machine with no CUDA device, and the parts of the check that need none:
where two greedy runs part and whether that was a near tie, and the decode table's arithmetic."""

from __future__ import annotations

import math
import subprocess
from pathlib import Path

import pytest
import torch

from local_backend.engine import LLMEngine
from local_backend.gpu_check import NO_CUDA, DecodeRow, Greedy, agreement, decode_table, greedy
from local_backend.sampler import TokenLogprobs

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a CUDA device")
def test_the_script_says_there_is_no_cuda_device_and_checks_nothing() -> None:
    run = subprocess.run(
        ["bash", str(REPO / "local_backend" / "gpu_check.sh")], capture_output=True, text=True, timeout=120
    )
    assert run.returncode == NO_CUDA, run.stderr
    assert "no CUDA device here" in run.stdout and "nothing checked" in run.stdout


def _run(tokens: list[int], tops: list[dict[int, float]]) -> Greedy:
    return Greedy(
        tokens, [TokenLogprobs(top[t], list(top.items())) for t, top in zip(tokens, tops, strict=True)]
    )


def test_runs_that_never_part_agree() -> None:
    a = _run([5, 6], [{5: -0.1, 6: -3.0}, {6: -0.2, 5: -2.0}])
    got = agreement(a, a)
    assert (got.matched, got.total, got.gap) == (2, 2, None)
    assert got.within(0.0)


def test_parting_on_a_near_tie_is_within_the_tolerance() -> None:
    cpu = _run([5, 7], [{5: -0.1}, {7: -0.70, 8: -0.74}])
    gpu = _run([5, 8], [{5: -0.1}, {8: -0.69, 7: -0.72}])
    got = agreement(cpu, gpu)
    assert (got.matched, got.total) == (1, 2)
    assert got.gap == pytest.approx(0.04)  # the CPU's side is the wider one
    assert got.within(0.25) and not got.within(0.01)
    assert "at 1: 7 vs 8" in got.describe(cpu, gpu)


def test_parting_far_apart_is_a_disagreement() -> None:
    cpu = _run([5], [{5: -0.1, 9: -4.0}])
    gpu = _run([9], [{9: -0.1, 5: -0.2}])
    assert agreement(cpu, gpu).gap == pytest.approx(3.9)
    assert not agreement(cpu, gpu).within(0.25)


def test_a_token_outside_the_other_sides_top_list_is_infinitely_far() -> None:
    cpu = _run([5], [{5: -0.1, 6: -0.2}])
    gpu = _run([9], [{9: -0.1, 5: -0.15}])
    assert agreement(cpu, gpu).gap == math.inf


def test_decode_rows_turn_tokens_into_weight_bandwidth() -> None:
    row = DecodeRow(batch=16, tok_s=3200.0, weight_bytes=270_000_000)
    assert row.steps_s == 200.0
    assert row.weights_gb_s == pytest.approx(54.0)
    table = decode_table([row], measured_gb_s=3000.0)
    assert table.splitlines()[-1] == "| 16 | 3200 | 200 | 54 | 1.8% |"


def test_greedy_keeps_each_tokens_logprobs(engine: LLMEngine, chat_prompts: list[list[int]]) -> None:
    runs = greedy(engine, chat_prompts[:2], 3)
    assert [len(r.tokens) for r in runs] == [3, 3]
    for r in runs:
        assert [lp.top[0][0] for lp in r.logprobs] == r.tokens  # greedy: each token is its step's top
        assert agreement(r, r).gap is None
