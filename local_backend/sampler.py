"""Next-token choice for a batch, each row with its own parameters.

Sampling inverts the cumulative distribution: one uniform draw per row, found in the running sum of p.
A seeded request draws from its own generator, so its tokens do not depend on its batch-mates. (Noise
for every token, as the exponential race argmax p / E needs, cost 16 ms for 16 rows of a 49k vocabulary
on one CPU thread, as long as the batch's forward pass; this costs ~1.5 ms.) With our CPU kernels the
argmax and the draw run in C on the kernels' threads (`CpuKernels.sample`, the same uniforms): for 16
rows of SmolLM2's 49k vocabulary torch took 0.8-1.3 ms greedy and 2.0-2.3 ms at temperature 0.8 on its
one thread, C 0.5 and 1.0 ms (a loaded 2-core Zen 3), against a batched step of ~40 ms. Filters
(top-k, top-p, min-p) stay in torch, and the C side draws from what they leave.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from local_backend.sequence import SamplingParams, Sequence

if TYPE_CHECKING:
    from local_backend.cpu_kernels import CpuKernels


@dataclass(slots=True)
class TokenLogprobs:
    logprob: float
    top: list[tuple[int, float]]


def apply_penalties(logits: torch.Tensor, seqs: list[Sequence]) -> torch.Tensor:
    """OpenAI presence/frequency penalties over generated tokens; HF repetition penalty over all tokens."""
    for row, seq in enumerate(seqs):
        p = seq.params
        if not p.has_penalties:
            continue
        vocab = logits.shape[1]
        if p.presence_penalty or p.frequency_penalty:
            out = torch.tensor(seq.output_ids, dtype=torch.long, device=logits.device)
            counts = torch.bincount(out, minlength=vocab)[:vocab].to(logits.dtype)
            logits[row] -= p.frequency_penalty * counts + p.presence_penalty * (counts > 0).to(logits.dtype)
        if p.repetition_penalty != 1.0:
            seen = torch.tensor(sorted(set(seq.token_ids)), dtype=torch.long, device=logits.device)
            vals = logits[row, seen]
            logits[row, seen] = torch.where(
                vals > 0, vals / p.repetition_penalty, vals * p.repetition_penalty
            )
    return logits


def _filter(logits: torch.Tensor, seqs: list[Sequence]) -> torch.Tensor:
    """Temperature, top-k, top-p and min-p, row by row parameters, applied to the whole batch at once."""
    dev = logits.device
    temp = torch.tensor([max(s.params.temperature, 1e-5) for s in seqs], device=dev).unsqueeze(1)
    logits = logits / temp
    top_k = [s.params.top_k for s in seqs]
    if any(k > 0 for k in top_k):
        k = torch.tensor([k if k > 0 else logits.shape[1] for k in top_k], device=dev)
        kth = torch.sort(logits, dim=1, descending=True).values.gather(1, (k - 1).unsqueeze(1))
        logits = logits.masked_fill(logits < kth, float("-inf"))
    top_p = [s.params.top_p for s in seqs]
    if any(p < 1.0 for p in top_p):
        sorted_logits, order = torch.sort(logits, dim=1, descending=True)
        cum = sorted_logits.softmax(1).cumsum(1)
        # Drop a token once the mass before it already reaches top_p; the top token always stays.
        drop = (cum - sorted_logits.softmax(1)) >= torch.tensor(top_p, device=dev).unsqueeze(1)
        logits = logits.masked_fill(torch.zeros_like(drop).scatter(1, order, drop), float("-inf"))
    min_p = [s.params.min_p for s in seqs]
    if any(p > 0 for p in min_p):
        probs = logits.softmax(1)
        floor = torch.tensor(min_p, device=dev).unsqueeze(1) * probs.max(1, keepdim=True).values
        logits = logits.masked_fill(probs < floor, float("-inf"))
    return logits


def _uniforms(seqs: list[Sequence], rows: list[int], device: torch.device) -> torch.Tensor:
    """One draw in [0, 1) for each of `rows`, from the sequence's own generator when it is seeded."""
    u = torch.empty(len(rows), 1, device=device)
    for j, i in enumerate(rows):
        seq = seqs[i]
        if seq.params.seed is not None and seq.generator is None:
            seq.generator = torch.Generator(device=device).manual_seed(seq.params.seed)
        u[j].uniform_(generator=seq.generator)
    return u


def _filtered(p: SamplingParams) -> bool:
    return p.top_k > 0 or p.top_p < 1.0 or p.min_p > 0


def _sample_in_c(logits: torch.Tensor, seqs: list[Sequence], kernels: CpuKernels) -> list[int]:
    """Greedy rows and draws in C; the same uniforms drawn in the same order as the torch path."""
    random_rows = [i for i, s in enumerate(seqs) if not s.params.greedy]
    inv_temp = torch.zeros(len(seqs))
    u = torch.zeros(len(seqs))
    if random_rows:
        picked = [seqs[i] for i in random_rows]
        if any(_filtered(s.params) for s in picked):
            rows = torch.tensor(random_rows)
            kept = _filter(logits[rows], picked)  # divided by the temperature already
            if len(random_rows) < len(seqs):
                logits = logits.clone()  # the caller's logits stay as they are, for logprobs
                logits[rows] = kept
            else:
                logits = kept
            inv_temp[rows] = 1.0
        else:
            inv_temp[random_rows] = torch.tensor([1 / max(s.params.temperature, 1e-5) for s in picked])
        u[random_rows] = _uniforms(seqs, random_rows, logits.device).squeeze(1)
    return kernels.sample(logits.contiguous(), inv_temp, u)


def sample(
    logits: torch.Tensor, seqs: list[Sequence], kernels: CpuKernels | None = None
) -> tuple[list[int], list[TokenLogprobs | None]]:
    """logits [B, V] float32 for the rows that sample this step, in `seqs` order. With `kernels` (CPU,
    fp32 logits) the choice runs in C."""
    logits = apply_penalties(logits, seqs)
    if kernels is not None and logits.is_cpu and logits.dtype is torch.float32:
        token_ids = _sample_in_c(logits, seqs, kernels)
        chosen = torch.tensor(token_ids)
    else:
        chosen = _sample_torch(logits, seqs)
        token_ids = chosen.tolist()
    infos: list[TokenLogprobs | None] = [None] * len(seqs)
    want = [i for i, s in enumerate(seqs) if s.params.logprobs]
    if want:
        rows = torch.tensor(want, device=logits.device)
        logp = logits[rows].log_softmax(1)
        picked = logp.gather(1, chosen[rows].unsqueeze(1)).squeeze(1).tolist()
        k = max(seqs[i].params.top_logprobs for i in want)
        top_v, top_i = logp.topk(max(k, 1), dim=1)
        top_v, top_i = top_v.tolist(), top_i.tolist()
        for j, i in enumerate(want):
            n = seqs[i].params.top_logprobs
            infos[i] = TokenLogprobs(picked[j], list(zip(top_i[j][:n], top_v[j][:n], strict=True)))
    return token_ids, infos


def _sample_torch(logits: torch.Tensor, seqs: list[Sequence]) -> torch.Tensor:
    chosen = torch.empty(len(seqs), dtype=torch.long, device=logits.device)
    greedy_rows = [i for i, s in enumerate(seqs) if s.params.greedy]
    if greedy_rows:
        rows = torch.tensor(greedy_rows, device=logits.device)
        chosen[rows] = logits[rows].argmax(1) if len(greedy_rows) < len(seqs) else logits.argmax(1)
    random_rows = [i for i, s in enumerate(seqs) if not s.params.greedy]
    if random_rows:
        rows = torch.tensor(random_rows, device=logits.device)
        some = logits[rows] if greedy_rows else logits
        cdf = _filter(some, [seqs[i] for i in random_rows]).softmax(1).cumsum_(1)
        u = _uniforms(seqs, random_rows, logits.device)
        # The first token whose running sum passes u * total. u < 1, and the factor keeps the product
        # below the total after rounding, so it never lands past the last token with mass (a bias of
        # 2^-22 against that token, where fp32 sums over the vocabulary err by more).
        target = u * cdf[:, -1:] * (1 - 2**-22)
        chosen[rows] = torch.searchsorted(cdf, target, right=True).squeeze(1)
    return chosen
