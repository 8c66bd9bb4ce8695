"""int8 export: a (sparse, AE) DeiT in PyTorch -> the deployment bundle the board and the simulator run.

Post-training quantisation to the kernel contract (NUMERICS.md) along the int8 model graph of KERNELS.md:

* weights: symmetric int8 per output channel (absmax); AE weights per tensor;
* activations: symmetric int8 per tensor, scales from calibration images (the ``pct`` percentile of
  |x| per batch, averaged over batches: robust to the rare outlier that absmax would let stretch the
  scale); q, k and v share the qkv output scale, the decoded q'/k' come back at that scale;
* biases: int32 at the accumulator's scale; requantisation multipliers and shifts from the scale ratios;
* masks, order, n_global from split & conquer, and the CSC arrays from ``sim.sparse_format.mask_to_csc``
  (the one place they are derived);
* the integer whole model (the bundle's ``int`` tensors: image scale, patch-embedding and head GEMMs,
  CLS/position tokens, LayerNorm, GELU tables, int16 residual adds) from the float tensors and the
  calibrated maxima, by :func:`vitaccel.sim.common.intmodel.int_model_tensors`.

After writing, :func:`agreement` runs the float model and the bundle on the simulator over the same images
and reports top-1 agreement and the largest logit difference.
"""
from __future__ import annotations

import math
from typing import Dict, Iterable, List, Optional, Union

import numpy as np
from tqdm.auto import tqdm
import torch

from vitaccel.host.bundle import FORMAT_VERSION, Bundle, write_bundle
from vitaccel.hwconfig import ConfigLike, load_config
from vitaccel.models.deit import VisionTransformer
from vitaccel.models.vitcod import SplitResult, _batch_images
from vitaccel.sim import numerics as nx
from vitaccel.sim.common.intmodel import MAX_BIAS, RES_MARGIN, int_model_tensors, quant_linear
from vitaccel.sim.quant import absmax_scale, quantize
from vitaccel.sim.vitcod.sparse_format import mask_to_csc

__all__ = ["activation_scales", "int_scales", "build_bundle", "export_bundle", "agreement"]

LINEARS = (("qkv", "attn.qkv"), ("proj", "attn.proj"), ("fc1", "mlp.fc1"), ("fc2", "mlp.fc2"))


def _quantile(a: torch.Tensor, q: float) -> torch.Tensor:
    """``torch.quantile(a, q)`` (linear interpolation) for a 1-D tensor, bit for bit, by selecting only the
    top order statistics when ``q`` is near 1: a full sort of a million values per call made calibration
    the bulk of an export (384 calls for DeiT-Tiny)."""
    n = a.numel()
    ranks = torch.tensor(q, dtype=a.dtype) * (n - 1)         # as torch.quantile: in the input's dtype
    below = int(ranks.to(torch.long))
    above = min(below + 1, n - 1)
    m = n - below                                            # order statistics from the top that are needed
    if m > max(1024, n // 64):
        return torch.quantile(a, q)
    top = torch.topk(a, m, sorted=True).values               # descending: top[n - 1 - i] is the i-th smallest
    return torch.lerp(top[m - 1], top[n - 1 - above], ranks - below)


class _MaxStat:
    """The largest |x| over every batch (int16 residual points, input image, logits: saturation there is
    worse than a coarser step)."""

    def __init__(self):
        self.amax = 0.0

    def update(self, x: torch.Tensor) -> None:
        if x.numel():
            self.amax = max(self.amax, float(x.detach().abs().max()))


class _PercentileStat:
    def __init__(self, pct: float):
        self.pct = pct
        self.total = 0.0
        self.count = 0

    def update(self, x: torch.Tensor) -> None:
        a = x.detach().abs().flatten().float()
        if a.numel() > 1_000_000:  # a strided subsample keeps the percentile cheap on big batches
            a = a[:: a.numel() // 1_000_000 + 1]
        self.total += float(_quantile(a, self.pct / 100.0)) if self.pct < 100 else float(a.max())
        self.count += 1

    def scale(self) -> float:
        amax = self.total / max(self.count, 1)
        return float(np.float32(amax / 127.0 if amax > 0 else 1.0))


@torch.no_grad()
def activation_scales(model: VisionTransformer, data: Iterable, *, pct: float = 99.99,
                      max_batches: Optional[int] = None, progress: bool = True) -> Dict[str, float]:
    """Activation scales at every kernel boundary of the integer graph, from calibration images.

    int8 scales (``pct`` percentile, averaged over batches): ``layers.{i}.{qkv,proj,fc1,fc2}.{in,out}``,
    with an AE ``layers.{i}.ae.{q,k}.enc``, ``patch`` (patch-embedding output) and ``norm`` (final
    LayerNorm, CLS row). Largest |x| over all batches (not scales): ``input`` (pixels; the image's scale is
    it / 127), ``head`` (logits), and the residual stream ``res.x0``, ``layers.{i}.res1``,
    ``layers.{i}.res2`` (:func:`vitaccel.sim.common.intmodel.int_model_tensors` turns those into scales).
    """
    stats: Dict[str, _PercentileStat] = {}
    maxima: Dict[str, _MaxStat] = {}
    hooks = []

    def stat(key: str) -> _PercentileStat:
        return stats.setdefault(key, _PercentileStat(pct))

    def amax(key: str) -> _MaxStat:
        return maxima.setdefault(key, _MaxStat())

    for i, blk in enumerate(model.blocks):
        for short, path in LINEARS:
            mod = blk.get_submodule(path)

            def hook(m, inp, out, key=f"layers.{i}.{short}"):
                stat(key + ".in").update(inp[0])
                stat(key + ".out").update(out)

            hooks.append(mod.register_forward_hook(hook))
        if blk.attn.ae is not None:
            for w in ("q", "k"):
                enc = getattr(blk.attn.ae, w).encoder
                hooks.append(enc.register_forward_hook(
                    lambda m, inp, out, key=f"layers.{i}.ae.{w}.enc": stat(key).update(out)))
        hooks.append(blk.norm2.register_forward_pre_hook(
            lambda m, inp, key=f"layers.{i}.res1": amax(key).update(inp[0])))
        # The stream after layer i is what the next LayerNorm reads (block i+1's norm1, or the final norm):
        # hooked there rather than on the block, which a model may not call as a module (ReViT's does not).
        nxt = model.blocks[i + 1].norm1 if i + 1 < len(model.blocks) else model.norm
        hooks.append(nxt.register_forward_pre_hook(lambda m, inp, key=f"layers.{i}.res2": amax(key).update(inp[0])))
    def patch_hook(m, inp, out):  # a forward hook's non-None return would replace the output
        amax("input").update(inp[0])
        stat("patch").update(out)

    hooks.append(model.patch_embed.register_forward_hook(patch_hook))
    hooks.append(model.blocks[0].norm1.register_forward_pre_hook(lambda m, inp: amax("res.x0").update(inp[0])))
    hooks.append(model.norm.register_forward_hook(lambda m, inp, out: stat("norm").update(out[:, 0])))
    hooks.append(model.head.register_forward_hook(lambda m, inp, out: amax("head").update(out)))
    was_training = model.training
    model.eval()
    try:
        n = 0
        for b, batch in enumerate(tqdm(data, desc="calibrating activation scales", unit="batch", leave=False,
                                       disable=not progress)):
            if max_batches is not None and b >= max_batches:
                break
            model(_batch_images(batch).to(next(model.parameters()).device))
            n += 1
        if n == 0:
            raise ValueError("activation_scales got no calibration batches")
    finally:
        for h in hooks:
            h.remove()
        model.train(was_training)
    out = {k: s.scale() for k, s in stats.items()}
    out.update({k: m.amax for k, m in maxima.items()})
    return out


def int_scales(scales: Dict[str, float]) -> Dict[str, float]:
    """The scales :func:`~vitaccel.sim.common.intmodel.int_model_tensors` takes, from :func:`activation_scales`'s
    output: the input image and the logits at their maximum (with the residual stream's margin for the
    logits, so the top class never saturates on a calibration image), the rest as calibrated."""
    out = dict(scales)
    out["input"] = float(np.float32(scales["input"] / 127.0)) if scales["input"] > 0 else 1.0
    out["head"] = float(np.float32(scales["head"] * RES_MARGIN / 127.0)) if scales["head"] > 0 else 1.0
    return out


def _np(t: torch.Tensor) -> np.ndarray:
    return t.detach().cpu().numpy()


def _quant_mix(weight: np.ndarray, bias: np.ndarray, in_scale: float, out_scale: float, prefix: str) -> Dict[str, np.ndarray]:
    """An AE encoder or decoder: one weight scale per tensor (the engine has one multiplier)."""
    w_scale = float(absmax_scale(weight))
    bq = np.clip(np.rint(bias.astype(np.float64) / (in_scale * w_scale)), -MAX_BIAS, MAX_BIAS)
    m, s = nx.quantize_multiplier(in_scale * w_scale / out_scale)
    return {f"{prefix}_weight": quantize(weight, w_scale), f"{prefix}_bias": bq.astype(np.int32),
            f"{prefix}_mult": np.array(m, np.int32), f"{prefix}_shift": np.array(s, np.int32)}


def build_bundle(model: VisionTransformer, scales: Dict[str, float], *, config: ConfigLike = "paper",
                 split: Optional[SplitResult] = None, extra: Optional[dict] = None, int_model: bool = True) -> Bundle:
    """Quantise ``model`` with activation ``scales`` into a validated :class:`Bundle`.

    ``split`` (masks, order, n_global per layer and head) makes a ``vitcod`` bundle; without it the
    bundle is ``dense``. AE modules in the model are exported when present. ``int_model=False`` leaves out
    the integer whole model (the ``int`` tensors; only ReViT bundles may, until the ReViT accelerator runs it).
    """
    cfg = load_config(config)
    c = model.config
    depth, heads, dim = c["depth"], c["num_heads"], c["embed_dim"]
    n = model.num_tokens
    d = dim // heads
    has_ae = any(blk.attn.ae is not None for blk in model.blocks)
    if has_ae and not all(blk.attn.ae is not None for blk in model.blocks):
        raise ValueError("either every block has an auto-encoder or none does")
    mlp_dim = model.blocks[0].mlp.fc1.out_features
    meta_model = {"arch": "deit", "img_size": c["img_size"], "patch_size": c["patch_size"], "in_chans": c["in_chans"],
                  "num_classes": c["num_classes"], "embed_dim": dim, "depth": depth, "num_heads": heads,
                  "mlp_dim": mlp_dim, "num_tokens": n}
    if has_ae:
        meta_model["ae_heads"] = model.blocks[0].attn.ae.compressed_heads
    meta = {"format_version": FORMAT_VERSION, "model": meta_model,
            "hw": {"config_name": cfg.name, "config_hash": cfg.hash},
            "quant": {"weight_bits": 8, "act_bits": 8, "weight_granularity": "per_channel",
                      "act_granularity": "per_tensor", "calibration": "percentile"},
            "method": "vitcod" if split is not None else "dense",
            "extra": dict(extra or {})}
    t: Dict[str, np.ndarray] = {
        "patch_embed.weight": _np(model.patch_embed.proj.weight).astype(np.float32),
        "patch_embed.bias": _np(model.patch_embed.proj.bias).astype(np.float32),
        "cls_token": _np(model.cls_token).astype(np.float32),
        "pos_embed": _np(model.pos_embed).astype(np.float32),
        "norm.weight": _np(model.norm.weight).astype(np.float32),
        "norm.bias": _np(model.norm.bias).astype(np.float32),
        "head.weight": _np(model.head.weight).astype(np.float32),
        "head.bias": _np(model.head.bias).astype(np.float32),
    }
    if split is not None:
        want = (depth, heads, n, n)
        if split.mask.shape != want:
            raise ValueError(f"split masks have shape {split.mask.shape}, the model needs {want}")
    for i, blk in enumerate(model.blocks):
        p = f"layers.{i}."
        for nm in ("norm1", "norm2"):
            ln = getattr(blk, nm)
            t[p + nm + ".weight"] = _np(ln.weight).astype(np.float32)
            t[p + nm + ".bias"] = _np(ln.bias).astype(np.float32)
        s_in = {short: scales[f"layers.{i}.{short}.in"] for short, _ in LINEARS}
        s_out = {short: scales[f"layers.{i}.{short}.out"] for short, _ in LINEARS}
        # The attention kernel requantises straight to proj's input scale: no separate attention scale.
        for short, path in LINEARS:
            lin = blk.get_submodule(path)
            bias = _np(lin.bias) if lin.bias is not None else None
            for k, v in quant_linear(_np(lin.weight), bias, s_in[short], s_out[short]).items():
                t[f"{p}{short}.{k}"] = v
        s_qkv = s_out["qkv"]
        sm, ss = nx.softmax_params(s_qkv * s_qkv / math.sqrt(d))
        om, os_ = nx.quantize_multiplier(s_qkv / 256.0 / s_in["proj"])
        t[p + "attn.softmax_mult"] = np.array(sm, np.int32)
        t[p + "attn.softmax_shift"] = np.array(ss, np.int32)
        t[p + "attn.out_mult"] = np.array(om, np.int32)
        t[p + "attn.out_shift"] = np.array(os_, np.int32)
        if split is not None:
            mask = np.asarray(split.mask[i], dtype=bool)
            order = np.asarray(split.order[i]).astype(np.int32)
            n_global = np.asarray(split.n_global[i]).astype(np.int32)
            colptr, headptr, rowidx = mask_to_csc(mask, order, n_global)
            t.update({p + "attn.mask": mask, p + "attn.order": order, p + "attn.n_global": n_global,
                      p + "attn.csc_colptr": colptr, p + "attn.csc_headptr": headptr, p + "attn.csc_rowidx": rowidx})
        if has_ae:
            for w in ("q", "k"):
                hae = getattr(blk.attn.ae, w)
                s_enc = scales[f"layers.{i}.ae.{w}.enc"]
                pre = f"{p}ae.{w}."
                for k, v in _quant_mix(_np(hae.encoder.weight), _np(hae.encoder.bias), s_qkv, s_enc, "enc").items():
                    t[pre + k] = v
                for k, v in _quant_mix(_np(hae.decoder.weight), _np(hae.decoder.bias), s_enc, s_qkv, "dec").items():
                    t[pre + k] = v
    if not int_model:   # not a valid vitcod/dense bundle: the caller (the ReViT exporter) completes and validates it
        return Bundle(meta=meta, tensors=t)
    t.update(int_model_tensors(t, depth, int_scales(scales)))
    return Bundle(meta=meta, tensors=t).validate()


def export_bundle(model: VisionTransformer, calib_data: Iterable, path, *, config: ConfigLike = "paper",
                  split: Optional[SplitResult] = None, pct: float = 99.99, max_batches: Optional[int] = None,
                  extra: Optional[dict] = None) -> Bundle:
    """Calibrate activation scales, quantise, validate and write the bundle atomically to ``path``."""
    scales = activation_scales(model, calib_data, pct=pct, max_batches=max_batches)
    bundle = build_bundle(model, scales, config=config, split=split, extra=extra)
    write_bundle(path, bundle)
    return bundle


@torch.no_grad()
def agreement(model: VisionTransformer, bundle: Bundle, images: Union[np.ndarray, torch.Tensor],
              labels: Optional[np.ndarray] = None, *, progress: bool = True) -> Dict[str, float]:
    """Float model vs the int8 bundle on the simulator over the same images.

    Returns top-1 agreement, the largest |logit difference|, the mean cosine similarity of the two logit
    vectors per image (scale-free: 1.0 is the same direction whatever the logits' magnitude), and top-1
    accuracies when labels are given.
    """
    from vitaccel.sim.vitcod.model import run_model

    x = torch.as_tensor(np.asarray(images, dtype=np.float32))
    was_training = model.training
    model.eval()
    try:
        ref = model(x.to(next(model.parameters()).device)).cpu().numpy()
    finally:
        model.train(was_training)
    step = 16
    chunks = range(0, len(x), step)
    got = np.concatenate([run_model(bundle, x[i:i + step].numpy()).logits
                          for i in tqdm(chunks, desc="agreement: int8 bundle on the simulator", unit="batch",
                                        leave=False, disable=not progress)]) if len(x) else np.zeros_like(ref)
    r64, g64 = ref.astype(np.float64), got.astype(np.float64)
    norms = np.linalg.norm(r64, axis=1) * np.linalg.norm(g64, axis=1)
    cos = np.sum(r64 * g64, axis=1) / np.where(norms > 0, norms, 1.0)
    out = {"images": int(len(x)), "top1_agreement": float(np.mean(ref.argmax(1) == got.argmax(1))),
           "max_logit_error": float(np.max(np.abs(ref - got))) if len(x) else 0.0,
           "logit_cosine": float(np.mean(np.where(norms > 0, cos, 1.0))) if len(x) else 1.0}
    if labels is not None:
        lab = np.asarray(labels)
        out["top1_float"] = float(np.mean(ref.argmax(1) == lab))
        out["top1_int8"] = float(np.mean(got.argmax(1) == lab))
    return out
