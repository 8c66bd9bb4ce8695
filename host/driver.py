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
import math
import time
from typing import Dict, Optional

import numpy as np

from vitaccel import accelerators

__all__ = ["Device", "Driver", "AcceleratorError", "AcceleratorTimeout", "HardwareMismatch", "check_timeout",
           "CTRL_START", "CTRL_DONE", "CTRL_IDLE", "STATUS_REGISTERS"]

CTRL_START, CTRL_DONE, CTRL_IDLE, CTRL_READY = 0x1, 0x2, 0x4, 0x8
#: What a timeout or a failure dumps. ``run_count`` (every top has it) counts the starts since reset.
STATUS_REGISTERS = ("CTRL", "GIE", "IER", "ISR", "ap_return", "hw_id", "run_count", "desc_off", "num_instr",
                    "mem_bytes")


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
    """A register file and a DRAM window (subclasses implement the register methods; the rest is optional)."""

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

    def reset(self) -> None:
        """Bring a hung accelerator back to idle (its registers cleared, the window kept)."""
        raise NotImplementedError(f"{self.name} has no reset path")

    def close(self) -> None:
        """Release the window and the register file."""


def _fmt_registers(regs: Dict[str, int]) -> str:
    return ", ".join(f"{k}=0x{v:08x}" if isinstance(v, int) else f"{k}={v}" for k, v in regs.items())


def check_timeout(timeout_s, what: str = "timeout_s") -> float:
    """A finite, positive number of seconds (nan and inf would make a wait unbounded)."""
    if isinstance(timeout_s, (bool, str, bytes)):   # float() would take True as 1 s and "5" as 5 s
        raise ValueError(f"{what} must be a finite number of seconds > 0, got {timeout_s!r}")
    try:
        t = float(timeout_s)
    except (TypeError, ValueError):
        raise ValueError(f"{what} must be a number of seconds, got {timeout_s!r}") from None
    if not math.isfinite(t) or t <= 0:
        raise ValueError(f"{what} must be a finite number of seconds > 0, got {timeout_s!r}")
    return t


class Driver:
    """Start programs on an accelerator's top and wait for them, every wait bounded by ``timeout_s``.

    ``accelerator``: the registry name of the top behind ``device`` (its pointer registers and status codes).
    Every register access goes through :meth:`_read` / :meth:`_write`, so a bus error or a value that is no
    integer becomes an :class:`AcceleratorError` with a register dump. A start is checked against the top's
    ``run_count`` register: done without the count moving by one means the start was lost and the outputs
    are stale. After a timeout, :meth:`reset` brings the accelerator back."""

    def __init__(self, device: Device, *, accelerator: str = "vitcod", timeout_s: float = 10.0, poll_s: float = 0.0):
        self.timeout_s = check_timeout(timeout_s)
        if not (math.isfinite(float(poll_s)) and float(poll_s) >= 0):
            raise ValueError(f"poll_s must be a finite number of seconds >= 0, got {poll_s!r}")
        self.spec = accelerators.get(accelerator)
        self._status_message = importlib.import_module(self.spec.isa).ISA.status_message
        self.device = device
        self.poll_s = float(poll_s)
        self._pointers_set = False
        #: The hash check_hardware accepted: every later run's hw_id must still hold it (another overlay
        #: loaded by someone else mid-session would change it).
        self.expected_id: Optional[int] = None
        #: Wall-clock seconds of the last :meth:`run`, from the start write to ``ap_done``.
        self.last_run_s = 0.0

    def registers(self) -> Dict[str, int]:
        """The status registers, as far as the device lets them be read (a dump for error messages)."""
        out: Dict[str, int] = {}
        for r in STATUS_REGISTERS:
            try:
                out[r] = int(self.device.read_register(r))
            except Exception as e:  # a dump must not hide the original problem
                out[r] = f"unreadable ({type(e).__name__}: {e})"  # type: ignore[assignment]
        return out

    def _fail(self, message: str, cls=None, status: Optional[int] = None):
        regs = self.registers()
        return (cls or AcceleratorError)(f"{self.device.name}: {message}; registers: {_fmt_registers(regs)}",
                                         status=status, registers=regs)

    def _read(self, name: str) -> int:
        try:
            v = self.device.read_register(name)
        except AcceleratorError:
            raise
        except Exception as e:
            raise self._fail(f"reading register {name} failed ({type(e).__name__}: {e})") from e
        if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, np.integer)):
            raise self._fail(f"register {name} read back {v!r} ({type(v).__name__}), not an integer")
        return int(v)

    def _write(self, name: str, value: int) -> None:
        try:
            self.device.write_register(name, int(value))
        except AcceleratorError:
            raise
        except Exception as e:
            raise self._fail(f"writing register {name} failed ({type(e).__name__}: {e})") from e

    def _set_pointers(self) -> None:
        addr = int(self.device.phys_addr)
        for r in self.spec.pointer_registers:
            self._write(r, addr)
        self._write("mem_bytes", int(self.device.mem.size))
        self._pointers_set = True

    def run(self, desc_off: int, num_instr: int) -> int:
        """Run ``num_instr`` descriptors at window offset ``desc_off``; return ``ap_return`` (0) or raise."""
        if not self._pointers_set:
            self._set_pointers()
        ctrl = self._read("CTRL")
        if not ctrl & CTRL_IDLE:
            raise self._fail(f"the accelerator is busy before a start (CTRL=0x{ctrl:02x}); a run that timed out "
                             f"is still going: Driver.reset() / Accelerator.reset() brings it back")
        self._write("desc_off", int(desc_off))
        self._write("num_instr", int(num_instr))
        runs = self._read("run_count") & 0xFFFFFFFF
        t0 = time.perf_counter()
        self._write("CTRL", CTRL_START)
        deadline = t0 + self.timeout_s
        while True:
            ctrl = self._read("CTRL")
            if ctrl & CTRL_DONE:
                break
            if time.perf_counter() > deadline:
                raise self._fail(f"no ap_done {self.timeout_s:g} s after starting {num_instr} descriptor(s) at offset "
                                 f"{desc_off}; Driver.reset() / Accelerator.reset() brings the accelerator back",
                                 AcceleratorTimeout)
            if self.poll_s:
                time.sleep(self.poll_s)
        self.last_run_s = time.perf_counter() - t0
        after = self._read("run_count") & 0xFFFFFFFF
        if after != (runs + 1) & 0xFFFFFFFF:
            raise self._fail(f"ap_done came but the run counter went from {runs} to {after}, not {runs + 1}: the "
                             f"start was lost (or another host started it) and the outputs are stale")
        if self.expected_id is not None:
            hw = self._read("hw_id") & 0xFFFFFFFF
            if hw != self.expected_id:
                raise self._fail(f"the hardware-config hash in hw_id changed to 0x{hw:08x} after the check accepted 0x{self.expected_id:08x}: "
                                 f"another bitstream was loaded", HardwareMismatch)
        status = self._read("ap_return") & 0xFFFFFFFF
        if status:
            raise self._fail(f"{self._status_message(status)} (ap_return 0x{status:08x})", status=status)
        return status

    def reset(self) -> None:
        """Reset the accelerator (the device's reset path) and check it is idle; the pointers are set again
        before the next run."""
        try:
            self.device.reset()
        except NotImplementedError as e:
            raise AcceleratorError(str(e)) from None
        self._pointers_set = False
        ctrl = self._read("CTRL")
        if not ctrl & CTRL_IDLE:
            raise self._fail(f"still busy after a reset (CTRL=0x{ctrl:02x})")

    def hardware_id(self) -> int:
        """The bitstream's config hash: a run of zero descriptors refreshes the ID register, then it is read."""
        self.run(0, 0)
        return self._read("hw_id") & 0xFFFFFFFF

    def check_hardware(self, expected_hash32: int, what: str = "the bundle") -> None:
        """Refuse a bitstream built for another hardware config than ``expected_hash32``."""
        self.expected_id = None
        got = self.hardware_id()
        if got != int(expected_hash32):
            raise self._fail(f"the bitstream's hardware-config hash is 0x{got:08x} but {what} was compiled for "
                             f"0x{int(expected_hash32):08x}; load the overlay built for that config (overlay/<board>/"
                             f"<accelerator>-<config>/manifest.json names it) or re-export the bundle for this one",
                             HardwareMismatch)
        self.expected_id = got
