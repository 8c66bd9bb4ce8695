"""Attention accelerators the ViTCoD and ReViT papers compare against, as cycle models on a config's clock
and memory system: Sanger (MICRO 2021), SpAtten (HPCA 2021), and a documented refusal for ViTALiTy.

The whole-model baselines of ViTCoD itself (dense, pruning only, reordering only, no AE) are compositions
of ViTCoD's engines in :func:`vitaccel.sim.vitcod.api.attention_baselines`; the dataflows that are not
ViTCoD's live here. Each model states where its figures come from: the authors' released code
(read for facts, not copied) and the papers' text; what neither gives is an assumption, listed in the
model's docstring.

Every model returns a :class:`~vitaccel.sim.report.KernelReport` whose ``compute``/``preprocess``/``data``
split is the same as ViTCoD's (``preprocess`` holds run-time mask prediction and top-k selection here:
work the accelerator does before it can compute attention).
"""
from __future__ import annotations

import dataclasses
import math
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from vitaccel.hwconfig import HardwareConfig
from vitaccel.sim.common.dram import transfer_cycles
from vitaccel.sim.report import KernelReport
from vitaccel.sim.schedule import PIPE_RQ

__all__ = [
    "SangerArray", "SANGER_ARRAYS", "sanger_array", "sanger_load_balance", "sanger_subrows",
    "sanger_predict_mask", "sanger_cycles",
    "SpAttenArray", "SPATTEN_ARRAYS", "spatten_array", "spatten_cascade", "quickselect", "quickselect_cycles", "spatten_cycles",
    "SpAttenLayer", "vitality_cycles",
]


# ==========================================================================================================
# Sanger
# ==========================================================================================================

@dataclasses.dataclass(frozen=True)
class SangerArray:
    """Sanger's reconfigurable sparse PE array.

    ``rows`` PE rows, each of ``pes`` PEs (P); a row holds one *subrow*: the kept scores of one query inside
    one ``segment``-wide block of keys (Sanger's 64-key "port" vectors), packed onto the row's PEs with the
    zeros removed, at most P of them (a vector with more is split into ceil(nnz / P) subrows). ``threshold`` and ``predict_bits`` are the mask prediction's
    (softmax of the ``predict_bits``-bit quantised Q.K^T, kept where > threshold).
    """

    name: str
    rows: int
    pes: int
    segment: int = 64
    threshold: float = 0.02
    predict_bits: int = 4

    @property
    def macs(self) -> int:
        return self.rows * self.pes


#: Named arrays. ``code``: what the released Sanger code models (``bench_sanger_v2.py``: TH = 64 rows,
#: NUM_PE_PER_ROW = 16, 1 GHz; its load balance is measured for P = 16 and 32). ``table3``: ReViT's Table III
#: ("64 x 64 systolic MAC unit array"), read as 64 rows of 64 PEs.
SANGER_ARRAYS: Dict[str, SangerArray] = {
    "code": SangerArray("sanger-64x16", 64, 16),
    "code-p32": SangerArray("sanger-32x32", 32, 32),  # the release's "50%" load balance (P = 32), same MACs
    "table3": SangerArray("sanger-64x64", 64, 64),
}


def sanger_array(cfg: HardwareConfig, which: str = "iso") -> SangerArray:
    """A named array, or ``"iso"``: the config's MAC count as rows of 16 PEs (P = 16, the released code's),
    which is how the ViTCoD paper compares ("similar hardware configurations"): 32 x 16 on ``paper``."""
    if which == "iso":
        rows = max(1, cfg.peak_macs_per_cycle // 16)
        return SangerArray(f"sanger-iso-{rows}x16", rows, 16)
    if which not in SANGER_ARRAYS:
        raise ValueError(f"unknown Sanger array {which!r}; choose iso or one of {', '.join(SANGER_ARRAYS)}")
    return SANGER_ARRAYS[which]


def _segment_nnz(mask: np.ndarray, segment: int) -> np.ndarray:
    """(H, N, S) kept entries of each query row in each ``segment``-wide key block (rows padded with zeros
    to a multiple of ``segment``: the release asserts N % 64 == 0; ViT's 197 tokens are not)."""
    m = np.asarray(mask, dtype=bool)
    h, n, nk = m.shape
    pad = (-nk) % segment
    return np.pad(m, ((0, 0), (0, 0), (0, pad))).reshape(h, n, -1, segment).sum(axis=3)


def sanger_subrows(mask: np.ndarray, pes: int = 16, segment: int = 64, *, skip: bool = True) -> np.ndarray:
    """(H, S) subrows per head and key segment after Sanger's split: sum over queries of ceil(nnz / P);
    an empty vector is skipped (``skip``) or still takes a subrow (the release's "no-skip")."""
    nz = _segment_nnz(mask, segment)
    sub = -(-nz // pes)
    if not skip:
        sub = np.maximum(sub, 1)
    return sub.sum(axis=1)


def sanger_load_balance(mask: np.ndarray, pes: int = 16, segment: int = 64, *, skip: bool = True) -> float:
    """Sanger's PE utilisation after pack & split (the release's ``_eval_load_balance``):
    sum(nnz / P) / sum(ceil(nnz / P)) over the non-empty ``segment``-wide row vectors; with
    ``skip=False`` each empty vector adds one to the denominator. 1.0 for a mask with no kept entry."""
    nz = _segment_nnz(mask, segment).ravel()
    live = nz[nz > 0]
    den = float((-(-live // pes)).sum()) + (0.0 if skip else float((nz == 0).sum()))
    return float((live / pes).sum()) / den if den else 1.0


def _quant_sym(x: np.ndarray, bits: int) -> np.ndarray:
    """Symmetric linear quantisation with a dynamic scale (max |x| -> 2^(bits-1) - 1), round half to even
    (torch.round), as the release's ``quant_utils.quantize``; returns the dequantised values."""
    top = 2 ** (bits - 1) - 1
    amax = float(np.abs(x).max())
    if amax == 0.0:
        return np.zeros_like(x)
    scale = top / amax
    return np.clip(np.round(x * scale), -top, top) / scale


def sanger_predict_mask(q: np.ndarray, k: np.ndarray, *, threshold: float = 0.02, bits: int = 4,
                        score_scale: Optional[float] = None) -> np.ndarray:
    """Sanger's run-time mask: softmax of the low-bit Q.K^T > ``threshold``.

    ``q``, ``k``: real-valued (H, N, d). As the released config ``bert_base_sanger_2e-2.json``
    (``normalize_qk: inner_product``, 4-bit symmetric ``quant_qk``, ``probablity_threshold`` 2e-2): each
    query and key vector is divided by its L2 norm, the normalised Q and K are quantised (one dynamic scale
    per tensor, per head here), their product is multiplied back by the norms and by ``score_scale``
    (default 1/sqrt(d)), then softmax per row and the threshold. Returns bool (H, N, N), True = kept.
    """
    q = np.asarray(q, dtype=np.float64)
    k = np.asarray(k, dtype=np.float64)
    if q.ndim != 3 or q.shape != k.shape:
        raise ValueError(f"q and k must both be (H, N, d), got {q.shape} and {k.shape}")
    d = q.shape[2]
    scale = 1.0 / math.sqrt(d) if score_scale is None else float(score_scale)
    qn = np.linalg.norm(q, axis=2, keepdims=True)
    kn = np.linalg.norm(k, axis=2, keepdims=True)
    qn = np.where(qn == 0, 1.0, qn)
    kn = np.where(kn == 0, 1.0, kn)
    out = np.empty((q.shape[0], q.shape[1], k.shape[1]), dtype=bool)
    for h in range(q.shape[0]):
        qq = _quant_sym(q[h] / qn[h], bits)
        kq = _quant_sym(k[h] / kn[h], bits)
        s = (qq @ kq.T) * (qn[h] * kn[h].T) * scale
        s -= s.max(axis=1, keepdims=True)
        e = np.exp(s)
        out[h] = e / e.sum(axis=1, keepdims=True) > threshold
    return out


def sanger_cycles(cfg: HardwareConfig, mask: np.ndarray, d: int, *, array: Optional[SangerArray] = None,
                  predict: str = "overlap", name: str = "attention-sanger",
                  layer: Optional[int] = None) -> KernelReport:
    """Sanger's attention on ``cfg``'s clock and memory system: mask prediction, pack & split, S-stationary
    SDDMM and S.V on its PE array. ``mask`` (H, N, N) is the mask Sanger computes attention on (its own
    prediction, :func:`sanger_predict_mask`, or any mask to compare dataflows at equal sparsity).

    Facts from the released code (github.com/hatsu3/Sanger): the sparse array is TH = 64 rows of 16 PEs
    (``bench_sanger_v2.py``; :data:`SANGER_ARRAYS`); the mask is softmax(4-bit Q.K^T) > 0.02 on a separate
    dense low-bit PE array (``hardware/.../mask.scala``, ``Dense_PE_Array`` with an exp unit and row sums);
    the PE utilisation is sum(nnz/P) / sum(ceil(nnz/P)) over 64-wide row vectors
    (:func:`sanger_load_balance`); an S tile costs ``d + TW`` cycles of Q.K accumulation (TW = 64, "the
    access skew"); Q is reused from the buffer while K and V stream.

    Assumptions (ours; neither the paper text we have nor the release fixes them):

    * Pack & split: every non-empty (query, segment) vector takes ceil(nnz / P) subrows; vectors of
      different queries are not merged into one subrow (the release's utilisation formula counts exactly
      this). The pack module's configuration is computed under the previous pass (no cycles).
    * A pass puts ``rows`` subrows of one segment on the array: SDDMM ``d + segment`` cycles (the release's
      LAT_Qt_Kt); exp in the PEs, scores shifted out along the row: ``pes`` cycles; S.V with the same PEs,
      each subrow's P products reduced along its row, one output feature per cycle: ``d + segment`` (the
      release's v2 charges ``num_subrows + TW`` per tile here; we keep the symmetric form).
    * Softmax normalisation is folded into the output requantisation: ``ceil(N d / rows) + PIPE_RQ``.
    * Prediction: a dense array of ``rows x pes`` ``predict_bits``-bit MACs (the same PE count as the sparse
      array; mask.scala takes its size as a parameter), S-stationary: ceil(N / rows) ceil(N / pes) tiles of
      ``d + segment`` cycles, plus one cycle per tile for the threshold compare against the row sums.
      ``predict="overlap"``: a separate array predicts head h + 1 while the sparse array runs head h (head
      0's prediction is exposed); ``"serial"``: one array does both, one after the other.
    * Data: int8 Q, K, V and outputs (the ViTCoD comparison's precision; the release models 16-bit),
      loaded once per head (full reuse), double-buffered across heads like ViTCoD's; no mask traffic (it is
      predicted on chip).
    """
    if predict not in ("overlap", "serial"):
        raise ValueError(f"predict must be 'overlap' or 'serial', got {predict!r}")
    arr = array if array is not None else sanger_array(cfg)
    mask = np.asarray(mask, dtype=bool)
    h_count, n, _ = mask.shape
    R, P, W = arr.rows, arr.pes, arr.segment
    subrows = sanger_subrows(mask, P, W)                     # (H, S)
    passes = -(-subrows // R)                                # (H, S)
    head_bytes = n * d
    in_c = 3 * transfer_cycles(cfg, head_bytes)
    out_c = transfer_cycles(cfg, head_bytes)
    pred_tiles = -(-n // R) * -(-n // P)
    pred = pred_tiles * (d + W) + pred_tiles
    t_rq = -(-n * d // R) + PIPE_RQ
    compute = preprocess = data = 0
    heads: List[Dict] = []
    slots = 0
    for h in range(h_count):
        p_h = int(passes[h].sum())
        sddmm = p_h * (d + W)
        exp = p_h * P
        spmm = p_h * (d + W)
        c = sddmm + exp + spmm + t_rq
        if predict == "serial":
            pre = pred
        else:  # the next head's prediction runs beside this head; head 0's has nothing to hide under
            nxt_pred = pred if h + 1 < h_count else 0
            pre = max(0, nxt_pred - c) + (pred if h == 0 else 0)
        busy = c + pre
        dma = (in_c if h + 1 < h_count else 0) + (out_c if h > 0 else 0)
        exposed = max(busy, dma) - busy
        compute += c
        preprocess += pre
        data += exposed
        slots += p_h * R * P
        heads.append({"head": h, "compute": c, "preprocess": pre, "data": exposed, "predict": pred,
                      "sddmm": sddmm, "softmax": exp, "spmm": spmm, "requant": t_rq, "passes": p_h,
                      "subrows": int(subrows[h].sum()),
                      "load_balance": sanger_load_balance(mask[h:h + 1], P, W)})
    data += in_c + out_c
    heads[0]["data"] += in_c
    heads[-1]["data"] += out_c
    useful = 2 * int(mask.sum()) * d
    performed = 2 * slots * d + h_count * n * n * d  # + the dense low-bit prediction
    dram = h_count * 4 * head_bytes
    engines = {"array": compute, "predict": pred * h_count, "dma": h_count * (in_c + out_c)}
    notes = [f"{arr.name}: {R} rows x {P} PEs, {W}-key segments, prediction {predict}",
             f"load balance {sanger_load_balance(mask, P, W):.3f}, density {mask.mean():.3f}"]
    return KernelReport("attention", name, layer, compute, preprocess, data, performed, useful, dram,
                        engines, heads, notes)


# ==========================================================================================================
# SpAtten
# ==========================================================================================================

@dataclasses.dataclass(frozen=True)
class SpAttenArray:
    """SpAtten's datapath: a Q.K module and a P.V module of ``multipliers`` multipliers each (pipelined
    one behind the other), a top-k engine whose comparators and zero eliminator take ``topk_width``
    elements per cycle, and (``overlap_dram``) whether DRAM time hides under compute."""

    name: str
    multipliers: int
    topk_width: int = 4
    overlap_dram: bool = False


#: ``code``: the released simulator's defaults (mit-han-lab/spatten, ``simulator/src/bert.cpp``:
#: numMultipliers = 512 per module, "#Multipliers = 512 * 2", top-k parallelism sizeZE = 4, 16 HBM
#: channels; DRAM, pipeline fill, drain and top-k cycles added, no overlap).
SPATTEN_ARRAYS: Dict[str, SpAttenArray] = {"code": SpAttenArray("spatten-512x2", 512)}


def spatten_array(cfg: HardwareConfig, which: str = "iso") -> SpAttenArray:
    """A named datapath, or ``"iso"``: the config's MACs split evenly between the Q.K and P.V modules
    (256 + 256 on ``paper``: the ViTCoD paper's "similar hardware configurations")."""
    if which == "iso":
        m = max(1, cfg.peak_macs_per_cycle // 2)
        return SpAttenArray(f"spatten-iso-{m}x2", m)
    if which not in SPATTEN_ARRAYS:
        raise ValueError(f"unknown SpAtten datapath {which!r}; choose iso or one of {', '.join(SPATTEN_ARRAYS)}")
    return SPATTEN_ARRAYS[which]


def quickselect(scores: np.ndarray, k: int, width: int, *, seed: int = 0) -> Tuple[int, float]:
    """SpAtten's top-k engine selecting the ``k`` largest of ``scores``: ``(cycles, threshold)``, where the
    top k are the scores >= threshold (the k-th largest). Quick-select, each round streaming the remaining
    candidates through ``width`` comparators and the zero eliminator (``len / width + 3`` cycles, +1 for the
    state change), a random pivot per round (the release's ``simTopK``, which draws random scores; we run it
    on the real ones). Fill and drain of the engine's buffer are the caller's. ``k`` outside (0, len): no
    selection, 0 cycles."""
    seq = np.asarray(scores, dtype=np.float64).ravel()
    if k <= 0 or k >= seq.size:
        return 0, (-np.inf if k >= seq.size else np.inf)
    rng = np.random.default_rng(seed)
    cycles = 0
    want = int(k)
    while True:
        pivot = float(seq[rng.integers(0, seq.size)])
        big = seq[seq > pivot]
        n_eq = int((seq == pivot).sum())
        cycles += seq.size // width + 3 + 1
        if big.size >= want:
            if big.size == want:  # the k largest are exactly those above the pivot
                return cycles, float(big.min())
            seq = big
        elif big.size + n_eq >= want:  # the k-th largest is the pivot
            return cycles, pivot
        else:
            want -= big.size + n_eq
            seq = seq[seq < pivot]


def quickselect_cycles(scores: np.ndarray, k: int, width: int, *, seed: int = 0) -> int:
    """Cycles of :func:`quickselect`."""
    return quickselect(scores, k, width, seed=seed)[0]


@dataclasses.dataclass(frozen=True)
class SpAttenLayer:
    """One layer as SpAtten runs it: the tokens alive (queries = keys) and heads alive, and the top-k
    selections it performs after the layer (``next_tokens`` tokens, ``next_heads`` heads)."""

    tokens: np.ndarray        # int indices of the alive tokens (original order)
    heads: np.ndarray         # int indices of the alive heads
    importance: np.ndarray    # (len(tokens),) cumulative token importance after this layer
    next_tokens: int
    head_importance: Optional[np.ndarray] = None  # (len(heads),) when head pruning selects after this layer
    next_heads: int = 0


def spatten_cascade(maps: Sequence[np.ndarray], token_keep: Sequence[float], *,
                    head_keep: Optional[Sequence[float]] = None,
                    head_scores: Optional[Sequence[np.ndarray]] = None, keep_cls: bool = True) -> List[SpAttenLayer]:
    """SpAtten's cascade token (and head) pruning over a model's layers.

    ``maps[l]``: (H, N, N) attention probabilities of layer l (a token's importance is the sum, over heads
    and alive queries, of the probability it receives, accumulated over layers: SpAtten Sec. III-A);
    ``token_keep[l]``: fraction of the N tokens alive *in* layer l (non-increasing: once pruned, a token is
    gone from every later layer, as queries and as keys; 1 for layer 0, which has nothing to rank by yet); ``head_keep[l]`` likewise for heads, ranked by
    ``head_scores[l]`` (H,) accumulated (SpAtten ranks by the magnitude of each head's output; the caller
    supplies it). CLS is never pruned (``keep_cls``: a ViT classifies from it). The probabilities of a pruned
    map are taken from the unpruned map restricted to alive tokens and renormalised (our assumption: the
    maps are the dense model's).
    """
    L = len(maps)
    if len(token_keep) != L:
        raise ValueError(f"token_keep needs one entry per layer ({L}), got {len(token_keep)}")
    if any(b > a + 1e-12 for a, b in zip(token_keep, token_keep[1:])) or not all(0 < t <= 1 for t in token_keep):
        raise ValueError(f"token_keep must be non-increasing fractions in (0, 1], got {list(token_keep)}")
    hk = list(head_keep) if head_keep is not None else [1.0] * L
    if len(hk) != L or any(b > a + 1e-12 for a, b in zip(hk, hk[1:])) or not all(0 < t <= 1 for t in hk):
        raise ValueError(f"head_keep must be {L} non-increasing fractions in (0, 1], got {hk}")
    if token_keep[0] != 1.0 or hk[0] != 1.0:
        raise ValueError("token_keep[0] and head_keep[0] must be 1: the first layer has no importance to rank by yet")
    if any(t < 1 for t in hk) and head_scores is None:
        raise ValueError("head pruning needs head_scores (per layer, per head): SpAtten ranks heads by them")
    h_count, n, _ = np.asarray(maps[0]).shape
    alive = np.arange(n)
    heads = np.arange(h_count)
    imp = np.zeros(n)
    himp = np.zeros(h_count)
    counts = [max(1 + int(keep_cls), int(round(t * n))) for t in token_keep]
    hcounts = [max(1, int(round(t * h_count))) for t in hk]
    out: List[SpAttenLayer] = []
    for l in range(L):
        a = np.asarray(maps[l], dtype=np.float64)[np.ix_(heads, alive, alive)]
        a = a / np.maximum(a.sum(axis=2, keepdims=True), 1e-300)
        imp[alive] += a.sum(axis=(0, 1))
        nxt = counts[l + 1] if l + 1 < L else len(alive)
        nxt_h = hcounts[l + 1] if l + 1 < L else len(heads)
        if head_scores is not None:
            himp[heads] += np.asarray(head_scores[l], dtype=np.float64)[heads]
        out.append(SpAttenLayer(alive.copy(), heads.copy(), imp[alive].copy(), nxt,
                                himp[heads].copy() if nxt_h < len(heads) else None,
                                nxt_h if nxt_h < len(heads) else 0))
        if nxt < len(alive):
            score = imp[alive].copy()
            if keep_cls and alive[0] == 0:
                score[0] = np.inf
            keep = np.sort(alive[np.argsort(-score, kind="stable")[:nxt]])
            alive = keep
        if nxt_h < len(heads):
            keep_h = np.sort(heads[np.argsort(-himp[heads], kind="stable")[:nxt_h]])
            heads = keep_h
    return out


def spatten_cycles(cfg: HardwareConfig, layer: SpAttenLayer, d: int, *, array: Optional[SpAttenArray] = None,
                   name: str = "attention-spatten", index: Optional[int] = None, seed: int = 0) -> KernelReport:
    """One layer on SpAtten (after its cascade pruning, :func:`spatten_cascade`), on ``cfg``'s clock and
    memory system.

    Facts from the released simulator (mit-han-lab/spatten ``simulator/src/bert.cpp``) and the paper:
    keys are processed ``multipliers / d`` per cycle for one query (``parallelism``), so a head takes
    ``queries x ceil(keys / parallelism)`` cycles through the Q.K and P.V modules, pipelined one behind the
    other (``simFillPipeline``); a layer adds the drain of that pipeline (Q.K 11, softmax 87 + a batch, P.V 3,
    requantise and top-k 1 each: ``simDrainPipeline``) and its top-k selections (``simTopK``: fill one
    batch, quick-select rounds of ``len / width + 4`` cycles, drain ``ceil(k / parallelism)``); DRAM cycles
    are added to compute, not overlapped (``run``), unless the datapath says ``overlap_dram``. Attention is
    dense on the alive tokens (SpAtten prunes whole tokens and heads, not entries).

    Assumptions (ours): K, V and Q of the alive tokens and heads are fetched at 8 bits (progressive
    quantisation off: the ViTCoD comparison's int8, no LSB refetch), Q too (the release fetches K and V only:
    in GPT-2 generation a query is one vector; a ViT layer has N of them), and the output is stored, each as
    one transfer per head on ``cfg``'s memory system; one token top-k per layer on the importance
    accumulated over its heads (the cascade is shared by heads), one head top-k where head pruning selects.
    """
    arr = array if array is not None else spatten_array(cfg)
    nt = int(len(layer.tokens))
    nh = int(len(layer.heads))
    par = max(1, arr.multipliers // d)
    batch = -(-nt // par)
    fill = nh * nt * batch
    drain = 11 + (7 + 21 + 23 + 29 + 7 + batch) + 1 + 1 + 3
    topk = 0
    if layer.next_tokens < nt:
        topk += batch + quickselect_cycles(layer.importance, layer.next_tokens, arr.topk_width, seed=seed) \
            + -(-layer.next_tokens // par)
    if layer.head_importance is not None and layer.next_heads < nh:
        topk += 1 + quickselect_cycles(layer.head_importance, layer.next_heads, arr.topk_width, seed=seed + 1) + 1
    head_bytes = nt * d
    dram_c = nh * (3 * transfer_cycles(cfg, head_bytes) + transfer_cycles(cfg, head_bytes))
    compute = fill + drain
    if arr.overlap_dram:
        data = max(0, dram_c - compute)
    else:
        data = dram_c
    macs = 2 * nh * nt * batch * par * d
    useful = 2 * nh * nt * nt * d
    heads = [{"head": int(h), "tokens": nt, "compute": nt * batch} for h in layer.heads]
    engines = {"qk_pv": fill, "drain": drain, "topk": topk, "dma": dram_c}
    notes = [f"{arr.name}: {arr.multipliers} multipliers per module, {par} keys per cycle, top-k width {arr.topk_width}",
             f"{nt} tokens, {nh} heads alive"]
    return KernelReport("attention", name, index, compute, topk, data, macs, useful, nh * 4 * head_bytes,
                        engines, heads, notes)


# ==========================================================================================================
# ViTALiTy
# ==========================================================================================================

def vitality_cycles(*args, **kwargs) -> KernelReport:
    """ViTALiTy (HPCA 2023) is not modelled, on purpose.

    What is available here: its abstract (inference runs only the low-rank component, a first-order Taylor
    attention with row-mean centring, linear in N) and ReViT's Table III (a 64 x 64 systolic MAC array,
    200 KB SRAM, 1 GHz, 256 GB/s). What a cycle model needs and neither gives: how the array is split or
    time-shared between K^T V (d x d per head) and Q (K^T V), the pre-/post-processing units (column sums,
    the divider per row) and their widths, and what overlaps what. A number built on guesses for all of
    these would look like a result and not be one, so this raises; ``vitaccel reproduce`` prints the
    ViTALiTy rows as not modelled.
    """
    raise NotImplementedError("ViTALiTy's accelerator is not modelled: its dataflow, the split of its 64x64 "
                              "systolic array between K^T V and Q (K^T V) and its pre/post-processing units are "
                              "not given by the sources we have (see vitaccel.sim.vitcod.baselines.vitality_cycles)")
