"""Leave-one-dataset-out evaluation of the router against baselines (offline tooling).

For each held-out file with two tiers or more: train on every other file, minus any prompt that also
appears in the held-out one (the shared files overlap: all of RouterDC's MMLU split is inside
RouteLLM's MMLU, its HumanEval inside DCRouter, half of ARC in both ARC files), score the held-out
prompts, and compute APGR and CPT(50%) on the file's tier pair (`data.OutcomeSet.pair`: the lowest
and the highest tier's mean outcome per prompt) for ours and each baseline, with 95% bootstrap
intervals (`intervals`). Then two summaries: the mean over folds, and the pooled *mixed-traffic*
score, every held-out prompt of every fold ranked together by its fold's score, each judged on its
own file's pair. The seven-7B files (one tier, no gap) train the tier curves only and are not folds.

Beside the routers, each fold gets an in-domain reference: the same features fitted on the held-out
file's *own* gain, scored by cross-validation. No router here has those labels; the reference shows
how much of the gap this feature family could close if it had them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from sklearn.linear_model import Ridge

from gateway.route_cli.data import OutcomeSet, normalise
from gateway.route_cli.intervals import (
    RESAMPLES,
    SEED,
    Interval,
    bootstrap_metrics,
    percentile_interval,
    resample_indices,
)
from gateway.route_cli.train import FeatureMatrix, TrainConfig, design, fit_score, standardisation, target_of
from routing.metrics import RouterMetrics, evaluate

METHODS = ("switchyard", "length", "litellm", "random")
BOOTSTRAPPED = ("switchyard", "length", "litellm")
RANDOM_SEEDS = 10
REFERENCE_SPLITS = 5
TARGET_APGR = 0.60


@dataclass
class FoldResult:
    name: str
    n: int
    weak: str
    strong: str
    metrics: dict[str, RouterMetrics]
    # per bootstrapped method: (APGR on each resample, CPT(50%) on each resample)
    resampled: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)
    reference: RouterMetrics | None = None  # in-domain reference

    def interval(self, method: str, metric: str) -> Interval | None:
        if method not in self.resampled:
            return None
        return percentile_interval(self.resampled[method][0 if metric == "apgr" else 1])


@dataclass
class EvalReport:
    folds: list[FoldResult]
    pooled: FoldResult
    # The same pooling over the files judged small -> large only: one pair for every prompt, so the
    # ranking is not also asked to guess which tiers a file happened to run (None: no such file).
    pooled_common: FoldResult | None
    resamples: int
    seed: int

    def mean(self, method: str) -> tuple[float, float]:
        return (
            float(np.mean([f.metrics[method].apgr for f in self.folds])),
            float(np.mean([f.metrics[method].cpt50 for f in self.folds])),
        )

    def mean_interval(self, method: str, metric: str) -> Interval | None:
        """Fold b's resample b, averaged over folds: the spread of the LODO mean."""
        if method not in BOOTSTRAPPED:
            return None
        k = 0 if metric == "apgr" else 1
        return percentile_interval(np.mean([f.resampled[method][k] for f in self.folds], axis=0))


def folds_of(sets: list[OutcomeSet]) -> list[int]:
    """Indices of the files that are held out in turn: those with a tier gap to judge."""
    return [k for k, s in enumerate(sets) if s.has_gap]


def training_parts(
    held: int, sets: list[OutcomeSet], matrices: list[FeatureMatrix], config: TrainConfig
) -> list[tuple[FeatureMatrix, np.ndarray]]:
    """Every other file's features and training target, minus the prompts the held-out file also has."""
    held_keys = {normalise(p) for p in sets[held].prompts}
    parts = []
    for j, (outcome, fm) in enumerate(zip(sets, matrices, strict=True)):
        if j == held:
            continue
        keep = np.array([normalise(p) not in held_keys for p in outcome.prompts])
        if keep.sum() >= 20:
            parts.append((fm.rows(np.flatnonzero(keep)), target_of(outcome, config)[keep]))
    return parts


def in_domain_reference(
    fm: FeatureMatrix, weak: np.ndarray, strong: np.ndarray, config: TrainConfig
) -> RouterMetrics:
    """Out-of-fold scores of a ridge fitted on the file's own gain (strong - weak), over
    REFERENCE_SPLITS random splits."""
    x = design(fm, *standardisation(fm.dense), config.dense_weight)
    target = strong - weak
    scores = np.empty(len(target))
    for part in np.array_split(np.random.default_rng(0).permutation(len(target)), REFERENCE_SPLITS):
        train = np.setdiff1d(np.arange(len(target)), part)
        scores[part] = Ridge(alpha=config.alpha).fit(x[train], target[train]).predict(x[part])
    return evaluate(scores, weak, strong)


def _random_metrics(n: int, weak: np.ndarray, strong: np.ndarray) -> RouterMetrics:
    runs = [evaluate(np.random.default_rng(seed).random(n), weak, strong) for seed in range(RANDOM_SEEDS)]
    curve = tuple(
        zip(
            np.mean([[p[0] for p in r.curve] for r in runs], axis=0),
            np.mean([[p[1] for p in r.curve] for r in runs], axis=0),
            strict=True,
        )
    )
    return RouterMetrics(
        apgr=float(np.mean([r.apgr for r in runs])),
        cpt50=float(np.mean([r.cpt50 for r in runs])),
        cpt80=float(np.mean([r.cpt80 for r in runs])),
        weak_quality=runs[0].weak_quality,
        strong_quality=runs[0].strong_quality,
        curve=tuple((float(a), float(b)) for a, b in curve),
    )


def _judge(
    name: str,
    weak_name: str,
    strong_name: str,
    scores: dict[str, np.ndarray],
    weak: np.ndarray,
    strong: np.ndarray,
    index: np.ndarray,
) -> FoldResult:
    metrics = {m: evaluate(scores[m], weak, strong) for m in BOOTSTRAPPED}
    metrics["random"] = _random_metrics(len(weak), weak, strong)
    resampled = {m: bootstrap_metrics(scores[m], weak, strong, index) for m in BOOTSTRAPPED}
    return FoldResult(name, len(weak), weak_name, strong_name, metrics, resampled)


def run_folds(
    sets: list[OutcomeSet],
    matrices: list[FeatureMatrix],
    litellm_scores: list[np.ndarray],
    config: TrainConfig,
    resamples: int = RESAMPLES,
    seed: int = SEED,
    reference: bool = True,
) -> EvalReport:
    held_out = []
    for k in folds_of(sets):
        ours = fit_score(training_parts(k, sets, matrices, config), config).score(matrices[k])
        weak, strong = sets[k].pair()
        ok = np.flatnonzero(~(np.isnan(weak) | np.isnan(strong)))
        scores = {
            "switchyard": ours[ok],
            "length": matrices[k].prompt_tokens[ok],
            "litellm": litellm_scores[k][ok],
        }
        held_out.append((k, ok, scores, weak[ok], strong[ok]))
    indices = resample_indices([len(ok) for _, ok, _, _, _ in held_out], resamples, seed)
    folds = []
    for (k, ok, scores, weak, strong), index in zip(held_out, indices, strict=True):
        fold = _judge(sets[k].name, sets[k].weak, sets[k].strong, scores, weak, strong, index)
        if reference:
            fold.reference = in_domain_reference(matrices[k].rows(ok), weak, strong, config)
        folds.append(fold)
    pooled = _pool("pooled (mixed traffic)", "each file's pair", held_out, indices)
    common = [i for i, h in enumerate(held_out) if (sets[h[0]].weak, sets[h[0]].strong) == ("small", "large")]
    pooled_common = (
        _pool(
            "pooled small -> large files",
            "small -> large",
            [held_out[i] for i in common],
            [indices[i] for i in common],
        )
        if common
        else None
    )
    return EvalReport(folds, pooled, pooled_common, resamples, seed)


def _pool(name: str, pair: str, held_out: list, indices: list[np.ndarray]) -> FoldResult:
    """Every held-out prompt of the given folds ranked together by its own fold's score; resample b
    of the pool is every fold's resample b (a bootstrap stratified by file)."""
    offsets = np.cumsum([0] + [len(h[1]) for h in held_out])[:-1]
    return _judge(
        name,
        pair,
        "",
        {m: np.concatenate([h[2][m] for h in held_out]) for m in BOOTSTRAPPED},
        np.concatenate([h[3] for h in held_out]),
        np.concatenate([h[4] for h in held_out]),
        np.hstack([index + offset for index, offset in zip(indices, offsets, strict=True)]),
    )
