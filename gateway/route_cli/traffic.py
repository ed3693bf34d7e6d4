"""Fitting the router to a team's labelled traffic (`route train --traffic`, `route eval --traffic`).

Input: the rows `switchyard quality export` writes (gateway.quality.export). Each row becomes a pair
of qualities for its prompt, the cheaper tier's answer and the route's strongest candidate's:
- judged rows (shadow judging compared a cheaper tier's answer with the strongest's): a loss is
  (0, 1), a tie (1, 1), a win (1, 0), averaged over the tiers judged on that prompt;
- rated rows without a verdict, answered below the large tier: (feedback score, 1): the strongest is
  taken as the reference the cheaper answer is rated against. A rating of a large-tier answer says
  nothing about routing and is skipped.
The training target is strong minus weak: the tier *gain*, as `route train --target gain` uses.

The public-data model is the prior, by a warm start blended by label count: its score is one more
feature whose weight and intercept are fitted freely on the traffic, and the word and token weights
get a ridge *correction* that starts at zero; that fit, mapped onto the prior's scale (same mean and
spread over the traffic prompts), is blended with the prior as (1 - w) prior + w fit, w = n / (n +
`prior_labels`). The correction alone was not enough: ~100 noisy verdicts could turn a good prior
upside down through its free weight (routing/README.md, the simulation). The artifact keeps the
prior's tier curves (its score keeps the prior's scale); its percentiles (`score_quantiles`) are the
team's own traffic's, so a `strong_fraction` is a share of that traffic.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import orjson
from scipy import sparse
from sklearn.linear_model import Ridge

from gateway.route_cli import RouteInputError
from gateway.route_cli.train import FeatureMatrix, FittedScore, body_for, design, featurize_bodies
from routing.artifact import RouterArtifact
from routing.features import DENSE_NAMES, HASH_SIZE

# (weak quality, strong quality) per verdict on the cheaper tier's answer.
VERDICT_QUALITY = {"loss": (0.0, 1.0), "tie": (1.0, 1.0), "win": (1.0, 0.0)}
_PRIOR_SCALE = 30.0  # the prior-score column is scaled up so the L2 penalty barely touches its weight


@dataclass(frozen=True)
class TrafficConfig:
    alpha: float = 100.0  # L2 strength of the correction to the prior's weights
    # The prior counts as this many labels in the blend: the fit's weight is n / (n + prior_labels).
    prior_labels: float = 300.0


@dataclass
class TrafficLabels:
    """Labelled requests: `bodies` for the features, qualities of the cheaper tier's answer (`weak`)
    and of the strongest's (`strong`), `judged` where a verdict (not only a rating) gave them."""

    bodies: list[dict[str, Any]]
    weak: np.ndarray
    strong: np.ndarray
    judged: np.ndarray
    teams: list[str | None]

    def __len__(self) -> int:
        return len(self.bodies)

    @property
    def gain(self) -> np.ndarray:
        return self.strong - self.weak


def read_rows(path: Path) -> list[dict[str, Any]]:
    """The export's rows; a line that is not a JSON object is an input error naming it."""
    rows = []
    with path.open("rb") as handle:
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            try:
                row = orjson.loads(line)
            except orjson.JSONDecodeError:
                raise RouteInputError(f"{path}:{number}: not a JSON object") from None
            if not isinstance(row, dict):
                raise RouteInputError(f"{path}:{number}: not a JSON object")
            rows.append(row)
    return rows


def _qualities(row: dict[str, Any], where: str) -> tuple[float, float, bool] | None:
    tiers = row.get("tiers") or {}
    if not isinstance(tiers, dict):
        raise RouteInputError(f"{where}: tiers must be an object")
    verdicts = []
    for tier, outcome in tiers.items():
        judged = outcome.get("judged") if isinstance(outcome, dict) else None
        if judged not in VERDICT_QUALITY:
            raise RouteInputError(f"{where}: tiers.{tier}.judged must be win, tie or loss")
        verdicts.append(VERDICT_QUALITY[judged])
    if verdicts:
        weak, strong = np.mean(verdicts, axis=0)
        return float(weak), float(strong), True
    feedback = row.get("feedback")
    if not isinstance(feedback, dict):
        return None
    score = feedback.get("score")
    if not isinstance(score, int | float) or isinstance(score, bool) or not 0.0 <= score <= 1.0:
        raise RouteInputError(f"{where}: feedback.score must be a number in 0..1")
    answered = row.get("answered_by") or {}
    if not isinstance(answered, dict) or answered.get("tier") in (None, "large"):
        return None
    return float(score), 1.0, False


def _body(row: dict[str, Any], where: str) -> dict[str, Any]:
    messages = row.get("messages")
    if isinstance(messages, list) and messages:
        return {"messages": messages}
    prompt = row.get("prompt")
    if not isinstance(prompt, str) or not prompt:
        raise RouteInputError(f"{where}: the row has neither messages nor a prompt")
    return body_for(prompt)


def labels_of(rows: Iterable[dict[str, Any]], source: str = "traffic") -> TrafficLabels:
    """The rows that carry a routing label, oldest first (by `ts`, then request id)."""
    kept = []
    for number, row in enumerate(rows, 1):
        where = f"{source} row {number}"
        quality = _qualities(row, where)
        if quality is not None:
            kept.append((str(row.get("ts") or ""), str(row.get("request_id") or ""), row, quality, where))
    kept.sort(key=lambda k: (k[0], k[1]))
    return TrafficLabels(
        [_body(row, where) for _, _, row, _, where in kept],
        np.array([q[0] for *_, q, _ in kept], dtype=np.float64),
        np.array([q[1] for *_, q, _ in kept], dtype=np.float64),
        np.array([q[2] for *_, q, _ in kept], dtype=bool),
        [row.get("team_id") for _, _, row, _, _ in kept],
    )


def prior_score(artifact: RouterArtifact) -> FittedScore:
    """The artifact's score function, for scoring feature matrices offline."""
    return FittedScore(
        artifact.dense_mean.astype(np.float64),
        artifact.dense_scale.astype(np.float64),
        artifact.w_dense.astype(np.float64),
        artifact.w_hashed.astype(np.float64),
    )


def fit_traffic(
    prior: FittedScore, fm: FeatureMatrix, gain: np.ndarray, config: TrafficConfig
) -> FittedScore:
    """The prior corrected on the traffic's gain labels and blended with it by label count (see the
    module docstring); the prior itself when the labels cannot rank anything (fewer than two, or
    all equal)."""
    z = prior.score(fm)
    if len(gain) < 2 or np.ptp(gain) == 0:
        return prior
    mu, sd = float(z.mean()), float(z.std()) or 1.0
    prior_column = sparse.csr_matrix(((z - mu) / sd * _PRIOR_SCALE)[:, None])
    x = sparse.hstack([design(fm, prior.dense_mean, prior.dense_scale, 1.0), prior_column], format="csr")
    model = Ridge(alpha=config.alpha, fit_intercept=True, solver="sparse_cg", tol=1e-6).fit(x, gain)
    n_dense = len(DENSE_NAMES)
    g = float(model.coef_[-1]) * _PRIOR_SCALE / sd
    fitted = FittedScore(
        prior.dense_mean,
        prior.dense_scale,
        g * prior.w_dense + model.coef_[:n_dense],
        g * prior.w_hashed + model.coef_[n_dense : n_dense + HASH_SIZE],
    )
    raw = fitted.score(fm)
    spread = float(raw.std())
    if spread == 0:
        return prior
    # s = (1 - w) * z + w * (mu + sd * (raw - mean(raw)) / spread): the fit put on the prior's scale
    # over these prompts, then weighed against the prior by label count. The constant goes on the
    # `bias` column (standardised to 1 whatever the prompt).
    w = len(gain) / (len(gain) + config.prior_labels)
    k = w * sd / spread
    w_dense = (1.0 - w) * prior.w_dense + k * fitted.w_dense
    w_hashed = (1.0 - w) * prior.w_hashed + k * fitted.w_hashed
    w_dense[DENSE_NAMES.index("bias")] += w * mu - k * float(raw.mean())
    return FittedScore(prior.dense_mean, prior.dense_scale, w_dense, w_hashed)


def traffic_artifact(
    prior: RouterArtifact, prior_bytes: bytes, traffic: TrafficLabels, config: TrafficConfig
) -> RouterArtifact:
    fm = featurize_bodies(traffic.bodies)
    fitted = fit_traffic(prior_score(prior), fm, traffic.gain, config)
    scores = fitted.score(fm)
    teams = sorted({t for t in traffic.teams if t is not None})
    meta = {
        "trained_on": "traffic",
        "version": int(prior.meta.get("version", 1)) + 1,
        "prior": {
            "sha256": hashlib.sha256(prior_bytes).hexdigest(),
            "trained_on": prior.meta.get("trained_on", "public outcome data"),
            "version": int(prior.meta.get("version", 1)),
        },
        "labels": len(traffic),
        "judged": int(traffic.judged.sum()),
        "rated": int((~traffic.judged).sum()),
        "teams": teams,
        "traffic_config": vars(config),
        "prompts": len(traffic),
    }
    return RouterArtifact(
        dense_mean=prior.dense_mean,
        dense_scale=prior.dense_scale,
        w_dense=fitted.w_dense,
        w_hashed=fitted.w_hashed,
        tier_a=prior.tier_a,
        tier_b=prior.tier_b,
        score_quantiles=np.quantile(scores, np.linspace(0.0, 1.0, 101)),
        completion_coef=prior.completion_coef,
        meta=meta,
    )
