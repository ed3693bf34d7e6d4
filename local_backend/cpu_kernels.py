"""The CPU decode in C, compiled from `kernels/cpu_decode.c` when the engine starts: a decode step as one
call per layer, and in a batch with prompt rows the products and the decode rows' attention.

A batch-1 decode step reads every weight once, so its speed is how fast the products stream memory,
plus the fixed cost of the small ops around them. On an AVX-512 EPYC, MKL's GEMV read SmolLM2's fp32
matrices at 11-13 GB/s where `torch.sum` reads 27; a loop that reads one output row at a time reads
23-25, and one C call per layer takes a step from ~4,500 aten calls to ~100 (README, "Batch 1: our own
kernels"). The weights are bf16 in panels (`Panels`, `kernels/matmul.h`): half the bytes of fp32, still
one sequential stream per matrix, and in a batch each weight is loaded once for several rows. The
library is compiled per process with the host's C compiler and `-march=native` (~1 s) into a temporary
file: the code always matches the CPU it runs on and there is no cache to go stale. Without a compiler
the engine keeps torch's ops.
"""

from __future__ import annotations

import ctypes
import logging
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
    "-pthread",
    "-shared",
    "-fPIC",
)
PANEL = 16  # output rows per panel, as in kernels/matmul.h
_P, _L = ctypes.c_void_p, ctypes.c_int64


class _Shape(ctypes.Structure):
    _fields_ = [
        *((n, ctypes.c_int64) for n in ("hidden", "inter", "n_heads", "n_kv", "head_dim", "block_size")),
        ("eps", ctypes.c_float),
        ("scale", ctypes.c_float),
        ("bf16_weights", ctypes.c_int32),
        ("bf16_cache", ctypes.c_int32),
    ]


class _Weights(ctypes.Structure):
    _fields_ = [(n, ctypes.c_void_p) for n in ("wqkv", "bqkv", "wo", "wgu", "wd")]


class _Rows(ctypes.Structure):
    _fields_ = [
        ("cis", ctypes.c_void_p),
        ("tables", ctypes.c_void_p),
        ("width", ctypes.c_int64),
        ("ctx_lens", ctypes.c_void_p),
        ("n_rows", ctypes.c_int64),
        ("max_ctx", ctypes.c_int64),
    ]


@dataclass(frozen=True, slots=True)
class Panels:
    """A bf16 matrix [n, k] as the kernels read it: data [ceil(n / 16), k / 2, 16, 2], element
    (p, i, j, e) = W[16 p + j, 2 i + e], rows past n zero."""

    data: torch.Tensor
    n: int

    @property
    def k(self) -> int:
        return self.data.shape[1] * 2

    @staticmethod
    def shape(n: int, k: int) -> tuple[int, int, int, int]:
        return (-(-n // PANEL), k // 2, PANEL, 2)

    @staticmethod
    def fill(data: torch.Tensor, w: torch.Tensor, start: int = 0) -> None:
        """Writes rows [start, start + len(w)) of the matrix (start a multiple of 16) into `data`."""
        n, k = w.shape
        p0, full = start // PANEL, n // PANEL
        src = w.to(torch.bfloat16).contiguous().view(-1, 2)
        if full:
            data[p0 : p0 + full].copy_(
                src[: full * PANEL * k // 2].view(full, PANEL, k // 2, 2).transpose(1, 2)
            )
        if n % PANEL:
            data[p0 + full].zero_()
            data[p0 + full, :, : n % PANEL].copy_(
                src[full * PANEL * k // 2 :].view(-1, k // 2, 2).transpose(0, 1)
            )

    def rows(self, ids: torch.Tensor) -> torch.Tensor:
        """Rows `ids` of the matrix as fp32 [len(ids), k]: the embedding when it is tied to the lm_head."""
        return self.data[ids // PANEL, :, ids % PANEL].reshape(-1, self.k).float()


@dataclass(frozen=True, slots=True)
class DecodeRows:
    """A step's decode tokens and their places in the paged cache, checked once for every layer."""

    tensors: tuple[torch.Tensor, ...]  # keeps the addresses in `c` valid
    c: _Rows
    cache_shape: torch.Size


@dataclass(frozen=True, slots=True)
class KernelLayer:
    """A layer's weights as the C side takes them, checked once when the model is built."""

    tensors: tuple[torch.Tensor, ...]
    c: _Weights


@dataclass(frozen=True, slots=True)
class KernelStack:
    """Every layer's weights in one C array, for a decode step in one call."""

    layers: tuple[KernelLayer, ...]
    c: ctypes.Array  # of _Weights


def serves(device: torch.device, dtype: torch.dtype) -> bool:
    """Where the kernels apply: CPU, weights in bf16 (panels) or fp32 (the exact mode)."""
    return device.type == "cpu" and dtype in (torch.bfloat16, torch.float32)


def _cpu(*tensors: torch.Tensor, dtype: torch.dtype = torch.float32) -> bool:
    return all(t.dtype is dtype and t.is_cpu and t.is_contiguous() for t in tensors)


def _ascending_rows(rows: torch.Tensor, n: int) -> bool:
    """Distinct row numbers of an n-row matrix, ascending, as the C side walks them."""
    if rows.dtype != torch.long or rows.dim() != 1 or not _cpu(rows, dtype=torch.long) or rows.numel() > n:
        return False
    return rows.numel() == 0 or (int(rows[0]) >= 0 and int(rows[-1]) < n and bool((rows.diff() > 0).all()))


class CpuKernels:
    """The C side trusts its arguments (a wrong shape reads past a tensor rather than raising), so the
    arguments are checked here: weights once per model, the cache positions once per step (`DecodeRows`
    from `decode_rows` only), activations per call."""

    def __init__(self, lib: ctypes.CDLL, threads: int) -> None:
        lib.pool_start.argtypes = [ctypes.c_int]
        self.threads = lib.pool_start(max(1, threads))
        lib.amx_start.restype = ctypes.c_int
        self.amx = bool(lib.amx_start())  # Xeon tiles for batches, where the CPU has them and Linux allows
        self._gemv = lib.gemv_f32
        self._gemv.argtypes = [_P, _P, _P, _L, _L]
        self._gemv.restype = None
        self._matmul = lib.matmul_bf16
        self._matmul.argtypes = [_P, _P, _P, _L, _L, _L, _P, _P, _L]
        self._layer = lib.decode_layer
        self._layer.argtypes = [_P] * 6
        self._layers = lib.decode_layers
        self._layers.argtypes = [_P, _P, _P, _L, _P, _P, _P]
        self._sample = lib.sample_rows
        self._sample.argtypes = [_P, _L, _L, _P, _P, _P]
        self._attention = lib.decode_attention
        self._attention.argtypes = [_P] * 6

    def gemv(self, w: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """x @ w.T as [1, N] for one row x [1, K] and fp32 w [N, K]."""
        n, k = w.shape
        if x.numel() != k or not _cpu(w, x):
            raise ValueError(f"gemv: x {tuple(x.shape)} {x.dtype} against w {tuple(w.shape)} {w.dtype}")
        out = torch.empty(1, n, dtype=torch.float32)
        self._gemv(w.data_ptr(), x.data_ptr(), out.data_ptr(), n, k)
        return out

    def matmul(
        self, w: Panels, x: torch.Tensor, bias: torch.Tensor | None = None, exact: torch.Tensor | None = None
    ) -> torch.Tensor:
        """x @ W.T (+ bias) as fp32 [rows, n] for x [rows, k]: one row in fp32; several rounded to bf16,
        but for rows `exact` (ascending int64 row numbers), which stay fp32."""
        rows = x.shape[0] if x.dim() == 2 else -1
        exact = None if exact is None else exact.contiguous()
        if (
            x.dim() != 2
            or x.shape[1] != w.k
            or not _cpu(x)
            or not _cpu(w.data, dtype=torch.bfloat16)
            or (bias is not None and (bias.shape != (w.n,) or not _cpu(bias)))
            or (exact is not None and not _ascending_rows(exact, rows))
        ):
            raise ValueError(f"matmul: x {tuple(x.shape)} {x.dtype} against panels [{w.n}, {w.k}]")
        out = torch.empty(rows, w.n, dtype=torch.float32)
        if rows:
            b = None if bias is None else bias.data_ptr()
            e, n_exact = (None, 0) if exact is None else (exact.data_ptr(), exact.numel())
            if self._matmul(w.data.data_ptr(), x.data_ptr(), out.data_ptr(), rows, w.n, w.k, b, e, n_exact):
                raise MemoryError("matmul: no memory for its scratch")
        return out

    def sample(self, logits: torch.Tensor, inv_temp: torch.Tensor, u: torch.Tensor) -> list[int]:
        """A token for each row of logits [rows, vocab]: the first argmax where inv_temp is 0, else an
        inverse-CDF draw with u (in [0, 1)) from softmax(logits * inv_temp); -inf logits never drawn."""
        rows = logits.shape[0] if logits.dim() == 2 else -1
        if rows < 1 or not _cpu(logits, inv_temp, u) or inv_temp.shape != (rows,) or u.shape != (rows,):
            raise ValueError(
                f"sample: logits {tuple(logits.shape)}, {tuple(inv_temp.shape)}, {tuple(u.shape)}"
            )
        out = torch.empty(rows, dtype=torch.long)
        args = (inv_temp.data_ptr(), u.data_ptr(), out.data_ptr())
        if self._sample(logits.data_ptr(), rows, logits.shape[1], *args):
            raise MemoryError("sample: no memory for its scratch")
        return out.tolist()

    def shape(self, cfg: ModelConfig, scale: float, dtype: torch.dtype, block_size: int) -> _Shape:
        """The model's numbers for the C side; weights and cache are bf16 or fp32 alike."""
        if (
            cfg.num_heads % cfg.num_kv_heads
            or cfg.head_dim % 2
            or cfg.hidden_size % 2
            or cfg.intermediate_size % 2
        ):
            raise ValueError(f"the kernels need even sizes and whole kv groups: {cfg}")
        bf16 = int(dtype == torch.bfloat16)
        return _Shape(
            cfg.hidden_size,
            cfg.intermediate_size,
            cfg.num_heads,
            cfg.num_kv_heads,
            cfg.head_dim,
            block_size,
            cfg.rms_norm_eps,
            scale,
            bf16,
            bf16,
        )

    def layer(self, weights: dict[str, torch.Tensor | Panels], shape: _Shape) -> KernelLayer:
        """wqkv [(H + 2 Hkv) D, hidden] (RMS gain folded in, q/k heads' halves interleaved), optional bqkv,
        wo [hidden, H D], wgu [2 inter, hidden] (gain folded in) and wd [hidden, inter]: Panels when the
        shape says bf16, else fp32 tensors [out, in]."""
        h, i, d = shape.hidden, shape.inter, shape.head_dim
        n_qkv = (shape.n_heads + 2 * shape.n_kv) * d
        want = {"wqkv": (n_qkv, h), "wo": (h, shape.n_heads * d), "wgu": (2 * i, h), "wd": (h, i)}
        if "bqkv" in weights:
            want["bqkv"] = (n_qkv,)
        got, tensors = {}, []
        for name, w in weights.items():
            if isinstance(w, Panels) and shape.bf16_weights and _cpu(w.data, dtype=torch.bfloat16):
                got[name] = (w.n, w.k)
                tensors.append(w.data)
            elif isinstance(w, torch.Tensor) and _cpu(w) and (name == "bqkv" or not shape.bf16_weights):
                got[name] = tuple(w.shape)
                tensors.append(w)
        if got != want:
            raise ValueError(f"kernel layer: weights {got}, expected {want}")
        ptr = {name: t.data_ptr() for name, t in zip(weights, tensors, strict=True)}
        return KernelLayer(
            tuple(tensors), _Weights(*(ptr.get(n) for n in ("wqkv", "bqkv", "wo", "wgu", "wd")))
        )

    @staticmethod
    def stack(layers: list[KernelLayer]) -> KernelStack:
        return KernelStack(tuple(layers), (_Weights * len(layers))(*(layer.c for layer in layers)))

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
        c = _Rows(
            cis.data_ptr(), block_tables.data_ptr(), block_tables.shape[1], ctx_lens.data_ptr(), rows, max_ctx
        )
        return DecodeRows((block_tables, ctx_lens, cis), c, cache_shape)

    def _check(
        self, shape: _Shape, x: torch.Tensor, width: int, rows: DecodeRows, *caches: torch.Tensor
    ) -> None:
        kv = torch.bfloat16 if shape.bf16_cache else torch.float32
        if (
            x.shape != (rows.c.n_rows, width)
            or not _cpu(x)
            or any(c.shape != rows.cache_shape or not _cpu(c, dtype=kv) for c in caches)
            or rows.cache_shape[1:] != (shape.block_size, shape.n_kv, shape.head_dim)
        ):
            raise ValueError(f"rows {tuple(x.shape)} {x.dtype}, cache {[tuple(c.shape) for c in caches]}")

    def decode_attention(
        self, qkv: torch.Tensor, shape: _Shape, rows: DecodeRows, k_cache: torch.Tensor, v_cache: torch.Tensor
    ) -> torch.Tensor:
        """Attention for the decode rows of a batch whose products run in torch: qkv [rows, (H + 2 Hkv) D]
        (each q/k head's halves interleaved) is roped in place, each row's k and v are written to the
        cache at its position ctx_len - 1, and each row attends to its own sequence. Returns [rows, H D]."""
        self._check(shape, qkv, (shape.n_heads + 2 * shape.n_kv) * shape.head_dim, rows, k_cache, v_cache)
        out = torch.empty(rows.c.n_rows, shape.n_heads * shape.head_dim, dtype=torch.float32)
        args = (
            ctypes.byref(shape),
            ctypes.byref(rows.c),
            qkv.data_ptr(),
            k_cache.data_ptr(),
            v_cache.data_ptr(),
        )
        if self._attention(*args, out.data_ptr()):
            raise MemoryError("decode_attention: no memory for its scratch")
        return out

    def decode_layer(
        self,
        x: torch.Tensor,
        shape: _Shape,
        layer: KernelLayer,
        rows: DecodeRows,
        k_cache: torch.Tensor,
        v_cache: torch.Tensor,
    ) -> None:
        """One layer for the decode rows x [rows, hidden], updated in place; writes each row's k and v to
        the caches ([blocks, block_size, Hkv, D]) at its position ctx_len - 1. fp32 weights: one row."""
        self._check(shape, x, shape.hidden, rows, k_cache, v_cache)
        if rows.c.n_rows > 1 and not shape.bf16_weights:
            raise ValueError("decode_layer: fp32 weights take one row")
        args = (ctypes.byref(shape), ctypes.byref(layer.c), ctypes.byref(rows.c))
        if self._layer(x.data_ptr(), *args, k_cache.data_ptr(), v_cache.data_ptr()):
            raise MemoryError("decode_layer: no memory for its scratch")

    def decode_layers(
        self,
        x: torch.Tensor,
        shape: _Shape,
        stack: KernelStack,
        rows: DecodeRows,
        kv_caches: list[tuple[torch.Tensor, torch.Tensor]],
    ) -> None:
        """decode_layer for every layer of `stack` in turn, in one call: layer i uses kv_caches[i]."""
        if len(kv_caches) != len(stack.layers):
            raise ValueError(f"decode_layers: {len(kv_caches)} caches for {len(stack.layers)} layers")
        self._check(shape, x, shape.hidden, rows, *(c for pair in kv_caches for c in pair))
        if rows.c.n_rows > 1 and not shape.bf16_weights:
            raise ValueError("decode_layers: fp32 weights take one row")
        n = len(kv_caches)
        k_ptrs = (ctypes.c_void_p * n)(*(k.data_ptr() for k, _ in kv_caches))
        v_ptrs = (ctypes.c_void_p * n)(*(v.data_ptr() for _, v in kv_caches))
        args = (ctypes.byref(shape), stack.c, n, ctypes.byref(rows.c), k_ptrs, v_ptrs)
        if self._layers(x.data_ptr(), *args):
            raise MemoryError("decode_layers: no memory for its scratch")


def build_cpu_kernels(threads: int) -> CpuKernels | None:
    """Compile and load the kernels, running on `threads` threads; None (logged) where there is no
    working C compiler, and on Windows (unmeasured there, and a loaded DLL cannot be removed with its
    temporary directory)."""
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
    return CpuKernels(lib, threads)
