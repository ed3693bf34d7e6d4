"""Text and JSON renderings of `route eval`'s report: the fold table with bootstrap intervals, the
in-domain reference table, the issue's targets checked plainly, and a JSON dump."""

from __future__ import annotations

from typing import Any

from gateway.route_cli.evaluate import BOOTSTRAPPED, METHODS, TARGET_APGR, EvalReport, FoldResult
from gateway.route_cli.intervals import Interval


def _row(cells: list[str]) -> str:
    return "| " + " | ".join(cells) + " |"


def _apgr(value: float, interval: Interval | None) -> str:
    return f"{value:.3f}" + (f" [{interval.low:.3f}, {interval.high:.3f}]" if interval else "")


def _cpt(value: float, interval: Interval | None) -> str:
    text = f"{100 * value:.1f}%"
    return text + (f" [{100 * interval.low:.1f}, {100 * interval.high:.1f}]" if interval else "")


def _fold_cells(fold: FoldResult) -> list[str]:
    cells = []
    for method in METHODS:
        m = fold.metrics[method]
        cells += [_apgr(m.apgr, fold.interval(method, "apgr")), _cpt(m.cpt50, fold.interval(method, "cpt50"))]
    return cells


def format_table(report: EvalReport) -> str:
    header = ["fold (held out)", "n", "weak -> strong"]
    for method in METHODS:
        header += [f"{method} APGR", "CPT50"]
    lines = [_row(header), _row(["---"] * len(header))]
    for fold in report.folds:
        lines.append(_row([fold.name, f"{fold.n:,}", f"{fold.weak} -> {fold.strong}", *_fold_cells(fold)]))
    mean_cells = []
    for method in METHODS:
        apgr, cpt50 = report.mean(method)
        mean_cells += [
            _apgr(apgr, report.mean_interval(method, "apgr")),
            _cpt(cpt50, report.mean_interval(method, "cpt50")),
        ]
    lines.append(_row(["**LODO mean**", f"{sum(f.n for f in report.folds):,}", "", *mean_cells]))
    for pooled in (report.pooled, report.pooled_common):
        if pooled is not None:
            lines.append(_row([f"**{pooled.name}**", f"{pooled.n:,}", pooled.weak, *_fold_cells(pooled)]))
    return "\n".join(lines)


def format_reference(report: EvalReport) -> str:
    """Ours on each held-out file beside the in-domain reference on the same file."""
    header = ["fold", "switchyard APGR (held out)", "CPT50", "in-domain reference APGR", "CPT50"]
    lines = [_row(header), _row(["---"] * len(header))]
    chosen = [f for f in report.folds if f.reference is not None]
    for fold in chosen:
        ours, ref = fold.metrics["switchyard"], fold.reference
        assert ref is not None
        lines.append(
            _row(
                [
                    fold.name,
                    f"{ours.apgr:.3f}",
                    _cpt(ours.cpt50, None),
                    f"{ref.apgr:.3f}",
                    _cpt(ref.cpt50, None),
                ]
            )
        )
    if chosen:
        n = len(chosen)
        ours_apgr = sum(f.metrics["switchyard"].apgr for f in chosen) / n
        ours_cpt = sum(f.metrics["switchyard"].cpt50 for f in chosen) / n
        ref_apgr = sum(f.reference.apgr for f in chosen if f.reference) / n
        ref_cpt = sum(f.reference.cpt50 for f in chosen if f.reference) / n
        lines.append(
            _row(
                ["**mean**", f"{ours_apgr:.3f}", _cpt(ours_cpt, None), f"{ref_apgr:.3f}", _cpt(ref_cpt, None)]
            )
        )
    return "\n".join(lines)


def target_check(report: EvalReport) -> list[str]:
    """The issue's bar, stated plainly (PASS or FAIL each)."""
    mean_apgr, _ = report.mean("switchyard")
    low = report.mean_interval("switchyard", "apgr")
    baselines = {m: report.mean(m)[0] for m in ("length", "litellm")}
    pooled = report.pooled.metrics["switchyard"].apgr
    verdict = {True: "PASS", False: "FAIL"}
    above = low is not None and all(low.low > v for v in baselines.values())
    return [
        f"LODO mean APGR {mean_apgr:.3f} (target >= {TARGET_APGR:.2f}): {verdict[mean_apgr >= TARGET_APGR]}",
        f"its 95% lower bound {low.low if low else float('nan'):.3f} above the baselines' means "
        + ", ".join(f"{m} {v:.3f}" for m, v in baselines.items())
        + f": {verdict[above]}",
        f"pooled mixed-traffic APGR {pooled:.3f} (target >= {TARGET_APGR:.2f}): "
        + verdict[pooled >= TARGET_APGR],
    ]


def to_json(report: EvalReport) -> dict[str, Any]:
    def fold_json(fold: FoldResult) -> dict[str, Any]:
        row: dict[str, Any] = {"fold": fold.name, "n": fold.n, "weak": fold.weak, "strong": fold.strong}
        for method in METHODS:
            m = fold.metrics[method]
            row[method] = {"apgr": m.apgr, "cpt50": m.cpt50, "cpt80": m.cpt80}
            for metric in ("apgr", "cpt50"):
                interval = fold.interval(method, metric)
                if interval:
                    row[method][f"{metric}_ci95"] = [interval.low, interval.high]
        if fold.reference:
            row["in_domain"] = {"apgr": fold.reference.apgr, "cpt50": fold.reference.cpt50}
        return row

    mean = {}
    for method in METHODS:
        apgr, cpt50 = report.mean(method)
        mean[method] = {"apgr": apgr, "cpt50": cpt50}
        if method in BOOTSTRAPPED:
            for metric in ("apgr", "cpt50"):
                interval = report.mean_interval(method, metric)
                assert interval is not None
                mean[method][f"{metric}_ci95"] = [interval.low, interval.high]
    return {
        "resamples": report.resamples,
        "seed": report.seed,
        "folds": [fold_json(f) for f in report.folds],
        "mean": mean,
        "pooled": fold_json(report.pooled),
        "pooled_small_large": fold_json(report.pooled_common) if report.pooled_common else None,
    }
