"""`switchyard` as a shell runs it: common mistakes are one line on stderr and exit code 2.

Most cases call `gateway.cli.main` in this process (the same parser and handlers, no interpreter
start-up); `run_cli` runs the real command where what the shell sees is the point.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from gateway.cli import main
from gateway.config import load_config
from tests.integration.gateway_proc import GatewayProcess
from tests.stores import create_pg_database, drop_pg_database

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "switchyard.example.yaml"
# Keys a developer's shell may hold; empty counts as unset.
NO_KEYS = {"OPENAI_API_KEY": "", "ANTHROPIC_API_KEY": "", "GEMINI_API_KEY": "", "GOOGLE_API_KEY": ""}

Cli = Callable[..., tuple[int, str]]


def run_cli(
    *args: str, env: dict[str, str] | None = None, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("SWITCHYARD_")}
    return subprocess.run(
        [sys.executable, "-m", "gateway.cli", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**base, "PYTHONPATH": str(REPO), **NO_KEYS, **(env or {})},
        cwd=cwd,
    )


@pytest.fixture
def cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> Cli:
    """`switchyard *argv` in this process, where run_cli would run it: (exit code, stderr)."""
    for name in [n for n in os.environ if n.startswith("SWITCHYARD_")]:
        monkeypatch.delenv(name)
    for name, value in NO_KEYS.items():
        monkeypatch.setenv(name, value)
    monkeypatch.chdir(tmp_path)

    def run(*argv: str) -> tuple[int, str]:
        capsys.readouterr()
        try:
            code = main(list(argv))
        except SystemExit as exc:  # argparse's usage errors
            code = int(exc.code or 0)
        return code, capsys.readouterr().err

    return run


def one_line_error(code: int, stderr: str) -> str:
    """The single stderr line of a command that failed as a usage or config error."""
    assert code == 2, stderr
    assert "Traceback" not in stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    return lines[0]


def test_the_command_says_one_line_at_the_files_log_level(tmp_path: Path) -> None:
    """The real entry point: exit code 2, one stderr line, no traceback. The file's log_level holds
    from the start: at `info` the skipped model's warning would be a second line."""
    cfg = tmp_path / "c.yaml"
    cfg.write_text(
        "models:\n"
        "  - {name: a, model: m, api_base: 'http://127.0.0.1:1/v1'}\n"
        "  - {name: gpt, model: gpt-4o, api_key: '${OPENAI_API_KEY}'}\n"
        "settings: {log_level: error}\n"
    )
    out = run_cli("serve", "--config", str(cfg), "--host", "0.0.0.0", cwd=tmp_path)
    assert "without a master key" in one_line_error(out.returncode, out.stderr)


def test_bad_config_is_a_clear_error(tmp_path: Path, cli: Cli) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text("models: [{name: a}]\n")
    assert "models.0.model" in one_line_error(*cli("serve", "--config", str(cfg)))


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (
            ["--workers", "0"],
            "switchyard serve: argument --workers: expected a whole number at least 1, got 0",
        ),
        (["--workers", "-2"], "argument --workers: expected a whole number at least 1, got -2"),
        (["--port", "70000"], "argument --port: expected a whole number from 1 to 65535, got 70000"),
        (
            ["--config", "missing.yaml"],
            "switchyard: cannot read config missing.yaml: No such file or directory",
        ),
    ],
)
def test_bad_serve_arguments(cli: Cli, args: list[str], expected: str) -> None:
    assert expected in one_line_error(*cli("serve", *args))


@pytest.mark.parametrize(
    ("command", "env", "expected"),
    [
        (
            ["serve"],
            {"SWITCHYARD_RETRIES": "abc"},
            "switchyard: invalid setting SWITCHYARD_RETRIES='abc': Input should be a valid integer",
        ),
        # Admin commands build their own Settings: the same one line.
        (
            ["keys", "list"],
            {"SWITCHYARD_DATABASE_URL": "mysql://u:hunter2@db/app"},
            "switchyard: invalid setting SWITCHYARD_DATABASE_URL: unsupported database URL scheme 'mysql'",
        ),
    ],
)
def test_bad_environment_settings(
    cli: Cli, monkeypatch: pytest.MonkeyPatch, command: list[str], env: dict[str, str], expected: str
) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    line = one_line_error(*cli(*command))
    assert line.startswith(expected) and "hunter2" not in line


def test_unreadable_yaml(tmp_path: Path, cli: Cli) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text("models:\n  - name: a\n   model: m\n")
    line = one_line_error(*cli("serve", "--config", str(cfg)))
    assert "invalid YAML at line 3, column 4" in line


def test_config_with_no_keyed_model_left(tmp_path: Path, cli: Cli) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text("models:\n  - {name: gpt, model: gpt-4o, api_key: '${OPENAI_API_KEY}'}\n")
    line = one_line_error(*cli("serve", "--config", str(cfg)))
    assert line == "switchyard: no models left to serve: every model's API key is unset (set OPENAI_API_KEY)"


def test_litellm_config_with_unset_master_key(tmp_path: Path, cli: Cli) -> None:
    cfg = tmp_path / "config.yaml"
    cfg.write_text(
        "model_list:\n  - {model_name: m, litellm_params: {model: openai/m, api_key: k}}\n"
        "general_settings: {master_key: os.environ/LITELLM_MASTER_KEY}\n"
    )
    line = one_line_error(*cli("serve", "--config", str(cfg)))
    assert (
        line == "switchyard: general_settings.master_key: environment variable LITELLM_MASTER_KEY is not set"
    )


def test_example_config_without_keys_serves_the_local_model(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="switchyard.config"):
        config = load_config(EXAMPLE, NO_KEYS)
    assert config.names() == ["smollm2", "auto"]
    assert config.routes["auto"].candidates == ["smollm2"]
    skipped = [r.getMessage() for r in caplog.records if "skipping models" in r.getMessage()]
    assert len(skipped) == 1 and "gpt-4o-mini, gpt-4o (OPENAI_API_KEY)" in skipped[0]


@pytest.fixture
async def fresh_pg() -> AsyncIterator[str]:
    name = await create_pg_database("cli_litellm")
    try:
        yield name
    finally:
        await drop_pg_database(name)


async def test_litellm_database_url_in_libpq_form(
    tmp_path: Path, cli: Cli, monkeypatch: pytest.MonkeyPatch, fresh_pg: str
) -> None:
    cfg = tmp_path / "config.yaml"
    cfg.write_text(
        "model_list:\n  - {model_name: m, litellm_params: {model: openai/m, api_base: 'http://127.0.0.1:9/v1'}}\n"
        "general_settings: {database_url: os.environ/DATABASE_URL}\n"
    )
    env = {"DATABASE_URL": f"postgresql://postgres@127.0.0.1:5432/{fresh_pg}?sslmode=disable"}
    monkeypatch.setenv("DATABASE_URL", env["DATABASE_URL"])
    # The file's URL is the one checked: this database has no schema yet.
    code, stderr = await asyncio.to_thread(cli, "serve", "--config", str(cfg))
    assert code == 2 and "Traceback" not in stderr
    line = stderr.strip().splitlines()[-1]
    assert fresh_pg in line and "switchyard migrate" in line
    # And `switchyard migrate` migrates that database, the file named as `serve` was told it.
    migrated = run_cli("migrate", env={**env, "SWITCHYARD_CONFIG": str(cfg)}, cwd=tmp_path)
    assert migrated.returncode == 0 and fresh_pg in migrated.stderr, migrated.stderr
    gateway = GatewayProcess("litellm", cfg, tmp_path, env).start()
    try:
        await gateway.wait_ready()
    finally:
        # uvicorn re-raises SIGTERM once its graceful shutdown is done.
        assert await gateway.stop() in (0, -signal.SIGTERM)
