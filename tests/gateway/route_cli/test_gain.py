"""Tier table, soft tier labels and the gain target, on toy matrices."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from gateway.route_cli.data import OutcomeSet, TierTable, TierTableError, load_all
from gateway.route_cli.evaluate import folds_of, training_parts
from gateway.route_cli.train import TrainConfig, difficulty, featurize, gain

NAN = np.nan


def _set(name: str, prompts: list[str], tiers: list[str], scores: list[list[float]]) -> OutcomeSet:
    models = [f"m{i}" for i in range(len(tiers))]
    return OutcomeSet(name, "toy", prompts, models, np.array(scores, dtype=float), tiers)


def test_first_matching_row_wins_and_unknown_names_fail(tmp_path: Path) -> None:
    path = tmp_path / "tiers.tsv"
    path.write_text("# comment\ngpt-4o-mini\tmedium\ngpt-4\tlarge\n7b\tsmall\n")
    table = TierTable.read(path)
    assert table.tier("GPT-4o-mini-2024") == "medium"
    assert table.tier("gpt-4-turbo") == "large"
    assert table.tier("Mistral-7B-v0.1") == "small"
    with pytest.raises(TierTableError, match="no row"):
        table.tier("mystery-model")
    path.write_text("gpt-4\thuge\n")
    with pytest.raises(TierTableError, match=":1:"):
        TierTable.read(path)


def test_shipped_table_places_known_models() -> None:
    table = TierTable.read()
    expected = {
        "gemma-2-2b-it": "small",
        "Meta-Llama-3.1-8B-Instruct": "small",
        "Phi-3.5-mini-instruct": "small",
        "WizardLM/WizardLM-13B-V1.2": "small",
        "Mixtral-8x7B-Instruct-v0.1": "medium",
        "Qwen2.5-72B-Instruct": "medium",
        "claude-3-haiku-20240307": "medium",
        "gpt-4o-mini-2024-07-18": "medium",
        "gemini-1.5-flash-002": "medium",
        "gpt4_1106_correct": "large",
        "o1-mini-2024-09-12": "large",
        "claude-3-5-sonnet-20240620": "large",
        "Llama-3.1-405B-Inst@sambanova": "large",
        "gemini-1.5-pro-002": "large",
    }
    assert {name: table.tier(name) for name in expected} == expected


def test_tier_means_are_soft_labels_that_skip_blanks() -> None:
    toy = _set(
        "toy",
        ["a", "b", "c"],
        ["small", "small", "medium", "large", "large"],
        [[1, 0, 1, 1, 1], [0, 0, 0, 1, 0], [NAN, 1, 1, NAN, NAN]],
    )
    assert toy.tier_mean("small") == pytest.approx([0.5, 0.0, 1.0])
    large = toy.tier_mean("large")
    assert large[:2] == pytest.approx([1.0, 0.5]) and np.isnan(large[2])
    assert (toy.weak, toy.strong) == ("small", "large")
    g = gain(toy)
    assert g[:2] == pytest.approx([0.5, 0.5]) and np.isnan(g[2])


def test_gain_needs_both_the_small_and_the_large_tier() -> None:
    no_small = _set("mmlu", ["a"], ["medium", "large"], [[0, 1]])
    assert no_small.has_gap and (no_small.weak, no_small.strong) == ("medium", "large")
    assert np.isnan(gain(no_small)).all()
    one_tier = _set("7b", ["a"], ["small", "small"], [[0, 1]])
    assert not one_tier.has_gap and np.isnan(gain(one_tier)).all()


def test_folds_are_files_with_a_gap_trained_without_overlapping_prompts() -> None:
    a = _set("a", ["Question: what is 2+2?", "shared item here"], ["small", "large"], [[0, 1], [1, 1]])
    b = _set("b", ["Shared item here!", "only in b"], ["small", "large"], [[0, 0], [0, 1]])
    c = _set("c", ["x"], ["small"], [[1]])
    sets = [a, b, c]
    assert folds_of(sets) == [0, 1]
    matrices = [featurize(s.prompts * 20) for s in sets]
    for s in sets:  # 20 copies so each part clears the 20-prompt minimum
        s.prompts, s.scores = s.prompts * 20, np.tile(s.scores, (20, 1))
    parts = training_parts(0, sets, matrices, TrainConfig(target="gain"))
    # b's "shared item" is dropped (same question as a's), c has no gain: only b's own prompt is left
    assert len(parts) == 2
    fm, y = parts[0]
    assert fm.dense.shape[0] == 20 and y == pytest.approx(np.ones(20))
    assert np.isnan(parts[1][1]).all()


def test_loader_reads_every_format_of_the_fixture(outcome_folder: Path) -> None:
    sets = load_all(outcome_folder)
    assert [s.name for s in sets] == ["rb_arc_challenge", "math_l5", "cruxeval"]
    for s in sets:
        assert s.scores.shape == (60, len(s.models)) and s.tiers_present == ["small", "medium", "large"]
        assert np.nanmean(gain(s)) > 0.2


def test_difficulty_target_is_mean_failure_of_every_file() -> None:
    a = _set("a", ["p", "q"], ["small", "large"], [[0, 1], [1, 1]])
    c = _set("c", ["x", "y"], ["small"], [[1], [np.nan]])
    assert difficulty(a) == pytest.approx([0.5, 0.0])
    assert difficulty(c) == pytest.approx([0.0, 0.5])  # a prompt no model ran counts as 0.5
    sets = [a, c, _set("d", ["z"], ["small", "large"], [[0, 0]])]
    matrices = [featurize(s.prompts * 20) for s in sets]
    for s in sets:
        s.prompts, s.scores = s.prompts * 20, np.tile(s.scores, (20, 1))
    parts = training_parts(2, sets, matrices, TrainConfig())  # one-tier files train it too
    assert [len(y) for _, y in parts] == [40, 40] and not np.isnan(parts[1][1]).any()
    with pytest.raises(ValueError, match="target must be one of"):
        TrainConfig(target="vibes")
