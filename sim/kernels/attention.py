"""Sparse attention on the two-pronged ViTCoD engine: the bits (KERNELS.md) and the cycles.

Functional model: ``scores -> softmax -> S.V -> requantize`` on whole arrays (exact integer sums, so any
order gives the hardware's bits).

Cycle model, one layer, following the HLS loop nests (``hls/kernels/attention``):

* Heads run one after another; all MAC lines work on the current head. Within a head the lines are
  split between the denser engine (the ``n_global`` reordered key columns) and the sparser engine (the
  CSC columns) in proportion to their workloads, which the masks fix ahead of time.
* A line multiplies ``macs_per_line`` features per cycle, so one dot product of length ``d`` takes
  ``ceil(d / macs_per_line)`` cycles, and a loop nest of dot products adds ``PIPE_DOT`` cycles of depth.
* SDDMM (K-stationary): a denser unit is one global key column against all ``N`` queries (queries are
  broadcast to every denser line); a sparser unit is one CSC column against its kept queries, plus one
  cycle to read the column pointer. Sparser lines gather their queries by index, so the sparser engine
  moves at most ``sparse_q_ports`` query rows per cycle however many lines it has.
* Softmax unit: two passes over each row's kept entries at ``softmax_lanes`` per cycle.
* SpMM: denser units are query rows (output-stationary over the global columns); sparser units are CSC
  columns again (each scatters ``p * v`` rows into the head's accumulators).
* Units go to the lines of their engine round-robin in loop order; an engine's time is its busiest line.
* Off-chip: without AE each head loads its Q, K, V; with AE the compressed Q and K of every head are
  loaded once per layer and the decoder engine (``ae_lines`` lines) rebuilds each head's Q and K while
  the previous head computes. Each head's CSC indexes (16-bit on chip) are loaded with it. Loads of head
  ``h+1`` and the store of head ``h-1`` overlap head ``h``'s compute (double buffering).

``preprocess`` is the critical-path cost of index handling (the run with and without the column-pointer
cycles) plus AE decoding that the transfers do not hide; ``data`` is transfer time compute does not hide.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Dict, List, Optional, Tuple

import numpy as np

from vitaccel.hwconfig import HardwareConfig
from vitaccel.sim import numerics as nx
from vitaccel.sim.kernels.autoencoder import ae_decode, ae_encode
from vitaccel.sim.kernels.dram import transfer_cycles
from vitaccel.sim.report import KernelReport
from vitaccel.sim.sparse_format import mask_to_csc, order_from_globals

__all__ = [
    "AEParams",
    "SparsePlan",
    "attention_int",
    "attention_cycles",
    "sanger_cycles",
    "default_theta_d",
    "PIPE_SOFTMAX",
    "pipe_dot",
]

#: Softmax unit depth: max, subtract/shift, table read, sum, divide issue, multiply, round, write.
PIPE_SOFTMAX = 8
#: On-chip index width (bytes) of the CSC arrays: N <= 4096 fits.
INDEX_BYTES = 2


def pipe_dot(cfg: HardwareConfig) -> int:
    """Depth of a dot-product loop: operand read, multiply, adder tree over the line, accumulate, write."""
    return 4 + int(math.log2(cfg.macs_per_line))


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


def default_theta_d(cfg: HardwareConfig, n: int) -> int:
    """Kept-query count above which a key column is cheaper on the denser engine.

    A global column costs ``N`` dot products on lines fed by broadcast; a sparse one costs its ``nnz`` dot
    products but the sparser engine moves at most ``sparse_q_ports`` of them per cycle-slot against
    ``mac_lines`` for the denser one. Break-even: ``nnz / N = sparse_q_ports / mac_lines``.
    """
    return int(n * cfg.sparse_q_ports // cfg.mac_lines)


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

def _busiest_line(costs: np.ndarray, lines: int) -> int:
    """Units dealt round-robin to ``lines`` lines in loop order: the busiest line's total."""
    if costs.size == 0:
        return 0
    if lines <= 0:
        raise ValueError("work but no line to run it on")
    return int(np.bincount(np.arange(costs.size) % lines, weights=costs, minlength=lines).max())


def _split_lines(total: int, w_dense: float, w_sparse: float, sparse_cap: int) -> Tuple[int, int]:
    """Lines for the denser and sparser engines, in proportion to their work (each >= 1 if it has work).

    The sparser engine never gets more lines than its Q ports can feed (``sparse_cap``); the rest go to the
    denser engine, unless it has no work at all.
    """
    if w_dense <= 0:
        return 0, total
    if w_sparse <= 0:
        return total, 0
    if total < 2:
        raise ValueError("both engines have work but fewer than two MAC lines are available")
    ls = int(round(total * w_sparse / (w_dense + w_sparse)))
    ls = min(max(ls, 1), total - 1, sparse_cap)
    return total - ls, ls


@dataclasses.dataclass
class _HeadWork:
    compute: int          # SDDMM + softmax + SpMM, with index cycles
    compute_no_idx: int   # the same without the column-pointer cycles
    denser: int
    sparser: int
    softmax: int
    lines: Tuple[int, int]
    macs: int
    useful_macs: int


def _head_work(cfg: HardwareConfig, lines: int, n: int, d: int, g: int, col_nnz: np.ndarray,
               row_kept: np.ndarray) -> _HeadWork:
    m = cfg.macs_per_line
    cpd = -(-d // m)
    pd = pipe_dot(cfg)
    sparse_cols = col_nnz[g:]                       # every non-global column is visited (pointer read)
    nnz = int(sparse_cols.sum())
    # The sparser engine has one unit per CSC column in both phases (SDDMM: the column's K against its
    # kept queries; SpMM: its V row scattered into those queries' accumulators).
    sp_units = np.where(sparse_cols > 0, sparse_cols * cpd + pd, 0).astype(np.int64)
    w_dense = float(2 * g * n * cpd)
    w_sparse = float(2 * (sp_units.sum() + sparse_cols.size))
    ld, ls = _split_lines(lines, w_dense, w_sparse, cfg.sparse_q_ports)

    def denser_sddmm() -> int:
        # The g x N dot products are split evenly over the denser lines (query ranges of each column);
        # a line pays the pipeline depth once per column it holds.
        if g == 0:
            return 0
        return -(-g * n // ld) * cpd + pd * -(-g // ld)

    def denser_spmm() -> int:
        # Output-stationary: one query row per line at a time, accumulating over the g global columns.
        return _busiest_line(np.full(n if g else 0, g * cpd + pd, dtype=np.int64), ld)

    def sparser(with_idx: bool) -> int:
        if not sparse_cols.size:
            return 0
        units = sp_units + 1 if with_idx else sp_units
        gather_floor = -(-nnz * cpd // cfg.sparse_q_ports)
        return max(_busiest_line(units, ls), gather_floor)

    d1, d2 = denser_sddmm(), denser_spmm()
    s_idx, s_no = sparser(True), sparser(False)
    lanes = cfg.softmax_lanes
    t_sm = int(2 * np.sum(-(-row_kept // lanes))) + PIPE_SOFTMAX if row_kept.sum() else 0
    compute = max(d1, s_idx) + t_sm + max(d2, s_idx)
    compute_no_idx = max(d1, s_no) + t_sm + max(d2, s_no)
    macs = 2 * (g * n + nnz) * d
    useful = 2 * int(row_kept.sum()) * d
    return _HeadWork(compute, compute_no_idx, d1 + d2, 2 * s_idx, t_sm, (ld, ls), macs, useful)


def attention_cycles(cfg: HardwareConfig, plan: SparsePlan, d: int, *, compressed_heads: Optional[int] = None,
                     name: str = "attention", layer: Optional[int] = None) -> KernelReport:
    """Cycles of one attention layer on the ViTCoD engines (see the module docstring for the schedule).

    ``compressed_heads`` is the AE's Hc (None: no AE).
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
    lines = cfg.mac_lines
    col_nnz = plan.column_nnz()
    row_kept = plan.mask.sum(axis=2)  # (H, N)

    works = [_head_work(cfg, lines, n, d, int(plan.n_global[h]), col_nnz[h], row_kept[h]) for h in range(h_count)]

    # Off-chip traffic per head, in issue order.
    def load_in(h: int) -> Tuple[int, int]:
        nnz_h = int(col_nnz[h].sum())
        sizes = [head_bytes] * (1 if ae else 3) + [(n + 1) * INDEX_BYTES, nnz_h * INDEX_BYTES]
        return sum(transfer_cycles(cfg, s) for s in sizes), sum(sizes)

    ins = [load_in(h) for h in range(h_count)]
    out_c = transfer_cycles(cfg, head_bytes)
    if ae:
        # Decoding head h+1's Q and K runs beside head h on the encoder/decoder lines (ae_lines); those
        # lines rejoin the pool when idle, so decoding costs the pool its MACs (dec_share) and can only
        # be the long pole if the AE lines alone are too slow (dec).
        dec_macs = 2 * n * d * hc
        dec_lines = cfg.ae_lines or cfg.mac_lines
        dec = [-(-dec_macs // (dec_lines * cfg.macs_per_line))] * h_count
        dec_share = -(-dec_macs // (cfg.mac_lines * cfg.macs_per_line))
        pre_c = 2 * transfer_cycles(cfg, hc * head_bytes)
        pre_b = 2 * hc * head_bytes
    else:
        dec = [0] * h_count
        dec_share = 0
        pre_c = pre_b = 0

    compute = preprocess = data = 0
    heads: List[Dict] = []
    # Prologue: compressed Q/K (AE), then head 0's inputs while its decode runs.
    pro_pre = max(0, dec[0] - ins[0][0])
    data += pre_c + ins[0][0]
    preprocess += pro_pre
    for h, w in enumerate(works):
        nxt_dma = (ins[h + 1][0] if h + 1 < h_count else 0) + (out_c if h > 0 else 0)
        nxt_dec = dec[h + 1] if h + 1 < h_count else 0
        share = dec_share if h + 1 < h_count else 0
        busy = w.compute + share
        step = max(busy, nxt_dma, nxt_dec)
        dec_exposed = share + max(0, nxt_dec - max(busy, nxt_dma))
        idx = w.compute - w.compute_no_idx
        c = w.compute_no_idx
        exposed = step - w.compute - share
        compute += c
        preprocess += idx + dec_exposed
        data += exposed - (dec_exposed - share)
        heads.append({
            "head": h, "n_global": int(plan.n_global[h]), "sparse_nnz": int(col_nnz[h].sum()),
            "lines_denser": w.lines[0], "lines_sparser": w.lines[1],
            "denser": w.denser, "sparser": w.sparser, "softmax": w.softmax, "decode": dec[h],
            "compute": c, "preprocess": idx + dec_exposed, "data": exposed - (dec_exposed - share),
            "dram_bytes": ins[h][1] + head_bytes + (pre_b if h == 0 else 0),
        })
    data += out_c  # epilogue: last head's output
    heads[-1]["data"] += out_c
    heads[0]["data"] += pre_c + ins[0][0]
    heads[0]["preprocess"] += pro_pre

    dram = pre_b + sum(b for _, b in ins) + h_count * head_bytes
    macs = sum(w.macs for w in works) + (2 * n * d * hc * h_count if ae else 0)
    engines = {
        "denser": sum(w.denser for w in works),
        "sparser": sum(w.sparser for w in works),
        "softmax": sum(w.softmax for w in works),
        "decoder": sum(dec),
        "dma": pre_c + sum(c for c, _ in ins) + h_count * out_c,
    }
    return KernelReport("attention", name, layer, compute, preprocess, data, macs,
                        sum(w.useful_macs for w in works), dram, engines, heads, notes)


def sanger_cycles(cfg: HardwareConfig, mask: np.ndarray, d: int, *, name: str = "attention-sanger",
                  layer: Optional[int] = None) -> KernelReport:
    """S-stationary (Sanger-like) baseline on the same MAC array and memory system.

    The ``mac_lines x macs_per_line`` array is a grid of score PEs: MAC ``c`` of every line holds key ``c``
    of the current block of ``macs_per_line`` keys (K streams down the array regularly, no gathering), and
    each line holds one query. For every key block, the queries with at least one kept entry in it are
    packed onto the lines (Sanger's packing, without its row splitting), ``mac_lines`` per pass; a pass
    accumulates over the ``d`` features. S.V reuses the array output-stationary: a pass over a key block
    takes ``macs_per_line`` keys x ``ceil(d / macs_per_line)`` feature chunks. Q, K and V are loaded once per
    head (full reuse) plus the mask bitmap; no reordering, no AE.
    """
    mask = np.asarray(mask, dtype=bool)
    h_count, n, _ = mask.shape
    L, m = cfg.mac_lines, cfg.macs_per_line
    cpd = -(-d // m)
    pd = pipe_dot(cfg)
    row_kept = mask.sum(axis=2)
    head_bytes = n * d
    mask_bytes = -(-n * n // 8)
    in_c = 3 * transfer_cycles(cfg, head_bytes) + transfer_cycles(cfg, mask_bytes)
    out_c = transfer_cycles(cfg, head_bytes)
    pad = (-n) % m
    blocks = np.pad(mask, ((0, 0), (0, 0), (0, pad))).reshape(h_count, n, -1, m).any(axis=3)  # (H, N, KB)
    passes = -(-blocks.sum(axis=1) // L)  # (H, KB)
    compute = data = 0
    heads = []
    performed = 0
    for h in range(h_count):
        p_h = int(passes[h].sum())
        sddmm = p_h * (d + pd)
        spmm = p_h * (m * cpd + pd)
        rk = row_kept[h]
        t_sm = int(2 * np.sum(-(-rk // cfg.softmax_lanes))) + PIPE_SOFTMAX if rk.sum() else 0
        c = sddmm + t_sm + spmm
        nxt = (in_c if h + 1 < h_count else 0) + (out_c if h > 0 else 0)
        step = max(c, nxt)
        compute += c
        data += step - c
        performed += 2 * p_h * L * m * d
        heads.append({"head": h, "compute": c, "data": step - c, "sddmm": sddmm, "spmm": spmm, "softmax": t_sm,
                      "passes": p_h})
    data += in_c + out_c
    heads[0]["data"] += in_c
    heads[-1]["data"] += out_c
    useful = 2 * int(row_kept.sum()) * d
    dram = h_count * (4 * head_bytes + mask_bytes)
    return KernelReport("attention", name, layer, compute, 0, data, performed, useful, dram,
                        {"array": compute}, heads, ["S-stationary baseline"])
