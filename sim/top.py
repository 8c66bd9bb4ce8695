"""The simulator's model of ``vitcod_top`` (hls/kernels/vitcod_top.cpp): a descriptor program run on a DRAM
window, with the C++'s status codes and, per descriptor, the cycle models' report.

This is what the host runtime's simulator backend starts (``vitaccel.host.emulated``), so a board and the
simulator run the same compiled program. ``tests/test_sim_top.py`` compares it with the C-simulation of the
C++ top: the whole window after a run, the status and the ID register.

Validation follows the C++ in order: the dispatcher's own checks (count, alignment, ranges, strides), then
each engine's (dimensions, quantisation constants; for attention, n_global and line split for all heads,
then per head order, column/head pointers and rowidx). What a failing descriptor leaves in the window is
mirrored where the C++ defines it: a GEMM that fails on a weight tile's constants has written the output
channels of the tiles before it; an attention layer that fails on head h has written heads 0..h-1.

One difference: the C++ computes scores at the CSC's entries and normalises over the mask bits, and
does not check that the two agree (the host compiler and the bundle validator guarantee it). This model
needs them to agree to compute anything, and raises :class:`TopModelError` when they do not, rather
than guess what the hardware's uninitialised score entries would hold.
"""
from __future__ import annotations

import dataclasses
import hashlib
from collections import OrderedDict
from typing import List, Optional, Sequence

import numpy as np

from vitaccel.hwconfig import ConfigLike, HardwareConfig, load_config
from vitaccel.sim import numerics as nx
from vitaccel.sim.descriptors import AE_WORDS, ATT_WORDS, DESC_WORDS, GEMM_WORDS, OP_AE_MIX, OP_ATTENTION, OP_GEMM, OP_NOP
from vitaccel.sim.kernels.attention import SparsePlan, attention_cycles, valid_split
from vitaccel.sim.kernels.autoencoder import ae_mix_cycles, mix_heads
from vitaccel.sim.kernels.gemm import gemm, gemm_cycles, gemm_plan
from vitaccel.sim.report import KernelReport

__all__ = ["TopResult", "TopModelError", "run_top", "gemm_max_k"]

ERR_OP, ERR_ALIGN, ERR_RANGE, ERR_STRIDE, ERR_COUNT = 0x001, 0x002, 0x003, 0x004, 0x005
G_DIMS, G_K, G_MULT, G_SHIFT = 0x101, 0x102, 0x103, 0x104
E_DIMS, E_QUANT = 0x201, 0x202
A_DIMS, A_QUANT, A_NGLOBAL, A_ORDER, A_PTR, A_ROWIDX, A_SPLIT = 0x301, 0x302, 0x303, 0x304, 0x305, 0x306, 0x307


class TopModelError(ValueError):
    """A program this model cannot run although the C++ would (CSC and mask bits disagree)."""


@dataclasses.dataclass
class TopResult:
    status: int                       # ap_return: 0, or (index << 16) | code
    hw_id: int                        # the config's CONFIG_HASH32
    reports: List[KernelReport]       # one per descriptor that ran (empty without ``cycles``)
    executed: int                     # descriptors run to completion


def gemm_max_k(cfg: HardwareConfig) -> int:
    """The longest GEMM row: half the Q/K/S/V buffer (gemm.h ``MAX_K``)."""
    return cfg.qkvs_buffer_kb * 1024 // 2


class _Fail(Exception):
    def __init__(self, code: int):
        self.code = code



def _in_window(off: int, length: int, mem: int) -> bool:
    return off + length <= mem


def _span3(heads: int, n: int, d: int, hs: int, ns: int) -> int:
    return (heads - 1) * hs + (n - 1) * ns + d


def _view3(window: np.ndarray, off: int, heads: int, n: int, d: int, hs: int, ns: int) -> np.ndarray:
    base = window[off:].view(np.int8)
    return np.lib.stride_tricks.as_strided(base, (heads, n, d), (hs, ns, 1), writeable=True)


def _i32_array(window: np.ndarray, off: int, count: int) -> np.ndarray:
    return window[off:off + 4 * count].view("<i4")


def _bad_quant(m: int, s: int) -> bool:
    return m < 0 or s < 0 or s > 63


# -- GEMM --------------------------------------------------------------------------------------------------

def _run_gemm(cfg, dw, window, mem, cycles, name, layer) -> Optional[KernelReport]:
    m, k, o = (int(dw[GEMM_WORDS[x]]) for x in ("M", "K", "O"))
    if m < 1 or k < 1 or o < 1:
        raise _Fail(G_DIMS)
    x, w, b, mu, sh, y = (int(np.uint32(dw[GEMM_WORDS[f]])) for f in ("x", "w", "bias", "mult", "shift", "y"))
    if (b | mu | sh) & 3:
        raise _Fail(ERR_ALIGN)
    if not (_in_window(x, m * k, mem) and _in_window(w, o * k, mem) and _in_window(b, 4 * o, mem)
            and _in_window(mu, 4 * o, mem) and _in_window(sh, 4 * o, mem) and _in_window(y, m * o, mem)):
        raise _Fail(ERR_RANGE)
    if k > gemm_max_k(cfg):
        raise _Fail(G_K)
    bias, mult, shift = (_i32_array(window, a, o).astype(np.int64) for a in (b, mu, sh))
    bad = (mult < 0) | (shift < 0) | (shift > 63)
    o_end, fail = o, None
    if bad.any():
        to = gemm_plan(cfg, m, k, o)["To"]
        t0 = (int(np.argmax(bad)) // to) * to           # the first weight tile with a bad constant
        tile = slice(t0, min(t0 + to, o))
        last = t0 + int(np.flatnonzero(bad[tile])[-1])  # the C++ keeps the last error of the tile
        fail = G_SHIFT if (shift[last] < 0 or shift[last] > 63) else G_MULT
        o_end = t0
    xs = window[x:x + m * k].view(np.int8).reshape(m, k)
    ws = window[w:w + o * k].view(np.int8).reshape(o, k)
    if o_end > 0:
        out = gemm(xs, ws[:o_end], bias[:o_end].astype(np.int32), mult[:o_end], shift[:o_end])
        window[y:y + m * o].view(np.int8).reshape(m, o)[:, :o_end] = out
    if fail is not None:
        raise _Fail(fail)
    return gemm_cycles(cfg, m, k, o, name=name, layer=layer) if cycles else None


# -- AE mix ------------------------------------------------------------------------------------------------

def _run_ae(cfg, dw, window, mem, cycles, name, layer) -> Optional[KernelReport]:
    hin, c, n, d = (int(dw[AE_WORDS[f]]) for f in ("Hin", "C", "N", "d"))
    if not (1 <= hin <= cfg.max_heads and 1 <= c <= cfg.max_heads and 1 <= n <= cfg.max_tokens
            and 1 <= d <= cfg.max_head_dim):
        raise _Fail(E_DIMS)
    x_hs, x_ns, y_hs, y_ns = (int(dw[AE_WORDS[f]]) for f in ("x_hs", "x_ns", "y_hs", "y_ns"))
    if min(x_hs, x_ns, y_hs, y_ns) < 0:
        raise _Fail(ERR_STRIDE)
    x, w, b, y = (int(np.uint32(dw[AE_WORDS[f]])) for f in ("x", "w", "b", "y"))
    if b & 3:
        raise _Fail(ERR_ALIGN)
    if not (_in_window(x, _span3(hin, n, d, x_hs, x_ns), mem) and _in_window(w, c * hin, mem)
            and _in_window(b, 4 * c, mem) and _in_window(y, _span3(c, n, d, y_hs, y_ns), mem)):
        raise _Fail(ERR_RANGE)
    mult, shift = int(dw[AE_WORDS["mult"]]), int(dw[AE_WORDS["shift"]])
    if _bad_quant(mult, shift):
        raise _Fail(E_QUANT)
    xs = np.array(_view3(window, x, hin, n, d, x_hs, x_ns))
    ws = window[w:w + c * hin].view(np.int8).reshape(c, hin)
    out = mix_heads(xs, ws, _i32_array(window, b, c).copy(), mult, shift)
    _view3(window, y, c, n, d, y_hs, y_ns)[...] = out
    return ae_mix_cycles(cfg, hin, c, n, d, name=name, layer=layer) if cycles else None


# -- attention ---------------------------------------------------------------------------------------------

_PLANS: "OrderedDict[bytes, SparsePlan]" = OrderedDict()
_PLAN_CACHE_SIZE = 256


def _plan(maskbits: np.ndarray, order: np.ndarray, n_global: np.ndarray, colptr: np.ndarray,
          segments: List[np.ndarray], n: int) -> SparsePlan:
    """The SparsePlan the window describes (cached by content: a model's masks repeat every image)."""
    hsh = hashlib.blake2b(digest_size=20)
    for a in (maskbits, order, n_global, colptr, *segments):
        hsh.update(np.ascontiguousarray(a).tobytes())
        hsh.update(b"|")
    key = hsh.digest()
    hit = _PLANS.get(key)
    if hit is not None:
        _PLANS.move_to_end(key)
        return hit
    h = order.shape[0]
    reordered = np.unpackbits(maskbits, axis=2, count=n, bitorder="little").astype(bool)   # (H, N, N)
    if any(np.unique(order[i]).size != n for i in range(h)):
        raise TopModelError("attention: order is not a permutation of 0..N-1 in every head; the simulator cannot "
                            "tell which key a column holds")
    mask = np.zeros_like(reordered)
    np.put_along_axis(mask, np.broadcast_to(order[:, None, :].astype(np.intp), mask.shape), reordered, axis=2)
    plan = SparsePlan.from_mask(mask, order.astype(np.int32), n_global.astype(np.int32))
    for i in range(h):
        mine = plan.rowidx[plan.headptr[i]:plan.headptr[i + 1]]
        if not (np.array_equal(plan.colptr[i], colptr[i]) and np.array_equal(mine, segments[i])):
            raise TopModelError(f"attention: head {i}'s CSC indexes do not match its mask bits "
                                f"(mask_to_csc(mask, order, n_global) is what the engines expect)")
    _PLANS[key] = plan
    if len(_PLANS) > _PLAN_CACHE_SIZE:
        _PLANS.popitem(last=False)
    return plan


def _run_attention(cfg, dw, window, mem, cycles, name, layer) -> Optional[KernelReport]:
    A = ATT_WORDS
    h, n, d, hc = (int(dw[A[f]]) for f in ("H", "N", "d", "Hc"))
    if not (1 <= h <= cfg.max_heads and 1 <= n <= cfg.max_tokens and 1 <= d <= cfg.max_head_dim and 0 <= hc <= h):
        raise _Fail(A_DIMS)
    st = {f: int(dw[A[f]]) for f in ("q_hs", "q_ns", "k_hs", "k_ns", "v_hs", "v_ns", "o_hs", "o_ns")}
    if min(st.values()) < 0:
        raise _Fail(ERR_STRIDE)
    packed = dw[A["n_global"]:A["n_global"] + h].astype(np.int64) & 0xFFFFFFFF
    n_global = (packed & 0xFFFF).astype(np.int64)
    sparse_lines = (packed >> 16).astype(np.int64)
    u = {f: int(np.uint32(dw[A[f]])) for f in ("q", "k", "v", "o", "mask", "order", "colptr", "headptr", "rowidx",
                                               "dq_w", "dq_b", "dk_w", "dk_b")}
    if (u["order"] | u["colptr"] | u["headptr"] | u["rowidx"]) & 3:
        raise _Fail(ERR_ALIGN)
    if hc > 0 and (u["dq_b"] | u["dk_b"]) & 3:
        raise _Fail(ERR_ALIGN)
    hq = hc if hc > 0 else h
    mb = (n + 7) // 8
    if not (_in_window(u["q"], _span3(hq, n, d, st["q_hs"], st["q_ns"]), mem)
            and _in_window(u["k"], _span3(hq, n, d, st["k_hs"], st["k_ns"]), mem)
            and _in_window(u["v"], _span3(h, n, d, st["v_hs"], st["v_ns"]), mem)
            and _in_window(u["o"], _span3(h, n, d, st["o_hs"], st["o_ns"]), mem)
            and _in_window(u["mask"], h * n * mb, mem) and _in_window(u["order"], 4 * h * n, mem)
            and _in_window(u["colptr"], 4 * h * (n + 1), mem) and _in_window(u["headptr"], 4 * (h + 1), mem)
            and _in_window(u["rowidx"], 0, mem)):
        raise _Fail(ERR_RANGE)
    if hc > 0 and not (_in_window(u["dq_w"], h * hc, mem) and _in_window(u["dq_b"], 4 * h, mem)
                       and _in_window(u["dk_w"], h * hc, mem) and _in_window(u["dk_b"], 4 * h, mem)):
        raise _Fail(ERR_RANGE)
    q_ = {f: int(dw[A[f]]) for f in ("m_exp", "s_exp", "m_out", "s_out", "dq_m", "dq_s", "dk_m", "dk_s")}
    if _bad_quant(q_["m_exp"], q_["s_exp"]) or _bad_quant(q_["m_out"], q_["s_out"]):
        raise _Fail(A_QUANT)
    if hc > 0 and (_bad_quant(q_["dq_m"], q_["dq_s"]) or _bad_quant(q_["dk_m"], q_["dk_s"])):
        raise _Fail(A_QUANT)
    for i in range(h):
        if not 0 <= n_global[i] <= n:
            raise _Fail(A_NGLOBAL)
        if not valid_split(cfg, int(n_global[i]), int(sparse_lines[i]), n):
            raise _Fail(A_SPLIT)

    # Per head, in the engine's order: order and pointers (load_indexes), then rowidx (SDDMM).
    rowidx_len = (mem - u["rowidx"]) // 4
    order = _i32_array(window, u["order"], h * n).reshape(h, n).astype(np.int64)
    colptr = _i32_array(window, u["colptr"], h * (n + 1)).reshape(h, n + 1).astype(np.int64)
    headptr = _i32_array(window, u["headptr"], h + 1).astype(np.int64)
    segments: List[np.ndarray] = []
    fail_head, fail = h, None
    for i in range(h):
        code = None
        if ((order[i] < 0) | (order[i] >= n)).any():
            code = A_ORDER
        cp = colptr[i]
        if cp[0] != 0 or (np.diff(cp) < 0).any():
            code = A_PTR
        h0, h1 = int(headptr[i]), int(headptr[i + 1])
        if h0 < 0 or h1 - h0 != cp[n] or h1 > rowidx_len:
            code = A_PTR
        if code is None:
            seg = _i32_array(window, u["rowidx"] + 4 * h0, h1 - h0).astype(np.int64)
            g = int(n_global[i])
            # The sparser engine walks the CSC columns after the global ones: every query index in [0, N),
            # strictly increasing within a column.
            sub = seg[cp[g]:cp[n]]
            if sub.size:
                col = np.repeat(np.arange(g, n), np.diff(cp[g:]))
                same = col[1:] == col[:-1]
                if (sub < 0).any() or (sub >= n).any() or (np.diff(sub)[same] <= 0).any():
                    code = A_ROWIDX
            segments.append(seg)
        if code is not None:
            fail_head, fail = i, code
            break

    if fail_head > 0:
        hh = fail_head
        maskbits = window[u["mask"]:u["mask"] + hh * n * mb].reshape(hh, n, mb)
        plan = _plan(maskbits, order[:hh], n_global[:hh], colptr[:hh], segments[:hh], n)
        v = np.array(_view3(window, u["v"], h, n, d, st["v_hs"], st["v_ns"])[:hh])
        if hc > 0:
            qc = np.array(_view3(window, u["q"], hc, n, d, st["q_hs"], st["q_ns"]))
            kc = np.array(_view3(window, u["k"], hc, n, d, st["k_hs"], st["k_ns"]))
            dqw = window[u["dq_w"]:u["dq_w"] + h * hc].view(np.int8).reshape(h, hc)[:hh]
            dkw = window[u["dk_w"]:u["dk_w"] + h * hc].view(np.int8).reshape(h, hc)[:hh]
            q = mix_heads(qc, dqw, _i32_array(window, u["dq_b"], h)[:hh].copy(), q_["dq_m"], q_["dq_s"])
            k = mix_heads(kc, dkw, _i32_array(window, u["dk_b"], h)[:hh].copy(), q_["dk_m"], q_["dk_s"])
        else:
            q = np.array(_view3(window, u["q"], h, n, d, st["q_hs"], st["q_ns"])[:hh])
            k = np.array(_view3(window, u["k"], h, n, d, st["k_hs"], st["k_ns"])[:hh])
        s = nx.matmul_int(q, np.swapaxes(k, 1, 2))
        p = nx.softmax(s, plan.mask, q_["m_exp"], q_["s_exp"])
        out = nx.requantize(nx.matmul_int(p, v), q_["m_out"], q_["s_out"])
        _view3(window, u["o"], h, n, d, st["o_hs"], st["o_ns"])[:hh] = out
    if fail is not None:
        raise _Fail(fail)
    if not cycles:
        return None
    return attention_cycles(cfg, plan, d, compressed_heads=hc or None, name=name, layer=layer,
                            sparse_lines=[int(x) for x in sparse_lines])


_ENGINES = {OP_GEMM: ("gemm", _run_gemm), OP_AE_MIX: ("ae", _run_ae), OP_ATTENTION: ("attn", _run_attention)}


def _layer_of(name: str) -> Optional[int]:
    parts = name.split(".")
    if len(parts) > 1 and parts[0] == "layers" and parts[1].isdigit():
        return int(parts[1])
    return None


def run_top(window: np.ndarray, desc_off: int, num_instr: int, config: ConfigLike = "paper", *,
            mem_bytes: Optional[int] = None, cycles: bool = True, names: Optional[Sequence[str]] = None) -> TopResult:
    """Run ``num_instr`` descriptors at byte ``desc_off`` of ``window`` (writable uint8, changed in place) as
    ``vitcod_top`` does. ``names`` label the descriptors' reports (``"layers.3.fc1"`` sets the layer)."""
    cfg = load_config(config)
    if not isinstance(window, np.ndarray) or window.dtype != np.uint8 or window.ndim != 1:
        raise TypeError("window must be a 1-D uint8 numpy array")
    if not window.flags.writeable:
        raise ValueError("window must be writable (outputs are written into it)")
    mem = int(window.size if mem_bytes is None else min(int(mem_bytes), window.size))
    desc_off, num_instr = int(desc_off) & 0xFFFFFFFF, int(num_instr) & 0xFFFFFFFF
    reports: List[KernelReport] = []
    res = TopResult(0, cfg.hash32, reports, 0)
    if num_instr >= 65536:
        res.status = ERR_COUNT
        return res
    if desc_off & 3:
        res.status = ERR_ALIGN
        return res
    if not _in_window(desc_off, num_instr * DESC_WORDS * 4, mem):
        res.status = ERR_RANGE
        return res
    if names is not None and len(names) != num_instr:
        raise ValueError(f"{len(names)} names for {num_instr} descriptors")
    for i in range(num_instr):
        off = desc_off + i * DESC_WORDS * 4
        dw = window[off:off + DESC_WORDS * 4].view("<i4").copy()
        op = int(dw[0])
        try:
            if dw[1] != 0 or (op != OP_NOP and op not in _ENGINES):
                raise _Fail(ERR_OP)
            if op == OP_NOP:
                res.executed += 1
                continue
            kind, fn = _ENGINES[op]
            nm = names[i] if names is not None else f"desc[{i}].{kind}"
            rep = fn(cfg, dw, window, mem, cycles, nm, _layer_of(nm))
        except _Fail as f:
            res.status = (i << 16) | f.code
            return res
        if rep is not None:
            reports.append(rep)
        res.executed += 1
    return res
