"""pyproject.toml's declared license is the LICENSE file beside it, and the built wheel and sdist carry it."""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
import tarfile
import tomllib
import zipfile
from email.parser import Parser
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
# sha256 of the Apache License 2.0's terms ("TERMS AND CONDITIONS ..." to "END OF TERMS AND CONDITIONS")
# with runs of whitespace made single spaces: the standard text, not an edited one.
APACHE_2_TERMS_SHA256 = "b316b715c7f48af32f6265b3de80b9656fdbddc57f5854215c8a4c6e0ad42c05"
COPYRIGHT = "Copyright 2026 the Switchyard authors"

# Builds metadata and an sdist of a copy holding only these: the packages do not change what either says
# about the license, and copying them would make the test slow.
_BUILD = """
import sys
from setuptools import build_meta
out = sys.argv[1]
names = build_meta.prepare_metadata_for_build_wheel(out), build_meta.build_sdist(out)
print(*names)  # last, after setuptools' own log lines
"""


def test_declared_license_is_the_license_file() -> None:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    assert project["license"] == "Apache-2.0"
    assert project["license-files"] == ["LICENSE"]
    text = (REPO / "LICENSE").read_text()
    assert text.lstrip().startswith("Apache License\n                           Version 2.0, January 2004")
    start = text.index("TERMS AND CONDITIONS FOR USE")
    end = text.index("END OF TERMS AND CONDITIONS") + len("END OF TERMS AND CONDITIONS")
    terms = " ".join(text[start:end].split())
    assert hashlib.sha256(terms.encode()).hexdigest() == APACHE_2_TERMS_SHA256
    assert COPYRIGHT in text and "[yyyy]" not in text


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    src = tmp_path_factory.mktemp("src")
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy(REPO / name, src / name)
    out = tmp_path_factory.mktemp("dist")
    run = subprocess.run(
        [sys.executable, "-c", _BUILD, str(out)], cwd=src, capture_output=True, text=True, timeout=120
    )
    assert run.returncode == 0, run.stderr
    dist_info, sdist = run.stdout.splitlines()[-1].split()
    return out / dist_info, out / sdist


def test_wheel_metadata_names_and_ships_the_license(built: tuple[Path, Path]) -> None:
    dist_info, _ = built
    meta = Parser().parsestr((dist_info / "METADATA").read_text())
    assert meta["License-Expression"] == "Apache-2.0"
    assert meta.get_all("License-File") == ["LICENSE"]
    assert (dist_info / "licenses" / "LICENSE").read_bytes() == (REPO / "LICENSE").read_bytes()


def test_sdist_ships_the_license(built: tuple[Path, Path]) -> None:
    _, sdist = built
    with tarfile.open(sdist) as tar:
        top = sdist.name.removesuffix(".tar.gz")
        member = tar.extractfile(f"{top}/LICENSE")
        assert member is not None
        assert member.read() == (REPO / "LICENSE").read_bytes()
        pkg_info = Parser().parsestr(tar.extractfile(f"{top}/PKG-INFO").read().decode())  # type: ignore[union-attr]
    assert pkg_info["License-Expression"] == "Apache-2.0"


_BUILD_WHEEL = """
import sys
from setuptools import build_meta
print(build_meta.build_wheel(sys.argv[1]))  # last, after setuptools' own log lines
"""


def test_wheel_ships_the_dashboards_templates_static_files_and_vendored_license(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    """The dashboard works from a `pip install`: its templates, script, styles and uPlot (with uPlot's own
    license) are package data. Built from a copy holding just the gateway package's root and the dashboard."""
    src = tmp_path_factory.mktemp("wheel-src")
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy(REPO / name, src / name)
    (src / "gateway").mkdir()
    shutil.copy(REPO / "gateway" / "__init__.py", src / "gateway" / "__init__.py")
    shutil.copytree(
        REPO / "gateway" / "dashboard",
        src / "gateway" / "dashboard",
        ignore=shutil.ignore_patterns("__pycache__"),
    )
    out = tmp_path_factory.mktemp("wheel")
    run = subprocess.run(
        [sys.executable, "-c", _BUILD_WHEEL, str(out)], cwd=src, capture_output=True, text=True, timeout=120
    )
    assert run.returncode == 0, run.stderr
    with zipfile.ZipFile(out / run.stdout.splitlines()[-1]) as wheel:
        names = set(wheel.namelist())
        shipped = {
            p.relative_to(REPO).as_posix()
            for p in (REPO / "gateway" / "dashboard").rglob("*")
            if p.is_file() and "__pycache__" not in p.parts
        }
        assert shipped <= names, sorted(shipped - names)
        vendor = "gateway/dashboard/static/vendor/uplot/"
        assert {vendor + "uPlot.iife.min.js", vendor + "uPlot.min.css", vendor + "LICENSE"} <= names
        assert "Leon Sorokin" in wheel.read(vendor + "LICENSE").decode()
        assert any(n.startswith("gateway/dashboard/templates/") and n.endswith(".html") for n in names)
