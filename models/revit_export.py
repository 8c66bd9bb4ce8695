"""int8 export of a ReViT model into a ``revit`` bundle, and float-vs-int8 agreement on the integer reference.

The DeiT part (weights per output channel, activation scales from calibration images, biases, softmax and
output multipliers) is exactly the shared exporter's (``export.activation_scales`` and ``export.build_bundle``);
ReViT adds per layer the LSH parameters, float (``lsh.alpha/beta/gamma``, the model's own float32 values)
and as the integer hash the hardware runs (``lsh.hash_weight/bias/mult/shift`` from
``sim.revit.lsh.hash_params``: alpha at one int8 scale, beta at the accumulator's scale, 1/gamma as a
multiplier and shift), the keep ratios as Q16 integers (``prune.keep_groups/keep_patches``; 2^16 = no
pruning), and ``meta.groups`` (G, hierarchy mode, CLS policy, softmax block, centroid rounding, package
rule, pruning score, hash seed), and the integer whole model (``int`` group: LayerNorms, GELU tables,
residual adds, patch embedding, tokens, head) the accelerator runs around the attention layers.
"""
from __future__ import annotations

from typing import Dict, Iterable, Optional

import numpy as np
import torch

from vitaccel.host.bundle import Bundle, write_bundle
from vitaccel.hwconfig import ConfigLike
from vitaccel.sim.revit.lsh import hash_params

from vitaccel.sim.common.intmodel import int_model_tensors

from .export import activation_scales, build_bundle, int_scales
from .revit import Q16, ReViTModel

__all__ = ["build_revit_bundle", "export_revit_bundle", "revit_agreement", "groups_meta"]


def groups_meta(model: ReViTModel, block: int) -> Dict[str, object]:
    """``meta.groups`` of a bundle of ``model``."""
    r = model.revit
    return {"n_groups": r["num_groups"], "hash": "lsh", "combine": r["combine"], "cls": "global", "block": int(block),
            "centroid": "round_half_up_mean", "package": "cls_attention_sum", "prune_score": "cls_attention",
            "seed": r["seed"]}


def build_revit_bundle(model: ReViTModel, scales: Dict[str, float], *, config: ConfigLike = "paper",
                       block: int = 16, extra: Optional[dict] = None) -> Bundle:
    """Quantise ``model`` with activation ``scales`` into a validated ``revit`` :class:`Bundle`."""
    if not isinstance(model, ReViTModel):
        raise TypeError(f"expected a ReViTModel, got {type(model).__name__}")
    dense = build_bundle(model, scales, config=config, split=None, extra=extra, int_model=False)
    meta = dict(dense.meta)
    meta["method"] = "revit"
    meta["groups"] = groups_meta(model, block)
    t = dict(dense.tensors)
    for i, blk in enumerate(model.blocks):
        p = f"layers.{i}."
        at = blk.attn
        alpha = at.lsh_alpha.detach().cpu().numpy().astype(np.float32)
        beta = at.lsh_beta.detach().cpu().numpy().astype(np.float32)
        gamma = np.array(float(at.lsh_gamma), np.float32)
        A, B, m, s = hash_params(alpha, beta, gamma, t[p + "qkv.in_scale"])
        qg, qp = model.keep.get(i, (Q16, Q16))
        t.update({p + "lsh.alpha": alpha, p + "lsh.beta": beta, p + "lsh.gamma": gamma,
                  p + "lsh.hash_weight": A, p + "lsh.hash_bias": B,
                  p + "lsh.hash_mult": np.array(m, np.int32), p + "lsh.hash_shift": np.array(s, np.int32),
                  p + "prune.keep_groups": np.array(qg, np.int32), p + "prune.keep_patches": np.array(qp, np.int32)})
    # The integer whole model around the attention layers (the same tensors as a ViTCoD bundle's); the package
    # token lives in the residual stream after the attention add, at that point's scale (res1 is calibrated
    # on the pruned stream, package token included: norm2's input).
    t.update(int_model_tensors(t, model.config["depth"], int_scales(scales)))
    return Bundle(meta=meta, tensors=t).validate()


def export_revit_bundle(model: ReViTModel, calib_data: Iterable, path, *, config: ConfigLike = "paper",
                        block: int = 16, pct: float = 99.99, max_batches: Optional[int] = None,
                        extra: Optional[dict] = None) -> Bundle:
    """Calibrate (the shared exporter's percentile scales), quantise, validate and write ``path`` atomically."""
    scales = activation_scales(model, calib_data, pct=pct, max_batches=max_batches)
    bundle = build_revit_bundle(model, scales, config=config, block=block, extra=extra)
    write_bundle(path, bundle)
    return bundle


@torch.no_grad()
def revit_agreement(model: ReViTModel, bundle: Bundle, images, labels=None) -> Dict[str, float]:
    """Float model vs the int8 bundle on the integer reference (``vitaccel.sim.revit.model``)."""
    from vitaccel.sim.revit.model import run_revit

    x = torch.as_tensor(np.asarray(images, np.float32))
    was = model.training
    model.eval()
    try:
        ref = torch.cat([model(x[i:i + 128]) for i in range(0, len(x), 128)]).numpy() if len(x) else np.zeros((0,))
    finally:
        model.train(was)
    got = run_revit(bundle, x.numpy()).logits
    out = {"images": int(len(x)), "top1_agreement": float(np.mean(ref.argmax(1) == got.argmax(1))),
           "max_logit_error": float(np.max(np.abs(ref - got))) if len(x) else 0.0}
    if labels is not None:
        lab = np.asarray(labels)
        out["top1_float"] = float(np.mean(ref.argmax(1) == lab))
        out["top1_int8"] = float(np.mean(got.argmax(1) == lab))
    return out
