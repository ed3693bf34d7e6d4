"""`switchyard` as a shell runs it: common mistakes are one line on stderr and exit code 2."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from tests.gateway.db.databases import create_pg_database, drop_pg_database
from tests.integration.gateway_proc import MASTER_KEY, GatewayProcess

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "switchyard.example.yaml"
# Keys a developer's shell may hold; empty counts as unset.
NO_KEYS = {"OPENAI_API_KEY": "", "ANTHROPIC_API_KEY": "", "GEMINI_API_KEY": "", "GOOGLE_API_KEY": ""}


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


def one_line_error(out: subprocess.CompletedProcess[str]) -> str:
    """The single stderr line of a command that failed as a usage or config error."""
    assert out.returncode == 2, out.stderr
    assert "Traceback" not in out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1, out.stderr
    return lines[0]


def test_refuses_public_bind_without_master_key(tmp_path: Path) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text("models: [{name: a, model: m, api_base: 'http://127.0.0.1:1/v1'}]\n")
    out = run_cli("serve", "--config", str(cfg), "--host", "0.0.0.0", cwd=tmp_path)
    assert "without a master key" in one_line_error(out)


def test_bad_config_is_a_clear_error(tmp_path: Path) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text("models: [{name: a}]\n")
    assert "models.0.model" in one_line_error(run_cli("serve", "--config", str(cfg), cwd=tmp_path))


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
def test_bad_serve_arguments(tmp_path: Path, args: list[str], expected: str) -> None:
    assert expected in one_line_error(run_cli("serve", *args, cwd=tmp_path))


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
    tmp_path: Path, command: list[str], env: dict[str, str], expected: str
) -> None:
    line = one_line_error(run_cli(*command, env=env, cwd=tmp_path))
    assert line.startswith(expected) and "hunter2" not in line


def test_unreadable_yaml(tmp_path: Path) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text("models:\n  - name: a\n   model: m\n")
    line = one_line_error(run_cli("serve", "--config", str(cfg), cwd=tmp_path))
    assert "invalid YAML at line 3, column 4" in line


def test_config_with_no_keyed_model_left(tmp_path: Path) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text("models:\n  - {name: gpt, model: gpt-4o, api_key: '${OPENAI_API_KEY}'}\n")
    line = one_line_error(run_cli("serve", "--config", str(cfg), cwd=tmp_path))
    assert line == "switchyard: no models left to serve: every model's API key is unset (set OPENAI_API_KEY)"


def test_litellm_config_with_unset_master_key(tmp_path: Path) -> None:
    cfg = tmp_path / "config.yaml"
    cfg.write_text(
        "model_list:\n  - {model_name: m, litellm_params: {model: openai/m, api_key: k}}\n"
        "general_settings: {master_key: os.environ/LITELLM_MASTER_KEY}\n"
    )
    line = one_line_error(run_cli("serve", "--config", str(cfg), cwd=tmp_path))
    assert (
        line == "switchyard: general_settings.master_key: environment variable LITELLM_MASTER_KEY is not set"
    )


async def test_example_config_without_keys_serves_the_local_model(tmp_path: Path) -> None:
    gateway = GatewayProcess("example", EXAMPLE, tmp_path, NO_KEYS).start()
    try:
        await gateway.wait_ready(within_s=120)
        async with httpx.AsyncClient(
            base_url=gateway.url, headers={"authorization": f"Bearer {MASTER_KEY}"}
        ) as c:
            models = (await c.get("/v1/models")).json()
            answer = await c.post(
                "/v1/chat/completions",
                json={"model": "auto", "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 4},
                timeout=60,
            )
    finally:
        # uvicorn re-raises SIGTERM once its graceful shutdown is done.
        assert await gateway.stop() in (0, -signal.SIGTERM)
    assert [m["id"] for m in models["data"]] == ["smollm2", "auto"]
    assert answer.status_code == 200 and answer.headers["x-switchyard-model"] == "smollm2"
    skipped = [line for line in gateway.output().splitlines() if "skipping models" in line]
    assert len(skipped) == 1 and "gpt-4o-mini, gpt-4o (OPENAI_API_KEY)" in skipped[0]


@pytest.fixture
async def fresh_pg() -> AsyncIterator[str]:
    name = await create_pg_database("switchyard_cli_litellm")
    try:
        yield name
    finally:
        await drop_pg_database(name)


async def test_litellm_database_url_in_libpq_form(tmp_path: Path, fresh_pg: str) -> None:
    cfg = tmp_path / "config.yaml"
    cfg.write_text(
        "model_list:\n  - {model_name: m, litellm_params: {model: openai/m, api_base: 'http://127.0.0.1:9/v1'}}\n"
        "general_settings: {database_url: os.environ/DATABASE_URL}\n"
    )
    env = {"DATABASE_URL": f"postgresql://postgres@127.0.0.1:5432/{fresh_pg}?sslmode=disable"}
    # The file's URL is the one checked: this database has no schema yet.
    refused = run_cli("serve", "--config", str(cfg), env=env, cwd=tmp_path)
    assert refused.returncode == 2 and "Traceback" not in refused.stderr
    line = refused.stderr.strip().splitlines()[-1]
    assert fresh_pg in line and "switchyard migrate" in line
    migrated = run_cli(
        "migrate", env={"SWITCHYARD_DATABASE_URL": f"postgres://postgres@127.0.0.1:5432/{fresh_pg}"}
    )
    assert migrated.returncode == 0, migrated.stderr
    gateway = GatewayProcess("litellm", cfg, tmp_path, env).start()
    try:
        await gateway.wait_ready()
    finally:
        assert await gateway.stop() in (0, -signal.SIGTERM)
