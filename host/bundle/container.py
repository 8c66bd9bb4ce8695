"""The deployment bundle: one versioned file that ``models/`` writes and the host (or the simulator) reads.

Format (full spec in ``host/BUNDLE.md``)::

    b"VITACCB\\x00"  | uint64 LE header length L | L bytes UTF-8 JSON header (space-padded so that
    16 + L is a multiple of 64) | data section: raw little-endian C-order arrays, each 64-byte aligned

The header holds ``format_version``, ``meta``, the tensor directory ``tensors`` ({name: {dtype, shape,
offset, nbytes}}, offsets relative to the data start), ``data_nbytes`` and ``data_sha256``. No pickle, no
object arrays: arrays are ``np.frombuffer`` views on the file's bytes (read-only).

Public API:

* :class:`Bundle` - the in-memory bundle (``meta`` dict + ``tensors`` dict), with accessors and ``summary()``;
* :func:`write_bundle` (validates, then writes atomically), :func:`load_bundle` (validates everything),
  :func:`bundle_to_bytes` / :func:`bundle_from_bytes`, :func:`validate_bundle`, :func:`read_header`;
* :class:`BundleError` - the one exception for a bad bundle, with ``.field`` naming what is wrong;
* :data:`META_SCHEMA`, :data:`TENSOR_SCHEMA`, :data:`METHOD_GROUPS` - schema v1 as tables;
* :func:`random_bundle` - a small valid random bundle for tests (stands in for the real exporter).

``encode_unchecked``, ``split_unchecked`` and ``assemble_unchecked`` skip all validation: they exist so
tests can build broken files. Never ship their output.

NumPy and the standard library only: this module runs on a PYNQ board, without torch.
"""
from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import math
import os
import re
import tempfile
from pathlib import Path
from typing import Any, BinaryIO, Callable, Dict, Iterable, List, Mapping, Optional, Tuple, Union

import numpy as np

from vitaccel.sim.vitcod.sparse_format import mask_to_csc, order_from_globals

__all__ = [
    "MAGIC",
    "FORMAT_VERSION",
    "ALIGN",
    "MAX_HEADER_BYTES",
    "DTYPES",
    "METHODS",
    "BundleError",
    "Bundle",
    "ModelDims",
    "MetaField",
    "TensorSpec",
    "META_SCHEMA",
    "TENSOR_SCHEMA",
    "METHOD_GROUPS",
    "write_bundle",
    "load_bundle",
    "bundle_to_bytes",
    "bundle_from_bytes",
    "validate_bundle",
    "check_config",
    "read_header",
    "random_bundle",
    "encode_unchecked",
    "split_unchecked",
    "assemble_unchecked",
]

MAGIC = b"VITACCB\x00"
FORMAT_VERSION = 1
#: Alignment of the data section and of every tensor in it (bytes).
ALIGN = 64
#: Largest header accepted: refuse before reading or parsing it.
MAX_HEADER_BYTES = 64 << 20
_PREAMBLE = len(MAGIC) + 8
_MAX_NDIM = 8
_MAX_DIM = (1 << 31) - 1
_MAX_JSON_DEPTH = 32
_INT64_MAX = (1 << 63) - 1
_MAX_ARRAY_BYTES = 1 << 48

#: Allowed dtypes in the container, by header name (all little-endian; bool is one byte, 0 or 1).
DTYPES: Dict[str, np.dtype] = {
    "bool": np.dtype("|b1"),
    "int8": np.dtype("|i1"),
    "uint8": np.dtype("|u1"),
    "int16": np.dtype("<i2"),
    "int32": np.dtype("<i4"),
    "int64": np.dtype("<i8"),
    "float32": np.dtype("<f4"),
}

# Numerics contract bounds (NUMERICS.md).
MAX_ABS_BIAS = 1 << 30
MULT_LIMIT = 1 << 31
MAX_SHIFT = 63

METHODS = ("vitcod", "revit", "dense")


# ==================================================================================================
# The exception
# ==================================================================================================

class BundleError(ValueError):
    """A bundle is malformed, inconsistent, or not for this hardware.

    ``field`` is the dotted name of what is wrong: a tensor name (``layers.3.attn.csc_colptr``), a meta
    key (``meta.model.num_heads``), or a container part (``magic``, ``header_length``, ``header``,
    ``format_version``, ``tensors``, ``data_nbytes``, ``data_sha256``). The message names the field and
    what was expected vs found. ``path`` is the file, when loading from one.
    """

    def __init__(self, field: str, message: str, path: Optional[str] = None):
        self.field = field
        self.message = message
        self.path = path
        where = f"{path}: " if path else ""
        super().__init__(f"{where}{field}: {message}")

    def __reduce__(self):  # keep pickling (multiprocessing) working with the 3-argument constructor
        return (BundleError, (self.field, self.message, self.path))


def _fail(field: str, message: str) -> "BundleError":
    return BundleError(field, message)


# ==================================================================================================
# Schema v1: meta
# ==================================================================================================

@dataclasses.dataclass(frozen=True)
class MetaField:
    """One key of ``meta`` (or of an object inside it).

    ``kind``: ``int`` (not bool, in [lo, hi]), ``str`` (non-empty, optionally one of ``choices``),
    ``hex64`` (64 lowercase hex digits), ``object`` (a JSON object with ``fields``; ``open`` allows other
    scalar keys), ``scalars`` (a JSON object of scalars), ``json`` (any JSON value).
    """

    name: str
    kind: str
    required: bool = True
    lo: Optional[int] = None
    hi: Optional[int] = None
    choices: Optional[Tuple[str, ...]] = None
    fields: Tuple["MetaField", ...] = ()
    open: bool = False
    doc: str = ""


MODEL_FIELDS: Tuple[MetaField, ...] = (
    MetaField("arch", "str", choices=("deit",), doc="model family"),
    MetaField("img_size", "int", lo=1, hi=65536, doc="input image side, pixels"),
    MetaField("patch_size", "int", lo=1, hi=65536, doc="patch side, pixels; divides img_size"),
    MetaField("in_chans", "int", lo=1, hi=4096, doc="input channels"),
    MetaField("num_classes", "int", lo=1, hi=1 << 20, doc="classifier outputs"),
    MetaField("embed_dim", "int", lo=1, hi=65536, doc="model width D (the K of every D-input linear)"),
    MetaField("depth", "int", lo=1, hi=1024, doc="number of encoder layers"),
    MetaField("num_heads", "int", lo=1, hi=1024, doc="attention heads H; divides embed_dim"),
    MetaField("mlp_dim", "int", lo=1, hi=65536, doc="MLP hidden width"),
    MetaField("num_tokens", "int", lo=2, hi=65535, doc="N = (img_size / patch_size)^2 + 1 (with CLS)"),
    MetaField("ae_heads", "int", required=False, lo=1, hi=1024,
              doc="AE compressed heads Hc (1..H); present iff the bundle has AE tensors"),
)

HW_FIELDS: Tuple[MetaField, ...] = (
    MetaField("config_name", "str", doc="hardware config name (configs/<name>.json)"),
    MetaField("config_hash", "hex64", doc="HardwareConfig.hash (sha256 hex) the bundle was built for"),
)

GROUPS_FIELDS: Tuple[MetaField, ...] = (
    MetaField("n_groups", "int", lo=1, hi=65535, doc="LSH semantic groups G (ReViT)"),
)

META_SCHEMA: Tuple[MetaField, ...] = (
    MetaField("format_version", "int", lo=FORMAT_VERSION, hi=FORMAT_VERSION,
              doc="schema version; equals the header's format_version"),
    MetaField("model", "object", fields=MODEL_FIELDS, doc="model dimensions"),
    MetaField("hw", "object", fields=HW_FIELDS, doc="the hardware config the bundle was built for"),
    MetaField("quant", "scalars", doc="quantisation settings, free-form scalars"),
    MetaField("method", "str", choices=METHODS, doc="which accelerator algorithm the bundle is for"),
    MetaField("groups", "object", required=False, fields=GROUPS_FIELDS, open=True,
              doc="ReViT LSH grouping; present iff the bundle has lsh tensors"),
    MetaField("extra", "json", required=False, doc="free JSON: dataset, accuracy, training info"),
)


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _check_json_value(v: Any, field: str, depth: int = 0) -> None:
    """Any JSON value that round-trips exactly: dict (str keys), list, str, int (int64), finite float,
    bool, None."""
    if depth > _MAX_JSON_DEPTH:
        raise _fail(field, f"nested deeper than {_MAX_JSON_DEPTH} levels")
    if v is None or isinstance(v, (bool, str)):
        return
    if isinstance(v, int):
        if not -_INT64_MAX - 1 <= v <= _INT64_MAX:
            raise _fail(field, f"expected an integer that fits int64, found {v}")
        return
    if isinstance(v, float):
        if not math.isfinite(v):
            raise _fail(field, f"expected a finite number, found {v!r}")
        return
    if isinstance(v, list):
        for i, x in enumerate(v):
            _check_json_value(x, f"{field}.{i}", depth + 1)
        return
    if isinstance(v, dict):
        for k, x in v.items():
            if not isinstance(k, str):
                raise _fail(field, f"expected string keys, found key {k!r} ({type(k).__name__})")
            _check_json_value(x, f"{field}.{k}", depth + 1)
        return
    raise _fail(field, f"expected a JSON value (dict, list, str, int, float, bool, None), "
                       f"found {type(v).__name__}")


def _check_scalar(v: Any, field: str) -> None:
    if isinstance(v, (dict, list)):
        raise _fail(field, f"expected a scalar (str, int, float, bool or null), found {type(v).__name__}")
    _check_json_value(v, field)


def _check_meta_value(f: MetaField, v: Any, field: str) -> None:
    if f.kind == "int":
        if not _is_int(v):
            raise _fail(field, f"expected an integer, found {v!r}")
        if (f.lo is not None and v < f.lo) or (f.hi is not None and v > f.hi):
            raise _fail(field, f"expected an integer in [{f.lo}, {f.hi}], found {v}")
    elif f.kind == "str":
        if not isinstance(v, str) or not v:
            raise _fail(field, f"expected a non-empty string, found {v!r}")
        if f.choices is not None and v not in f.choices:
            raise _fail(field, f"expected one of {', '.join(repr(c) for c in f.choices)}, found {v!r}")
        if len(v) > 256:
            raise _fail(field, f"expected at most 256 characters, found {len(v)}")
    elif f.kind == "hex64":
        if not isinstance(v, str) or not re.fullmatch(r"[0-9a-f]{64}", v):
            raise _fail(field, f"expected 64 lowercase hex digits (a sha256), found {v!r}")
    elif f.kind == "scalars":
        if not isinstance(v, dict):
            raise _fail(field, f"expected a JSON object of scalars, found {type(v).__name__}")
        for k, x in v.items():
            if not isinstance(k, str):
                raise _fail(field, f"expected string keys, found {k!r}")
            _check_scalar(x, f"{field}.{k}")
    elif f.kind == "json":
        _check_json_value(v, field)
    elif f.kind == "object":
        _check_meta_object(v, f.fields, field, open_=f.open)
    else:  # pragma: no cover - a schema bug
        raise AssertionError(f"unknown MetaField kind {f.kind!r}")


def _check_meta_object(obj: Any, fields: Tuple[MetaField, ...], prefix: str, open_: bool = False) -> None:
    if not isinstance(obj, dict):
        raise _fail(prefix, f"expected a JSON object, found {type(obj).__name__}")
    known = {f.name for f in fields}
    for k in obj:
        if not isinstance(k, str):
            raise _fail(prefix, f"expected string keys, found {k!r}")
        if k not in known:
            if open_:
                _check_scalar(obj[k], f"{prefix}.{k}")
            else:
                raise _fail(f"{prefix}.{k}", f"unknown key; expected only {', '.join(sorted(known))}")
    for f in fields:
        if f.name not in obj:
            if f.required:
                raise _fail(f"{prefix}.{f.name}", f"missing ({f.doc})")
            continue
        _check_meta_value(f, obj[f.name], f"{prefix}.{f.name}")


# ==================================================================================================
# Model dimensions
# ==================================================================================================

@dataclasses.dataclass(frozen=True)
class ModelDims:
    """``meta.model`` as typed fields."""

    arch: str
    img_size: int
    patch_size: int
    in_chans: int
    num_classes: int
    embed_dim: int
    depth: int
    num_heads: int
    mlp_dim: int
    num_tokens: int
    ae_heads: Optional[int] = None

    @property
    def head_dim(self) -> int:
        return self.embed_dim // self.num_heads

    @property
    def grid_size(self) -> int:
        return self.img_size // self.patch_size

    @property
    def num_patches(self) -> int:
        return self.grid_size ** 2

    @classmethod
    def from_meta(cls, meta: Mapping[str, Any]) -> "ModelDims":
        """Validate ``meta['model']`` (keys, types, ranges, cross-field rules) and return it typed."""
        if not isinstance(meta, Mapping):
            raise _fail("meta", f"expected a JSON object, found {type(meta).__name__}")
        model_field = next(f for f in META_SCHEMA if f.name == "model")
        if "model" not in meta:
            raise _fail("meta.model", f"missing ({model_field.doc})")
        m = meta["model"]
        _check_meta_value(model_field, m, "meta.model")
        if m["img_size"] % m["patch_size"]:
            raise _fail("meta.model.patch_size", f"expected a divisor of img_size {m['img_size']}, "
                                                 f"found {m['patch_size']}")
        n = (m["img_size"] // m["patch_size"]) ** 2 + 1
        if m["num_tokens"] != n:
            raise _fail("meta.model.num_tokens", f"expected (img_size / patch_size)^2 + 1 = {n}, "
                                                 f"found {m['num_tokens']}")
        if m["embed_dim"] % m["num_heads"]:
            raise _fail("meta.model.num_heads", f"expected a divisor of embed_dim {m['embed_dim']}, "
                                                f"found {m['num_heads']}")
        if "ae_heads" in m and m["ae_heads"] > m["num_heads"]:
            raise _fail("meta.model.ae_heads", f"expected 1 <= ae_heads <= num_heads {m['num_heads']}, "
                                               f"found {m['ae_heads']}")
        return cls(**{f.name: m.get(f.name) for f in MODEL_FIELDS})


# ==================================================================================================
# Schema v1: tensors
# ==================================================================================================

@dataclasses.dataclass(frozen=True)
class TensorSpec:
    """One tensor of schema v1.

    ``name`` is the full name for global tensors, the part after ``layers.{i}.`` for per-layer ones.
    ``shape`` items are ints or symbols: ``D`` embed_dim, ``C`` in_chans, ``P`` patch_size, ``N``
    num_tokens, ``H`` num_heads, ``K`` num_classes, ``M`` mlp_dim, ``Hc`` ae_heads, ``G`` n_groups,
    ``3D``, ``N+1``, ``H+1``, and ``nnz`` (any length; cross-checked). ``group`` decides when it must be
    present (see :data:`METHOD_GROUPS`); ``check`` names a value rule in ``_VALUE_CHECKS``.
    """

    name: str
    dtype: str
    shape: Tuple[Union[int, str], ...]
    group: str
    check: Optional[str] = None
    doc: str = ""


def _linear(name: str, out: str, inp: str, doc: str) -> Tuple[TensorSpec, ...]:
    return (
        TensorSpec(f"{name}.weight", "int8", (out, inp), "layer", None, f"{doc}: int8 weight (out, in)"),
        TensorSpec(f"{name}.bias", "int32", (out,), "layer", "bias", f"{doc}: int32 bias, |b| < 2^30"),
        TensorSpec(f"{name}.w_scale", "float32", (out,), "layer", "scale", f"{doc}: per-channel weight scale"),
        TensorSpec(f"{name}.in_scale", "float32", (), "layer", "scale", f"{doc}: input activation scale"),
        TensorSpec(f"{name}.out_scale", "float32", (), "layer", "scale", f"{doc}: output activation scale"),
        TensorSpec(f"{name}.mult", "int32", (out,), "layer", "mult", f"{doc}: requant multiplier [0, 2^31)"),
        TensorSpec(f"{name}.shift", "int32", (out,), "layer", "shift", f"{doc}: requant shift [0, 63]"),
    )


def _ae(which: str) -> Tuple[TensorSpec, ...]:
    p = f"ae.{which}"
    doc = f"ViTCoD auto-encoder for {which.upper()} (compresses heads H -> Hc)"
    return (
        TensorSpec(f"{p}.enc_weight", "int8", ("Hc", "H"), "ae", None, doc),
        TensorSpec(f"{p}.enc_bias", "int32", ("Hc",), "ae", "bias", doc),
        TensorSpec(f"{p}.enc_mult", "int32", (), "ae", "mult", doc),
        TensorSpec(f"{p}.enc_shift", "int32", (), "ae", "shift", doc),
        TensorSpec(f"{p}.dec_weight", "int8", ("H", "Hc"), "ae", None, doc),
        TensorSpec(f"{p}.dec_bias", "int32", ("H",), "ae", "bias", doc),
        TensorSpec(f"{p}.dec_mult", "int32", (), "ae", "mult", doc),
        TensorSpec(f"{p}.dec_shift", "int32", (), "ae", "shift", doc),
    )


GLOBAL_TENSORS: Tuple[TensorSpec, ...] = (
    TensorSpec("patch_embed.weight", "float32", ("D", "C", "P", "P"), "global", "finite", "patch conv (host, float)"),
    TensorSpec("patch_embed.bias", "float32", ("D",), "global", "finite", "patch conv bias"),
    TensorSpec("cls_token", "float32", (1, 1, "D"), "global", "finite", "class token"),
    TensorSpec("pos_embed", "float32", (1, "N", "D"), "global", "finite", "position embedding"),
    TensorSpec("norm.weight", "float32", ("D",), "global", "finite", "final LayerNorm"),
    TensorSpec("norm.bias", "float32", ("D",), "global", "finite", "final LayerNorm"),
    TensorSpec("head.weight", "float32", ("K", "D"), "global", "finite", "classifier (host, float)"),
    TensorSpec("head.bias", "float32", ("K",), "global", "finite", "classifier bias"),
)

LAYER_TENSORS: Tuple[TensorSpec, ...] = (
    TensorSpec("norm1.weight", "float32", ("D",), "layer", "finite", "LayerNorm before attention (host)"),
    TensorSpec("norm1.bias", "float32", ("D",), "layer", "finite", "LayerNorm before attention (host)"),
    TensorSpec("norm2.weight", "float32", ("D",), "layer", "finite", "LayerNorm before MLP (host)"),
    TensorSpec("norm2.bias", "float32", ("D",), "layer", "finite", "LayerNorm before MLP (host)"),
    *_linear("qkv", "3D", "D", "QKV projection"),
    *_linear("proj", "D", "D", "attention output projection"),
    *_linear("fc1", "M", "D", "MLP up"),
    *_linear("fc2", "D", "M", "MLP down"),
    TensorSpec("attn.softmax_mult", "int32", (), "layer", "mult", "softmax m_exp (numerics softmax_params)"),
    TensorSpec("attn.softmax_shift", "int32", (), "layer", "shift", "softmax s_exp"),
    TensorSpec("attn.out_mult", "int32", (), "layer", "mult", "S.V requant multiplier"),
    TensorSpec("attn.out_shift", "int32", (), "layer", "shift", "S.V requant shift"),
    # ViTCoD fixed sparse attention (see vitaccel.sim.vitcod.sparse_format).
    TensorSpec("attn.mask", "bool", ("H", "N", "N"), "attn_sparse", None,
               "kept attention entries [h, query, key], original token order"),
    TensorSpec("attn.order", "int32", ("H", "N"), "attn_sparse", "index_N",
               "reordered column c = original key order[h, c]; globals first, then the rest increasing"),
    TensorSpec("attn.n_global", "int32", ("H",), "attn_sparse", "n_global", "global (denser) columns per head"),
    TensorSpec("attn.csc_colptr", "int32", ("H", "N+1"), "attn_sparse", "nonneg", "per-head CSC column offsets"),
    TensorSpec("attn.csc_headptr", "int32", ("H+1",), "attn_sparse", "nonneg", "offset of each head in rowidx"),
    TensorSpec("attn.csc_rowidx", "int32", ("nnz",), "attn_sparse", "index_N", "CSC query indices"),
    *_ae("q"),
    *_ae("k"),
    # ReViT locality-sensitive hashing into G semantic groups: H(x) = floor((alpha x + beta) / gamma).
    TensorSpec("lsh.alpha", "float32", ("G", "D"), "lsh", "finite", "LSH projections"),
    TensorSpec("lsh.beta", "float32", ("G",), "lsh", "finite", "LSH offsets"),
    TensorSpec("lsh.gamma", "float32", (), "lsh", "scale", "LSH bucket width"),
)

#: All tensor specs of schema v1: ``global`` ones by full name, the rest per layer.
TENSOR_SCHEMA: Tuple[TensorSpec, ...] = GLOBAL_TENSORS + LAYER_TENSORS
_LAYER_SPEC = {s.name: s for s in LAYER_TENSORS}
_GLOBAL_SPEC = {s.name: s for s in GLOBAL_TENSORS}
_LAYER_POS = {s.name: i for i, s in enumerate(LAYER_TENSORS)}

#: Per method, each optional tensor group: "required", "optional" or "forbidden".
METHOD_GROUPS: Dict[str, Dict[str, str]] = {
    "vitcod": {"attn_sparse": "required", "ae": "optional", "lsh": "forbidden"},
    "revit": {"attn_sparse": "optional", "ae": "forbidden", "lsh": "required"},
    "dense": {"attn_sparse": "optional", "ae": "forbidden", "lsh": "forbidden"},
}
#: Meta key that must be present exactly when a group is (dotted, under meta).
_GROUP_META = {"ae": ("model", "ae_heads"), "lsh": ("groups", None)}
_LAYER_NAME = re.compile(r"layers\.(0|[1-9][0-9]{0,5})\.(.+)")


def _first_index(bad: np.ndarray) -> Tuple[int, ...]:
    if bad.ndim == 0:
        return ()
    return tuple(int(i) for i in np.argwhere(bad)[0])


def _where(idx: Tuple[int, ...]) -> str:
    return f" at index {list(idx)}" if idx else ""


def _value(a: np.ndarray, idx: Tuple[int, ...]) -> str:
    return repr(a[idx].item())


_Check = Callable[[np.ndarray, Dict[str, int]], Optional[str]]


def _range_check(lo: Union[int, str, None], hi: Union[int, str, None], what: str) -> _Check:
    def check(a: np.ndarray, dims: Dict[str, int]) -> Optional[str]:
        lo_v = dims[lo] if isinstance(lo, str) else lo
        hi_v = dims[hi] if isinstance(hi, str) else hi
        bad = np.zeros(a.shape, dtype=bool)
        if lo_v is not None:
            bad |= a < lo_v
        if hi_v is not None:
            bad |= a > hi_v
        if bad.any():
            idx = _first_index(bad)
            return f"expected {what}, found {_value(a, idx)}{_where(idx)}"
        return None
    return check


def _finite_check(positive: bool) -> _Check:
    def check(a: np.ndarray, dims: Dict[str, int]) -> Optional[str]:
        bad = ~np.isfinite(a)
        if positive:
            bad |= ~(a > 0)
        if bad.any():
            idx = _first_index(bad)
            what = "finite values > 0" if positive else "finite values"
            return f"expected {what}, found {_value(a, idx)}{_where(idx)}"
        return None
    return check


#: Value rules by name: each returns None or "expected ..., found ..." for an array of the right dtype.
_VALUE_CHECKS: Dict[str, _Check] = {
    "finite": _finite_check(False),
    "scale": _finite_check(True),
    "bias": _range_check(-MAX_ABS_BIAS + 1, MAX_ABS_BIAS - 1, "|bias| < 2^30"),
    "mult": _range_check(0, MULT_LIMIT - 1, "a multiplier in [0, 2^31)"),
    "shift": _range_check(0, MAX_SHIFT, "a shift in [0, 63]"),
    "index_N": _range_check(0, "N-1", "an index in [0, N)"),
    "n_global": _range_check(0, "N", "a count in [0, N]"),
    "nonneg": _range_check(0, None, "non-negative offsets"),
}


def _dims_table(d: ModelDims, meta: Mapping[str, Any]) -> Dict[str, int]:
    dims = {
        "D": d.embed_dim, "C": d.in_chans, "P": d.patch_size, "N": d.num_tokens, "H": d.num_heads,
        "K": d.num_classes, "M": d.mlp_dim, "3D": 3 * d.embed_dim, "N+1": d.num_tokens + 1,
        "N-1": d.num_tokens - 1, "H+1": d.num_heads + 1,
    }
    if d.ae_heads is not None:
        dims["Hc"] = d.ae_heads
    groups = meta.get("groups")
    if isinstance(groups, dict) and _is_int(groups.get("n_groups")):
        dims["G"] = groups["n_groups"]
    return dims


# ==================================================================================================
# Cross-checks: the sparse attention format
# ==================================================================================================

def _check_attn_sparse(t: Mapping[str, np.ndarray], p: str, dims: Dict[str, int]) -> None:
    """Structure of order/n_global/CSC, then agreement with ``mask_to_csc(mask, order, n_global)``."""
    p = p + "attn."
    n, h = dims["N"], dims["H"]
    order = t[p + "order"].astype(np.int64)
    n_global = t[p + "n_global"].astype(np.int64)
    colptr = t[p + "csc_colptr"].astype(np.int64)
    headptr = t[p + "csc_headptr"].astype(np.int64)
    rowidx = t[p + "csc_rowidx"].astype(np.int64)
    mask = t[p + "mask"]
    # order: each row a permutation of 0..N-1 (values are already in [0, N)).
    srt = np.sort(order, axis=1)
    bad_rows = np.any(srt != np.arange(n)[None, :], axis=1)
    if bad_rows.any():
        hh = int(np.argmax(bad_rows))
        dup = srt[hh][np.flatnonzero(np.diff(srt[hh]) == 0)]
        raise _fail(p + "order", f"expected each row to be a permutation of 0..{n - 1}; head {hh} "
                                 f"repeats {int(dup[0]) if dup.size else '?'}")
    # order: after the n_global globals, the other columns in increasing original index.
    col = np.arange(n)[None, :]
    later = (col[:, 1:] > n_global[:, None]) & (np.diff(order, axis=1) <= 0)
    if later.any():
        hh, c = (int(i) for i in np.argwhere(later)[0])
        raise _fail(p + "order", f"expected the non-global columns (c >= n_global = {int(n_global[hh])}) in "
                                 f"increasing key order; head {hh} has {int(order[hh, c])} then "
                                 f"{int(order[hh, c + 1])} at columns {c}, {c + 1}")
    # colptr: starts at 0, non-decreasing, empty global columns.
    if np.any(colptr[:, 0] != 0):
        hh = int(np.argmax(colptr[:, 0] != 0))
        raise _fail(p + "csc_colptr", f"expected colptr[h, 0] == 0, found {int(colptr[hh, 0])} for head {hh}")
    dcol = np.diff(colptr, axis=1)
    if np.any(dcol < 0):
        hh, c = (int(i) for i in np.argwhere(dcol < 0)[0])
        raise _fail(p + "csc_colptr", f"expected non-decreasing offsets; head {hh} goes from "
                                      f"{int(colptr[hh, c])} to {int(colptr[hh, c + 1])} at column {c}")
    glob = (col < n_global[:, None]) & (dcol != 0)
    if glob.any():
        hh, c = (int(i) for i in np.argwhere(glob)[0])
        raise _fail(p + "csc_colptr", f"expected global columns (c < n_global = {int(n_global[hh])}) to be "
                                      f"empty; head {hh} column {c} holds {int(dcol[hh, c])} entries")
    # headptr: starts at 0, segments match colptr, ends at nnz.
    if headptr[0] != 0:
        raise _fail(p + "csc_headptr", f"expected headptr[0] == 0, found {int(headptr[0])}")
    seg = np.diff(headptr)
    if np.any(seg != colptr[:, n]):
        hh = int(np.argmax(seg != colptr[:, n]))
        raise _fail(p + "csc_headptr", f"expected headptr[{hh + 1}] - headptr[{hh}] == colptr[{hh}, N] = "
                                       f"{int(colptr[hh, n])}, found {int(seg[hh])}")
    if headptr[h] != rowidx.shape[0]:
        raise _fail(p + "csc_rowidx", f"expected {int(headptr[h])} entries (headptr[H]), found {rowidx.shape[0]}")
    # rowidx strictly increasing inside every column.
    nnz = rowidx.shape[0]
    if nnz > 1:
        starts = (headptr[:-1, None] + colptr[:, :-1]).ravel()
        is_start = np.zeros(nnz, dtype=bool)
        is_start[starts[starts < nnz]] = True
        bad = (np.diff(rowidx) <= 0) & ~is_start[1:]
        if bad.any():
            i = int(np.argmax(bad)) + 1
            raise _fail(p + "csc_rowidx", f"expected strictly increasing query indices within a column; "
                                          f"entry {i} is {int(rowidx[i])} after {int(rowidx[i - 1])}")
    # Agreement with the mask: the CSC is derived from it in exactly one place.
    e_colptr, _, e_rowidx = mask_to_csc(mask, t[p + "order"], t[p + "n_global"])
    if not np.array_equal(e_colptr, colptr):
        hh, c = (int(i) for i in np.argwhere(np.diff(e_colptr, axis=1) != dcol)[0])
        raise _fail(p + "csc_colptr", f"disagrees with attn.mask: head {hh} reordered column {c} (key "
                                      f"{int(order[hh, c])}) holds {int(dcol[hh, c])} entries, the mask keeps "
                                      f"{int(e_colptr[hh, c + 1] - e_colptr[hh, c])}")
    if not np.array_equal(e_rowidx, rowidx):
        i = int(np.argmax(e_rowidx != rowidx))
        hh = int(np.searchsorted(headptr, i, side="right")) - 1
        c = int(np.searchsorted(colptr[hh], i - headptr[hh], side="right")) - 1
        raise _fail(p + "csc_rowidx", f"disagrees with attn.mask: head {hh} reordered column {c} (key "
                                      f"{int(order[hh, c])}) expected query {int(e_rowidx[i])}, found "
                                      f"{int(rowidx[i])} (entry {i})")


#: Checks across the tensors of one layer, by group.
CROSS_CHECKS: Tuple[Tuple[str, Callable[[Mapping[str, np.ndarray], str, Dict[str, int]], None]], ...] = (
    ("attn_sparse", _check_attn_sparse),
)


# ==================================================================================================
# Validation
# ==================================================================================================

def _validate_meta(meta: Any) -> ModelDims:
    if not isinstance(meta, dict):
        raise _fail("meta", f"expected a JSON object, found {type(meta).__name__}")
    _check_meta_object(meta, META_SCHEMA, "meta")
    return ModelDims.from_meta(meta)


def check_config(meta_or_bundle: Union["Bundle", Mapping[str, Any]], config: Any) -> None:
    """Raise :class:`BundleError` unless the bundle was built for ``config`` (a name, path or
    ``HardwareConfig``) and its model fits that config's size limits."""
    from vitaccel.hwconfig import ConfigError, load_config

    meta = meta_or_bundle.meta if isinstance(meta_or_bundle, Bundle) else meta_or_bundle
    try:
        cfg = load_config(config)
    except ConfigError as e:
        raise _fail("expect_config", str(e)) from e
    d = _validate_meta(meta)
    hw = meta["hw"]
    if hw["config_hash"] != cfg.hash or hw["config_name"] != cfg.name:
        fld = "meta.hw.config_hash" if hw["config_hash"] != cfg.hash else "meta.hw.config_name"
        raise _fail(fld, f"bundle was built for hardware config {hw['config_name']!r} (hash "
                         f"{hw['config_hash']}), expected {cfg.name!r} (hash {cfg.hash})")
    limits = (
        ("num_tokens", "num_tokens", d.num_tokens, "max_tokens", cfg.max_tokens),
        ("num_heads", "num_heads", d.num_heads, "max_heads", cfg.max_heads),
        ("embed_dim", "embed_dim", d.embed_dim, "max_embed_dim", cfg.max_embed_dim),
        ("mlp_dim", "mlp_dim", d.mlp_dim, "max_mlp_dim", cfg.max_mlp_dim),
        ("num_heads", "head_dim (embed_dim / num_heads)", d.head_dim, "max_head_dim", cfg.max_head_dim),
    )
    for key, what, value, limit_name, limit in limits:
        if value > limit:
            raise _fail(f"meta.model.{key}", f"expected {what} <= {limit} ({limit_name} of config "
                                             f"{cfg.name!r}), found {value}")


def _classify_names(names: Iterable[str], depth: int) -> Tuple[Dict[str, Tuple[int, TensorSpec]], Dict[str, bool]]:
    """Map every name to (layer or -1, spec); reject unknown names. Return also which groups appear."""
    out: Dict[str, Tuple[int, TensorSpec]] = {}
    present = {"attn_sparse": False, "ae": False, "lsh": False}
    for name in names:
        if not isinstance(name, str):
            raise _fail("tensors", f"expected string tensor names, found {name!r}")
        if name in _GLOBAL_SPEC:
            out[name] = (-1, _GLOBAL_SPEC[name])
            continue
        m = _LAYER_NAME.fullmatch(name)
        if m is None or m.group(2) not in _LAYER_SPEC:
            raise _fail(name, "unknown tensor name (not in bundle schema v1)")
        i = int(m.group(1))
        if i >= depth:
            raise _fail(name, f"expected a layer index < meta.model.depth = {depth}, found {i}")
        spec = _LAYER_SPEC[m.group(2)]
        out[name] = (i, spec)
        if spec.group in present:
            present[spec.group] = True
    return out, present


def _expected_names(depth: int, groups: Mapping[str, bool]) -> List[Tuple[str, TensorSpec]]:
    """Every tensor a bundle with these groups must hold, in canonical (file) order."""
    names = [(s.name, s) for s in GLOBAL_TENSORS]
    for i in range(depth):
        for s in LAYER_TENSORS:
            if s.group == "layer" or groups.get(s.group, False):
                names.append((f"layers.{i}.{s.name}", s))
    return names


def _check_tensor(name: str, spec: TensorSpec, a: Any, dims: Dict[str, int]) -> None:
    if not isinstance(a, np.ndarray):
        raise _fail(name, f"expected a numpy array, found {type(a).__name__}")
    if a.dtype.name != spec.dtype or a.dtype.name not in DTYPES:
        raise _fail(name, f"expected dtype {spec.dtype}, found {a.dtype}")
    if len(spec.shape) == 1 and spec.shape[0] == "nnz":
        if a.ndim != 1:
            raise _fail(name, f"expected shape (nnz,), found {tuple(a.shape)}")
    else:
        want = tuple(dims[s] if isinstance(s, str) else s for s in spec.shape)
        if tuple(a.shape) != want:
            sym = "(" + ", ".join(str(s) for s in spec.shape) + ("," if len(spec.shape) == 1 else "") + ")"
            raise _fail(name, f"expected shape {want} = {sym}, found {tuple(a.shape)}")
    if spec.dtype == "bool" and a.size and np.any(a.view(np.uint8) > 1):
        idx = _first_index(a.view(np.uint8) > 1)
        raise _fail(name, f"expected bool bytes 0 or 1, found {int(a.view(np.uint8)[idx])}{_where(idx)}")
    if spec.check is not None and a.size:
        msg = _VALUE_CHECKS[spec.check](a, dims)
        if msg:
            raise _fail(name, msg)


def _validate(meta: Any, tensors: Any, expect_config: Any = None) -> List[str]:
    """Validate everything; return the tensor names in canonical order."""
    d = _validate_meta(meta)
    if expect_config is not None:
        check_config(meta, expect_config)
    if not isinstance(tensors, dict):
        raise _fail("tensors", f"expected a dict of arrays, found {type(tensors).__name__}")
    classified, present = _classify_names(tensors.keys(), d.depth)
    method = meta["method"]
    groups: Dict[str, bool] = {}
    for group, rule in METHOD_GROUPS[method].items():
        if rule == "forbidden" and present[group]:
            bad = min(((i, _LAYER_POS[spec.name], n) for n, (i, spec) in classified.items()
                       if spec.group == group))[2]
            raise _fail(bad, f"method {method!r} has no {group} tensors (allowed for: "
                             f"{', '.join(m for m, g in METHOD_GROUPS.items() if g[group] != 'forbidden')})")
        groups[group] = present[group] or rule == "required"
        if group in _GROUP_META:
            key, sub = _GROUP_META[group]
            has_meta = (key in meta) if sub is None else (sub in meta[key])
            fld = f"meta.{key}" + (f".{sub}" if sub else "")
            if groups[group] and not has_meta:
                raise _fail(fld, f"missing: required because the bundle has {group} tensors")
            if has_meta and not groups[group]:
                raise _fail(fld, f"given, but the bundle has no {group} tensors")
    dims = _dims_table(d, meta)
    if "G" in dims and dims["G"] > d.num_tokens:
        raise _fail("meta.groups.n_groups", f"expected at most num_tokens = {d.num_tokens} groups, "
                                            f"found {dims['G']}")
    expected = _expected_names(d.depth, groups)
    for name, _spec in expected:
        if name not in tensors:
            raise _fail(name, f"missing tensor ({_spec.doc}; dtype {_spec.dtype}, shape {_spec.shape})")
    if len(expected) != len(tensors):  # pragma: no cover - every name was classified and all groups included
        extra = sorted(set(tensors) - {n for n, _ in expected})
        raise _fail(extra[0], "unexpected tensor")
    for name, spec in expected:
        _check_tensor(name, spec, tensors[name], dims)
    for i in range(d.depth):
        for group, fn in CROSS_CHECKS:
            if groups.get(group, group == "layer"):
                fn(tensors, f"layers.{i}.", dims)
    return [n for n, _ in expected]


def validate_bundle(bundle: "Bundle", *, expect_config: Any = None) -> None:
    """Check ``bundle`` against schema v1 (and, with ``expect_config``, against a hardware config).
    Raises :class:`BundleError` naming the first wrong field."""
    if not isinstance(bundle, Bundle):
        raise _fail("bundle", f"expected a Bundle, found {type(bundle).__name__}")
    _validate(bundle.meta, bundle.tensors, expect_config)


# ==================================================================================================
# The in-memory bundle
# ==================================================================================================

@dataclasses.dataclass(eq=False)
class Bundle:
    """A deployment bundle in memory: ``meta`` (JSON-able dict) and ``tensors`` (name -> ndarray).

    Bundles returned by :func:`load_bundle` are validated, their tensors in canonical order and
    read-only (views on the file's bytes; ``.copy()`` one to modify it).
    """

    meta: Dict[str, Any]
    tensors: Dict[str, np.ndarray]

    # -- accessors ----------------------------------------------------------------------------------
    @property
    def format_version(self) -> int:
        return self.meta["format_version"]

    @property
    def model(self) -> ModelDims:
        """Model dimensions (validates ``meta.model``)."""
        return ModelDims.from_meta(self.meta)

    @property
    def depth(self) -> int:
        return self.model.depth

    @property
    def method(self) -> str:
        return self.meta["method"]

    @property
    def config_name(self) -> str:
        return self.meta["hw"]["config_name"]

    @property
    def config_hash(self) -> str:
        return self.meta["hw"]["config_hash"]

    def layer(self, i: int) -> Dict[str, np.ndarray]:
        """Layer ``i``'s tensors by their name inside the layer (``"qkv.weight"``, ``"attn.mask"``, ...)."""
        depth = self.depth
        if not _is_int(i) or not 0 <= i < depth:
            raise IndexError(f"layer {i!r} out of range [0, {depth})")
        prefix = f"layers.{i}."
        return {k[len(prefix):]: v for k, v in self.tensors.items() if k.startswith(prefix)}

    def globals(self) -> Dict[str, np.ndarray]:
        """The tensors outside the layers (patch embedding, tokens, final norm, head)."""
        return {k: v for k, v in self.tensors.items() if not k.startswith("layers.")}

    def has(self, group: str) -> bool:
        """Whether the bundle holds the optional tensor group ``attn_sparse``, ``ae`` or ``lsh``."""
        for k in self.tensors:
            m = _LAYER_NAME.fullmatch(k) if isinstance(k, str) else None
            if m is not None and m.group(2) in _LAYER_SPEC and _LAYER_SPEC[m.group(2)].group == group:
                return True
        return False

    @property
    def nbytes(self) -> int:
        return int(sum(a.nbytes for a in self.tensors.values()))

    # -- checks -------------------------------------------------------------------------------------
    def validate(self, *, expect_config: Any = None) -> "Bundle":
        """Raise :class:`BundleError` if invalid; return self."""
        validate_bundle(self, expect_config=expect_config)
        return self

    def identical(self, other: "Bundle") -> bool:
        """Same meta and bit-identical tensors (names, dtypes, shapes, bytes)."""
        if not isinstance(other, Bundle) or self.meta != other.meta:
            return False
        if set(self.tensors) != set(other.tensors):
            return False
        for k, a in self.tensors.items():
            b = other.tensors[k]
            if a.dtype != b.dtype or a.shape != b.shape:
                return False
            if np.ascontiguousarray(a).tobytes() != np.ascontiguousarray(b).tobytes():
                return False
        return True

    # -- humans -------------------------------------------------------------------------------------
    def summary(self) -> str:
        """A few lines for humans: model, hardware, sizes, sparsity."""
        d = self.model
        lines = [
            f"vitaccel bundle v{self.meta.get('format_version')}: method {self.method}, "
            f"hw config {self.config_name!r} (hash {self.config_hash[:16]}...)",
            f"model {d.arch}: img {d.img_size}, patch {d.patch_size}, {d.in_chans} chans, "
            f"{d.num_classes} classes, D={d.embed_dim}, depth {d.depth}, heads {d.num_heads} "
            f"(head_dim {d.head_dim}), mlp {d.mlp_dim}, N={d.num_tokens} tokens",
        ]
        by_dtype: Dict[str, int] = {}
        for a in self.tensors.values():
            by_dtype[a.dtype.name] = by_dtype.get(a.dtype.name, 0) + int(a.nbytes)
        parts = ", ".join(f"{k} {_fmt_bytes(v)}" for k, v in sorted(by_dtype.items()))
        lines.append(f"tensors: {len(self.tensors)}, {_fmt_bytes(self.nbytes)} ({parts})")
        if self.has("attn_sparse"):
            kept, ng, total, sparse_nnz = [], [], 0, 0
            for i in range(d.depth):
                t = self.layer(i)
                kept.append(float(np.mean(t["attn.mask"])) if t["attn.mask"].size else 0.0)
                ng.append(float(np.mean(t["attn.n_global"])))
                sparse_nnz += int(t["attn.csc_rowidx"].shape[0])
                total += int(np.sum(t["attn.mask"]))
            lines.append(f"attention: kept {100 * np.mean(kept):.1f}% of entries (layers "
                         f"{', '.join(f'{100 * k:.0f}%' for k in kept)}), mean global columns per head "
                         f"{np.mean(ng):.1f}, {sparse_nnz} of {total} kept entries in the sparser engine's CSC")
        if self.has("ae"):
            lines.append(f"auto-encoder: Q/K heads {d.num_heads} -> {d.ae_heads}")
        if self.has("lsh"):
            lines.append(f"LSH: {self.meta['groups']['n_groups']} groups")
        if self.meta.get("quant"):
            lines.append("quant: " + ", ".join(f"{k}={v}" for k, v in self.meta["quant"].items()))
        extra = self.meta.get("extra")
        if isinstance(extra, dict) and extra:
            shown = [f"{k}={v}" for k, v in extra.items() if not isinstance(v, (dict, list))]
            if shown:
                lines.append("extra: " + ", ".join(shown))
        return "\n".join(lines)

    def __repr__(self) -> str:
        try:
            d = self.model
            return (f"Bundle(method={self.meta.get('method')!r}, depth={d.depth}, embed_dim={d.embed_dim}, "
                    f"tensors={len(self.tensors)})")
        except Exception:
            return f"Bundle(<invalid meta>, tensors={len(self.tensors) if isinstance(self.tensors, dict) else '?'})"


def _fmt_bytes(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)  # pragma: no cover


# ==================================================================================================
# Container: writing
# ==================================================================================================

def _align(n: int) -> int:
    return -(-n // ALIGN) * ALIGN


def _tensor_payload(a: np.ndarray) -> np.ndarray:
    """The array's bytes in the file: little-endian, C order, bool as uint8 0/1 (a flat uint8 view)."""
    dt = DTYPES[a.dtype.name]
    c = np.ascontiguousarray(a, dtype=dt)
    return c.reshape(-1).view(np.uint8)


def _header_bytes(header: Mapping[str, Any]) -> bytes:
    text = json.dumps(header, sort_keys=True, ensure_ascii=True, allow_nan=False, separators=(",", ":"))
    raw = text.encode("ascii")
    pad = _align(_PREAMBLE + len(raw)) - _PREAMBLE - len(raw)
    return raw + b" " * pad


def _write_stream(f: BinaryIO, meta: Any, items: List[Tuple[str, np.ndarray]],
                  format_version: Any = FORMAT_VERSION) -> None:
    """Write a container to a seekable binary stream; no validation beyond what encoding needs."""
    directory: Dict[str, Dict[str, Any]] = {}
    off = 0
    for name, a in items:
        if a.dtype.name not in DTYPES:
            raise _fail(name, f"expected one of dtypes {', '.join(DTYPES)}, found {a.dtype}")
        nbytes = int(a.size) * DTYPES[a.dtype.name].itemsize
        directory[name] = {"dtype": a.dtype.name, "shape": [int(s) for s in a.shape], "offset": off,
                           "nbytes": nbytes}
        off = _align(off + nbytes)
    header = {"format_version": format_version, "meta": meta, "tensors": directory, "data_nbytes": off,
              "data_sha256": "0" * 64}
    hb = _header_bytes(header)
    if len(hb) > MAX_HEADER_BYTES:
        raise _fail("header", f"expected a header of at most {MAX_HEADER_BYTES} bytes, found {len(hb)}")
    start = f.tell()
    f.write(MAGIC + len(hb).to_bytes(8, "little") + hb)
    h = hashlib.sha256()
    pos = 0
    for name, a in items:
        ent = directory[name]
        if ent["offset"] > pos:
            z = bytes(ent["offset"] - pos)
            f.write(z)
            h.update(z)
        payload = _tensor_payload(a)
        f.write(payload)
        h.update(payload)
        pos = ent["offset"] + ent["nbytes"]
    if off > pos:
        z = bytes(off - pos)
        f.write(z)
        h.update(z)
    header["data_sha256"] = h.hexdigest()
    hb2 = _header_bytes(header)
    assert len(hb2) == len(hb)  # the hash placeholder has the same length
    end = f.tell()
    f.seek(start + _PREAMBLE)
    f.write(hb2)
    f.seek(end)


def _ordered_items(bundle: Bundle) -> List[Tuple[str, np.ndarray]]:
    names = _validate(bundle.meta, bundle.tensors)
    return [(n, bundle.tensors[n]) for n in names]


def bundle_to_bytes(bundle: Bundle) -> bytes:
    """Validate and encode a bundle (the exact bytes :func:`write_bundle` writes)."""
    items = _ordered_items(bundle)
    buf = io.BytesIO()
    _write_stream(buf, bundle.meta, items)
    return buf.getvalue()


def _fsync_dir(d: Path) -> None:
    try:
        fd = os.open(str(d), os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:  # not supported on every platform / file system
        pass
    finally:
        os.close(fd)


def write_bundle(path: Union[str, os.PathLike], bundle: Bundle) -> Path:
    """Validate ``bundle``, then write it to ``path`` atomically; return the path.

    Validation runs first (an invalid bundle raises :class:`BundleError` and nothing is written). The
    file is written to a temporary file in the same directory, flushed and fsynced, then ``os.replace``d
    onto ``path`` (and the directory fsynced where possible): a crash leaves either the old file or the
    new one under ``path``, never a half bundle, and the temporary file is removed on any error.
    """
    items = _ordered_items(bundle)
    path = Path(path)
    d = path.parent if str(path.parent) else Path(".")
    try:
        mode = os.stat(path).st_mode & 0o777
    except OSError:
        mode = 0o644
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=str(d))
    try:
        with os.fdopen(fd, "wb") as f:
            if hasattr(os, "fchmod"):
                os.fchmod(f.fileno(), mode)
            _write_stream(f, bundle.meta, items)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    _fsync_dir(d)
    return path


# ==================================================================================================
# Container: reading
# ==================================================================================================

def _no_duplicates(pairs: List[Tuple[str, Any]]) -> Dict[str, Any]:
    out: Dict[str, Any] = {}
    for k, v in pairs:
        if k in out:
            raise ValueError(f"duplicate key {k!r}")
        out[k] = v
    return out


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not allowed")


def _finite_float(text: str) -> float:
    v = float(text)
    if not math.isfinite(v):
        raise ValueError(f"number {text[:40]} overflows a float")
    return v


def _parse_header(buf: Union[bytes, memoryview]) -> Tuple[Dict[str, Any], int]:
    """Magic, header length, JSON, version. Returns (header, data_start)."""
    size = len(buf)
    if size < len(MAGIC):
        raise _fail("magic", f"expected {MAGIC!r} at the start, found a {size}-byte file")
    if bytes(buf[:len(MAGIC)]) != MAGIC:
        raise _fail("magic", f"expected {MAGIC!r}, found {bytes(buf[:len(MAGIC)])!r} (not a vitaccel bundle)")
    if size < _PREAMBLE:
        raise _fail("header_length", f"expected an 8-byte header length, file ends after {size} bytes")
    hlen = int.from_bytes(bytes(buf[len(MAGIC):_PREAMBLE]), "little")
    if hlen > MAX_HEADER_BYTES:
        raise _fail("header_length", f"expected at most {MAX_HEADER_BYTES} bytes, found {hlen}")
    if _PREAMBLE + hlen > size:
        raise _fail("header_length", f"header of {hlen} bytes runs past the end of the {size}-byte file "
                                     f"(truncated?)")
    if (_PREAMBLE + hlen) % ALIGN:
        raise _fail("header_length", f"expected 16 + header length to be a multiple of {ALIGN}, found "
                                     f"16 + {hlen}")
    raw = bytes(buf[_PREAMBLE:_PREAMBLE + hlen])
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise _fail("header", f"expected UTF-8 JSON, found an invalid byte at {e.start}") from None
    try:
        header = json.loads(text, object_pairs_hook=_no_duplicates, parse_constant=_reject_constant,
                            parse_float=_finite_float)
    except RecursionError:
        raise _fail("header", "expected JSON, found nesting too deep to parse") from None
    except ValueError as e:
        raise _fail("header", f"expected a JSON object, found invalid JSON ({str(e)[:200]})") from None
    if not isinstance(header, dict):
        raise _fail("header", f"expected a JSON object, found {type(header).__name__}")
    if "format_version" not in header:
        raise _fail("format_version", "missing from the header")
    v = header["format_version"]
    if not _is_int(v) or v != FORMAT_VERSION:
        raise _fail("format_version", f"expected {FORMAT_VERSION} (this loader reads version {FORMAT_VERSION} "
                                      f"only), found {v!r}")
    return header, _PREAMBLE + hlen


_HEADER_KEYS = ("format_version", "meta", "tensors", "data_nbytes", "data_sha256")


def _parse_directory(header: Dict[str, Any], buf: Union[bytes, memoryview], data_start: int) -> Dict[str, np.ndarray]:
    for k in header:
        if k not in _HEADER_KEYS:
            raise _fail(k, f"unknown header key; expected only {', '.join(_HEADER_KEYS)}")
    for k in _HEADER_KEYS:
        if k not in header:
            raise _fail(k, "missing from the header")
    data_nbytes = header["data_nbytes"]
    if not _is_int(data_nbytes) or data_nbytes < 0:
        raise _fail("data_nbytes", f"expected a non-negative integer, found {data_nbytes!r}")
    size = len(buf)
    if data_start + data_nbytes != size:
        what = "truncated" if data_start + data_nbytes > size else "has trailing bytes"
        raise _fail("data_nbytes", f"expected a {data_start + data_nbytes}-byte file ({data_nbytes} data "
                                   f"bytes), found {size} bytes: the file {what}")
    digest = header["data_sha256"]
    if not isinstance(digest, str) or not re.fullmatch(r"[0-9a-f]{64}", digest):
        raise _fail("data_sha256", f"expected 64 lowercase hex digits, found {digest!r}")
    actual = hashlib.sha256(memoryview(buf)[data_start:]).hexdigest()
    if actual != digest:
        raise _fail("data_sha256", f"data section is corrupt: expected sha256 {digest}, found {actual}")
    if not isinstance(header["meta"], dict):
        raise _fail("meta", f"expected a JSON object, found {type(header['meta']).__name__}")
    directory = header["tensors"]
    if not isinstance(directory, dict):
        raise _fail("tensors", f"expected a JSON object, found {type(directory).__name__}")
    spans: List[Tuple[int, int, str]] = []
    parsed: List[Tuple[str, np.dtype, Tuple[int, ...], int, int]] = []
    for name, ent in directory.items():
        if not isinstance(ent, dict) or set(ent) != {"dtype", "shape", "offset", "nbytes"}:
            raise _fail(name, f"expected a directory entry {{dtype, shape, offset, nbytes}}, found {ent!r:.200}")
        dt = ent["dtype"]
        if not isinstance(dt, str) or dt not in DTYPES:
            raise _fail(name, f"expected a dtype in {', '.join(DTYPES)}, found {dt!r:.100}")
        shape = ent["shape"]
        if (not isinstance(shape, list) or len(shape) > _MAX_NDIM
                or not all(_is_int(s) and 0 <= s <= _MAX_DIM for s in shape)):
            raise _fail(name, f"expected a shape of at most {_MAX_NDIM} integers in [0, 2^31), found {shape!r:.200}")
        off, nbytes = ent["offset"], ent["nbytes"]
        if not _is_int(off) or off < 0 or off % ALIGN:
            raise _fail(name, f"expected an offset that is a non-negative multiple of {ALIGN}, found {off!r}")
        itemsize = DTYPES[dt].itemsize
        count = math.prod(shape)
        if math.prod(max(s, 1) for s in shape) * itemsize > _MAX_ARRAY_BYTES:
            raise _fail(name, f"expected a shape of at most 2^48 bytes (zero dims counted as 1), found {shape!r}")
        if not _is_int(nbytes) or nbytes != count * itemsize:
            raise _fail(name, f"expected nbytes = {count} elements x {itemsize} = {count * itemsize}, "
                              f"found {nbytes!r}")
        if off + nbytes > data_nbytes:
            raise _fail(name, f"expected the tensor inside the {data_nbytes}-byte data section, found bytes "
                              f"[{off}, {off + nbytes})")
        if nbytes:
            spans.append((off, off + nbytes, name))
        parsed.append((name, DTYPES[dt], tuple(shape), off, count))
    spans.sort()
    for (a0, a1, an), (b0, _b1, bn) in zip(spans, spans[1:]):
        if b0 < a1:
            raise _fail(bn, f"expected non-overlapping tensors, found bytes [{b0}, ...) inside {an} [{a0}, {a1})")
    arrays: Dict[str, np.ndarray] = {}
    for name, dt, shape, off, count in parsed:
        if count == 0:
            a = np.zeros(shape, dtype=dt)
            a.setflags(write=False)
        else:
            a = np.frombuffer(buf, dtype=dt, count=count, offset=data_start + off).reshape(shape)
        arrays[name] = a
    return arrays


def _as_readonly_bytes(data: Any) -> bytes:
    if isinstance(data, bytes):
        return data
    return bytes(data)


def bundle_from_bytes(data: Union[bytes, bytearray, memoryview], *, expect_config: Any = None) -> Bundle:
    """Decode and fully validate a bundle from its bytes. Raises :class:`BundleError` on any problem."""
    buf = _as_readonly_bytes(data)
    cfg = _resolve_config(expect_config) if expect_config is not None else None
    header, data_start = _parse_header(buf)
    arrays = _parse_directory(header, buf, data_start)
    meta = header["meta"]
    # meta.format_version must equal FORMAT_VERSION (schema), which the header's version was checked against.
    names = _validate(meta, arrays, cfg)
    return Bundle(meta=meta, tensors={n: arrays[n] for n in names})


def _resolve_config(config: Any) -> Any:
    from vitaccel.hwconfig import ConfigError, load_config

    try:
        return load_config(config)
    except ConfigError as e:
        raise _fail("expect_config", str(e)) from e


def load_bundle(path: Union[str, os.PathLike], *, expect_config: Any = None) -> Bundle:
    """Read and fully validate the bundle at ``path``.

    ``expect_config`` (a config name, path or ``HardwareConfig``) also checks that the bundle was built
    for that hardware config (name and hash) and that its model fits the config's limits. Every problem
    with the file's contents raises :class:`BundleError` (with ``.path`` set); only I/O problems
    (missing file, permissions) raise ``OSError``.
    """
    cfg = _resolve_config(expect_config) if expect_config is not None else None
    with open(path, "rb") as f:
        data = f.read()
    try:
        return bundle_from_bytes(data, expect_config=cfg)
    except BundleError as e:
        raise BundleError(e.field, e.message, path=os.fspath(path)) from None


def read_header(path: Union[str, os.PathLike]) -> Dict[str, Any]:
    """The parsed JSON header (container checks only: magic, length, JSON, version; data not read)."""
    with open(path, "rb") as f:
        pre = f.read(_PREAMBLE)
        if len(pre) == _PREAMBLE and pre[:len(MAGIC)] == MAGIC:
            hlen = int.from_bytes(pre[len(MAGIC):], "little")
            size = os.fstat(f.fileno()).st_size
            body = f.read(min(hlen, MAX_HEADER_BYTES + 1, max(size - _PREAMBLE, 0)))
            pre = pre + body
    try:
        return _parse_header(pre)[0]
    except BundleError as e:
        raise BundleError(e.field, e.message, path=os.fspath(path)) from None


# ==================================================================================================
# Unchecked tools (tests only)
# ==================================================================================================

def encode_unchecked(meta: Any, tensors: Mapping[str, np.ndarray], *, format_version: Any = FORMAT_VERSION) -> bytes:
    """Encode a container WITHOUT validating meta or the schema (tensors in the given order). For tests
    that need broken bundles; never ship the result."""
    buf = io.BytesIO()
    _write_stream(buf, meta, [(k, np.asarray(v)) for k, v in tensors.items()], format_version)
    return buf.getvalue()


def split_unchecked(data: bytes) -> Tuple[Dict[str, Any], bytes]:
    """(header dict, data section) of a container, trusting the preamble. For tests."""
    hlen = int.from_bytes(data[len(MAGIC):_PREAMBLE], "little")
    return json.loads(data[_PREAMBLE:_PREAMBLE + hlen].decode("utf-8")), data[_PREAMBLE + hlen:]


def assemble_unchecked(header: Mapping[str, Any], data: bytes, *, fix_checksum: bool = True,
                       fix_nbytes: bool = True) -> bytes:
    """Build a container from a header dict and a data section, optionally recomputing ``data_sha256`` and
    ``data_nbytes``. For tests."""
    header = dict(header)
    if fix_checksum:
        header["data_sha256"] = hashlib.sha256(data).hexdigest()
    if fix_nbytes:
        header["data_nbytes"] = len(data)
    hb = _header_bytes(header)
    return MAGIC + len(hb).to_bytes(8, "little") + hb + data


# ==================================================================================================
# A random valid bundle (tests, and a stand-in until the real exporter lands)
# ==================================================================================================

def random_bundle(config: Any = "paper", *, method: str = "vitcod", depth: int = 2, seed: int = 0,
                  img_size: int = 16, patch_size: int = 4, in_chans: int = 3, num_classes: int = 10,
                  embed_dim: int = 16, num_heads: int = 2, mlp_dim: int = 32, ae: Optional[bool] = None,
                  ae_heads: Optional[int] = None, density: float = 0.2, n_groups: int = 4,
                  sparse_attention: Optional[bool] = None) -> Bundle:
    """A small valid bundle with random weights and masks (seeded). Tiny by default: N = 17 tokens, D = 16,
    2 heads, 2 layers, a few tens of KiB on disk.

    Masks keep the CLS key column and the diagonal plus a random ``density`` of other entries; columns
    kept by more than half the queries are global (Alg. 1 of the ViTCoD paper with theta_d = N / 2). AE
    (``ae``, default on for vitcod) uses ``ae_heads`` (default ceil(H / 2)); revit gets LSH tensors.
    """
    from vitaccel.hwconfig import load_config
    from vitaccel.sim.numerics import quantize_multiplier, softmax_params

    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    cfg = load_config(config)
    rng = np.random.default_rng(seed)
    D, H, M, K = embed_dim, num_heads, mlp_dim, num_classes
    N = (img_size // patch_size) ** 2 + 1
    if ae is None:
        ae = method == "vitcod"
    if sparse_attention is None:
        sparse_attention = method == "vitcod"
    hc = ae_heads if ae_heads is not None else -(-H // 2)
    model = {"arch": "deit", "img_size": img_size, "patch_size": patch_size, "in_chans": in_chans,
             "num_classes": K, "embed_dim": D, "depth": depth, "num_heads": H, "mlp_dim": M, "num_tokens": N}
    if ae:
        model["ae_heads"] = hc
    meta: Dict[str, Any] = {
        "format_version": FORMAT_VERSION,
        "model": model,
        "hw": {"config_name": cfg.name, "config_hash": cfg.hash},
        "quant": {"weight_bits": 8, "act_bits": 8, "weight_granularity": "per_channel", "calibration": "random"},
        "method": method,
        "extra": {"source": "vitaccel.host.bundle.random_bundle", "seed": seed, "dataset": None},
    }
    if method == "revit":
        meta["groups"] = {"n_groups": n_groups, "hash": "lsh"}

    def f32(*shape: int, lo: float = -0.5, hi: float = 0.5) -> np.ndarray:
        return rng.uniform(lo, hi, shape).astype(np.float32)

    def scale() -> float:
        return float(np.float32(rng.uniform(0.01, 0.1)))

    t: Dict[str, np.ndarray] = {
        "patch_embed.weight": f32(D, in_chans, patch_size, patch_size),
        "patch_embed.bias": f32(D),
        "cls_token": f32(1, 1, D),
        "pos_embed": f32(1, N, D),
        "norm.weight": f32(D, lo=0.5, hi=1.5),
        "norm.bias": f32(D),
        "head.weight": f32(K, D),
        "head.bias": f32(K),
    }
    for i in range(depth):
        p = f"layers.{i}."
        for nm in ("norm1", "norm2"):
            t[p + nm + ".weight"] = f32(D, lo=0.5, hi=1.5)
            t[p + nm + ".bias"] = f32(D)
        for nm, out, inp in (("qkv", 3 * D, D), ("proj", D, D), ("fc1", M, D), ("fc2", D, M)):
            w_scale = rng.uniform(0.001, 0.02, out).astype(np.float32)
            in_s, out_s = scale(), scale()
            mults, shifts = zip(*(quantize_multiplier(in_s * float(ws) / out_s) for ws in w_scale))
            t[p + nm + ".weight"] = rng.integers(-128, 128, (out, inp), dtype=np.int8)
            t[p + nm + ".bias"] = rng.integers(-(1 << 16), 1 << 16, out, dtype=np.int32)
            t[p + nm + ".w_scale"] = w_scale
            t[p + nm + ".in_scale"] = np.array(in_s, dtype=np.float32)
            t[p + nm + ".out_scale"] = np.array(out_s, dtype=np.float32)
            t[p + nm + ".mult"] = np.array(mults, dtype=np.int32)
            t[p + nm + ".shift"] = np.array(shifts, dtype=np.int32)
        sm, ss = softmax_params(scale() * scale() / math.sqrt(D // H))
        om, os_ = quantize_multiplier(scale() / 256 / scale())
        t[p + "attn.softmax_mult"] = np.array(sm, dtype=np.int32)
        t[p + "attn.softmax_shift"] = np.array(ss, dtype=np.int32)
        t[p + "attn.out_mult"] = np.array(om, dtype=np.int32)
        t[p + "attn.out_shift"] = np.array(os_, dtype=np.int32)
        if sparse_attention:
            mask = rng.random((H, N, N)) < density
            mask[:, :, 0] = True  # the CLS key column is kept
            mask[:, np.arange(N), np.arange(N)] = True
            for hh in range(H):  # sometimes one more dense column
                if rng.random() < 0.5:
                    mask[hh, :, int(rng.integers(1, N))] |= rng.random(N) < 0.8
            is_global = mask.sum(axis=1) > N // 2
            order, n_global = order_from_globals(is_global)
            colptr, headptr, rowidx = mask_to_csc(mask, order, n_global)
            t[p + "attn.mask"] = mask
            t[p + "attn.order"] = order
            t[p + "attn.n_global"] = n_global
            t[p + "attn.csc_colptr"] = colptr
            t[p + "attn.csc_headptr"] = headptr
            t[p + "attn.csc_rowidx"] = rowidx
        if ae:
            for w in ("q", "k"):
                a = f"{p}ae.{w}."
                t[a + "enc_weight"] = rng.integers(-128, 128, (hc, H), dtype=np.int8)
                t[a + "enc_bias"] = rng.integers(-1000, 1000, hc, dtype=np.int32)
                t[a + "dec_weight"] = rng.integers(-128, 128, (H, hc), dtype=np.int8)
                t[a + "dec_bias"] = rng.integers(-1000, 1000, H, dtype=np.int32)
                for nm in ("enc", "dec"):
                    m, s = quantize_multiplier(float(rng.uniform(0.001, 0.01)))
                    t[a + nm + "_mult"] = np.array(m, dtype=np.int32)
                    t[a + nm + "_shift"] = np.array(s, dtype=np.int32)
        if method == "revit":
            gamma = float(rng.uniform(1.0, 4.0))
            t[p + "lsh.alpha"] = rng.standard_normal((n_groups, D)).astype(np.float32)
            t[p + "lsh.beta"] = rng.uniform(0, gamma, n_groups).astype(np.float32)
            t[p + "lsh.gamma"] = np.array(gamma, dtype=np.float32)
    return Bundle(meta=meta, tensors=t)
