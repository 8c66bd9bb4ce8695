"""A ReViT bundle on the NumPy integer reference: images in, logits (and per-layer traces) out.

The ReViT accelerator's engines (``vitaccel.sim.revit.layer``, ``revit_top``) match this functional
reference; there is no host compiler or backend for a whole bundle yet (issue #13). It is the int8 graph of KERNELS.md with the
attention kernel replaced by :func:`vitaccel.sim.revit.attention.revit_attention_layer`, and pruning
after the attention residual of each pruning layer. Host glue (LayerNorm, GELU, residuals, the package
token's weighted sum, patch embedding, head) is float32 as for ViTCoD (``sim/glue.py``). One image at a
time: pruning makes the token count image-dependent, and tokens are removed, not masked.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Dict, List, Optional

import numpy as np

from vitaccel.sim import glue
from vitaccel.sim import numerics as nx
from vitaccel.sim.quant import dequantize, quantize
from vitaccel.sim.revit.attention import LayerParams, Q16, prune_decisions, revit_attention_layer

__all__ = ["RevitLayer", "RevitProgram", "RevitResult", "compile_revit", "forward_image", "run_revit"]

LINEARS = ("qkv", "proj", "fc1", "fc2")


@dataclasses.dataclass
class RevitLayer:
    index: int
    linears: Dict[str, Dict[str, np.ndarray]]
    norm1: tuple
    norm2: tuple
    attn: LayerParams
    keep: tuple            # (q_groups, q_patches) Q16; (2^16, 2^16) = no pruning

    @property
    def prunes(self) -> bool:
        return self.keep != (Q16, Q16)


@dataclasses.dataclass
class RevitProgram:
    dims: Any
    globals: Dict[str, np.ndarray]
    layers: List[RevitLayer]
    groups_meta: Dict[str, Any]


def compile_revit(bundle) -> RevitProgram:
    """Unpack a validated ``revit`` bundle (duck-typed: ``.meta``, ``.model``, ``.layer(i)``, ``.globals()``)."""
    if bundle.meta.get("method") != "revit":
        raise ValueError(f"not a ReViT bundle (method {bundle.meta.get('method')!r})")
    gm = dict(bundle.meta["groups"])
    dims = bundle.model
    layers = []
    for i in range(dims.depth):
        t = bundle.layer(i)
        lin = {n: {k: np.asarray(t[f"{n}.{k}"]) for k in ("weight", "bias", "mult", "shift", "in_scale", "out_scale")}
               for n in LINEARS}
        ap = LayerParams(
            heads=dims.num_heads, num_groups=int(gm["n_groups"]),
            qkv_weight=lin["qkv"]["weight"], qkv_bias=lin["qkv"]["bias"], qkv_mult=lin["qkv"]["mult"],
            qkv_shift=lin["qkv"]["shift"], hash_weight=np.asarray(t["lsh.hash_weight"]),
            hash_bias=np.asarray(t["lsh.hash_bias"]), hash_mult=int(t["lsh.hash_mult"]),
            hash_shift=int(t["lsh.hash_shift"]), softmax=(int(t["attn.softmax_mult"]), int(t["attn.softmax_shift"])),
            out=(int(t["attn.out_mult"]), int(t["attn.out_shift"])), block=int(gm.get("block", 16)),
            combine=str(gm.get("combine", "joint")))
        layers.append(RevitLayer(i, lin, (t["norm1.weight"], t["norm1.bias"]), (t["norm2.weight"], t["norm2.bias"]),
                                 ap, (int(t["prune.keep_groups"]), int(t["prune.keep_patches"]))))
    return RevitProgram(dims, bundle.globals(), layers, gm)


def _gemm(x8: np.ndarray, lin: Dict[str, np.ndarray]) -> np.ndarray:
    acc = nx.matmul_int(x8, lin["weight"].T).astype(np.int64) + lin["bias"].astype(np.int64)
    return nx.requantize(acc, lin["mult"], lin["shift"])


def forward_image(prog: RevitProgram, image: np.ndarray, trace: Optional[List[dict]] = None) -> np.ndarray:
    """Logits (num_classes,) of one float32 image (C, H, W). ``trace`` gets one dict per layer: the int8
    LayerNorm-1 tokens ``h8``, ``groups``, ``deltas``, ``counts`` and, at pruning layers, ``keep``."""
    g = prog.globals
    x = glue.add_tokens(glue.patch_embed(np.asarray(image, np.float32)[None], g["patch_embed.weight"],
                                         g["patch_embed.bias"]), g["cls_token"], g["pos_embed"])[0]
    for lp in prog.layers:
        L = lp.linears
        h8 = quantize(glue.layer_norm(x, *lp.norm1), float(L["qkv"]["in_scale"]))
        res = revit_attention_layer(h8, lp.attn)
        x = x + dequantize(_gemm(res.a8, L["proj"]), float(L["proj"]["out_scale"]))
        rec = dict(h8=h8, groups=res.groups, deltas=res.deltas, counts=res.counts) if trace is not None else None
        if lp.prunes:
            keep, w = prune_decisions(res, *lp.keep)
            pkg = (w[:, None] * x[1:]).sum(0, dtype=np.float32)[None]          # EViT's fused token
            x = np.concatenate([x[:1], x[1:][keep], pkg], 0).astype(np.float32)
            if rec is not None:
                rec["keep"] = keep
        f8 = _gemm(quantize(glue.layer_norm(x, *lp.norm2), float(L["fc1"]["in_scale"])), L["fc1"])
        g8 = quantize(glue.gelu(dequantize(f8, float(L["fc1"]["out_scale"]))), float(L["fc2"]["in_scale"]))
        x = x + dequantize(_gemm(g8, L["fc2"]), float(L["fc2"]["out_scale"]))
        if rec is not None:
            trace.append(rec)
    cls = glue.layer_norm(x[:1], g["norm.weight"], g["norm.bias"])
    return glue.linear(cls, g["head.weight"], g["head.bias"])[0]


@dataclasses.dataclass
class RevitResult:
    logits: np.ndarray
    traces: Optional[List[List[dict]]]

    @property
    def predictions(self) -> np.ndarray:
        return np.argmax(self.logits, axis=1)


def run_revit(bundle, images, *, trace: bool = False, progress: bool = False) -> RevitResult:
    """Every image through the integer reference; ``trace=True`` keeps each image's per-layer records."""
    prog = compile_revit(bundle)
    imgs = np.asarray(images, np.float32)
    want = (prog.dims.in_chans, prog.dims.img_size, prog.dims.img_size)
    if imgs.ndim != 4 or imgs.shape[1:] != want:
        raise ValueError(f"images must be (B, {want[0]}, {want[1]}, {want[2]}) float, got {imgs.shape}")
    it = range(len(imgs))
    if progress:
        from tqdm import tqdm

        it = tqdm(it, desc="images", unit="img")
    traces: Optional[List[List[dict]]] = [] if trace else None
    out = []
    for i in it:
        tr: Optional[List[dict]] = [] if trace else None
        out.append(forward_image(prog, imgs[i], tr))
        if trace:
            traces.append(tr)
    logits = np.stack(out) if out else np.zeros((0, prog.dims.num_classes), np.float32)
    return RevitResult(logits.astype(np.float32), traces)
