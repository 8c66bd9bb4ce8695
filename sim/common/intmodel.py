"""The integer whole model around the attention engines (KERNELS.md, "The integer model graph").

Three kinds of code, kept apart on purpose:

* **offline (float)**: :func:`int_model_tensors` turns a float model's LayerNorm, GELU, residual,
  patch-embedding, token and head parameters plus calibrated scales into the bundle's ``int`` tensors.
  The exporter (``models/export.py``) and the random test bundle (``vitaccel.testing``) both call it, so a
  bundle's integer model is made in one place;
* **host, before the accelerator**: :func:`quantize_images` (the only float step of inference: one IEEE
  division and a round per pixel, identical on any CPU) and :func:`patch_rows`, a pure permutation of the
  int8 image into the patch-embedding GEMM's rows (what a DMA descriptor would do; no arithmetic);
* **host, after**: :func:`dequantize_logits` (int8 logits times one scale).

Between :func:`quantize_images` and :func:`dequantize_logits` everything is an integer kernel: the NumPy
functional model is :func:`vitaccel.sim.vitcod.model.forward_int`, and the accelerator runs the same
program in one start (``vitaccel.host.vitcod.program``).

**The residual stream is int16** with dyadic requantisation at every add (``add_requant``): each point of
the stream (x0, after every add) has its own scale, the calibrated |x| maximum times
:data:`RES_MARGIN` over 32767. An int8 stream gives the same top-1 on the demo but drifts further from
the float model (NUMERICS.md, "The whole model's vector kernels", has the figures); int32 would double the
stream's traffic again (not measured: the add and LayerNorm kernels take int8 or int16 only).
"""
from __future__ import annotations

import math
from typing import Dict, Mapping, Optional

import numpy as np

from vitaccel.sim.common.eltwise import add_params, gelu_table
from vitaccel.sim.common.layernorm import layernorm_params
from vitaccel.sim.quant import absmax_scale, quantize, requant_params

__all__ = ["RES_BITS", "RES_MARGIN", "LN_EPS", "MAX_BIAS", "quant_linear", "residual_scale", "int_model_tensors",
           "quantize_images", "patch_rows", "dequantize_logits", "INPUT_RANGE_FACTOR"]

#: Width of the residual stream.
RES_BITS = 16
#: Headroom of a residual scale over the calibrated maximum (images beyond calibration saturate later).
RES_MARGIN = 1.25
#: timm's DeiT LayerNorm epsilon.
LN_EPS = 1e-6
MAX_BIAS = (1 << 30) - 1
#: An image whose largest |pixel| exceeds the calibrated one (127 * input scale) by more than this factor
#: gets a warning: it saturates at int8 and the prediction may be wrong.
INPUT_RANGE_FACTOR = 2.0


def quant_linear(weight: np.ndarray, bias: Optional[np.ndarray], in_scale: float, out_scale: float) -> Dict[str, np.ndarray]:
    """Symmetric int8 per output channel (absmax), int32 bias at the accumulator's scale, requant
    multipliers and shifts from the scale ratios (the GEMM kernel's operands)."""
    weight = np.asarray(weight, np.float64)
    w_scale = absmax_scale(weight, axis=0)
    wq = quantize(weight, w_scale, axis=0)
    b = np.zeros(weight.shape[0]) if bias is None else np.asarray(bias, np.float64)
    bq = np.clip(np.rint(b / (in_scale * w_scale.astype(np.float64))), -MAX_BIAS, MAX_BIAS)
    mult, shift = requant_params(in_scale, w_scale, out_scale)
    return {"weight": wq, "bias": bq.astype(np.int32), "w_scale": w_scale.astype(np.float32),
            "in_scale": np.array(in_scale, np.float32), "out_scale": np.array(out_scale, np.float32),
            "mult": mult.astype(np.int32), "shift": shift.astype(np.int32)}


def residual_scale(amax: float) -> float:
    """The int16 scale of a residual point whose calibrated |x| maximum is ``amax``."""
    amax = float(amax)
    if not (math.isfinite(amax) and amax > 0):
        return 1.0
    return float(np.float32(amax * RES_MARGIN / ((1 << (RES_BITS - 1)) - 1)))


def _ln(prefix: str, gamma, beta, out_scale: float, in_scale: float) -> Dict[str, np.ndarray]:
    p = layernorm_params(gamma, beta, out_scale, in_scale, LN_EPS)
    return {f"{prefix}.g": p["g"], f"{prefix}.b": p["b"], f"{prefix}.ln": np.array([p["shift"], p["eps"]], np.int32)}


def _add(name: str, sa: float, sb: float, so: float) -> Dict[str, np.ndarray]:
    return {name: np.array(add_params(sa, sb, so), np.int32)}


def int_model_tensors(t: Mapping[str, np.ndarray], depth: int, scales: Mapping[str, float]) -> Dict[str, np.ndarray]:
    """The ``int`` tensors of a bundle from its float tensors ``t`` (patch_embed, cls_token, pos_embed,
    norm, head, every layer's norm1/norm2 and the linears' ``in_scale``/``out_scale``) and calibrated
    ``scales``: ``input`` (the image's int8 scale), ``patch`` (patch-embedding output, int8), ``head``
    (logits, int8), ``norm`` (final LayerNorm output, int8), and the |x| maxima of the residual stream
    ``res.x0``, ``layers.{i}.res1`` (after the attention add) and ``layers.{i}.res2`` (after the MLP add)."""
    out: Dict[str, np.ndarray] = {}
    w = np.asarray(t["patch_embed.weight"], np.float64)
    d = w.shape[0]
    s_in, s_pe = float(scales["input"]), float(scales["patch"])
    out["int.input.scale"] = np.array(s_in, np.float32)
    pe = quant_linear(w.reshape(d, -1), t["patch_embed.bias"], s_in, s_pe)
    out.update({f"int.patch.{k}": pe[k] for k in ("weight", "bias", "mult", "shift", "out_scale")})
    tok = np.asarray(t["pos_embed"], np.float64)[0].copy()
    tok[0] += np.asarray(t["cls_token"], np.float64).reshape(-1)
    amax = float(np.abs(tok).max()) if tok.size else 0.0
    s_tok = float(np.float32(amax / 32767)) if amax > 0 else 1.0
    out["int.tokens.value"] = np.clip(np.rint(tok / s_tok), -32768, 32767).astype(np.int16)
    out["int.tokens.scale"] = np.array(s_tok, np.float32)
    s_x = residual_scale(scales["res.x0"])
    out.update(_add("int.tokens.add", s_pe, s_tok, s_x))
    out["int.res_scale"] = np.array(s_x, np.float32)
    for i in range(depth):
        p = f"layers.{i}."
        s1 = residual_scale(scales[f"{p}res1"])
        s2 = residual_scale(scales[f"{p}res2"])
        out.update(_ln(f"{p}int.norm1", t[p + "norm1.weight"], t[p + "norm1.bias"], float(t[p + "qkv.in_scale"]), s_x))
        out.update(_add(f"{p}int.add1", s_x, float(t[p + "proj.out_scale"]), s1))
        out.update(_ln(f"{p}int.norm2", t[p + "norm2.weight"], t[p + "norm2.bias"], float(t[p + "fc1.in_scale"]), s1))
        out[f"{p}int.gelu"] = gelu_table(float(t[p + "fc1.out_scale"]), float(t[p + "fc2.in_scale"]))
        out.update(_add(f"{p}int.add2", s1, float(t[p + "fc2.out_scale"]), s2))
        out[f"{p}int.res_scale"] = np.array([s1, s2], np.float32)
        s_x = s2
    s_norm, s_head = float(scales["norm"]), float(scales["head"])
    out.update(_ln("int.norm", t["norm.weight"], t["norm.bias"], s_norm, s_x))
    hd = quant_linear(t["head.weight"], t["head.bias"], s_norm, s_head)
    out.update({f"int.head.{k}": hd[k] for k in ("weight", "bias", "mult", "shift", "out_scale")})
    return out


# -- host side: the only float steps of inference ----------------------------------------------------------

def quantize_images(images: np.ndarray, scale: float) -> np.ndarray:
    """float32 images -> int8: ``clip(rint(x / scale), -128, 127)``. One correctly rounded IEEE division
    and a round-half-even per pixel, so every CPU gives the same bits."""
    x = np.asarray(images, dtype=np.float32)
    with np.errstate(over="ignore"):   # a quotient beyond float32 is +-inf, which the clip saturates like any other
        q = np.rint(x / np.float32(scale))
    return np.clip(q, -128, 127).astype(np.int8)


def patch_rows(x8: np.ndarray, patch: int) -> np.ndarray:
    """int8 images (B, C, H, W) -> (B, (H/P)(W/P), C P P): each patch one GEMM row in the conv weight's
    (c, py, px) order. A permutation of bytes, no arithmetic."""
    b, c, h, w = x8.shape
    g_h, g_w = h // patch, w // patch
    return np.ascontiguousarray(
        x8.reshape(b, c, g_h, patch, g_w, patch).transpose(0, 2, 4, 1, 3, 5).reshape(b, g_h * g_w, c * patch * patch))


def dequantize_logits(y8: np.ndarray, scale: float) -> np.ndarray:
    """int8 logits -> float32 (``scale * y``)."""
    return (np.asarray(y8).astype(np.float32) * np.float32(scale)).astype(np.float32)
