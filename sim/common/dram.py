"""Off-chip transfers: the one cost model every kernel's data movement goes through.

A transfer of ``b`` bytes costs ``burst_setup_cycles`` once (address phase, interconnect and DDR controller
latency) and then streams at the config's ``bytes_per_cycle``. Transfers issued back to back on the
same engine add up; :func:`overlap` is how a double-buffered engine hides them under its compute.
"""
from __future__ import annotations

import math
from typing import List, Tuple

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


def overlap(steps: List[Tuple[int, int, int]]) -> Tuple[int, int]:
    """``(compute, data)`` of steps ``(load before, compute, store after)`` with the next step's load and the
    previous step's store under the current step's compute."""
    if not steps:
        return 0, 0
    compute = 0
    data = steps[0][0]
    for i, (_, comp, _) in enumerate(steps):
        nxt = (steps[i + 1][0] if i + 1 < len(steps) else 0) + (steps[i - 1][2] if i > 0 else 0)
        compute += comp
        data += max(comp, nxt) - comp
    return compute, data + steps[-1][2]
