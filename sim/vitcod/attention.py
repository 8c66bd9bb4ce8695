"""Sparse attention on the two-pronged ViTCoD engine: the bits (KERNELS.md) and the cycles.

Functional model: ``scores -> softmax -> S.V -> requantize`` on whole arrays (exact integer sums, so any
order gives the hardware's bits).

Cycle model, one layer: the loop nests of ``hls/vitcod/attention/attention.h``, each counted as
iterations x II (1) + its pipeline depth (``hls/common/schedule.h``; ``tests/test_cycle_model_vs_hls.py``
checks every term against the C++'s own counters). ``L = mac_lines`` lines of ``M = macs_per_line``
MACs, ``cpd = ceil(d / M)``. Heads run one after another; per head:

* **SDDMM**, both engines at once in one loop on disjoint lines. The host compiler splits the lines per
  head (:func:`line_split`, passed in the descriptor): the sparser engine gets ``ls`` lines, at most
  ``sparse_q_ports`` (each such line has a Q gather port delivering one M-byte chunk per cycle), the
  denser engine the other ``ld = L - ls`` when the head has global columns.
  Denser, K-stationary: a block of ``ld`` global columns puts one k vector on each line (one line per
  cycle), then the ``N`` queries stream past one broadcast chunk per cycle: ``cols + N * cpd`` per block.
  Sparser, K-stationary per engine: one CSC column at a time, its k broadcast, its kept queries dealt to
  the ``ls`` lines in rounds, each gathering its query through its port: ``ceil(nnz / ls) * cpd`` per
  column, 1 cycle for an empty column. Phase: ``max(denser, sparser) + pipe_dot``.
* **Softmax unit**: max stage and exp/sum stage in a row pipeline, ``softmax_lanes`` wide, each visiting
  only a row's live lane blocks (at least one), then a pipelined divider:
  ``sum(b) + max(b) + depths`` (:func:`softmax_cycles`). With the AE the MAC lines decode the next
  head's Q and K meanwhile (the current head's are no longer needed): the phase takes
  ``max(softmax, decode)``; what the decoder adds beyond the softmax is ``preprocess``.
* **S.V**, both engines again: denser output-stationary (rows dealt to the ``ld`` lines, ``g * cpd`` per
  row, V broadcast); sparser per CSC column as in SDDMM (rows within a column are distinct, so its lines
  never update one accumulator at once). ``max(denser, sparser) + pipe_dot``.
* **Requantisation** of the two engines' accumulators: ``L`` outputs per cycle, ``ceil(N d / L) + PIPE_RQ``.
* **Decode** (AE): the mix engine is every MAC line in dot-product mode over the ``Hc`` compressed heads:
  ``2 ceil(N d / L) ceil(Hc / M) + pipe_mix``. Head 0's decode has nothing to hide under (``preprocess``).

Off-chip (:mod:`~vitaccel.sim.common.dram`), one transfer per array in the DRAM layout of DESCRIPTOR.md:
per head order, colptr, two headptr words (int32), the mask rows (``N ceil(N/8)``), V, and Q and K unless
the AE is on; rowidx (int32) streamed twice, in SDDMM and in S.V (no index buffer to overflow); the
output. With the AE the compressed Q and K and the decoder weights come once per layer. Head ``h + 1``'s
loads and head ``h - 1``'s store overlap head ``h`` (double buffering, which the HLS does not express yet:
it issues them in sequence); ``data`` is the transfer time compute does not hide.

The split is the only decision the host makes; everything else follows from the masks.
"""
from __future__ import annotations

import dataclasses
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
    "default_sparse_lines",
    "valid_split",
    "gather_ports",
    "live_blocks",
    "softmax_cycles",
    "requant_cycles",
    "decode_cycles",
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
    """Lines with a Q gather port: the most the sparser engine can have (one M-byte chunk per port per cycle)."""
    return min(cfg.sparse_q_ports, cfg.mac_lines)


def _sparse_phase(col_nnz: np.ndarray, ls, cpd: int):
    """Sparser-engine cycles of one phase: per column ``ceil(nnz / ls) * cpd``, 1 for an empty one.

    ``ls`` may be an array of candidate line counts (the result then has its shape)."""
    nz = np.asarray(col_nnz, dtype=np.int64)
    ls_a = np.asarray(ls, dtype=np.int64)
    if nz.size == 0:
        return np.zeros(ls_a.shape, np.int64) if ls_a.ndim else 0
    if ls_a.ndim == 0:
        return int(np.where(nz == 0, 1, -(-nz // int(ls_a)) * cpd).sum())
    per = np.where(nz[None, :] == 0, 1, -(-nz[None, :] // ls_a[:, None]) * cpd)
    return per.sum(axis=1)


def _dense_sddmm(g: int, ld, n: int, cpd: int):
    """Denser SDDMM: blocks of ``ld`` global columns, each a K load (one line per cycle) then N query chunks."""
    if g == 0:
        return 0
    return g + -(-g // np.asarray(ld)) * n * cpd


def _dense_spmm(g: int, ld, n: int, cpd: int):
    """Denser S.V: rows dealt to ``ld`` lines, ``g * cpd`` cycles per row."""
    if g == 0:
        return 0
    return -(-n // np.asarray(ld)) * g * cpd


def _choose_split(cfg: HardwareConfig, n: int, cpd: int, g: int, sparse_nnz: np.ndarray) -> Tuple[int, int]:
    """The host compiler's split for one head: ``(ld, ls)`` minimising SDDMM + S.V (softmax does not
    depend on it). The sparser engine is capped by its gather ports; the denser engine takes the rest."""
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
    ts = _sparse_phase(sparse_nnz, ls, cpd)
    cost = np.maximum(_dense_sddmm(g, ld, n, cpd), ts) + np.maximum(_dense_spmm(g, ld, n, cpd), ts)
    best = int(np.argmin(cost))  # ties: the fewest sparser lines
    return int(ld[best]), int(ls[best])


def line_split(cfg: HardwareConfig, plan: SparsePlan, d: int) -> Tuple[np.ndarray, np.ndarray]:
    """Per head ``(lines_denser, lines_sparser)``: what the host compiler puts in the attention descriptor
    (the HLS engines take ``lines_sparser``; ``lines_denser = mac_lines - lines_sparser`` when the head has
    global columns, else 0)."""
    h_count, n = plan.shape
    cpd = -(-d // cfg.macs_per_line)
    col_nnz = plan.column_nnz()
    out = [_choose_split(cfg, n, cpd, int(plan.n_global[h]), col_nnz[h, int(plan.n_global[h]):])
           for h in range(h_count)]
    return (np.array([o[0] for o in out], np.int32), np.array([o[1] for o in out], np.int32))


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
               live: np.ndarray, split: Optional[Tuple[int, int]] = None) -> _HeadWork:
    """One head's engine phases (``hls/vitcod/attention/attention.h``: sddmm, softmax_unit, spmm,
    requant_out), for the line split ``split`` (default: the host compiler's)."""
    cpd = -(-d // cfg.macs_per_line)
    sparse_nnz = col_nnz[g:]
    ld, ls = split if split is not None else _choose_split(cfg, n, cpd, g, sparse_nnz)
    if (g > 0 and ld < 1) or (g < n and ls < 1):
        raise ValueError(f"line split ({ld}, {ls}) leaves an engine with work but no line")
    ts = _sparse_phase(sparse_nnz, ls, cpd) if g < n else 0
    td1 = int(_dense_sddmm(g, ld, n, cpd))
    td3 = int(_dense_spmm(g, ld, n, cpd))
    pd = pipe_dot(cfg)
    nnz = int(sparse_nnz.sum())
    return _HeadWork(
        sddmm=max(td1, ts) + pd, softmax=softmax_cycles(cfg, live), spmm=max(td3, ts) + pd,
        requant=requant_cycles(cfg, n, d), dense=(td1, td3), sparse=(ts, ts), lines=(ld, ls),
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
    works = [_head_work(cfg, n, d, int(plan.n_global[h]), col_nnz[h], row_kept[h], live[h], split=splits[h])
             for h in range(h_count)]
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
    ri_c = [2 * transfer_cycles(cfg, INDEX_BYTES * z) for z in nnz_h]  # rowidx streamed in SDDMM and in S.V

    compute = preprocess = data = 0
    heads: List[Dict] = []
    # Prologue: the compressed Q/K and decoder weights (AE), head 0's inputs; then head 0's decode.
    data += pre_c + in_c
    preprocess += dec
    for h, w in enumerate(works):
        dec_next = dec if (ae and h + 1 < h_count) else 0
        excess = max(0, dec_next - w.softmax)  # the decoder runs beside the softmax unit
        busy = w.compute + excess
        dma = (in_c if h + 1 < h_count else 0) + ri_c[h] + (out_c if h > 0 else 0)
        exposed = max(busy, dma) - busy
        compute += w.compute
        preprocess += excess
        data += exposed
        in_b = sum(in_sizes) + 2 * INDEX_BYTES * nnz_h[h]
        heads.append({
            "head": h, "n_global": int(plan.n_global[h]), "sparse_nnz": nnz_h[h],
            "lines_denser": w.lines[0], "lines_sparser": w.lines[1],
            "sddmm": w.sddmm, "softmax": w.softmax, "spmm": w.spmm, "requant": w.requant,
            "denser": w.dense[0] + w.dense[1], "sparser": w.sparse[0] + w.sparse[1],
            "decode": dec if (ae and h == 0) else 0, "decode_next": dec_next,
            "compute": w.compute, "preprocess": excess, "data": exposed,
            "dram_bytes": in_b + head_bytes + (sum(pre_sizes) if h == 0 else 0),
        })
    data += out_c  # epilogue: the last head's output
    heads[-1]["data"] += out_c
    heads[0]["data"] += pre_c + in_c
    heads[0]["preprocess"] += dec

    dram = sum(pre_sizes) + h_count * (sum(in_sizes) + head_bytes) + INDEX_BYTES * 2 * sum(nnz_h)
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
