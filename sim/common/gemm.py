"""GEMM mode of the MAC lines (qkv, proj, fc1, fc2) with fused bias and requantisation: bits and cycles.

Cycle model: the loop nest of ``hls/common/gemm/gemm.h`` with its tile sizes (:func:`gemm_plan`), each
nest counted as iterations x II (1) + its depth (``tests/test_cycle_model_vs_hls.py`` checks it against
the C++'s counters):

* Weights go through the weight buffer in tiles: half the buffer (the other half is the double buffer)
  split evenly over the ``L`` lines, ``WLINE`` words of ``M`` bytes each (L x M: the config's ``gemm_array``).
  A tile gives each line ``R = WLINE // ceil(K / M)`` whole rows (``To = R L`` outputs, at most O); a
  row longer than a line's share is cut into K slices of ``WLINE`` chunks (``R = 1``) whose partial sums
  wait in the output buffer, and the slices are reloaded for every activation tile. Bias, multiplier and
  shift (12 bytes per output) travel with the tile into registers.
* Activations stay resident when ``Tm = (A_half / M) // ceil(K / M)`` rows cover all of M; otherwise
  they are tiled by ``Tm`` rows and re-streamed for every weight tile.
* Per (weight tile, activation tile, K slice), a DATAFLOW of the MAC nest (every line one output at a
  time, one K chunk per cycle: ``mh Rt cn`` iterations + ``pipe_dot``, ``Rt = ceil(ow / L)`` the line
  groups the tile fills: R except in a short last tile) and the store (one line group per
  cycle through the lines' requantisers, last slice only: ``+ PIPE_RQ`` after the last group).
* Off-chip: loads of the next step and the store of the previous one overlap the current step's compute
  (double buffering, which the HLS does not write out yet: it loads in sequence).

The array is the one the config's accelerator names for its GEMM mode (``HardwareConfig.gemm_array``:
ViTCoD's MAC lines), as the C++ is instantiated on ``cfg::GemmArray``.
"""
from __future__ import annotations

from typing import Dict, List, Optional, Tuple

import numpy as np

from vitaccel.hwconfig import HardwareConfig
from vitaccel.sim import numerics as nx
from vitaccel.sim import schedule
from vitaccel.sim.common.dram import overlap, transfer_cycles
from vitaccel.sim.report import KernelReport

__all__ = ["gemm", "gemm_cycles", "gemm_steps", "gemm_tiles", "gemm_plan"]

#: Bytes per output channel of constants that travel with a weight tile: bias, multiplier, shift.
CONST_BYTES = 12


def gemm(x, w, bias, mult, shift) -> np.ndarray:
    """``requantize(x @ w.T + bias, mult, shift)``: x int8 (M, K), w int8 (O, K), bias int32 (O,)."""
    x = np.asarray(x)
    w = np.asarray(w)
    b = np.asarray(bias)
    if x.dtype != np.int8 or x.ndim != 2:
        raise ValueError(f"x must be int8 (M, K), got {x.dtype} {x.shape}")
    if w.dtype != np.int8 or w.ndim != 2 or w.shape[1] != x.shape[1]:
        raise ValueError(f"w must be int8 (O, {x.shape[1]}), got {w.dtype} {w.shape}")
    if b.dtype != np.int32 or b.shape != (w.shape[0],):
        raise ValueError(f"bias must be int32 ({w.shape[0]},), got {b.dtype} {b.shape}")
    acc = nx.matmul_int(x, w.T).astype(np.int64) + b.astype(np.int64)
    return nx.requantize(acc, mult, shift)


def gemm_plan(cfg: HardwareConfig, m: int, k: int, o: int) -> Dict[str, int]:
    """The HLS tile plan (gemm.h ``plan_tiles``): KC chunks per row, KS chunks per K slice, NKS slices, R rows
    per line, To rows per weight tile, Tm rows per activation tile."""
    lines, lanes = cfg.gemm_array
    wline = cfg.weight_buffer_kb * 1024 // 2 // (lines * lanes)
    xwords = cfg.qkvs_buffer_kb * 1024 // 2 // lanes
    if wline < 1:
        raise ValueError(f"the weight buffer of '{cfg.name}' gives a MAC line no word")
    if k > xwords * lanes:
        raise ValueError(f"K={k} does not fit one activation row in half the Q/K/S/V buffer ({xwords * lanes} B)")
    kc = -(-k // lanes)
    ks = min(kc, wline)
    nks = -(-kc // ks)
    groups = -(-o // lines)
    r = min(wline // kc if nks == 1 else 1, groups)
    return {"KC": kc, "KS": ks, "NKS": nks, "R": r, "To": min(r * lines, o), "Tm": min(xwords // kc, m)}


def gemm_tiles(cfg: HardwareConfig, m: int, k: int, o: int) -> Tuple[int, int, bool]:
    """``(To, Tm, x_resident)``: weight-tile rows, activation-tile rows, whether x stays on chip."""
    p = gemm_plan(cfg, m, k, o)
    return p["To"], p["Tm"], p["Tm"] >= m


def gemm_steps(cfg: HardwareConfig, m: int, k: int, o: int, *, y_on_chip: bool = False) -> Dict[str, object]:
    """The HLS nest of one GEMM as DMA/compute steps ``(load cycles before, compute cycles, store cycles
    after)``, one per run_slice, with the bytes and MAC iterations: what :func:`gemm_cycles` overlaps, and
    what a fused op (``vitaccel.sim.vitcod.autoencoder.qkv_ae_cycles``) chains with its own steps.
    ``y_on_chip``: the output goes to an on-chip buffer (no store traffic)."""
    if min(m, k, o) < 1:
        raise ValueError(f"GEMM dims must be >= 1, got m={m}, k={k}, o={o}")
    p = gemm_plan(cfg, m, k, o)
    to, tm, kc, ks, nks = p["To"], p["Tm"], p["KC"], p["KS"], p["NKS"]
    resident = tm >= m
    lines, lanes = cfg.gemm_array
    pd = schedule.pipe_dot(lanes)

    # The HLS nest: weight tiles, activation tiles, K slices; one step per run_slice.
    steps: List[Tuple[int, int, int]] = []  # (load cycles before it, compute cycles, store cycles after)
    loaded = stored = 0
    mac_iters = 0
    x_loaded = False
    for o0 in range(0, o, to):
        ow = min(to, o - o0)
        tile_load = [CONST_BYTES * ow] + ([ow * k] if nks == 1 else [])
        for m0 in range(0, m, tm):
            mh = min(tm, m - m0)
            loads = tile_load if m0 == 0 else []
            if not (resident and x_loaded):
                loads = loads + [mh * k]
                x_loaded = True
            for s in range(nks):
                c0 = s * ks
                cn = min(kc - c0, ks)
                sl = loads if s == 0 else []
                if nks > 1:
                    sl = sl + [ow * (min(k, (c0 + cn) * lanes) - c0 * lanes)]
                last = s == nks - 1
                iters = mh * (-(-ow // lines)) * cn     # a short last tile runs only the groups it fills
                mac_iters += iters
                comp = iters + pd + (schedule.PIPE_RQ if last else 0)
                store = mh * ow if (last and not y_on_chip) else 0
                loaded += sum(sl)
                stored += store
                steps.append((sum(transfer_cycles(cfg, b) for b in sl), comp, transfer_cycles(cfg, store)))
    notes = [] if resident else [f"activations re-streamed {-(-o // to)}x"]
    return {"steps": steps, "loaded": loaded, "stored": stored, "mac_iterations": mac_iters, "notes": notes}


def gemm_cycles(cfg: HardwareConfig, m: int, k: int, o: int, *, name: str = "gemm", layer: Optional[int] = None,
                ) -> KernelReport:
    """Cycles of ``(m x k) @ (k x o)`` in GEMM mode on the config's MAC array."""
    g = gemm_steps(cfg, m, k, o)
    steps = g["steps"]
    compute, data = overlap(steps)
    engines = {"gemm": compute, "mac_iterations": g["mac_iterations"], "dma": sum(st[0] + st[2] for st in steps)}
    macs = m * k * o
    return KernelReport("gemm", name, layer, compute, 0, data, macs, macs, g["loaded"] + g["stored"], engines, [],
                        list(g["notes"]))
