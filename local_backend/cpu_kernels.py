"""The fp32 CPU decode in C, compiled from `kernels/cpu_decode.c` when the engine starts: a one-token
step as one call per layer, and in a batch the decode rows' attention.

At batch 1 a decode step reads every weight once, so its speed is how fast the matrix-vector products
stream memory, plus the fixed cost of the small ops around them. On an AVX-512 EPYC, MKL's GEMV read
SmolLM2's matrices at 11-13 GB/s where `torch.sum` reads 27; our loop reads 23-25, and one C call
per layer (norms, products, rope, cache write, attention, SwiGLU, residuals) takes a step from ~4,500
aten calls to ~100 (README, "Batch 1: our own kernels"). The library is compiled per process with
the host's C compiler and `-march=native` (~0.3 s) into a temporary file: the code always matches the
CPU it runs on and there is no cache to go stale. Without a compiler the engine keeps torch's ops.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import mmap
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import torch

from local_backend.config import ModelConfig

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
_P, _L, _F = ctypes.c_void_p, ctypes.c_int64, ctypes.c_float


@dataclass(frozen=True, slots=True)
class DecodeRows:
    """A step's decode tokens and their places in the paged cache, checked once for every layer."""

    block_tables: torch.Tensor  # [rows, width] int64
    ctx_lens: torch.Tensor  # [rows] int64: tokens in the cache once this step's token is written
    max_ctx: int
    cis: torch.Tensor  # [rows, D / 2] complex64, each row's rotations
    cache_shape: torch.Size


@dataclass(frozen=True, slots=True)
class KernelLayer:
    """A layer's weights as the C side takes them, checked once when the model is built. Holds the
    tensors so the addresses stay valid."""

    tensors: tuple[torch.Tensor, ...]
    weights: tuple[int, int | None, int, int, int]  # wqkv, bqkv (or None), wo, wgu, wd
    shape: tuple[int, int, float, int, int, int, float]  # hidden, inter, eps, heads, kv heads, D, scale


def serves(device: torch.device, dtype: torch.dtype) -> bool:
    """Where the kernels apply: CPU, fp32 (bf16 with native dot products runs packed at every size)."""
    return device.type == "cpu" and dtype == torch.float32


def _fp32(*tensors: torch.Tensor) -> bool:
    return all(t.dtype is torch.float32 and t.is_cpu and t.is_contiguous() for t in tensors)


class CpuKernels:
    """The C side trusts its arguments (a wrong shape reads past a tensor rather than raising), so the
    arguments are checked here: weights once per model, the cache positions once per step (`DecodeRows`
    from `decode_rows` only), activations per call."""

    def __init__(self, lib: ctypes.CDLL) -> None:
        self._gemv = lib.gemv_f32
        self._gemv.argtypes = [_P, _P, _P, _L, _L]
        self._gemv.restype = None
        self._layer = lib.decode_layer
        self._layer.argtypes = [_P] * 6 + [_L, _L, _F, _L, _L, _L, _F, _P, _P, _L, _L, _P, _P]
        self._layer.restype = ctypes.c_int
        self._attention = lib.decode_attention
        self._attention.argtypes = [_P, _P, _P, _L, _P, _L, _L, _L, _L, _L, _F, _P, _P, _P]
        self._attention.restype = ctypes.c_int

    def gemv(self, w: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """x @ w.T as [1, N] for one row x [1, K] and w [N, K]."""
        n, k = w.shape
        if x.numel() != k or not _fp32(w, x):
            raise ValueError(f"gemv: x {tuple(x.shape)} {x.dtype} against w {tuple(w.shape)} {w.dtype}")
        out = torch.empty(1, n, dtype=torch.float32)
        self._gemv(w.data_ptr(), x.data_ptr(), out.data_ptr(), n, k)
        return out

    def layer(self, weights: dict[str, torch.Tensor], cfg: ModelConfig, scale: float) -> KernelLayer:
        """wqkv [(H + 2 Hkv) D, hidden] (RMS gain folded in, q/k heads' halves interleaved), optional bqkv,
        wo [hidden, H D], wgu [2 inter, hidden] (gain folded in) and wd [hidden, inter], all [out, in]."""
        h, i, d = cfg.hidden_size, cfg.intermediate_size, cfg.head_dim
        n_qkv = (cfg.num_heads + 2 * cfg.num_kv_heads) * d
        want = {"wqkv": (n_qkv, h), "wo": (h, cfg.num_heads * d), "wgu": (2 * i, h), "wd": (h, i)}
        if "bqkv" in weights:
            want["bqkv"] = (n_qkv,)
        got = {k: tuple(w.shape) for k, w in weights.items()}
        if got != want or not _fp32(*weights.values()) or cfg.num_heads % cfg.num_kv_heads or d % 2:
            raise ValueError(f"kernel layer: weights {got}, expected {want}")
        bias = weights.get("bqkv")
        return KernelLayer(
            tuple(weights.values()),
            (
                weights["wqkv"].data_ptr(),
                None if bias is None else bias.data_ptr(),
                weights["wo"].data_ptr(),
                weights["wgu"].data_ptr(),
                weights["wd"].data_ptr(),
            ),
            (h, i, cfg.rms_norm_eps, cfg.num_heads, cfg.num_kv_heads, d, scale),
        )

    def decode_rows(
        self, block_tables: torch.Tensor, ctx_lens: torch.Tensor, cis: torch.Tensor, cache_shape: torch.Size
    ) -> DecodeRows:
        """block_tables [rows, width] int64 (padded with any valid block), ctx_lens [rows] int64,
        cis [rows, ..., D / 2] complex rotations for each row's position."""
        num_blocks, block_size, _, dim = cache_shape
        rows = ctx_lens.numel()
        if rows == 0 or dim % 2 or not (block_tables.is_cpu and ctx_lens.is_cpu and cis.is_cpu):
            raise ValueError(f"decode_rows: {rows} rows, head_dim {dim}, on {ctx_lens.device}")
        cis = cis.reshape(rows, -1)
        max_ctx = int(ctx_lens.max())
        if (
            block_tables.dim() != 2
            or block_tables.shape[0] != rows
            or block_tables.dtype != torch.long
            or ctx_lens.dtype != torch.long
            or not (block_tables.is_contiguous() and ctx_lens.is_contiguous() and cis.is_contiguous())
            or not 0 < int(ctx_lens.min()) <= max_ctx <= block_tables.shape[1] * block_size
            or not 0 <= int(block_tables.min()) <= int(block_tables.max()) < num_blocks
            or cis.dtype != torch.complex64
            or cis.shape[1] != dim // 2
        ):
            raise ValueError(
                f"decode_rows: tables {tuple(block_tables.shape)}, lens {ctx_lens.tolist()}, "
                f"cache {cache_shape}"
            )
        return DecodeRows(block_tables, ctx_lens, max_ctx, cis, cache_shape)

    def decode_attention(
        self,
        qkv: torch.Tensor,
        rows: DecodeRows,
        k_cache: torch.Tensor,
        v_cache: torch.Tensor,
        n_heads: int,
        scale: float,
    ) -> torch.Tensor:
        """Attention for the decode rows of a batch whose products run in torch: qkv [rows, (H + 2 Hkv) D]
        (each q/k head's halves interleaved) is roped in place, each row's k and v are written to the
        cache at its position ctx_len - 1, and each row attends to its own sequence. Returns [rows, H D]."""
        n_rows = rows.ctx_lens.numel()
        _, block_size, n_kv, dim = rows.cache_shape
        if (
            qkv.shape != (n_rows, (n_heads + 2 * n_kv) * dim)
            or k_cache.shape != rows.cache_shape
            or v_cache.shape != rows.cache_shape
            or not _fp32(qkv, k_cache, v_cache)
            or n_heads % n_kv
            or dim % 2
        ):
            raise ValueError(f"decode_attention: qkv {tuple(qkv.shape)}, cache {tuple(k_cache.shape)}")
        out = torch.empty(n_rows, n_heads * dim, dtype=torch.float32)
        tables = rows.block_tables
        rc = self._attention(
            qkv.data_ptr(),
            rows.cis.data_ptr(),
            tables.data_ptr(),
            tables.shape[1],
            rows.ctx_lens.data_ptr(),
            n_rows,
            block_size,
            n_heads,
            n_kv,
            dim,
            scale,
            k_cache.data_ptr(),
            v_cache.data_ptr(),
            out.data_ptr(),
        )
        if rc:
            raise MemoryError("decode_attention: no memory for its scratch")
        return out

    def decode_layer(
        self,
        x: torch.Tensor,
        layer: KernelLayer,
        row: DecodeRows,
        k_cache: torch.Tensor,
        v_cache: torch.Tensor,
    ) -> None:
        """One layer for one decode token, x [1, hidden] updated in place; writes the token's k and v to
        the caches ([blocks, block_size, Hkv, D]) at position ctx_len - 1."""
        hidden, _, _, _, n_kv, dim, _ = layer.shape
        if (
            x.numel() != hidden
            or k_cache.shape != row.cache_shape
            or v_cache.shape != row.cache_shape
            or row.cache_shape[2:] != (n_kv, dim)
            or row.ctx_lens.numel() != 1
            or not _fp32(x, k_cache, v_cache)
        ):
            raise ValueError(f"decode_layer: x {tuple(x.shape)}, cache {tuple(k_cache.shape)}")
        rc = self._layer(
            x.data_ptr(),
            *layer.weights,
            *layer.shape,
            row.cis.data_ptr(),
            row.block_tables.data_ptr(),
            row.max_ctx,
            row.cache_shape[1],
            k_cache.data_ptr(),
            v_cache.data_ptr(),
        )
        if rc:
            raise MemoryError("decode_layer: no memory for its scratch")


def in_one_arena(tensors: list[torch.Tensor]) -> list[torch.Tensor]:
    """Copies of `tensors` (fp32) back to back, each 64-byte aligned, in one anonymous mapping advised
    for transparent huge pages. The batch-1 step streams them all in this order, and on the AVX-512
    EPYC our GEMV read 2 MB pages 3-12% faster than 4 KB ones (fewer TLB misses). Where the advice is
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
    """Compile and load the kernels; None (logged) where there is no working C compiler, and on Windows
    (unmeasured there, and a loaded DLL cannot be removed with its temporary directory)."""
    cc = shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")
    if cc is None or sys.platform == "win32":
        log.info("no C kernels (compiler %s, platform %s): CPU decode uses torch's ops", cc, sys.platform)
        return None
    with tempfile.TemporaryDirectory(prefix="switchyard-kernels-", ignore_cleanup_errors=True) as tmp:
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
