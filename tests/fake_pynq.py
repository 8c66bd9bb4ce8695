"""A stand-in for the parts of PYNQ that vitaccel.host.pynq_backend uses, backed by an emulated ``vitcod_top``.

Installed into ``sys.modules["pynq"]`` by tests, so the board backend's own code (the ``DefaultIP``
subclass bound by VLNV, the ``Overlay`` subclass, register offsets looked up by name in a register map,
``pynq.allocate`` with flush / invalidate) runs end to end without a board. The register map places the
argument registers the way Vitis HLS 2023.x does for this top (64-bit pointers, then scalars), and can
split 64-bit registers into ``_1``/``_2`` like older releases. The emulated IP executes the program with the
simulator's model of the top-level function on the allocated buffer.
"""
from __future__ import annotations

import importlib.machinery
import sys
import types
from typing import Dict, List

import numpy as np

from vitaccel import accelerators
from vitaccel.host.emulated import EmulatedDevice
from vitaccel.hwconfig import load_config


class _Reg:
    def __init__(self, address: int, width: int):
        self.address, self.width = address, width


class FakeRegisterMap:
    def __init__(self, split64: bool):
        off = 0x10
        regs = {"ap_return": (off, 32)}
        off += 8
        for name in ("act_in", "act_out", "idx", "mask", "wgt", "wconst"):
            if split64:
                regs[f"{name}_1"] = (off, 32)
                regs[f"{name}_2"] = (off + 4, 32)
            else:
                regs[name] = (off, 64)
            off += 12
        for name in ("desc_off", "num_instr", "mem_bytes", "hw_id", "run_count"):
            regs[name] = (off, 32)
            off += 8
        for k, (a, w) in regs.items():
            setattr(self, k, _Reg(a, w))
        self.offsets = regs


class FakeBuffer(np.ndarray):
    """Like PYNQ's PynqBuffer: a slice keeps its byte offset in the allocation, and flush / invalidate of a
    slice touch only its bytes (recorded as (offset, nbytes) in the state)."""

    def __array_finalize__(self, obj):
        if isinstance(obj, FakeBuffer) and hasattr(obj, "state"):
            base = obj.__array_interface__["data"][0]
            self.offset = getattr(obj, "offset", 0) + self.__array_interface__["data"][0] - base
            self.state = obj.state
            self.device_address = obj.device_address + self.offset - getattr(obj, "offset", 0)

    def flush(self):
        self.state.flushes += 1
        self.state.flushed.append((self.offset, self.nbytes))

    def invalidate(self):
        self.state.invalidates += 1
        self.state.invalidated.append((self.offset, self.nbytes))

    def freebuffer(self):
        self.state.freed += 1


def make_fake_pynq(config: str = "paper", *, split64: bool = False, hang: bool = False, on_target: bool = True,
                   ip_name: str = "vitcod_top_0") -> types.ModuleType:
    """A module object named ``pynq``; ``mod.state`` exposes the emulated hardware for assertions."""
    mod = types.ModuleType("pynq")
    mod.__spec__ = importlib.machinery.ModuleSpec("pynq", None)
    state = types.SimpleNamespace(buffers=[], flushes=0, invalidates=0, flushed=[], invalidated=[], overlays=[],
                                  downloads=0, freed=0, writes=[], emu=None, emu_buf=None,
                                  next_addr=0x6000_0000, config=config, hang=hang)

    class DefaultIP:
        def __init__(self, description):
            self.description = description
            self.register_map = FakeRegisterMap(split64)
            self._by_offset: Dict[int, tuple] = {}
            for name, (addr, width) in self.register_map.offsets.items():
                self._by_offset[addr] = (name, 0)
                if width == 64:
                    self._by_offset[addr + 4] = (name, 1)
            self._pending64: Dict[str, int] = {}

        def _emu(self) -> EmulatedDevice:
            buf = state.buffers[-1]
            if state.emu is None or state.emu_buf is not buf:
                emu = EmulatedDevice(buf.size, state.config, engine="sim", hang=state.hang,
                                     phys_addr=buf.device_address)
                emu.mem = buf.view(np.ndarray).reshape(-1)  # the IP works on the allocated buffer itself
                state.emu, state.emu_buf = emu, buf
            return state.emu

        def _name(self, offset: int):
            ctrl = {0x00: "CTRL", 0x04: "GIE", 0x08: "IER", 0x0C: "ISR"}
            if offset in ctrl:
                return ctrl[offset], None
            if offset not in self._by_offset:
                raise ValueError(f"no register at 0x{offset:x}")
            name, half = self._by_offset[offset]
            base = name[:-2] if name.endswith(("_1", "_2")) else name
            if name.endswith("_2"):
                half = 1
            return base, half

        def write(self, offset: int, value: int) -> None:
            state.writes.append((offset, value))
            name, half = self._name(offset)
            if half is None or name not in ("act_in", "act_out", "idx", "mask", "wgt", "wconst"):
                self._emu().write_register(name, value)
                return
            cur = self._pending64.get(name, 0)
            cur = (cur & ~(0xFFFFFFFF << (32 * half))) | ((value & 0xFFFFFFFF) << (32 * half))
            self._pending64[name] = cur
            self._emu().write_register(name, cur)

        def read(self, offset: int = 0) -> int:
            name, half = self._name(offset)
            v = self._emu().read_register(name)
            return (v >> (32 * half)) & 0xFFFFFFFF if half else v & 0xFFFFFFFF

    class Overlay:
        def __init__(self, bitfile, **kwargs):
            from vitaccel.host.pynq_backend import pynq_classes

            self.bitfile = bitfile
            # The IP the config's accelerator exports (vitcod_top or revit_top), as its bitstream would hold.
            vlnv = accelerators.get(load_config(state.config).accelerator).vlnv
            self.ip_dict = {ip_name: {"type": vlnv, "phys_addr": 0xA000_0000}}
            ip_cls = pynq_classes()[0]
            setattr(self, ip_name, ip_cls(self.ip_dict[ip_name]))
            state.overlays.append(self)

        def download(self):
            """Reprogramming the PL resets the block (the emulated one here)."""
            state.downloads += 1
            if state.emu is not None:
                state.emu.reset()
                state.emu.faults.discard("hang")
                state.emu.hang = False

    def allocate(shape, dtype="u4", **kwargs):
        a = np.zeros(shape, dtype=dtype).view(FakeBuffer)
        a.device_address, a.offset, a.state = state.next_addr, 0, state
        state.next_addr += 0x0100_0000
        state.buffers.append(a)
        return a

    ps = types.ModuleType("pynq.ps")
    ps.ON_TARGET = on_target

    class Device:
        devices: List[object] = [types.SimpleNamespace(name="fake-zcu104")] if on_target else []

    mod.DefaultIP, mod.Overlay, mod.allocate, mod.ps, mod.Device = DefaultIP, Overlay, allocate, ps, Device
    mod.state = state
    return mod


def install(monkeypatch, **kwargs) -> types.ModuleType:
    """Put a fresh fake ``pynq`` into ``sys.modules`` for one test (and reset the backend's class cache)."""
    import vitaccel.host.pynq_backend as pb

    mod = make_fake_pynq(**kwargs)
    monkeypatch.setitem(sys.modules, "pynq", mod)
    monkeypatch.setitem(sys.modules, "pynq.ps", mod.ps)
    monkeypatch.setattr(pb, "_classes", None)
    return mod
