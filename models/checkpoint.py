"""Checkpoints from elsewhere (timm, DeiT's release, a training run): read, infer the architecture, load.

Used by ``vitaccel prune`` (:mod:`vitaccel.models.prune`); every refusal is a one-line
:class:`CheckpointError` (a ``ValueError``) that says what was found and what to do.

* Files: ``.safetensors`` (:func:`vitaccel.models.deit.read_safetensors`, no ``safetensors`` package
  needed) or anything ``torch.load(weights_only=True)`` reads (``.pth``, ``.pt``, ``.bin``). Pickled Python
  objects other than tensors and containers (a training checkpoint's ``args`` Namespace) are refused, never
  unpickled.
* Wrappers: a bare state dict, or one under ``"model"``, ``"state_dict"`` (timm, DeiT, Lightning),
  ``"model_ema"`` or ``"state_dict_ema"`` (EMA weights; chosen first with ``ema=True``). Which one was used
  is said in a note, and so is an EMA entry left unused.
* DDP's ``module.`` prefix is stripped (with a note).
* Distilled DeiT (``dist_token``, ``head_dist``; timm's ``deit_*_distilled_patch16_224``) is **refused**:
  the accelerator's int8 graph (KERNELS.md) has one class token and one head, and dropping the distillation
  token would change what every block computes. Use the non-distilled checkpoint.
* Checkpoints that already hold ViTCoD auto-encoders or ReViT hashes (``attn.ae.*``, ``attn.lsh_*``) are
  refused too: prune the dense checkpoint.

:func:`infer_arch` reads the architecture from the tensor shapes: embed dim and patch size and channels
from ``patch_embed.proj.weight`` ``(D, C, p, p)``, the image size from ``pos_embed`` ``(1, 1 + g*g, D)``
(``g * p``), depth from the ``blocks.{i}`` indices, the MLP width from ``fc1``, classes from ``head``,
qkv bias from its presence. The head count is not in any shape (qkv is ``(3D, D)`` for any split), so it
comes from, in order: the caller (``--heads``), the checkpoint's own ``config`` entry (our
``save_vitcod``), the DeiT of that embed dim and depth (DeiT-Tiny 3, -Small 6, -Base 12), or ``D / 64``
(every DeiT and ViT uses head dim 64); a note says which.
"""
from __future__ import annotations

import dataclasses
import os
import pickle
import re
from typing import Dict, List, Mapping, Optional, Tuple, Union

import torch

from vitaccel.safetext import printable

from .deit import DEIT_CONFIGS, VisionTransformer, read_safetensors

__all__ = ["Arch", "CheckpointError", "ARCH_NAMES", "read_checkpoint", "infer_arch", "resolve_arch",
           "build_model", "load_any"]

#: ``--arch`` names besides ``auto``: timm's ``deit_{tiny,small,base}_patch16_224``.
ARCH_NAMES = tuple(DEIT_CONFIGS)
#: What a named DeiT fixes (the rest, image size, patch, channels and classes, comes from the checkpoint).
_TIMM_DEFAULTS = dict(img_size=224, patch_size=16, in_chans=3, num_classes=1000)
_WRAPPERS = ("model", "state_dict", "model_ema", "state_dict_ema")
_EMA = ("model_ema", "state_dict_ema")


class CheckpointError(ValueError):
    """A checkpoint that cannot be read, or does not fit the architecture asked for (one line)."""


@dataclasses.dataclass
class Arch:
    """A DeiT/ViT's constructor arguments (``VisionTransformer(**arch.kwargs())``) and where heads came from."""

    img_size: int
    patch_size: int
    in_chans: int
    num_classes: int
    embed_dim: int
    depth: int
    num_heads: int
    mlp_ratio: float
    qkv_bias: bool = True
    name: str = "auto"
    heads_from: str = ""

    def kwargs(self) -> dict:
        return dict(img_size=self.img_size, patch_size=self.patch_size, in_chans=self.in_chans,
                    num_classes=self.num_classes, embed_dim=self.embed_dim, depth=self.depth,
                    num_heads=self.num_heads, mlp_ratio=self.mlp_ratio, qkv_bias=self.qkv_bias)

    @property
    def tokens(self) -> int:
        return (self.img_size // self.patch_size) ** 2 + 1

    def describe(self) -> str:
        like = looks_like(self.embed_dim, self.depth, self.mlp_ratio)
        label = self.name if self.name != "auto" else (f"{like}-like" if like else "ViT")
        return (f"{label}: embed {self.embed_dim}, depth {self.depth}, {self.num_heads} heads, MLP "
                f"{int(self.embed_dim * self.mlp_ratio)}, patch {self.patch_size} at {self.img_size} px "
                f"({self.tokens} tokens), {self.in_chans} channel(s), {self.num_classes} classes")


def looks_like(embed_dim: int, depth: int, mlp_ratio: float = 4.0) -> Optional[str]:
    """The DeiT name whose embed dim, depth and MLP ratio these are, or None."""
    for name, c in DEIT_CONFIGS.items():
        if c["embed_dim"] == embed_dim and c["depth"] == depth and mlp_ratio == 4.0:
            return name
    return None


def _fail(path, msg: str) -> CheckpointError:
    return CheckpointError(f"{printable(os.fspath(path))}: {msg}")


def read_checkpoint(path: Union[str, os.PathLike], *, ema: bool = False
                    ) -> Tuple[Dict[str, torch.Tensor], Optional[dict], List[str]]:
    """``(state_dict, config or None, notes)`` from a checkpoint file (see the module docstring)."""
    p = os.fspath(path)
    if not os.path.exists(p):
        raise _fail(p, "no such checkpoint file")
    if os.path.isdir(p):
        raise _fail(p, "is a folder; pass the checkpoint file (.pth, .pt, .bin or .safetensors)")
    notes: List[str] = []
    config = None
    if p.endswith(".safetensors"):
        sd = read_safetensors(p)      # SafetensorsError (a ValueError) names the file and the problem
    else:
        try:
            obj = torch.load(p, map_location="cpu", weights_only=True)
        except pickle.UnpicklingError as e:
            if "weights only" not in str(e).lower() or "Unsupported global" not in str(e):
                raise _fail(p, f"not a readable PyTorch checkpoint (UnpicklingError: {printable(e)[:200]})") from None
            first = str(e).strip().splitlines()
            hint = next((ln.strip() for ln in first if "Unsupported global" in ln), "")
            raise _fail(p, f"holds pickled Python objects besides tensors, which are not loaded (weights_only=True; "
                           f"{printable(hint)[:160]}); save just the weights: torch.save(ck['model'], 'weights.pth')"
                        ) from None
        except (RuntimeError, EOFError, OSError, ValueError, AttributeError, IndexError, KeyError) as e:
            raise _fail(p, f"not a readable PyTorch checkpoint ({type(e).__name__}: {printable(e)[:200]})") from None
        if not isinstance(obj, Mapping):
            raise _fail(p, f"holds a {type(obj).__name__}, not a state dict (a mapping of names to tensors)")
        order = (_EMA + ("model", "state_dict")) if ema else _WRAPPERS
        found = [w for w in order if isinstance(obj.get(w), Mapping)]
        if ema and (not found or found[0] not in _EMA):
            raise _fail(p, "--ema: the checkpoint has no 'model_ema' or 'state_dict_ema' entry")
        if found:
            used = found[0]
            unused_ema = [w for w in found[1:] if w in _EMA]
            note = f"using the checkpoint's '{used}' entry"
            if unused_ema:
                note += f" ('{unused_ema[0]}' holds EMA weights: --ema takes those)"
            notes.append(note)
            if isinstance(obj.get("config"), Mapping):
                config = dict(obj["config"])
            obj = obj[used]
        sd = dict(obj)
    bad = [k for k, v in sd.items() if not isinstance(v, torch.Tensor)]
    if bad or not all(isinstance(k, str) for k in sd):
        raise _fail(p, f"expected a state dict of tensors; entries {', '.join(map(printable, bad[:4]))} are not "
                       f"tensors (wrappers read: {', '.join(_WRAPPERS)})")
    if not sd:
        raise _fail(p, "the state dict is empty")
    if all(k.startswith("module.") for k in sd):
        sd = {k[len("module."):]: v for k, v in sd.items()}
        notes.append("stripped the 'module.' prefix of a DistributedDataParallel checkpoint")
    if "dist_token" in sd or any(k.startswith("head_dist.") for k in sd):
        raise _fail(p, "a distilled DeiT (dist_token, head_dist) is not supported: the accelerator's graph has one "
                       "class token and one head, and dropping the distillation token changes every block's output; "
                       "use the non-distilled checkpoint (timm deit_*_patch16_224)")
    if any(".attn.ae." in k for k in sd):
        raise _fail(p, "already holds ViTCoD auto-encoders (blocks.*.attn.ae.*): prune the dense checkpoint, or "
                       "export this one with vitaccel.models.vitcod.load_vitcod and export_bundle")
    if any(".attn.lsh_" in k for k in sd):
        raise _fail(p, "is a ReViT checkpoint (blocks.*.attn.lsh_*): prune the dense checkpoint")
    return sd, config, notes


def _shape(sd, key, path, ndim: int) -> Tuple[int, ...]:
    if key not in sd:
        some = ", ".join(printable(k) for k in list(sd)[:6])
        raise _fail(path, f"no '{key}' tensor: not a DeiT/ViT state dict under timm's key names (its first keys: "
                          f"{some})")
    s = tuple(sd[key].shape)
    if len(s) != ndim:
        raise _fail(path, f"'{key}' has shape {list(s)}, expected {ndim} dimensions")
    return s


def infer_arch(sd: Mapping[str, torch.Tensor], *, path="checkpoint", heads: Optional[int] = None,
               config: Optional[Mapping] = None) -> Arch:
    """The architecture from the state dict's shapes (see the module docstring for the head count)."""
    d, c, p, p2 = _shape(sd, "patch_embed.proj.weight", path, 4)
    if p != p2:
        raise _fail(path, f"non-square patches ({p}x{p2}) are not supported")
    if "cls_token" not in sd:
        raise _fail(path, "no 'cls_token': a ViT without a class token (global pooling) is not supported; the "
                          "accelerator's graph classifies from the class token, as DeiT does")
    _, n, d2 = _shape(sd, "pos_embed", path, 3)
    g = int(round((n - 1) ** 0.5))
    if g * g != n - 1 or d2 != d:
        raise _fail(path, f"pos_embed {list(sd['pos_embed'].shape)} is not 1 class token + a square grid of "
                          f"patches of width {d}")
    idx = sorted({int(m.group(1)) for k in sd if (m := re.match(r"blocks\.(\d+)\.", k))})
    if not idx:
        raise _fail(path, "no 'blocks.N.*' tensors: not a DeiT/ViT state dict under timm's key names")
    if idx != list(range(len(idx))):
        raise _fail(path, f"block indices {idx[:12]} are not 0..{len(idx) - 1}")
    depth = len(idx)
    mlp, d3 = _shape(sd, "blocks.0.mlp.fc1.weight", path, 2)
    k, d4 = _shape(sd, "head.weight", path, 2)
    if d3 != d or d4 != d:
        raise _fail(path, f"fc1 {[mlp, d3]} / head {[k, d4]} do not take the embed width {d}")
    ratio = mlp / d
    qkv_bias = "blocks.0.attn.qkv.bias" in sd
    like = looks_like(d, depth, ratio)
    if heads is not None:
        h, src = int(heads), "--heads"
    elif config and isinstance(config.get("num_heads"), int) and config.get("embed_dim") == d:
        h, src = int(config["num_heads"]), "the checkpoint's config"
    elif like:
        h, src = DEIT_CONFIGS[like]["num_heads"], f"{like}'s"
    elif d % 64 == 0:
        h, src = d // 64, "head dim 64, as every DeiT/ViT"
    else:
        raise _fail(path, f"cannot tell the number of heads from the shapes (embed {d} is not a multiple of the usual "
                          f"head dim 64): pass --heads")
    if h < 1 or d % h:
        raise _fail(path, f"embed dim {d} is not divisible by {h} heads")
    return Arch(img_size=g * p, patch_size=p, in_chans=c, num_classes=k, embed_dim=d, depth=depth, num_heads=h,
                mlp_ratio=ratio, qkv_bias=qkv_bias, heads_from=src)


def resolve_arch(name: str, sd: Mapping[str, torch.Tensor], *, path="checkpoint", heads: Optional[int] = None,
                 config: Optional[Mapping] = None) -> Tuple[Arch, List[str]]:
    """``(arch, notes)`` for ``--arch NAME`` (``auto`` or a DeiT name) and the checkpoint's shapes. A named DeiT
    fixes embed dim, depth, heads and MLP ratio; image size, patch, channels and classes follow the
    checkpoint (a finetuned DeiT-Tiny with 10 classes is still ``deit_tiny``), with a note when they differ
    from timm's 224/16/3/1000."""
    if name != "auto" and name not in DEIT_CONFIGS:
        raise CheckpointError(f"--arch {printable(name)}: expected auto or one of {', '.join(ARCH_NAMES)}")
    # A named DeiT fixes the heads: infer the rest without needing them (1 is a placeholder, replaced below).
    found = infer_arch(sd, path=path, heads=heads if name == "auto" else 1, config=config)
    notes: List[str] = []
    if name == "auto":
        notes.append(f"architecture from the checkpoint's shapes: {found.describe()} (heads from {found.heads_from})")
        return found, notes
    want = DEIT_CONFIGS[name]
    if (found.embed_dim, found.depth, found.mlp_ratio) != (want["embed_dim"], want["depth"], 4.0):
        like = looks_like(found.embed_dim, found.depth, found.mlp_ratio)
        hint = f"it looks like {like}: pass --arch {like}" if like else "no DeiT has these: pass --arch auto"
        raise _fail(path, f"is not {name} (embed {want['embed_dim']}, depth {want['depth']}, MLP "
                          f"{4 * want['embed_dim']}): its shapes say embed {found.embed_dim}, depth {found.depth}, "
                          f"MLP {int(found.embed_dim * found.mlp_ratio)}; {hint}")
    if heads is not None and heads != want["num_heads"]:
        raise CheckpointError(f"--heads {heads} contradicts --arch {name} ({want['num_heads']} heads); drop one")
    arch = dataclasses.replace(found, num_heads=want["num_heads"], name=name, heads_from=name)
    odd = {k: getattr(arch, k) for k, v in _TIMM_DEFAULTS.items() if getattr(arch, k) != v}
    if odd:
        notes.append(f"{name} with " + ", ".join(f"{k} {v}" for k, v in odd.items()) + " (from the checkpoint)")
    return arch, notes


def build_model(arch: Arch, sd: Mapping[str, torch.Tensor], *, path="checkpoint") -> VisionTransformer:
    """``VisionTransformer(**arch.kwargs())`` with ``sd`` loaded strictly; a mismatch is one line naming the
    first missing, unexpected and wrongly shaped keys and what the checkpoint's shapes look like."""
    model = VisionTransformer(**arch.kwargs())
    own = model.state_dict()
    missing = [k for k in own if k not in sd]
    unexpected = [k for k in sd if k not in own]
    wrong = [(k, list(sd[k].shape), list(own[k].shape)) for k in own if k in sd and sd[k].shape != own[k].shape]
    if missing or unexpected or wrong:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing key(s) ({', '.join(missing[:3])}{', ...' if len(missing) > 3 else ''})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected key(s) ({', '.join(map(printable, unexpected[:3]))}"
                         f"{', ...' if len(unexpected) > 3 else ''})")
        if wrong:
            k, got, exp = wrong[0]
            parts.append(f"{len(wrong)} wrongly shaped ({k}: checkpoint {got}, model {exp})")
        try:
            guess = infer_arch(sd, path=path, heads=arch.num_heads).describe()
        except CheckpointError:
            guess = "no DeiT/ViT under timm's key names"
        raise _fail(path, f"does not load into {arch.describe()}: {'; '.join(parts)}. Its shapes look like {guess}")
    model.load_state_dict({k: v.to(own[k].dtype) for k, v in sd.items()}, strict=True)
    return model.eval()


def load_any(path: Union[str, os.PathLike], arch: str = "auto", *, heads: Optional[int] = None,
             ema: bool = False) -> Tuple[VisionTransformer, Arch, List[str]]:
    """Read ``path``, resolve ``arch`` against its shapes and load it: ``(model, arch, notes)``."""
    sd, config, notes = read_checkpoint(path, ema=ema)
    a, more = resolve_arch(arch, sd, path=path, heads=heads, config=config)
    return build_model(a, sd, path=path), a, notes + more
