"""Fit the router artifact from outcome sets (offline tooling; needs scikit-learn from `.[dev]`).

The routing score is a ridge regression on `routing.features`; `TrainConfig.target` picks what it
predicts (both recipes write the same format-2 artifact on the same features):
- `difficulty` (the v1 recipe, the shipped default): each prompt's mean failure over every model that
  ran it, with one free intercept per dataset, so the weights explain why a prompt is harder than
  others *of its dataset*; every file trains it.
- `gain`: the large tier's mean success minus the small tier's (soft labels averaged over each tier's
  models), without per-dataset intercepts; only files with both a small and a large tier train it
  (see `gain`).
Higher score = send to a stronger tier. The per-tier curves are then fitted on the score alone,
pooling every (prompt, model) outcome of models in that tier. routing/README.md has both recipes'
leave-one-dataset-out figures and why the default is what it is.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import sparse
from sklearn.linear_model import LogisticRegression, Ridge

from gateway.route_cli.data import TARGETS, OutcomeSet
from routing.artifact import TIERS, RouterArtifact
from routing.classifier import DENSE_CLIP
from routing.cost import fit_completion_prior
from routing.features import DENSE_NAMES, HASH_SIZE, Features, extract

# A sub-1B local model has no rows in the data; its curve is the small tier's shifted down by this
# many logits (about: a 7B model that solves half the prompts -> a local one solves a fifth).
LOCAL_OFFSET = 1.4
# Dataset intercept columns (difficulty target) are scaled up so the L2 penalty barely touches them.
_FE_SCALE = 30.0


@dataclass
class FeatureMatrix:
    dense: np.ndarray  # (n, len(DENSE_NAMES))
    hashed: sparse.csr_matrix  # (n, HASH_SIZE)
    prompt_tokens: np.ndarray

    def rows(self, index: np.ndarray) -> FeatureMatrix:
        return FeatureMatrix(self.dense[index], self.hashed[index], self.prompt_tokens[index])


def body_for(prompt: str) -> dict:
    return {"messages": [{"role": "user", "content": prompt}]}


def featurize(prompts: list[str]) -> FeatureMatrix:
    return featurize_bodies([body_for(p) for p in prompts])


def featurize_bodies(bodies: list[dict]) -> FeatureMatrix:
    """Features of chat bodies as the router sees them live (`routing.features.extract`)."""
    feats: list[Features] = [extract(b) for b in bodies]
    indptr = np.cumsum([0] + [f.hashed.size for f in feats])
    indices = np.concatenate([f.hashed for f in feats]) if feats else np.zeros(0, np.int64)
    values = np.concatenate([f.hashed_values for f in feats]) if feats else np.zeros(0, np.float32)
    hashed = sparse.csr_matrix((values, indices, indptr), shape=(len(feats), HASH_SIZE), dtype=np.float64)
    dense = np.stack([f.dense for f in feats]).astype(np.float64)
    return FeatureMatrix(dense, hashed, np.array([f.prompt_tokens for f in feats], dtype=np.float64))


@dataclass
class TrainConfig:
    target: str = "difficulty"  # one of TARGETS
    # L2 strength of the regression; None: the recipe's own (difficulty 30 as v1 shipped, gain 100,
    # chosen by the LODO mean over 30, 100, 300).
    alpha: float | None = None
    dense_weight: float = 1.0  # scales the dense block against the hashed one before the penalty
    dataset_power: float = 0.5  # each dataset weighs n**power in total, so MMLU does not drown the rest

    def __post_init__(self) -> None:
        if self.target not in TARGETS:
            raise ValueError(f"target must be one of {', '.join(TARGETS)}, not {self.target!r}")
        if self.alpha is None:
            self.alpha = 30.0 if self.target == "difficulty" else 100.0

    @property
    def intercepts(self) -> bool:
        """One free intercept per dataset: what makes the difficulty target within-dataset."""
        return self.target == "difficulty"


@dataclass
class FittedScore:
    dense_mean: np.ndarray
    dense_scale: np.ndarray
    w_dense: np.ndarray
    w_hashed: np.ndarray

    def score(self, fm: FeatureMatrix) -> np.ndarray:
        dense = np.clip((fm.dense - self.dense_mean) / self.dense_scale, -DENSE_CLIP, DENSE_CLIP)
        return dense @ self.w_dense + fm.hashed @ self.w_hashed


def standardisation(dense: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and scale of each dense feature (the bias column and constant columns left as they are)."""
    mean = dense.mean(axis=0)
    scale = dense.std(axis=0)
    bias = DENSE_NAMES.index("bias")
    mean[bias], scale[bias] = 0.0, 1.0
    scale[scale < 1e-6] = 1.0
    return mean, scale


def design(fm: FeatureMatrix, mean: np.ndarray, scale: np.ndarray, dense_weight: float) -> sparse.csr_matrix:
    dense = np.clip((fm.dense - mean) / scale, -DENSE_CLIP, DENSE_CLIP) * dense_weight
    return sparse.hstack([sparse.csr_matrix(dense), fm.hashed], format="csr")


def fit_score(parts: list[tuple[FeatureMatrix, np.ndarray]], config: TrainConfig) -> FittedScore:
    """`parts`: per dataset, its features and per-prompt target (`target_of`; NaN rows are dropped).
    Higher score = more reason to send the prompt to a stronger tier."""
    parts = [(fm.rows(np.flatnonzero(~np.isnan(y))), y[~np.isnan(y)]) for fm, y in parts]
    parts = [(fm, y) for fm, y in parts if len(y)]
    mean, scale = standardisation(np.vstack([fm.dense for fm, _ in parts]))
    blocks, targets, weights = [], [], []
    for k, (fm, y) in enumerate(parts):
        n = len(y)
        block = design(fm, mean, scale, config.dense_weight)
        if config.intercepts:
            onehot = sparse.csr_matrix(
                (np.full(n, _FE_SCALE), (np.arange(n), np.full(n, k))), shape=(n, len(parts))
            )
            block = sparse.hstack([block, onehot], format="csr")
        blocks.append(block)
        targets.append(y)
        weights.append(np.full(n, n**config.dataset_power / n))
    sample_weight = np.concatenate(weights)
    sample_weight *= len(sample_weight) / sample_weight.sum()
    # A linear probability model: only the ranking of prompts matters for routing (the tier curves
    # are fitted on this score afterwards), and it solves in seconds where a logistic fit takes minutes.
    # The dense block's constant `bias` column is the intercept (one for all datasets, or the dataset
    # columns' baseline when they are there).
    model = Ridge(alpha=config.alpha, fit_intercept=False, solver="sparse_cg", tol=1e-6)
    model.fit(sparse.vstack(blocks, format="csr"), np.concatenate(targets), sample_weight=sample_weight)
    coef = model.coef_
    n_dense = len(DENSE_NAMES)
    return FittedScore(mean, scale, coef[:n_dense] * config.dense_weight, coef[n_dense : n_dense + HASH_SIZE])


def fit_tiers(scores: list[np.ndarray], sets: list[OutcomeSet]) -> tuple[np.ndarray, np.ndarray]:
    """success(prompt, model) = sigmoid(c_dataset + a_tier - b_tier * score), fitted on every labelled
    (prompt, model) pair. The dataset intercepts matter: small models were mostly run on harder
    benchmarks than GPT-4 was, and without them that difficulty would be read as a tier gap. The
    returned a_tier carries the mean dataset intercept, so it describes an average benchmark."""
    tiers = [t for t in TIERS if t != "local"]
    n_cols = len(sets) + 2 * len(tiers)
    rows, targets = [], []
    for k, (score, outcome) in enumerate(zip(scores, sets, strict=True)):
        for m, tier in enumerate(outcome.tiers):
            col = outcome.scores[:, m]
            ok = ~np.isnan(col)
            t = tiers.index(tier)
            block = np.zeros((int(ok.sum()), n_cols))
            block[:, k] = 1.0
            block[:, len(sets) + t] = 1.0
            block[:, len(sets) + len(tiers) + t] = score[ok]
            rows.append(block)
            targets.append(col[ok])
    x, y = np.vstack(rows), np.concatenate(targets)
    model = LogisticRegression(C=100.0, fit_intercept=False, max_iter=1000)
    model.fit(
        np.vstack([x, x]),
        np.concatenate([np.ones_like(y), np.zeros_like(y)]),
        sample_weight=np.concatenate([y, 1.0 - y]),
    )
    coef = model.coef_[0]
    base = float(np.mean(coef[: len(sets)]))
    a = np.zeros(len(TIERS))
    b = np.ones(len(TIERS))
    for t, tier in enumerate(tiers):
        a[TIERS.index(tier)] = base + coef[len(sets) + t]
        b[TIERS.index(tier)] = -coef[len(sets) + len(tiers) + t]
    local, small = TIERS.index("local"), TIERS.index("small")
    a[local], b[local] = a[small] - LOCAL_OFFSET, b[small]
    # Success must rise with the tier at every score a prompt is likely to get, whatever the data
    # says: the policy climbs this ladder. The logits are linear in the score, so checking both ends
    # of the training prompts' central range covers all of it.
    ends = np.percentile(np.concatenate(scores), [1.0, 99.0])
    for t in range(1, len(TIERS)):
        shortfall = (a[t - 1] - b[t - 1] * ends) - (a[t] - b[t] * ends) + 0.05
        a[t] += max(float(shortfall.max()), 0.0)
    return a, b


def difficulty(outcome: OutcomeSet) -> np.ndarray:
    """Per prompt, the mean failure rate over every model that ran it (v1's target, sign flipped so
    that higher means harder); a prompt no model ran counts as 0.5."""
    with np.errstate(all="ignore"):
        success = np.nanmean(outcome.scores, axis=1) if outcome.scores.size else np.zeros(0)
    return 1.0 - np.nan_to_num(success, nan=0.5).clip(0.0, 1.0)


def target_of(outcome: OutcomeSet, config: TrainConfig) -> np.ndarray:
    return difficulty(outcome) if config.target == "difficulty" else gain(outcome)


def gain(outcome: OutcomeSet) -> np.ndarray:
    """Per prompt, the large tier's mean success minus the small tier's: NaN where either tier has no
    label or the file lacks one of them. A file with only medium and large (RouteLLM's MMLU) or only
    small and medium (DCRouter) has a narrower gap whose size says which tiers were run, not how much
    the prompt needs a frontier model; measured, training on those gaps too lowered every summary."""
    if "small" not in outcome.tiers or "large" not in outcome.tiers:
        return np.full(len(outcome.prompts), np.nan)
    return outcome.tier_mean("large") - outcome.tier_mean("small")


def train_artifact(
    sets: list[OutcomeSet], matrices: list[FeatureMatrix], config: TrainConfig, meta: dict
) -> RouterArtifact:
    fitted = fit_score([(fm, target_of(s, config)) for fm, s in zip(matrices, sets, strict=True)], config)
    scores = [fitted.score(fm) for fm in matrices]
    tier_a, tier_b = fit_tiers(scores, sets)
    all_scores = np.concatenate(scores)
    response_tokens = np.concatenate(
        [
            np.median(np.asarray(s.response_chars, dtype=np.float64), axis=1) / 4.0
            for s in sets
            if s.response_chars
        ]
    )
    return RouterArtifact(
        dense_mean=fitted.dense_mean,
        dense_scale=fitted.dense_scale,
        w_dense=fitted.w_dense,
        w_hashed=fitted.w_hashed,
        tier_a=tier_a,
        tier_b=tier_b,
        score_quantiles=np.quantile(all_scores, np.linspace(0.0, 1.0, 101)),
        completion_coef=fit_completion_prior(response_tokens),
        meta={**meta, "config": vars(config), "prompts": int(all_scores.size)},
    )
