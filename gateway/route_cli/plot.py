"""The call-performance plot for `route eval` (matplotlib from `.[dev]`, headless)."""

from __future__ import annotations

import math
from pathlib import Path

from gateway.route_cli.evaluate import METHODS, EvalReport

_STYLE = {"switchyard": "-o", "length": "--s", "litellm": "--^", "random": ":"}


def write_plot(report: EvalReport, path: Path) -> None:
    """One panel per held-out file and one for the pooled mixed traffic; the legend gives APGR."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    results = [*report.folds, report.pooled, *([report.pooled_common] if report.pooled_common else [])]
    cols = 3
    rows = math.ceil(len(results) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.6 * cols, 2.9 * rows), squeeze=False)
    for ax, result in zip(axes.flat, results, strict=False):
        for method in METHODS:
            curve = result.metrics[method].curve
            ax.plot(
                [100 * p[0] for p in curve],
                [100 * p[1] for p in curve],
                _STYLE[method],
                label=f"{method} ({result.metrics[method].apgr:.2f})",
                markersize=3,
            )
        m = result.metrics["switchyard"]
        ax.axhline(100 * m.weak_quality, color="grey", linewidth=0.8)
        ax.axhline(100 * m.strong_quality, color="red", linewidth=0.8)
        pair = f"{result.weak} -> {result.strong}" if result.strong else result.weak
        ax.set_title(f"{result.name}: {pair}", fontsize=9)
        ax.set_xlabel("strong model calls (%)", fontsize=8)
        ax.set_ylabel("quality (%)", fontsize=8)
        ax.legend(fontsize=6, title="APGR", title_fontsize=6)
    for ax in list(axes.flat)[len(results) :]:
        ax.axis("off")
    fig.suptitle("Held-out-dataset call-performance curves (leave one dataset out)")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=80)
    plt.close(fig)
