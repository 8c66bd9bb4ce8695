"""The board backend: an accelerator's overlay driven through PYNQ.

``pynq`` pins numpy<2 and exists only on a board image, so nothing here imports it at module level: the
classes that must subclass PYNQ's (:class:`pynq.DefaultIP`, :class:`pynq.Overlay`) are built on first use
by :func:`pynq_classes`. PYNQ binds the driver to the HLS IP by its VLNV (``bindto``): every accelerator
of the registry (:mod:`vitaccel.accelerators`), so ``overlay.vitcod_top_0`` becomes an :class:`AcceleratorIP`.

Register offsets are taken from the ``.hwh`` (``register_map``) by name, never hard-coded: Vitis versions
place the argument registers differently, and split 64-bit pointers into ``<name>_1`` / ``<name>_2`` in some
releases. The four control registers of the ``ap_ctrl_hs`` block are fixed by Vitis (0x00-0x0c).

Overlays are keyed by accelerator and config: ``overlay/<board>/<accelerator>-<config>/`` holds
``<accelerator>-<config>.bit``, its ``.hwh`` and ``manifest.json`` (what ``build.tcl`` writes).
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Dict, Optional, Tuple

import numpy as np

from vitaccel import accelerators
from vitaccel.host.driver import Device
from vitaccel.hwconfig import ConfigLike, load_config

__all__ = ["VITCOD_VLNV", "pynq_classes", "PynqDevice", "open_board", "find_overlay", "OVERLAY_DIR", "overlay_dir"]

#: What Vitis HLS names ViTCoD's exported IP (vendor xilinx.com, library hls, version 1.0 by default).
VITCOD_VLNV = accelerators.get("vitcod").vlnv
#: ap_ctrl_hs control block, the same in every Vitis release.
CONTROL_OFFSETS = {"CTRL": 0x00, "GIE": 0x04, "IER": 0x08, "ISR": 0x0C}
OVERLAY_DIR = Path(__file__).resolve().parents[1] / "overlay"

_classes: Optional[Tuple[type, type]] = None


def _ip_type(ip: dict) -> str:
    return str(ip.get("type", ""))


def pynq_classes() -> Tuple[type, type]:
    """``(AcceleratorIP, AcceleratorOverlay)``, subclassing the installed PYNQ's ``DefaultIP`` and ``Overlay``."""
    global _classes
    if _classes is not None:
        return _classes
    import pynq  # lazy: only on a board

    class AcceleratorIP(pynq.DefaultIP):
        """Driver PYNQ binds to every vitaccel accelerator IP in an overlay."""

        bindto = [spec.vlnv for spec in accelerators.ACCELERATORS.values()]

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
            raise KeyError(f"the accelerator IP has no register {name!r} in this overlay's .hwh "
                           f"(is it an overlay of another version of vitaccel?)")

    class AcceleratorOverlay(pynq.Overlay):
        """An overlay holding one IP of ``accelerator``; ``.accel`` is its :class:`AcceleratorIP`."""

        def __init__(self, bitfile: str, accelerator: str = "vitcod", **kwargs):
            super().__init__(bitfile, **kwargs)
            spec = accelerators.get(accelerator)
            prefix = spec.vlnv.rsplit(":", 1)[0] + ":"
            names = [k for k, v in self.ip_dict.items() if _ip_type(v).startswith(prefix)]
            if len(names) != 1:
                others = ", ".join(f"{k} ({_ip_type(v)})" for k, v in self.ip_dict.items()) or "no IP at all"
                raise RuntimeError(f"{bitfile}: expected one {spec.hls_top} IP, found {len(names)} ({others})")
            self.accel = getattr(self, names[0])

    _classes = (AcceleratorIP, AcceleratorOverlay)
    return _classes


class PynqDevice(Device):
    """A :class:`~vitaccel.host.driver.Device` over a bound :class:`AcceleratorIP` and one ``pynq.allocate`` window.

    The window is allocated once and reused by every run (the static region is written only at open time).
    """

    def __init__(self, ip, mem_bytes: int, top: str = "vitcod_top", overlay=None):
        import pynq

        self.ip = ip
        self.overlay = overlay
        self.name = f"{top} at 0x{int(getattr(ip, 'mmio').base_addr):x}" if hasattr(ip, "mmio") else top
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

    def _range(self, offset: int, nbytes: Optional[int]):
        # A slice of a PynqBuffer keeps its offset in the allocation, so flush / invalidate touch only it.
        end = self._buffer.size if nbytes is None else int(offset) + int(nbytes)
        if not 0 <= int(offset) <= end <= self._buffer.size:
            raise ValueError(f"sync range [{offset}, {end}) outside the {self._buffer.size}-byte window")
        return self._buffer[int(offset):end]

    def sync_to_device(self, offset: int = 0, nbytes: Optional[int] = None) -> None:
        """Flush only the bytes a start reads that the host wrote."""
        if nbytes != 0:
            self._range(offset, nbytes).flush()

    def sync_from_device(self, offset: int = 0, nbytes: Optional[int] = None) -> None:
        """Invalidate only the bytes the host reads back."""
        if nbytes != 0:
            self._range(offset, nbytes).invalidate()

    def reset(self) -> None:
        """Reprogram the PL with the overlay's bitstream: the only reset an ap_ctrl_hs block without a reset
        port has. The window (PS DRAM) is kept; register offsets are unchanged."""
        if self.overlay is None:
            raise NotImplementedError(f"{self.name}: no overlay object to reload (opened without one)")
        self.overlay.download()

    def close(self) -> None:
        self._buffer.freebuffer()


def overlay_dir(board: str, accelerator: str, config_name: str) -> Path:
    """``overlay/<board>/<accelerator>-<config>/``: where build.tcl puts that overlay; a config named after its
    accelerator already (``revit-zcu104``) is not prefixed twice."""
    name = config_name if config_name.startswith(f"{accelerator}-") else f"{accelerator}-{config_name}"
    return OVERLAY_DIR / board / name


def find_overlay(config: ConfigLike, board: Optional[str] = None) -> Path:
    """The bitstream built for ``config`` (its accelerator and name) on ``board`` (default: PYNQ's
    ``$BOARD``), checked against its manifest."""
    cfg = load_config(config)
    board = (board or os.environ.get("BOARD", "")).lower()
    if not board:
        raise RuntimeError("no board name: pass overlay=PATH.bit or set $BOARD (PYNQ images set it)")
    d = overlay_dir(board, cfg.accelerator, cfg.name)
    bit = d / f"{d.name}.bit"
    if not bit.exists():
        built = sorted(p.name for p in (OVERLAY_DIR / board).glob("*/*.bit")) if (OVERLAY_DIR / board).is_dir() else []
        raise RuntimeError(f"no bitstream {bit}: build it with `vivado -mode batch -source build.tcl -tclargs "
                           f"--board {board} --config {cfg.name}` or copy {d.name}.bit, .hwh and manifest.json there"
                           + (f" (built for this board: {', '.join(built)})" if built else ""))
    manifest = d / "manifest.json"
    if manifest.exists():
        m = json.loads(manifest.read_text())
        for key, want in (("accelerator", cfg.accelerator), ("config", cfg.name), ("config_hash", cfg.hash)):
            if m.get(key) not in (None, want):
                raise RuntimeError(f"{manifest}: the overlay was built for {key} {m.get(key)!r}, the bundle needs "
                                   f"{want!r}")
    return bit


def open_board(mem_bytes: int, config: ConfigLike, *, overlay: Optional[str] = None):
    """Load the overlay of ``config``'s accelerator (downloading the bitstream) and return
    ``(overlay object, PynqDevice)``."""
    cfg = load_config(config)
    _, AcceleratorOverlay = pynq_classes()
    path = Path(overlay) if overlay else find_overlay(cfg)
    if not path.exists():
        raise FileNotFoundError(f"overlay {path} does not exist")
    ol = AcceleratorOverlay(str(path), accelerator=cfg.accelerator)
    return ol, PynqDevice(ol.accel, mem_bytes, cfg.spec.hls_top, overlay=ol)
