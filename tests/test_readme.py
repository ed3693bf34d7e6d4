"""The READMEs are the reference a new user reads first: their commands, links and facts must hold."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
READMES = sorted(p for p in ROOT.rglob("README.md") if not {".git", "docs", "node_modules"} & set(p.parts))
README = (ROOT / "README.md").read_text()


def _bash_blocks(text: str) -> list[str]:
    return re.findall(r"```bash\n(.*?)```", text, re.S)


def test_readme_starts_with_the_two_commands_and_ci_runs_the_second() -> None:
    first, second = (block.strip() for block in _bash_blocks(README)[:2])
    assert README.index("```bash") < README.index("\n## ", README.index("## Quick start") + 1)
    assert first.endswith("switchyard serve") and "pip install" in first
    assert second.endswith("python -m pytest -q") and "[dev,local]" in second
    ci = (ROOT / ".ci" / "run").read_text()
    assert second.replace("pip install ", "pip install -q ") in ci


@pytest.mark.parametrize("readme", READMES, ids=lambda p: str(p.relative_to(ROOT)))
def test_readmes_point_at_nothing_outside_the_repository(readme: Path) -> None:
    text = readme.read_text()
    assert "../shared" not in text
    for target in re.findall(r"\]\(([^)#\s]+)[^)]*\)", text):
        if "://" not in target:
            assert (readme.parent / target).exists(), f"{readme}: broken link {target}"


def test_readme_states_what_the_install_needs_and_leaves_behind() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    minimum = project["requires-python"].removeprefix(">=")
    assert f"Python {minimum} or newer" in README
    assert "`switchyard.db`" in README and "working directory" in README


def test_stale_claims_stay_gone() -> None:
    """Claims that were true of an earlier build and misled users (issue 15's review)."""
    for claim in (
        "Startup to ready: 1.5 s",
        "A denial is a 429 with `Retry-After`",
        'gpt-4o-mini", messages',
    ):
        assert claim not in README
