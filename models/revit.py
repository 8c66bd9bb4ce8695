"""The ReViT algorithm (IEEE TC 2025, Section III) in PyTorch: the float reference and the training model.

Pieces (each a public function; numpy arrays or torch tensors in, the same kind out)::

    lsh_partition(x, alpha, beta, gamma)     # Eq. 3-4: p-stable hash, group = argmax, ties -> lowest g
    make_lsh(dim, num_groups, gamma, seed)   # alpha ~ N(0, 1), beta ~ U(0, gamma), reproducible
    group_centroids(x, groups, G)            # Eq. 5: means; an empty group -> zeros (and a 0 count)
    blockwise_softmax(scores, block)         # Eq. 8: running max / running sum over key blocks
    differential_attention(q, k, v, groups, G)   # Eq. 6-9 as corrected in REVIT-NOTES.md
    hierarchical_attention(q, k, v, groups, G)   # intra-group + inter-group (centroids), CLS global
    convert_to_revit(model, num_groups=4, gamma=1.0, keep=...)   # a deit model -> ReViTModel

Choices the paper leaves open (also in KERNELS.md, "ReViT"):

* **Partition**: per layer, on the input of the qkv projection (LayerNorm-1 output), shared by the heads
  (differential Q/K/V generation works on input deltas, so one partition per token is all it can use).
  Layer ``l`` draws its hash from ``make_lsh(D, G, gamma, seed + l)``. The CLS token is never hashed.
  The hash is evaluated in float64 from the float32 parameters, so numpy and torch give the same groups.
* **Hierarchy** (``combine="joint"``, the default): a patch attends, in one softmax, to the alive tokens
  of its own group (intra-group, computed differentially) and to the centroids of the other non-empty
  groups (inter-group, the centroids' q/k/v being the projections of the centroid features), each
  centroid weighted by its group size (a ``log l_g`` score bias, i.e. the centroid stands for its
  ``l_g`` members). The CLS row attends to every alive token (itself included), so classification and
  the pruning scores stay global; no patch attends to CLS. Measured alternatives (demo, 4 epochs each,
  ``models/demo/revit_metrics.json``): ``"sum"`` (intra-group output plus the group's context from
  softmax attention among the G centroids) and ``"intra"`` (no inter-group term) reach 98.06% where
  ``"joint"`` reaches 100.00%, and start from 71.9% / 74.2% vs 96.9% right after conversion.
* **Pruning** (Section III-C) at the layers named in ``keep``, after the attention residual and before
  the MLP: group scores are the CLS query's softmax over the non-empty groups' centroid keys
  (head-averaged); patch scores the CLS row's attention (head-averaged; plain attention, not x ||V||,
  which the text describes and needs no V-norm unit). Inference keeps ``ceil(q_g * G'/2^16)`` of the
  ``G'`` non-empty groups, then ``ceil(q_p * l_g/2^16)`` of the ``l_g`` alive patches of each kept group
  (ties to the lower index); ``q = round(ratio * 2^16)`` so the float model and the integer reference
  count identically. The pruned patches are summed into one package token, appended last, weighted by
  their unnormalised CLS attention (EViT's fused token); it is appended at every pruning layer (zero
  when nothing was pruned, so shapes stay fixed) and is an ordinary token afterwards. CLS is never a
  candidate. Training replaces the top-k by a Gumbel-sigmoid keep/drop per group and per patch
  (hard forward, straight-through gradient) on ``4 (log(score * count) - theta)``, a learned threshold
  per layer and level set from the first batch's quantile at the target ratio, the scores detached (the
  gradient trains the thresholds, not the CLS attention), with the keep-ratio loss
  ``(mean keep - ratio)^2`` per level returned as the model's auxiliary loss (``finetune``'s second
  loss). Measured on the demo (README): logit scale 1 (``sum`` hierarchy, 6 epochs at 5e-4) took the
  pruned model from 95.3% to 83.1%; scale 4 with the scores attached (``joint``, 6 epochs at 2e-4) from
  99.4% to 97.2%; detached with the threshold started at the ratio's logit (3 epochs at 1e-4) the
  training-time ratios never reached the targets (keep-ratio loss 0.15) and it ended at 98.9%; as
  shipped 99.4% (keep-ratio loss 0.008).
* Pruned tokens are masked (``alive``), not removed, in this model so that a batch keeps one shape; the
  integer reference (``vitaccel.sim.revit.model``) removes them, and computes the same function.
"""
from __future__ import annotations

import copy
import math
import os
from typing import Dict, Iterable, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .deit import VisionTransformer

__all__ = [
    "lsh_partition", "lsh_codes", "make_lsh", "group_centroids", "blockwise_softmax", "differential_attention",
    "plain_group_attention", "hierarchical_attention", "ReViTAttention", "ReViTModel", "convert_to_revit",
    "keep_q16", "ceil_q16", "finetune_revit", "save_revit", "load_revit", "COMBINE_MODES",
]

ArrayLike = Union[np.ndarray, torch.Tensor]
COMBINE_MODES = ("joint", "sum", "intra")
Q16 = 1 << 16


# ==================================================================================================
# numpy <-> torch
# ==================================================================================================

def _t(x, dtype=None) -> torch.Tensor:
    t = x if isinstance(x, torch.Tensor) else torch.from_numpy(np.asarray(x))
    return t if dtype is None else t.to(dtype)


def _out(t: torch.Tensor, like) -> ArrayLike:
    return t if isinstance(like, torch.Tensor) else t.detach().cpu().numpy()


# ==================================================================================================
# LSH partition (Eq. 3-4) and centroids (Eq. 5)
# ==================================================================================================

def make_lsh(dim: int, num_groups: int, gamma: float, seed: int) -> Tuple[np.ndarray, np.ndarray]:
    """Random p-stable hash parameters: ``alpha`` float64 (G, D) ~ N(0, 1), ``beta`` float64 (G,) ~ U(0, gamma).

    Drawn from ``numpy.random.default_rng(seed)`` (alpha first, then beta), so a seed gives the same hash
    on every platform and numpy version with that generator.
    """
    if not isinstance(dim, int) or dim < 1 or not isinstance(num_groups, int) or num_groups < 1:
        raise ValueError(f"dim and num_groups must be positive ints, got {dim!r}, {num_groups!r}")
    if not (isinstance(gamma, (int, float)) and math.isfinite(gamma) and gamma > 0):
        raise ValueError(f"gamma (the bucket width) must be a finite number > 0, got {gamma!r}")
    rng = np.random.default_rng(seed)
    alpha = rng.standard_normal((num_groups, dim))
    beta = rng.uniform(0.0, float(gamma), num_groups)
    return alpha, beta


def lsh_codes(x: ArrayLike, alpha: ArrayLike, beta: ArrayLike, gamma: float) -> ArrayLike:
    """Hash codes ``floor((x . alpha_g + beta_g) / gamma)``, float64 (..., N, G), same kind as ``x``."""
    if not float(gamma) > 0:
        raise ValueError(f"gamma must be > 0, got {gamma!r}")
    xt = _t(x).detach().to(torch.float64)
    a = _t(alpha).detach().to(device=xt.device, dtype=torch.float64)
    b = _t(beta).detach().to(device=xt.device, dtype=torch.float64)
    if a.ndim != 2 or a.shape[1] != xt.shape[-1] or b.shape != (a.shape[0],):
        raise ValueError(f"alpha must be (G, D={xt.shape[-1]}) and beta (G,), got {tuple(a.shape)}, {tuple(b.shape)}")
    codes = torch.floor((xt @ a.T + b) / float(gamma))
    return _out(codes, x)


def lsh_partition(x: ArrayLike, alpha: ArrayLike, beta: ArrayLike, gamma: float) -> ArrayLike:
    """Group index per token, int64 (..., N): ``argmax_g floor((x . alpha_g + beta_g) / gamma)`` (Eq. 3-4).

    Ties (several g with the same code, common when gamma is wide) go to the lowest g; torch's and numpy's
    argmax both return the first maximum. A pure per-token function, so it is permutation-equivariant and
    identical tokens always share a group.
    """
    codes = lsh_codes(x, alpha, beta, gamma)
    if isinstance(codes, torch.Tensor):
        return codes.argmax(dim=-1)
    return np.argmax(codes, axis=-1).astype(np.int64)


def group_centroids(x: ArrayLike, groups: ArrayLike, num_groups: int, *, weights: Optional[ArrayLike] = None,
                    return_counts: bool = False):
    """Mean of each group's members (Eq. 5): (..., G, D) for ``x`` (..., N, D) and ``groups`` (..., N).

    An empty group's centroid is all zeros, never NaN; ``return_counts=True`` also returns the member
    counts (..., G), where a 0 reports the empty group. ``weights`` (..., N) in [0, 1] weight the members
    (the model passes its alive mask: pruned tokens do not count).
    """
    xt = _t(x)
    g = _t(groups).to(torch.int64)
    if g.shape != xt.shape[:-1]:
        raise ValueError(f"groups must have shape {tuple(xt.shape[:-1])}, got {tuple(g.shape)}")
    if g.numel() and (int(g.min()) < 0 or int(g.max()) >= num_groups):
        raise ValueError(f"group indices must lie in [0, {num_groups}), got [{int(g.min())}, {int(g.max())}]")
    oh = F.one_hot(g, num_groups).to(xt.dtype)
    if weights is not None:
        oh = oh * _t(weights).to(xt.dtype)[..., None]
    counts = oh.sum(-2)                                             # (..., G)
    sums = oh.transpose(-1, -2) @ xt                                 # (..., G, D)
    cent = sums / counts.clamp_min(1e-12)[..., None]
    cent = torch.where((counts > 0)[..., None], cent, torch.zeros_like(cent))
    if return_counts:
        return _out(cent, x), _out(counts, x)
    return _out(cent, x)


# ==================================================================================================
# Blockwise softmax (Eq. 8) and differential attention (Eq. 6-9, corrected)
# ==================================================================================================

def blockwise_softmax(scores: ArrayLike, block: int, mask: Optional[ArrayLike] = None,
                      order: Optional[Sequence[int]] = None) -> ArrayLike:
    """Softmax over the last axis computed block by block (Eq. 8): a running max ``m`` and running sum
    ``l`` are updated per block of ``block`` keys, each block's exponentials are stored with the max they
    were taken against and rescaled by ``exp(m_b - m)`` at the end.

    ``mask`` (bool, broadcastable) drops entries (probability 0); a row with nothing kept is all zeros.
    ``order`` processes the blocks in another order (a permutation of the block indices); the result is
    the same softmax for every block size and order.
    """
    s = _t(scores)
    if not torch.is_floating_point(s):
        raise TypeError(f"scores must be floating point, got {s.dtype}")
    n = s.shape[-1]
    if not isinstance(block, (int, np.integer)) or block < 1:
        raise ValueError(f"block must be a positive int, got {block!r}")
    keep = torch.ones_like(s, dtype=torch.bool) if mask is None else _t(mask).to(torch.bool).expand(s.shape)
    nb = -(-n // int(block)) if n else 0
    blocks = list(range(nb)) if order is None else [int(b) for b in order]
    if sorted(blocks) != list(range(nb)):
        raise ValueError(f"order must be a permutation of the {nb} block indices, got {list(order)}")
    neg = torch.tensor(-math.inf, dtype=s.dtype, device=s.device)
    m = torch.full(s.shape[:-1], -math.inf, dtype=s.dtype, device=s.device)
    l = torch.zeros(s.shape[:-1], dtype=s.dtype, device=s.device)
    stored = []
    for b in blocks:
        sl = slice(b * block, min(n, (b + 1) * block))
        sb, kb = s[..., sl], keep[..., sl]
        m_new = torch.maximum(m, torch.where(kb, sb, neg).amax(-1))
        finite = torch.isfinite(m_new)
        ref = torch.where(finite, m_new, torch.zeros_like(m_new))
        rescale = torch.where(torch.isfinite(m), torch.exp(m - ref), torch.zeros_like(m))
        eb = torch.where(kb, torch.exp(sb - ref[..., None]), torch.zeros_like(sb))
        l = l * rescale + eb.sum(-1)
        m = m_new
        stored.append((sl, eb, ref))
    out = torch.zeros_like(s)
    ref_final = torch.where(torch.isfinite(m), m, torch.zeros_like(m))
    denom = torch.where(l > 0, l, torch.ones_like(l))
    for sl, eb, ref in stored:
        # exp(m_b - m) <= 1 and is exactly 0 for a block seen while the row was still empty (eb = 0 then).
        out[..., sl] = eb * (torch.exp(ref - ref_final) / denom)[..., None]
    return _out(out, scores)


def _groups_of(groups, n: int) -> torch.Tensor:
    g = _t(groups).to(torch.int64)
    if g.shape != (n,):
        raise ValueError(f"groups must have shape ({n},), got {tuple(g.shape)}")
    return g


def differential_attention(q: ArrayLike, k: ArrayLike, v: ArrayLike, groups: ArrayLike, num_groups: int,
                           scale: Optional[float] = None, block: Optional[int] = None) -> ArrayLike:
    """Intra-group attention the differential way: every token attends to the tokens of its own group.

    ``q, k, v`` (H, N, d), ``groups`` (N,) int; returns (H, N, d). Per group, with its centroids
    ``k_c, v_c`` (means over the group) and deltas ``dk_j = k_j - k_c``, ``dv_j = v_j - v_c``:

        S_ij = q_i . k_c + q_i . dk_j                      (Eq. 7 corrected: the base term is per query row)
        A    = blockwise_softmax(S * scale, block)          (Eq. 8, over blocks of the group's keys)
        Z_i  = (sum_j A_ij) v_c + sum_j A_ij dv_j           (Eq. 9 corrected)

    which equals plain per-group softmax attention (:func:`plain_group_attention`). ``block`` defaults
    to the whole group.
    """
    qt, kt, vt = _t(q), _t(k), _t(v)
    if qt.ndim != 3 or kt.shape != qt.shape or vt.shape[:2] != qt.shape[:2]:
        raise ValueError(f"q, k must be (H, N, d) and v (H, N, dv); got {tuple(qt.shape)}, {tuple(kt.shape)}, "
                         f"{tuple(vt.shape)}")
    h, n, d = qt.shape
    g = _groups_of(groups, n).to(qt.device)
    sc = d ** -0.5 if scale is None else float(scale)
    out = torch.zeros(vt.shape, dtype=vt.dtype, device=vt.device)
    for gi in range(num_groups):
        idx = torch.nonzero(g == gi).flatten()
        if idx.numel() == 0:
            continue
        qg, kg, vg = qt[:, idx], kt[:, idx], vt[:, idx]
        kc, vc = kg.mean(1, keepdim=True), vg.mean(1, keepdim=True)      # (H, 1, d)
        dk, dv = kg - kc, vg - vc
        s = (qg @ kc.transpose(1, 2) + qg @ dk.transpose(1, 2)) * sc     # (H, m, 1) broadcast + (H, m, m)
        a = blockwise_softmax(s, int(block) if block else idx.numel())
        out[:, idx] = a.sum(-1, keepdim=True) * vc + a @ dv
    return _out(out, v)


def plain_group_attention(q: ArrayLike, k: ArrayLike, v: ArrayLike, groups: ArrayLike, num_groups: int,
                          scale: Optional[float] = None) -> ArrayLike:
    """The reference the differential form must equal: softmax(q k^T * scale) restricted to same-group keys."""
    qt, kt, vt = _t(q), _t(k), _t(v)
    g = _groups_of(groups, qt.shape[1]).to(qt.device)
    sc = qt.shape[-1] ** -0.5 if scale is None else float(scale)
    s = (qt @ kt.transpose(1, 2)) * sc
    s = s.masked_fill(~(g[:, None] == g[None, :]), -math.inf)
    return _out(torch.softmax(s, -1) @ vt, v)


def hierarchical_attention(q: ArrayLike, k: ArrayLike, v: ArrayLike, groups: ArrayLike, num_groups: int,
                           scale: Optional[float] = None, combine: str = "joint", block: Optional[int] = None) -> ArrayLike:
    """One image's hierarchical attention, float reference (the module computes the same, batched).

    ``q, k, v`` (H, N, d) with the CLS token at index 0; ``groups`` (N-1,) for the patches. The CLS row
    attends to all N tokens. Patches: ``"sum"`` = intra-group (differential) + the group's inter-group
    context, inter-group = softmax attention among the non-empty groups' centroids (q_c, k_c, v_c the
    group means, which equal the projections of the centroid features); ``"intra"`` = intra only;
    ``"joint"`` = one softmax over the own group's tokens and the other non-empty groups' centroids,
    each with a log(group size) bias.
    """
    if combine not in COMBINE_MODES:
        raise ValueError(f"combine must be one of {COMBINE_MODES}, got {combine!r}")
    qt, kt, vt = _t(q), _t(k), _t(v)
    h, n, d = qt.shape
    g = _groups_of(groups, n - 1).to(qt.device)
    sc = d ** -0.5 if scale is None else float(scale)
    out = torch.zeros(vt.shape, dtype=vt.dtype, device=vt.device)
    out[:, 0] = (torch.softmax((qt[:, :1] @ kt.transpose(1, 2)) * sc, -1) @ vt)[:, 0]
    qp, kp, vp = qt[:, 1:], kt[:, 1:], vt[:, 1:]
    cent = [group_centroids(t.transpose(0, 1).reshape(n - 1, -1), g, num_groups, return_counts=True)
            for t in (qp, kp, vp)]
    counts = cent[0][1]
    qc, kc, vc = (c.reshape(num_groups, h, -1).transpose(0, 1) for c, _ in cent)   # (H, G, d)
    ne = counts > 0
    if combine == "joint":
        s_tok = (qp @ kp.transpose(1, 2)) * sc
        s_tok = s_tok.masked_fill(~(g[:, None] == g[None, :]), -math.inf)
        s_c = (qp @ kc.transpose(1, 2)) * sc + torch.log(counts.clamp_min(1e-30))
        other = ne[None, :] & (torch.arange(num_groups, device=g.device)[None, :] != g[:, None])
        s_c = s_c.masked_fill(~other, -math.inf)
        a = torch.softmax(torch.cat([s_tok, s_c], -1), -1)
        out[:, 1:] = a[..., :n - 1] @ vp + a[..., n - 1:] @ vc
        return _out(out, v)
    out[:, 1:] = _t(differential_attention(qp, kp, vp, g, num_groups, scale=sc, block=block))
    if combine == "sum":
        s_cc = ((qc @ kc.transpose(1, 2)) * sc).masked_fill(~ne[None, None, :], -math.inf)
        zc = torch.softmax(s_cc, -1) @ vc                                      # (H, G, d)
        out[:, 1:] = out[:, 1:] + zc[:, g]
    return _out(out, v)


# ==================================================================================================
# Keep ratios as Q16 integers (shared with the integer reference)
# ==================================================================================================

def keep_q16(ratio: float) -> int:
    """A keep ratio in (0, 1] as the integer the bundle stores: ``round(ratio * 2^16)`` in [1, 2^16]."""
    r = float(ratio)
    if not 0.0 < r <= 1.0:
        raise ValueError(f"a keep ratio must lie in (0, 1], got {ratio!r}")
    return max(1, min(Q16, int(round(r * Q16))))


def ceil_q16(q, n):
    """``ceil(q * n / 2^16)`` in integers: how many of ``n`` candidates a Q16 keep ratio keeps (>= 1 when n >= 1)."""
    return (q * n + (Q16 - 1)) // Q16


# ==================================================================================================
# The model
# ==================================================================================================

def _masked_softmax(s: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """softmax of ``s`` over the entries where the weight ``w`` > 0, times ``w`` (0/1 forward values whose
    straight-through gradient reaches the keep decisions). Rows without support are all zeros."""
    lowest = torch.finfo(s.dtype).min
    smax = torch.where(w > 0, s, torch.full_like(s, lowest)).amax(-1, keepdim=True).detach()
    e = torch.exp((s - smax).clamp(max=0.0)) * w
    return e / e.sum(-1, keepdim=True).clamp_min(1e-12)


class ReViTAttention(nn.Module):
    """Hierarchical attention over LSH groups with the same ``qkv``/``proj`` parameters as DeiT's.

    ``forward(h, alive)``: ``h`` (B, N, D) the LayerNorm-1 output (CLS at 0), ``alive`` (B, N) 0/1 per
    token. Returns ``(output (B, N, D), info)`` with the groups, group counts, head-averaged CLS attention
    (B, N) and group scores (B, G) that pruning reads.
    """

    #: No ViTCoD auto-encoder (the shared exporter asks every attention module for one).
    ae = None

    def __init__(self, dim: int, num_heads: int, qkv_bias: bool, num_groups: int, gamma: float, seed: int,
                 combine: str = "joint"):
        super().__init__()
        if combine not in COMBINE_MODES:
            raise ValueError(f"combine must be one of {COMBINE_MODES}, got {combine!r}")
        self.num_heads, self.head_dim = num_heads, dim // num_heads
        self.scale = self.head_dim ** -0.5
        self.num_groups, self.combine, self.seed = num_groups, combine, seed
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)
        alpha, beta = make_lsh(dim, num_groups, float(gamma), seed)
        # float32 is what the bundle stores; hashing upcasts these exact values to float64.
        self.register_buffer("lsh_alpha", torch.from_numpy(alpha.astype(np.float32)))
        self.register_buffer("lsh_beta", torch.from_numpy(beta.astype(np.float32)))
        self.register_buffer("lsh_gamma", torch.tensor(float(np.float32(gamma))))

    def partition(self, h: torch.Tensor) -> torch.Tensor:
        """Groups of the patch tokens (B, N-1) from the LayerNorm-1 output."""
        return lsh_partition(h[:, 1:].detach(), self.lsh_alpha, self.lsh_beta, float(self.lsh_gamma))

    def forward(self, h: torch.Tensor, alive: torch.Tensor):
        b, n, dim = h.shape
        nh, d, G = self.num_heads, self.head_dim, self.num_groups
        groups = self.partition(h)                                          # (B, P)
        alive_p = alive[:, 1:]
        oh = F.one_hot(groups, G).to(h.dtype) * alive_p[..., None]          # (B, P, G)
        counts = oh.sum(1)                                                   # (B, G)
        nonempty = (counts > 0.5).to(h.dtype)
        q, k, v = self.qkv(h).reshape(b, n, 3, nh, d).permute(2, 0, 3, 1, 4).unbind(0)   # (B, H, N, d)
        s = (q * self.scale) @ k.transpose(-2, -1)                          # (B, H, N, N)
        same = (groups[:, :, None] == groups[:, None, :]).to(h.dtype)
        w = torch.zeros(b, n, n, dtype=h.dtype, device=h.device)
        w[:, 0, :] = alive
        w[:, 1:, 1:] = same * alive_p[:, None, :]
        # Centroids of the alive members' input features; their q/k/v are projections (bias included).
        xc = (oh.transpose(1, 2) @ h[:, 1:]) / counts.clamp_min(1.0)[..., None]     # (B, G, D)
        # F.linear, not self.qkv(...): calibration hooks on qkv must see the tokens' outputs only.
        qc, kc, vc = F.linear(xc, self.qkv.weight, self.qkv.bias).reshape(b, G, 3, nh, d).permute(2, 0, 3, 1, 4).unbind(0)  # (B, H, G, d)
        if self.combine == "joint":
            s_c = (q * self.scale) @ kc.transpose(-2, -1) + torch.log(counts.clamp_min(1.0))[:, None, None, :]
            other = nonempty[:, None, :] * (groups[:, :, None] != torch.arange(G, device=h.device)).to(h.dtype)
            w_c = torch.zeros(b, n, G, dtype=h.dtype, device=h.device)
            w_c[:, 1:] = other
            a_all = _masked_softmax(torch.cat([s, s_c], -1), torch.cat([w, w_c], -1)[:, None])
            attn = a_all[..., :n]
            out = attn @ v + a_all[..., n:] @ vc
        else:
            attn = _masked_softmax(s, w[:, None])
            out = attn @ v
            if self.combine == "sum":
                sc = (qc * self.scale) @ kc.transpose(-2, -1)               # (B, H, G, G)
                zc = _masked_softmax(sc, nonempty[:, None, None, :]) @ vc
                ctx = zc.gather(2, groups[:, None, :, None].expand(b, nh, n - 1, d))
                out = out + torch.cat([torch.zeros_like(ctx[:, :, :1]), ctx], 2)
        # Group importance: the CLS query against the centroid keys (Section III-C, global group pruning).
        sg = (q[:, :, :1] * self.scale) @ kc.transpose(-2, -1)              # (B, H, 1, G)
        group_score = _masked_softmax(sg, nonempty[:, None, None, :]).mean(1)[:, 0]
        info = dict(groups=groups, counts=counts, cls_attn=attn[:, :, 0].mean(1), group_score=group_score)
        out = out.transpose(1, 2).reshape(b, n, dim)
        return self.proj(out), info


def _gumbel_keep(z: torch.Tensor, tau: float = 1.0) -> torch.Tensor:
    """Binary Gumbel-softmax (logistic noise), hard 0/1 forward, straight-through sigmoid gradient."""
    u = torch.rand_like(z).clamp(1e-6, 1 - 1e-6)
    soft = torch.sigmoid((z + torch.log(u) - torch.log1p(-u)) / tau)
    hard = (soft > 0.5).to(z.dtype)
    return hard - soft.detach() + soft


def _rank_desc(score: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Rank (0 = best) of each entry along the last axis by descending score, ties to the lower index;
    invalid entries rank after every valid one."""
    key = torch.where(valid, score, torch.full_like(score, -math.inf))
    order = torch.sort(key, dim=-1, descending=True, stable=True).indices
    rank = torch.empty_like(order)
    rank.scatter_(-1, order, torch.arange(order.shape[-1], device=order.device).expand_as(order).contiguous())
    return rank


class ReViTModel(VisionTransformer):
    """DeiT with ReViT attention in every block and semantic hierarchical pruning at the ``keep`` layers.

    ``forward(x, return_recon=True)`` returns ``(logits, aux)`` with ``aux`` the keep-ratio loss (0 when
    not training or without pruning), which is what lets :func:`vitcod.finetune` train it unchanged
    (``recon_weight`` is the keep-ratio loss weight). ``trace`` (a dict, or None) collects per layer the
    groups, alive masks and pruning decisions of the last forward.
    """

    def __init__(self, config: Mapping, *, num_groups: int = 4, gamma: float = 1.0, seed: int = 0,
                 combine: str = "joint", keep: Optional[Mapping[int, Tuple[float, float]]] = None):
        super().__init__(**config)
        self.revit = dict(num_groups=int(num_groups), gamma=float(np.float32(gamma)), seed=int(seed), combine=combine)
        for i, blk in enumerate(self.blocks):
            old = blk.attn
            blk.attn = ReViTAttention(self.config["embed_dim"], self.config["num_heads"], self.config["qkv_bias"],
                                      num_groups, gamma, seed + i, combine)
            del old
        self.prune_theta = nn.ParameterDict()
        self.keep: Dict[int, Tuple[int, int]] = {}
        self.set_keep(keep)
        self.trace: Optional[dict] = None
        # Logit scale of the training-time keep decisions. The logistic noise is fixed (std 1.8), so at 1
        # the hard decisions are mostly noise and finetuning collapsed (95.3% -> 83.1% on the demo); at 4
        # the noise moves a score by about e^(+-0.45) and the decisions follow the scores.
        self.prune_sharpness = 4.0

    # -- pruning settings ---------------------------------------------------------------------------
    def set_keep(self, keep) -> None:
        """Pruning layers and keep ratios: ``{layer: (group_ratio, patch_ratio)}``, a per-layer list with
        None for no pruning, or None. A learned threshold per pruning layer starts at the ratio's logit."""
        items: Dict[int, Tuple[float, float]] = {}
        if keep is None:
            pass
        elif isinstance(keep, Mapping):
            items = {int(k): tuple(v) for k, v in keep.items()}
        else:
            keep = list(keep)
            if len(keep) != self.depth:
                raise ValueError(f"keep has {len(keep)} entries, the model has {self.depth} layers")
            items = {i: tuple(v) for i, v in enumerate(keep) if v is not None}
        self.keep = {}
        for i, pair in sorted(items.items()):
            if not 0 <= i < self.depth or len(pair) != 2:
                raise ValueError(f"keep entry {i}: {pair!r}; expected layer in [0, {self.depth}) and (group, patch) ratios")
            qg, qp = keep_q16(pair[0]), keep_q16(pair[1])
            if qg == Q16 and qp == Q16:
                continue
            self.keep[i] = (qg, qp)
            if str(i) not in self.prune_theta:
                # NaN = not set yet: the first training batch sets it (``_prune``); inference never reads it.
                # A ratio of 1 never drops (a threshold far below every score).
                init = [math.nan if r < 1 else -1e4 for r in (qg / Q16, qp / Q16)]
                self.prune_theta[str(i)] = nn.Parameter(torch.tensor(init, dtype=torch.float32))

    def keep_ratios(self) -> List[Tuple[float, float]]:
        return [(self.keep[i][0] / Q16, self.keep[i][1] / Q16) if i in self.keep else (1.0, 1.0)
                for i in range(self.depth)]

    # -- forward ------------------------------------------------------------------------------------
    def _prune(self, i: int, x: torch.Tensor, alive: torch.Tensor, info: dict):
        qg, qp = self.keep[i]
        groups, counts = info["groups"], info["counts"]
        a = info["cls_attn"][:, 1:]                                          # (B, P)
        sg = info["group_score"]                                             # (B, G)
        alive_p = alive[:, 1:]
        nonempty = counts > 0.5
        loss = x.new_zeros(())
        if self.training:
            theta = self.prune_theta[str(i)]
            g_ne = nonempty.sum(1, keepdim=True).clamp_min(1).to(x.dtype)
            k = self.prune_sharpness
            # Scores detached: the keep decisions' gradient trains the thresholds, not the CLS attention,
            # which also carries the classification (with it attached, finetuning lost 2.2 points).
            lg = torch.log(sg.detach() * g_ne + 1e-6)
            n_alive = alive_p.sum(1, keepdim=True).clamp_min(1.0)
            lp = torch.log(a.detach() * n_alive + 1e-6)
            if bool(torch.isnan(theta).any()):
                # Start each threshold at the quantile that keeps the target share of the first batch: a
                # scalar at the finetuning learning rate moves too slowly to find it (the keep-ratio loss
                # stayed at 0.15 over 3 epochs from the ratio's logit).
                with torch.no_grad():
                    for j, (vals, q) in enumerate(((lg[nonempty], qg), (lp[alive_p > 0.5], qp))):
                        if torch.isnan(theta[j]):
                            theta[j] = torch.quantile(vals.float(), 1 - q / Q16)
            mg = _gumbel_keep(k * (lg - theta[0])) * nonempty.to(x.dtype)
            mp = _gumbel_keep(k * (lp - theta[1]))
            in_kept = alive_p * mg.gather(1, groups)
            keep = in_kept * mp
            rg = mg.sum() / nonempty.sum().clamp_min(1)
            rp = keep.sum() / in_kept.sum().clamp_min(1.0)
            loss = (rg - qg / Q16) ** 2 + (rp - qp / Q16) ** 2
        else:
            g_ne = nonempty.sum(1)
            keep_g = _rank_desc(sg, nonempty) < ceil_q16(qg, g_ne)[:, None]          # (B, G)
            # Rank each patch among the alive members of its own group: sort by score, count same-group
            # predecessors in that order.
            valid = alive_p > 0.5
            order = torch.sort(torch.where(valid, a, torch.full_like(a, -math.inf)), dim=-1, descending=True,
                               stable=True).indices
            g_sorted = groups.gather(1, order)
            oh = F.one_hot(g_sorted, self.revit["num_groups"]) * valid.gather(1, order)[..., None]
            before = (oh.cumsum(1) - oh).gather(2, g_sorted[..., None])[..., 0]
            rank = torch.empty_like(before).scatter_(1, order, before)
            kp = ceil_q16(qp, counts.round().to(torch.int64))                        # (B, G)
            keep = (valid & keep_g.gather(1, groups) & (rank < kp.gather(1, groups))).to(x.dtype)
        pruned = alive_p - keep
        pkg = ((pruned * a)[..., None] * x[:, 1:]).sum(1, keepdim=True)               # EViT's fused token
        ones = alive[:, :1]
        if self.trace is not None:
            self.trace.setdefault("keep", {})[i] = keep.detach()
        return torch.cat([x, pkg], 1), torch.cat([ones, keep, torch.ones_like(ones)], 1), loss

    def forward_features(self, x: torch.Tensor):
        x = self.patch_embed(x)
        x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1) + self.pos_embed
        alive = x.new_ones(x.shape[:2])
        aux = x.new_zeros(())
        for i, blk in enumerate(self.blocks):
            a, info = blk.attn(blk.norm1(x), alive)
            if self.trace is not None:
                self.trace.setdefault("groups", {})[i] = info["groups"].detach()
                self.trace.setdefault("alive", {})[i] = alive.detach()
            x = x + a
            if i in self.keep:
                x, alive, loss = self._prune(i, x, alive, info)
                aux = aux + loss
            x = x + blk.mlp(blk.norm2(x))
        return self.norm(x), aux


def convert_to_revit(model: VisionTransformer, num_groups: int = 4, gamma: float = 1.0,
                     keep: Optional[Union[Mapping[int, Tuple[float, float]], Sequence]] = None, *,
                     seed: int = 0, combine: str = "joint") -> ReViTModel:
    """A :class:`ReViTModel` with ``model``'s weights (a ``vitaccel.models.deit`` model, not changed).

    ``num_groups`` G per layer (default 4, as the paper); ``gamma`` the LSH bucket width on the
    LayerNorm-1 output; ``keep`` the pruning layers and ratios (see :meth:`ReViTModel.set_keep`);
    ``seed`` the hash seed of layer 0 (layer l uses ``seed + l``); ``combine`` the hierarchy mode.
    """
    if not isinstance(model, VisionTransformer):
        raise TypeError(f"expected a vitaccel.models.deit.VisionTransformer, got {type(model).__name__}")
    if any(getattr(blk.attn, "ae", None) is not None for blk in model.blocks):
        raise ValueError("the model has ViTCoD auto-encoders; convert the dense model")
    if any(getattr(blk.attn, "mask", None) is not None for blk in model.blocks):
        raise ValueError("the model has fixed ViTCoD attention masks; convert the dense model")
    new = ReViTModel(model.config, num_groups=num_groups, gamma=gamma, seed=seed, combine=combine, keep=keep)
    sd = {k: v for k, v in model.state_dict().items()}
    missing, unexpected = new.load_state_dict(sd, strict=False)
    bad = [k for k in missing if not (k.endswith(("lsh_alpha", "lsh_beta", "lsh_gamma")) or k.startswith("prune_theta"))]
    if bad or unexpected:
        raise ValueError(f"weights do not map onto the ReViT model: missing {bad}, unexpected {unexpected}")
    device = next(model.parameters()).device
    return new.to(device).train(model.training)


# ==================================================================================================
# Training and checkpoints
# ==================================================================================================

def finetune_revit(model: ReViTModel, train_data: Iterable, *, keep_weight: float = 2.0, **kw) -> List[dict]:
    """:func:`vitaccel.models.vitcod.finetune` (checkpointing, resume, tqdm, per-epoch seeds) with the
    keep-ratio loss as its auxiliary loss: ``loss = CE + keep_weight * keep_ratio_loss``. The history's
    ``recon`` column is that keep-ratio loss."""
    from .vitcod import finetune

    return finetune(model, train_data, recon_weight=keep_weight, **kw)


def save_revit(path: Union[str, os.PathLike], model: ReViTModel, **meta) -> None:
    """Weights (timm keys + ``blocks.{i}.attn.lsh_*`` + ``prune_theta.*``), the DeiT config, the ReViT
    settings and keep ratios; loadable with ``torch.load(weights_only=True)`` and :func:`load_revit`."""
    from .vitcod import _atomic_save

    obj = dict(model={k: v.detach().cpu() for k, v in model.state_dict().items()}, config=dict(model.config),
               revit=dict(model.revit), keep={str(i): list(q) for i, q in model.keep.items()}, meta=dict(meta))
    _atomic_save(obj, path)


def load_revit(path: Union[str, os.PathLike]) -> ReViTModel:
    """Rebuild the model saved by :func:`save_revit` (eval mode)."""
    ck = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(ck, dict) or "revit" not in ck or "config" not in ck:
        raise ValueError(f"{path} is not a ReViT checkpoint (needs 'config' and 'revit')")
    model = ReViTModel(ck["config"], **ck["revit"])
    keep = {int(i): (q[0] / Q16, q[1] / Q16) for i, q in ck.get("keep", {}).items()}
    model.set_keep(keep)
    model.load_state_dict(ck["model"], strict=True)
    return model.eval()
