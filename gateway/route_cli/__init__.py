"""`switchyard route train | eval | simulate | score | bench`: the router's offline tooling.

`add_route_commands(subparsers)` registers a `route` command on the main CLI's subparsers; each
handler is stored as `func` and returns an exit code. Train and eval need the `dev` extra
(scikit-learn, matplotlib); score and bench need only the runtime (numpy, tiktoken).
Until the main CLI wires it in: `python -m gateway.route_cli ...`.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

from gateway.argtypes import float_in, int_in
from gateway.config import ConfigError
from routing.artifact import DEFAULT_PATH, ArtifactError

_REPO = Path(__file__).resolve().parents[2]
DEFAULT_DATA = _REPO.parent / "shared" / "data" / "routing"
DEFAULT_PLOT = _REPO / "bench-results" / "route-eval.png"


class RouteInputError(ValueError):
    """Input a route command cannot use; the message says which and why."""


def _one_line(cmd: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    """The command with its input errors (missing or unreadable files, bad lines, a bad config or
    artifact) as one line on stderr and exit code 2."""

    @functools.wraps(cmd)
    def run(args: argparse.Namespace) -> int:
        from gateway.route_cli.score import ScoreInputError

        try:
            return cmd(args)
        except OSError as exc:
            where = f"{exc.filename}: " if exc.filename else ""
            print(f"switchyard route {args.route_command}: {where}{exc.strerror or exc}", file=sys.stderr)
        except UnicodeDecodeError:
            print(f"switchyard route {args.route_command}: input is not UTF-8 text", file=sys.stderr)
        except (RouteInputError, ScoreInputError, ConfigError, ArtifactError) as exc:
            print(f"switchyard route {args.route_command}: {exc}", file=sys.stderr)
        return 2

    return run


def _load(data: Path) -> tuple[list, list]:
    from gateway.route_cli.data import load_all
    from gateway.route_cli.train import featurize

    if not data.is_dir():
        raise RouteInputError(f"no training data at {data} (pass --data)")
    sets = load_all(data)
    return sets, [featurize(s.prompts) for s in sets]


def _traffic(args: argparse.Namespace) -> tuple[object, bytes, object]:
    """The prior artifact (and its bytes) and the labelled rows `--traffic` names (of `--team`)."""
    from gateway.route_cli.traffic import labels_of, read_rows
    from routing.artifact import load

    prior_path = args.artifact or DEFAULT_PATH
    prior = load(prior_path)
    rows = read_rows(args.traffic)
    if args.team is not None:
        rows = [r for r in rows if r.get("team_id") == args.team]
    labels = labels_of(rows, str(args.traffic))
    if not len(labels):
        raise RouteInputError(f"{args.traffic}: no row with a verdict or a usable rating")
    return prior, prior_path.read_bytes(), labels


def cmd_train_traffic(args: argparse.Namespace) -> int:
    from gateway.route_cli.traffic import TrafficConfig, traffic_artifact
    from routing.artifact import save

    if args.out == DEFAULT_PATH or args.out.exists():
        # A config version names its artifact by path: overwriting one would change what an older
        # version (a rollback target) routes with.
        raise RouteInputError(
            f"{args.out}: pass --out with a new file name; a trained artifact is never overwritten"
        )
    prior, prior_bytes, labels = _traffic(args)
    artifact = traffic_artifact(prior, prior_bytes, labels, TrafficConfig())
    save(artifact, args.out)
    print(
        f"retrained on {len(labels)} labelled requests ({artifact.meta['judged']} judged, "
        f"{artifact.meta['rated']} rated) with {args.artifact or DEFAULT_PATH} as prior; wrote {args.out} "
        f"(version {artifact.meta['version']}). Apply it with `router_artifact: {args.out}` in the config."
    )
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    if args.traffic is not None:
        return cmd_train_traffic(args)
    from gateway.route_cli.train import TrainConfig, train_artifact
    from routing.artifact import save

    started = time.monotonic()
    sets, matrices = _load(args.data)
    meta = {"datasets": {s.name: len(s.prompts) for s in sets}}
    artifact = train_artifact(sets, matrices, TrainConfig(target=args.target), meta)
    save(artifact, args.out)
    size = args.out.stat().st_size
    print(
        f"trained ({args.target} target) on {artifact.meta['prompts']} prompts from {len(sets)} files in "
        f"{time.monotonic() - started:.0f}s; wrote {args.out} ({size / 1024:.0f} KiB)"
    )
    print(
        "tier curves (success = sigmoid(a - b * score)): "
        + ", ".join(
            f"{t}: a={a:.2f} b={b:.2f}"
            for t, a, b in zip(
                ("local", "small", "medium", "large"), artifact.tier_a, artifact.tier_b, strict=True
            )
        )
    )
    return 0


def cmd_eval_traffic(args: argparse.Namespace) -> int:
    from gateway.route_cli.traffic import TrafficConfig
    from gateway.route_cli.traffic_eval import eval_traffic, format_comparisons

    prior, _, labels = _traffic(args)
    result = eval_traffic(prior, labels, args.holdout, TrafficConfig(), args.resamples, args.seed)
    print(
        f"Retrained on the oldest {result.labels} labelled requests, judged on the newest {result.held}; "
        f"APGR [95% bootstrap interval, {args.resamples} resamples, seed {args.seed}]:\n"
    )
    print(format_comparisons([result], "traffic"))
    return 0


def cmd_simulate(args: argparse.Namespace) -> int:
    from gateway.route_cli.traffic import TrafficConfig
    from gateway.route_cli.traffic_eval import format_comparisons, simulate
    from gateway.route_cli.train import TrainConfig

    sets, matrices = _load(args.data)
    rows = simulate(
        sets,
        matrices,
        TrainConfig(target=args.target),
        TrafficConfig(),
        args.reveal,
        args.resamples,
        args.seed,
    )
    print(
        f"Each file as a team's traffic: {args.reveal:.0%} labelled by a simulated judge, the public-only "
        f"router ({args.target} target, trained on the other files) retrained on them, both judged on the "
        f"rest. APGR [95% bootstrap interval, {args.resamples} resamples]:\n"
    )
    print(format_comparisons(rows, "traffic (file)"))
    if args.json:
        args.json.write_text(
            json.dumps(
                [
                    {
                        "file": r.name,
                        "labels": r.labels,
                        "held": r.held,
                        **{
                            k: {"apgr": r.apgr[k], "ci95": [r.interval(k).low, r.interval(k).high]}
                            for k in r.apgr
                        },
                        "difference": {
                            "apgr": r.difference,
                            "ci95": [r.difference_interval().low, r.difference_interval().high],
                        },
                    }
                    for r in rows
                ],
                indent=1,
            )
        )
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    if args.traffic is not None:
        return cmd_eval_traffic(args)
    import numpy as np

    from gateway.route_cli.baselines import LiteLLMComplexity
    from gateway.route_cli.evaluate import run_folds
    from gateway.route_cli.plot import write_plot
    from gateway.route_cli.report import format_reference, format_table, target_check, to_json
    from gateway.route_cli.train import TrainConfig

    sets, matrices = _load(args.data)
    litellm = LiteLLMComplexity()
    # Files that are not held out need no baseline scores.
    litellm_scores = [litellm.scores(s.prompts) if s.has_gap else np.zeros(0) for s in sets]
    report = run_folds(
        sets, matrices, litellm_scores, TrainConfig(target=args.target), args.resamples, args.seed
    )
    if not report.folds:
        raise RouteInputError(f"no outcome file in {args.data} has two tiers to hold out")
    print(
        f"Router trained on the {args.target} target. "
        "Leave one dataset out; each file judged on its lowest -> highest tier (per-prompt mean over the"
        " tier's models). APGR higher is better, CPT(50%) lower is better; [95% bootstrap interval,"
        f" {report.resamples} resamples, seed {report.seed}]:\n"
    )
    print(format_table(report))
    print(
        "\nIn-domain reference (the same features fitted on each file's own gain, 5-fold cross-validated;"
        " labels no router here has):\n"
    )
    print(format_reference(report))
    print()
    for line in target_check(report):
        print(line)
    write_plot(report, args.plot)
    print(f"\nplot: {args.plot}")
    if args.json:
        args.json.write_text(json.dumps(to_json(report), indent=1))
    return 0


def cmd_score(args: argparse.Namespace) -> int:
    from gateway.route_cli.score import run_score

    if args.output:
        with args.output.open("wb") as out:
            count = run_score(args.input, out, args.config, args.artifact, os.environ)
        print(f"scored {count} requests -> {args.output}", file=sys.stderr)
    else:
        run_score(args.input, sys.stdout.buffer, args.config, args.artifact, os.environ)
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    from gateway.route_cli.bench import run_bench
    from routing.policy import Router

    result = run_bench(Router.load(args.artifact), iterations=args.iterations)
    print(
        f"routing decision (features + classifier + cost + policy), {result.prompt_tokens}-token prompt, "
        f"{result.iterations} runs: wall p50 {result.p50_ms:.3f} ms, p99 {result.p99_ms:.3f} ms, "
        f"mean {result.mean_ms:.3f} ms; cpu p50 {result.cpu_p50_ms:.3f} ms, p99 {result.cpu_p99_ms:.3f} ms"
    )
    return 0


def _target_option(p: argparse.ArgumentParser) -> None:
    from gateway.route_cli.data import TARGETS

    p.add_argument(
        "--target",
        choices=TARGETS,
        default=TARGETS[0],
        help="what the score learns: difficulty (within-dataset mean failure, the default) or gain "
        "(large-tier minus small-tier success); routing/README.md compares them",
    )


def _traffic_options(p: argparse.ArgumentParser, what: str) -> None:
    p.add_argument("--traffic", type=Path, help=what)
    p.add_argument("--team", help="with --traffic: only this team's rows")
    p.add_argument(
        "--artifact", type=Path, help="with --traffic: the prior router (default: the shipped one)"
    )


def add_route_commands(subparsers: argparse._SubParsersAction) -> None:
    route = subparsers.add_parser("route", help="train, evaluate and replay the request router")
    sub = route.add_subparsers(dest="route_command", required=True)

    p = sub.add_parser("train", help="rebuild the router artifact from the outcome data")
    p.add_argument("--data", type=Path, default=DEFAULT_DATA, help="outcome data folder")
    p.add_argument("--out", type=Path, default=DEFAULT_PATH, help="artifact path to write")
    _target_option(p)
    _traffic_options(
        p,
        "fit the router to labelled traffic from `switchyard quality export`, the "
        "--artifact model as prior; writes a new artifact to --out",
    )
    p.set_defaults(func=_one_line(cmd_train))

    p = sub.add_parser(
        "eval",
        help="leave-one-dataset-out APGR/CPT table against baselines, and the plot",
        description="Every file with two tiers or more is held out in turn; RouterDC's seven-7B files (one "
        "tier) only train the tier curves.",
    )
    p.add_argument("--data", type=Path, default=DEFAULT_DATA, help="outcome data folder")
    p.add_argument("--plot", type=Path, default=DEFAULT_PLOT, help="PNG to write")
    p.add_argument("--json", type=Path, help="also write the figures and intervals as JSON")
    p.add_argument("--resamples", type=int_in(10), default=1000, help="bootstrap resamples")
    p.add_argument("--seed", type=int_in(0), default=0, help="bootstrap seed")
    _target_option(p)
    _traffic_options(
        p,
        "judge on labelled traffic instead: retrain on the oldest rows, report APGR "
        "on the newest --holdout share against the --artifact router alone",
    )
    p.add_argument("--holdout", type=float_in(0.05, 0.95), default=0.3, help="share of --traffic held out")
    p.set_defaults(func=_one_line(cmd_eval))

    p = sub.add_parser(
        "simulate",
        help="each public file as a team's traffic: reveal labels for a share, retrain, judge the rest",
    )
    p.add_argument("--data", type=Path, default=DEFAULT_DATA, help="outcome data folder")
    p.add_argument("--reveal", type=float_in(0.01, 0.9), default=0.1, help="share of each file labelled")
    p.add_argument("--resamples", type=int_in(10), default=1000, help="bootstrap resamples")
    p.add_argument("--seed", type=int_in(0), default=0, help="seed of the split, the judge and the bootstrap")
    p.add_argument("--json", type=Path, help="also write the table as JSON")
    _target_option(p)
    p.set_defaults(func=_one_line(cmd_simulate))

    p = sub.add_parser("score", help="score requests offline (JSONL in, JSONL out)")
    p.add_argument("--input", type=Path, required=True, help="requests, one JSON object a line")
    p.add_argument("--output", type=Path, help="where to write (default stdout)")
    p.add_argument("--config", type=Path, help="gateway config whose routes to score against")
    p.add_argument("--artifact", type=Path, help="router artifact (default: the shipped one)")
    p.set_defaults(func=_one_line(cmd_score))

    p = sub.add_parser("bench", help="p50/p99 latency of one routing decision on a 1,000-token prompt")
    p.add_argument("--iterations", type=int_in(1), default=3000)
    p.add_argument("--artifact", type=Path, help="router artifact (default: the shipped one)")
    p.set_defaults(func=_one_line(cmd_bench))
