"""The NumPy model of ``revit_top`` (hls/revit/revit_top.cpp): the same descriptor checks, in the same order,
with the same status codes, and the same bits written into the DRAM window; each engine descriptor's
cycles from the engines' cycle models. ISA: :mod:`vitaccel.sim.revit.isa` (``NOP``, ``ATTN``, ``PRUNE``).

The host compiler from a ReViT bundle to a program is issue #13: :func:`compile_device_program` raises
:class:`NotImplementedError` until then, so a ReViT config given to :class:`vitaccel.host.Accelerator` fails
at once and clearly.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Dict, List, Optional

import numpy as np

from vitaccel.hwconfig import ConfigLike, load_config
from vitaccel.sim.revit.attention import LayerParams
from vitaccel.sim.revit.isa import ISA

__all__ = ["compile_device_program", "run_top", "TopResult", "attn_descriptor", "prune_descriptor", "NOT_BUILT"]

NOT_BUILT = ("the ReViT accelerator's {what} is not built yet ({issue}); the functional reference is "
             "vitaccel.sim.revit.model.run_revit and revit_top runs hand-made programs (vitaccel.sim.revit.top)")

DESC_WORDS, MAX_INSTR = ISA.desc_words, ISA.max_instr
OK, ERR_OP, ERR_ALIGN, ERR_RANGE, ERR_COUNT, ERR_OVERLAP = 0, *(ISA.code(n) for n in (
    "ERR_OP", "ERR_ALIGN", "ERR_RANGE", "ERR_COUNT", "ERR_OVERLAP"))
ATT_DIMS, ATT_QUANT = ISA.code("ATT_ERR_DIMS"), ISA.code("ATT_ERR_QUANT")
SCH_DIMS, SCH_MODE = ISA.code("SCH_ERR_DIMS"), ISA.code("SCH_ERR_MODE")
PR_DIMS, PR_RATIO = ISA.code("PR_ERR_DIMS"), ISA.code("PR_ERR_RATIO")
V, P = ISA.words("ATTN"), ISA.words("PRUNE")


def compile_device_program(bundle, config, batch: int = 1):
    raise NotImplementedError(NOT_BUILT.format(what="host compiler", issue="issue #13"))


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
            or f["joint"] not in (0, 1) or f["delta"] not in (0, 1) or f["ooo"] not in (0, 1)):
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
                     out=(f["out_m"], f["out_s"]), block=f["block"], combine="joint" if f["joint"] else "intra")
    a8, cyc = engine_layer(x, lp, cfg, mode=mode, delta=bool(f["delta"]), out_of_order=bool(f["ooo"]),
                           fixed_cols=F if mode == FIXED else 16, sync=f["sync"])
    win.put(o["y"], a8)
    win.put(o["cls_p"], cyc.cls_p)
    win.put(o["group_p"], cyc.group_p)
    rep = dict(kind="attn", total=cyc.total, groupgen=cyc.groupgen, in_order=cyc.timeline.in_order,
               out_of_order=cyc.timeline.out_of_order, tail=cyc.tail, breakdown=dict(cyc.breakdown)) if want_cycles else None
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
    return OK, (dict(kind="prune", total=sum(r.cycles.values()), **r.cycles) if want_cycles else None)


def run_top(window: np.ndarray, desc_off: int, num_instr: int, config: ConfigLike = "revit-paper", *,
            mem_bytes: Optional[int] = None, cycles: bool = True, **_ignored) -> TopResult:
    """Run ``num_instr`` descriptors at byte ``desc_off`` of ``window`` (uint8, changed in place) as
    ``revit_top`` does; ``reports`` holds each engine descriptor's cycles (``cycles=True``)."""
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
        else:
            st, rep = ERR_OP, None
        if st:
            res.status = (i << 16) | st
            return res
        if rep is not None:
            res.reports.append(rep)
    return res
