"""The shipped demo task: scikit-learn's 8x8 handwritten digits, shaped like DeiT's input.

``load_digits`` is bundled with scikit-learn (no download). Each 8x8 image is upscaled bilinearly to
56x56, one channel; with 4x4 patches that is 14x14 = 196 patches + CLS = 197 tokens, the token count
of DeiT at 224/16, so the attention maps have the size the accelerator is built for while the model
stays small enough to train on one CPU thread in minutes.
"""
from __future__ import annotations

import dataclasses
from typing import Optional

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset

from .deit import VisionTransformer

__all__ = ["IMG_SIZE", "PATCH_SIZE", "IN_CHANS", "NUM_CLASSES", "DEMO_MODEL", "DigitsSplit", "load_digits_split",
           "demo_model", "make_loader", "RandomShift"]

IMG_SIZE = 56
PATCH_SIZE = 4
IN_CHANS = 1
NUM_CLASSES = 10
# Small DeiT: 3 heads like DeiT-Tiny (the AE compresses 3 -> 2 heads), mlp_ratio 2 to halve the MLP cost.
DEMO_MODEL = dict(img_size=IMG_SIZE, patch_size=PATCH_SIZE, in_chans=IN_CHANS, num_classes=NUM_CLASSES,
                  embed_dim=96, depth=4, num_heads=3, mlp_ratio=2.0)


@dataclasses.dataclass
class DigitsSplit:
    """Normalised float32 images (B, 1, 56, 56) and int64 labels, train and held-out test."""

    train_x: torch.Tensor
    train_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor
    mean: float
    std: float


def load_digits_split(*, test_fraction: float = 0.2, seed: int = 0, img_size: int = IMG_SIZE) -> DigitsSplit:
    """The 1797 digits upscaled to ``img_size``, stratified train/test split fixed by ``seed``,
    normalised by the train mean/std."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must lie in (0, 1), got {test_fraction}")
    d = load_digits()
    x = torch.from_numpy(d.images.astype(np.float32) / 16.0).unsqueeze(1)  # pixel values are 0..16
    x = F.interpolate(x, size=(img_size, img_size), mode="bilinear", align_corners=False)
    y = torch.from_numpy(d.target.astype(np.int64))
    idx_train, idx_test = train_test_split(np.arange(len(y)), test_size=test_fraction, stratify=d.target,
                                           random_state=seed)
    xtr, xte = x[idx_train], x[idx_test]
    mean, std = float(xtr.mean()), float(xtr.std())
    return DigitsSplit((xtr - mean) / std, y[idx_train], (xte - mean) / std, y[idx_test], mean, std)


def demo_model(**overrides) -> VisionTransformer:
    """The demo DeiT (see :data:`DEMO_MODEL`), weights initialised from torch's current seed."""
    return VisionTransformer(**{**DEMO_MODEL, **overrides})


def make_loader(x: torch.Tensor, y: torch.Tensor, *, batch_size: int, shuffle: bool) -> DataLoader:
    """In-memory loader. Shuffling draws from the global torch RNG (no private generator), which
    ``vitcod.finetune`` reseeds every epoch: that is what makes runs and resumed runs repeat exactly."""
    return DataLoader(TensorDataset(x, y), batch_size=batch_size, shuffle=shuffle, num_workers=0)


class RandomShift:
    """Augmentation: translate each image by up to ``max_shift`` pixels in x and y (integer shifts,
    background filled with the image minimum). Draws from the global torch RNG."""

    def __init__(self, max_shift: int = 4):
        if max_shift < 0:
            raise ValueError(f"max_shift must be >= 0, got {max_shift}")
        self.max_shift = max_shift

    def __call__(self, x: torch.Tensor, generator: Optional[torch.Generator] = None) -> torch.Tensor:
        s = self.max_shift
        if s == 0:
            return x
        b, _, h, w = x.shape
        padded = F.pad(x, (s, s, s, s), value=float(x.min()))
        dy = torch.randint(0, 2 * s + 1, (b,), generator=generator, device=x.device)
        dx = torch.randint(0, 2 * s + 1, (b,), generator=generator, device=x.device)
        rows = (dy[:, None] + torch.arange(h, device=x.device))[:, :, None]  # (B, h, 1)
        cols = (dx[:, None] + torch.arange(w, device=x.device))[:, None, :]  # (B, 1, w)
        bidx = torch.arange(b, device=x.device)[:, None, None]
        return padded.permute(0, 2, 3, 1)[bidx, rows, cols].permute(0, 3, 1, 2).contiguous()
