"""The ViTCoD algorithm (HPCA 2023, Section IV): split & conquer attention pruning and the Q/K auto-encoder.

(Over 600 lines because the public API ``vitaccel.models.vitcod.*`` is this one module: masks, calibration,
split & conquer, the AE and the finetuning loop. The finetuning loop moves to a shared module when the
ReViT algorithm reuses it.)

Pipeline (each step a function here, glued together by :mod:`vitaccel.models.train_demo`)::

    insert_autoencoders(model)          # Step 1: AE over the head axis of Q and K
    finetune(model, train, ...)         #   recover accuracy with CE + recon_weight * reconstruction loss
    attn = calibrate(model, train)      # averaged softmax maps, (L, H, N, N)
    res = split_and_conquer_to_sparsity(attn, 0.90, theta_d)   # Step 2: fixed masks + global columns
    apply_masks(model, res)
    finetune(model, train, ...)         # Step 3: finetune with the fixed masks
    save_vitcod(path, model, res)

Sections: split & conquer (numpy only) | calibration | auto-encoder | training | checkpoints | plots.
"""
from __future__ import annotations

import dataclasses
import math
import os
from typing import Callable, Dict, Iterable, List, Optional, Tuple, Union

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from .deit import VisionTransformer, capture_attention, load_checkpoint

__all__ = [
    "SplitResult", "split_and_conquer", "split_and_conquer_to_sparsity",
    "calibrate",
    "HeadAutoEncoder", "QKAutoEncoder", "insert_autoencoders", "compressed_heads_for",
    "apply_masks", "finetune", "evaluate",
    "save_vitcod", "load_vitcod",
    "plot_masks", "plot_sparsity",
]

ArrayLike = Union[np.ndarray, torch.Tensor]

# Cumulative sums within this of theta_p count as having reached it: float rounding must not decide
# whether e.g. 0.5 + 0.3 "reaches" 0.8.
_REACH_TOL = 1e-9
# Rows of an averaged softmax map sum to 1 up to float32 rounding; anything further off is a wrong input.
_ROW_SUM_TOL = 1e-3


# ==================================================================================================
# Split & conquer (Algorithm 1)
# ==================================================================================================

@dataclasses.dataclass
class SplitResult:
    """Output of :func:`split_and_conquer` for maps of shape ``(..., N, N)``.

    mask      bool (..., N, N), True = kept, [.., query, key] in original token order
    order     int64 (..., N): reordered key column c is original key ``order[..., c]``; the global
              columns first, then the rest, each group in increasing original index
    n_global  int64 (...): number of global (denser) columns
    theta_p   float64 (...): the pruning threshold used for each map
    theta_d   float: the column-count threshold (a column is global when it keeps more than this)
    """

    mask: np.ndarray
    order: np.ndarray
    n_global: np.ndarray
    theta_p: np.ndarray
    theta_d: float

    @property
    def sparsity(self) -> float:
        """Fraction of all attention entries pruned."""
        return float(1.0 - self.mask.mean())

    @property
    def map_sparsity(self) -> np.ndarray:
        """Pruned fraction of each map, shape (...)."""
        return 1.0 - self.mask.mean(axis=(-2, -1))

    @property
    def reordered_mask(self) -> np.ndarray:
        """The mask with key columns permuted by ``order`` (global columns leftmost), as in Fig. 8 (c)."""
        return np.take_along_axis(self.mask, self.order[..., None, :], axis=-1)


def _as_maps(attn: ArrayLike) -> np.ndarray:
    """float64 numpy copy of row-normalised maps (..., N, N), or a ValueError naming what is wrong."""
    if isinstance(attn, torch.Tensor):
        attn = attn.detach().cpu().double().numpy()
    a = np.asarray(attn)
    if a.dtype == np.bool_ or not np.issubdtype(a.dtype, np.number):
        raise TypeError(f"attention maps must be a float array, got dtype {a.dtype}")
    a = a.astype(np.float64, copy=False)
    if a.ndim < 2 or a.shape[-1] != a.shape[-2]:
        raise ValueError(f"attention maps must have shape (..., N, N), got {a.shape}")
    if a.shape[-1] < 1:
        raise ValueError("attention maps are empty (N = 0)")
    if not np.isfinite(a).all():
        raise ValueError(f"attention maps contain {int((~np.isfinite(a)).sum())} NaN/inf entries")
    if (a < 0).any():
        idx = tuple(int(i) for i in np.argwhere(a < 0)[0])
        raise ValueError(f"attention maps must be non-negative (softmax outputs); entry {idx} is {a[idx]}")
    rows = a.sum(axis=-1)
    bad = np.abs(rows - 1.0) > _ROW_SUM_TOL
    if bad.any():
        idx = tuple(int(i) for i in np.argwhere(bad)[0])
        raise ValueError(f"attention maps must be row-normalised (each query row sums to 1); row {idx} sums to "
                         f"{rows[idx]:.6f} ({int(bad.sum())} rows off by more than {_ROW_SUM_TOL})")
    return a


def _theta_d_count(theta_d: Union[int, float], n: int) -> float:
    """theta_d as a column-count threshold: an int count, or a float in (0, 1) as a fraction of N."""
    if isinstance(theta_d, (bool, np.bool_)):
        raise TypeError("theta_d must be an int count or a float fraction in (0, 1), got a bool")
    if isinstance(theta_d, (int, np.integer)):
        if theta_d < 0:
            raise ValueError(f"theta_d as a count must be >= 0, got {theta_d}")
        return float(theta_d)
    if isinstance(theta_d, (float, np.floating)):
        if not 0.0 < theta_d < 1.0:
            raise ValueError(f"theta_d as a float is a fraction of N and must lie in (0, 1), got {theta_d}; "
                             "pass an int for a count")
        return float(theta_d) * n
    raise TypeError(f"theta_d must be an int or a float, got {type(theta_d).__name__}")


def _theta_p_array(theta_p, lead: Tuple[int, ...]) -> np.ndarray:
    t = np.asarray(theta_p.detach().cpu().numpy() if isinstance(theta_p, torch.Tensor) else theta_p,
                   dtype=np.float64)
    if not np.isfinite(t).all() or (t < 0).any() or (t > 1).any():
        raise ValueError(f"theta_p must lie in [0, 1], got {theta_p}")
    try:
        return np.broadcast_to(t, lead).copy()
    except ValueError:
        raise ValueError(f"theta_p of shape {t.shape} does not broadcast to the maps' leading shape {lead}") from None


class _SortedRows:
    """Each query row sorted by descending score, with exclusive prefix sums: the shared first half of
    Algorithm 1, computed once so that bisection over theta_p only re-counts."""

    def __init__(self, a: np.ndarray):
        # Descending, ties in increasing key index (lower index first). A stable sort gives that but is
        # twice as slow as introsort, so introsort everything and redo, stably, only rows with ties.
        neg = -a
        self.order = np.argsort(neg, axis=-1)
        s = np.take_along_axis(a, self.order, axis=-1)
        tied = np.nonzero((s[..., 1:] == s[..., :-1]).any(axis=-1))
        if len(tied[0]):
            self.order[tied] = np.argsort(neg[tied], axis=-1, kind="stable")
            s[tied] = np.take_along_axis(a[tied], self.order[tied], axis=-1)
        self.before = np.cumsum(s, axis=-1) - s  # mass of the entries ranked above each one
        np.maximum(self.before, 0.0, out=self.before)
        # Rank of the CLS key in each row: it is forced in, so it counts once whether or not it was kept.
        self.cls_rank = np.argmax(self.order == 0, axis=-1)

    def kept_sorted(self, theta: np.ndarray) -> np.ndarray:
        """bool (..., N, N) in sorted order: an entry is kept while the mass above it is below theta_p,
        so the entry that makes the sum reach theta_p is itself kept (the paper's prose)."""
        return self.before < (theta[..., None, None] - _REACH_TOL)

    def kept_count(self, theta: np.ndarray) -> np.ndarray:
        """Kept entries per map (...), CLS row and column included, without building the mask."""
        n = self.before.shape[-1]
        k = (self.before < (theta[..., None, None] - _REACH_TOL)).sum(axis=-1)  # (..., N) per row
        k = k + (self.cls_rank >= k)  # CLS column forced in where it was not among the top k
        k[..., 0] = n  # CLS row kept whole
        return k.sum(axis=-1)


def _finish(a_shape, sorted_rows: _SortedRows, theta: np.ndarray, theta_d_count: float) -> SplitResult:
    mask = np.zeros(a_shape, dtype=bool)
    np.put_along_axis(mask, sorted_rows.order, sorted_rows.kept_sorted(theta), axis=-1)
    mask[..., 0, :] = True
    mask[..., :, 0] = True
    # Attention map reordering (Alg. 1 lines 7-14): a key column is global when it keeps more than
    # theta_d queries; a stable argsort of "not global" puts globals first, both groups in original order.
    is_global = mask.sum(axis=-2) > theta_d_count
    order = np.argsort(~is_global, axis=-1, kind="stable").astype(np.int64)
    n_global = is_global.sum(axis=-1).astype(np.int64)
    return SplitResult(mask=mask, order=order, n_global=n_global, theta_p=theta, theta_d=theta_d_count)


def split_and_conquer(attn: ArrayLike, theta_p, theta_d: Union[int, float]) -> SplitResult:
    """ViTCoD's split & conquer (Algorithm 1) on averaged, row-normalised attention maps.

    ``attn``: float (..., N, N), numpy or torch, any leading dims (e.g. (L, H)); index 0 is the CLS token.
    ``theta_p``: pruning threshold in [0, 1], a scalar or an array broadcastable to the leading dims.
    ``theta_d``: a key column is *global* when it keeps MORE than ``theta_d`` entries; an int is a count,
    a float in (0, 1) a fraction of N (compared unrounded: count > theta_d * N).

    Pruning, per query row: sort the scores in descending order (ties: lower key index first) and keep
    entries until their cumulative sum reaches ``theta_p``. The entry whose addition reaches or crosses
    ``theta_p`` is kept, and none after it; sums within 1e-9 of ``theta_p`` count as reaching it. The CLS
    row and the CLS column are always kept, so every row keeps at least one entry.

    Deliberate difference: the paper's pseudo-code (the loop exits with idx_p one past the crossing entry
    and line 6 keeps ranks <= idx_p) and the authors' release keep one entry beyond the crossing one; we
    follow the paper's prose ("accumulated until their sum reaches theta_p"), keeping exactly up to it.
    The pseudo-code also sorts the whole map at once (idx_p < n^2); the prose, and this function,
    work per query ("for each query, we select only attentions of high value").

    Returns a :class:`SplitResult` (mask in original order, column order with globals first, n_global).
    """
    a = _as_maps(attn)
    theta = _theta_p_array(theta_p, a.shape[:-2])
    return _finish(a.shape, _SortedRows(a), theta, _theta_d_count(theta_d, a.shape[-1]))


def split_and_conquer_to_sparsity(attn: ArrayLike, target: float, theta_d: Union[int, float], *,
                                  tol: float = 0.005, iters: int = 48) -> SplitResult:
    """:func:`split_and_conquer` with theta_p chosen per layer so the pruned fraction reaches ``target``.

    One theta_p per layer: for ``attn`` of shape (L, H, N, N) one per l, shared by its heads; for more
    leading dims one per index of all but the last (heads) axis; for (H, N, N) or (N, N) a single one.
    Bisection finds, per layer, the largest theta_p whose sparsity is still >= target (the kept count
    only grows with theta_p), so each layer, and hence the whole model, is at or just above target.
    Raises ValueError if the target is out of reach (the CLS row/column bound sparsity from above) or
    the result misses it by more than ``tol`` (a layer whose maps are too peaked to be pruned finely).
    """
    if not 0.0 <= target < 1.0:
        raise ValueError(f"target sparsity must lie in [0, 1), got {target}")
    a = _as_maps(attn)
    n = a.shape[-1]
    lead = a.shape[:-2]
    group_shape = lead[:-1] if len(lead) >= 2 else ()
    rows = _SortedRows(a)
    per_group = (lambda theta: rows.kept_count(np.broadcast_to(theta[..., None], lead))) if lead else rows.kept_count
    total_per_group = (lead[-1] if lead else 1) * n * n

    def sparsity(theta: np.ndarray) -> np.ndarray:
        kept = per_group(theta)
        if lead:
            kept = kept.sum(axis=-1)
        return 1.0 - kept / total_per_group

    lo = np.zeros(group_shape)
    hi = np.ones(group_shape)
    best = sparsity(lo)
    if (best < target).any():
        raise ValueError(f"target sparsity {target:.4f} is out of reach: keeping only the CLS row and column "
                         f"already leaves sparsity {float(best.min()):.4f} (N = {n})")
    # A layer already sparse enough with everything summed in (theta_p = 1) keeps theta_p = 1.
    done = sparsity(hi) >= target
    for _ in range(iters):  # invariant: sparsity(lo) >= target > sparsity(hi)
        mid = 0.5 * (lo + hi)
        ok = sparsity(mid) >= target
        lo = np.where(ok, mid, lo)
        hi = np.where(ok, hi, mid)
    lo = np.where(done, 1.0, lo)
    theta = np.broadcast_to(lo[..., None], lead).copy() if lead else lo
    res = _finish(a.shape, rows, theta, _theta_d_count(theta_d, n))
    if abs(res.sparsity - target) > tol:
        raise ValueError(f"reached sparsity {res.sparsity:.4f}, more than {tol} from target {target:.4f}: "
                         "the maps are too peaked for theta_p to step finely enough")
    return res


# ==================================================================================================
# Calibration: averaged attention maps
# ==================================================================================================

def _batch_images(batch) -> torch.Tensor:
    """Images of a batch given as a tensor, or as (images, labels, ...) / [images, ...]."""
    if isinstance(batch, torch.Tensor):
        return batch
    if isinstance(batch, (tuple, list)) and batch and isinstance(batch[0], torch.Tensor):
        return batch[0]
    if isinstance(batch, dict) and "image" in batch:
        return batch["image"]
    raise TypeError(f"a batch must be an image tensor or an (images, labels) pair, got {type(batch).__name__}")


def _resolve_device(device) -> torch.device:
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def calibrate(model: VisionTransformer, data: Iterable, *, seed: int = 0, device=None,
              max_batches: Optional[int] = None, progress: bool = True) -> np.ndarray:
    """Average softmax attention maps over ``data``, per layer and head: float64 (L, H, N, N).

    ``data`` yields image batches or (images, labels) batches (a DataLoader, a list, a generator). Each
    layer's maps are added to a float64 running sum as they are produced, so memory is one (L, H, N, N)
    array whatever the dataset size. The model runs in eval mode under no_grad and is put back in the
    mode it was in. Deterministic: the RNG is seeded and the sums follow the data order.
    """
    device = _resolve_device(device)
    torch.manual_seed(seed)
    was_training = model.training
    model.eval().to(device)
    sums: Dict[int, torch.Tensor] = {}
    count = 0

    def accumulate(layer: int, probs: torch.Tensor) -> None:
        s = probs.sum(dim=0, dtype=torch.float64)
        if layer in sums:
            sums[layer] += s
        else:
            sums[layer] = s

    total = len(data) if hasattr(data, "__len__") else None
    if max_batches is not None and total is not None:
        total = min(total, max_batches)
    try:
        with torch.no_grad(), capture_attention(model, accumulate):
            for i, batch in enumerate(tqdm(data, total=total, desc="calibrate", disable=not progress, leave=False)):
                if max_batches is not None and i >= max_batches:
                    break
                x = _batch_images(batch).to(device)
                model(x)
                count += x.shape[0]
    finally:
        model.train(was_training)
    if count == 0:
        raise ValueError("calibrate got no images: the data yielded no batches")
    return torch.stack([sums[i] for i in range(model.depth)]).div_(count).cpu().numpy()


# ==================================================================================================
# Auto-encoder over the head axis (Q and K only)
# ==================================================================================================

def compressed_heads_for(num_heads: int, ratio: float = 0.5) -> int:
    """Compressed head count ceil(H * ratio): 12 -> 6, 6 -> 3, 3 -> 2 at the paper's 50%."""
    if not 0.0 < ratio <= 1.0:
        raise ValueError(f"AE compression ratio must lie in (0, 1], got {ratio}")
    return max(1, math.ceil(num_heads * ratio - 1e-9))


class HeadAutoEncoder(nn.Module):
    """Linear encoder H -> Hc and decoder Hc -> H along the head axis of a (B, H, N, d) tensor, shared by
    every token and feature position (the layout the hardware's encoder/decoder engines compute)."""

    def __init__(self, num_heads: int, compressed_heads: int):
        super().__init__()
        if not 1 <= compressed_heads <= num_heads:
            raise ValueError(f"compressed_heads must lie in [1, num_heads={num_heads}], got {compressed_heads}")
        self.encoder = nn.Linear(num_heads, compressed_heads)
        self.decoder = nn.Linear(compressed_heads, num_heads)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder(x.movedim(1, -1)).movedim(-1, 1)  # (B, Hc, N, d)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.decoder(z.movedim(1, -1)).movedim(-1, 1)  # (B, H, N, d)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decode(self.encode(x))

    @torch.no_grad()
    def init_pca(self, mean: torch.Tensor, second_moment: torch.Tensor) -> None:
        """Set the best rank-Hc linear reconstruction (PCA over heads) from E[x] and E[x x^T]."""
        cov = second_moment - torch.outer(mean, mean)
        _, vecs = torch.linalg.eigh(cov)  # ascending eigenvalues
        u = vecs[:, -self.encoder.out_features:].flip(-1)  # (H, Hc), leading components first
        self.encoder.weight.copy_(u.T)
        self.encoder.bias.copy_(-(u.T @ mean))
        self.decoder.weight.copy_(u)
        self.decoder.bias.copy_(mean)


class QKAutoEncoder(nn.Module):
    """ViTCoD's AE module for one attention block: separate head-axis AEs for Q and K; V is untouched.

    ``forward(q, k) -> (q', k', recon)`` with recon = mean((Q - Q')^2) + mean((K - K')^2) (the paper's
    ||Q - Q'|| + ||K - K'||, as mean squared errors). Gradients reach both the AE and the Q/K projections,
    so the model learns Q/K that compress well, jointly with the task.
    """

    def __init__(self, num_heads: int, compressed_heads: int):
        super().__init__()
        self.num_heads = num_heads
        self.compressed_heads = compressed_heads
        self.q = HeadAutoEncoder(num_heads, compressed_heads)
        self.k = HeadAutoEncoder(num_heads, compressed_heads)
        self._stats: Optional[Dict[str, list]] = None  # set while collecting PCA statistics

    def forward(self, q: torch.Tensor, k: torch.Tensor):
        if self._stats is not None:
            for name, x in (("q", q), ("k", k)):
                flat = x.detach().movedim(1, -1).reshape(-1, self.num_heads).double()
                st = self._stats[name]
                st[0] += flat.sum(0)
                st[1] += flat.T @ flat
                st[2] += flat.shape[0]
            return q, k, q.new_zeros(())
        q2, k2 = self.q(q), self.k(k)
        return q2, k2, F.mse_loss(q2, q) + F.mse_loss(k2, k)


def insert_autoencoders(model: VisionTransformer, ratio: float = 0.5, *, compressed_heads: Optional[int] = None,
                        init_data: Optional[Iterable] = None, max_init_batches: Optional[int] = 8,
                        device=None, seed: int = 0, progress: bool = True) -> int:
    """Give every attention block a :class:`QKAutoEncoder`; returns the compressed head count Hc.

    Hc = ``compressed_heads`` or ceil(H * ``ratio``). With ``init_data`` the AEs start as the per-layer
    PCA of Q and K over heads (measured on the dense model, up to ``max_init_batches`` batches), so the
    model starts close to its dense accuracy; without it they keep PyTorch's default init (seeded).
    """
    if any(blk.attn.ae is not None for blk in model.blocks):
        raise ValueError("the model already has auto-encoders")
    h = model.num_heads
    hc = compressed_heads_for(h, ratio) if compressed_heads is None else int(compressed_heads)
    torch.manual_seed(seed)
    param = next(model.parameters())
    aes = [QKAutoEncoder(h, hc).to(device=param.device, dtype=param.dtype) for _ in model.blocks]
    for blk, ae in zip(model.blocks, aes):
        blk.attn.ae = ae
    if init_data is not None:
        dev = _resolve_device(device)
        for ae in aes:
            ae._stats = {n: [torch.zeros(h, dtype=torch.float64, device=dev),
                             torch.zeros(h, h, dtype=torch.float64, device=dev), 0] for n in ("q", "k")}
        was_training = model.training
        model.eval().to(dev)
        try:
            with torch.no_grad():
                total = max_init_batches if max_init_batches is not None else None
                for i, batch in enumerate(tqdm(init_data, desc="AE: Q/K statistics for the PCA start", unit="batch",
                                               total=total, leave=False, disable=not progress)):
                    if max_init_batches is not None and i >= max_init_batches:
                        break
                    model(_batch_images(batch).to(dev))
            for ae in aes:
                for name in ("q", "k"):
                    s, ss, cnt = ae._stats[name]
                    if cnt == 0:
                        raise ValueError("insert_autoencoders: init_data yielded no batches")
                    getattr(ae, name).init_pca((s / cnt).float(), (ss / cnt).float())
        finally:
            for ae in aes:
                ae._stats = None
            model.train(was_training)
    return hc


def apply_masks(model: VisionTransformer, result: Union[SplitResult, np.ndarray, torch.Tensor, None]) -> None:
    """Fix the model's attention masks from a :class:`SplitResult` (or a bool (L, H, N, N) array)."""
    masks = result.mask if isinstance(result, SplitResult) else result
    if masks is not None:
        want = (model.depth, model.num_heads, model.num_tokens, model.num_tokens)
        if tuple(masks.shape) != want:
            raise ValueError(f"masks of shape {tuple(masks.shape)} do not fit the model, which needs {want}")
    model.set_masks(masks)


# ==================================================================================================
# Training
# ==================================================================================================

def _param_groups(model: nn.Module, weight_decay: float) -> List[dict]:
    # As timm/DeiT: no weight decay on biases, norms, the CLS token and the position embedding.
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        (no_decay if p.ndim <= 1 or name in ("cls_token", "pos_embed") else decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def _lr_factor(step: int, total: int, warmup: int) -> float:
    """Linear warm-up then cosine decay to zero, as a multiple of the base learning rate."""
    if step < warmup:
        return (step + 1) / warmup
    t = (step - warmup) / max(1, total - warmup)
    return 0.5 * (1.0 + math.cos(math.pi * min(1.0, t)))


@torch.no_grad()
def evaluate(model: nn.Module, data: Iterable, *, device=None) -> float:
    """Top-1 accuracy (fraction in [0, 1]) over (images, labels) batches."""
    device = _resolve_device(device)
    was_training = model.training
    model.eval().to(device)
    correct = total = 0
    try:
        for x, y in data:
            pred = model(x.to(device)).argmax(-1)
            correct += int((pred == y.to(device)).sum())
            total += len(y)
    finally:
        model.train(was_training)
    if total == 0:
        raise ValueError("evaluate got no labelled images")
    return correct / total


def finetune(model: nn.Module, train_data: Iterable, *, epochs: int, lr: float, recon_weight: float = 1.0,
             checkpoint: Optional[Union[str, os.PathLike]] = None, resume: bool = True, seed: int = 0,
             device=None, weight_decay: float = 0.05, warmup_epochs: float = 0.0, label_smoothing: float = 0.0,
             augment: Optional[Callable[[torch.Tensor], torch.Tensor]] = None, eval_data: Optional[Iterable] = None,
             progress: bool = True, log_epochs: bool = True, desc: str = "finetune") -> List[dict]:
    """Train with cross-entropy + ``recon_weight`` x the AE reconstruction loss; AdamW, warm-up + cosine.

    ``train_data`` must be re-iterable with a length (a DataLoader or a list of (images, labels)).
    Determinism: the global torch RNG is reseeded with ``seed + epoch`` at the start of every epoch, so a
    DataLoader's shuffling (one without its own generator), ``augment`` and any dropout repeat exactly,
    and a resumed run matches an uninterrupted one. The thread count is left as the caller set it.

    With ``checkpoint``, model/optimizer/epoch are written there (atomically) after every epoch; with
    ``resume`` an existing one is loaded and training continues after its last epoch. The model must be
    set up as when the checkpoint was written (AEs inserted, masks applied); different hyper-parameters
    raise ValueError. Uses CUDA when available unless ``device`` says otherwise.

    Returns the per-epoch history: dicts with epoch, loss, ce, recon, lr and (with ``eval_data``) acc.
    """
    if not isinstance(epochs, int) or epochs < 0:
        raise ValueError(f"epochs must be a non-negative int, got {epochs!r}")
    if not hasattr(train_data, "__len__") or iter(train_data) is train_data:
        raise TypeError("train_data must be re-iterable with a length (a DataLoader or a list of batches), "
                        f"got {type(train_data).__name__}")
    steps_per_epoch = len(train_data)
    if steps_per_epoch == 0:
        raise ValueError("train_data has no batches")
    device = _resolve_device(device)
    model.to(device)
    opt = torch.optim.AdamW(_param_groups(model, weight_decay), lr=lr)
    total, warmup = epochs * steps_per_epoch, int(round(warmup_epochs * steps_per_epoch))
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: _lr_factor(s, total, warmup))
    hparams = dict(epochs=epochs, lr=float(lr), recon_weight=float(recon_weight), seed=seed,
                   weight_decay=float(weight_decay), warmup_epochs=float(warmup_epochs),
                   label_smoothing=float(label_smoothing), steps_per_epoch=steps_per_epoch)
    history: List[dict] = []
    start = 0
    if checkpoint is not None and resume and os.path.exists(checkpoint):
        ck = torch.load(checkpoint, map_location=device, weights_only=True)
        if ck.get("hparams") != hparams:
            raise ValueError(f"checkpoint {checkpoint} was written with {ck.get('hparams')}, this run uses "
                             f"{hparams}; delete it or pass resume=False")
        model.load_state_dict(ck["model"])
        opt.load_state_dict(ck["optimizer"])
        sched.load_state_dict(ck["scheduler"])
        start, history = int(ck["epoch"]), list(ck["history"])

    for epoch in range(start, epochs):
        torch.manual_seed(seed + epoch)
        model.train()
        sums = np.zeros(3)
        n_seen = 0
        bar = tqdm(train_data, total=steps_per_epoch, desc=f"{desc} {epoch + 1}/{epochs}",
                   disable=not progress, leave=False)
        for x, y in bar:
            x, y = x.to(device), y.to(device)
            if augment is not None:
                x = augment(x)
            logits, recon = model(x, return_recon=True)
            ce = F.cross_entropy(logits, y, label_smoothing=label_smoothing)
            loss = ce + recon_weight * recon
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            b = len(y)
            sums += b * np.array([loss.item(), ce.item(), float(recon.detach())])
            n_seen += b
            bar.set_postfix(loss=f"{sums[0] / n_seen:.4f}", recon=f"{sums[2] / n_seen:.4f}")
        rec = dict(epoch=epoch + 1, loss=float(sums[0] / n_seen), ce=float(sums[1] / n_seen), recon=float(sums[2] / n_seen),
                   lr=opt.param_groups[0]["lr"])
        if eval_data is not None:
            rec["acc"] = evaluate(model, eval_data, device=device)
        history.append(rec)
        if log_epochs:
            tqdm.write(f"{desc} epoch {epoch + 1}/{epochs}: " + ", ".join(
                f"{k} {v:.4f}" for k, v in rec.items() if k != "epoch"))
        if checkpoint is not None:
            _atomic_save(dict(model=model.state_dict(), optimizer=opt.state_dict(), scheduler=sched.state_dict(),
                              epoch=epoch + 1, history=history, hparams=hparams), checkpoint)
    model.eval()
    return history


def _atomic_save(obj, path) -> None:
    """``torch.save`` through :func:`vitaccel.fileio.atomic_write` (the bundle writer's helper): a unique,
    fsynced temporary file replaced onto ``path``, so a run killed mid-write never leaves a truncated
    checkpoint that resume would trip over, concurrent saves do not collide, and a killed save's
    temporary file is removed by a later save of the same checkpoint."""
    from vitaccel.fileio import atomic_write

    path = os.fspath(path)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    atomic_write(path, lambda f: torch.save(obj, f))


# ==================================================================================================
# Checkpoints: model + AE + fixed masks
# ==================================================================================================

def save_vitcod(path: Union[str, os.PathLike], model: VisionTransformer, result: Optional[SplitResult] = None,
                **meta) -> None:
    """Save weights (timm keys, plus ``blocks.{i}.attn.ae.*`` with AEs), the model config, the AE head
    count and, with ``result``, the masks/order/n_global/theta_p. Loadable with ``torch.load(...,
    weights_only=True)``, with :func:`load_vitcod`, and (weights only) with ``deit.load_checkpoint``."""
    ae = model.blocks[0].attn.ae
    obj = dict(model={k: v.detach().cpu() for k, v in model.state_dict().items()}, config=dict(model.config),
               ae_heads=None if ae is None else int(ae.compressed_heads), meta=dict(meta))
    if result is not None:
        obj["vitcod"] = dict(mask=torch.from_numpy(result.mask), order=torch.from_numpy(result.order),
                             n_global=torch.from_numpy(result.n_global),
                             theta_p=torch.from_numpy(np.asarray(result.theta_p, dtype=np.float64)),
                             theta_d=float(result.theta_d))
    _atomic_save(obj, path)


def load_vitcod(path: Union[str, os.PathLike]) -> Tuple[VisionTransformer, Optional[SplitResult]]:
    """Rebuild the model saved by :func:`save_vitcod` (AEs inserted, masks applied) and its SplitResult."""
    ck = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(ck, dict) or "config" not in ck or "model" not in ck:
        raise ValueError(f"{path} is not a vitcod checkpoint (needs 'model' and 'config'); for a bare state dict "
                         "build the model yourself and use deit.load_checkpoint")
    model = VisionTransformer(**ck["config"])
    if ck.get("ae_heads"):
        insert_autoencoders(model, compressed_heads=int(ck["ae_heads"]))
    load_checkpoint(model, path)
    result = None
    if "vitcod" in ck:
        v = ck["vitcod"]
        result = SplitResult(mask=v["mask"].numpy(), order=v["order"].numpy(), n_global=v["n_global"].numpy(),
                             theta_p=v["theta_p"].numpy(), theta_d=float(v["theta_d"]))
        apply_masks(model, result)
    model.eval()
    return model, result


# ==================================================================================================
# Plots
# ==================================================================================================

def _as_layers_heads(a: np.ndarray, tail: int) -> np.ndarray:
    """View (..., H, *tail) as (L, H, *tail): one leading dim is one layer, more are flattened."""
    lead = a.shape[:a.ndim - tail]
    if len(lead) == 0:
        return a.reshape((1, 1) + a.shape)
    if len(lead) == 1:
        return a.reshape((1,) + a.shape)
    return a.reshape((-1, lead[-1]) + a.shape[a.ndim - tail:])


def _pyplot():
    import matplotlib
    matplotlib.use("Agg")  # files only; never needs a display
    import matplotlib.pyplot as plt
    return plt


def plot_masks(result: SplitResult, path: Union[str, os.PathLike], *, title: Optional[str] = None) -> None:
    """PNG grid, one row per layer: every head's mask after pruning (left block) and after pruning +
    reordering (right block, red line after the global columns), like the paper's Fig. 8 (a)/(c)."""
    plt = _pyplot()
    masks = _as_layers_heads(result.mask, 2)
    reord = _as_layers_heads(result.reordered_mask, 2)
    n_glob = _as_layers_heads(result.n_global, 0)
    sp = _as_layers_heads(result.map_sparsity, 0)
    n_layers, n_heads, n = masks.shape[:3]
    cell = 1.25
    fig, axes = plt.subplots(n_layers, 2 * n_heads, figsize=(2 * n_heads * cell + 0.6, n_layers * cell + 0.9),
                             squeeze=False, gridspec_kw=dict(wspace=0.06, hspace=0.12))
    for l in range(n_layers):
        for h in range(n_heads):
            for j, (m, label) in enumerate(((masks[l, h], "pruned"), (reord[l, h], "pruned + reordered"))):
                ax = axes[l, j * n_heads + h]
                # Greys: kept entries black on white; nearest keeps single kept entries visible.
                ax.imshow(m, cmap="Greys", vmin=0, vmax=1, interpolation="nearest")
                ax.set_xticks([])
                ax.set_yticks([])
                if j == 1 and 0 < n_glob[l, h] < n:
                    ax.axvline(n_glob[l, h] - 0.5, color="red", lw=0.8)
                if l == 0:
                    ax.set_title(f"{label}\nhead {h}" if h == 0 else f"head {h}", fontsize=7)
                if h == 0 and j == 0:
                    ax.set_ylabel(f"layer {l}", fontsize=7)
                ax.set_xlabel(f"{100 * sp[l, h]:.0f}% | g={n_glob[l, h]}" if j == 1 else f"{100 * sp[l, h]:.0f}%",
                              fontsize=6, labelpad=1)
    fig.suptitle(title or f"ViTCoD masks: sparsity {100 * result.sparsity:.1f}%, N={n} "
                          "(black = kept; right: global columns first, red line ends them)", fontsize=9)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)


def plot_sparsity(result: SplitResult, path: Union[str, os.PathLike], *, title: Optional[str] = None) -> None:
    """PNG bar charts per layer and head: attention sparsity (%) and global-column count."""
    plt = _pyplot()
    sp = _as_layers_heads(result.map_sparsity, 0)  # (L, H)
    n_glob = _as_layers_heads(result.n_global, 0)
    n_layers, n_heads = sp.shape
    layers = np.arange(n_layers)
    width = 0.8 / n_heads
    fig, (ax1, ax2) = plt.subplots(2, 1, figsize=(max(5.0, 0.55 * n_layers * max(1, n_heads / 3) + 2), 5.5),
                                   sharex=True)
    colors = [f"C{h % 10}" for h in range(n_heads)]
    for h in range(n_heads):
        ax1.bar(layers - 0.4 + (h + 0.5) * width, 100 * sp[:, h], width, color=colors[h])
    for l in layers:
        ax1.text(l, 101, f"{100 * sp[l].mean():.1f}", ha="center", va="bottom", fontsize=7)
    ax1.axhline(100 * result.sparsity, color="k", ls="--", lw=0.8, label=f"overall {100 * result.sparsity:.1f}%")
    ax1.set_ylabel("pruned attention (%)")
    ax1.set_ylim(0, 110)
    ax1.set_title("per head (bars) and per layer (numbers above)", fontsize=8)
    ax1.legend(loc="lower right", fontsize=8)
    for h in range(n_heads):
        ax2.bar(layers - 0.4 + (h + 0.5) * width, n_glob[:, h], width, color=colors[h], label=f"head {h}")
    ax2.set_ylabel("global columns")
    ax2.set_xlabel("layer")
    ax2.set_xticks(layers)
    if n_heads <= 12:
        ax2.legend(fontsize=7, ncol=min(n_heads, 6))
    fig.suptitle(title or f"ViTCoD split & conquer per layer (theta_d = {result.theta_d:g} entries)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
