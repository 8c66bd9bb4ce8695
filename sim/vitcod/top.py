"""The simulator's model of ``vitcod_top`` (hls/vitcod/vitcod_top.cpp): a descriptor program executed on a
DRAM window exactly as the C++ executes it, plus one cycle-model report per descriptor that ran.

(Over 600 lines because it mirrors vitcod_top.cpp check for check and store for store, the dispatcher and
its three engines, so that windows and status codes stay byte-identical; each engine is its own function.)

The host runtime's simulator backend (``vitaccel.host.emulated``) and ``Accelerator.predict`` start this, so
the board, the C-simulation (:func:`vitaccel.sim.vitcod.csim_kernels.run_descriptors`) and the simulator run the
same compiled program. ``tests/test_sim_top.py`` requires this model and the C-simulation to leave
byte-identical windows and to return the same status and ID register.

**Status.** The checks run in the C++'s order and return the C++'s codes (DESCRIPTOR.md):

* dispatcher: ``num_instr >= 65536`` (0x005), ``desc_off`` alignment (0x002), descriptor list range (0x003);
  then per descriptor, fetched from the window when its turn comes (an earlier descriptor may have
  rewritten it): reserved word (0x001), opcode (0x001);
* GEMM: M, K, O (0x101), constant alignment (0x002), ranges (0x003), output over an input (0x006), K limit
  (0x102), then per weight tile
  the multipliers and shifts (0x103 / 0x104: within a tile the *last* bad channel decides, as in
  ``load_consts``);
* qkv + AE (OP_QKV_AE): dimensions (0x203), constant alignment (0x002), ranges (0x003), an output over an
  input or over another output (0x006), K limit (0x102), encoder multiplier/shift (0x202), then the
  GEMM's per-tile constants (0x103 / 0x104) section by section as they run: a bad K channel leaves the
  compressed Q of the chunks before it written, a bad V channel every qc/kc and the V tiles before it;
* AE mix: dimensions (0x201), strides (0x004), alignment (0x002), ranges (0x003), output over an input
  (0x006), multiplier/shift (0x202);
* attention: dimensions (0x301), strides (0x004), alignment (0x002), ranges (0x003), output over an input
  (0x006: Q, K, V, the index tables, rowidx up to headptr[H] clipped to the window, the decoders),
  constants (0x302), then
  for heads in turn n_global (0x303) before the line split (0x307), then per head in turn: order
  (0x304), colptr / headptr (0x305, which wins over 0x304 in the same head because ``load_indexes``
  keeps its last error), rowidx of the sparser columns (0x306).

**Window contents.** Outputs are written exactly where and in the order the engines write them, so the
window after a run (successful or not) is byte-identical to the C++'s, including:

* partial outputs of a failing descriptor: a GEMM that fails on a weight tile's constants has written
  every output channel of the tiles before it; an attention layer failing on head h has written heads
  0..h-1; the other engines write nothing before their checks pass;
* int32 wrap-around of ``accumulator + bias`` (GEMM, AE mix, AE decoder: ``acc_t`` is 32 bits), where the
  functional models (``kernels.gemm.gemm``, ``kernels.autoencoder.mix_heads``) would refuse biases outside
  the contract (|bias| < 2^30); inside it this model computes exactly their bits;
* ``order`` rows that are not permutations (the engines accept any entries in [0, N));
* CSC entries the mask does not keep (the engines multiply them by p = 0) and CSC entries in global
  columns (the engines never read them);
* products and sums exactly as the engines form them: every shipped config keeps a GEMM row short enough
  (K <= 65536) that no int32 accumulator can overflow, so only ``acc + bias`` ever wraps;
* strided outputs whose elements alias each other (allowed; an output over its inputs is refused with
  0x006): the model follows the engines' store order (AE: token tile by tile; attention: head by head)
  and keeps the value the engines write last.

**One exception.** The engines compute scores for every row of the global columns and at the CSC's
entries, and normalise over the mask bits. A kept mask bit in a sparser column with no CSC entry makes
the softmax read a score buffer entry that this layer never wrote (whatever an earlier head or run left
on chip). The host compiler never emits that (the CSC is ``mask_to_csc`` of the mask); this model raises
:class:`TopModelError` instead of guessing, for a head that would complete (a head that fails a check
first returns its status normally).

NOP descriptors count as executed and have no report.

**Speed.** Index checking and mask decoding are cached per layer by the bytes they read (``plan_cache``,
default a small module-level LRU), and so are the cycle reports; the softmax runs on the kept entries
only (:func:`softmax_kept`, the NUMERICS.md steps of :func:`vitaccel.sim.numerics.softmax`).
"""
from __future__ import annotations

import dataclasses
import functools
from collections import OrderedDict
from typing import Dict, List, MutableMapping, Optional, Sequence, Tuple

import numpy as np

from vitaccel.hwconfig import ConfigLike, HardwareConfig, load_config
from vitaccel.sim import numerics as nx
from vitaccel.sim.common.eltwise import add_cycles, add_requant, lut_cycles
from vitaccel.sim.common.layernorm import MAX_D as LN_MAX_D, layernorm_cycles, layernorm_int
from vitaccel.sim.vitcod.descriptors import (ADD_WORDS, AE_WORDS, ATT_WORDS, DESC_WORDS, GEMM_WORDS, LN_WORDS, LUT_WORDS,
                                             OP_ADD, OP_AE_MIX, OP_ATTENTION, OP_GEMM, OP_LAYERNORM, OP_LUT, OP_NOP,
                                             OP_QKV_AE, QKV_AE_WORDS, W_FLAGS, W_OP)
from vitaccel.sim.vitcod.attention import SparsePlan, attention_cycles, valid_split
from vitaccel.sim.vitcod.autoencoder import ae_mix_cycles, ae_tile_tokens, qkv_ae_cycles, qkv_stage_rows
from vitaccel.sim.common.gemm import gemm_cycles, gemm_plan
from vitaccel.sim.report import KernelReport
from vitaccel.sim.vitcod.isa import ISA

__all__ = ["TopResult", "TopModelError", "run_top", "gemm_max_k", "softmax_kept"]

# Status codes: the ISA table (vitaccel.sim.vitcod.isa), the one the C++ header is generated from.
_C = ISA.code
ERR_OP, ERR_ALIGN, ERR_RANGE, ERR_STRIDE, ERR_COUNT, ERR_OVERLAP = (
    _C(n) for n in ("ERR_OP", "ERR_ALIGN", "ERR_RANGE", "ERR_STRIDE", "ERR_COUNT", "ERR_OVERLAP"))
G_DIMS, G_K, G_MULT, G_SHIFT = (_C(n) for n in ("GEMM_ERR_DIMS", "GEMM_ERR_K_TOO_LONG", "GEMM_ERR_MULT",
                                                "GEMM_ERR_SHIFT"))
E_DIMS, E_QUANT, E_QKV = _C("AE_ERR_DIMS"), _C("AE_ERR_QUANT"), _C("AE_ERR_QKV_DIMS")
L_DIMS, L_PARAM, R_DIMS, R_PARAM, T_DIMS = (_C(n) for n in ("LN_ERR_DIMS", "LN_ERR_PARAM", "ADD_ERR_DIMS",
                                                            "ADD_ERR_PARAM", "LUT_ERR_DIMS"))
A_DIMS, A_QUANT, A_NGLOBAL, A_ORDER, A_PTR, A_ROWIDX, A_SPLIT = (
    _C(f"ATT_ERR_{n}") for n in ("DIMS", "QUANT", "NGLOBAL", "ORDER", "PTR", "ROWIDX", "SPLIT"))

DESC_BYTES = 4 * DESC_WORDS
MAX_INSTR = ISA.max_instr
#: Layer plans kept by the default cache (a model has one per layer).
PLAN_CACHE_SIZE = 64


class TopModelError(ValueError):
    """A program the C++ runs but whose result this model cannot know (a kept mask bit in a sparser column
    without a CSC entry: the engines would read an unwritten score)."""


@dataclasses.dataclass
class TopResult:
    status: int                       # ap_return as an unsigned 32-bit value: 0, or (index << 16) | code
    hw_id: int                        # the config's CONFIG_HASH32 (written on every run)
    reports: List[KernelReport]       # one per GEMM / AE / attention descriptor that ran (none without cycles)
    executed: int                     # descriptors run to completion (NOPs included)


def gemm_max_k(cfg: HardwareConfig) -> int:
    """The longest GEMM row, gemm.h ``MAX_K``: whole MACS_PER_LINE words in half the Q/K/S/V buffer."""
    lanes = cfg.macs_per_line
    return (cfg.qkvs_buffer_kb * 1024 // 2 // lanes) * lanes


class _Fail(Exception):
    def __init__(self, code: int):
        super().__init__(code)
        self.code = code


# -- per-config constants and cycle-report caches --------------------------------------------------------

class _Machine:
    def __init__(self, cfg: HardwareConfig):
        self.cfg = cfg
        self.hash32 = cfg.hash32
        self.key = cfg.hash
        self.max_k = gemm_max_k(cfg)
        self.ae_tokens = ae_tile_tokens(cfg)
        self.gemm_plans: Dict[Tuple[int, int, int], Dict[str, int]] = {}
        self.reports: Dict[tuple, KernelReport] = {}

    def gemm_plan(self, m: int, k: int, o: int) -> Dict[str, int]:
        key = (m, k, o)
        p = self.gemm_plans.get(key)
        if p is None:
            if len(self.gemm_plans) > 4096:
                self.gemm_plans.clear()
            p = self.gemm_plans[key] = gemm_plan(self.cfg, m, k, o)
        return p

    def report(self, key: tuple, make) -> KernelReport:
        rep = self.reports.get(key)
        if rep is None:
            if len(self.reports) > 4096:
                self.reports.clear()
            rep = self.reports[key] = make()
        return rep


_MACHINES: Dict[HardwareConfig, _Machine] = {}


@functools.lru_cache(maxsize=32)
def _named_config(name: str) -> HardwareConfig:
    return load_config(name)


def _machine(config: ConfigLike) -> _Machine:
    if isinstance(config, str) and "/" not in config and not config.endswith(".json"):
        cfg = _named_config(config)   # a shipped name: parse its JSON once per process
    else:
        cfg = load_config(config)
    m = _MACHINES.get(cfg)
    if m is None:
        m = _MACHINES[cfg] = _Machine(cfg)
    return m


def _labelled(rep: KernelReport, name: str, layer: Optional[int]) -> KernelReport:
    """A private copy of a cached report with its own name and layer."""
    return dataclasses.replace(rep, name=name, layer=layer, engines=dict(rep.engines),
                               heads=[dict(h) for h in rep.heads], notes=list(rep.notes))


def _layer_of(name: str) -> Optional[int]:
    parts = name.split(".", 2)
    if len(parts) == 3 and parts[0] == "layers" and parts[1].isdigit():
        return int(parts[1])
    return None


# -- window access ---------------------------------------------------------------------------------------

def _ranges_overlap(a: int, alen: int, b: int, blen: int) -> bool:
    return alen > 0 and blen > 0 and a < b + blen and b < a + alen


def _span3(heads: int, n: int, d: int, hs: int, ns: int) -> int:
    """Bytes spanned by a (heads, n, d) tensor with byte strides hs, ns (vitcod_top.cpp ``span3``)."""
    return (heads - 1) * hs + (n - 1) * ns + d


def _distinct(shape: Tuple[int, ...], strides: Tuple[int, ...]) -> bool:
    """Whether a strided tensor's elements have distinct addresses (a sufficient test: each stride, in
    increasing order, passes the span of the smaller ones). False means "may alias"."""
    dims = sorted((s, e) for s, e in zip(strides, shape) if e > 1)
    span = 0
    for s, e in dims:
        if s <= span:
            return False
        span += s * (e - 1)
    return True


class _Window:
    """The DRAM window of one run: byte reads and the engines' ordered stores."""

    def __init__(self, window: np.ndarray, mem: int):
        self.u8 = window
        self.i8 = window.view(np.int8)
        self.mem = mem

    def fits(self, off: int, length: int) -> bool:
        return off + length <= self.mem          # vitcod_top.cpp in_window (offsets are unsigned)

    def i32(self, off: int, count: int) -> np.ndarray:
        """int32 little-endian array at ``off`` (a view)."""
        return self.u8[off:off + 4 * count].view("<i4")

    def i16(self, off: int, count: int) -> np.ndarray:
        """int16 little-endian array at ``off`` (a view)."""
        return self.u8[off:off + 2 * count].view("<i2")

    def ints(self, off: int, count: int, bits: int) -> np.ndarray:
        """A copy of ``count`` int8 or int16 (``bits``) elements at ``off``, as native int8 / int16."""
        return self.i8[off:off + count].copy() if bits == 8 else self.i16(off, count).astype(np.int16)

    def i8_2d(self, off: int, rows: int, cols: int) -> np.ndarray:
        return self.i8[off:off + rows * cols].reshape(rows, cols)

    def tensor(self, off: int, heads: int, n: int, d: int, hs: int, ns: int) -> np.ndarray:
        """A copy of the (heads, n, d) int8 tensor with element (h, t, f) at ``off + h hs + t ns + f``."""
        view = np.lib.stride_tricks.as_strided(self.i8[off:], (heads, n, d), (hs, ns, 1), writeable=False)
        return np.array(view)

    def store(self, off: int, hs: int, ns: int, vals: np.ndarray) -> None:
        """Write ``vals`` (A, B, d) to element addresses ``off + a hs + b ns + f`` in C order, the order the
        engines' store loops use; where addresses repeat, the last write wins."""
        a, b, d = vals.shape
        if _distinct((a, b, d), (hs, ns, 1)):
            view = np.lib.stride_tricks.as_strided(self.i8[off:], (a, b, d), (hs, ns, 1), writeable=True)
            view[...] = vals
            return
        ar = lambda count: np.arange(count, dtype=np.int64)  # noqa: E731
        addr = (off + ar(a)[:, None, None] * hs + ar(b)[None, :, None] * ns + ar(d)[None, None, :]).ravel()
        # The last write to an address is the first one in reversed order.
        uniq, first = np.unique(addr[::-1], return_index=True)
        self.i8[uniq] = vals.ravel()[::-1][first]


# -- arithmetic (NUMERICS.md) ------------------------------------------------------------------------------

def _bias_requant(acc: np.ndarray, bias: np.ndarray, mult, shift) -> np.ndarray:
    """requantize(acc + bias) with the sum wrapped to 32 bits as ``acc_t`` does (int32 array arithmetic wraps
    silently); identical to the functional models whenever the sum fits, which the contract guarantees."""
    acc = acc.astype(np.int32, copy=False)
    acc += bias.astype(np.int32, copy=False)
    return nx.requantize(acc, mult, shift)


def _gemm_bits(x: np.ndarray, w: np.ndarray, bias, mult, shift) -> np.ndarray:
    """:func:`vitaccel.sim.common.gemm.gemm` with the engine's 32-bit ``acc + bias``."""
    return _bias_requant(nx.matmul_int(x, w.T), bias, mult, shift)


def _mix_bits(x: np.ndarray, w: np.ndarray, bias: np.ndarray, mult: int, shift: int) -> np.ndarray:
    """:func:`vitaccel.sim.vitcod.autoencoder.mix_heads` with the engine's 32-bit ``acc + bias``:
    x int8 (H_in, N, d), w int8 (C, H_in), bias int32 (C,) -> int8 (C, N, d)."""
    hin, n, d = x.shape
    acc = nx.matmul_int(w, x.reshape(hin, n * d))
    return _bias_requant(acc, bias[:, None], mult, shift).reshape(w.shape[0], n, d)


def softmax_kept(scores: np.ndarray, starts: np.ndarray, row: np.ndarray, m_exp: int, s_exp: int) -> np.ndarray:
    """:func:`vitaccel.sim.numerics.softmax` on the kept entries only (same steps, same bits).

    ``scores`` (int64, kept entries row by row), ``starts`` the index of each non-empty row's first entry,
    ``row[j]`` which of those rows entry j belongs to. Returns uint8 probabilities, one per entry. A row
    with nothing kept has no entries (and gets p = 0 everywhere, as in ``softmax``)."""
    if scores.size == 0:
        return np.zeros(0, np.uint8)
    mx = np.maximum.reduceat(scores, starts)
    x = np.maximum(scores - mx[row], -(1 << 31))
    u = -np.right_shift(x * np.int64(m_exp), np.int64(s_exp))
    q = np.right_shift(u, nx.EXP_FRAC_BITS)
    r = np.bitwise_and(u, (1 << nx.EXP_FRAC_BITS) - 1)
    e = np.where(q > 15, 0, np.right_shift(nx.EXP2_LUT[r], np.minimum(q, 15)))
    total = np.add.reduceat(e, starts)    # >= 2^15: a row's maximum has e = EXP2_LUT[0]
    recip = (np.int64(1) << nx.RECIP_BITS) // total
    p = np.right_shift(e * recip[row] + (np.int64(1) << 31), 32)
    return np.minimum(p, 255).astype(np.uint8)


# -- GEMM ---------------------------------------------------------------------------------------------------

def _const_status(mult: np.ndarray, shift: np.ndarray) -> int:
    """load_consts' status for one weight tile: the last channel with a bad multiplier or shift decides."""
    bad = (mult < 0) | (shift < 0) | (shift > 63)
    if not bad.any():
        return 0
    last = int(np.flatnonzero(bad)[-1])
    return G_SHIFT if (shift[last] < 0 or shift[last] > 63) else G_MULT


def _gemm_part(mach: _Machine, x8: np.ndarray, w8: np.ndarray, bias, mult, shift) -> Tuple[np.ndarray, int]:
    """gemm_layer on one section: the outputs of the weight tiles before the first bad constant, and the
    status that tile returns (0 if none)."""
    o = w8.shape[0]
    to = mach.gemm_plan(x8.shape[0], x8.shape[1], o)["To"]
    o_end, code = o, 0
    bad = (mult < 0) | (shift < 0) | (shift > 63)
    if bad.any():
        o_end = (int(np.argmax(bad)) // to) * to            # the first weight tile with a bad constant
        code = _const_status(mult[o_end:o_end + to], shift[o_end:o_end + to])
    out = _gemm_bits(x8, w8[:o_end], bias[:o_end], mult[:o_end], shift[:o_end]) if o_end else None
    return out, code


def _run_gemm(mach: _Machine, win: _Window, sw: List[int], uw: List[int]) -> Optional[Tuple]:
    G = GEMM_WORDS
    m, k, o = sw[G["M"]], sw[G["K"]], sw[G["O"]]
    if m < 1 or k < 1 or o < 1:
        raise _Fail(G_DIMS)
    x, w, b, mu, sh, y = (uw[G[f]] for f in ("x", "w", "bias", "mult", "shift", "y"))
    if (b | mu | sh) & 3:
        raise _Fail(ERR_ALIGN)
    if not (win.fits(x, m * k) and win.fits(w, o * k) and win.fits(b, 4 * o) and win.fits(mu, 4 * o)
            and win.fits(sh, 4 * o) and win.fits(y, m * o)):
        raise _Fail(ERR_RANGE)
    ylen = m * o
    if any(_ranges_overlap(y, ylen, a, n) for a, n in ((x, m * k), (w, o * k), (b, 4 * o), (mu, 4 * o), (sh, 4 * o))):
        raise _Fail(ERR_OVERLAP)
    if k > mach.max_k:
        raise _Fail(G_K)
    out, code = _gemm_part(mach, win.i8_2d(x, m, k), win.i8_2d(w, o, k), win.i32(b, o), win.i32(mu, o),
                           win.i32(sh, o))
    if out is not None:
        win.i8_2d(y, m, o)[:, :out.shape[1]] = out
    if code:
        raise _Fail(code)
    return ("gemm", m, k, o)


# -- the qkv GEMM with the AE encoders on its output stage ---------------------------------------------------

def _run_qkv_ae(mach: _Machine, win: _Window, sw: List[int], uw: List[int]) -> Optional[Tuple]:
    F = QKV_AE_WORDS
    cfg = mach.cfg
    m, k, h, d, hc, n, tog = (sw[F[f]] for f in ("M", "K", "H", "d", "Hc", "N", "stage_qk"))
    if not (m >= 1 and k >= 1 and 1 <= h <= cfg.max_heads and 1 <= d <= cfg.max_head_dim and 1 <= n <= cfg.max_tokens
            and m % n == 0 and 1 <= hc <= h and tog in (0, 1) and qkv_stage_rows(cfg, (1 + tog) * h * d) >= 1):
        raise _Fail(E_QKV)
    x, w, b, mu, sh, y, qc, kc, eqw, eqb, ekw, ekb = (uw[F[f]] for f in (
        "x", "w", "bias", "mult", "shift", "y", "qc", "kc", "eq_w", "eq_b", "ek_w", "ek_b"))
    if (b | mu | sh | eqb | ekb) & 3:
        raise _Fail(ERR_ALIGN)
    dm = h * d
    clen, ylen, zlen = 12 * dm, m * 3 * dm, m * hc * d
    ins = ((x, m * k), (w, 3 * dm * k), (b, clen), (mu, clen), (sh, clen), (eqw, hc * h), (eqb, 4 * hc),
           (ekw, hc * h), (ekb, 4 * hc))
    outs = ((y, ylen), (qc, zlen), (kc, zlen))
    if not all(win.fits(a, ln) for a, ln in ins + outs):
        raise _Fail(ERR_RANGE)
    for i, (o, olen) in enumerate(outs):
        if any(_ranges_overlap(o, olen, a, ln) for a, ln in ins + outs[i + 1:]):
            raise _Fail(ERR_OVERLAP)
    if k > mach.max_k:
        raise _Fail(G_K)
    eqm, eqs, ekm, eks = (sw[F[f]] for f in ("eq_m", "eq_s", "ek_m", "ek_s"))
    if eqm < 0 or not 0 <= eqs <= 63 or ekm < 0 or not 0 <= eks <= 63:
        raise _Fail(E_QUANT)
    xs = win.i8_2d(x, m, k).copy()
    wts = win.i8_2d(w, 3 * dm, k)
    bias, mult, shift = (win.i32(a, 3 * dm).copy() for a in (b, mu, sh))
    enc = [(win.i8_2d(ew, hc, h).copy(), win.i32(eb, hc).copy(), em, es)
           for ew, eb, em, es in ((eqw, eqb, eqm, eqs), (ekw, ekb, ekm, eks))]
    width = (1 + tog) * dm
    sr = qkv_stage_rows(cfg, width)
    zs = win.i8[qc:qc + zlen], win.i8[kc:kc + zlen]
    for r0 in range(0, m, sr):
        mc = min(sr, m - r0)
        for which in range(2):
            if not tog or which == 0:
                sec = slice(which * dm, which * dm + width)
                staged, code = _gemm_part(mach, xs[r0:r0 + mc], wts[sec], bias[sec], mult[sec], shift[sec])
                if code:
                    raise _Fail(code)
            part = staged[:, which * dm:(which + 1) * dm] if tog else staged
            ew, eb, em, es = enc[which]
            # (mc, H, d) -> (H, mc * d): mix over heads, then scatter rows to (img, c, n, f).
            z = _mix_bits(np.ascontiguousarray(part).reshape(mc, h, d).transpose(1, 0, 2), ew, eb, em, es)
            rows = np.arange(r0, r0 + mc)
            img, tok = rows // n, rows % n
            addr = (img[None, :, None] * (hc * n * d) + np.arange(hc)[:, None, None] * (n * d)
                    + tok[None, :, None] * d + np.arange(d)[None, None, :])
            zs[which][addr.ravel()] = z.ravel()
    sec = slice(2 * dm, 3 * dm)
    v, code = _gemm_part(mach, xs, wts[sec], bias[sec], mult[sec], shift[sec])
    if v is not None:
        win.i8_2d(y, m, 3 * dm)[:, 2 * dm:2 * dm + v.shape[1]] = v
    if code:
        raise _Fail(code)
    return ("qkv_ae", m, k, h, d, hc, tog)


# -- AE mix -------------------------------------------------------------------------------------------------

def _run_ae(mach: _Machine, win: _Window, sw: List[int], uw: List[int]) -> Optional[Tuple]:
    E = AE_WORDS
    cfg = mach.cfg
    hin, c, n, d = sw[E["Hin"]], sw[E["C"]], sw[E["N"]], sw[E["d"]]
    if not (1 <= hin <= cfg.max_heads and 1 <= c <= cfg.max_heads and 1 <= n <= cfg.max_tokens
            and 1 <= d <= cfg.max_head_dim):
        raise _Fail(E_DIMS)
    x_hs, x_ns, y_hs, y_ns = sw[E["x_hs"]], sw[E["x_ns"]], sw[E["y_hs"]], sw[E["y_ns"]]
    if min(x_hs, x_ns, y_hs, y_ns) < 0:
        raise _Fail(ERR_STRIDE)
    x, w, b, y = uw[E["x"]], uw[E["w"]], uw[E["b"]], uw[E["y"]]
    if b & 3:
        raise _Fail(ERR_ALIGN)
    x_len, y_len = _span3(hin, n, d, x_hs, x_ns), _span3(c, n, d, y_hs, y_ns)
    if not (win.fits(x, x_len) and win.fits(w, c * hin) and win.fits(b, 4 * c) and win.fits(y, y_len)):
        raise _Fail(ERR_RANGE)
    if any(_ranges_overlap(y, y_len, a, ln) for a, ln in ((x, x_len), (w, c * hin), (b, 4 * c))):
        raise _Fail(ERR_OVERLAP)
    mult, shift = sw[E["mult"]], sw[E["shift"]]
    if mult < 0 or shift < 0 or shift > 63:
        raise _Fail(E_QUANT)
    # Weights and biases go to registers before the first tile.
    wts = win.i8_2d(w, c, hin).copy()
    bias = win.i32(b, c).copy()
    tn = mach.ae_tokens
    # Token tiles matter only when the output's elements alias each other (the last store wins).
    whole = n <= tn or _distinct((c, n, d), (y_hs, y_ns, 1))
    step = n if whole else tn
    for n0 in range(0, n, step):            # token tiles: load, mix, store
        t = min(step, n - n0)
        xs = win.tensor(x + n0 * x_ns, hin, t, d, x_hs, x_ns)
        win.store(y + n0 * y_ns, y_hs, y_ns, _mix_bits(xs, wts, bias, mult, shift))
    return ("ae_mix", hin, c, n, d)


# -- attention ------------------------------------------------------------------------------------------------

@dataclasses.dataclass
class _HeadPlan:
    """What the index tables of heads [lo, hi) say, as the engines read them: the checks' outcome and, for
    the heads that pass, the kept entries in reordered column space."""

    done: int                     # heads (from lo) that pass every index check
    code: int                     # status of head lo + done (0 when done == hi - lo)
    uncovered: Optional[int]      # first passing head (from lo) with a kept sparser entry outside the CSC
    order: np.ndarray             # (done, N) intp: column c of head j is key order[j, c]
    gather: np.ndarray            # (done * N,) intp: row of key order[j, c] in a (done * N, d) tensor
    keep: np.ndarray              # (done, N, N) bool, reordered
    kidx: np.ndarray              # flat indices of the kept entries in (done, N, N), row-major
    starts: np.ndarray            # first entry of each non-empty row
    row: np.ndarray               # entry -> its non-empty row
    colptr: np.ndarray            # (done, N + 1) int32
    segments: List[np.ndarray]    # per passing head its rowidx segment (int32)
    n_global: np.ndarray          # (done,) int32
    sparse: Optional[SparsePlan] = None                          # for attention_cycles, built on demand
    reports: Dict[tuple, KernelReport] = dataclasses.field(default_factory=dict)


_PLANS: "OrderedDict[tuple, _HeadPlan]" = OrderedDict()


def _head_plan(win: _Window, a: Dict[str, int], lo: int, hi: int, n_global: Sequence[int],
               cache: Optional[MutableMapping]) -> _HeadPlan:
    """Read and check the index tables of heads [lo, hi) (cached by the bytes read)."""
    n = a["N"]
    mb = (n + 7) // 8
    nh = hi - lo
    rowidx_len = (win.mem - a["rowidx"]) // 4
    hptr = win.i32(a["headptr"] + 4 * lo, nh + 1)
    r0 = max(0, int(hptr.min()))
    r1 = max(r0, min(rowidx_len, int(hptr.max())))
    u8 = win.u8
    parts = (u8[a["mask"] + lo * n * mb:a["mask"] + hi * n * mb], u8[a["order"] + 4 * lo * n:a["order"] + 4 * hi * n],
             u8[a["colptr"] + 4 * lo * (n + 1):a["colptr"] + 4 * hi * (n + 1)], hptr,
             u8[a["rowidx"] + 4 * r0:a["rowidx"] + 4 * r1])
    key = (n, nh, tuple(n_global[lo:hi]), rowidx_len, r0) + tuple(p.tobytes() for p in parts)
    store = _PLANS if cache is None else cache
    plan = store.get(key)
    if plan is not None:
        if cache is None:
            _PLANS.move_to_end(key)
        return plan
    plan = _build_head_plan(n, nh, np.asarray(n_global[lo:hi], np.int64), rowidx_len, r0, parts)
    store[key] = plan
    if cache is None and len(_PLANS) > PLAN_CACHE_SIZE:
        _PLANS.popitem(last=False)
    return plan


def _build_head_plan(n: int, nh: int, gs: np.ndarray, rowidx_len: int, r0: int, parts) -> _HeadPlan:
    maskbytes, order_b, colptr_b, hptr, rowidx_b = parts
    order = order_b.view("<i4").reshape(nh, n).astype(np.int64)
    colptr = colptr_b.view("<i4").reshape(nh, n + 1).astype(np.int64)
    hptr = hptr.astype(np.int64)
    rowidx = rowidx_b.view("<i4").astype(np.int64)
    done, code = nh, 0
    segments: List[np.ndarray] = []
    for j in range(nh):                                  # load_indexes, then the SDDMM's rowidx walk
        cp = colptr[j]
        h0, h1 = int(hptr[j]), int(hptr[j + 1])
        if cp[0] != 0 or (np.diff(cp) < 0).any() or h0 < 0 or h1 - h0 != cp[n] or h1 > rowidx_len:
            code = A_PTR
        elif ((order[j] < 0) | (order[j] >= n)).any():
            code = A_ORDER
        else:
            seg = rowidx[h0 - r0:h1 - r0]
            g = int(gs[j])
            sub = seg[cp[g]:cp[n]]                       # the sparser columns' entries, in CSC order
            if sub.size:
                col = np.repeat(np.arange(g, n), np.diff(cp[g:]))
                same = col[1:] == col[:-1]
                if (sub < 0).any() or (sub >= n).any() or (np.diff(sub)[same] <= 0).any():
                    code = A_ROWIDX
            if not code:
                segments.append(seg.astype(np.int32))
        if code:
            done = j
            break
    mb = (n + 7) // 8
    keep = np.unpackbits(maskbytes[:done * n * mb].reshape(done, n, mb), axis=2, count=n,
                         bitorder="little").astype(bool)
    uncovered = None
    for j in range(done):                                # every kept sparser entry needs a score from the CSC
        g = int(gs[j])
        cp = colptr[j]
        csc = np.zeros((n, n), bool)
        csc[segments[j][cp[g]:cp[n]], np.repeat(np.arange(g, n), np.diff(cp[g:]))] = True
        if (keep[j][:, g:] & ~csc[:, g:]).any():
            uncovered = j
            break
    kidx = np.flatnonzero(keep)
    rows = kidx // n
    new_row = np.empty(rows.size, bool)
    new_row[:1] = True
    np.not_equal(rows[1:], rows[:-1], out=new_row[1:])
    starts = np.flatnonzero(new_row)
    row = np.cumsum(new_row) - 1
    gather = (np.arange(done)[:, None] * n + order[:done]).ravel().astype(np.intp)
    return _HeadPlan(done, code, uncovered, order[:done].astype(np.intp), gather, keep, kidx, starts, row,
                     colptr[:done].astype(np.int32), segments, gs[:done].astype(np.int32))


def _cycle_plan(pieces: List[_HeadPlan]) -> SparsePlan:
    """The layer's SparsePlan for attention_cycles. With permutations in ``order`` it is the host's plan
    (mask in original key order); otherwise the reordered mask with the identity order, which gives the
    same figures (the cycle model only reads the mask through the order)."""
    keep = np.concatenate([p.keep for p in pieces]) if len(pieces) > 1 else pieces[0].keep
    order = np.concatenate([p.order for p in pieces]) if len(pieces) > 1 else pieces[0].order
    h, n, _ = keep.shape
    if np.array_equal(np.sort(order, axis=1), np.broadcast_to(np.arange(n), (h, n))):
        mask = np.zeros_like(keep)
        np.put_along_axis(mask, np.broadcast_to(order[:, None, :], keep.shape), keep, axis=2)
    else:
        mask, order = keep, np.broadcast_to(np.arange(n), (h, n))
    segs = [s for p in pieces for s in p.segments]
    headptr = np.zeros(h + 1, np.int32)
    headptr[1:] = np.cumsum([s.size for s in segs])
    return SparsePlan(mask, np.ascontiguousarray(order, dtype=np.int32), np.concatenate([p.n_global for p in pieces]),
                      np.concatenate([p.colptr for p in pieces]), headptr,
                      np.concatenate(segs) if segs else np.zeros(0, np.int32))


def _run_attention(mach: _Machine, win: _Window, sw: List[int], uw: List[int], cache) -> Optional[Tuple]:
    A = ATT_WORDS
    cfg = mach.cfg
    h, n, d, hc = sw[A["H"]], sw[A["N"]], sw[A["d"]], sw[A["Hc"]]
    if not (1 <= h <= cfg.max_heads and 1 <= n <= cfg.max_tokens and 1 <= d <= cfg.max_head_dim and 0 <= hc <= h):
        raise _Fail(A_DIMS)
    st = {f: sw[A[f]] for f in ("q_hs", "q_ns", "k_hs", "k_ns", "v_hs", "v_ns", "o_hs", "o_ns")}
    if min(st.values()) < 0:
        raise _Fail(ERR_STRIDE)
    words = uw[A["n_global"]:A["n_global"] + h]
    n_global = [wd & 0xFFFF for wd in words]
    sparse_lines = [wd >> 16 for wd in words]
    a = {f: uw[A[f]] for f in ("q", "k", "v", "o", "mask", "order", "colptr", "headptr", "rowidx",
                                "dq_w", "dq_b", "dk_w", "dk_b")}
    a["N"] = n
    if (a["order"] | a["colptr"] | a["headptr"] | a["rowidx"]) & 3:
        raise _Fail(ERR_ALIGN)
    if hc > 0 and (a["dq_b"] | a["dk_b"]) & 3:
        raise _Fail(ERR_ALIGN)
    hq = hc if hc > 0 else h
    mb = (n + 7) // 8
    spans = {"q": _span3(hq, n, d, st["q_hs"], st["q_ns"]), "k": _span3(hq, n, d, st["k_hs"], st["k_ns"]),
             "v": _span3(h, n, d, st["v_hs"], st["v_ns"]), "o": _span3(h, n, d, st["o_hs"], st["o_ns"]),
             "mask": h * n * mb, "order": 4 * h * n, "colptr": 4 * h * (n + 1), "headptr": 4 * (h + 1)}
    if not (all(win.fits(a[f], ln) for f, ln in spans.items()) and win.fits(a["rowidx"], 0)):
        raise _Fail(ERR_RANGE)
    if hc > 0 and not (win.fits(a["dq_w"], h * hc) and win.fits(a["dq_b"], 4 * h) and win.fits(a["dk_w"], h * hc)
                       and win.fits(a["dk_b"], 4 * h)):
        raise _Fail(ERR_RANGE)
    r_end = int(win.i32(a["headptr"] + 4 * h, 1)[0])      # rowidx up to headptr[H], clipped to the window
    r_len = min(4 * max(r_end, 0), win.mem - a["rowidx"])
    inputs = [(a[f], ln) for f, ln in spans.items() if f != "o"] + [(a["rowidx"], r_len)]
    if hc > 0:
        inputs += [(a["dq_w"], h * hc), (a["dq_b"], 4 * h), (a["dk_w"], h * hc), (a["dk_b"], 4 * h)]
    if any(_ranges_overlap(a["o"], spans["o"], off, ln) for off, ln in inputs):
        raise _Fail(ERR_OVERLAP)
    qc = {f: sw[A[f]] for f in ("m_exp", "s_exp", "m_out", "s_out", "dq_m", "dq_s", "dk_m", "dk_s")}
    bad = lambda mm, ss: mm < 0 or ss < 0 or ss > 63  # noqa: E731
    if bad(qc["m_exp"], qc["s_exp"]) or bad(qc["m_out"], qc["s_out"]):
        raise _Fail(A_QUANT)
    if hc > 0 and (bad(qc["dq_m"], qc["dq_s"]) or bad(qc["dk_m"], qc["dk_s"])):
        raise _Fail(A_QUANT)
    for g, ls in zip(n_global, sparse_lines):
        if g > n:
            raise _Fail(A_NGLOBAL)
        if not valid_split(cfg, g, ls, n):
            raise _Fail(A_SPLIT)

    if hc > 0:   # loaded on chip before head 0: the compressed Q, K and the decoders
        enc = tuple(win.tensor(a[f], hc, n, d, st[f + "_hs"], st[f + "_ns"]) for f in ("q", "k"))
        dec = tuple((win.i8_2d(a[f + "_w"], h, hc).copy(), win.i32(a[f + "_b"], h).copy(), qc[f + "_m"], qc[f + "_s"])
                    for f in ("dq", "dk"))
    # Heads run in turn, each storing its output after reading its inputs; the output shares no byte with
    # them (0x006 above), so all heads can be done at once unless the output's elements alias each other.
    at_once = _distinct((h, n, d), (st["o_hs"], st["o_ns"], 1))
    groups = [(0, h)] if at_once else [(i, i + 1) for i in range(h)]
    pieces: List[_HeadPlan] = []
    for lo, hi in groups:
        plan = _head_plan(win, a, lo, hi, n_global, cache)
        if plan.uncovered is not None:
            raise TopModelError(
                f"attention: head {lo + plan.uncovered} keeps a mask entry in a sparser column that its CSC does not "
                f"list; the engines would normalise over a score they never computed (the CSC must be "
                f"mask_to_csc(mask, order, n_global))")
        k = plan.done
        if k:
            if hc > 0:
                q = _mix_bits(enc[0], dec[0][0][lo:lo + k], dec[0][1][lo:lo + k], dec[0][2], dec[0][3])
                kk = _mix_bits(enc[1], dec[1][0][lo:lo + k], dec[1][1][lo:lo + k], dec[1][2], dec[1][3])
            else:
                q = win.tensor(a["q"] + lo * st["q_hs"], k, n, d, st["q_hs"], st["q_ns"])
                kk = win.tensor(a["k"] + lo * st["k_hs"], k, n, d, st["k_hs"], st["k_ns"])
            v = win.tensor(a["v"] + lo * st["v_hs"], k, n, d, st["v_hs"], st["v_ns"])
            kr = kk.reshape(k * n, d)[plan.gather].reshape(k, n, d)   # keys and values in reordered column order
            vr = v.reshape(k * n, d)[plan.gather].reshape(k, n, d)
            scores = nx.matmul_int(q, kr.transpose(0, 2, 1)).reshape(-1)[plan.kidx].astype(np.int64)
            probs = np.zeros(k * n * n, np.uint8)
            probs[plan.kidx] = softmax_kept(scores, plan.starts, plan.row, qc["m_exp"], qc["s_exp"])
            acc = nx.matmul_int(probs.reshape(k, n, n), vr)
            win.store(a["o"] + lo * st["o_hs"], st["o_hs"], st["o_ns"], nx.requantize(acc, qc["m_out"], qc["s_out"]))
        if plan.code:
            raise _Fail(plan.code)
        pieces.append(plan)
    return ("attention", pieces, d, hc, tuple(sparse_lines))


def _attention_report(mach: _Machine, pieces: List[_HeadPlan], d: int, hc: int, split: Tuple[int, ...]) -> KernelReport:
    def make():
        owner = pieces[0]
        if len(pieces) > 1:
            sp = _cycle_plan(pieces)
        else:
            if owner.sparse is None:
                owner.sparse = _cycle_plan(pieces)
            sp = owner.sparse
        return attention_cycles(mach.cfg, sp, d, compressed_heads=hc or None, sparse_lines=list(split))

    if len(pieces) > 1:
        return make()
    key = (mach.key, d, hc, split)
    rep = pieces[0].reports.get(key)
    if rep is None:
        rep = pieces[0].reports[key] = make()
    return rep


# -- the vector kernels (LayerNorm, add, LUT) -------------------------------------------------------------------

def _run_layernorm(mach: _Machine, win: _Window, sw: List[int], uw: List[int]) -> Tuple:
    L = LN_WORDS
    rows, d = sw[L["rows"]], sw[L["D"]]
    if rows < 1 or d < 1 or d > LN_MAX_D:
        raise _Fail(L_DIMS)
    x, g, b, y = (uw[L[f]] for f in ("x", "g", "b", "y"))
    if (x & 1) or ((g | b) & 3):
        raise _Fail(ERR_ALIGN)
    if not (win.fits(x, 2 * rows * d) and win.fits(g, 4 * d) and win.fits(b, 4 * d) and win.fits(y, rows * d)):
        raise _Fail(ERR_RANGE)
    if any(_ranges_overlap(y, rows * d, a, n) for a, n in ((x, 2 * rows * d), (g, 4 * d), (b, 4 * d))):
        raise _Fail(ERR_OVERLAP)
    shift, eps = sw[L["shift"]], sw[L["eps"]]
    if not 16 <= shift <= 62 or eps < 0:
        raise _Fail(L_PARAM)
    xs = win.ints(x, rows * d, 16).reshape(rows, d)
    out = layernorm_int(xs, win.i32(g, d).astype(np.int32), win.i32(b, d).astype(np.int32), shift, eps)
    win.i8[y:y + rows * d] = out.reshape(-1)
    return ("layernorm", rows, d)


def _run_add(mach: _Machine, win: _Window, sw: List[int], uw: List[int]) -> Tuple:
    R = ADD_WORDS
    n = sw[R["n"]]
    if n < 1:
        raise _Fail(R_DIMS)
    ab, bb, yb = sw[R["a_bits"]], sw[R["b_bits"]], sw[R["y_bits"]]
    ma, mb, shift = sw[R["ma"]], sw[R["mb"]], sw[R["shift"]]
    if ab not in (8, 16) or bb not in (8, 16) or yb not in (8, 16) or ma < 0 or mb < 0 or not 0 <= shift <= 62:
        raise _Fail(R_PARAM)
    a, b, y = uw[R["a"]], uw[R["b"]], uw[R["y"]]
    if (ab == 16 and a & 1) or (bb == 16 and b & 1) or (yb == 16 and y & 1):
        raise _Fail(ERR_ALIGN)
    alen, blen, ylen = n * ab // 8, n * bb // 8, n * yb // 8
    if not (win.fits(a, alen) and win.fits(b, blen) and win.fits(y, ylen)):
        raise _Fail(ERR_RANGE)
    if _ranges_overlap(y, ylen, a, alen) or _ranges_overlap(y, ylen, b, blen):
        raise _Fail(ERR_OVERLAP)
    out = add_requant(win.ints(a, n, ab), ma, win.ints(b, n, bb), mb, shift, yb)
    win.u8[y:y + ylen] = out.view(np.uint8)
    return ("add", n, ab // 8, bb // 8, yb)


def _run_lut(mach: _Machine, win: _Window, sw: List[int], uw: List[int]) -> Tuple:
    T = LUT_WORDS
    n = sw[T["n"]]
    if n < 1:
        raise _Fail(T_DIMS)
    x, t, y = uw[T["x"]], uw[T["table"]], uw[T["y"]]
    if not (win.fits(x, n) and win.fits(t, 256) and win.fits(y, n)):
        raise _Fail(ERR_RANGE)
    if _ranges_overlap(y, n, x, n) or _ranges_overlap(y, n, t, 256):
        raise _Fail(ERR_OVERLAP)
    table = win.i8[t:t + 256]
    win.i8[y:y + n] = table[win.i8[x:x + n].astype(np.int16) + 128]
    return ("lut", n)


# -- the dispatcher -------------------------------------------------------------------------------------------

def run_top(window: np.ndarray, desc_off: int, num_instr: int, config: ConfigLike = "paper", *,
            mem_bytes: Optional[int] = None, cycles: bool = True, names: Optional[Sequence[str]] = None,
            plan_cache: Optional[MutableMapping] = None) -> TopResult:
    """Run ``num_instr`` descriptors at byte ``desc_off`` of ``window`` as ``vitcod_top`` does.

    ``window``: the DRAM window, a writable 1-D uint8 array, changed in place. ``mem_bytes``: the register
    of that name (default ``window.size``; at most ``window.size``). ``cycles``: add the cycle models'
    report of each GEMM / AE / attention descriptor that ran, named ``names[i]`` (``"layers.3.fc1"`` also
    sets the layer) or ``"desc[i].<kind>"``. ``plan_cache``: a mapping that keeps the attention layers'
    decoded index tables between calls (default: a module-level LRU of :data:`PLAN_CACHE_SIZE`).
    Raises :class:`TopModelError` for the one program this model cannot run (see the module docstring).
    """
    mach = _machine(config)
    if not isinstance(window, np.ndarray) or window.dtype != np.uint8 or window.ndim != 1:
        raise TypeError("window must be a 1-D uint8 numpy array")
    if not window.flags.writeable or not window.flags.c_contiguous:
        raise ValueError("window must be writable and contiguous (outputs are written into it)")
    mem = window.size if mem_bytes is None else int(mem_bytes)
    if not 0 <= mem <= min(window.size, 0xFFFFFFFF):
        raise ValueError(f"mem_bytes={mem} must be in [0, {min(window.size, 0xFFFFFFFF)}] (the window's size)")
    desc_off, num_instr = int(desc_off), int(num_instr)
    if not (0 <= desc_off <= 0xFFFFFFFF and 0 <= num_instr <= 0xFFFFFFFF):
        raise ValueError("desc_off and num_instr are 32-bit unsigned registers")
    if names is not None and len(names) != num_instr:
        raise ValueError(f"{len(names)} names for {num_instr} descriptors")
    res = TopResult(0, mach.hash32, [], 0)
    win = _Window(window, mem)
    if num_instr >= MAX_INSTR:
        res.status = ERR_COUNT
        return res
    if desc_off & 3:
        res.status = ERR_ALIGN
        return res
    if not win.fits(desc_off, num_instr * DESC_BYTES):
        res.status = ERR_RANGE
        return res
    for i in range(num_instr):
        off = desc_off + i * DESC_BYTES
        raw = window[off:off + DESC_BYTES]
        sw = raw.view("<i4").tolist()
        uw = raw.view("<u4").tolist()
        op = sw[W_OP]
        try:
            if sw[W_FLAGS] != 0:
                raise _Fail(ERR_OP)
            if op == OP_NOP:
                out = None
            elif op == OP_GEMM:
                out = _run_gemm(mach, win, sw, uw)
            elif op == OP_AE_MIX:
                out = _run_ae(mach, win, sw, uw)
            elif op == OP_QKV_AE:
                out = _run_qkv_ae(mach, win, sw, uw)
            elif op == OP_ATTENTION:
                out = _run_attention(mach, win, sw, uw, plan_cache)
            elif op == OP_LAYERNORM:
                out = _run_layernorm(mach, win, sw, uw)
            elif op == OP_ADD:
                out = _run_add(mach, win, sw, uw)
            elif op == OP_LUT:
                out = _run_lut(mach, win, sw, uw)
            else:
                raise _Fail(ERR_OP)
        except _Fail as f:
            res.status = (i << 16) | f.code
            return res
        res.executed += 1
        if cycles and out is not None:
            name = names[i] if names is not None else f"desc[{i}].{out[0]}"
            res.reports.append(_labelled(_report(mach, out), name, _layer_of(name)))
    return res


def _report(mach: _Machine, out: Tuple) -> KernelReport:
    kind = out[0]
    cfg = mach.cfg
    if kind == "gemm":
        m, k, o = out[1:]
        return mach.report(out, lambda: gemm_cycles(cfg, m, k, o))
    if kind == "ae_mix":
        hin, c, n, d = out[1:]
        return mach.report(out, lambda: ae_mix_cycles(cfg, hin, c, n, d))
    if kind == "qkv_ae":
        m, k, h, d, hc, tog = out[1:]
        return mach.report(out, lambda: qkv_ae_cycles(cfg, m, k, h, d, hc, together=bool(tog)))
    if kind == "layernorm":
        return mach.report(out, lambda: layernorm_cycles(cfg, out[1], out[2]))
    if kind == "add":
        return mach.report(out, lambda: add_cycles(cfg, out[1], out[2], out[3], out[4]))
    if kind == "lut":
        return mach.report(out, lambda: lut_cycles(cfg, out[1]))
    return _attention_report(mach, *out[1:])
