"""The float work that stays on the host CPU between kernels (KERNELS.md, "The int8 model graph").

One NumPy implementation shared by every backend, so the glue can never make the board and the simulator
disagree. float32 throughout; no SciPy (it is not on a PYNQ image), so GELU's erf is our own.
"""
from __future__ import annotations

import numpy as np

__all__ = ["patch_embed", "linear", "layer_norm", "gelu", "erf", "add_tokens"]

LN_EPS = 1e-6  # timm's DeiT


def patch_embed(images: np.ndarray, weight: np.ndarray, bias: np.ndarray) -> np.ndarray:
    """Non-overlapping conv (stride = kernel = P) as a matmul: (B, C, H, W) -> (B, (H/P)*(W/P), D)."""
    x = np.asarray(images, dtype=np.float32)
    if x.ndim != 4:
        raise ValueError(f"images must be (B, C, H, W), got shape {x.shape}")
    d, c, p, _ = weight.shape
    b, cx, h, w = x.shape
    if cx != c or h % p or w % p:
        raise ValueError(f"images {x.shape} do not fit a patch embedding of {c} channels and patch {p}")
    patches = x.reshape(b, c, h // p, p, w // p, p).transpose(0, 2, 4, 1, 3, 5).reshape(b, -1, c * p * p)
    return np.stack([linear(pt, weight.reshape(d, -1), bias) for pt in patches]) if b else \
        np.zeros((0, patches.shape[1], d), np.float32)


def linear(x: np.ndarray, weight: np.ndarray, bias: np.ndarray) -> np.ndarray:
    """Float ``x @ weight.T + bias`` for ONE image's rows.

    BLAS picks its blocking from the operand shapes, so a batched matmul can round differently from the
    same rows alone; callers loop over images so a result never depends on the batch it came in.
    """
    return (np.asarray(x, np.float32) @ np.asarray(weight, np.float32).T + np.asarray(bias, np.float32)).astype(np.float32)


def add_tokens(x: np.ndarray, cls_token: np.ndarray, pos_embed: np.ndarray) -> np.ndarray:
    """Prepend the CLS token and add position embeddings: (B, P, D) -> (B, P + 1, D)."""
    b = x.shape[0]
    cls = np.broadcast_to(cls_token.reshape(1, 1, -1), (b, 1, x.shape[2])).astype(np.float32)
    return np.concatenate([cls, x], axis=1) + pos_embed.reshape(1, -1, x.shape[2]).astype(np.float32)


def layer_norm(x: np.ndarray, weight: np.ndarray, bias: np.ndarray, eps: float = LN_EPS) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    mu = x.mean(axis=-1, keepdims=True)
    var = ((x - mu) ** 2).mean(axis=-1, keepdims=True)
    return ((x - mu) / np.sqrt(var + eps) * weight + bias).astype(np.float32)


def erf(x: np.ndarray) -> np.ndarray:
    """erf to float32 precision (max abs error about 1.2e-7): Numerical Recipes' erfc Chebyshev fit."""
    x = np.asarray(x, dtype=np.float64)
    z = np.abs(x)
    t = 1.0 / (1.0 + 0.5 * z)
    poly = -z * z - 1.26551223 + t * (1.00002368 + t * (0.37409196 + t * (0.09678418 + t * (
        -0.18628806 + t * (0.27886807 + t * (-1.13520398 + t * (1.48851587 + t * (-0.82215223 + t * 0.17087277))))))))
    r = 1.0 - t * np.exp(poly)
    return np.where(x >= 0, r, -r)


def gelu(x: np.ndarray) -> np.ndarray:
    """Exact (erf) GELU, as torch.nn.GELU() and timm use."""
    x = np.asarray(x, dtype=np.float32)
    return (0.5 * x * (1.0 + erf(x / np.sqrt(2.0)))).astype(np.float32)
