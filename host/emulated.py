"""An emulated accelerator: the register file of the config's accelerator top over a NumPy window.

Writing the start bit runs the descriptor program on the window, with (both named by the accelerator's
registry entry, :mod:`vitaccel.accelerators`)

* ``engine="sim"``: the simulator's model of the top-level function (ViTCoD:
  :func:`vitaccel.sim.vitcod.top.run_top`; numpy only: what the simulator backend uses on a PC or on a
  board without the overlay), or
* ``engine="csim"``: the HLS C++ itself, compiled by g++ (ViTCoD: :mod:`vitaccel.sim.vitcod.csim_kernels`;
  needs g++ and hls4ml's headers).

The register behaviour follows the Vitis HLS ``ap_ctrl_hs`` block: ``ap_start`` is self-clearing,
``ap_done`` is cleared when CTRL is read, ``ap_idle`` is set while nothing runs. ``busy_reads`` keeps the
emulated run "busy" for that many CTRL reads after a start, and ``hang=True`` never finishes, so that the
driver's polling and timeout paths run in CI.
"""
from __future__ import annotations

from typing import Dict, List

import numpy as np

from vitaccel.accelerators import EMULATED_BACKENDS
from vitaccel.hwconfig import ConfigLike, load_config
from vitaccel.host.driver import CTRL_DONE, CTRL_IDLE, CTRL_READY, CTRL_START, Device

__all__ = ["EmulatedDevice", "ENGINES"]

ENGINES = EMULATED_BACKENDS
_READ_ONLY = ("ap_return", "hw_id")


class EmulatedDevice(Device):
    """``config``: the hardware config the emulated bitstream was built for (its ID register's hash)."""

    def __init__(self, mem_bytes: int, config: ConfigLike = "paper", *, engine: str = "sim", busy_reads: int = 0,
                 hang: bool = False, phys_addr: int = 0x4000_0000):
        if engine not in ENGINES:
            raise ValueError(f"engine must be one of {', '.join(ENGINES)}, got {engine!r}")
        self.config = load_config(config)
        self.spec = self.config.spec
        self.pointer_registers = self.spec.pointer_registers
        self.engine = engine
        self.name = f"emulated {self.spec.hls_top} ({engine}, config '{self.config.name}')"
        self.mem = np.zeros(int(mem_bytes), np.uint8)
        self.phys_addr = int(phys_addr)
        self.busy_reads = int(busy_reads)
        self.hang = bool(hang)
        registers = ("CTRL", "GIE", "IER", "ISR", "ap_return", *self.pointer_registers, "desc_off", "num_instr",
                     "mem_bytes", "hw_id")
        self._regs: Dict[str, int] = {r: 0 for r in registers}
        self._regs["CTRL"] = CTRL_IDLE
        self._pending = -1            # CTRL reads left before the running program reports done
        self.starts = 0               # how many times the start bit was written
        self.collect_reports = False  # with engine "sim": keep each run's per-descriptor cycle reports
        self.reports: List = []
        self.log: List[tuple] = []    # (op, register, value): the register protocol as the driver spoke it

    def write_register(self, name: str, value: int) -> None:
        if name not in self._regs:
            raise KeyError(f"{self.name}: no register {name!r}")
        if name in _READ_ONLY:
            raise PermissionError(f"{self.name}: register {name!r} is read-only")
        value = int(value) & (0xFFFF_FFFF_FFFF_FFFF if name in self.pointer_registers else 0xFFFF_FFFF)
        self.log.append(("w", name, value))
        if name == "CTRL":
            if value & CTRL_START and self._regs["CTRL"] & CTRL_IDLE:
                self._start()
            return
        if name == "ISR":  # toggle-on-write
            self._regs["ISR"] ^= value & 0x3
            return
        self._regs[name] = value

    def read_register(self, name: str) -> int:
        if name not in self._regs:
            raise KeyError(f"{self.name}: no register {name!r}")
        v = self._regs[name]
        if name == "CTRL":
            if self._pending > 0:
                self._pending -= 1
            elif self._pending == 0:
                self._finish()
                v = self._regs["CTRL"]
            self._regs["CTRL"] &= ~CTRL_DONE  # clear on read
        self.log.append(("r", name, v))
        return v

    def _start(self) -> None:
        self.starts += 1
        self._regs["CTRL"] = CTRL_START  # running: not idle
        self._pending = -2 if self.hang else self.busy_reads

    def _finish(self) -> None:
        self._pending = -1
        r = self._regs
        for p in self.pointer_registers:
            if r[p] != self.phys_addr:
                # A pointer outside the window would make the hardware read arbitrary memory.
                raise RuntimeError(f"{self.name}: register {p} = 0x{r[p]:x} is not the window's address "
                                   f"0x{self.phys_addr:x}")
        mem_bytes = min(r["mem_bytes"], self.mem.size)
        if self.engine == "sim":
            run_top = self.spec.load("top_model")
            res = run_top(self.mem, r["desc_off"], r["num_instr"], self.config, mem_bytes=mem_bytes,
                          cycles=self.collect_reports)
            status, hw_id = res.status, res.hw_id
            if self.collect_reports:
                self.reports.append(res.reports)
        else:
            library = self.spec.load("csim_library")
            out = np.zeros(1, np.uint32)
            status = int(library(self.config.name).run(self.mem, mem_bytes, r["desc_off"], r["num_instr"], out))
            hw_id = int(out[0])
        r["ap_return"] = int(status) & 0xFFFF_FFFF
        r["hw_id"] = int(hw_id)
        r["CTRL"] = CTRL_DONE | CTRL_IDLE | CTRL_READY
        if r["GIE"] & 1 and r["IER"] & 1:
            r["ISR"] |= 1
