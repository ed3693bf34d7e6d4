"""End to end through the engine on the bundled model, greedy in fp32 (and the bf16 default against it)."""

import torch

from local_backend.config import EngineConfig
from local_backend.engine import LLMEngine
from local_backend.sequence import SamplingParams
from local_backend.weights import Checkpoint

GREEDY = SamplingParams(max_tokens=16, temperature=0)


def test_batched_and_one_at_a_time_greedy_agree(engine: LLMEngine, chat_prompts: list[list[int]]) -> None:
    together = engine.generate(chat_prompts, GREEDY)
    alone = [engine.generate([p], GREEDY)[0] for p in chat_prompts]
    assert [c.token_ids for c in together] == [c.token_ids for c in alone]
    assert together[0].text == "The capital of France is Paris."
    assert together[0].finish_reason == "stop" and together[1].finish_reason == "length"


def test_stop_string_cuts_the_answer(engine: LLMEngine, chat_prompts: list[list[int]]) -> None:
    [out] = engine.generate([chat_prompts[0]], SamplingParams(max_tokens=24, temperature=0, stop=["Paris"]))
    assert out.text == "The capital of France is " and out.finish_reason == "stop"


def test_stop_token_ids_and_max_tokens(engine: LLMEngine, chat_prompts: list[list[int]]) -> None:
    [full] = engine.generate([chat_prompts[0]], GREEDY)
    [cut] = engine.generate(
        [chat_prompts[0]], SamplingParams(max_tokens=24, temperature=0, stop_token_ids=[full.token_ids[2]])
    )
    assert cut.token_ids == full.token_ids[:3] and cut.finish_reason == "stop"
    [short] = engine.generate([chat_prompts[0]], SamplingParams(max_tokens=2, temperature=0))
    assert short.token_ids == full.token_ids[:2] and short.finish_reason == "length"


def test_seed_makes_sampling_reproducible_across_batches(
    engine: LLMEngine, chat_prompts: list[list[int]]
) -> None:
    seeded = SamplingParams(max_tokens=12, temperature=1.0, top_p=0.95, seed=1234)
    [a] = engine.generate([chat_prompts[1]], seeded)
    b = engine.generate([chat_prompts[1], chat_prompts[2]], [seeded, SamplingParams(max_tokens=12, seed=9)])[
        0
    ]
    assert a.token_ids == b.token_ids


def test_prefix_cache_hit_reports_cached_tokens_and_same_answer(
    engine: LLMEngine, chat_prompts: list[list[int]]
) -> None:
    [first] = engine.generate([chat_prompts[3]], GREEDY)
    [second] = engine.generate([chat_prompts[3]], GREEDY)
    assert second.cached_tokens >= 16 and second.token_ids == first.token_ids


def test_logprobs_of_greedy_tokens_are_the_top_entries(
    engine: LLMEngine, chat_prompts: list[list[int]]
) -> None:
    [out] = engine.generate(
        [chat_prompts[2]], SamplingParams(max_tokens=5, temperature=0, logprobs=True, top_logprobs=3)
    )
    assert out.token_ids and len(out.logprobs) == len(out.token_ids)
    for token, info in zip(out.token_ids, out.logprobs, strict=True):
        assert info.top[0][0] == token and abs(info.top[0][1] - info.logprob) < 1e-6 and info.logprob <= 0
        assert [v for _, v in info.top] == sorted((v for _, v in info.top), reverse=True)


def test_small_cache_preempts_and_queues_64_requests(
    checkpoint: Checkpoint, engine: LLMEngine, chat_prompts: list[list[int]]
) -> None:
    run_on = SamplingParams(max_tokens=16, temperature=0, ignore_eos=True)
    ref = engine.generate(chat_prompts, run_on)
    # 7 blocks of 16 tokens: two ~35-token prompts growing by 16 already do not fit together.
    tiny = LLMEngine(
        checkpoint,
        EngineConfig(
            dtype="float32",
            kv_cache_bytes=7 * 2 * 30 * 16 * 3 * 64 * 4,
            num_threads=1,
            enable_prefix_caching=False,
        ),
    )
    assert tiny.runner.num_blocks == 7
    outs = tiny.generate(chat_prompts, run_on)
    assert tiny.num_preemptions > 0
    assert [o.token_ids for o in outs] == [o.token_ids for o in ref]
    # Short raw prompts keep this cheap: the point is that 64 requests queue instead of failing.
    prompts = [tiny.tokenizer.encode(f"Count: {i}") for i in range(64)]
    many = tiny.generate(prompts, SamplingParams(max_tokens=2, temperature=0, ignore_eos=True))
    assert all(len(o.token_ids) == 2 for o in many)


def test_default_cpu_engine_holds_bf16_and_answers_like_fp32(
    default_engine: LLMEngine, engine: LLMEngine, chat_prompts: list[list[int]]
) -> None:
    """On CPU the default is bf16 weights read by our kernels (where a compiler builds them), fp32
    activations and a bf16 KV cache. One request decodes as fp32 does, and a batch starts as it does:
    a prompt's last row skips the bf16 rounding of batched products, so even the near-ties of the first
    and fourth prompts' first tokens (fp32's best two 0.08 and 0.04 nats apart) go fp32's way. Later
    batched tokens may not (their rows are rounded)."""
    runner = default_engine.runner
    if runner.model.kernels is None:  # no compiler: torch's bf16 products are slow on most CPUs
        assert runner.dtype is torch.float32
        return
    assert runner.dtype is torch.bfloat16 and runner.model.act_dtype is torch.float32
    assert all(k.dtype is v.dtype is torch.bfloat16 for k, v in runner.kv_caches)
    greedy = SamplingParams(max_tokens=6, temperature=0, logprobs=True)
    batched = default_engine.generate(chat_prompts, greedy)
    for prompt, together in zip(chat_prompts, batched, strict=True):
        [alone] = default_engine.generate([prompt], greedy)
        [exact] = engine.generate([prompt], greedy)
        assert alone.token_ids == exact.token_ids and together.token_ids[0] == exact.token_ids[0]
        for a, b in zip(alone.logprobs, exact.logprobs, strict=True):
            assert abs(a.logprob - b.logprob) < 0.1
