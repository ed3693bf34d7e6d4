"""Readers for the per-prompt outcome data in `../shared/data/routing` (see its README).

Each file becomes one `OutcomeSet`: prompts, a score matrix (prompts x models, NaN where blank),
each model's tier, and the weak/strong pair its held-out fold is judged on. The pair follows the
literature where it exists (RouteLLM: Mixtral-8x7B vs GPT-4 on MMLU and RouterBench) and is the
weakest vs the strongest model by mean score elsewhere.
"""

from __future__ import annotations

import ast
import csv
import gzip
import io
import json
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

# Capability class of each model in the data, by size and generation (not by its score here, so the
# per-tier success heads are not fitted to the very labels they are judged on).
_LARGE = ("gpt-4", "gpt4")
_MEDIUM = (
    "gpt-3.5",
    "claude",
    "mixtral",
    "llama-2-70b",
    "yi-34b",
    "code-llama-instruct-34b",
    "chatqa-1.5-70b",
    "nemotron",
)


def model_tier(model: str) -> str:
    name = model.lower()
    if any(key in name for key in _LARGE):
        return "large"
    if any(key in name for key in _MEDIUM):
        return "medium"
    return "small"


@dataclass
class OutcomeSet:
    name: str
    source: str
    prompts: list[str]
    models: list[str]
    scores: np.ndarray  # (n_prompts, n_models), NaN where the data has no label
    weak: str
    strong: str
    # Completion lengths in characters, one list per prompt (RouterBench only), for the cost prior.
    response_chars: list[list[int]] = field(default_factory=list)

    @property
    def tiers(self) -> list[str]:
        return [model_tier(m) for m in self.models]

    def column(self, model: str) -> np.ndarray:
        return self.scores[:, self.models.index(model)]


def _read_csv(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    csv.field_size_limit(1 << 30)
    with gzip.open(path, "rt", encoding="utf-8", newline="") as handle:
        reader = csv.DictReader(io.StringIO(handle.read()))
        rows = list(reader)
        return list(reader.fieldnames or []), rows


def _float(value: str) -> float:
    return float(value) if value not in ("", None) else float("nan")


def _extreme_pair(models: list[str], scores: np.ndarray) -> tuple[str, str]:
    means = np.nanmean(scores, axis=0)
    return models[int(np.argmin(means))], models[int(np.argmax(means))]


def load_mmlu(path: Path) -> OutcomeSet:
    _, rows = _read_csv(path)
    models = ["mixtral_8x7b_correct", "gpt4_1106_correct"]
    scores = np.array([[_float(r[m]) for m in models] for r in rows], dtype=np.float64)
    return OutcomeSet(
        name="mmlu",
        source="routellm",
        prompts=[r["prompt"] for r in rows],
        models=models,
        scores=scores,
        weak=models[0],
        strong=models[1],
    )


def load_routerbench(path: Path) -> OutcomeSet:
    fields, rows = _read_csv(path)
    models = [
        f
        for f in fields
        if "|" not in f
        and f not in ("", "Unnamed: 0", "sample_id", "prompt", "eval_name", "oracle_model_to_route_to")
    ]
    prompts = []
    for row in rows:
        turns = ast.literal_eval(row["prompt"])
        prompts.append("\n\n".join(str(t) for t in turns) if isinstance(turns, list) else str(turns))
    scores = np.array([[_float(r[m]) for m in models] for r in rows], dtype=np.float64)
    responses = [[len(r.get(f"{m}|model_response") or "") for m in models] for r in rows]
    name = "rb_" + re.sub(r"^routerbench_|_train$", "", path.name.split(".")[0])
    return OutcomeSet(
        name=name,
        source="routerbench",
        prompts=prompts,
        models=models,
        scores=scores,
        weak="mistralai/mixtral-8x7b-chat",
        strong="gpt-4-1106-preview",
        response_chars=responses,
    )


def load_scores_json(path: Path, name: str, source: str) -> OutcomeSet:
    with gzip.open(path, "rt", encoding="utf-8") as handle:
        items = json.load(handle)
    models = list(items[0]["scores"])
    scores = np.array(
        [[float(it["scores"].get(m, np.nan)) for m in models] for it in items], dtype=np.float64
    )
    weak, strong = _extreme_pair(models, scores)
    return OutcomeSet(
        name=name,
        source=source,
        prompts=[it["question"] for it in items],
        models=models,
        scores=scores,
        weak=weak,
        strong=strong,
    )


def load_all(data_dir: Path) -> list[OutcomeSet]:
    """Every outcome file under `data_dir`, one OutcomeSet each, in a stable order."""
    data_dir = Path(data_dir)
    sets = [load_mmlu(data_dir / "mmlu_gpt4_vs_mixtral.csv.gz")]
    sets += [load_routerbench(p) for p in sorted(data_dir.glob("routerbench_*_train.csv.gz"))]
    sets.append(load_scores_json(data_dir / "dcrouter_train.json.gz", "dcrouter", "llmrouter"))
    for path in sorted((data_dir / "seven_7b_models").glob("*.json.gz")):
        stem = path.name.split(".")[0].replace("-train", "").replace("_train", "")
        sets.append(load_scores_json(path, "7b_" + stem.lower(), "routerdc"))
    return sets


def normalise(prompt: str) -> str:
    """Key for spotting the same question in two files whatever the template around it: the longest
    line of the last block (few-shot files prepend examples), case and punctuation folded."""
    block = prompt.strip().split("\n\n")[-1]
    line = max(block.split("\n"), key=len)
    text = re.sub(r"\W+", " ", line.lower()).strip()
    return re.sub(r"^(?:question|q)\s+", "", text)[:160]
