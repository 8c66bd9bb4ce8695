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
emulated run "busy" for that many CTRL reads after a start, and ``faults`` (:data:`FAULTS`: a hang, a lost
start, a stale done bit, a wrong ID, a garbage status, a bus error, a register that is no integer) make it
misbehave as a board might, so that the driver's polling, timeout, stale-output and reset paths run in CI.
Like the top, it counts its starts in ``run_count``; :meth:`EmulatedDevice.reset` is the block's reset.
"""
from __future__ import annotations

import errno
from typing import Dict, List

import numpy as np

from vitaccel.accelerators import EMULATED_BACKENDS
from vitaccel.hwconfig import ConfigLike, load_config
from vitaccel.host.driver import CTRL_DONE, CTRL_IDLE, CTRL_READY, CTRL_START, STATUS_REGISTERS, Device

__all__ = ["EmulatedDevice", "ENGINES", "FAULTS"]

ENGINES = EMULATED_BACKENDS
_READ_ONLY = ("ap_return", "hw_id", "run_count")
#: What fault injection can make the emulated accelerator do (``faults=``), each as a board might:
FAULTS = {
    "hang": "starts and never finishes",
    "lost_start": "drops the start bit: never starts, never reports done",
    "stale_done": "drops the start bit but reports done (a done bit left over): the outputs are stale",
    "wrong_id": "reports another config's hash in hw_id",
    "garbage_status": "returns a status no top defines",
    "bus_error": "raises OSError (EIO) on reads of ap_return, as a bus error surfaces through /dev/mem",
    "non_integer": "reads CTRL back as a string",
}


class EmulatedDevice(Device):
    """``config``: the hardware config the emulated bitstream was built for (its ID register's hash).
    ``faults``: names from :data:`FAULTS` to inject (``hang=True`` is the fault ``"hang"``)."""

    def __init__(self, mem_bytes: int, config: ConfigLike = "paper", *, engine: str = "sim", busy_reads: int = 0,
                 hang: bool = False, phys_addr: int = 0x4000_0000, faults=()):
        if engine not in ENGINES:
            raise ValueError(f"engine must be one of {', '.join(ENGINES)}, got {engine!r}")
        self.faults = set(faults) | ({"hang"} if hang else set())
        unknown = sorted(self.faults - set(FAULTS))
        if unknown:
            raise ValueError(f"unknown fault(s) {', '.join(unknown)}; known: {', '.join(FAULTS)}")
        self.config = load_config(config)
        self.spec = self.config.spec
        self.pointer_registers = self.spec.pointer_registers
        self.engine = engine
        self.name = f"emulated {self.spec.hls_top} ({engine}, config '{self.config.name}')"
        self.mem = np.zeros(int(mem_bytes), np.uint8)
        self.phys_addr = int(phys_addr)
        self.busy_reads = int(busy_reads)
        self.hang = "hang" in self.faults
        # The protocol's registers (the ones a dump reads) and this top's pointer registers.
        self._regs: Dict[str, int] = {r: 0 for r in (*STATUS_REGISTERS, *self.pointer_registers)}
        self._regs["CTRL"] = CTRL_IDLE
        self._pending = -1            # CTRL reads left before the running program reports done
        self.starts = 0               # how many times the start bit was written
        self.resets = 0
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
                if "stale_done" in self.faults:
                    self._regs["CTRL"] = CTRL_DONE | CTRL_IDLE
                elif "lost_start" in self.faults:
                    self._regs["CTRL"] = 0   # neither idle nor done: it never answers
                else:
                    self._start()
            return
        if name == "ISR":  # toggle-on-write
            self._regs["ISR"] ^= value & 0x3
            return
        self._regs[name] = value

    def read_register(self, name: str) -> int:
        if name not in self._regs:
            raise KeyError(f"{self.name}: no register {name!r}")
        if name == "ap_return" and "bus_error" in self.faults:
            raise OSError(errno.EIO, f"bus error reading {name}")
        v = self._regs[name]
        if name == "CTRL":
            if self._pending > 0:
                self._pending -= 1
            elif self._pending == 0:
                self._finish()
                v = self._regs["CTRL"]
            self._regs["CTRL"] &= ~CTRL_DONE  # clear on read
            if "non_integer" in self.faults:
                v = f"0x{v:x}"  # type: ignore[assignment]
        self.log.append(("r", name, v))
        return v

    def reset(self) -> None:
        """The block's reset: the run in progress is dropped, every register cleared (the run counter too),
        the window kept."""
        self.resets += 1
        self._pending = -1
        for k in self._regs:
            self._regs[k] = 0
        self._regs["CTRL"] = CTRL_IDLE

    def _start(self) -> None:
        self.starts += 1
        self._regs["run_count"] = (self._regs["run_count"] + 1) & 0xFFFF_FFFF  # as the top's static counter
        self._regs["CTRL"] = CTRL_START  # running: not idle
        self._pending = -2 if self.hang else self.busy_reads

    def _finish(self) -> None:
        """The run itself. Whatever happens in it, the device ends idle with done set, so an error in the
        emulation never leaves it busy for later runs."""
        self._pending = -1
        r = self._regs
        try:
            status, hw_id = self._execute()
        except BaseException:
            r["ap_return"] = 0
            r["CTRL"] = CTRL_DONE | CTRL_IDLE | CTRL_READY
            raise
        if "wrong_id" in self.faults:
            hw_id ^= 0x5A5A_5A5A
        if "garbage_status" in self.faults:
            status = 0xDEAD_0BAD
        r["ap_return"] = int(status) & 0xFFFF_FFFF
        r["hw_id"] = int(hw_id)
        r["CTRL"] = CTRL_DONE | CTRL_IDLE | CTRL_READY
        if r["GIE"] & 1 and r["IER"] & 1:
            r["ISR"] |= 1

    def _execute(self):
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
            if self.collect_reports:
                self.reports.append(res.reports)
            return res.status, res.hw_id
        library = self.spec.load("csim_library")
        hw_id, runs = np.zeros(1, np.uint32), np.zeros(1, np.uint32)
        # The C++'s own run counter is per loaded library (shared by every emulated device on it): the
        # device keeps its own register, as each board has its own block.
        status = int(library(self.config.name).run(self.mem, mem_bytes, r["desc_off"], r["num_instr"], hw_id, runs))
        return status, int(hw_id[0])
