"""`route score`: JSONL in, JSONL out, offline, against the built-in ladder or a config's routes."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from gateway.cli import main
from gateway.route_cli.score import RouteTable, run_score, score_requests
from routing.policy import Router

REPO = Path(__file__).resolve().parents[2]
REQUESTS = [
    {"id": "easy", "messages": [{"role": "user", "content": "hi"}]},
    {"id": 2, "messages": [{"role": "user", "content": "Prove that there are infinitely many primes. " * 9}]},
    {"id": "tools", "messages": [{"role": "user", "content": "weather?"}], "tools": [{"type": "function"}]},
]
CONFIG = """
models:
  - {name: tiny, provider: local, model: smollm2-135m-instruct, tier: local}
  - {name: mini, provider: openai, model: gpt-4o-mini, tier: small}
  - name: big
    provider: openai
    model: gpt-4o
    tier: large
    price: {input_per_mtok: 2.5, output_per_mtok: 10}
routes:
  cheap: {candidates: [tiny, mini], quality: 0.5}
  auto: {candidates: [tiny, mini, big], strong_fraction: 0.3}
"""


def _write(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows) + "\n")
    return path


def test_builtin_ladder_scores_every_line(tmp_path: Path) -> None:
    out = io.BytesIO()
    assert run_score(_write(tmp_path / "in.jsonl", REQUESTS), out, None, None, {}) == 3
    rows = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [r["id"] for r in rows] == ["easy", 2, "tools"]
    for row in rows:
        assert set(row) == {"id", "difficulty", "tier", "model", "estimated_cost_usd"}
        assert 0.0 <= row["difficulty"] <= 1.0
        assert row["model"] in {"smollm2", "gpt-4o-mini", "gpt-4o"}
    assert rows[2]["tier"] == "large"  # tools need at least medium; the built-in ladder's next is large
    assert rows[1]["estimated_cost_usd"] > 0


def test_config_routes_and_request_model(tmp_path: Path) -> None:
    config = tmp_path / "switchyard.yaml"
    config.write_text(CONFIG)
    table = RouteTable.from_config(config, {})
    lines = [json.dumps({**REQUESTS[1], "model": "cheap"}), json.dumps(REQUESTS[1])]
    cheap, auto = score_requests(Router.load(), table, iter(lines))
    assert cheap["model"] in {"tiny", "mini"}
    assert auto["model"] in {"tiny", "mini", "big"}


def test_bad_lines_are_reported_with_their_number() -> None:
    table = RouteTable.builtin()
    with pytest.raises(ValueError, match="line 2: invalid JSON"):
        list(score_requests(Router.load(), table, iter([json.dumps(REQUESTS[0]), "{oops"])))
    with pytest.raises(ValueError, match="line 1: expected an object"):
        list(score_requests(Router.load(), table, iter(['{"id": 1}'])))


def test_cli_subprocess(tmp_path: Path) -> None:
    src = _write(tmp_path / "in.jsonl", REQUESTS[:1])
    dst = tmp_path / "out.jsonl"
    proc = subprocess.run(
        [sys.executable, "-m", "gateway.route_cli", "score", "--input", str(src), "--output", str(dst)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(dst.read_text())["id"] == "easy"


@pytest.mark.parametrize(
    ("lines", "expected"),
    [
        (["{oops"], "switchyard route score: line 1: invalid JSON"),
        (None, "switchyard route score: missing.jsonl: No such file or directory"),
    ],
)
def test_cli_input_errors_are_one_line(tmp_path: Path, lines: list[str] | None, expected: str) -> None:
    src = tmp_path / "missing.jsonl"
    if lines is not None:
        src = tmp_path / "in.jsonl"
        src.write_text("\n".join(lines) + "\n")
    proc = subprocess.run(
        [sys.executable, "-m", "gateway.cli", "route", "score", "--input", src.name],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.splitlines() == [proc.stderr.strip()] and proc.stderr.startswith(expected)


@pytest.mark.parametrize(
    ("config", "artifact", "expected"),
    [
        ("nope.yaml", None, "cannot read config"),
        (None, "nope.npz", "router artifact not found at"),
    ],
)
def test_missing_config_or_artifact_is_reported(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    config: str | None,
    artifact: str | None,
    expected: str,
) -> None:
    src = _write(tmp_path / "in.jsonl", REQUESTS[:1])
    args = ["route", "score", "--input", str(src)]
    args += ["--config", str(tmp_path / config)] if config else ["--artifact", str(tmp_path / artifact)]
    assert main(args) == 2
    assert expected in capsys.readouterr().err
