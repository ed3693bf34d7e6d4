"""A tiny outcome-data folder in the shared data's formats: two many-model matrices and one
RouterBench slice, where prompts with a marker word are the ones only the large tier solves."""

from __future__ import annotations

import csv
import gzip
import io
from pathlib import Path

import numpy as np
import pytest

SMALL, MEDIUM, LARGE = ["gemma-2-2b-it", "Qwen2.5-7B-Instruct"], ["gpt-3.5-turbo-0125"], ["gpt-4o-2024-05-13"]
RB_MODELS = ["mistralai/mistral-7b-chat", "claude-v2", "gpt-4-1106-preview"]
ROWS = 60
_TOPICS = ("integral of", "sorting a list", "capital city", "chemical bond", "train speed", "poem about")


def _prompts(file: str, rng: np.random.Generator) -> tuple[list[str], np.ndarray]:
    hard = rng.random(ROWS) < 0.4
    prompts = [
        f"{file} question {i} on the {_TOPICS[i % len(_TOPICS)]}" + (" with a tricky recursion" if h else "")
        for i, h in enumerate(hard)
    ]
    return prompts, hard


def _outcomes(hard: np.ndarray, models: list[str], tiers: list[str], rng: np.random.Generator) -> np.ndarray:
    """0/1 per (prompt, model): the large tier solves 95%, the others fail the hard prompts."""
    out = np.empty((len(hard), len(models)))
    for m, tier in enumerate(tiers):
        p = np.full(len(hard), 0.95) if tier == "large" else np.where(hard, 0.05, 0.9)
        out[:, m] = rng.random(len(hard)) < p
    return out


def _write_csv(path: Path, header: list[str], rows: list[list[object]]) -> None:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(header)
    writer.writerows(rows)
    path.write_bytes(gzip.compress(buffer.getvalue().encode()))


def write_outcome_folder(folder: Path) -> Path:
    rng = np.random.default_rng(7)
    folder.mkdir(parents=True, exist_ok=True)
    models = SMALL + MEDIUM + LARGE
    tiers = ["small"] * len(SMALL) + ["medium"] * len(MEDIUM) + ["large"] * len(LARGE)
    for file in ("zeroeval_math_l5", "zeroeval_crux"):
        prompts, hard = _prompts(file, rng)
        scores = _outcomes(hard, models, tiers, rng)
        rows = [[i, p, "42", *map(int, s)] for i, (p, s) in enumerate(zip(prompts, scores, strict=True))]
        _write_csv(folder / f"{file}.csv.gz", ["id", "prompt", "answer", *models], rows)
    prompts, hard = _prompts("arc", rng)
    scores = _outcomes(hard, RB_MODELS, ["small", "medium", "large"], rng)
    header = ["sample_id", "prompt", "eval_name", *RB_MODELS]
    header += [f"{m}|model_response" for m in RB_MODELS] + [f"{m}|total_cost" for m in RB_MODELS]
    rows = [
        [i, repr([p]), "arc", *map(int, s), *(["the answer is B"] * 3), *([0.0001] * 3)]
        for i, (p, s) in enumerate(zip(prompts, scores, strict=True))
    ]
    _write_csv(
        folder / "routerbench_arc_challenge_train.csv.gz",
        [*header, "oracle_model_to_route_to"],
        [[*r, RB_MODELS[0]] for r in rows],
    )
    return folder


@pytest.fixture(scope="session")
def outcome_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_outcome_folder(tmp_path_factory.mktemp("outcomes"))
