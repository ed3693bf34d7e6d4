"""Retraining from exported labels (`route train --traffic`), `route eval --traffic` and
`route simulate`, on tiny fixtures."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from gateway.cli import main
from gateway.route_cli.traffic import TrafficConfig, fit_traffic, labels_of, prior_score
from gateway.route_cli.train import featurize_bodies
from routing.artifact import DEFAULT_PATH, load
from routing.features import extract
from routing.policy import Router

MARKER = "quarterly ledger reconciliation"
FILLER = "annual staff picnic arrangements"


def row(i: int, prompt: str, tiers: dict[str, str], feedback: float | None = None, **more: Any) -> dict:
    """One row as `switchyard quality export` writes it."""
    return {
        "request_id": f"req-{i:04d}",
        "team_id": more.get("team_id", "acme"),
        "route": "auto",
        "ts": f"2026-12-01T00:{i // 60:02d}:{i % 60:02d}+00:00",
        "prompt": f"user: {prompt}",
        "messages": [{"role": "user", "content": prompt}],
        "answered_by": {"deployment": "cheap", "tier": more.get("tier", "small")},
        "tiers": {t: {"judged": v, "against": "strong", "votes": ["B", "A"]} for t, v in tiers.items()},
        "feedback": None if feedback is None else {"score": feedback, "label": None, "comment": None},
    }


def team_rows(n: int = 160, seed: int = 0) -> list[dict]:
    """The cheap tier loses to the strongest on the team's marker prompts and ties elsewhere."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        marked = rng.random() < 0.4
        topic = ("invoice", "holiday rota", "office move", "hiring plan")[i % 4]
        # The same length either way, so that only the marker words tell the prompts apart.
        prompt = f"Please help with the {topic} item {i} for the " + (MARKER if marked else FILLER)
        verdict = (
            ("loss" if rng.random() < 0.9 else "tie") if marked else ("tie" if rng.random() < 0.8 else "win")
        )
        rows.append(row(i, prompt, {"small": verdict}))
    return rows


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_verdicts_and_ratings_become_qualities() -> None:
    rows = [
        row(3, "a", {"small": "loss"}),
        row(1, "b", {"small": "win", "local": "loss"}),
        row(2, "c", {}, feedback=0.25),
        row(4, "d", {}, feedback=0.9, tier="large"),  # the strongest answered: no routing label
        row(5, "e", {}),  # neither
    ]
    labels = labels_of(rows)
    assert [b["messages"][0]["content"] for b in labels.bodies] == ["b", "c", "a"]  # oldest first
    assert labels.weak.tolist() == [0.5, 0.25, 0.0] and labels.strong.tolist() == [0.5, 1.0, 1.0]
    assert labels.judged.tolist() == [True, False, True]
    assert labels.gain.tolist() == [0.0, 0.75, 1.0]


def test_train_traffic_writes_a_new_version_that_learns_the_team_marker(tmp_path: Path) -> None:
    traffic = write_jsonl(tmp_path / "labels.jsonl", team_rows())
    out = tmp_path / "router-acme-2.npz"
    assert main(["route", "train", "--traffic", str(traffic), "--out", str(out)]) == 0
    artifact = load(out)
    assert artifact.meta["trained_on"] == "traffic" and artifact.meta["version"] == 2
    assert (artifact.meta["labels"], artifact.meta["judged"], artifact.meta["teams"]) == (160, 160, ["acme"])
    assert artifact.meta["prior"]["sha256"] and out.stat().st_size < 20 * 1024 * 1024
    before, after = Router.load(DEFAULT_PATH), Router.load(out)

    def gap(router: Router) -> float:
        marked = extract(
            {"messages": [{"role": "user", "content": f"Please help with item 7 for the {MARKER}"}]}
        )
        plain = extract(
            {"messages": [{"role": "user", "content": f"Please help with item 7 for the {FILLER}"}]}
        )
        return router.model.predict(marked).difficulty - router.model.predict(plain).difficulty

    assert gap(after) > 0.3 and gap(after) > gap(before) + 0.2
    again = tmp_path / "router-acme-2b.npz"
    assert main(["route", "train", "--traffic", str(traffic), "--out", str(again)]) == 0
    assert again.read_bytes() == out.read_bytes()  # deterministic


def test_train_traffic_refuses_to_overwrite_and_bad_rows(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    traffic = write_jsonl(tmp_path / "labels.jsonl", team_rows(20))
    out = tmp_path / "taken.npz"
    out.write_bytes(b"an older version")
    assert main(["route", "train", "--traffic", str(traffic), "--out", str(out)]) == 2
    assert "never overwritten" in capsys.readouterr().err and out.read_bytes() == b"an older version"
    fresh = str(tmp_path / "new.npz")
    (tmp_path / "bad.jsonl").write_text(json.dumps(row(1, "x", {"small": "loss"})) + "\n[1, 2]\n")
    assert main(["route", "train", "--traffic", str(tmp_path / "bad.jsonl"), "--out", fresh]) == 2
    assert "bad.jsonl:2: not a JSON object" in capsys.readouterr().err
    write_jsonl(tmp_path / "odd.jsonl", [row(1, "x", {"small": "maybe"})])
    assert main(["route", "train", "--traffic", str(tmp_path / "odd.jsonl"), "--out", fresh]) == 2
    assert "tiers.small.judged must be win, tie or loss" in capsys.readouterr().err
    write_jsonl(tmp_path / "other.jsonl", team_rows(20))
    args = ["route", "train", "--traffic", str(tmp_path / "other.jsonl"), "--team", "globex", "--out", fresh]
    assert main(args) == 2
    assert "no row with a verdict" in capsys.readouterr().err
    assert not Path(fresh).exists()


def test_eval_traffic_reports_held_out_apgr_with_intervals(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    traffic = write_jsonl(tmp_path / "labels.jsonl", team_rows(200, seed=1))
    args = ["route", "eval", "--traffic", str(traffic), "--holdout", "0.4", "--resamples", "200"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "oldest 120 labelled requests, judged on the newest 80" in out
    (line,) = [x for x in out.splitlines() if x.startswith("| held-out traffic")]
    cells = [c.strip() for c in line.strip("|").split("|")]
    public, retrained = (float(c.split()[0]) for c in cells[3:5])
    low, high = (float(x) for x in cells[4].split(" ", 1)[1].strip("[]").split(","))
    assert low <= retrained <= high and retrained > 0.7 and retrained > public
    diff_low = float(cells[5].split(" ", 1)[1].strip("[]").split(",")[0])
    assert diff_low > 0  # the gain is outside the noise
    wins = write_jsonl(tmp_path / "wins.jsonl", [row(i, f"p {i}", {"small": "win"}) for i in range(20)])
    assert main(["route", "eval", "--traffic", str(wins)]) == 2
    assert "not better on average" in capsys.readouterr().err


def test_simulation_on_the_fixture_folder(
    outcome_folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    figures = tmp_path / "sim.json"
    args = ["route", "simulate", "--data", str(outcome_folder), "--reveal", "0.3", "--resamples", "50"]
    assert main([*args, "--json", str(figures)]) == 0
    out = capsys.readouterr().out
    assert "| **mean** |" in out and "public-only APGR" in out
    data = json.loads(figures.read_text())
    assert [r["file"] for r in data] == ["rb_arc_challenge", "math_l5", "cruxeval", "mean"]
    for r in data:
        assert (r["labels"], r["held"]) == ((18, 42) if r["file"] != "mean" else (54, 126))
        low, high = r["retrained"]["ci95"]
        assert low <= r["retrained"]["apgr"] <= high
        assert r["retrained"]["apgr"] > 0.6  # the marker is learnt from the public files and the labels
    assert main([*args, "--json", str(tmp_path / "again.json")]) == 0
    assert (tmp_path / "again.json").read_text() == figures.read_text()  # seeded


def test_the_prior_weighs_as_300_labels() -> None:
    traffic = labels_of(team_rows(30))
    fm = featurize_bodies(traffic.bodies)
    prior = prior_score(load())
    blended = fit_traffic(prior, fm, traffic.gain, TrafficConfig()).score(fm)
    alone = fit_traffic(prior, fm, traffic.gain, TrafficConfig(prior_labels=0.0)).score(fm)
    before = prior.score(fm)
    assert np.corrcoef(blended, before)[0, 1] > 0.9 > np.corrcoef(alone, before)[0, 1]
    assert blended.mean() == pytest.approx(before.mean())  # kept on the prior's scale
    same = fit_traffic(prior, fm, np.zeros(len(traffic)), TrafficConfig())
    assert same is prior  # labels that rank nothing change nothing
