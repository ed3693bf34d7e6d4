"""The trained router artifact: one small `.npz` file, written by `switchyard route train` and read
once at start.

Arrays (float32 unless noted):
- `dense_mean`, `dense_scale`, `w_dense`: standardisation and weights of `features.DENSE_NAMES`.
- `w_hashed`: one weight per hashed bucket, token bag then word bag (`features.HASH_SIZE`).
- `tier_a`, `tier_b`: per tier in `TIERS`, success probability = sigmoid(a - b * score); `score` is
  the classifier's raw output, the predicted tier gain (format 2: large-tier minus small-tier
  success; format 1 scored a within-dataset difficulty logit).
- `score_quantiles`: the training prompts' score distribution (101 points), so a raw score maps to a
  difficulty in 0..1 (the share of training prompts with less to gain) and a `strong_fraction` maps
  to a threshold.
- `completion_coef`: the completion-length prior (see `routing.cost`).
- `meta`: JSON (uint8 bytes): format version, what it was trained on, fold results.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from routing.features import DENSE_NAMES, HASH_SIZE

FORMAT_VERSION = 2
TIERS: tuple[str, ...] = ("local", "small", "medium", "large")
DEFAULT_PATH = Path(__file__).resolve().parent / "artifacts" / "router-v1.npz"


class ArtifactError(ValueError):
    """The artifact file is missing, from another format version, or does not match the features."""


@dataclass(frozen=True)
class RouterArtifact:
    dense_mean: np.ndarray
    dense_scale: np.ndarray
    w_dense: np.ndarray
    w_hashed: np.ndarray
    tier_a: np.ndarray
    tier_b: np.ndarray
    score_quantiles: np.ndarray
    completion_coef: np.ndarray
    meta: dict[str, Any] = field(default_factory=dict)

    def validate(self) -> RouterArtifact:
        n = len(DENSE_NAMES)
        shapes = {
            "dense_mean": (self.dense_mean, (n,)),
            "dense_scale": (self.dense_scale, (n,)),
            "w_dense": (self.w_dense, (n,)),
            "w_hashed": (self.w_hashed, (HASH_SIZE,)),
            "tier_a": (self.tier_a, (len(TIERS),)),
            "tier_b": (self.tier_b, (len(TIERS),)),
        }
        for name, (array, shape) in shapes.items():
            if array.shape != shape:
                raise ArtifactError(f"artifact field {name} has shape {array.shape}, expected {shape}")
        if self.score_quantiles.ndim != 1 or self.score_quantiles.size < 2:
            raise ArtifactError("artifact score_quantiles must be a 1-d array of at least 2 points")
        if np.any(np.diff(self.score_quantiles) < 0):
            raise ArtifactError("artifact score_quantiles must be non-decreasing")
        if self.meta.get("dense_names") not in (None, list(DENSE_NAMES)):
            raise ArtifactError("artifact was trained on a different feature set; retrain it")
        return self


def save(artifact: RouterArtifact, path: Path) -> None:
    artifact.validate()
    meta = {**artifact.meta, "format_version": FORMAT_VERSION, "dense_names": list(DENSE_NAMES)}
    arrays = {
        name: getattr(artifact, name).astype(np.float32)
        for name in (
            "dense_mean",
            "dense_scale",
            "w_dense",
            "w_hashed",
            "tier_a",
            "tier_b",
            "score_quantiles",
            "completion_coef",
        )
    }
    buffer = io.BytesIO()
    np.savez_compressed(
        buffer, meta=np.frombuffer(json.dumps(meta, sort_keys=True).encode(), np.uint8), **arrays
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(buffer.getvalue())


def load(path: Path | str | None = None) -> RouterArtifact:
    """Read and check the artifact (default: the one shipped in `routing/artifacts/`)."""
    path = Path(path) if path is not None else DEFAULT_PATH
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {name: np.asarray(data[name], dtype=np.float32) for name in data.files if name != "meta"}
            meta = json.loads(bytes(data["meta"]).decode()) if "meta" in data.files else {}
    except FileNotFoundError as exc:
        raise ArtifactError(f"router artifact not found at {path}; run `switchyard route train`") from exc
    except (OSError, ValueError, KeyError) as exc:
        raise ArtifactError(f"router artifact at {path} is unreadable: {exc}") from exc
    if meta.get("format_version") != FORMAT_VERSION:
        raise ArtifactError(
            f"router artifact at {path} has format {meta.get('format_version')}, "
            f"expected {FORMAT_VERSION}; retrain it"
        )
    try:
        artifact = RouterArtifact(meta=meta, **arrays)
    except TypeError as exc:
        raise ArtifactError(f"router artifact at {path} lacks fields: {exc}") from exc
    return artifact.validate()


def loadable(path: str) -> str:
    """`path`, once it has loaded as an artifact (ArtifactError otherwise): wherever a config naming
    one is read (file, admin API, another replica's stored version), a version whose artifact is
    missing or unreadable is refused rather than run without it."""
    load(path)
    return path
