"""Readers for the per-prompt outcome data in `../shared/data/routing` (see its README).

Each file becomes one `OutcomeSet`: prompts, a score matrix (prompts x models, NaN where blank) and
each model's tier from `routing/model_tiers.tsv`. A file's weak/strong pair is its lowest and its
highest tier, each as the per-prompt mean over the tier's models (a soft label): small -> large
where the file has both (RouterBench, the many-model matrices), Mixtral -> GPT-4 on RouteLLM's MMLU,
small -> medium on DCRouter. The seven-7B files have one tier and no gap.
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

from gateway.route_cli import RouteInputError

TIER_TABLE = Path(__file__).resolve().parents[2] / "routing" / "model_tiers.tsv"
OUTCOME_TIERS = ("small", "medium", "large")
# What a router score can be trained to predict from these files (`train.target_of`); the first is
# `route train`'s default.
TARGETS = ("difficulty", "gain")


class TierTableError(RouteInputError):
    """A model name that no row of the tier table matches, or a malformed table."""


@dataclass(frozen=True)
class TierTable:
    """`routing/model_tiers.tsv`: (pattern, tier) rows; a lower-cased model name takes the tier of
    the first row whose pattern is a substring of it. Tiers are by size and generation, not by the
    model's score in the data, so the labels a router is judged on do not define its tiers."""

    rows: tuple[tuple[str, str], ...]

    @classmethod
    def read(cls, path: Path = TIER_TABLE) -> TierTable:
        rows = []
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if not line.strip() or line.startswith("#"):
                continue
            parts = line.split("\t")
            if len(parts) != 2 or parts[1] not in OUTCOME_TIERS:
                raise TierTableError(f"{path}:{number}: expected 'pattern<TAB>small|medium|large'")
            rows.append((parts[0].lower(), parts[1]))
        return cls(tuple(rows))

    def tier(self, model: str) -> str:
        name = model.lower()
        for pattern, tier in self.rows:
            if pattern in name:
                return tier
        raise TierTableError(f"model {model!r} matches no row of the tier table; add one")


@dataclass
class OutcomeSet:
    name: str
    source: str
    prompts: list[str]
    models: list[str]
    scores: np.ndarray  # (n_prompts, n_models), 0..1, NaN where the data has no label
    tiers: list[str]  # each model's tier (see TierTable)
    # Completion lengths in characters, one list per prompt (RouterBench only), for the cost prior.
    response_chars: list[list[int]] = field(default_factory=list)

    @property
    def tiers_present(self) -> list[str]:
        return [t for t in OUTCOME_TIERS if t in self.tiers]

    @property
    def has_gap(self) -> bool:
        """Two tiers or more: a file that can teach and judge the tier gap."""
        return len(self.tiers_present) >= 2

    @property
    def weak(self) -> str:
        return self.tiers_present[0]

    @property
    def strong(self) -> str:
        return self.tiers_present[-1]

    def tier_mean(self, tier: str) -> np.ndarray:
        """Per prompt, the mean outcome over the tier's models that were run on it (a soft label;
        NaN where none was)."""
        cols = self.scores[:, [m for m, t in enumerate(self.tiers) if t == tier]]
        counts = (~np.isnan(cols)).sum(axis=1)
        total = np.nansum(cols, axis=1)
        return np.where(counts > 0, total / np.maximum(counts, 1), np.nan)

    def pair(self) -> tuple[np.ndarray, np.ndarray]:
        """The lowest and the highest tier's per-prompt mean outcome: what a held-out fold is judged on
        and what the gain target is (strong - weak)."""
        return self.tier_mean(self.weak), self.tier_mean(self.strong)


def _read_csv(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    csv.field_size_limit(1 << 30)
    with gzip.open(path, "rt", encoding="utf-8", newline="") as handle:
        reader = csv.DictReader(io.StringIO(handle.read()))
        rows = list(reader)
        return list(reader.fieldnames or []), rows


def _float(value: str | None) -> float:
    return float(value) if value not in ("", None) else float("nan")


def _matrix(rows: list[dict[str, str]], models: list[str]) -> np.ndarray:
    return np.array([[_float(r[m]) for m in models] for r in rows], dtype=np.float64).reshape(
        len(rows), len(models)
    )


def load_mmlu(path: Path, table: TierTable) -> OutcomeSet:
    _, rows = _read_csv(path)
    models = ["mixtral_8x7b_correct", "gpt4_1106_correct"]
    return OutcomeSet(
        name="mmlu",
        source="routellm",
        prompts=[r["prompt"] for r in rows],
        models=models,
        scores=_matrix(rows, models),
        tiers=[table.tier(m) for m in models],
    )


def load_routerbench(path: Path, table: TierTable) -> OutcomeSet:
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
    responses = [[len(r.get(f"{m}|model_response") or "") for m in models] for r in rows]
    name = "rb_" + re.sub(r"^routerbench_|_train$", "", path.name.split(".")[0])
    return OutcomeSet(
        name=name,
        source="routerbench",
        prompts=prompts,
        models=models,
        scores=_matrix(rows, models),
        tiers=[table.tier(m) for m in models],
        response_chars=responses,
    )


def load_matrix_csv(path: Path, name: str, source: str, table: TierTable, meta: set[str]) -> OutcomeSet:
    """A many-model matrix: `prompt`, the columns in `meta`, then one 0/1 column per model."""
    fields, rows = _read_csv(path)
    models = [f for f in fields if f not in meta and f != "prompt"]
    return OutcomeSet(
        name=name,
        source=source,
        prompts=[r["prompt"] for r in rows],
        models=models,
        scores=_matrix(rows, models),
        tiers=[table.tier(m) for m in models],
    )


def load_scores_json(path: Path, name: str, source: str, table: TierTable) -> OutcomeSet:
    with gzip.open(path, "rt", encoding="utf-8") as handle:
        items = json.load(handle)
    models = list(items[0]["scores"])
    scores = np.array(
        [[float(it["scores"].get(m, np.nan)) for m in models] for it in items], dtype=np.float64
    )
    return OutcomeSet(
        name=name,
        source=source,
        prompts=[it["question"] for it in items],
        models=models,
        scores=scores,
        tiers=[table.tier(m) for m in models],
    )


def load_all(data_dir: Path, table: TierTable | None = None) -> list[OutcomeSet]:
    """Every outcome file under `data_dir` that is there, one OutcomeSet each, in a stable order."""
    data_dir = Path(data_dir)
    table = table or TierTable.read()
    sets = []
    if (data_dir / "mmlu_gpt4_vs_mixtral.csv.gz").exists():
        sets.append(load_mmlu(data_dir / "mmlu_gpt4_vs_mixtral.csv.gz", table))
    sets += [load_routerbench(p, table) for p in sorted(data_dir.glob("routerbench_*_train.csv.gz"))]
    if (data_dir / "dcrouter_train.json.gz").exists():
        sets.append(load_scores_json(data_dir / "dcrouter_train.json.gz", "dcrouter", "llmrouter", table))
    matrices = (
        ("mmlu_pro_outcomes.csv.gz", "mmlu_pro", "mmlu-pro", {"question_id", "category", "src", "answer"}),
        ("zeroeval_math_l5.csv.gz", "math_l5", "zeroeval", {"id", "answer"}),
        ("zeroeval_crux.csv.gz", "cruxeval", "zeroeval", {"id", "answer"}),
    )
    for file, name, source, meta in matrices:
        if (data_dir / file).exists():
            sets.append(load_matrix_csv(data_dir / file, name, source, table, meta))
    for path in sorted((data_dir / "seven_7b_models").glob("*.json.gz")):
        stem = path.name.split(".")[0].replace("-train", "").replace("_train", "")
        sets.append(load_scores_json(path, "7b_" + stem.lower(), "routerdc", table))
    if not sets:
        raise FileNotFoundError(f"no outcome files in {data_dir}")
    return sets


def normalise(prompt: str) -> str:
    """Key for spotting the same question in two files whatever the template around it: the longest
    line of the last block (few-shot files prepend examples), case and punctuation folded."""
    block = prompt.strip().split("\n\n")[-1]
    line = max(block.split("\n"), key=len)
    text = re.sub(r"\W+", " ", line.lower()).strip()
    return re.sub(r"^(?:question|q)\s+", "", text)[:160]
