"""Leave-one-dataset-out evaluation of the router against baselines (offline tooling).

For each held-out file: train on every other file, minus any prompt that also appears in the
held-out one (the shared files overlap: all of RouterDC's MMLU split is inside RouteLLM's MMLU, its
HumanEval inside DCRouter, half of ARC in both ARC files), score the held-out prompts, and compute
APGR / CPT(50%) / CPT(80%) on its weak/strong pair for ours and each baseline.

Routing folds are the files whose weak/strong pair differs in capability class (Mixtral vs GPT-4,
7-9B vs 49-70B). RouterDC's seven-7B files compare models of one size; they train the classifier
and are evaluated too, but reported apart, since a "strong" 7B model beating a "weak" one there is
mostly per-prompt noise that no prompt-only router can predict.

Beside the routers, each routing fold gets an in-domain reference: the same features fitted on the
held-out file's *own* labels (its pair's gain, strong minus weak), scored by cross-validation. No
router here has those labels; the reference shows how much of the gap this feature family could
close if it had them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sklearn.linear_model import Ridge

from gateway.route_cli.data import OutcomeSet, normalise
from gateway.route_cli.train import (
    FeatureMatrix,
    TrainConfig,
    design,
    fit_score,
    mean_success,
    standardisation,
)
from routing.metrics import RouterMetrics, evaluate

METHODS = ("switchyard", "length", "litellm", "random")
RANDOM_SEEDS = 10
REFERENCE_SPLITS = 5


@dataclass
class FoldResult:
    name: str
    routing_fold: bool
    n: int
    weak: str
    strong: str
    metrics: dict[str, RouterMetrics]
    reference: RouterMetrics | None = None  # in-domain reference, routing folds only


def is_routing_fold(outcome: OutcomeSet) -> bool:
    return outcome.source != "routerdc"


def training_parts(
    held: int, sets: list[OutcomeSet], matrices: list[FeatureMatrix]
) -> list[tuple[FeatureMatrix, np.ndarray]]:
    held_keys = {normalise(p) for p in sets[held].prompts}
    parts = []
    for j, (outcome, fm) in enumerate(zip(sets, matrices, strict=True)):
        if j == held:
            continue
        keep = np.array([normalise(p) not in held_keys for p in outcome.prompts])
        if keep.sum() >= 20:
            parts.append((fm.rows(np.flatnonzero(keep)), mean_success(outcome)[keep]))
    return parts


def in_domain_reference(
    fm: FeatureMatrix, weak: np.ndarray, strong: np.ndarray, config: TrainConfig
) -> RouterMetrics:
    """Out-of-fold scores of a ridge fitted on the file's own gain (strong - weak), over
    REFERENCE_SPLITS random splits."""
    x = design(fm, *standardisation(fm.dense), config.dense_weight)
    gain = strong - weak
    scores = np.empty(len(gain))
    for part in np.array_split(np.random.default_rng(0).permutation(len(gain)), REFERENCE_SPLITS):
        train = np.setdiff1d(np.arange(len(gain)), part)
        scores[part] = Ridge(alpha=config.alpha).fit(x[train], gain[train]).predict(x[part])
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


def run_folds(
    sets: list[OutcomeSet],
    matrices: list[FeatureMatrix],
    litellm_scores: list[np.ndarray],
    config: TrainConfig,
) -> list[FoldResult]:
    results = []
    for k, held in enumerate(sets):
        ours = fit_score(training_parts(k, sets, matrices), config).score(matrices[k])
        weak, strong = held.column(held.weak), held.column(held.strong)
        ok = ~(np.isnan(weak) | np.isnan(strong))
        weak, strong = weak[ok], strong[ok]
        metrics = {
            "switchyard": evaluate(ours[ok], weak, strong),
            "length": evaluate(matrices[k].prompt_tokens[ok], weak, strong),
            "litellm": evaluate(litellm_scores[k][ok], weak, strong),
            "random": _random_metrics(int(ok.sum()), weak, strong),
        }
        routing = is_routing_fold(held)
        reference = (
            in_domain_reference(matrices[k].rows(np.flatnonzero(ok)), weak, strong, config)
            if routing
            else None
        )
        results.append(
            FoldResult(held.name, routing, int(ok.sum()), held.weak, held.strong, metrics, reference)
        )
    return results


def _row(cells: list[str]) -> str:
    return "| " + " | ".join(cells) + " |"


def format_table(results: list[FoldResult], routing_folds: bool) -> str:
    chosen = [r for r in results if r.routing_fold == routing_folds]
    if not chosen:
        return ""
    header = ["fold (held out)", "n", "weak -> strong"]
    for method in METHODS:
        header += [f"{method} APGR", f"{method} CPT50", f"{method} CPT80"]
    lines = [_row(header), _row(["---"] * len(header))]

    def cells(metrics: dict[str, RouterMetrics]) -> list[str]:
        out = []
        for method in METHODS:
            m = metrics[method]
            out += [f"{m.apgr:.3f}", f"{100 * m.cpt50:.1f}%", f"{100 * m.cpt80:.1f}%"]
        return out

    for r in chosen:
        pair = f"{r.weak.split('/')[-1]} -> {r.strong.split('/')[-1]}"
        lines.append(_row([r.name, str(r.n), pair, *cells(r.metrics)]))
    mean = {method: _mean([r.metrics[method] for r in chosen]) for method in METHODS}
    lines.append(_row(["**mean**", str(sum(r.n for r in chosen)), "", *cells(mean)]))
    return "\n".join(lines)


def _mean(metrics: list[RouterMetrics]) -> RouterMetrics:
    return RouterMetrics(
        apgr=float(np.mean([m.apgr for m in metrics])),
        cpt50=float(np.mean([m.cpt50 for m in metrics])),
        cpt80=float(np.mean([m.cpt80 for m in metrics])),
        weak_quality=0.0,
        strong_quality=0.0,
        curve=(),
    )


def format_reference(results: list[FoldResult]) -> str:
    """Ours on each held-out file beside the in-domain reference on the same file."""
    chosen = [r for r in results if r.reference is not None]
    header = ["fold", "switchyard APGR (held out)", "CPT50", "in-domain reference APGR", "CPT50"]
    lines = [_row(header), _row(["---"] * len(header))]
    rows = [(r.name, r.metrics["switchyard"], r.reference) for r in chosen]
    rows.append(("**mean**", _mean([r[1] for r in rows]), _mean([r[2] for r in rows])))
    for name, ours, ref in rows:
        lines.append(
            _row(
                [
                    name,
                    f"{ours.apgr:.3f}",
                    f"{100 * ours.cpt50:.1f}%",
                    f"{ref.apgr:.3f}",
                    f"{100 * ref.cpt50:.1f}%",
                ]
            )
        )
    return "\n".join(lines)


def target_check(results: list[FoldResult]) -> list[str]:
    """The issue's bar on routing folds, stated plainly (pass or fail)."""
    chosen = [r for r in results if r.routing_fold]
    mean_apgr = float(np.mean([r.metrics["switchyard"].apgr for r in chosen]))
    mean_cpt = float(np.mean([r.metrics["switchyard"].cpt50 for r in chosen]))
    beats = [
        r.name
        for r in chosen
        if r.metrics["switchyard"].apgr > max(r.metrics["length"].apgr, r.metrics["litellm"].apgr)
    ]
    return [
        f"mean APGR {mean_apgr:.3f} (target >= 0.70): {'PASS' if mean_apgr >= 0.70 else 'FAIL'}",
        f"mean CPT(50%) {100 * mean_cpt:.1f}% (target <= 30%): {'PASS' if mean_cpt <= 0.30 else 'FAIL'}",
        f"beats length and litellm APGR on {len(beats)}/{len(chosen)} routing folds"
        + (
            ""
            if len(beats) == len(chosen)
            else f" (not on: {', '.join(r.name for r in chosen if r.name not in beats)})"
        ),
    ]
