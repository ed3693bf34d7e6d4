"""Fake upstreams for the provider tests: each starts once per test module on 127.0.0.1.

`openai_upstream`, `anthropic_upstream`, `gemini_upstream` yield a started `ServerThread` (`.url` is the
server root, `.app.state.requests` what it received). A fake whose module does not exist yet skips the
tests that need it.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator
from typing import Any

import pytest

from tests.fakes.server import ServerThread


def import_or_skip(module: str) -> Any:
    """Import `module`, skipping the test when that module itself does not exist (yet); any other
    import failure (a bug in it, a missing dependency) still errors."""
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as e:
        if e.name and (module == e.name or module.startswith(e.name + ".")):
            pytest.skip(f"{module} does not exist yet")
        raise


def _serve(module: str) -> Iterator[ServerThread]:
    fake = import_or_skip(module)
    with ServerThread(fake.create_app()) as server:
        yield server


@pytest.fixture(scope="module")
def openai_upstream() -> Iterator[ServerThread]:
    """The fake OpenAI-compatible upstream; point clients at `openai_upstream.url + "/v1"`."""
    yield from _serve("tests.fakes.openai_upstream")


@pytest.fixture(scope="module")
def anthropic_upstream() -> Iterator[ServerThread]:
    yield from _serve("tests.fakes.anthropic_upstream")


@pytest.fixture(scope="module")
def gemini_upstream() -> Iterator[ServerThread]:
    yield from _serve("tests.fakes.gemini_upstream")
