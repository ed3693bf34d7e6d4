"""The artifact round-trips, the shipped one loads, and bad files fail with a clear error."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from routing.artifact import DEFAULT_PATH, ArtifactError, RouterArtifact, load, save
from routing.classifier import DifficultyModel
from routing.features import extract
from routing.policy import Router

MAX_BYTES = 20 * 1024 * 1024


def test_round_trip(tmp_path: Path, artifact: RouterArtifact) -> None:
    path = tmp_path / "a.npz"
    save(artifact, path)
    loaded = load(path)
    assert np.allclose(loaded.w_dense, artifact.w_dense)
    assert np.allclose(loaded.score_quantiles, artifact.score_quantiles)
    assert loaded.meta["note"] == "test" and loaded.meta["format_version"] == 2


def test_shipped_artifact_loads_and_is_small() -> None:
    assert DEFAULT_PATH.stat().st_size < MAX_BYTES
    router = Router.load()
    model = router.model
    easy = model.predict(extract({"messages": [{"role": "user", "content": "hi there"}]}))
    assert 0.0 <= easy.difficulty <= 1.0
    assert easy.success["local"] < easy.success["small"] < easy.success["medium"] < easy.success["large"]
    assert "datasets" in router.meta


def test_missing_and_corrupt_files_raise(tmp_path: Path) -> None:
    with pytest.raises(ArtifactError, match="not found"):
        load(tmp_path / "nope.npz")
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"not a zip")
    with pytest.raises(ArtifactError, match="unreadable"):
        load(bad)


def test_wrong_shape_or_version_is_rejected(tmp_path: Path, artifact: RouterArtifact) -> None:
    broken = RouterArtifact(**{**vars(artifact), "w_hashed": np.zeros(3, dtype=np.float32)})
    with pytest.raises(ArtifactError, match="w_hashed"):
        save(broken, tmp_path / "x.npz")
    path = tmp_path / "old.npz"
    np.savez(path, meta=np.frombuffer(b'{"format_version": 0}', np.uint8))
    with pytest.raises(ArtifactError, match="format"):
        load(path)


def test_difficulty_is_a_percentile_and_invertible(artifact: RouterArtifact) -> None:
    model = DifficultyModel(artifact)
    for d in (0.1, 0.5, 0.9):
        assert model.difficulty(model.score_at(d)) == pytest.approx(d, abs=1e-6)
    assert model.difficulty(-100.0) == 0.0 and model.difficulty(100.0) == 1.0
