"""deploy/local-cluster.sh's unhappy paths, which need no gateway: each ends with a line saying what
is wrong and a non-zero exit, and leaves nothing running (the rollout itself: test_rollout.py)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.integration.gateway_proc import REPO_ROOT, free_port

SCRIPT = REPO_ROOT / "deploy" / "local-cluster.sh"


def run(command: str, state: Path, serve: str = "switchyard") -> subprocess.CompletedProcess[str]:
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("SWITCHYARD_")},
        "SY_LC_DIR": str(state),
        "SY_LC_NGINX_PORT": str(free_port()),
        "SY_LC_PORTS": f"{free_port()} {free_port()}",
        "SY_LC_SERVE": serve,
    }
    return subprocess.run(["bash", str(SCRIPT), command], env=env, capture_output=True, text=True, timeout=60)


def test_an_unknown_command_prints_the_usage(tmp_path: Path) -> None:
    done = run("deploy", tmp_path)
    assert done.returncode == 2 and "usage:" in done.stderr and "rollout" in done.stderr


def test_a_rollout_of_nothing_running_says_to_start_first(tmp_path: Path) -> None:
    done = run("rollout", tmp_path)
    assert done.returncode == 1 and "not running (start it first)" in done.stderr


@pytest.mark.skipif(shutil.which("nginx") is None, reason="no nginx (apt-get install -y nginx)")
def test_a_replica_that_cannot_start_stops_the_start(tmp_path: Path) -> None:
    """`false serve ...` exits at once: the start names the replica and its log, and starts no nginx."""
    done = run("start", tmp_path, serve="false")
    assert done.returncode == 1
    assert "replica 0 exited; see" in done.stderr and "serve.log" in done.stderr
    assert not (tmp_path / "nginx" / "nginx.pid").exists()
    assert run("stop", tmp_path).returncode == 0
