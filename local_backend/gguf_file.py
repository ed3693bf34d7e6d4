"""A lean GGUF reader: gguf-py's GGUFReader builds a numpy view per vocabulary string (seconds for a
49k vocabulary); this walks the header once with struct and leaves dequantisation to gguf-py."""

from __future__ import annotations

import mmap
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from gguf import GGML_QUANT_SIZES, GGMLQuantizationType
from gguf.quants import dequantize

_SCALARS = {
    0: "<B",
    1: "<b",
    2: "<H",
    3: "<h",
    4: "<I",
    5: "<i",
    6: "<f",
    7: "<?",
    10: "<Q",
    11: "<q",
    12: "<d",
}
_STRING, _ARRAY = 8, 9


@dataclass(slots=True)
class TensorInfo:
    name: str
    shape: tuple[int, ...]  # numpy order (rows first), the reverse of GGUF's dims
    qtype: GGMLQuantizationType
    offset: int
    n_bytes: int


class GGUFFile:
    def __init__(self, path: str | Path) -> None:
        with open(path, "rb") as f:
            self._buf = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
        self._pos = 0
        if self._buf[:4] != b"GGUF":
            raise ValueError(f"{path} is not a GGUF file")
        self._pos = 4
        version, n_tensors, n_kv = self._read("<I"), self._read("<Q"), self._read("<Q")
        if version < 2:
            raise ValueError(f"GGUF version {version} is too old")
        self.metadata: dict[str, Any] = {}
        for _ in range(n_kv):
            key = self._string()
            self.metadata[key] = self._value(self._read("<I"))
        infos = []
        for _ in range(n_tensors):
            name = self._string()
            dims = [self._read("<Q") for _ in range(self._read("<I"))]
            qtype = GGMLQuantizationType(self._read("<I"))
            offset = self._read("<Q")
            infos.append((name, tuple(reversed(dims)), qtype, offset))
        align = int(self.metadata.get("general.alignment", 32))
        start = (self._pos + align - 1) // align * align
        self.tensors: list[TensorInfo] = []
        for name, shape, qtype, offset in infos:
            block, size = GGML_QUANT_SIZES[qtype]
            n_bytes = int(np.prod(shape)) // block * size
            self.tensors.append(TensorInfo(name, shape, qtype, start + offset, n_bytes))

    def _read(self, fmt: str) -> Any:
        (value,) = struct.unpack_from(fmt, self._buf, self._pos)
        self._pos += struct.calcsize(fmt)
        return value

    def _string(self) -> str:
        n = self._read("<Q")
        raw = self._buf[self._pos : self._pos + n]
        self._pos += n
        return raw.decode("utf-8", errors="replace")

    def _value(self, vtype: int) -> Any:
        if vtype == _STRING:
            return self._string()
        if vtype == _ARRAY:
            item_type, count = self._read("<I"), self._read("<Q")
            if item_type in _SCALARS and item_type != 7:
                fmt = _SCALARS[item_type]
                values = np.frombuffer(self._buf, dtype=np.dtype(fmt), count=count, offset=self._pos)
                self._pos += values.nbytes
                return values.tolist()
            return [self._value(item_type) for _ in range(count)]
        return self._read(_SCALARS[vtype])

    def load(self, info: TensorInfo, start: int = 0, stop: int | None = None) -> torch.Tensor:
        """Rows [start, stop) along the first dimension (all of it by default) dequantised to float32, in
        numpy order. Quantisation blocks never straddle two rows, so a run of rows is a run of bytes."""
        rows = info.shape[0] if len(info.shape) > 1 else 1
        stop = rows if stop is None else min(stop, rows)
        row_bytes = info.n_bytes // rows
        shape = (stop - start, *info.shape[1:]) if len(info.shape) > 1 else info.shape
        count, offset = (stop - start) * row_bytes, info.offset + start * row_bytes
        raw = np.frombuffer(self._buf, dtype=np.uint8, count=count, offset=offset).copy()
        self._release(offset, count)
        fast = _FAST.get(info.qtype)
        if fast is not None:
            block = torch.from_numpy(raw).view(-1, GGML_QUANT_SIZES[info.qtype][1])
            return fast(block).reshape(shape)
        data = dequantize(raw.reshape(stop - start, -1), info.qtype).reshape(shape)
        return torch.from_numpy(np.array(data, dtype=np.float32))

    def _release(self, offset: int, count: int) -> None:
        """Drop the pages just read from this process's resident set (they stay in the page cache): a
        model read tensor by tensor never holds the whole file mapped in as well."""
        start = -(-offset // mmap.PAGESIZE) * mmap.PAGESIZE
        end = (offset + count) // mmap.PAGESIZE * mmap.PAGESIZE
        if end > start and hasattr(mmap, "MADV_DONTNEED"):
            self._buf.madvise(mmap.MADV_DONTNEED, start, end - start)


# The formats small models ship in, dequantised with torch (threaded, ~10x gguf-py's numpy); every
# other type goes through gguf-py. Layouts from ggml-common.h: a block of 32 weights is an fp16 scale
# (and for Q4_1 an fp16 minimum) followed by the quants; 4-bit blocks keep weights 0-15 in the low
# nibbles and 16-31 in the high ones.
def _f16(block: torch.Tensor, at: int) -> torch.Tensor:
    return block[:, at : at + 2].contiguous().view(torch.float16).float()


def _nibbles(qs: torch.Tensor) -> torch.Tensor:
    return torch.cat([qs & 0x0F, qs >> 4], 1).float()


def _q8_0(block: torch.Tensor) -> torch.Tensor:
    return _f16(block, 0) * block[:, 2:].contiguous().view(torch.int8).float()


def _q4_0(block: torch.Tensor) -> torch.Tensor:
    return _f16(block, 0) * (_nibbles(block[:, 2:]) - 8)


def _q4_1(block: torch.Tensor) -> torch.Tensor:
    return _f16(block, 0) * _nibbles(block[:, 4:]) + _f16(block, 2)


def _f32(block: torch.Tensor) -> torch.Tensor:
    return block.view(torch.float32)


def _f16_tensor(block: torch.Tensor) -> torch.Tensor:
    return block.view(torch.float16).float()


_FAST = {
    GGMLQuantizationType.Q8_0: _q8_0,
    GGMLQuantizationType.Q4_0: _q4_0,
    GGMLQuantizationType.Q4_1: _q4_1,
    GGMLQuantizationType.F32: _f32,
    GGMLQuantizationType.F16: _f16_tensor,
}
