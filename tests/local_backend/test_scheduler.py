"""The scheduler driven by a fake model: every sampled token is 7, the end-of-sequence id is 0."""

from local_backend.block_manager import BlockManager
from local_backend.scheduler import ScheduledBatch, Scheduler
from local_backend.sequence import SamplingParams, SeqStatus, Sequence


def make(num_blocks: int = 64, block_size: int = 4, max_seqs: int = 8, budget: int = 64) -> Scheduler:
    return Scheduler(BlockManager(num_blocks, block_size), max_seqs, budget)


def req(name: str, n_prompt: int, max_tokens: int = 4, first: int = 1) -> Sequence:
    return Sequence(
        name, list(range(first, first + n_prompt)), SamplingParams(max_tokens=max_tokens), frozenset({0})
    )


def step(s: Scheduler) -> ScheduledBatch:
    batch = s.schedule()
    assert batch is not None
    sampled = {
        q.seq_id: 7
        for q, n in zip(batch.seqs, batch.num_new, strict=True)
        if q.num_computed_tokens + n == len(q)
    }
    s.postprocess(batch, sampled)
    return batch


def run(s: Scheduler, limit: int = 500) -> int:
    steps = 0
    while s.has_work:
        step(s)
        steps += 1
        assert steps < limit
    return steps


def test_new_requests_join_a_running_batch() -> None:
    s = make()
    a = req("a", 5, max_tokens=10)
    s.add(a)
    step(s)
    step(s)
    b = req("b", 3, max_tokens=2, first=50)
    s.add(b)
    batch = step(s)
    assert batch.seqs == [a, b] and batch.num_decode == 1 and batch.num_new == [1, 3]
    run(s)
    assert a.num_output_tokens == 10 and b.num_output_tokens == 2
    assert a.finish_reason == b.finish_reason == "length"


def test_long_prompt_is_prefilled_in_chunks_without_stalling_decodes() -> None:
    s = make(budget=8)
    a = req("a", 3, max_tokens=20)
    s.add(a)
    step(s)
    s.add(req("b", 20, first=100))
    sizes = [step(s).num_new for _ in range(3)]
    assert sizes == [[1, 7], [1, 7], [1, 6]]  # a decodes every step; b's prompt arrives 7, 7, 6


def test_requests_beyond_max_num_seqs_wait() -> None:
    s = make(max_seqs=2)
    for i in range(5):
        s.add(req(str(i), 4, first=10 * i + 1))
    step(s)
    assert len(s.running) == 2 and len(s.waiting) == 3
    run(s)
    assert not s.running and not s.waiting


def test_preemption_when_blocks_run_out_then_everyone_finishes() -> None:
    s = make(num_blocks=6, block_size=4)
    seqs = [req(str(i), 3, max_tokens=8, first=10 * i + 1) for i in range(3)]
    for q in seqs:
        s.add(q)
    preempted = 0
    while s.has_work:
        batch = s.schedule()
        assert batch is not None
        preempted += len(batch.preempted)
        s.postprocess(
            batch,
            {
                q.seq_id: 7
                for q, n in zip(batch.seqs, batch.num_new, strict=True)
                if q.num_computed_tokens + n == len(q)
            },
        )
    assert preempted > 0
    assert all(q.status is SeqStatus.FINISHED and q.num_output_tokens == 8 for q in seqs)
    assert s.bm.num_free == 6


def test_preempted_sequence_recomputes_its_generated_tokens() -> None:
    s = make(num_blocks=3, block_size=4)
    a, b = req("a", 4, max_tokens=6), req("b", 3, max_tokens=6, first=20)
    s.add(a)
    s.add(b)
    while b.num_preemptions == 0 and s.has_work:
        step(s)
    assert b.status is SeqStatus.WAITING and b.num_computed_tokens == 0 and b.num_output_tokens > 0
    run(s)
    assert b.num_output_tokens == 6 and b.token_ids[:3] == [20, 21, 22]


def test_eos_finishes_with_stop() -> None:
    s = make()
    a = req("a", 3, max_tokens=10)
    s.add(a)
    batch = s.schedule()
    s.postprocess(batch, {"a": 0})
    assert a.finish_reason == "stop" and not s.has_work


def test_prefix_cache_hit_through_the_scheduler() -> None:
    s = make(block_size=4)
    s.add(req("a", 13))
    run(s)
    b = req("b", 13)
    s.add(b)
    batch = step(s)
    assert b.num_cached_tokens == 12 and batch.num_new == [1]


def test_request_larger_than_the_cache_is_refused_up_front() -> None:
    s = make(num_blocks=2, block_size=4)
    try:
        s.add(req("a", 6, max_tokens=10))
    except ValueError:
        return
    raise AssertionError("expected ValueError")
