"""The NumPy model of ``revit_top`` (hls/revit/revit_top.cpp): the same descriptor checks, in the same order,
with the same status codes, and the same bits written into the DRAM window; each engine descriptor's
cycles from the engines' cycle models. ISA: :mod:`vitaccel.sim.revit.isa` (``NOP``, ``ATTN``, ``PRUNE``, and
the common ``GEMM``, ``LAYERNORM``, ``ADD``, ``LUT``, whose bits are :mod:`vitaccel.sim.common`'s; their
cycles are the common kernels' models on the RMMU taken as a Pn x Pc array doing one int8 MAC per lane per
cycle, an idealisation of the bit-serial array in one-large-array mode).

The host compiler from a ReViT bundle to a program is :mod:`vitaccel.host.revit.program`.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Dict, List, Optional

import numpy as np

from vitaccel.hwconfig import ConfigLike, load_config
from vitaccel.sim.revit.attention import LayerParams
from vitaccel.sim.revit.isa import COMBINE_CODES, ISA

__all__ = ["run_top", "kernel_report", "TopResult", "attn_descriptor", "prune_descriptor", "op_descriptor",
           "gemm_max_k"]


DESC_WORDS, MAX_INSTR = ISA.desc_words, ISA.max_instr
OK, ERR_OP, ERR_ALIGN, ERR_RANGE, ERR_COUNT, ERR_OVERLAP = 0, *(ISA.code(n) for n in (
    "ERR_OP", "ERR_ALIGN", "ERR_RANGE", "ERR_COUNT", "ERR_OVERLAP"))
ATT_DIMS, ATT_QUANT = ISA.code("ATT_ERR_DIMS"), ISA.code("ATT_ERR_QUANT")
SCH_DIMS, SCH_MODE = ISA.code("SCH_ERR_DIMS"), ISA.code("SCH_ERR_MODE")
PR_DIMS, PR_RATIO = ISA.code("PR_ERR_DIMS"), ISA.code("PR_ERR_RATIO")
V, P, CW = ISA.words("ATTN"), ISA.words("PRUNE"), ISA.words("COMPACT")
MAX_PATCH = 4096
GW, LW, RW, TW = (ISA.words(o) for o in ("GEMM", "LAYERNORM", "ADD", "LUT"))


@dataclasses.dataclass
class TopResult:
    status: int
    hw_id: int
    reports: List[Dict[str, Any]]


def _descriptor(op: str, **fields) -> np.ndarray:
    d = np.zeros(DESC_WORDS, np.int64)
    d[0] = ISA.opcode(op)
    for k, v in fields.items():
        d[ISA.words(op)[k]] = int(v)
    return (d & 0xFFFFFFFF).astype(np.uint32).view(np.int32)


def op_descriptor(op: str, **fields) -> np.ndarray:
    """Any descriptor of :data:`ISA` (``op_descriptor("GEMM", M=..., ...)``)."""
    return _descriptor(op, **fields)


def gemm_max_k(cfg) -> int:
    """The common GEMM's longest row on ``cfg``'s array (gemm.h ``MAX_K``: whole words in half the activation
    buffer)."""
    lanes = cfg.gemm_array[1]
    return (cfg.qkvs_buffer_kb * 1024 // 2 // lanes) * lanes


def attn_descriptor(**fields) -> np.ndarray:
    """An ``ATTN`` descriptor (fields as :data:`ISA` names them)."""
    return _descriptor("ATTN", **fields)


def prune_descriptor(**fields) -> np.ndarray:
    return _descriptor("PRUNE", **fields)


class _Win:
    def __init__(self, w: np.ndarray, mem: int):
        self.w, self.mem = w, mem

    def fits(self, off: int, n: int) -> bool:
        return off + n <= self.mem

    def get(self, off: int, count: int, dtype) -> np.ndarray:
        size = np.dtype(dtype).itemsize
        return self.w[off:off + count * size].view(dtype).copy()

    def put(self, off: int, a: np.ndarray) -> None:
        b = np.ascontiguousarray(a).view(np.uint8).ravel()
        self.w[off:off + b.size] = b


def _ranges(win: _Win, r: List, n_out: int) -> int:
    for off, ln in r:
        if not win.fits(off, ln):
            return ERR_RANGE
    for i in range(len(r) - n_out, len(r)):
        for j in range(len(r)):
            a, al = r[i]
            b, bl = r[j]
            if j != i and al > 0 and bl > 0 and a < b + bl and b < a + al:
                return ERR_OVERLAP
    return OK


def _u(v: int) -> int:
    return int(v) & 0xFFFFFFFF


def _run_attn(cfg, win: _Win, dw: np.ndarray, want_cycles: bool):
    from vitaccel.sim.revit.groupgen import generate_groups
    from vitaccel.sim.revit.layer import engine_layer
    from vitaccel.sim.revit.sched import FIXED, WORKLOAD

    f = {k: int(dw[i]) for k, i in V.items()}
    N, D, H, G = f["N"], f["D"], f["H"], f["G"]
    if (N < 2 or N > cfg.max_tokens or D < 1 or D > cfg.max_embed_dim or H < 1 or H > cfg.max_heads or D % H
            or D // H > cfg.max_head_dim or G < 1 or G > 64 or f["block"] < 1 or not 1 <= f["sync"] <= cfg.rmmu_cols
            or f["combine"] not in (0, 1, 2) or f["delta"] not in (0, 1) or f["ooo"] not in (0, 1)):
        return ATT_DIMS, None
    o = {k: _u(f[k]) for k in ("x", "w", "b", "m", "s", "hw", "hb", "y", "groups", "cls_p", "group_p")}
    if (o["b"] | o["m"] | o["s"] | o["hb"] | o["groups"]) & 3:
        return ERR_ALIGN, None
    rc = _ranges(win, [(o["x"], N * D), (o["w"], 3 * D * D), (o["b"], 12 * D), (o["m"], 12 * D), (o["s"], 12 * D),
                       (o["hw"], G * D), (o["hb"], 4 * G), (o["y"], N * D), (o["groups"], 4 * (N - 1)),
                       (o["cls_p"], H * N), (o["group_p"], H * G)], 4)
    if rc:
        return rc, None
    m, s = win.get(o["m"], 3 * D, np.int32), win.get(o["s"], 3 * D, np.int32)
    if f["hm"] < 0 or f["hs"] < 0 or f["hs"] > 63 or f["m_exp"] < 0 or f["s_exp"] < 0 \
            or f["s_exp"] > 63 or f["out_m"] < 0 or f["out_s"] < 0 or f["out_s"] > 63 or (m < 0).any() \
            or (s < 0).any() or (s > 63).any():
        return ATT_QUANT, None
    x = win.get(o["x"], N * D, np.int8).reshape(N, D)
    hw = win.get(o["hw"], G * D, np.int8).reshape(G, D)
    hb = win.get(o["hb"], G, np.int32)
    # Group generation writes the group indexes before rSched checks the mode (as the C++ does).
    gr = generate_groups(x[1:], hw, hb, f["hm"], f["hs"], cfg)
    win.put(o["groups"], gr.groups.astype(np.int32))
    mode, F = f["mode"], f["F"]
    if mode not in (0, 1, 2) or (mode == FIXED and not 1 <= F <= cfg.rmmu_cols):
        return SCH_MODE, None
    if mode == WORKLOAD and int((gr.counts > 0).sum()) > cfg.rmmu_cols:
        return SCH_DIMS, None
    lp = LayerParams(heads=H, num_groups=G, qkv_weight=win.get(o["w"], 3 * D * D, np.int8).reshape(3 * D, D),
                     qkv_bias=win.get(o["b"], 3 * D, np.int32), qkv_mult=m, qkv_shift=s, hash_weight=hw, hash_bias=hb,
                     hash_mult=f["hm"], hash_shift=f["hs"], softmax=(f["m_exp"], f["s_exp"]),
                     out=(f["out_m"], f["out_s"]), block=f["block"],
                     combine={v: k for k, v in COMBINE_CODES.items()}[f["combine"]])
    a8, cyc = engine_layer(x, lp, cfg, mode=mode, delta=bool(f["delta"]), out_of_order=bool(f["ooo"]),
                           fixed_cols=F if mode == FIXED else 16, sync=f["sync"])
    win.put(o["y"], a8)
    win.put(o["cls_p"], cyc.cls_p)
    win.put(o["group_p"], cyc.group_p)
    if not want_cycles:
        return OK, None
    from vitaccel.sim.revit.bundle_cycles import attention_macs
    from vitaccel.sim.revit.dram import attn_data_cycles, attn_dram_bytes

    macs = attention_macs(gr.counts, N, D, H, lp.combine, bool(f["delta"]))
    rep = dict(kind="attn", total=cyc.total, groupgen=cyc.groupgen, in_order=cyc.timeline.in_order,
               out_of_order=cyc.timeline.out_of_order, tail=cyc.tail, breakdown=dict(cyc.breakdown), macs=macs,
               dram_bytes=attn_dram_bytes(N, D, H, G), data=attn_data_cycles(cfg, N, D, H, G), tokens=N,
               engines=cyc.engines)
    return OK, rep


def _run_prune(cfg, win: _Win, dw: np.ndarray, want_cycles: bool):
    from vitaccel.sim.revit.pruner import prune_layer

    f = {k: int(dw[i]) for k, i in P.items()}
    H, G, n = f["H"], f["G"], f["n"]
    if not (1 <= H <= cfg.max_heads and 1 <= G <= 64 and 1 <= n <= cfg.max_tokens):
        return PR_DIMS, None
    o = {k: _u(f[k]) for k in ("group_p", "cls_p", "groups", "keep", "keep_g", "scores")}
    if (o["groups"] | o["scores"]) & 3:
        return ERR_ALIGN, None
    rc = _ranges(win, [(o["group_p"], H * G), (o["cls_p"], H * (n + 1)), (o["groups"], 4 * n), (o["keep"], n),
                       (o["keep_g"], G), (o["scores"], 4 * n)], 3)
    if rc:
        return rc, None
    if not (0 <= f["q_groups"] <= 1 << 16 and 0 <= f["q_patches"] <= 1 << 16):
        return PR_RATIO, None
    groups = win.get(o["groups"], n, np.int32)
    if (groups < 0).any() or (groups >= G).any():
        return PR_DIMS, None
    cls = win.get(o["cls_p"], H * (n + 1), np.uint8).reshape(H, n + 1)[:, 1:]
    r = prune_layer(win.get(o["group_p"], H * G, np.uint8).reshape(H, G), cls, groups, G, f["q_groups"],
                    f["q_patches"], cfg)
    win.put(o["keep"], r.keep.astype(np.uint8))
    win.put(o["keep_g"], r.keep_groups.astype(np.uint8))
    win.put(o["scores"], r.scores)
    if not want_cycles:
        return OK, None
    from vitaccel.sim.revit.dram import prune_dram

    nbytes, data = prune_dram(cfg, H, G, n)
    return OK, dict(kind="prune", total=sum(r.cycles.values()), dram_bytes=nbytes, data=data,
                    engines=dict(r.cycles))


def _run_compact(cfg, win: _Win, dw: np.ndarray, want_cycles: bool, desc_off: int, i: int, num_instr: int):
    from vitaccel.sim.revit.compact import MAX_PKG_MULT, compact_cycles, compact_tokens

    f = {k: int(dw[j]) for k, j in CW.items()}
    N, D, npatch = f["N"], f["D"], f["npatch"]
    if not (2 <= N <= cfg.max_tokens and 1 <= D <= cfg.max_embed_dim and 0 <= npatch <= MAX_PATCH):
        return ISA.code("CMP_ERR_DIMS"), None
    o = {k: _u(f[k]) for k in ("x", "keep", "scores", "y", "count", "patch")}
    if (o["x"] | o["y"]) & 1 or (o["scores"] | o["count"] | o["patch"]) & 3:
        return ERR_ALIGN, None
    rc = _ranges(win, [(o["x"], 2 * N * D), (o["keep"], N - 1), (o["scores"], 4 * (N - 1)), (o["patch"], 12 * npatch),
                       (o["y"], 2 * (N + 1) * D), (o["count"], 4)], 2)
    if rc:
        return rc, None
    if not (0 <= f["pm"] < MAX_PKG_MULT and 0 <= f["ps"] <= 63):
        return ISA.code("CMP_ERR_QUANT"), None
    keep = win.get(o["keep"], N - 1, np.uint8) != 0
    n_out = int(keep.sum()) + 2
    # Every patch is checked before anything is written (a refused COMPACT leaves the window as it was).
    tri = win.get(o["patch"], 3 * npatch, np.int32).astype(np.int64).reshape(npatch, 3)
    lo, hi = desc_off + 4 * DESC_WORDS * (i + 1), desc_off + 4 * DESC_WORDS * num_instr
    for addr, a, c in tri:
        addr = int(addr) & 0xFFFFFFFF
        v = int(a) * n_out + int(c)
        if addr & 3 or not lo <= addr < hi or (addr - desc_off) // 4 % DESC_WORDS < 2 or not -(1 << 31) <= v < (1 << 31):
            return ISA.code("CMP_ERR_PATCH"), None
    x = win.get(o["x"], N * D, np.int16).reshape(N, D)
    y = compact_tokens(x, keep, win.get(o["scores"], N - 1, np.int32), f["pm"], f["ps"])
    win.put(o["y"], y)
    win.put(o["count"], np.array([n_out], np.int32))
    for addr, a, c in tri:
        win.put(int(addr) & 0xFFFFFFFF, np.array([int(a) * n_out + int(c)], np.int64).astype(np.int32))
    if not want_cycles:
        return OK, None
    from vitaccel.sim.revit.dram import compact_dram

    cyc = compact_cycles(cfg, N, D, npatch)
    nbytes, data = compact_dram(cfg, N, D, n_out, npatch)
    return OK, dict(kind="compact", total=sum(cyc.values()), tokens=n_out, dram_bytes=nbytes, data=data,
                    engines=dict(cyc))


def _common_report(r) -> Dict[str, Any]:
    """A common kernel's cycle report as the top's: ``total`` is what revit_top's counters count (the compute
    part); ``data`` the exposed transfers of the common DRAM model, for the host's latency prediction."""
    return dict(kind=r.kernel, total=r.compute, data=r.data, macs=r.macs, dram_bytes=r.dram_bytes,
                engines=dict(r.engines))


def kernel_report(rep: Dict[str, Any], name: str, layer: Optional[int] = None):
    """One descriptor's report (a ``run_top`` report dict) as a :class:`~vitaccel.sim.report.KernelReport`
    named ``name``: compute = the engines' cycles (what revit_top's counters count), data = the exposed
    transfers (the common kernels' DRAM model; ReViT's own steps, :mod:`vitaccel.sim.revit.dram`)."""
    from vitaccel.sim.report import KernelReport

    kind = {"attn": "attention"}.get(rep["kind"], rep["kind"])
    compute = int(rep["total"])
    macs = int(rep.get("macs", 0))
    return KernelReport(kind, name, layer, compute, 0, int(rep.get("data", 0)), macs, macs, int(rep.get("dram_bytes", 0)),
                        {k: int(v) for k, v in rep["engines"].items()})


def _ints(win: _Win, off: int, n: int, bits: int) -> np.ndarray:
    return win.get(off, n, np.int16 if bits == 16 else np.int8)


def _run_gemm(cfg, win: _Win, dw: np.ndarray, want_cycles: bool):
    from vitaccel.sim.common.gemm import gemm, gemm_cycles

    f = {k: int(dw[i]) for k, i in GW.items()}
    M, K, O = f["M"], f["K"], f["O"]
    if M < 1 or K < 1 or O < 1:
        return ISA.code("GEMM_ERR_DIMS"), None
    o = {k: _u(f[k]) for k in ("x", "w", "bias", "mult", "shift", "y")}
    if (o["bias"] | o["mult"] | o["shift"]) & 3:
        return ERR_ALIGN, None
    rc = _ranges(win, [(o["x"], M * K), (o["w"], O * K), (o["bias"], 4 * O), (o["mult"], 4 * O), (o["shift"], 4 * O),
                       (o["y"], M * O)], 1)
    if rc:
        return rc, None
    if K > gemm_max_k(cfg):
        return ISA.code("GEMM_ERR_K_TOO_LONG"), None
    mult, shift = win.get(o["mult"], O, np.int32), win.get(o["shift"], O, np.int32)
    for ch in range(O):                       # the first bad channel decides, shift before multiplier
        if not 0 <= shift[ch] <= 63:
            return ISA.code("GEMM_ERR_SHIFT"), None
        if mult[ch] < 0:
            return ISA.code("GEMM_ERR_MULT"), None
    y = gemm(win.get(o["x"], M * K, np.int8).reshape(M, K), win.get(o["w"], O * K, np.int8).reshape(O, K),
             win.get(o["bias"], O, np.int32), mult, shift)
    win.put(o["y"], y)
    return OK, (_common_report(gemm_cycles(cfg, M, K, O)) if want_cycles else None)


def _run_layernorm(cfg, win: _Win, dw: np.ndarray, want_cycles: bool):
    from vitaccel.sim.common.layernorm import MAX_D, layernorm_cycles, layernorm_int

    f = {k: int(dw[i]) for k, i in LW.items()}
    rows, D = f["rows"], f["D"]
    if rows < 1 or D < 1 or D > MAX_D:
        return ISA.code("LN_ERR_DIMS"), None
    o = {k: _u(f[k]) for k in ("x", "g", "b", "y")}
    if (o["x"] & 1) or ((o["g"] | o["b"]) & 3):
        return ERR_ALIGN, None
    rc = _ranges(win, [(o["x"], 2 * rows * D), (o["g"], 4 * D), (o["b"], 4 * D), (o["y"], rows * D)], 1)
    if rc:
        return rc, None
    if not 16 <= f["shift"] <= 62 or f["eps"] < 0:
        return ISA.code("LN_ERR_PARAM"), None
    y = layernorm_int(win.get(o["x"], rows * D, np.int16).reshape(rows, D), win.get(o["g"], D, np.int32),
                      win.get(o["b"], D, np.int32), f["shift"], f["eps"])
    win.put(o["y"], y.astype(np.int8))
    return OK, (_common_report(layernorm_cycles(cfg, rows, D)) if want_cycles else None)


def _run_add(cfg, win: _Win, dw: np.ndarray, want_cycles: bool):
    from vitaccel.sim.common.eltwise import add_cycles, add_requant

    f = {k: int(dw[i]) for k, i in RW.items()}
    n = f["n"]
    if n < 1:
        return ISA.code("ADD_ERR_DIMS"), None
    ab, bb, yb, shift = f["a_bits"], f["b_bits"], f["y_bits"], f["shift"]
    if ab not in (8, 16) or bb not in (8, 16) or yb not in (8, 16) or f["ma"] < 0 or f["mb"] < 0 or not 0 <= shift <= 62:
        return ISA.code("ADD_ERR_PARAM"), None
    a, b, y = _u(f["a"]), _u(f["b"]), _u(f["y"])
    if (ab == 16 and a & 1) or (bb == 16 and b & 1) or (yb == 16 and y & 1):
        return ERR_ALIGN, None
    rc = _ranges(win, [(a, n * ab // 8), (b, n * bb // 8), (y, n * yb // 8)], 1)
    if rc:
        return rc, None
    out = add_requant(_ints(win, a, n, ab), f["ma"], _ints(win, b, n, bb), f["mb"], shift, yb)
    win.put(y, out)
    return OK, (_common_report(add_cycles(cfg, n, ab // 8, bb // 8, yb)) if want_cycles else None)


def _run_lut(cfg, win: _Win, dw: np.ndarray, want_cycles: bool):
    from vitaccel.sim.common.eltwise import lut_cycles, lut_int8

    f = {k: int(dw[i]) for k, i in TW.items()}
    n = f["n"]
    if n < 1:
        return ISA.code("LUT_ERR_DIMS"), None
    x, t, y = _u(f["x"]), _u(f["table"]), _u(f["y"])
    rc = _ranges(win, [(x, n), (t, 256), (y, n)], 1)
    if rc:
        return rc, None
    win.put(y, lut_int8(win.get(x, n, np.int8), win.get(t, 256, np.int8)))
    return OK, (_common_report(lut_cycles(cfg, n)) if want_cycles else None)


_COMMON_BY_CODE = {ISA.opcode(k): f for k, f in
                   (("GEMM", _run_gemm), ("LAYERNORM", _run_layernorm), ("ADD", _run_add), ("LUT", _run_lut))}


def run_top(window: np.ndarray, desc_off: int, num_instr: int, config: ConfigLike = "revit-paper", *,
            mem_bytes: Optional[int] = None, cycles: bool = True, **_ignored) -> TopResult:
    """Run ``num_instr`` descriptors at byte ``desc_off`` of ``window`` (uint8, changed in place) as
    ``revit_top`` does; ``reports`` holds each engine descriptor's cycles (``cycles=True``), with its
    descriptor's ``index``."""
    cfg = load_config(config)
    if cfg.accelerator != "revit":
        raise ValueError(f"config {cfg.name!r} is for accelerator {cfg.accelerator!r}, not 'revit'")
    if not isinstance(window, np.ndarray) or window.dtype != np.uint8 or window.ndim != 1 or not window.flags.writeable:
        raise TypeError("window must be a writable 1-D uint8 numpy array")
    mem = window.size if mem_bytes is None else int(mem_bytes)
    if not 0 <= mem <= window.size:
        raise ValueError(f"mem_bytes={mem} must be in [0, {window.size}]")
    res = TopResult(0, cfg.hash32, [])
    desc_off, num_instr = int(desc_off), int(num_instr)
    if num_instr >= MAX_INSTR:
        res.status = ERR_COUNT
        return res
    if desc_off & 3:
        res.status = ERR_ALIGN
        return res
    if desc_off + num_instr * DESC_WORDS * 4 > mem:
        res.status = ERR_RANGE
        return res
    win = _Win(window, mem)
    for i in range(num_instr):
        dw = window[desc_off + 4 * DESC_WORDS * i:desc_off + 4 * DESC_WORDS * (i + 1)].view(np.int32).copy()
        if dw[1] != 0:
            st, rep = ERR_OP, None
        elif dw[0] == ISA.opcode("NOP"):
            st, rep = OK, None
        elif dw[0] == ISA.opcode("ATTN"):
            st, rep = _run_attn(cfg, win, dw, cycles)
        elif dw[0] == ISA.opcode("PRUNE"):
            st, rep = _run_prune(cfg, win, dw, cycles)
        elif dw[0] == ISA.opcode("COMPACT"):
            st, rep = _run_compact(cfg, win, dw, cycles, desc_off, i, num_instr)
        elif int(dw[0]) in _COMMON_BY_CODE:
            st, rep = _COMMON_BY_CODE[int(dw[0])](cfg, win, dw, cycles)
        else:
            st, rep = ERR_OP, None
        if st:
            res.status = (i << 16) | st
            return res
        if rep is not None:
            rep["index"] = i
            res.reports.append(rep)
    return res
