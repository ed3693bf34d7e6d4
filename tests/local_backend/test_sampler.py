"""The sampler, through torch's ops and through our C kernels (CPU): both pick the same tokens."""

import pytest
import torch

from local_backend.cpu_kernels import CpuKernels, build_cpu_kernels
from local_backend.sampler import sample
from local_backend.sequence import SamplingParams, Sequence


@pytest.fixture(scope="module", params=["torch", "c"])
def kernels(request: pytest.FixtureRequest) -> CpuKernels | None:
    if request.param == "torch":
        return None
    built = build_cpu_kernels(2)
    if built is None:
        pytest.skip("no C compiler on this machine")
    return built


def seqs(*params: SamplingParams) -> list[Sequence]:
    return [Sequence(f"s{i}", [1, 2, 3], p) for i, p in enumerate(params)]


def logits(rows: int = 1, vocab: int = 50, seed: int = 0) -> torch.Tensor:
    return torch.randn(rows, vocab, generator=torch.Generator().manual_seed(seed)) * 3


def test_greedy_is_argmax(kernels: CpuKernels | None) -> None:
    x = logits(3)
    tokens, _ = sample(x.clone(), seqs(*[SamplingParams(temperature=0)] * 3), kernels)
    assert tokens == x.argmax(1).tolist()


def test_seeded_sampling_is_reproducible_and_independent_of_batch_mates(kernels: CpuKernels | None) -> None:
    x = logits(1) / 6  # flat enough that twenty draws differ
    alone = [sample(x.clone(), s, kernels)[0][0] for s in [seqs(SamplingParams(seed=42))] for _ in range(20)]
    again = [sample(x.clone(), s, kernels)[0][0] for s in [seqs(SamplingParams(seed=42))] for _ in range(20)]
    assert alone == again and len(set(alone)) > 1
    mates = seqs(SamplingParams(seed=42), SamplingParams(temperature=0.7), SamplingParams(seed=7))
    batched = [sample(torch.cat([x, logits(2, seed=1)]), mates, kernels)[0][0] for _ in range(20)]
    assert batched == alone


def test_top_k_one_and_tiny_top_p_are_greedy(kernels: CpuKernels | None) -> None:
    x = logits(2)
    assert (
        sample(x.clone(), seqs(SamplingParams(top_k=1, seed=1), SamplingParams(top_p=1e-6, seed=2)), kernels)[
            0
        ]
        == x.argmax(1).tolist()
    )


def test_min_p_and_top_k_restrict_the_support(kernels: CpuKernels | None) -> None:
    x = logits(1)
    top3 = set(x[0].topk(3).indices.tolist())
    drawn = {
        sample(x.clone(), seqs(SamplingParams(top_k=3, temperature=2.0)), kernels)[0][0] for _ in range(200)
    }
    assert drawn <= top3 and len(drawn) > 1
    probs = x[0].softmax(0)
    allowed = set((probs >= 0.5 * probs.max()).nonzero().flatten().tolist())
    drawn = {sample(x.clone(), seqs(SamplingParams(min_p=0.5)), kernels)[0][0] for _ in range(100)}
    assert drawn <= allowed


def test_penalties_push_repeated_tokens_down(kernels: CpuKernels | None) -> None:
    x = torch.zeros(1, 10)
    x[0, 3] = 1.0
    x[0, 5] = 0.9
    s = Sequence("a", [1], SamplingParams(temperature=0, frequency_penalty=1.0))
    s.append(3)
    assert sample(x.clone(), [s], kernels)[0] == [5]
    s = Sequence("b", [3], SamplingParams(temperature=0, repetition_penalty=1.5))
    assert sample(x.clone(), [s], kernels)[0] == [5]  # 1.0 / 1.5 < 0.9; the prompt counts for this one
    s = Sequence("c", [3], SamplingParams(temperature=0, presence_penalty=2.0))
    assert sample(x.clone(), [s], kernels)[0] == [3]  # presence/frequency look at generated tokens only


def test_logprobs_are_log_softmax_and_top_is_sorted(kernels: CpuKernels | None) -> None:
    x = logits(1)
    _, infos = sample(x.clone(), seqs(SamplingParams(temperature=0, logprobs=True, top_logprobs=3)), kernels)
    ref = x[0].log_softmax(0)
    info = infos[0]
    assert info is not None
    assert abs(info.logprob - ref.max().item()) < 1e-5
    assert [t for t, _ in info.top] == ref.topk(3).indices.tolist()
    assert all(abs(v - ref[t].item()) < 1e-5 for t, v in info.top)


def test_draws_follow_the_softmax(kernels: CpuKernels | None) -> None:
    """The exponential race (argmax of p / E) draws token i with probability p_i."""
    p = torch.tensor([0.5, 0.25, 0.15, 0.1])
    rows = 4000
    x = p.log().expand(rows, -1).clone()
    tokens, _ = sample(x, seqs(*[SamplingParams(temperature=1.0)] * rows), kernels)
    freq = torch.bincount(torch.tensor(tokens), minlength=4).float() / rows
    assert (freq - p).abs().max() < 0.03  # ~4 standard deviations of the largest


@pytest.mark.parametrize("vocab", [49152, 1000, 70])
def test_c_kernels_pick_what_torch_picks(vocab: int) -> None:
    """The same uniforms through both: greedy rows, plain draws, and rows that top-k, top-p and min-p
    filter first (in torch; the C side draws from what they leave), side by side in one batch. Both
    compute the running sum in fp32 in their own order, so they could part where u lands within a
    rounding error of a boundary; over these 1,120 draws they never do."""
    built = build_cpu_kernels(2)
    if built is None:
        pytest.skip("no C compiler on this machine")
    kinds = [
        {"temperature": 0.0},
        {"temperature": 0.8},
        {"temperature": 1.0, "top_p": 0.9},
        {"temperature": 0.7, "top_k": 50},
        {"temperature": 1.3, "min_p": 0.05},
        {"temperature": 1e-6},
        {"temperature": 2.0},
    ]
    for trial in range(10):
        x = logits(16, vocab, seed=trial) * (1 + trial % 3)
        params = [SamplingParams(seed=100 * trial + i, **kinds[i % len(kinds)]) for i in range(16)]
        before = x.clone()
        got, _ = sample(x, seqs(*params), built)
        want, _ = sample(x.clone(), seqs(*params))
        assert got == want
        assert torch.equal(x, before)  # filtering worked on a copy


def test_c_kernels_never_draw_a_filtered_token(kernels: CpuKernels | None) -> None:
    x = torch.zeros(4, 1000)
    x[:, 10:20] = float("-inf")  # top-k keeps 5 of what is left; min_p a tight few
    x[:, 500:505] = 5.0
    params = [SamplingParams(top_k=5, seed=1), SamplingParams(min_p=0.9, seed=2)] * 2
    for _ in range(50):
        tokens, _ = sample(x.clone(), seqs(*params), kernels)
        assert all(500 <= t < 505 for t in tokens)
