"""The board backend: the ``vitcod_top`` overlay driven through PYNQ.

``pynq`` pins numpy<2 and exists only on a board image, so nothing here imports it at module level: the
classes that must subclass PYNQ's (:class:`pynq.DefaultIP`, :class:`pynq.Overlay`) are built on first use
by :func:`pynq_classes`. PYNQ binds the driver to the HLS IP by its VLNV (``bindto``), which is how
``overlay.vitcod_top_0`` becomes a :class:`VitcodIP`.

Register offsets are taken from the ``.hwh`` (``register_map``) by name, never hard-coded: Vitis versions
place the argument registers differently, and split 64-bit pointers into ``<name>_1`` / ``<name>_2`` in some
releases. The four control registers of the ``ap_ctrl_hs`` block are fixed by Vitis (0x00-0x0c).
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Dict, Optional, Tuple

import numpy as np

from vitaccel.host.driver import Device

__all__ = ["VITCOD_VLNV", "pynq_classes", "PynqDevice", "open_board", "find_overlay", "OVERLAY_DIR"]

#: What Vitis HLS names the exported IP (vendor xilinx.com, library hls, version 1.0 by default).
VITCOD_VLNV = "xilinx.com:hls:vitcod_top:1.0"
#: ap_ctrl_hs control block, the same in every Vitis release.
CONTROL_OFFSETS = {"CTRL": 0x00, "GIE": 0x04, "IER": 0x08, "ISR": 0x0C}
OVERLAY_DIR = Path(__file__).resolve().parents[1] / "overlay"

_classes: Optional[Tuple[type, type]] = None


def pynq_classes() -> Tuple[type, type]:
    """``(VitcodIP, VitcodOverlay)``, subclassing the installed PYNQ's ``DefaultIP`` and ``Overlay``."""
    global _classes
    if _classes is not None:
        return _classes
    import pynq  # lazy: only on a board

    class VitcodIP(pynq.DefaultIP):
        """Driver PYNQ binds to every ``vitcod_top`` IP in an overlay."""

        bindto = [VITCOD_VLNV]

        def register(self, name: str) -> Tuple[int, int]:
            """``(offset, width in bits)`` of the argument register ``name`` (from the .hwh)."""
            if name in CONTROL_OFFSETS:
                return CONTROL_OFFSETS[name], 32
            rm = self.register_map
            reg = getattr(rm, name, None)
            if reg is not None:
                return int(reg.address), int(getattr(reg, "width", 32))
            low = getattr(rm, f"{name}_1", None)
            if low is not None:  # a 64-bit pointer split in two 32-bit registers
                return int(low.address), 64
            raise KeyError(f"vitcod_top has no register {name!r} in this overlay's .hwh "
                           f"(is it an overlay of another version of vitaccel?)")

    class VitcodOverlay(pynq.Overlay):
        """An overlay holding one ``vitcod_top``; ``.accel`` is its :class:`VitcodIP`."""

        def __init__(self, bitfile: str, **kwargs):
            super().__init__(bitfile, **kwargs)
            names = [k for k, v in self.ip_dict.items() if str(v.get("type", "")).startswith("xilinx.com:hls:vitcod_top:")]
            if len(names) != 1:
                raise RuntimeError(f"{bitfile}: expected one vitcod_top IP, found {len(names)} "
                                   f"({', '.join(self.ip_dict) or 'no IP at all'})")
            self.accel = getattr(self, names[0])

    _classes = (VitcodIP, VitcodOverlay)
    return _classes


class PynqDevice(Device):
    """A :class:`~vitaccel.host.driver.Device` over a bound :class:`VitcodIP` and one ``pynq.allocate`` window.

    The window is allocated once and reused by every run (the static region is written only at open time).
    """

    def __init__(self, ip, mem_bytes: int):
        import pynq

        self.ip = ip
        self.name = f"vitcod_top at 0x{int(getattr(ip, 'mmio').base_addr):x}" if hasattr(ip, "mmio") else "vitcod_top"
        self._buffer = pynq.allocate(shape=(int(mem_bytes),), dtype=np.uint8)
        self.mem = self._buffer
        self.phys_addr = int(getattr(self._buffer, "device_address", None) or self._buffer.physical_address)
        self._regs: Dict[str, Tuple[int, int]] = {}

    def _reg(self, name: str) -> Tuple[int, int]:
        if name not in self._regs:
            self._regs[name] = self.ip.register(name)
        return self._regs[name]

    def write_register(self, name: str, value: int) -> None:
        off, width = self._reg(name)
        value = int(value)
        self.ip.write(off, value & 0xFFFFFFFF)
        if width == 64:
            self.ip.write(off + 4, (value >> 32) & 0xFFFFFFFF)

    def read_register(self, name: str) -> int:
        off, width = self._reg(name)
        v = int(self.ip.read(off)) & 0xFFFFFFFF
        if width == 64:
            v |= (int(self.ip.read(off + 4)) & 0xFFFFFFFF) << 32
        return v

    def sync_to_device(self, offset: int = 0, nbytes: Optional[int] = None) -> None:
        self._buffer.flush()

    def sync_from_device(self, offset: int = 0, nbytes: Optional[int] = None) -> None:
        self._buffer.invalidate()

    def close(self) -> None:
        self._buffer.freebuffer()


def find_overlay(board: Optional[str] = None, config_name: Optional[str] = None) -> Path:
    """The bitstream in ``overlay/<board>/`` (board from PYNQ's ``$BOARD``), checked against its manifest."""
    board = (board or os.environ.get("BOARD", "")).lower()
    if not board:
        raise RuntimeError("no board name: pass overlay=PATH.bit or set $BOARD (PYNQ images set it)")
    d = OVERLAY_DIR / board
    bits = sorted(d.glob("*.bit"))
    if not bits:
        raise RuntimeError(f"no bitstream in {d}: build one with `vivado -mode batch -source build.tcl -tclargs "
                           f"--board {board}` or copy <name>.bit, <name>.hwh and manifest.json there")
    manifest = d / "manifest.json"
    if config_name and manifest.exists():
        m = json.loads(manifest.read_text())
        if m.get("config") not in (None, config_name):
            raise RuntimeError(f"{manifest}: the overlay was built for config {m.get('config')!r}, the bundle "
                               f"for {config_name!r}")
    return bits[0]


def open_board(mem_bytes: int, *, overlay: Optional[str] = None, config_name: Optional[str] = None):
    """Load the overlay (downloading the bitstream) and return ``(overlay object, PynqDevice)``."""
    _, VitcodOverlay = pynq_classes()
    path = Path(overlay) if overlay else find_overlay(config_name=config_name)
    if not path.exists():
        raise FileNotFoundError(f"overlay {path} does not exist")
    ol = VitcodOverlay(str(path))
    return ol, PynqDevice(ol.accel, mem_bytes)
