"""bf16 panels with several rows round their activations to bf16; a prompt's last row is multiplied
unrounded, so a near-tie in the first answer token resolves as in fp32."""

from __future__ import annotations

import pytest

from local_backend.config import EngineConfig
from local_backend.engine import LLMEngine
from local_backend.sequence import SamplingParams
from local_backend.weights import Checkpoint

CAPITAL = [{"role": "user", "content": "What is the capital of France?"}]


def test_the_bundled_models_near_tie_answers_as_in_fp32(checkpoint: Checkpoint) -> None:
    bf16 = LLMEngine(checkpoint, EngineConfig(dtype="bfloat16", num_threads=1, kv_cache_bytes=8 * 1024**2))
    if not bf16.runner.model.panels:
        pytest.skip("no C kernels here: bf16 runs torch's ops")
    ids = bf16.tokenizer.encode_chat(CAPITAL)
    params = SamplingParams(max_tokens=8, temperature=0, logprobs=True, top_logprobs=2)
    answer = bf16.generate([ids], params)[0]
    # fp32 reads "The" -1.883 against "L" -1.965; one rounding of the prompt made them equal.
    (first, lp_first), (_, lp_second) = answer.logprobs[0].top
    assert bf16.tokenizer.decode([first]) == "The" and lp_first - lp_second > 0.02
    assert answer.text == "The capital of France is Paris."
