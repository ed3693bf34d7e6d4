import subprocess
import sys
from pathlib import Path


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gateway.cli", *args], capture_output=True, text=True, timeout=60, env=env
    )


def test_refuses_public_bind_without_master_key(tmp_path: Path) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text("models: [{name: a, model: m, api_base: 'http://127.0.0.1:1/v1'}]\n")
    out = run_cli("serve", "--config", str(cfg), "--host", "0.0.0.0", env={"PATH": "/usr/bin:/bin"})
    assert out.returncode == 2
    assert "without a master key" in out.stderr


def test_bad_config_is_a_clear_error(tmp_path: Path) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text("models: [{name: a}]\n")
    out = run_cli("serve", "--config", str(cfg))
    assert out.returncode == 2
    assert "models.0.model" in out.stderr and "Traceback" not in out.stderr
