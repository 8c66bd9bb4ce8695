"""C-simulation of the ReViT engines (``hls/revit/``) from Python: the HLS C++ compiled by g++
(:mod:`vitaccel.sim.csim`, cached) into one library, called through ctypes with the same arguments as the
NumPy models of :mod:`vitaccel.sim.revit`, returning the C++'s bits and its own cycle counters
(``hls/revit/revit_perf.h``) for the drift tests. Standard library and numpy only.
"""
from __future__ import annotations

import ctypes
import functools
from typing import Dict, Optional, Tuple

import numpy as np

from vitaccel import accelerators
from vitaccel.hls import HLS_DIR
from vitaccel.sim.csim import Array, CsimError, compile_library

__all__ = ["engines_library", "PERF_TOTALS", "SCHEDULE_CONSTANTS", "CsimEngineError", "csim_rbsp_pass",
           "csim_rmmu_project", "csim_rmmu_scores", "csim_rmmu_output", "csim_groupgen", "csim_dsoftmax", "csim_prune", "csim_allocate",
           "csim_timeline", "csim_attention_layer", "LAYER_CYCLES"]

_SPEC = accelerators.get("revit")
INCLUDE_DIRS = tuple(HLS_DIR / d for d in _SPEC.include_dirs)

#: hls/revit/revit_perf.h, enum Total, in order.
PERF_TOTALS = ("rbsp_passes", "rbsp_tiles", "rbsp_steps", "rbsp_cycles", "rbsp_terms", "rbsp_slots", "gg_calls",
               "gg_hash", "gg_codes", "gg_argmax", "gg_lists", "dsm_rows", "dsm_max", "dsm_rescale", "dsm_offset",
               "dsm_exp", "dsm_div", "dsm_norm", "pr_calls", "pr_group_score", "pr_group_rank", "pr_patch_score",
               "pr_patch_rank", "sch_alloc", "sch_events", "cmp_calls", "cmp_rows", "cmp_package", "cmp_patch", "dsm_time")
#: revit_schedule_constants in hls/revit/revit_capi.cpp, in order.
SCHEDULE_CONSTANTS = ("rmmu_cols", "rmmu_lanes", "g_pes", "p_pes", "simd_lanes", "pipe_rbsp", "pipe_code",
                      "pipe_list", "max_c", "max_k", "max_o", "serial_bits", "sync_cols", "pipe_pack",
                      "pipe_patch")


class CsimEngineError(CsimError, ValueError):
    """An engine refused its input; ``status`` is its code (hls/revit/DESCRIPTOR.md)."""

    def __init__(self, what: str, status: int):
        from vitaccel.sim.revit.isa import ISA

        super().__init__(f"{what}: {ISA.status_message(status)}")
        self.status = int(status)


class _Lib:
    def __init__(self, lib):
        i8, u8, i16, i32, i64 = np.int8, np.uint8, np.int16, np.int32, np.int64
        c = ctypes.c_int
        self.lib = lib
        self.config_hash32 = lib.bind("revit_config_hash32", [], restype=ctypes.c_uint32)
        self.perf_reset = lib.bind("revit_perf_reset", [], restype=None)
        self._perf = lib.bind("revit_perf_totals", [("out", Array(i64, out=True)), ("n", c)])
        self._sched = lib.bind("revit_schedule_constants", [("out", Array(i32, out=True)), ("n", c)])
        self.common_perf_reset = lib.bind("revit_common_perf_reset", [], restype=None)
        self._common_perf = lib.bind("revit_common_perf_totals", [("out", Array(i64, out=True)), ("n", c)])
        self.run = lib.bind("revit_run", [
            ("dram", Array(u8, out=True)), ("dram_bytes", ctypes.c_int64), ("desc_off", ctypes.c_uint32),
            ("num_instr", ctypes.c_uint32), ("hw_id", Array(np.uint32, out=True)),
            ("run_count", Array(np.uint32, out=True))])
        self.rbsp_pass = lib.bind("revit_rbsp_pass", [
            ("S", Array(i16)), ("B", Array(i32)), ("C", c), ("K", c), ("O", c), ("cols", c), ("sync", c),
            ("Y", Array(i32, out=True)), ("cycles", Array(i64, out=True))])
        self.groupgen = lib.bind("revit_groupgen", [
            ("x", Array(i8)), ("n", c), ("D", c), ("A", Array(i8)), ("B", Array(i32)), ("G", c),
            ("m", ctypes.c_int32), ("s", ctypes.c_int32), ("groups", Array(i32, out=True)),
            ("counts", Array(i32, out=True)), ("members", Array(i32, out=True)), ("cycles", Array(i64, out=True))])
        self.dsoftmax = lib.bind("revit_dsoftmax", [
            ("scores", Array(i32)), ("keep", Array(u8)), ("weights", Array(i32)), ("rows", c), ("n", c),
            ("m_exp", ctypes.c_int32), ("s_exp", ctypes.c_int32), ("block", c), ("lanes", c),
            ("p", Array(u8, out=True)), ("cycles", Array(i64, out=True))])
        self.prune = lib.bind("revit_prune", [
            ("group_p", Array(u8)), ("cls_p", Array(u8)), ("groups", Array(i32)), ("H", c), ("G", c), ("n", c),
            ("q_groups", ctypes.c_int32), ("q_patches", ctypes.c_int32), ("keep", Array(u8, out=True)),
            ("keep_g", Array(u8, out=True)), ("scores", Array(i32, out=True)), ("cycles", Array(i64, out=True))])
        self.sched_allocate = lib.bind("revit_sched_allocate", [
            ("sizes", Array(i32)), ("G", c), ("mode", c), ("F", c), ("sub", Array(i32, out=True)),
            ("cols", Array(i32, out=True)), ("order", Array(i32, out=True)), ("cycles", Array(i64, out=True))])
        self.sched_timeline = lib.bind("revit_sched_timeline", [
            ("sizes", Array(i32)), ("G", c), ("mode", c), ("F", c), ("t", Array(i64)), ("W", Array(i64)),
            ("finish", Array(i64, out=True)), ("out", Array(i64, out=True))])
        self.attention_layer = lib.bind("revit_attention_layer", [
            ("x", Array(i8)), ("w", Array(i8)), ("b", Array(i32)), ("m", Array(i32)), ("s", Array(i32)),
            ("hw", Array(i8)), ("hb", Array(i32)), ("flags", Array(i32)), ("flags2", Array(i32)), ("q", Array(i32)),
            ("y", Array(i8, out=True)), ("groups", Array(i32, out=True)), ("cls_p", Array(u8, out=True)),
            ("group_p", Array(u8, out=True)), ("cycles", Array(i64, out=True))])
        self.project = lib.bind("revit_rmmu_project", [
            ("x", Array(i8)), ("l", c), ("xc", Array(i8)), ("K", c), ("W", Array(i8)), ("bias", Array(i32)), ("O", c),
            ("delta", c), ("cols", c), ("sync", c), ("acc", Array(i32, out=True)), ("cycles", Array(i64, out=True))])
        self.scores = lib.bind("revit_rmmu_scores", [
            ("q", Array(i8)), ("m", c), ("k", Array(i8)), ("l", c), ("kc", Array(i8)), ("ke", Array(i8)), ("e", c),
            ("d", c), ("delta", c), ("cols", c), ("sync", c), ("s", Array(i32, out=True)), ("cycles", Array(i64, out=True))])
        self.output = lib.bind("revit_rmmu_output", [
            ("p", Array(u8)), ("m", c), ("v", Array(i8)), ("l", c), ("vc", Array(i8)), ("ve", Array(i8)), ("e", c),
            ("d", c), ("delta", c), ("cols", c), ("sync", c), ("z", Array(i32, out=True)), ("cycles", Array(i64, out=True))])

    def perf_totals(self) -> Dict[str, int]:
        out = np.zeros(len(PERF_TOTALS), np.int64)
        n = self._perf(out, out.size)
        if n != len(PERF_TOTALS):
            raise CsimError(f"revit_perf_totals reports {n} values, expected {len(PERF_TOTALS)}")
        return {k: int(v) for k, v in zip(PERF_TOTALS, out)}

    def common_perf_totals(self) -> Dict[str, int]:
        """The common kernels' counters (hls/common/perf.h) in this library, named as the ViTCoD library's."""
        from vitaccel.sim.vitcod.csim_kernels import PERF_TOTALS as COMMON

        out = np.zeros(len(COMMON), np.int64)
        n = self._common_perf(out, out.size)
        if n != len(COMMON):
            raise CsimError(f"revit_common_perf_totals reports {n} values, expected {len(COMMON)}")
        return {k: int(v) for k, v in zip(COMMON, out)}

    @functools.cached_property
    def schedule(self) -> Dict[str, int]:
        out = np.zeros(len(SCHEDULE_CONSTANTS), np.int32)
        n = self._sched(out, out.size)
        if n != len(SCHEDULE_CONSTANTS):
            raise CsimError(f"revit_schedule_constants reports {n} values, expected {len(SCHEDULE_CONSTANTS)}")
        return {k: int(v) for k, v in zip(SCHEDULE_CONSTANTS, out)}


@functools.lru_cache(maxsize=None)
def engines_library(config="revit-paper") -> _Lib:
    """The engines library compiled for ``config`` (a ReViT config), memoised per process."""
    from vitaccel.hwconfig import load_config

    cfg = load_config(config)
    if cfg.accelerator != "revit":
        raise ValueError(f"config {cfg.name!r} is for accelerator {cfg.accelerator!r}, not 'revit'")
    # Hidden visibility: only the C API is exported (see revit_capi.cpp), so the common kernels' inline
    # statics never bind across the ViTCoD and ReViT libraries loaded in one process.
    return _Lib(compile_library("revit", list(_SPEC.csim_sources), config=config, include_dirs=INCLUDE_DIRS,
                                extra_flags=("-fvisibility=hidden", "-fvisibility-inlines-hidden")))


def _check(status: int, what: str) -> None:
    if status != 0:
        raise CsimEngineError(what, status)


def _c(a, dtype) -> np.ndarray:
    a = np.ascontiguousarray(a, dtype=dtype)
    return a if a.size else np.zeros(1, dtype)


def _sync(sync, config) -> int:
    from vitaccel.hwconfig import load_config

    return int(load_config(config).sync_cols if sync is None else sync)


def csim_rbsp_pass(serial, broadcast, cols: int, config="revit-paper", sync=None) -> Tuple[np.ndarray, int]:
    s, b = np.asarray(serial), np.asarray(broadcast)
    C, K = s.shape
    O = b.shape[0]
    y = np.zeros((O, C), np.int32)
    cyc = np.zeros(1, np.int64)
    _check(engines_library(config).rbsp_pass(_c(s, np.int16), _c(b, np.int32), C, K, O, int(cols), _sync(sync, config),
                                                  y, cyc), "rbsp pass")
    return y, int(cyc[0])


def csim_rmmu_project(x8, xc8, weight, bias, *, delta: bool, cols: int, config="revit-paper",
                      sync=None) -> Tuple[np.ndarray, int]:
    x = np.asarray(x8)
    l, K = x.shape
    O = np.shape(weight)[0]
    acc = np.zeros((l, O), np.int32)
    cyc = np.zeros(1, np.int64)
    _check(engines_library(config).project(_c(x, np.int8), l, _c(xc8 if xc8 is not None else np.zeros(K), np.int8), K,
                                           _c(weight, np.int8), _c(bias, np.int32), O, int(delta), int(cols), _sync(sync, config), acc, cyc),
           "rmmu project")
    return acc, int(cyc[0])


def csim_rmmu_scores(q8, k8, kc8=None, extra=None, *, delta: bool, cols: int,
                     config="revit-paper", sync=None) -> Tuple[np.ndarray, int]:
    q = np.asarray(q8)
    m, d = q.shape
    k = np.asarray(k8).reshape(-1, d)
    ke = np.zeros((0, d), np.int8) if extra is None else np.asarray(extra).reshape(-1, d)
    s = np.zeros((m, k.shape[0] + ke.shape[0]), np.int32)
    cyc = np.zeros(1, np.int64)
    kc = np.zeros(d, np.int8) if kc8 is None else kc8
    _check(engines_library(config).scores(_c(q, np.int8), m, _c(k, np.int8), k.shape[0], _c(kc, np.int8),
                                          _c(ke, np.int8), ke.shape[0], d, int(delta), int(cols), _sync(sync, config), s,
                                          cyc), "rmmu scores")
    return s, int(cyc[0])


def csim_rmmu_output(p, v8, vc8=None, extra=None, *, delta: bool, cols: int,
                     config="revit-paper", sync=None) -> Tuple[np.ndarray, int]:
    pr = np.asarray(p)
    v = np.asarray(v8)
    d = v.shape[1]
    ve = np.zeros((0, d), np.int8) if extra is None else np.asarray(extra).reshape(-1, d)
    m = pr.shape[0]
    z = np.zeros((m, d), np.int32)
    cyc = np.zeros(1, np.int64)
    vc = np.zeros(d, np.int8) if vc8 is None else vc8
    _check(engines_library(config).output(_c(pr, np.uint8), m, _c(v, np.int8), v.shape[0], _c(vc, np.int8),
                                          _c(ve, np.int8), ve.shape[0], d, int(delta), int(cols), _sync(sync, config), z,
                                          cyc), "rmmu output")
    return z, int(cyc[0])


def csim_groupgen(x8, weight, bias, mult: int, shift: int, config="revit-paper"):
    """``(groups, counts, members, cycles dict)`` of the HLS group generation engine."""
    x, w = np.asarray(x8), np.asarray(weight)
    n, D = x.shape
    G = w.shape[0]
    groups, counts, members = np.zeros(n, np.int32), np.zeros(G, np.int32), np.zeros(n, np.int32)
    cyc = np.zeros(4, np.int64)
    _check(engines_library(config).groupgen(_c(x, np.int8), n, D, _c(w, np.int8), _c(bias, np.int32), G, int(mult),
                                            int(shift), groups, counts, members, cyc), "group generation")
    return groups, counts, members, dict(zip(("hash", "codes", "argmax", "lists"), (int(v) for v in cyc)))


def csim_dsoftmax(scores, keep, m_exp: int, s_exp: int, block: int, lanes: int, weights=None, config="revit-paper"):
    """``(p uint8, cycles by phase)`` of the HLS differential softmax unit (same arguments as
    :func:`vitaccel.sim.revit.dsoftmax.dsoftmax`)."""
    from vitaccel.sim.revit.dsoftmax import PHASES, TIME

    s = np.asarray(scores)
    n = s.shape[-1]
    rows = int(np.prod(s.shape[:-1], dtype=np.int64))
    k = np.ones(s.shape, np.uint8) if keep is None else np.asarray(keep).astype(np.uint8)
    w = np.ones(n, np.int32) if weights is None else np.asarray(weights)
    p = np.zeros(s.shape, np.uint8)
    cyc = np.zeros(len(PHASES) + 1, np.int64)
    _check(engines_library(config).dsoftmax(_c(s, np.int32), _c(k, np.uint8), _c(w, np.int32), rows, n, int(m_exp),
                                            int(s_exp), int(block), int(lanes), p, cyc), "differential softmax")
    return p, dict(zip(PHASES + (TIME,), (int(v) for v in cyc)))


def csim_prune(group_p, cls_p, groups, num_groups: int, q_groups: int, q_patches: int, config="revit-paper"):
    """``(keep bool, keep_groups bool, scores int32, cycles by phase)`` of the HLS pruners."""
    from vitaccel.sim.revit.pruner import PHASES

    gp, cp = np.asarray(group_p), np.asarray(cls_p)
    H, n = cp.shape
    keep, keep_g, sc = np.zeros(n, np.uint8), np.zeros(num_groups, np.uint8), np.zeros(n, np.int32)
    cyc = np.zeros(len(PHASES), np.int64)
    _check(engines_library(config).prune(_c(gp, np.uint8), _c(cp, np.uint8), _c(groups, np.int32), H, int(num_groups), n,
                                         int(q_groups), int(q_patches), keep, keep_g, sc, cyc), "pruner")
    return keep.astype(bool), keep_g.astype(bool), sc, dict(zip(PHASES, (int(v) for v in cyc)))


def csim_allocate(sizes, mode: int, fixed_cols: int = 16, config="revit-paper"):
    """``(cols (S,), sub (G,), order (G,), cycles)`` of the HLS rSched allocation."""
    sz = np.ascontiguousarray(sizes, np.int32)
    G = sz.size
    sub, cols, order = np.zeros(G, np.int32), np.zeros(max(G, 1024), np.int32), np.zeros(G, np.int32)
    cyc = np.zeros(1, np.int64)
    S = engines_library(config).sched_allocate(sz, G, int(mode), int(fixed_cols), sub, cols, order, cyc)
    if S < 0:
        raise CsimEngineError("scheduler allocation", -S)
    return cols[:S].copy(), sub, order, int(cyc[0])


def csim_timeline(sizes, t, W, mode: int, fixed_cols: int = 16, config="revit-paper"):
    """``(finish (G,), in_order, out_of_order, busy)`` of the HLS scheduler's timeline."""
    sz = np.ascontiguousarray(sizes, np.int32)
    G = sz.size
    finish, out = np.zeros(G, np.int64), np.zeros(3, np.int64)
    _check(engines_library(config).sched_timeline(sz, G, int(mode), int(fixed_cols), _c(t, np.int64), _c(W, np.int64),
                                                  finish, out), "scheduler timeline")
    return finish, int(out[0]), int(out[1]), int(out[2])


#: What revit_attention_layer's cycles[7] hold.
LAYER_CYCLES = ("groupgen", "intra", "inter", "in_order", "out_of_order", "tail", "total")


def csim_attention_layer(h8, lp, config="revit-paper", *, mode: int = 2, delta: bool = True, out_of_order: bool = True,
                         fixed_cols: int = 16, sync=None):
    """``(a8, groups, cls_p, group_p, cycles)`` of the fused attention layer on the HLS engines (same
    arguments as :func:`vitaccel.sim.revit.layer.engine_layer`)."""
    x = np.asarray(h8)
    N, D = x.shape
    H, G = lp.heads, lp.num_groups
    per = lambda v: np.ascontiguousarray(np.broadcast_to(np.asarray(v), (3 * D,)), np.int32)  # noqa: E731
    from vitaccel.sim.revit.isa import COMBINE_CODES

    flags = np.array([N, D, H, G, lp.block, COMBINE_CODES[lp.combine], mode], np.int32)
    flags2 = np.array([fixed_cols, int(delta), _sync(sync, config), int(out_of_order)], np.int32)
    q = np.array([lp.hash_mult, lp.hash_shift, *lp.softmax, *lp.out], np.int64)
    if (q < -(1 << 31)).any() or (q >= 1 << 31).any():
        raise ValueError("a multiplier or shift does not fit int32")
    y, groups = np.zeros((N, D), np.int8), np.zeros(N - 1, np.int32)
    cls_p, group_p = np.zeros((H, N), np.uint8), np.zeros((H, G), np.uint8)
    cyc = np.zeros(7, np.int64)
    _check(engines_library(config).attention_layer(
        _c(x, np.int8), _c(lp.qkv_weight, np.int8), per(lp.qkv_bias), per(lp.qkv_mult), per(lp.qkv_shift),
        _c(lp.hash_weight, np.int8), _c(lp.hash_bias, np.int32), flags, flags2, q.astype(np.int32), y, groups, cls_p,
        group_p, cyc), "attention layer")
    return y, groups, cls_p, group_p, dict(zip(LAYER_CYCLES, (int(v) for v in cyc)))
