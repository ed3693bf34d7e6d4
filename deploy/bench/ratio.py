"""Medians of added latency (gateway minus the direct call of the same run) for embedded vs pg rounds,
and their ratio: `python3 deploy/bench/ratio.py DIR` over compare.sh's rN-embedded/rN-pg files."""

from __future__ import annotations

import json
import statistics
import sys
from collections import defaultdict
from pathlib import Path


def main(folder: str) -> None:
    rows: dict[tuple[str, str, int, str], list[tuple[float, float, float]]] = defaultdict(list)
    for path in sorted(Path(folder).glob("r*-*.jsonl")):
        side = path.stem.split("-", 1)[1]
        records = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
        direct = {(r["tag"], r["stream"], r["concurrency"]): r for r in records if r["label"] == "direct"}
        for r in records:
            d = direct.get((r["tag"], r["stream"], r["concurrency"]))
            if r["label"] == "direct" or d is None:
                continue
            mode = "stream" if r["stream"] else "json"
            rows[(r["tag"], mode, r["concurrency"], side)].append(
                (r["p50_ms"] - d["p50_ms"], r["p99_ms"] - d["p99_ms"], r["rps"])
            )
    print(
        "| mock | mode | c | embedded +p50 | pg +p50 | ratio | embedded +p99 | pg +p99 | ratio "
        "| req/s embedded / pg |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for tag, mode, c in sorted({k[:3] for k in rows}):
        e, p = rows[(tag, mode, c, "embedded")], rows[(tag, mode, c, "pg")]
        if not e or not p:
            continue
        m = [[statistics.median(x[i] for x in side) for i in range(3)] for side in (e, p)]
        print(
            f"| {tag} | {mode} | {c} | {m[0][0]:.2f} | {m[1][0]:.2f} | {m[1][0] / m[0][0]:.2f} | "
            f"{m[0][1]:.2f} | {m[1][1]:.2f} | {m[1][1] / m[0][1]:.2f} | {m[0][2]:.0f} / {m[1][2]:.0f} |"
        )


if __name__ == "__main__":
    main(sys.argv[1])
