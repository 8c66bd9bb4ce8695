"""Plain-PyTorch DeiT / ViT whose parameter names match timm's ``deit_*_patch16_224`` exactly.

No timm at run time: the layers are written out so that a timm checkpoint loads key for key, and so
that the two things ViTCoD needs can be hooked in without wrapping timm internals:

* a fixed attention mask per layer (bool ``(H, N, N)``, True = kept), pruned scores excluded from the
  softmax;
* an optional auto-encoder on Q and K (``Attention.ae``, see :mod:`vitaccel.models.vitcod`), whose
  reconstruction loss the forward pass can return.

:func:`capture_attention` hands each layer's softmax maps to a callback as they are computed, so a
calibration pass can reduce them on the fly instead of keeping every map in memory.

Checkpoints: :func:`load_checkpoint` reads ``.pth`` (``torch.load(weights_only=True)``) and
``.safetensors`` (parsed here with json + numpy; the ``safetensors`` package is not needed) and refuses
any mismatch, listing every missing, unexpected and wrongly shaped key at once.
"""
from __future__ import annotations

import contextlib
import copy
import json
import math
import os
import struct
from typing import Callable, Dict, Iterator, List, Mapping, Optional, Tuple, Union

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "VisionTransformer", "Attention", "Block", "Mlp", "PatchEmbed",
    "deit_tiny", "deit_small", "deit_base", "DEIT_CONFIGS",
    "capture_attention", "resize_pos_embed", "with_img_size", "load_checkpoint", "read_state_dict", "save_safetensors", "read_safetensors", "SafetensorsError",
    "CheckpointMismatchError",
]

# timm's DeiT uses LayerNorm(eps=1e-6) everywhere; the torch default 1e-5 would shift pretrained outputs.
LN_EPS = 1e-6

AttentionCallback = Callable[[int, torch.Tensor], None]


class PatchEmbed(nn.Module):
    """Non-overlapping patches -> tokens, a strided conv as in timm (key ``patch_embed.proj``)."""

    def __init__(self, img_size: int, patch_size: int, in_chans: int, embed_dim: int):
        super().__init__()
        if img_size % patch_size:
            raise ValueError(f"img_size {img_size} is not a multiple of patch_size {patch_size}")
        self.img_size = img_size
        self.patch_size = patch_size
        self.num_patches = (img_size // patch_size) ** 2
        self.proj = nn.Conv2d(in_chans, embed_dim, kernel_size=patch_size, stride=patch_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-2:] != (self.img_size, self.img_size):
            raise ValueError(f"expected {self.img_size}x{self.img_size} images, got {tuple(x.shape[-2:])}")
        return self.proj(x).flatten(2).transpose(1, 2)  # (B, num_patches, D)


class Attention(nn.Module):
    """Multi-head self-attention with an optional fixed mask and an optional Q/K auto-encoder.

    ``mask`` is a non-persistent buffer: it moves with ``.to(device)`` but stays out of ``state_dict``,
    so a masked model still has exactly timm's keys (masks travel next to the weights, not inside them).
    """

    def __init__(self, dim: int, num_heads: int, qkv_bias: bool = True):
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"embed_dim {dim} is not divisible by num_heads {num_heads}")
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.scale = self.head_dim ** -0.5
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)
        # Q/K auto-encoder: any module mapping (q, k) -> (q', k', recon_loss); see vitcod.QKAutoEncoder.
        self.ae: Optional[nn.Module] = None
        self.register_buffer("mask", None, persistent=False)
        self.attn_callback: Optional[Callable[[torch.Tensor], None]] = None

    def set_mask(self, mask: Union[torch.Tensor, np.ndarray, None]) -> None:
        """Fix the kept entries, bool ``(H, N, N)`` [head, query, key]; ``None`` restores dense attention."""
        if mask is None:
            self.mask = None
            return
        m = torch.as_tensor(np.asarray(mask) if not isinstance(mask, torch.Tensor) else mask)
        if m.dtype != torch.bool:
            raise TypeError(f"attention mask must be bool (True = kept), got {m.dtype}")
        if m.ndim != 3 or m.shape[0] != self.num_heads or m.shape[1] != m.shape[2]:
            raise ValueError(f"attention mask must have shape (H={self.num_heads}, N, N), got {tuple(m.shape)}")
        empty = (~m.any(dim=-1)).nonzero()
        if len(empty):
            # An all-pruned row has no softmax; refuse it rather than invent a distribution for it.
            h, i = (int(v) for v in empty[0])
            raise ValueError(f"attention mask keeps nothing in {len(empty)} query row(s), first head {h} row {i}; "
                             "keep at least one key per row (split_and_conquer always keeps the CLS column)")
        device = self.qkv.weight.device
        self.mask = m.to(device)

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """Returns ``(output, recon_loss)``; recon_loss is 0 without an auto-encoder."""
        b, n, c = x.shape
        qkv = self.qkv(x).reshape(b, n, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)  # each (B, H, N, d); column layout as timm (t*D + h*d + f)
        if self.ae is not None:
            q, k, recon = self.ae(q, k)
        else:
            recon = x.new_zeros(())
        if self.mask is not None and self.mask.shape[-1] != n:
            raise ValueError(f"attention mask is for {self.mask.shape[-1]} tokens, input has {n}")
        if self.attn_callback is None:
            # Fused kernel: about 2x faster on CPU than the explicit path with a mask. A bool attn_mask
            # means True = take part, the same convention as ours.
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=self.mask, scale=self.scale)
        else:
            # The explicit path: the probabilities are needed for the callback (calibration).
            scores = (q * self.scale) @ k.transpose(-2, -1)
            if self.mask is not None:
                # -inf is safe: set_mask guarantees every row keeps an entry, so no row is all -inf.
                scores = scores.masked_fill(~self.mask, float("-inf"))
            attn = scores.softmax(dim=-1)
            self.attn_callback(attn.detach())
            out = attn @ v
        out = out.transpose(1, 2).reshape(b, n, c)
        return self.proj(out), recon


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()  # exact erf GELU, as timm's DeiT
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class Block(nn.Module):
    def __init__(self, dim: int, num_heads: int, mlp_ratio: float, qkv_bias: bool = True):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=LN_EPS)
        self.attn = Attention(dim, num_heads, qkv_bias)
        self.norm2 = nn.LayerNorm(dim, eps=LN_EPS)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        a, recon = self.attn(self.norm1(x))
        x = x + a
        return x + self.mlp(self.norm2(x)), recon


class VisionTransformer(nn.Module):
    """DeiT/ViT classifier (CLS token, learned position embedding, pre-norm blocks).

    ``forward(x)`` returns logits; ``forward(x, return_recon=True)`` returns ``(logits, recon)`` where
    ``recon`` is the sum over blocks of the auto-encoders' reconstruction losses (0 without any).
    ``config`` holds the constructor arguments, enough to rebuild the model from a checkpoint.
    """

    def __init__(self, img_size: int = 224, patch_size: int = 16, in_chans: int = 3, num_classes: int = 1000,
                 embed_dim: int = 768, depth: int = 12, num_heads: int = 12, mlp_ratio: float = 4.0,
                 qkv_bias: bool = True):
        super().__init__()
        for name, val in (("img_size", img_size), ("patch_size", patch_size), ("in_chans", in_chans),
                          ("num_classes", num_classes), ("embed_dim", embed_dim), ("depth", depth),
                          ("num_heads", num_heads)):
            if not isinstance(val, int) or isinstance(val, bool) or val < 1:
                raise ValueError(f"{name} must be a positive int, got {val!r}")
        if not mlp_ratio > 0:
            raise ValueError(f"mlp_ratio must be > 0, got {mlp_ratio!r}")
        self.config = dict(img_size=img_size, patch_size=patch_size, in_chans=in_chans, num_classes=num_classes,
                           embed_dim=embed_dim, depth=depth, num_heads=num_heads, mlp_ratio=float(mlp_ratio),
                           qkv_bias=qkv_bias)
        self.num_heads = num_heads
        self.patch_embed = PatchEmbed(img_size, patch_size, in_chans, embed_dim)
        self.num_tokens = self.patch_embed.num_patches + 1
        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, self.num_tokens, embed_dim))
        self.blocks = nn.ModuleList(Block(embed_dim, num_heads, mlp_ratio, qkv_bias) for _ in range(depth))
        self.norm = nn.LayerNorm(embed_dim, eps=LN_EPS)
        self.head = nn.Linear(embed_dim, num_classes)
        self._init_weights()

    def _init_weights(self) -> None:
        # timm's recipe: trunc normal 0.02, zero biases, unit LayerNorm (pretrained weights replace it anyway).
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        nn.init.trunc_normal_(self.cls_token, std=0.02)
        # Unlike timm (PyTorch's default conv init), the patch conv gets std 0.02 too: with the default,
        # patch content dwarfs the position embedding after norm1 and small from-scratch runs stall
        # for hundreds of steps before attention can tell positions apart.
        nn.init.trunc_normal_(self.patch_embed.proj.weight, std=0.02)
        nn.init.zeros_(self.patch_embed.proj.bias)
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.LayerNorm):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    @property
    def depth(self) -> int:
        return len(self.blocks)

    def set_masks(self, masks: Union[torch.Tensor, np.ndarray, None]) -> None:
        """Fix every layer's mask from a bool ``(L, H, N, N)`` array, or clear them all with ``None``."""
        if masks is None:
            for blk in self.blocks:
                blk.attn.set_mask(None)
            return
        if len(masks) != self.depth:
            raise ValueError(f"got masks for {len(masks)} layers, the model has {self.depth}")
        for i, (blk, m) in enumerate(zip(self.blocks, masks)):
            try:
                blk.attn.set_mask(m)
            except (TypeError, ValueError) as e:
                raise type(e)(f"layer {i}: {e}") from None

    def forward_features(self, x: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        x = self.patch_embed(x)
        x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1) + self.pos_embed
        recon = x.new_zeros(())
        for blk in self.blocks:
            x, r = blk(x)
            recon = recon + r
        return self.norm(x), recon

    def forward(self, x: torch.Tensor, return_recon: bool = False):
        feats, recon = self.forward_features(x)
        logits = self.head(feats[:, 0])
        return (logits, recon) if return_recon else logits


DEIT_CONFIGS: Dict[str, dict] = {
    "deit_tiny": dict(embed_dim=192, depth=12, num_heads=3),
    "deit_small": dict(embed_dim=384, depth=12, num_heads=6),
    "deit_base": dict(embed_dim=768, depth=12, num_heads=12),
}


def _deit(name: str, overrides: dict) -> VisionTransformer:
    kw = dict(img_size=224, patch_size=16, in_chans=3, num_classes=1000, mlp_ratio=4.0, **DEIT_CONFIGS[name])
    kw.update(overrides)
    return VisionTransformer(**kw)


def deit_tiny(**overrides) -> VisionTransformer:
    """DeiT-Tiny/16 at 224 (timm ``deit_tiny_patch16_224``); any constructor argument can be overridden."""
    return _deit("deit_tiny", overrides)


def deit_small(**overrides) -> VisionTransformer:
    """DeiT-Small/16 at 224 (timm ``deit_small_patch16_224``)."""
    return _deit("deit_small", overrides)


def deit_base(**overrides) -> VisionTransformer:
    """DeiT-Base/16 at 224 (timm ``deit_base_patch16_224``)."""
    return _deit("deit_base", overrides)


@contextlib.contextmanager
def capture_attention(model: VisionTransformer, callback: AttentionCallback) -> Iterator[None]:
    """Within the block, every forward calls ``callback(layer_index, probs)`` per layer.

    ``probs`` is the detached softmax output ``(B, H, N, N)`` (after the mask, if any). Nothing is kept
    by the model: the callback decides what to reduce, which keeps calibration memory flat.
    """
    saved = [blk.attn.attn_callback for blk in model.blocks]
    try:
        for i, blk in enumerate(model.blocks):
            blk.attn.attn_callback = (lambda probs, _i=i: callback(_i, probs))
        yield
    finally:
        for blk, cb in zip(model.blocks, saved):
            blk.attn.attn_callback = cb


def resize_pos_embed(pos_embed: torch.Tensor, grid: int) -> torch.Tensor:
    """(1, 1 + g*g, D) -> (1, 1 + grid*grid, D): patch positions resized bicubically as a 2-D grid, the
    CLS position kept (what DeiT does to fine-tune a 224 model at 384)."""
    n = pos_embed.shape[1] - 1
    g = math.isqrt(n)
    if g * g != n:
        raise ValueError(f"pos_embed has {n} patch positions, not a square grid")
    cls, patches = pos_embed[:, :1], pos_embed[:, 1:]
    patches = patches.reshape(1, g, g, -1).permute(0, 3, 1, 2)
    patches = F.interpolate(patches, size=(grid, grid), mode="bicubic", align_corners=False)
    return torch.cat([cls, patches.permute(0, 2, 3, 1).reshape(1, grid * grid, -1)], dim=1)


def with_img_size(model: VisionTransformer, img_size: int) -> VisionTransformer:
    """A copy of ``model`` for ``img_size`` images: same weights, position embedding resized. Masks are
    not carried over (they are per token count); auto-encoders are."""
    cfg = {**model.config, "img_size": img_size}
    new = VisionTransformer(**cfg).to(next(model.parameters()).device)
    for src, dst in zip(model.blocks, new.blocks):
        if src.attn.ae is not None:
            dst.attn.ae = copy.deepcopy(src.attn.ae)
    sd = dict(model.state_dict())
    sd["pos_embed"] = resize_pos_embed(sd["pos_embed"], img_size // model.config["patch_size"])
    new.load_state_dict(sd)
    return new


# ==================================================================================================
# Checkpoints
# ==================================================================================================

class CheckpointMismatchError(ValueError):
    """The checkpoint's keys or shapes do not match the model; ``missing``, ``unexpected``, ``wrong_shape``."""

    def __init__(self, path, missing: List[str], unexpected: List[str], wrong_shape: List[Tuple[str, tuple, tuple]]):
        self.missing, self.unexpected, self.wrong_shape = missing, unexpected, wrong_shape
        lines = [f"checkpoint {path} does not match the model:"]
        if missing:
            lines.append(f"  missing keys ({len(missing)}): " + ", ".join(missing))
        if unexpected:
            lines.append(f"  unexpected keys ({len(unexpected)}): " + ", ".join(unexpected))
        if wrong_shape:
            lines.append(f"  wrong shapes ({len(wrong_shape)}): " + ", ".join(
                f"{k} checkpoint {list(c)} vs model {list(m)}" for k, c, m in wrong_shape))
        super().__init__("\n".join(lines))


_ST_DTYPES = {
    "F64": np.float64, "F32": np.float32, "F16": np.float16, "I64": np.int64, "I32": np.int32,
    "I16": np.int16, "I8": np.int8, "U8": np.uint8, "BOOL": np.bool_,
}
_ST_ITEMSIZE = {**{k: np.dtype(v).itemsize for k, v in _ST_DTYPES.items()}, "BF16": 2}
_ST_NAMES = {np.dtype(v): k for k, v in _ST_DTYPES.items()}


class SafetensorsError(ValueError):
    """A ``.safetensors`` file is malformed. The one error :func:`read_safetensors` raises for a file's
    contents (``OSError`` only for I/O: missing file, permissions); the message names the file and the
    problem (header length, JSON, entry, dtype, shape, offsets)."""


#: Largest safetensors header read (16 MiB): a DeiT-Base checkpoint's is about 20 KB, a 10,000-tensor
#: LLM's about 2 MB. Refused before the header is read or parsed.
MAX_SAFETENSORS_HEADER = 16 << 20
#: Deepest JSON nesting accepted in a header (a valid one nests 3 levels).
_ST_MAX_DEPTH = 16
_ST_MAX_ELEMENTS = 1 << 62
#: Most JSON values in a header (a tensor entry has about 10; 100,000 tensors fit).
_ST_MAX_VALUES = 1 << 20


def _st_json_depth(v, depth: int = 0) -> int:
    if depth > _ST_MAX_DEPTH:
        return depth
    if isinstance(v, dict):
        return max([_st_json_depth(x, depth + 1) for x in v.values()] or [depth + 1])
    if isinstance(v, list):
        return max([_st_json_depth(x, depth + 1) for x in v] or [depth + 1])
    return depth


def _st_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _st_no_duplicates(pairs):
    out = {}
    for k, v in pairs:
        if k in out:
            raise ValueError(f"duplicate key {k!r:.80}")
        out[k] = v
    return out


def read_safetensors(path: Union[str, os.PathLike]) -> Dict[str, torch.Tensor]:
    """Tensors of a ``.safetensors`` file: u64 LE header length N, N bytes of JSON header, then the data.

    The file is checked against the format's rules before any tensor is built (as the reference reader,
    the ``safetensors`` package, does): a regular file; N at most :data:`MAX_SAFETENSORS_HEADER` and inside
    the file; the header UTF-8 JSON, an object without duplicate keys, nested at most a few levels;
    ``__metadata__`` a string-to-string map; every other entry exactly ``{dtype, shape, data_offsets}`` with a
    known dtype, non-negative integer dims and ``data_offsets`` ``[begin, end]`` holding exactly
    ``prod(shape) * itemsize`` bytes; the tensors tile the data block without gaps or overlaps. Anything
    else raises :class:`SafetensorsError` naming the file and the problem."""
    from vitaccel.fileio import NotRegularFile, json_shape, open_regular
    from vitaccel.safetext import printable

    where = printable(os.fspath(path))

    def fail(msg: str) -> SafetensorsError:
        return SafetensorsError(f"{where}: {printable(msg)}")

    try:
        f = open_regular(path)
    except NotRegularFile as e:
        raise fail(f"not a regular file ({str(e).rsplit('(', 1)[-1].rstrip(')')})") from None
    with f:
        size = os.fstat(f.fileno()).st_size
        if size < 8:
            raise fail(f"not a safetensors file ({size} bytes, shorter than its 8-byte header length)")
        (hlen,) = struct.unpack("<Q", f.read(8))
        if hlen > MAX_SAFETENSORS_HEADER:
            raise fail(f"header length {hlen:,} is over the limit of {MAX_SAFETENSORS_HEADER:,} bytes "
                       f"(MAX_SAFETENSORS_HEADER)")
        if 8 + hlen > size:
            raise fail(f"header length {hlen:,} runs past the end of the file ({size:,} bytes): truncated?")
        raw = f.read(hlen)
        blob = f.read()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise fail(f"header is not UTF-8 (invalid byte at {e.start})") from None
    if not text.lstrip(" ").startswith("{"):
        raise fail("header is not a JSON object (it must start with '{')")
    items, depth = json_shape(text, _ST_MAX_VALUES)      # bounded before json.loads builds anything
    if items > _ST_MAX_VALUES:
        raise fail(f"header holds about {items:,} JSON values, more than {_ST_MAX_VALUES:,}")
    if depth > _ST_MAX_DEPTH:
        raise fail(f"header JSON nests {depth} levels deep, more than {_ST_MAX_DEPTH}")
    try:
        header = json.loads(text, object_pairs_hook=_st_no_duplicates)
    except RecursionError:
        raise fail(f"header JSON nests deeper than {_ST_MAX_DEPTH} levels") from None
    except ValueError as e:
        raise fail(f"header is not valid JSON ({str(e)[:160]})") from None
    if not isinstance(header, dict):
        raise fail(f"header is a JSON {type(header).__name__}, not an object")
    if _st_json_depth(header) > _ST_MAX_DEPTH:
        raise fail(f"header JSON nests deeper than {_ST_MAX_DEPTH} levels")
    meta = header.get("__metadata__", {})
    if not isinstance(meta, dict) or not all(isinstance(v, str) for v in meta.values()):
        raise fail("__metadata__ must be an object of strings")
    data = memoryview(blob)
    entries = []
    for name, info in header.items():
        if name == "__metadata__":
            continue
        if not isinstance(info, dict) or set(info) != {"dtype", "shape", "data_offsets"}:
            raise fail(f"tensor {name!r:.80}: expected an entry {{dtype, shape, data_offsets}}, found {info!r:.120}")
        dtype, shape, offs = info["dtype"], info["shape"], info["data_offsets"]
        if not isinstance(dtype, str) or dtype not in _ST_ITEMSIZE:
            raise fail(f"tensor {name!r:.80}: unsupported dtype {dtype!r:.40} (supported: "
                       f"{', '.join(sorted(_ST_ITEMSIZE))})")
        if not isinstance(shape, list) or not all(_st_int(d) and d >= 0 for d in shape):
            raise fail(f"tensor {name!r:.80}: shape must be a list of non-negative integers, found {shape!r:.120}")
        if math.prod(max(d, 1) for d in shape) > _ST_MAX_ELEMENTS:
            raise fail(f"tensor {name!r:.80}: shape {shape!r:.120} is too large")
        if not (isinstance(offs, list) and len(offs) == 2 and all(_st_int(o) for o in offs)):
            raise fail(f"tensor {name!r:.80}: data_offsets must be [begin, end] integers, found {offs!r:.120}")
        begin, end = offs
        nbytes = math.prod(shape) * _ST_ITEMSIZE[dtype]
        if not 0 <= begin <= end <= len(data) or end - begin != nbytes:
            raise fail(f"tensor {name!r:.80}: offsets [{begin}, {end}) do not hold {dtype} {shape} ({nbytes} bytes) "
                       f"inside the {len(data)}-byte data block")
        entries.append((begin, end, name, dtype, shape))
    entries.sort(key=lambda e: (e[0], e[1]))
    pos, prev = 0, None
    for begin, end, name, _dt, _sh in entries:
        if begin != pos:
            what = f"overlaps tensor {prev!r:.80}" if begin < pos else f"leaves a gap of {begin - pos} bytes"
            raise fail(f"tensor {name!r:.80}: data_offsets [{begin}, {end}) {what} (tensors must tile the data block)")
        pos, prev = end, name
    if pos != len(data):
        raise fail(f"the tensors cover {pos} of the {len(data)} data bytes (trailing or missing data)")
    out: Dict[str, torch.Tensor] = {}
    for begin, end, name, dtype, shape in entries:
        raw_arr = np.frombuffer(data[begin:end], dtype=np.dtype(np.uint16 if dtype == "BF16" else _ST_DTYPES[dtype])
                                .newbyteorder("<"))
        arr = raw_arr.astype(raw_arr.dtype.newbyteorder("="))
        t = torch.from_numpy(arr)
        if dtype == "BF16":
            t = t.view(torch.bfloat16)
        out[name] = t.reshape(shape)
    return out


def save_safetensors(state_dict: Mapping[str, torch.Tensor], path: Union[str, os.PathLike],
                     metadata: Optional[Dict[str, str]] = None) -> None:
    """Write tensors in the safetensors layout (little-endian, C order, 8-byte aligned header)."""
    header: Dict[str, object] = {}
    chunks, offset = [], 0
    for name, t in state_dict.items():
        t = t.detach().cpu().contiguous()
        if t.dtype == torch.bfloat16:
            arr, code = t.view(torch.uint16).numpy(), "BF16"
        else:
            arr = t.numpy()
            if arr.dtype not in _ST_NAMES:
                raise ValueError(f"tensor {name!r}: dtype {arr.dtype} cannot be stored in safetensors here")
            code = _ST_NAMES[arr.dtype]
        b = arr.astype(arr.dtype.newbyteorder("<"), copy=False).tobytes()
        header[name] = {"dtype": code, "shape": list(arr.shape), "data_offsets": [offset, offset + len(b)]}
        chunks.append(b)
        offset += len(b)
    if metadata:
        header["__metadata__"] = {str(k): str(v) for k, v in metadata.items()}
    hb = json.dumps(header, separators=(",", ":")).encode("utf-8")
    hb += b" " * (-len(hb) % 8)  # the format pads the header with spaces so the data block is aligned
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(hb)))
        f.write(hb)
        for b in chunks:
            f.write(b)


def read_state_dict(path: Union[str, os.PathLike]) -> Dict[str, torch.Tensor]:
    """The state dict in a ``.pth``/``.pt``/``.bin`` or ``.safetensors`` file, wrappers removed.

    ``{"model": sd}`` and ``{"state_dict": sd}`` (timm, DeiT's release, Lightning) are unwrapped.
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"checkpoint not found: {path}")
    if path.endswith(".safetensors"):
        return read_safetensors(path)
    obj = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(obj, Mapping):
        for wrapper in ("model", "state_dict"):
            if wrapper in obj and isinstance(obj[wrapper], Mapping):
                obj = obj[wrapper]
                break
    if not isinstance(obj, Mapping) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise ValueError(f"{path}: expected a state dict of tensors (optionally under 'model' or 'state_dict'), "
                         f"found {type(obj).__name__} with keys {list(obj)[:8] if isinstance(obj, Mapping) else '-'}")
    return dict(obj)


def load_checkpoint(model: nn.Module, path: Union[str, os.PathLike]) -> nn.Module:
    """Load ``path`` into ``model`` strictly: any missing, unexpected or wrongly shaped key raises
    :class:`CheckpointMismatchError` naming all of them. Returns the model."""
    sd = read_state_dict(path)
    own = model.state_dict()
    missing = [k for k in own if k not in sd]
    unexpected = [k for k in sd if k not in own]
    wrong = [(k, tuple(sd[k].shape), tuple(own[k].shape)) for k in own if k in sd and sd[k].shape != own[k].shape]
    if missing or unexpected or wrong:
        raise CheckpointMismatchError(path, missing, unexpected, wrong)
    model.load_state_dict({k: v.to(own[k].dtype) for k, v in sd.items()}, strict=True)
    return model
