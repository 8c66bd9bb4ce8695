"""An emulated DRAM window: the one contiguous buffer every accelerator of vitaccel reads and writes,
with an aligned bump allocator. Offsets into it are what descriptors carry; the host compilers lay a
model out in one, and the emulated devices run on one. numpy only.
"""
from __future__ import annotations

import numpy as np

__all__ = ["Dram"]


class Dram:
    """An emulated DRAM window: a growable byte buffer with an aligned bump allocator. Offsets are what
    descriptors carry."""

    ALIGN = 64

    def __init__(self, capacity: int = 1 << 20):
        self._buf = np.zeros(max(int(capacity), 64), np.uint8)
        self.used = 0

    @property
    def buffer(self) -> np.ndarray:
        """The window, ``used`` bytes long (a view: writes go to DRAM)."""
        return self._buf[:self.used]

    def alloc(self, nbytes: int, align: int = ALIGN) -> int:
        off = -(-self.used // align) * align
        end = off + max(int(nbytes), 0)
        if end > (1 << 32) - 1:
            raise ValueError("the DRAM window would exceed 4 GiB (32-bit offsets)")
        if end > self._buf.size:
            grown = np.zeros(max(end, 2 * self._buf.size), np.uint8)
            grown[:self.used] = self._buf[:self.used]
            self._buf = grown
        self.used = end
        return off

    def put(self, array, align: int = ALIGN) -> int:
        """Copy ``array`` (its bytes, C order) into a fresh region; returns its offset."""
        a = np.ascontiguousarray(array)
        off = self.alloc(a.nbytes, align)
        self._buf[off:off + a.nbytes] = a.reshape(-1).view(np.uint8)
        return off

    def write(self, offset: int, array) -> None:
        """Overwrite the region at ``offset`` with ``array``'s bytes (what the host does between programs)."""
        a = np.ascontiguousarray(array)
        if offset < 0 or offset + a.nbytes > self.used:
            raise ValueError("region outside the window")
        self._buf[offset:offset + a.nbytes] = a.reshape(-1).view(np.uint8)

    def get(self, offset: int, shape, dtype) -> np.ndarray:
        """A copy of the region at ``offset`` as an array of ``shape`` and ``dtype``."""
        dt = np.dtype(dtype)
        count = int(np.prod(shape, dtype=np.int64))
        raw = self._buf[offset:offset + count * dt.itemsize]
        if raw.size != count * dt.itemsize:
            raise ValueError("region outside the window")
        return raw.copy().view(dt).reshape(shape)
