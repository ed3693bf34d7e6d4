"""The kernels read nothing past their buffers: kernel_bounds.c runs the products (every tile, rows kept
in fp32 or not, K / 2 odd and even), a layer and the sampler on buffers that end at an unreadable page.
gcc 12's vectorised 4-row fp32 tile once read up to 6 KB past its rows: a segfault about one bench run
in ten."""

from __future__ import annotations

import platform
import shutil
import subprocess
from pathlib import Path

import pytest

from local_backend.cpu_kernels import FLAGS

HARNESS = Path(__file__).with_name("kernel_bounds.c")
CPUINFO = Path("/proc/cpuinfo")
FLAGS_OF_CPU = set(CPUINFO.read_text().split()) if CPUINFO.exists() else set()
# The host's own build, and on x86 the plain build and the AVX2 one where this CPU runs them.
TARGETS = ["native"]
if platform.machine() == "x86_64":
    TARGETS.append("x86-64")
    if {"avx2", "fma", "bmi2", "movbe", "f16c"} <= FLAGS_OF_CPU:
        TARGETS.append("x86-64-v3")


# On an AMX CPU the native build runs twice: with the tiles, and with the AVX512-BF16 tiles they replace.
RUNS = [(march, "") for march in TARGETS]
if {"amx_tile", "amx_bf16"} <= FLAGS_OF_CPU:
    RUNS.append(("native", "no-amx"))


@pytest.mark.parametrize(("march", "mode"), RUNS)
def test_kernels_read_only_their_buffers(march: str, mode: str, tmp_path: Path) -> None:
    cc = shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")
    if cc is None:
        pytest.skip("no C compiler on this machine")
    flags = [f for f in FLAGS if f not in ("-shared", "-fPIC", "-march=native")]
    exe = tmp_path / "kernel_bounds"
    build = [cc, *flags, f"-march={march}", "-o", str(exe), str(HARNESS), "-lm"]
    subprocess.run(build, check=True, timeout=120)
    run = subprocess.run([str(exe), *([mode] if mode else [])], capture_output=True, text=True, timeout=120)
    assert (run.returncode, run.stdout) == (0, "ok\n"), run.stderr
