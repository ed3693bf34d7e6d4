"""The fp32 CPU decode step at batch 1, compiled from `kernels/cpu_decode.c` when the engine starts.

At batch 1 a decode step reads every weight once, so its speed is how fast the matrix-vector products
stream memory, plus the fixed cost of the small ops around them. On an AVX-512 EPYC, MKL's GEMV read
SmolLM2's matrices at 11-14 GB/s where `torch.sum` reads 27; our loop reads 23-25, and folding the
norms, SwiGLU, residual adds, rope and attention into the same calls removes ~60 torch ops per layer
(README, "Batch 1: our own kernels"). The library is compiled per process with the host's C compiler
and `-march=native` (~0.3 s) into a temporary file: the code always matches the CPU it runs on and
there is no cache to go stale. Without a compiler the engine keeps torch's ops.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import mmap
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import torch

log = logging.getLogger(__name__)

SOURCE = Path(__file__).with_name("kernels") / "cpu_decode.c"
# -fassociative-math (with what it needs) lets sums use vector partial sums; not -ffast-math, whose
# crtfastmath would switch the whole process to flush-to-zero when the library loads.
FLAGS = (
    "-O3",
    "-march=native",
    "-fno-math-errno",
    "-fassociative-math",
    "-fno-signed-zeros",
    "-fno-trapping-math",
    "-shared",
    "-fPIC",
)
ACCUMULATE, RMS_NORM, SWIGLU = 1, 2, 4  # the C side's flags

_P, _L = ctypes.c_void_p, ctypes.c_long


@dataclass(frozen=True, slots=True)
class DecodeRow:
    block_table: torch.Tensor
    ctx_len: int
    cis: torch.Tensor
    cache_shape: torch.Size


def _fp32(a: torch.Tensor, b: torch.Tensor, c: torch.Tensor | None = None) -> bool:
    """Contiguous fp32 (on the CPU: the model only builds kernels there). Called per matmul, so terse."""
    f32 = torch.float32
    if a.dtype is not f32 or b.dtype is not f32 or not (a.is_contiguous() and b.is_contiguous()):
        return False
    return c is None or (c.dtype is f32 and c.is_contiguous())


class CpuKernels:
    """The C side trusts its arguments (a wrong shape reads past a tensor rather than raising), so each
    call checks shapes, dtypes and contiguity first."""

    def __init__(self, lib: ctypes.CDLL) -> None:
        self._gemv = lib.gemv_f32
        self._gemv.argtypes = [_P, _P, _P, _L, _L, ctypes.c_int, ctypes.c_float]
        self._attn = lib.decode_attention
        self._attn.argtypes = [_P, _P, _P, _P, _P, _L, _L, _L, _L, _L, ctypes.c_float, _P]
        for fn in (self._gemv, self._attn):
            fn.restype = ctypes.c_int

    def gemv(
        self,
        w: torch.Tensor,
        x: torch.Tensor,
        *,
        add_to: torch.Tensor | None = None,
        rms_eps: float | None = None,
        swiglu: bool = False,
    ) -> torch.Tensor:
        """v @ w.T as [1, N] for one row x and w [N, K], where v is x, x RMS-normalised (`rms_eps`; the
        norm's gain lives in w) or silu(x[:K]) * x[K:] (`swiglu`). With `add_to` ([1, N]) the product is
        added into it in place."""
        n, k = w.shape
        if x.numel() != (2 * k if swiglu else k) or not _fp32(w, x):
            raise ValueError(f"gemv: x {tuple(x.shape)} {x.dtype} against w {tuple(w.shape)} {w.dtype}")
        flags = (RMS_NORM if rms_eps is not None else 0) | (SWIGLU if swiglu else 0)
        if add_to is None:
            out = torch.empty(1, n)
        elif add_to.numel() != n or not _fp32(add_to, x):
            raise ValueError(f"gemv: add_to {tuple(add_to.shape)} against w {tuple(w.shape)}")
        else:
            out, flags = add_to, flags | ACCUMULATE
        if self._gemv(w.data_ptr(), x.data_ptr(), out.data_ptr(), n, k, flags, rms_eps or 0.0):
            raise MemoryError("gemv: no memory for the SwiGLU row")
        return out

    def decode_row(
        self, block_table: torch.Tensor, ctx_len: int, cis: torch.Tensor, cache_shape: torch.Size
    ) -> DecodeRow:
        """One decode token's place in the cache, checked once for every layer's `decode_attention`:
        block_table [blocks] int64, ctx_len tokens after this step, cis [D / 2] complex rotations."""
        num_blocks, block_size, _, dim = cache_shape
        table = block_table.reshape(-1)
        cis = cis.reshape(-1)
        if (
            table.dtype != torch.long
            or not table.is_contiguous()
            or not 0 < ctx_len <= table.numel() * block_size
            or not 0 <= int(table.min()) <= int(table.max()) < num_blocks
            or cis.dtype != torch.complex64
            or cis.numel() != dim // 2
            or not cis.is_contiguous()
        ):
            raise ValueError(
                f"decode_row: table {tuple(table.shape)}, ctx_len {ctx_len}, cache {cache_shape}"
            )
        return DecodeRow(table, ctx_len, cis, cache_shape)

    def decode_attention(
        self,
        qkv: torch.Tensor,
        row: DecodeRow,
        k_cache: torch.Tensor,
        v_cache: torch.Tensor,
        n_heads: int,
        scale: float,
    ) -> torch.Tensor:
        """One decode token's attention: rope on qkv's q and k heads (in place), its k and v into the
        cache at position ctx_len - 1, then attention over [0, ctx_len). qkv [1, (H + 2 Hkv) D] with each
        q/k head's halves interleaved; caches [blocks, block_size, Hkv, D]. Returns [1, H D]."""
        _, block_size, n_kv, dim = row.cache_shape
        if (
            qkv.numel() != (n_heads + 2 * n_kv) * dim
            or k_cache.shape != row.cache_shape
            or v_cache.shape != row.cache_shape
            or not _fp32(qkv, k_cache, v_cache)
        ):
            raise ValueError(f"decode_attention: qkv {tuple(qkv.shape)}, cache {tuple(k_cache.shape)}")
        out = torch.empty(1, n_heads * dim)
        tensors = (qkv, row.cis, k_cache, v_cache, row.block_table)
        ptrs = [t.data_ptr() for t in tensors]
        if self._attn(*ptrs, row.ctx_len, block_size, n_heads, n_kv, dim, scale, out.data_ptr()):
            raise MemoryError("decode_attention: no memory for the scores")
        return out


def in_one_arena(tensors: list[torch.Tensor]) -> list[torch.Tensor]:
    """Copies of `tensors` (fp32) back to back, each 64-byte aligned, in one anonymous mapping advised
    for transparent huge pages. The batch-1 step streams them all in this order, and on the AVX-512
    EPYC our GEMV read 2 MB pages ~10% faster than 4 KB ones (fewer TLB misses). Where the advice is
    refused (not Linux, THP off) the copies sit in ordinary pages. The originals can then be freed."""
    sizes = [-(-t.numel() // 16) * 16 for t in tensors]
    # Private: a shared anonymous mapping is shmem, which THP's "madvise" setting does not cover.
    buf = mmap.mmap(-1, 4 * sum(sizes), flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    with contextlib.suppress(AttributeError, OSError):
        buf.madvise(mmap.MADV_HUGEPAGE)
    flat = torch.frombuffer(buf, dtype=torch.float32)  # holds a reference to the mapping
    out, offset = [], 0
    for t, size in zip(tensors, sizes, strict=True):
        out.append(flat[offset : offset + t.numel()].view(t.shape).copy_(t))
        offset += size
    return out


def build_cpu_kernels() -> CpuKernels | None:
    """Compile and load the kernels; None (logged) where there is no working C compiler."""
    cc = shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")
    if cc is None:
        log.info("no C compiler: the CPU decode step at batch 1 uses torch's ops")
        return None
    with tempfile.TemporaryDirectory(prefix="switchyard-kernels-") as tmp:
        lib_path = Path(tmp) / "cpu_decode.so"
        try:
            subprocess.run(
                [cc, *FLAGS, "-o", str(lib_path), str(SOURCE), "-lm"],
                check=True,
                capture_output=True,
                timeout=120,
            )
            lib = ctypes.CDLL(str(lib_path))  # stays mapped after the directory is removed
        except (OSError, subprocess.SubprocessError) as exc:
            detail = getattr(exc, "stderr", b"") or b""
            log.warning("could not build the CPU kernels (%s %s); using torch's ops", exc, detail[-500:])
            return None
    return CpuKernels(lib)
