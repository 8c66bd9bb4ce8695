"""The register protocol every vitaccel top speaks, over any :class:`Device`: ``ap_ctrl_hs`` (start, done,
idle), the window registers (every m_axi base address = the window, ``mem_bytes``), a descriptor list
(``desc_off``, ``num_instr``), ``ap_return`` and the ``hw_id`` register (hls/vitcod/DESCRIPTOR.md).

Nothing here knows an accelerator's program: the names of its pointer registers and the meaning of its
status codes come from its registry entry (:mod:`vitaccel.accelerators`), the programs from its host
compiler. A :class:`Device` is a register file plus one DRAM window the accelerator can reach. Three
implement it: the board (:mod:`vitaccel.host.pynq_backend`), and two emulations
(:mod:`vitaccel.host.emulated`) whose start bit runs the simulator's model of the top-level function or
its C-simulation on the window. The driver below is the only code that talks to any of them, so the
protocol a board sees is the protocol the tests exercise.
"""
from __future__ import annotations

import importlib
import time
from typing import Dict, Optional

import numpy as np

from vitaccel import accelerators

__all__ = ["Device", "Driver", "AcceleratorError", "AcceleratorTimeout", "HardwareMismatch",
           "CTRL_START", "CTRL_DONE", "CTRL_IDLE", "STATUS_REGISTERS"]

CTRL_START, CTRL_DONE, CTRL_IDLE, CTRL_READY = 0x1, 0x2, 0x4, 0x8
#: What a timeout or a failure dumps.
STATUS_REGISTERS = ("CTRL", "GIE", "IER", "ISR", "ap_return", "hw_id", "desc_off", "num_instr", "mem_bytes")


class AcceleratorError(RuntimeError):
    """The accelerator refused or failed a program; ``status`` is its ``ap_return`` (DESCRIPTOR.md)."""

    def __init__(self, message: str, status: Optional[int] = None, registers: Optional[Dict[str, int]] = None):
        super().__init__(message)
        self.status = status
        self.registers = registers or {}


class AcceleratorTimeout(AcceleratorError):
    """``ap_done`` did not come within the timeout; ``registers`` holds the status registers read then."""


class HardwareMismatch(AcceleratorError):
    """The bitstream's ID register does not hold the bundle's hardware-config hash."""


class Device:
    """A register file and a DRAM window (subclasses implement the five methods)."""

    name = "device"
    #: uint8 host view of the window the accelerator reads and writes.
    mem: np.ndarray
    #: The window's bus address (what the pointer registers hold).
    phys_addr: int = 0

    def write_register(self, name: str, value: int) -> None:
        raise NotImplementedError

    def read_register(self, name: str) -> int:
        raise NotImplementedError

    def sync_to_device(self, offset: int = 0, nbytes: Optional[int] = None) -> None:
        """Make host writes to ``mem[offset:offset + nbytes]`` visible to the accelerator (cache flush)."""

    def sync_from_device(self, offset: int = 0, nbytes: Optional[int] = None) -> None:
        """Make the accelerator's writes visible to the host (cache invalidate)."""

    def close(self) -> None:
        """Release the window and the register file."""


def _fmt_registers(regs: Dict[str, int]) -> str:
    return ", ".join(f"{k}=0x{v:08x}" if isinstance(v, int) else f"{k}={v}" for k, v in regs.items())


class Driver:
    """Start programs on an accelerator's top and wait for them, every wait bounded by ``timeout_s``.

    ``accelerator``: the registry name of the top behind ``device`` (its pointer registers and status codes)."""

    def __init__(self, device: Device, *, accelerator: str = "vitcod", timeout_s: float = 10.0, poll_s: float = 0.0):
        if timeout_s <= 0:
            raise ValueError(f"timeout_s must be > 0, got {timeout_s}")
        self.spec = accelerators.get(accelerator)
        self._status_message = importlib.import_module(self.spec.isa).ISA.status_message
        self.device = device
        self.timeout_s = float(timeout_s)
        self.poll_s = float(poll_s)
        self._pointers_set = False
        #: Wall-clock seconds of the last :meth:`run`, from the start write to ``ap_done``.
        self.last_run_s = 0.0

    def registers(self) -> Dict[str, int]:
        """The status registers, as far as the device lets them be read (a dump for error messages)."""
        out: Dict[str, int] = {}
        for r in STATUS_REGISTERS:
            try:
                out[r] = int(self.device.read_register(r))
            except Exception as e:  # a dump must not hide the original problem
                out[r] = f"unreadable ({e})"  # type: ignore[assignment]
        return out

    def _set_pointers(self) -> None:
        addr = int(self.device.phys_addr)
        for r in self.spec.pointer_registers:
            self.device.write_register(r, addr)
        self.device.write_register("mem_bytes", int(self.device.mem.size))
        self._pointers_set = True

    def run(self, desc_off: int, num_instr: int) -> int:
        """Run ``num_instr`` descriptors at window offset ``desc_off``; return ``ap_return`` (0) or raise."""
        dev = self.device
        if not self._pointers_set:
            self._set_pointers()
        ctrl = int(dev.read_register("CTRL"))
        if not ctrl & CTRL_IDLE:
            raise AcceleratorError(f"{dev.name}: the accelerator is busy before a start (CTRL=0x{ctrl:02x}); "
                                   f"registers: {_fmt_registers(self.registers())}", registers=self.registers())
        dev.write_register("desc_off", int(desc_off))
        dev.write_register("num_instr", int(num_instr))
        t0 = time.perf_counter()
        dev.write_register("CTRL", CTRL_START)
        deadline = t0 + self.timeout_s
        while True:
            ctrl = int(dev.read_register("CTRL"))
            if ctrl & CTRL_DONE:
                break
            if time.perf_counter() > deadline:
                regs = self.registers()
                raise AcceleratorTimeout(
                    f"{dev.name}: no ap_done {self.timeout_s:g} s after starting {num_instr} descriptor(s) at "
                    f"offset {desc_off}; registers: {_fmt_registers(regs)}", registers=regs)
            if self.poll_s:
                time.sleep(self.poll_s)
        self.last_run_s = time.perf_counter() - t0
        status = int(dev.read_register("ap_return")) & 0xFFFFFFFF
        if status:
            regs = self.registers()
            raise AcceleratorError(f"{dev.name}: {self._status_message(status)} (ap_return 0x{status:08x}); "
                                   f"registers: {_fmt_registers(regs)}", status=status, registers=regs)
        return status

    def hardware_id(self) -> int:
        """The bitstream's config hash: a run of zero descriptors refreshes the ID register, then it is read."""
        self.run(0, 0)
        return int(self.device.read_register("hw_id")) & 0xFFFFFFFF

    def check_hardware(self, expected_hash32: int, what: str = "the bundle") -> None:
        """Refuse a bitstream built for another hardware config than ``expected_hash32``."""
        got = self.hardware_id()
        if got != int(expected_hash32):
            raise HardwareMismatch(
                f"{self.device.name}: the bitstream's hardware-config hash is 0x{got:08x} but {what} was compiled "
                f"for 0x{int(expected_hash32):08x}; load the overlay built for that config (overlay/<board>/"
                f"<accelerator>-<config>/manifest.json names it) or re-export the bundle for this one", registers=self.registers())
