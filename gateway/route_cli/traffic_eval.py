"""Does retraining on a team's labels help? `route eval --traffic` and `route simulate`.

Both compare two routers on the same held-out prompts: the public-data router alone and the same
router retrained on the labels (`traffic.fit_traffic`), each with a 95% percentile bootstrap interval
over prompts, and the paired difference (retrained minus public on the same resample) with its own.

- `eval --traffic`: the export's labelled rows, oldest first; the newest `holdout` share is held out
  and judged on the qualities its verdicts and ratings give (`traffic.labels_of`), the rest trains.
- `simulate`: each public outcome file with a tier gap stands for a team's traffic. The public-only
  router is the leave-one-dataset-out one (trained on every other file, minus overlapping prompts,
  as `route eval` does). A random `reveal` share of the file is labelled as a shadow judge would
  label it: per prompt, one model drawn from the file's weak tier and one from its strong tier,
  and a pairwise verdict from their two outcomes (the strong one right and the weak one wrong: a
  loss, and so on). Those export-shaped rows go through the same label mapping and fit as real
  traffic. The rest of the file is judged as `route eval` judges it (the tiers' mean outcomes).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from gateway.route_cli import RouteInputError
from gateway.route_cli.data import OutcomeSet
from gateway.route_cli.evaluate import folds_of, training_parts
from gateway.route_cli.intervals import Interval, bootstrap_metrics, percentile_interval, resample_indices
from gateway.route_cli.traffic import TrafficConfig, TrafficLabels, fit_traffic, labels_of, prior_score
from gateway.route_cli.train import FeatureMatrix, FittedScore, TrainConfig, featurize_bodies, fit_score
from routing.artifact import RouterArtifact
from routing.metrics import evaluate

ROUTERS = ("public", "retrained", "length")


@dataclass
class Comparison:
    name: str
    labels: int  # labelled prompts the retrained router learnt from
    held: int  # prompts it is judged on
    apgr: dict[str, float]
    resampled: dict[str, np.ndarray]  # APGR on each bootstrap resample, per router

    def interval(self, router: str) -> Interval:
        return percentile_interval(self.resampled[router])

    @property
    def difference(self) -> float:
        return self.apgr["retrained"] - self.apgr["public"]

    def difference_interval(self) -> Interval:
        return percentile_interval(self.resampled["retrained"] - self.resampled["public"])


def compare(
    name: str,
    labels: int,
    scores: dict[str, np.ndarray],
    weak: np.ndarray,
    strong: np.ndarray,
    index: np.ndarray,
) -> Comparison:
    return Comparison(
        name,
        labels,
        len(weak),
        {r: evaluate(scores[r], weak, strong).apgr for r in ROUTERS},
        {r: bootstrap_metrics(scores[r], weak, strong, index)[0] for r in ROUTERS},
    )


def mean_of(name: str, rows: list[Comparison]) -> Comparison:
    """The mean over rows; resample b of the mean is the mean of every row's resample b."""
    return Comparison(
        name,
        sum(r.labels for r in rows),
        sum(r.held for r in rows),
        {k: float(np.mean([r.apgr[k] for r in rows])) for k in ROUTERS},
        {k: np.mean([r.resampled[k] for r in rows], axis=0) for k in ROUTERS},
    )


def format_comparisons(rows: list[Comparison], what: str) -> str:
    lines = [
        f"| {what} | labels learnt from | held out | public-only APGR | retrained APGR | difference"
        " | length APGR |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in rows:
        name = f"**{r.name}**" if r.name == "mean" else r.name
        lines.append(
            f"| {name} | {r.labels:,} | {r.held:,} | {r.apgr['public']:.3f} {r.interval('public')} | "
            f"{r.apgr['retrained']:.3f} {r.interval('retrained')} | {r.difference:+.3f} "
            f"{r.difference_interval()} | {r.apgr['length']:.3f} {r.interval('length')} |"
        )
    return "\n".join(lines)


def eval_traffic(
    prior: RouterArtifact,
    traffic: TrafficLabels,
    holdout: float,
    config: TrafficConfig,
    resamples: int,
    seed: int,
) -> Comparison:
    n_held = int(np.ceil(holdout * len(traffic)))
    if len(traffic) - n_held < 2 or n_held < 2:
        raise RouteInputError(
            f"{len(traffic)} labelled rows: too few to train on {1 - holdout:.0%} and judge {holdout:.0%}"
        )
    order = np.arange(len(traffic))
    train, held = order[: len(traffic) - n_held], order[len(traffic) - n_held :]
    fm = featurize_bodies(traffic.bodies)
    public = prior_score(prior)
    retrained = fit_traffic(public, fm.rows(train), traffic.gain[train], config)
    weak, strong = traffic.weak[held], traffic.strong[held]
    if strong.mean() <= weak.mean():
        raise RouteInputError(
            f"in the {n_held} held-out rows the strongest candidate is not better on average "
            f"(cheaper tier {weak.mean():.3f}, strongest {strong.mean():.3f}): APGR has no gap to measure"
        )
    scores = _scores(public, retrained, fm.rows(held))
    (index,) = resample_indices([n_held], resamples, seed)
    return compare("held-out traffic (newest)", len(train), scores, weak, strong, index)


def _scores(public: FittedScore, retrained: FittedScore, fm: FeatureMatrix) -> dict[str, np.ndarray]:
    return {"public": public.score(fm), "retrained": retrained.score(fm), "length": fm.prompt_tokens}


def judged_rows(outcome: OutcomeSet, index: np.ndarray, rng: np.random.Generator) -> list[dict]:
    """Export-shaped rows for `index`: one weak-tier and one strong-tier model drawn per prompt
    among those that ran it, and the verdict on the weak one's answer from their outcomes."""
    weak_cols = [m for m, t in enumerate(outcome.tiers) if t == outcome.weak]
    strong_cols = [m for m, t in enumerate(outcome.tiers) if t == outcome.strong]
    rows = []
    for i in index:
        w = _draw(outcome.scores[i, weak_cols], rng)
        s = _draw(outcome.scores[i, strong_cols], rng)
        verdict = "loss" if s > w else "win" if w > s else "tie"
        rows.append(
            {
                "request_id": f"{outcome.name}-{i}",
                "ts": f"{i:08d}",
                "prompt": outcome.prompts[i],
                "messages": [{"role": "user", "content": outcome.prompts[i]}],
                "answered_by": {"deployment": None, "tier": outcome.weak},
                "tiers": {outcome.weak: {"judged": verdict, "against": "strong", "votes": []}},
                "feedback": None,
            }
        )
    return rows


def _draw(values: np.ndarray, rng: np.random.Generator) -> float:
    ran = values[~np.isnan(values)]
    return float(ran[rng.integers(len(ran))])


def simulate(
    sets: list[OutcomeSet],
    matrices: list[FeatureMatrix],
    config: TrainConfig,
    traffic_config: TrafficConfig,
    reveal: float,
    resamples: int,
    seed: int,
) -> list[Comparison]:
    """One row per file with a tier gap, then their mean."""
    rows = []
    rng = np.random.default_rng(seed)
    for k in folds_of(sets):
        outcome = sets[k]
        public = fit_score(training_parts(k, sets, matrices, config), config)
        weak, strong = outcome.pair()
        ok = np.flatnonzero(~(np.isnan(weak) | np.isnan(strong)))
        order = rng.permutation(ok)
        n_reveal = max(2, round(reveal * len(order)))
        revealed, held = np.sort(order[:n_reveal]), np.sort(order[n_reveal:])
        labels = labels_of(judged_rows(outcome, revealed, rng), outcome.name)
        retrained = fit_traffic(public, matrices[k].rows(revealed), labels.gain, traffic_config)
        scores = _scores(public, retrained, matrices[k].rows(held))
        (index,) = resample_indices([len(held)], resamples, int(rng.integers(1 << 31)))
        rows.append(compare(outcome.name, n_reveal, scores, weak[held], strong[held], index))
    if not rows:
        raise RouteInputError("no outcome file has two tiers to stand for a team's traffic")
    return [*rows, mean_of("mean", rows)]
