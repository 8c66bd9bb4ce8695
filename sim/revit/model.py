"""A ReViT bundle on the NumPy integer model: images in, logits (and per-layer traces) out.

Integer from the int8 image to the int8 logits, like ViTCoD's whole model (KERNELS.md, "The integer model
graph"), with the ReViT attention layer and pruning: the bundle's ``int`` group (patch embedding, tokens,
integer LayerNorms, GELU tables, residual adds, head; the same tensors and kernels as ViTCoD's,
:mod:`vitaccel.sim.common`) around :func:`vitaccel.sim.revit.attention.revit_attention_layer` (group
generation, differential Q/K/V, scores, blockwise softmax, output; its qkv GEMM is inside it). At a pruning
layer, after the attention residual add, the pruners' keep mask (:func:`~vitaccel.sim.revit.attention.prune_decisions`)
and the patch scores (head sums of the CLS row) go to :func:`vitaccel.sim.revit.compact.compact_tokens`:
CLS, the kept patches and the integer package token, in the int16 stream at the residual's own scale.

This is the functional model of the program the host compiler emits (``vitaccel.host.revit.program``): one
image at a time, since pruning makes the token count depend on the image (tokens are removed, not
masked). The only float steps are the host's: image quantisation before, logit dequantisation after.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Dict, List, Optional

import numpy as np

from vitaccel.hwconfig import ConfigLike, HardwareConfig, load_config
from vitaccel.sim.common import intmodel as im
from vitaccel.sim.common.eltwise import add_requant, lut_int8
from vitaccel.sim.common.gemm import gemm
from vitaccel.sim.common.layernorm import layernorm_int
from vitaccel.sim.revit.attention import LayerParams, Q16, prune_decisions, revit_attention_layer
from vitaccel.sim.revit.compact import compact_tokens, package_params
from vitaccel.sim.vitcod.model import LINEARS, Linear, Norm, int_model_problem

__all__ = ["RevitLayer", "RevitProgram", "RevitResult", "compile_revit", "forward_int", "forward_image",
           "prepare_image", "run_revit", "LINEARS", "max_tokens"]


@dataclasses.dataclass
class RevitLayer:
    index: int
    linears: Dict[str, Linear]        # qkv (inside the attention layer), proj, fc1, fc2
    norm1: Norm
    norm2: Norm
    add1: tuple                       # (ma, mb, shift): x + proj out -> int16
    add2: tuple
    gelu: np.ndarray                  # int8 (256,)
    attn: LayerParams
    keep: tuple                       # (q_groups, q_patches) Q16; (2^16, 2^16) = no pruning

    @property
    def prunes(self) -> bool:
        return self.keep != (Q16, Q16)


@dataclasses.dataclass
class RevitProgram:
    dims: Any
    config: HardwareConfig
    layers: List[RevitLayer]
    groups_meta: Dict[str, Any]
    input_scale: float
    patch: Linear
    tokens: np.ndarray                # int16 (N, D)
    tokens_add: tuple
    norm: Norm
    head: Linear
    package: tuple                    # (m, s): the package token's 1 / (256 H)

    @property
    def heads(self) -> int:
        return self.dims.num_heads


def _add3(a) -> tuple:
    return tuple(int(v) for v in np.asarray(a))


def compile_revit(bundle, config: Optional[ConfigLike] = None) -> RevitProgram:
    """Unpack a validated ``revit`` bundle (duck-typed: ``.meta``, ``.model``, ``.layer(i)``, ``.globals()``,
    ``.has(group)``); ``config`` defaults to the shipped config the bundle names."""
    if bundle.meta.get("method") != "revit":
        raise ValueError(f"not a ReViT bundle (method {bundle.meta.get('method')!r})")
    problem = int_model_problem(bundle, "vitaccel prune --method revit, or "
                                        "vitaccel.models.revit_export.export_revit_bundle")
    if problem:
        raise ValueError(problem)
    cfg = load_config(config) if config is not None else bundle.hardware_config()
    gm = dict(bundle.meta["groups"])
    dims = bundle.model
    layers = []
    for i in range(dims.depth):
        t = bundle.layer(i)
        lin = {n: Linear.from_tensors(t, n) for n in LINEARS}
        q = lin["qkv"]
        ap = LayerParams(
            heads=dims.num_heads, num_groups=int(gm["n_groups"]), qkv_weight=q.weight, qkv_bias=q.bias,
            qkv_mult=q.mult, qkv_shift=q.shift, hash_weight=np.asarray(t["lsh.hash_weight"]),
            hash_bias=np.asarray(t["lsh.hash_bias"]), hash_mult=int(t["lsh.hash_mult"]),
            hash_shift=int(t["lsh.hash_shift"]), softmax=(int(t["attn.softmax_mult"]), int(t["attn.softmax_shift"])),
            out=(int(t["attn.out_mult"]), int(t["attn.out_shift"])), block=int(gm.get("block", 16)),
            combine=str(gm.get("combine", "joint")))
        layers.append(RevitLayer(i, lin, Norm.from_tensors(t, "int.norm1"), Norm.from_tensors(t, "int.norm2"),
                                 _add3(t["int.add1"]), _add3(t["int.add2"]), np.asarray(t["int.gelu"], np.int8), ap,
                                 (int(t["prune.keep_groups"]), int(t["prune.keep_patches"]))))
    g = bundle.globals()
    return RevitProgram(dims, cfg, layers, gm, float(g["int.input.scale"]), Linear.from_tensors(g, "int.patch"),
                        np.ascontiguousarray(g["int.tokens.value"], np.int16), _add3(g["int.tokens.add"]),
                        Norm.from_tensors(g, "int.norm"), Linear.from_tensors(g, "int.head"),
                        package_params(dims.num_heads))


def max_tokens(prog: RevitProgram) -> int:
    """The most tokens any layer can see: each pruning layer may keep every patch and still append a
    package token (small groups keep ``ceil(q l)`` = l)."""
    return prog.dims.num_tokens + sum(1 for lp in prog.layers if lp.prunes)


def _gemm(x8: np.ndarray, lin: Linear) -> np.ndarray:
    return gemm(x8, lin.weight, lin.bias, lin.mult, lin.shift)


def _norm(x16: np.ndarray, nm: Norm) -> np.ndarray:
    return layernorm_int(x16, nm.g, nm.b, nm.shift, nm.eps).astype(np.int8)


def _add(a, b, p: tuple) -> np.ndarray:
    return add_requant(a, p[0], b, p[1], p[2], 16)


def forward_int(prog: RevitProgram, rows8: np.ndarray, trace: Optional[List[dict]] = None) -> np.ndarray:
    """int8 logits (num_classes,) of one image's int8 patch rows (N-1, C P P): what the accelerator computes
    for it. ``trace`` gets one dict per layer: the int8 LayerNorm-1 tokens ``h8``, ``groups``, ``deltas``,
    ``counts`` and, at pruning layers, ``keep``."""
    n, dm = prog.dims.num_tokens, prog.dims.embed_dim
    pe = np.zeros((n, dm), np.int8)
    pe[1:] = _gemm(np.asarray(rows8, np.int8), prog.patch)
    x = add_requant(pe, prog.tokens_add[0], prog.tokens, prog.tokens_add[1], prog.tokens_add[2], 16)
    for lp in prog.layers:
        h8 = _norm(x, lp.norm1)
        res = revit_attention_layer(h8, lp.attn)
        xb = _add(x, _gemm(res.a8, lp.linears["proj"]), lp.add1)
        rec = dict(h8=h8, groups=res.groups, deltas=res.deltas, counts=res.counts) if trace is not None else None
        if lp.prunes:
            keep, _ = prune_decisions(res, *lp.keep)
            scores = res.cls_p[:, 1:].astype(np.int64).sum(0).astype(np.int32)
            xb = compact_tokens(xb, keep, scores, *prog.package)
            if rec is not None:
                rec["keep"] = keep
        g8 = lut_int8(_gemm(_norm(xb, lp.norm2), lp.linears["fc1"]), lp.gelu)
        x = _add(xb, _gemm(g8, lp.linears["fc2"]), lp.add2)
        if rec is not None:
            trace.append(rec)
    return _gemm(_norm(x[:1], prog.norm), prog.head)[0]


def prepare_image(prog: RevitProgram, images: np.ndarray) -> np.ndarray:
    """The host's part before the accelerator: int8 quantisation and patch rows (B, N-1, C P P)."""
    dims = prog.dims
    imgs = np.asarray(images, np.float32)
    want = (dims.in_chans, dims.img_size, dims.img_size)
    if imgs.ndim != 4 or imgs.shape[1:] != want:
        raise ValueError(f"images must be (B, {want[0]}, {want[1]}, {want[2]}) float, got {imgs.shape}")
    return im.patch_rows(im.quantize_images(imgs, prog.input_scale), dims.patch_size)


def forward_image(prog: RevitProgram, image: np.ndarray, trace: Optional[List[dict]] = None) -> np.ndarray:
    """float32 logits (num_classes,) of one float32 image (C, H, W): quantise, :func:`forward_int`, dequantise."""
    rows8 = prepare_image(prog, np.asarray(image, np.float32)[None])[0]
    return im.dequantize_logits(forward_int(prog, rows8, trace), prog.head.out_scale)


@dataclasses.dataclass
class RevitResult:
    logits: np.ndarray
    traces: Optional[List[List[dict]]]

    @property
    def predictions(self) -> np.ndarray:
        return np.argmax(self.logits, axis=1)


def run_revit(bundle, images, *, trace: bool = False, progress: bool = False,
              config: Optional[ConfigLike] = None) -> RevitResult:
    """Every image through the integer model; ``trace=True`` keeps each image's per-layer records."""
    prog = compile_revit(bundle, config)
    imgs = np.asarray(images, np.float32)
    rows = prepare_image(prog, imgs)
    it = range(len(imgs))
    if progress:
        from tqdm import tqdm

        it = tqdm(it, desc="images", unit="img")
    traces: Optional[List[List[dict]]] = [] if trace else None
    out = []
    for i in it:
        tr: Optional[List[dict]] = [] if trace else None
        out.append(forward_int(prog, rows[i], tr))
        if trace:
            traces.append(tr)
    y8 = np.stack(out) if out else np.zeros((0, prog.dims.num_classes), np.int8)
    return RevitResult(im.dequantize_logits(y8, prog.head.out_scale), traces)
