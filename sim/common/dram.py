"""Off-chip transfers: the one cost model every kernel's data movement goes through.

A transfer of ``b`` bytes costs ``burst_setup_cycles`` once (address phase, interconnect and DDR controller
latency) and then streams at the config's ``bytes_per_cycle``. Transfers issued back to back on the
same engine add up; overlap with compute is the caller's business (double buffering).
"""
from __future__ import annotations

import math

from vitaccel.hwconfig import HardwareConfig


def transfer_cycles(cfg: HardwareConfig, nbytes: int) -> int:
    if nbytes < 0:
        raise ValueError(f"nbytes must be >= 0, got {nbytes}")
    if nbytes == 0:
        return 0
    return cfg.burst_setup_cycles + math.ceil(nbytes / cfg.bytes_per_cycle)


def transfers_cycles(cfg: HardwareConfig, *sizes: int) -> int:
    """Several separate transfers (one setup each), issued one after the other."""
    return sum(transfer_cycles(cfg, s) for s in sizes)
