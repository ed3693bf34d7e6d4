"""deploy/compose.yaml renders with Debian's docker-compose, its nginx config parses with nginx -t, and
the routing config it mounts is one the gateway loads."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from gateway.config import load_config

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
GATEWAYS = ("gateway-1", "gateway-2")

needs_compose = pytest.mark.skipif(
    shutil.which("docker-compose") is None,
    reason="docker-compose is not installed (apt-get install docker-compose; .ci/run installs it)",
)
needs_nginx = pytest.mark.skipif(
    shutil.which("nginx") is None,
    reason="nginx is not installed (apt-get install nginx; .ci/run installs it)",
)


def _compose(env_file: Path) -> subprocess.CompletedProcess[str]:
    # The shell's own variables would win over the env file's: leave out any the stack reads.
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SWITCHYARD_", "POSTGRES_"))}
    return subprocess.run(
        ["docker-compose", "-f", str(DEPLOY / "compose.yaml"), "--env-file", str(env_file), "config"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


@needs_compose
def test_compose_validates_and_orders_the_start() -> None:
    result = _compose(DEPLOY / ".env.example")
    assert result.returncode == 0, result.stderr
    services = yaml.safe_load(result.stdout)["services"]
    assert set(services) == {"postgres", "redis", "migrate", *GATEWAYS, "nginx"}
    assert services["migrate"]["command"] == ["migrate"]
    assert services["migrate"]["restart"] == "no"
    assert services["migrate"]["depends_on"] == {"postgres": {"condition": "service_healthy"}}
    for name in ("postgres", "redis"):
        assert services[name]["healthcheck"]["test"]
    for name in GATEWAYS:
        gateway = services[name]
        assert gateway["depends_on"]["migrate"] == {"condition": "service_completed_successfully"}
        assert gateway["depends_on"]["redis"] == {"condition": "service_healthy"}
        assert any("/health/ready" in part for part in gateway["healthcheck"]["test"])
        env = gateway["environment"]
        assert env["SWITCHYARD_DATABASE_URL"].startswith("postgresql://")
        assert env["SWITCHYARD_DATABASE_URL"].endswith("@postgres:5432/switchyard")
        assert env["SWITCHYARD_REDIS_URL"] == "redis://redis:6379/0"
        assert env["SWITCHYARD_MASTER_KEY"]
        config = Path(env["SWITCHYARD_CONFIG"])
        assert f"{DEPLOY / 'config'}:{config.parent}:ro" in gateway["volumes"]
        assert (DEPLOY / "config" / config.name).is_file()
    # Each replica keeps its own spool: records it holds during an outage are its own to replay.
    spools = {v for name in GATEWAYS for v in services[name]["volumes"] if "spool" in v}
    assert len(spools) == len(GATEWAYS)
    assert services["nginx"]["depends_on"] == {name: {"condition": "service_healthy"} for name in GATEWAYS}


@needs_compose
def test_compose_refuses_to_render_without_a_master_key(tmp_path: Path) -> None:
    lines = (DEPLOY / ".env.example").read_text().splitlines()
    env_file = tmp_path / "env"
    env_file.write_text("\n".join(line for line in lines if not line.startswith("SWITCHYARD_MASTER_KEY")))
    result = _compose(env_file)
    assert result.returncode != 0
    assert "set SWITCHYARD_MASTER_KEY in deploy/.env" in result.stderr


def test_the_env_example_holds_placeholders_only() -> None:
    values = dict(
        line.split("=", 1)
        for line in (DEPLOY / ".env.example").read_text().splitlines()
        if line and not line.startswith("#")
    )
    for name in ("OPENAI_API_KEY", "ANTHROPIC_API_KEY", "GEMINI_API_KEY"):
        assert values[name] == ""
    assert "change-me" in values["SWITCHYARD_MASTER_KEY"] and values["POSTGRES_PASSWORD"] == "change-me"


def test_the_mounted_routing_config_loads_with_and_without_provider_keys() -> None:
    bare = load_config(DEPLOY / "config" / "switchyard.yaml", {})
    assert [m.name for m in bare.models] == ["local-llm"] and bare.routes["auto"].candidates == ["local-llm"]
    keyed = load_config(
        DEPLOY / "config" / "switchyard.yaml", {"OPENAI_API_KEY": "sk-x", "ANTHROPIC_API_KEY": "sk-y"}
    )
    assert {m.name for m in keyed.models} == {"local-llm", "gpt-4o-mini", "gpt-4o", "claude-haiku"}


def _nginx_conf() -> str:
    return (DEPLOY / "nginx.conf").read_text()


def test_nginx_sends_to_both_replicas_and_passes_streams_through() -> None:
    conf = _nginx_conf()
    upstream = re.search(r"upstream switchyard \{(.*?)\}", conf, re.S)
    assert upstream is not None
    servers = re.findall(r"^\s*server ([\w.-]+):(\d+)", upstream.group(1), re.M)
    assert servers == [(name, "4000") for name in GATEWAYS]
    assert re.search(r"^\s*proxy_buffering off;", conf, re.M)
    read_timeout = re.search(r"^\s*proxy_read_timeout (\d+)s;", conf, re.M)
    assert read_timeout is not None and int(read_timeout.group(1)) >= 600
    # A POST already sent to a replica is never resent to the other (it may have been answered).
    assert "non_idempotent" not in conf


@needs_nginx
def test_nginx_config_parses(tmp_path: Path) -> None:
    # The replicas' names resolve only inside the compose network; nginx -t resolves them, so they
    # become loopback here and everything else is tested as written.
    conf = _nginx_conf()
    for name in GATEWAYS:
        conf = conf.replace(f"server {name}:", "server 127.0.0.1:")
    (tmp_path / "nginx.conf").write_text(conf)
    result = subprocess.run(
        ["nginx", "-t", "-p", str(tmp_path), "-c", str(tmp_path / "nginx.conf"), "-e", "stderr"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 0, result.stderr
    assert "test is successful" in result.stderr


@needs_nginx
def test_nginx_rejects_a_broken_config(tmp_path: Path) -> None:
    """The check above can fail: a config missing a brace does not parse."""
    (tmp_path / "nginx.conf").write_text(_nginx_conf().replace("events {", "events ", 1))
    result = subprocess.run(
        ["nginx", "-t", "-p", str(tmp_path), "-c", str(tmp_path / "nginx.conf"), "-e", "stderr"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode != 0
