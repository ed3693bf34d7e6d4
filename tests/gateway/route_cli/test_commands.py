"""`route train`, `route eval` and `route score` end to end on the tiny fixture folder."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from gateway.cli import main
from routing.artifact import load
from tests.gateway.route_cli.conftest import _write_csv

MAX_BYTES = 20 * 1024 * 1024


@pytest.fixture(scope="module")
def trained(outcome_folder: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("artifact") / "router.npz"
    assert main(["route", "train", "--data", str(outcome_folder), "--out", str(out)]) == 0
    return out


def test_train_writes_a_small_artifact_deterministically(
    trained: Path, outcome_folder: Path, tmp_path: Path
) -> None:
    artifact = load(trained)
    assert trained.stat().st_size < MAX_BYTES
    assert artifact.meta["datasets"] == {"rb_arc_challenge": 60, "math_l5": 60, "cruxeval": 60}
    central = artifact.score_quantiles[1:-1]  # the 1st to the 99th percentile
    logits = np.stack([artifact.tier_a[t] - artifact.tier_b[t] * central for t in range(4)])
    assert np.all(np.diff(logits, axis=0) > 0), "a higher tier never does worse"
    assert artifact.meta["config"]["target"] == "difficulty"
    again = tmp_path / "again.npz"
    assert main(["route", "train", "--data", str(outcome_folder), "--out", str(again)]) == 0
    assert again.read_bytes() == trained.read_bytes()
    gain = tmp_path / "gain.npz"
    assert (
        main(["route", "train", "--data", str(outcome_folder), "--out", str(gain), "--target", "gain"]) == 0
    )
    assert load(gain).meta["config"] == {
        "target": "gain",
        "alpha": 100.0,
        "dense_weight": 1.0,
        "dataset_power": 0.5,
    }


def test_eval_prints_the_table_with_intervals_and_writes_plot_and_json(
    outcome_folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    plot, figures = tmp_path / "eval.png", tmp_path / "eval.json"
    args = ["route", "eval", "--data", str(outcome_folder), "--plot", str(plot), "--json", str(figures)]
    assert main([*args, "--resamples", "20"]) == 0
    out = capsys.readouterr().out
    assert "| **LODO mean** |" in out and "| **pooled (mixed traffic)** |" in out
    assert "LODO mean APGR" in out and "[" in out
    assert plot.stat().st_size > 1000
    data = json.loads(figures.read_text())
    assert [f["fold"] for f in data["folds"]] == ["rb_arc_challenge", "math_l5", "cruxeval"]
    low, high = data["mean"]["switchyard"]["apgr_ci95"]
    assert low <= data["mean"]["switchyard"]["apgr"] <= high
    # the marker word transfers from the other two files: every held-out file routes well
    assert all(f["switchyard"]["apgr"] > 0.6 for f in data["folds"])


def test_score_uses_the_trained_artifact(trained: Path, tmp_path: Path) -> None:
    requests = tmp_path / "in.jsonl"
    rows = [
        {
            "id": "hard",
            "messages": [{"role": "user", "content": "question on the poem with a tricky recursion"}],
        },
        {"id": "easy", "messages": [{"role": "user", "content": "question on the poem"}]},
    ]
    requests.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "out.jsonl"
    assert (
        main(["route", "score", "--input", str(requests), "--output", str(out), "--artifact", str(trained)])
        == 0
    )
    scored = {r["id"]: r for r in map(json.loads, out.read_text().splitlines())}
    assert scored["hard"]["difficulty"] > scored["easy"]["difficulty"]


def test_eval_without_a_data_folder_is_an_input_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["route", "eval", "--data", str(tmp_path / "none")]) == 2
    assert "no training data" in capsys.readouterr().err


def test_a_model_outside_the_tier_table_is_one_line(
    outcome_folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "data"
    shutil.copytree(outcome_folder, data)
    rows = [[i, f"question {i}", "42", 1, 0] for i in range(5)]
    header = ["id", "prompt", "answer", "gpt-4o-2024-05-13", "mystery-9"]
    _write_csv(data / "zeroeval_crux.csv.gz", header, rows)  # a file the loader reads, by its name
    assert main(["route", "train", "--data", str(data), "--out", str(tmp_path / "r.npz")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "'mystery-9' matches no row of the tier table" in err
