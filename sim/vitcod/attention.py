"""Sparse attention on the two-pronged ViTCoD engine: the bits (KERNELS.md) and the cycles.

Functional model: ``scores -> softmax -> S.V -> requantize`` on whole arrays (exact integer sums, so any
order gives the hardware's bits).

Cycle model, one layer: the loop nests of ``hls/vitcod/attention/attention.h``, each counted as
iterations x II (1) + its pipeline depth (``hls/common/schedule.h``; ``tests/test_cycle_model_vs_hls.py``
checks every term against the C++'s own counters). ``L = mac_lines`` lines of ``M = macs_per_line``
MACs, ``cpd = ceil(d / M)``. Heads run one after another; per head:

* **SDDMM**, both engines at once in one loop on disjoint lines. The host compiler splits the lines per
  head (:func:`line_split`, passed in the descriptor): the sparser engine gets ``ls`` lines, at most
  ``sparse_q_ports`` (each such line has Q, K and V gather ports delivering one M-byte chunk per cycle),
  the denser engine the other ``ld = L - ls`` when the head has global columns; and it keeps a head's
  globals on the denser engine only when that is faster (:func:`engine_plan`).
  Denser, the cheaper of K-stationary (blocks of ``ld`` global columns, one k loaded per line per cycle,
  then the ``N`` queries streamed: ``cols + N * cpd`` per block) and Q-stationary (blocks of ``ld``
  queries, the ``g`` global keys streamed: ``rows + g * cpd`` per block; :func:`dense_qstat`).
  Sparser: the CSC entries as one stream, ``ls`` per round of ``cpd`` cycles: ``ceil(nnz / ls) * cpd``.
  Phase: ``max(denser, sparser) + pipe_dot``.
* **Softmax unit**: max stage and exp/sum stage in a row pipeline, ``softmax_lanes`` wide, each visiting
  only a row's live lane blocks (at least one), then a pipelined divider:
  ``sum(b) + max(b) + depths`` (:func:`softmax_cycles`).
* **S.V**, both engines again: denser output-stationary (rows dealt to the ``ld`` lines, ``g * cpd`` per
  row, V broadcast); sparser row-stationary (rows with kept sparser entries dealt in order to the lines as
  they free up, in segments of bounded length so one long row cannot set the makespan; the requantisers
  add the segments' partial sums: :func:`_sparse_spmm`). ``max(denser, sparser) + pipe_dot``.
* **Requantisation** of the two engines' accumulators: ``L`` outputs per cycle, ``ceil(N d / L) + PIPE_RQ``.
* **Decode** (AE): the mix engine is every MAC line in dot-product mode over the ``Hc`` compressed heads:
  ``2 ceil(N d / L) ceil(Hc / M) + pipe_mix``. Head 0's decode has nothing to hide under (``preprocess``).
* **Heads pipelined** (:func:`head_pipeline`): the MAC lines run SDDMM(h), S.V(h - 1) and the next
  head's decode; the softmax unit and the requantisers work beside them (double-buffered scores, mask
  rows, V and accumulators). ``compute`` is that schedule without the decoder, ``preprocess`` what the
  decoder adds plus head 0's decode.

Off-chip (:mod:`~vitaccel.sim.common.dram`), one transfer per array in the DRAM layout of DESCRIPTOR.md:
per head order, colptr, two headptr words (int32), the mask rows (``N ceil(N/8)``), V, and Q and K unless
the AE is on; rowidx (int32) streamed once, in SDDMM (no index buffer to overflow); the output. With the
AE the compressed Q and K and the decoder weights come once per layer. The heads' transfers go on under
the pipelined heads (double buffering, which the HLS does not express yet: it issues them in sequence);
``data`` is head 0's inputs, the last head's output and whatever the transfers exceed the schedule by.

The split and the engines of each head are the host's decisions; everything else follows from the masks.
"""
from __future__ import annotations

import dataclasses
import heapq
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from vitaccel.hwconfig import HardwareConfig
from vitaccel.sim import numerics as nx
from vitaccel.sim import schedule
from vitaccel.sim.schedule import PIPE_DIV, PIPE_RQ
from vitaccel.sim.vitcod.autoencoder import ae_decode, ae_encode
from vitaccel.sim.common.dram import transfer_cycles
from vitaccel.sim.report import KernelReport
from vitaccel.sim.vitcod.sparse_format import mask_to_csc, order_from_globals

__all__ = [
    "AEParams",
    "SparsePlan",
    "attention_int",
    "attention_cycles",
    "default_theta_d",
    "line_split",
    "engine_plan",
    "default_sparse_lines",
    "valid_split",
    "gather_ports",
    "live_blocks",
    "softmax_cycles",
    "requant_cycles",
    "decode_cycles",
    "head_pipeline",
    "dense_qstat",
    "pipe_dot",
    "pipe_mix",
    "pipe_softmax",
    "PIPE_RQ",
    "PIPE_DIV",
]


# -- what the masks say --------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class SparsePlan:
    """One layer's fixed sparsity: mask (H, N, N), order (H, N), n_global (H,) and the CSC arrays."""

    mask: np.ndarray
    order: np.ndarray
    n_global: np.ndarray
    colptr: np.ndarray
    headptr: np.ndarray
    rowidx: np.ndarray

    @classmethod
    def from_mask(cls, mask, order=None, n_global=None, *, theta_d: Optional[int] = None,
                  config: Optional[HardwareConfig] = None) -> "SparsePlan":
        """Build the plan. Without ``order``/``n_global``, a key column is global when it keeps more than
        ``theta_d`` queries (default :func:`default_theta_d` for ``config``)."""
        mask = np.asarray(mask)
        if mask.dtype != np.bool_ or mask.ndim != 3 or mask.shape[1] != mask.shape[2]:
            raise ValueError(f"mask must be bool (H, N, N), got {mask.dtype} {mask.shape}")
        h, n, _ = mask.shape
        if (order is None) != (n_global is None):
            raise ValueError("give both order and n_global, or neither")
        if order is None:
            if theta_d is None:
                if config is None:
                    raise ValueError("deriving the global columns needs theta_d or a config")
                theta_d = default_theta_d(config, n)
            is_global = mask.sum(axis=1) > theta_d  # (H, N): kept queries per key column
            order, n_global = order_from_globals(is_global)
        order = np.asarray(order)
        n_global = np.asarray(n_global)
        colptr, headptr, rowidx = mask_to_csc(mask, order, n_global)
        return cls(mask, order.astype(np.int32), n_global.astype(np.int32), colptr, headptr, rowidx)

    @property
    def shape(self) -> Tuple[int, int]:
        return int(self.mask.shape[0]), int(self.mask.shape[1])

    def column_nnz(self) -> np.ndarray:
        """(H, N) kept entries per reordered column in the CSC (0 for global columns)."""
        return np.diff(self.colptr, axis=1)

    def sparse_row_nnz(self) -> np.ndarray:
        """(H, N) kept entries per query row in the sparser (non-global) columns: the S.V sparser engine's
        work per row (it walks the mask rows)."""
        h, n = self.shape
        cols = np.arange(n)[None, :] >= self.n_global[:, None]          # (H, N) reordered column is sparser
        sparse_keys = np.zeros((h, n), dtype=bool)
        np.put_along_axis(sparse_keys, self.order.astype(np.intp), cols, axis=1)  # key order[c] <- column c
        return (self.mask & sparse_keys[:, None, :]).sum(axis=2)


def default_theta_d(cfg: HardwareConfig, n: int) -> int:
    """Kept-query count above which a key column is cheaper on the denser engine.

    A global column costs ``N`` dot products on lines fed by broadcast; a sparse one costs its ``nnz`` dot
    products, but the sparser engine has at most ``P = min(sparse_q_ports, mac_lines)`` lines with gather
    ports against ``mac_lines`` for the denser one. The denser engine is at least as fast when
    ``nnz / N >= P / mac_lines``, so a column is global when ``nnz > theta_d = ceil(N P / mac_lines) - 1``.
    With a gather port on every line that leaves the columns every query keeps (the CLS column, typically),
    which the denser engine computes without index traffic. (The earlier ``floor(N P / L)`` equals this
    unless ``N P / L`` is whole, and at ``P = L`` it made no column global at all.)
    """
    return -(-n * gather_ports(cfg) // cfg.mac_lines) - 1


# -- bits ------------------------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class AEParams:
    """Auto-encoder of one tensor (Q or K) over the head axis: int8 weights, int32 biases, requant params."""

    enc_weight: np.ndarray  # (Hc, H) int8
    enc_bias: np.ndarray    # (Hc,) int32
    enc_mult: int
    enc_shift: int
    dec_weight: np.ndarray  # (H, Hc) int8
    dec_bias: np.ndarray    # (H,) int32
    dec_mult: int
    dec_shift: int

    @property
    def compressed_heads(self) -> int:
        return int(self.enc_weight.shape[0])

    def roundtrip(self, x: np.ndarray) -> np.ndarray:
        enc = ae_encode(x, self.enc_weight, self.enc_bias, self.enc_mult, self.enc_shift)
        return ae_decode(enc, self.dec_weight, self.dec_bias, self.dec_mult, self.dec_shift)


def _check_qkv(q, k, v, mask) -> Tuple[np.ndarray, ...]:
    arrs = []
    for name, a in (("q", q), ("k", k), ("v", v)):
        a = np.asarray(a)
        if a.dtype != np.int8 or a.ndim != 3:
            raise ValueError(f"{name} must be int8 (H, N, d), got {a.dtype} {a.shape}")
        arrs.append(a)
    if not (arrs[0].shape == arrs[1].shape == arrs[2].shape):
        raise ValueError(f"q, k, v must share a shape; got {arrs[0].shape}, {arrs[1].shape}, {arrs[2].shape}")
    h, n, _ = arrs[0].shape
    m = np.asarray(mask)
    if m.dtype != np.bool_ or m.shape != (h, n, n):
        raise ValueError(f"mask must be bool {(h, n, n)}, got {m.dtype} {m.shape}")
    return (*arrs, m)


def attention_int(q, k, v, mask, m_exp: int, s_exp: int, m_out: int, s_out: int,
                  ae: Optional[Tuple[AEParams, AEParams]] = None) -> np.ndarray:
    """KERNELS.md attention: int8 q, k, v (H, N, d) and bool mask (H, N, N) -> int8 (H, N, d).

    ``ae`` is ``(ae_q, ae_k)``: Q and K then go through encoder and decoder first, as on chip.
    """
    q, k, v, mask = _check_qkv(q, k, v, mask)
    if ae is not None:
        q = ae[0].roundtrip(q)
        k = ae[1].roundtrip(k)
    s = nx.matmul_int(q, np.swapaxes(k, 1, 2))
    p = nx.softmax(s, mask, m_exp, s_exp)
    return nx.requantize(nx.matmul_int(p, v), m_out, s_out)


# -- cycles ------------------------------------------------------------------------------------------------

#: Off-chip width of an index (order, colptr, headptr, rowidx are int32 in DRAM, DESCRIPTOR.md).
INDEX_BYTES = 4


# ViTCoD's pipeline depths: the common nests (vitaccel.sim.schedule) at its line and softmax widths, as
# hls/vitcod/vitcod_schedule.h instantiates them.

def pipe_dot(cfg: HardwareConfig) -> int:
    """Depth of a dot-product loop on a MAC line."""
    return schedule.pipe_dot(cfg.macs_per_line)


def pipe_mix(cfg: HardwareConfig) -> int:
    """Depth of the mix engine (AE encoder / decoder)."""
    return schedule.pipe_mix(cfg.macs_per_line)


def pipe_softmax(cfg: HardwareConfig) -> Tuple[int, int, int]:
    """Depths of the softmax unit: (max stage hand-over, exp stage, divider)."""
    return schedule.pipe_sm_max(cfg.softmax_lanes), schedule.pipe_sm_exp(cfg.softmax_lanes), PIPE_DIV


def gather_ports(cfg: HardwareConfig) -> int:
    """Lines with Q, K and V gather ports: the most the sparser engine can have (one M-byte chunk per port
    per cycle)."""
    return min(cfg.sparse_q_ports, cfg.mac_lines)


def _sparse_phase(col_nnz: np.ndarray, ls, cpd: int):
    """Sparser-engine cycles of SDDMM: the CSC entries as one stream, ``ls`` per round of ``cpd`` cycles
    (every slot gathers its own query and key): ``ceil(nnz / ls) * cpd``.

    ``ls`` may be an array of candidate line counts (the result then has its shape)."""
    total = int(np.asarray(col_nnz, dtype=np.int64).sum())
    ls_a = np.asarray(ls, dtype=np.int64)
    out = -(-total // np.maximum(ls_a, 1)) * cpd
    return int(out) if ls_a.ndim == 0 else out


#: Segments a row's sparser entries are cut into at most in S.V (attention.h ``KSEG``).
SPMM_SEGMENTS = 4


def _sparse_spmm(row_nnz: np.ndarray, ls, cpd: int):
    """Sparser-engine cycles of S.V, row-stationary in segments: each row's kept sparser entries cut into
    segments of at most ``seg = max(ceil(nnz / ls), ceil(longest row / SPMM_SEGMENTS))``, dealt in row
    order to the ``ls`` slots as they free up (lowest slot first), ``len * cpd`` cycles each: the list
    schedule's makespan. ``ls`` may be an array (the result then has its shape)."""
    rows = [int(x) for x in np.asarray(row_nnz, dtype=np.int64).tolist()]
    total, longest = sum(rows), max(rows, default=0)
    ls_a = np.asarray(ls, dtype=np.int64)

    def makespan(k: int) -> int:
        if total == 0:
            return 0
        k = max(int(k), 1)
        seg = max(-(-total // k), -(-longest // SPMM_SEGMENTS), 1)
        work = []
        for r in rows:
            while r > 0:
                work.append(min(r, seg) * cpd)
                r -= seg
        if len(work) <= k:
            return max(work)
        free = [0] * k                  # a heap of free times; ties are irrelevant to the makespan
        end = 0
        for w in work:
            t = heapq.heappop(free) + w
            end = max(end, t)
            heapq.heappush(free, t)
        return end

    if ls_a.ndim == 0:
        return makespan(int(ls_a))
    return np.array([makespan(int(k)) for k in ls_a.tolist()], np.int64)


def dense_qstat(g: int, ld: int, n: int, cpd: int) -> bool:
    """Whether the denser engine runs a head's SDDMM Q-stationary (attention.h ``dense_qstat``): blocks of
    ``ld`` queries (one loaded per cycle) with the ``g`` global keys streamed, ``n + ceil(n / ld) g cpd``,
    when that beats K-stationary (blocks of global keys, the queries streamed), ``g + ceil(g / ld) n cpd``:
    a head with few global columns would otherwise stream all ``n`` queries past a nearly empty block."""
    if g == 0 or ld < 1:
        return False
    return n + -(-n // ld) * g * cpd < g + -(-g // ld) * n * cpd


def _dense_sddmm(g: int, ld, n: int, cpd: int):
    """Denser SDDMM, the cheaper of its two dataflows (:func:`dense_qstat`): K-stationary, blocks of ``ld``
    global columns each a K load (one line per cycle) then ``n`` query chunks; or Q-stationary."""
    if g == 0:
        return 0
    ld = np.maximum(np.asarray(ld), 1)
    return np.minimum(g + -(-g // ld) * n * cpd, n + -(-n // ld) * g * cpd)


def _dense_spmm(g: int, ld, n: int, cpd: int):
    """Denser S.V: rows dealt to ``ld`` lines, ``g * cpd`` cycles per row."""
    if g == 0:
        return 0
    return -(-n // np.asarray(ld)) * g * cpd


def _choose_split(cfg: HardwareConfig, n: int, cpd: int, g: int, sparse_nnz: np.ndarray,
                  row_nnz: np.ndarray) -> Tuple[int, int]:
    """The host compiler's split for one head: ``(ld, ls)`` minimising SDDMM + S.V (softmax does not
    depend on it). The sparser engine is capped by its gather ports; the denser engine takes the rest.
    ``sparse_nnz``: kept entries per sparser column; ``row_nnz``: per row."""
    lines = cfg.mac_lines
    if g >= n:
        return lines, 0
    hi = min(gather_ports(cfg), lines if g == 0 else lines - 1)
    if hi < 1:
        raise ValueError("both engines have work but fewer than two MAC lines are available")
    if g == 0:
        return 0, hi  # more sparser lines never cost anything
    ls = np.arange(1, hi + 1)
    ld = lines - ls
    cost = (np.maximum(_dense_sddmm(g, ld, n, cpd), _sparse_phase(sparse_nnz, ls, cpd))
            + np.maximum(_dense_spmm(g, ld, n, cpd), _sparse_spmm(row_nnz, ls, cpd)))
    best = int(np.argmin(cost))  # ties: the fewest sparser lines
    return int(ld[best]), int(ls[best])


def line_split(cfg: HardwareConfig, plan: SparsePlan, d: int) -> Tuple[np.ndarray, np.ndarray]:
    """Per head ``(lines_denser, lines_sparser)``: what the host compiler puts in the attention descriptor
    (the HLS engines take ``lines_sparser``; ``lines_denser = mac_lines - lines_sparser`` when the head has
    global columns, else 0)."""
    h_count, n = plan.shape
    cpd = -(-d // cfg.macs_per_line)
    col_nnz = plan.column_nnz()
    rows = plan.sparse_row_nnz()
    out = [_choose_split(cfg, n, cpd, int(plan.n_global[h]), col_nnz[h, int(plan.n_global[h]):], rows[h])
           for h in range(h_count)]
    return (np.array([o[0] for o in out], np.int32), np.array([o[1] for o in out], np.int32))


def engine_plan(cfg: HardwareConfig, plan: SparsePlan, d: int) -> SparsePlan:
    """The host compiler's choice of engines per head: the bundle's global columns stay on the denser engine
    unless the head is predicted faster with every column on the sparser one (SDDMM + S.V with the best
    split, :func:`line_split`'s cost). With a gather port on every line the two engines are equally fast
    per kept entry, and splitting the lines between them can cost more than the denser engine saves; with
    few ports (the reason for ViTCoD's split) the globals stay. The order is kept; only ``n_global`` (and
    so the CSC) changes, so bits are unchanged."""
    h_count, n = plan.shape
    cpd = -(-d // cfg.macs_per_line)
    col_nnz = plan.column_nnz()
    rows = plan.sparse_row_nnz()
    reordered = np.take_along_axis(plan.mask, plan.order[:, None, :].astype(np.intp), axis=2)
    kept_col = reordered.sum(axis=1)            # (H, N) kept queries per reordered column, globals included
    row_kept = plan.mask.sum(axis=2)
    ng = plan.n_global.copy()
    ports = gather_ports(cfg)
    for h in range(h_count):
        g = int(ng[h])
        if not 0 < g < n:
            continue
        ld, ls = _choose_split(cfg, n, cpd, g, col_nnz[h, g:], rows[h])
        split = (max(int(_dense_sddmm(g, ld, n, cpd)), _sparse_phase(col_nnz[h, g:], ls, cpd))
                 + max(int(_dense_spmm(g, ld, n, cpd)), _sparse_spmm(rows[h], ls, cpd)))
        alone = _sparse_phase(kept_col[h], ports, cpd) + _sparse_spmm(row_kept[h], ports, cpd)
        if alone < split:
            ng[h] = 0
    if np.array_equal(ng, plan.n_global):
        return plan
    return SparsePlan.from_mask(plan.mask, plan.order, ng)


def default_sparse_lines(cfg: HardwareConfig, g: int, n: int) -> int:
    """The split a host without masks uses (attention.h ``default_sparse_lines``): every gather port to the
    sparser engine, the rest to the denser one."""
    if g >= n:
        return 0
    return min(gather_ports(cfg), cfg.mac_lines - 1 if g > 0 else cfg.mac_lines)


def valid_split(cfg: HardwareConfig, g: int, ls: int, n: int) -> bool:
    """Whether ``ls`` sparser lines is a split the engines accept for a head with ``g`` of ``n`` columns global
    (attention.h ``valid_split``; status 0x307 otherwise)."""
    if g >= n:
        return ls == 0
    if ls < 1 or ls > gather_ports(cfg):
        return False
    return g == 0 or ls <= cfg.mac_lines - 1


def live_blocks(cfg: HardwareConfig, mask: np.ndarray, order: Optional[np.ndarray] = None) -> np.ndarray:
    """(H, N) lane blocks (``softmax_lanes`` columns, in the column order the softmax unit sees) holding a
    kept entry, per row."""
    m = np.asarray(mask, dtype=bool)
    if order is not None:
        m = np.take_along_axis(m, np.asarray(order)[:, None, :].astype(np.intp), axis=2)
    h, n, _ = m.shape
    lanes = cfg.softmax_lanes
    nb = -(-n // lanes)
    m = np.pad(m, ((0, 0), (0, 0), (0, nb * lanes - n)))
    return m.reshape(h, n, nb, lanes).any(axis=3).sum(axis=2)


def softmax_cycles(cfg: HardwareConfig, live: np.ndarray) -> int:
    """Softmax unit on one head: max stage and exp stage in a row pipeline, each visiting a row's live lane
    blocks (at least one per row), then the divider. ``sum(b) + max(b)`` plus the depths: the exp stage
    finishes row i at ``max(its previous row, max stage done with row i + depth) + b_i``."""
    b = np.maximum(np.asarray(live, dtype=np.int64), 1)
    if b.size == 0:
        return 0
    d_max, d_exp, d_div = pipe_softmax(cfg)
    return int(b.sum() + b.max()) + d_max + d_exp + d_div


def requant_cycles(cfg: HardwareConfig, n: int, d: int) -> int:
    """Output requantisation of one head: ``L`` outputs per cycle (one requantiser per line)."""
    return -(-n * d // cfg.mac_lines) + PIPE_RQ


def decode_cycles(cfg: HardwareConfig, n: int, d: int, hc: int) -> int:
    """Decoding one head's Q and K on the mix engine (every MAC line): one output per line per
    ``ceil(Hc / M)`` cycles."""
    return 2 * -(-n * d // cfg.mac_lines) * -(-hc // cfg.macs_per_line) + pipe_mix(cfg)


def head_pipeline(phases: Sequence[Tuple[int, int, int, int, int]]) -> int:
    """Cycles of one layer's heads pipelined (attention.h ``HeadPipeline``), from each head's ``(sddmm,
    softmax, spmm, requant, decode of the next head)``. The MAC lines run SDDMM(h), S.V(h - 1) and the next
    decode in that order; softmax(h) starts once SDDMM(h) and softmax(h - 1) are done, S.V(h) once
    softmax(h) is; the requantisers follow S.V. Scores, mask rows, V and the accumulators are
    double-buffered, so the softmax unit and the requantisers work beside the MAC lines."""
    mac = sm = rq = 0
    prev: Optional[Tuple[int, int, int]] = None       # (softmax end, spmm, requant) of the previous head

    def flush() -> None:
        nonlocal mac, rq
        if prev is not None:
            mac = max(mac, prev[0]) + prev[1]
            rq = max(rq, mac) + prev[2]

    for sddmm, softmax, spmm, requant, decode_next in phases:
        mac += sddmm
        sm = max(mac, sm) + softmax
        flush()
        prev = (sm, spmm, requant)
        mac += decode_next
    flush()
    return rq


@dataclasses.dataclass
class _HeadWork:
    sddmm: int            # SDDMM phase (both engines in one loop) + depth
    softmax: int
    spmm: int
    requant: int
    dense: Tuple[int, int]   # denser engine's iterations in SDDMM, S.V
    sparse: Tuple[int, int]  # sparser engine's
    lines: Tuple[int, int]
    macs: int
    useful_macs: int

    @property
    def compute(self) -> int:
        return self.sddmm + self.softmax + self.spmm + self.requant


def _head_work(cfg: HardwareConfig, n: int, d: int, g: int, col_nnz: np.ndarray, row_kept: np.ndarray,
               live: np.ndarray, row_nnz: np.ndarray, split: Optional[Tuple[int, int]] = None) -> _HeadWork:
    """One head's engine phases (``hls/vitcod/attention/attention.h``: sddmm, softmax_unit, spmm,
    requant_out), for the line split ``split`` (default: the host compiler's). ``row_nnz``: kept entries per
    row in the sparser columns."""
    cpd = -(-d // cfg.macs_per_line)
    sparse_nnz = col_nnz[g:]
    ld, ls = split if split is not None else _choose_split(cfg, n, cpd, g, sparse_nnz, row_nnz)
    if (g > 0 and ld < 1) or (g < n and ls < 1):
        raise ValueError(f"line split ({ld}, {ls}) leaves an engine with work but no line")
    ts = _sparse_phase(sparse_nnz, ls, cpd) if g < n else 0
    ts3 = _sparse_spmm(row_nnz, ls, cpd) if g < n else 0
    td1 = int(_dense_sddmm(g, ld, n, cpd))
    td3 = int(_dense_spmm(g, ld, n, cpd))
    pd = pipe_dot(cfg)
    nnz = int(sparse_nnz.sum())
    return _HeadWork(
        sddmm=max(td1, ts) + pd, softmax=softmax_cycles(cfg, live), spmm=max(td3, ts3) + pd,
        requant=requant_cycles(cfg, n, d), dense=(td1, td3), sparse=(ts, ts3), lines=(ld, ls),
        macs=2 * (g * n + nnz) * d, useful_macs=2 * int(row_kept.sum()) * d)


def attention_cycles(cfg: HardwareConfig, plan: SparsePlan, d: int, *, compressed_heads: Optional[int] = None,
                     name: str = "attention", layer: Optional[int] = None,
                     sparse_lines: Optional[Sequence[int]] = None) -> KernelReport:
    """Cycles of one attention layer on the ViTCoD engines (see the module docstring for the schedule).

    ``compressed_heads`` is the AE's Hc (None: no AE). ``sparse_lines`` (H,): the sparser engine's lines
    per head as a descriptor carries them (default: the host compiler's :func:`line_split`).
    """
    h_count, n = plan.shape
    if n > cfg.max_tokens or h_count > cfg.max_heads or d > cfg.max_head_dim:
        raise ValueError(f"layer (H={h_count}, N={n}, d={d}) exceeds config '{cfg.name}' limits "
                         f"(max_heads={cfg.max_heads}, max_tokens={cfg.max_tokens}, max_head_dim={cfg.max_head_dim})")
    ae = compressed_heads is not None
    hc = int(compressed_heads) if ae else 0
    if ae and not 1 <= hc <= h_count:
        raise ValueError(f"compressed_heads must be in [1, {h_count}], got {hc}")
    notes: List[str] = []
    head_bytes = n * d
    resident = (2 * hc * head_bytes if ae else 0) + 2 * 3 * head_bytes  # + double-buffered per-head tiles
    if resident > cfg.qkvs_buffer_kb * 1024:
        notes.append(f"working set {resident} B exceeds the Q/K/S/V buffer ({cfg.qkvs_buffer_kb} KiB): "
                     "timing assumes it streams without extra traffic")
    col_nnz = plan.column_nnz()
    row_kept = plan.mask.sum(axis=2)  # (H, N)
    live = live_blocks(cfg, plan.mask, plan.order)
    if sparse_lines is not None:
        if len(sparse_lines) != h_count:
            raise ValueError(f"sparse_lines must have H={h_count} entries, got {len(sparse_lines)}")
        splits = [(cfg.mac_lines - int(ls) if int(plan.n_global[h]) > 0 else 0, int(ls))
                  for h, ls in enumerate(sparse_lines)]
    else:
        splits = [None] * h_count
    rows = plan.sparse_row_nnz()
    works = [_head_work(cfg, n, d, int(plan.n_global[h]), col_nnz[h], row_kept[h], live[h], rows[h],
                        split=splits[h]) for h in range(h_count)]
    dec = decode_cycles(cfg, n, d, hc) if ae else 0

    # Off-chip traffic, one transfer per array (DESCRIPTOR.md layouts).
    mb = -(-n // 8)
    idx_sizes = [n * INDEX_BYTES, (n + 1) * INDEX_BYTES, 2 * INDEX_BYTES, n * mb]  # order, colptr, headptr, mask
    in_sizes = idx_sizes + [head_bytes] * (1 if ae else 3)
    pre_sizes = [hc * head_bytes] * 2 + [h_count * hc] * 2 + [4 * h_count] * 2 if ae else []
    in_c = sum(transfer_cycles(cfg, s) for s in in_sizes)
    out_c = transfer_cycles(cfg, head_bytes)
    pre_c = sum(transfer_cycles(cfg, s) for s in pre_sizes)
    nnz_h = [int(col_nnz[h].sum()) for h in range(h_count)]
    ri_c = [transfer_cycles(cfg, INDEX_BYTES * z) for z in nnz_h]  # rowidx streamed once, in SDDMM

    decs = [dec if (ae and h + 1 < h_count) else 0 for h in range(h_count)]   # decode of head h + 1
    span = head_pipeline([(w.sddmm, w.softmax, w.spmm, w.requant, dn) for w, dn in zip(works, decs)])
    span_nodec = head_pipeline([(w.sddmm, w.softmax, w.spmm, w.requant, 0) for w in works])
    dma = [(in_c if h + 1 < h_count else 0) + ri_c[h] + (out_c if h > 0 else 0) for h in range(h_count)]
    # Prologue: the compressed Q/K and decoder weights (AE), head 0's inputs, head 0's decode; the other
    # heads' transfers go on under the pipelined heads; epilogue: the last head's output.
    compute = span_nodec
    preprocess = dec + (span - span_nodec)
    data = pre_c + in_c + max(0, sum(dma) - span) + out_c
    # Per head, its share of the pipelined layer: how much the schedule grows when the head is added.
    with_dec = [(w.sddmm, w.softmax, w.spmm, w.requant, dn) for w, dn in zip(works, decs)]
    without = [(w.sddmm, w.softmax, w.spmm, w.requant, 0) for w in works]
    pre_span = [head_pipeline(with_dec[:h + 1]) for h in range(h_count)]
    pre_nodec = [head_pipeline(without[:h + 1]) for h in range(h_count)]
    heads: List[Dict] = []
    for h, w in enumerate(works):
        share = pre_nodec[h] - (pre_nodec[h - 1] if h else 0)
        share_dec = pre_span[h] - (pre_span[h - 1] if h else 0)
        in_b = sum(in_sizes) + INDEX_BYTES * nnz_h[h]
        heads.append({
            "head": h, "n_global": int(plan.n_global[h]), "sparse_nnz": nnz_h[h],
            "lines_denser": w.lines[0], "lines_sparser": w.lines[1],
            "sddmm": w.sddmm, "softmax": w.softmax, "spmm": w.spmm, "requant": w.requant,
            "denser": w.dense[0] + w.dense[1], "sparser": w.sparse[0] + w.sparse[1],
            "decode": dec if (ae and h == 0) else 0, "decode_next": decs[h],
            "busy": w.compute, "compute": share, "preprocess": (share_dec - share) + (dec if h == 0 else 0),
            "data": (pre_c + in_c if h == 0 else 0) + (max(0, sum(dma) - span) + out_c if h == h_count - 1 else 0),
            "dma": dma[h],
            "dram_bytes": in_b + head_bytes + (sum(pre_sizes) if h == 0 else 0),
        })

    dram = sum(pre_sizes) + h_count * (sum(in_sizes) + head_bytes) + INDEX_BYTES * sum(nnz_h)
    macs = sum(w.macs for w in works) + (2 * n * d * hc * h_count if ae else 0)
    engines = {
        "denser": sum(w.dense[0] + w.dense[1] for w in works),
        "sparser": sum(w.sparse[0] + w.sparse[1] for w in works),
        "softmax": sum(w.softmax for w in works),
        "decoder": dec * h_count,
        "dma": pre_c + h_count * (in_c + out_c) + sum(ri_c),
    }
    return KernelReport("attention", name, layer, compute, preprocess, data, macs,
                        sum(w.useful_macs for w in works), dram, engines, heads, notes)
