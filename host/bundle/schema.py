"""Schema v1 of the deployment bundle, as tables: what a valid bundle holds, independent of the file.

The loader, the writer, the exporter and ``host/BUNDLE.md`` all follow these tables, so the rules live here
once and as data (``META_SCHEMA``, ``TENSOR_SCHEMA``, ``METHOD_GROUPS``, the named value rules) rather than as
code spread over the validator. ``ModelDims`` sits here because reading ``meta.model`` is checking it.

The per-method hook table (:data:`METHOD_CHECKS`) is here too, empty: the generic validator
(``validate.py``) only knows tensor names, dtypes, shapes and value ranges; the rules that tie several
tensors of a layer together belong to an accelerator's algorithm and are registered by that method's module
(``vitcod.py``), so a new method adds a module instead of editing the validator.

NumPy and the standard library only: this runs on a PYNQ board, without torch.
"""
from __future__ import annotations

import dataclasses
import math
import re
from typing import Any, Callable, Dict, List, Mapping, Optional, Tuple, Union

import numpy as np

from vitaccel.safetext import lone_surrogate, printable

__all__ = [
    "FORMAT_VERSION",
    "READ_VERSIONS",
    "INT_MODEL_VERSION",
    "DTYPES",
    "CONFIG_NAME_RE",
    "config_name_problem",
    "METHODS",
    "MAX_ABS_BIAS",
    "MULT_LIMIT",
    "MAX_SHIFT",
    "BundleError",
    "MetaField",
    "ModelDims",
    "TensorSpec",
    "MODEL_FIELDS",
    "HW_FIELDS",
    "GROUPS_FIELDS",
    "META_SCHEMA",
    "GLOBAL_TENSORS",
    "LAYER_TENSORS",
    "TENSOR_SCHEMA",
    "METHOD_GROUPS",
    "LayerCheck",
    "METHOD_CHECKS",
    "register_layer_check",
]

#: The version the writer writes. 3: the integer whole model (the ``int`` tensor group: LayerNorm, GELU,
#: residual, patch-embedding and head parameters for the accelerator; required for ``vitcod`` and ``dense``).
#: 2: a trailing sha256 covers the whole file, header included (1: only the data section, by
#: ``data_sha256`` in the header).
FORMAT_VERSION = 3
#: The versions the loader reads (a ``vitcod``/``dense`` bundle before 3 is refused: it has no integer model).
READ_VERSIONS = (1, 2, 3)
#: The first version whose ``vitcod``/``dense`` bundles carry the integer whole model.
INT_MODEL_VERSION = 3
_MAX_JSON_DEPTH = 32
_INT64_MAX = (1 << 63) - 1

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
        # what is printed escapes control characters and lone surrogates from the file (vitaccel.safetext)
        super().__init__(printable(f"{where}{field}: {message}"))

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
    ``name`` (a config name: :data:`CONFIG_NAME_RE`, no path separators, no ``.json``),
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
    MetaField("config_name", "name", doc="hardware config name (a shipped configs/<name>.json): a name, never a path"),
    MetaField("config_hash", "hex64", doc="HardwareConfig.hash (sha256 hex) the bundle was built for"),
)

GROUPS_FIELDS: Tuple[MetaField, ...] = (
    MetaField("n_groups", "int", lo=1, hi=65535, doc="LSH semantic groups G (ReViT)"),
    # ReViT settings (KERNELS.md, "ReViT"); optional, the defaults are the first choice / 16 (block).
    MetaField("hash", "str", required=False, choices=("lsh",), doc="grouping hash"),
    MetaField("combine", "str", required=False, choices=("joint", "sum", "intra"),
              doc="hierarchy: own group's tokens + other groups' size-weighted centroids in one softmax (joint), "
                  "intra-group + the group's inter-group centroid context (sum), or intra only"),
    MetaField("cls", "str", required=False, choices=("global",), doc="the CLS row attends to every token"),
    MetaField("block", "int", required=False, lo=1, hi=65535, doc="keys per block of the blockwise softmax"),
    MetaField("centroid", "str", required=False, choices=("round_half_up_mean",), doc="integer centroid rounding"),
    MetaField("package", "str", required=False, choices=("cls_attention_sum",),
              doc="package token = sum of the pruned tokens weighted by their CLS attention"),
    MetaField("prune_score", "str", required=False, choices=("cls_attention",), doc="group and patch pruning score"),
    MetaField("seed", "int", required=False, lo=0, hi=(1 << 63) - 1, doc="LSH seed of layer 0 (layer l: seed + l)"),
)

META_SCHEMA: Tuple[MetaField, ...] = (
    MetaField("format_version", "int", lo=READ_VERSIONS[0], hi=FORMAT_VERSION,
              doc="schema version; equals the header's format_version (the writer writes FORMAT_VERSION)"),
    MetaField("model", "object", fields=MODEL_FIELDS, doc="model dimensions"),
    MetaField("hw", "object", fields=HW_FIELDS, doc="the hardware config the bundle was built for"),
    MetaField("quant", "scalars", doc="quantisation settings, free-form scalars"),
    MetaField("method", "str", choices=METHODS, doc="which accelerator algorithm the bundle is for"),
    MetaField("groups", "object", required=False, fields=GROUPS_FIELDS, open=True,
              doc="ReViT LSH grouping; present iff the bundle has lsh tensors"),
    MetaField("extra", "json", required=False, doc="free JSON: dataset, accuracy, training info"),
)


#: A hardware config name as a bundle may hold it: a file-name-safe word, never a path or a file name
#: (``load_config`` would open a path; a bundle may only name a shipped config).
CONFIG_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")


def config_name_problem(v: Any) -> Optional[str]:
    """Why ``v`` is not a config name a bundle may hold (``None`` when it is one)."""
    if not isinstance(v, str) or not v:
        return f"expected a non-empty string, found {v!r:.80}"
    if "/" in v or "\\" in v or "\0" in v:
        return f"expected a config name, found a path {v!r:.80} (a bundle names a shipped config; a config file " \
               f"is given on the command line, --config PATH)"
    if v.lower().endswith(".json"):
        return f"expected a config name without .json, found {v!r:.80}"
    if not CONFIG_NAME_RE.fullmatch(v):
        return f"expected a config name of letters, digits, '_', '.', '-' (at most 64, not starting with " \
               f"'.', '_' or '-'), found {v!r:.80}"
    return None


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _check_text(v: str, field: str, what: str = "text") -> None:
    """Refuse a lone surrogate (JSON ``"\\ud800"``): it loads, then breaks printing and UTF-8 encoding."""
    i = lone_surrogate(v)
    if i >= 0:
        raise _fail(field, f"expected valid Unicode {what}, found a lone surrogate U+{ord(v[i]):04X} at "
                           f"character {i}")


def _check_json_value(v: Any, field: str, depth: int = 0) -> None:
    """Any JSON value that round-trips exactly: dict (str keys), list, str, int (int64), finite float,
    bool, None; strings and keys valid Unicode (no lone surrogates)."""
    if depth > _MAX_JSON_DEPTH:
        raise _fail(field, f"nested deeper than {_MAX_JSON_DEPTH} levels")
    if isinstance(v, str):
        _check_text(v, field)
        return
    if v is None or isinstance(v, bool):
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
            _check_text(k, field, f"text in key {k!r}")
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
        _check_text(v, field)
        if f.choices is not None and v not in f.choices:
            raise _fail(field, f"expected one of {', '.join(repr(c) for c in f.choices)}, found {v!r}")
        if len(v) > 256:
            raise _fail(field, f"expected at most 256 characters, found {len(v)}")
    elif f.kind == "name":
        problem = config_name_problem(v)
        if problem:
            raise _fail(field, problem)
    elif f.kind == "hex64":
        if not isinstance(v, str) or not re.fullmatch(r"[0-9a-f]{64}", v):
            raise _fail(field, f"expected 64 lowercase hex digits (a sha256), found {v!r}")
    elif f.kind == "scalars":
        if not isinstance(v, dict):
            raise _fail(field, f"expected a JSON object of scalars, found {type(v).__name__}")
        for k, x in v.items():
            if not isinstance(k, str):
                raise _fail(field, f"expected string keys, found {k!r}")
            _check_text(k, field, f"text in key {k!r}")
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
        _check_text(k, prefix, f"text in key {k!r}")
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


def _int_linear(name: str, out: str, inp: str, doc: str) -> Tuple[TensorSpec, ...]:
    return (
        TensorSpec(f"int.{name}.weight", "int8", (out, inp), "int", None, f"{doc}: int8 weight (out, in)"),
        TensorSpec(f"int.{name}.bias", "int32", (out,), "int", "bias", f"{doc}: int32 bias, |b| < 2^30"),
        TensorSpec(f"int.{name}.mult", "int32", (out,), "int", "mult", f"{doc}: requant multiplier [0, 2^31)"),
        TensorSpec(f"int.{name}.shift", "int32", (out,), "int", "shift", f"{doc}: requant shift [0, 63]"),
        TensorSpec(f"int.{name}.out_scale", "float32", (), "int", "scale", f"{doc}: output scale (int8)"),
    )


def _int_norm(name: str, doc: str) -> Tuple[TensorSpec, ...]:
    return (
        TensorSpec(f"int.{name}.g", "int32", ("D",), "int", None, f"{doc}: integer gamma (NUMERICS.md layernorm)"),
        TensorSpec(f"int.{name}.b", "int32", ("D",), "int", None, f"{doc}: integer beta"),
        TensorSpec(f"int.{name}.ln", "int32", (2,), "int", "ln", f"{doc}: [shift S in [16, 62], eps >= 0]"),
    )


#: The integer whole model (group ``int``, format 3): what the accelerator runs from the int8 image to the
#: int8 logits. The float tensors beside them are the float reference the integer ones were made from.
INT_GLOBAL_TENSORS: Tuple[TensorSpec, ...] = (
    TensorSpec("int.input.scale", "float32", (), "int", "scale", "image quantisation: x8 = clip(rint(x / scale))"),
    *_int_linear("patch", "D", "CPP", "patch embedding as a GEMM over (c, py, px)-flattened patches"),
    TensorSpec("int.tokens.value", "int16", ("N", "D"), "int", None,
               "CLS token + position embedding (row 0) and the position embedding (rows 1..), int16"),
    TensorSpec("int.tokens.scale", "float32", (), "int", "scale", "scale of int.tokens.value"),
    TensorSpec("int.tokens.add", "int32", (3,), "int", "add",
               "x0 = add(patch out, tokens): [ma, mb, shift] (NUMERICS.md add)"),
    TensorSpec("int.res_scale", "float32", (), "int", "scale", "scale of the int16 residual stream x0"),
    *_int_norm("norm", "final LayerNorm (CLS rows)"),
    *_int_linear("head", "K", "D", "classifier"),
)

INT_LAYER_TENSORS: Tuple[TensorSpec, ...] = (
    *_int_norm("norm1", "LayerNorm before attention"),
    TensorSpec("int.add1", "int32", (3,), "int", "add", "x = add(x, proj out): [ma, mb, shift], int16 out"),
    *_int_norm("norm2", "LayerNorm before the MLP"),
    TensorSpec("int.gelu", "int8", (256,), "int", None, "GELU table: fc1 out (int8) -> fc2 in (int8)"),
    TensorSpec("int.add2", "int32", (3,), "int", "add", "x = add(x, fc2 out): [ma, mb, shift], int16 out"),
    TensorSpec("int.res_scale", "float32", (2,), "int", "scale", "residual stream scales after add1, add2"),
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
    *INT_GLOBAL_TENSORS,
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
    # ... and as the hardware hashes: (x8 . A_g + B_g) * mult >> shift (vitaccel.sim.revit.lsh.hash_params).
    TensorSpec("lsh.hash_weight", "int8", ("G", "D"), "lsh", None, "integer hash weights A (alpha at one scale)"),
    TensorSpec("lsh.hash_bias", "int32", ("G",), "lsh", "bias", "integer hash offsets B"),
    TensorSpec("lsh.hash_mult", "int32", (), "lsh", "mult", "hash multiplier (the 1 / gamma ratio)"),
    TensorSpec("lsh.hash_shift", "int32", (), "lsh", "shift", "hash shift"),
    # ReViT semantic hierarchical pruning after this layer's attention; 2^16 (ratio 1) = not pruned.
    TensorSpec("prune.keep_groups", "int32", (), "lsh", "q16", "kept share of non-empty groups, Q16"),
    TensorSpec("prune.keep_patches", "int32", (), "lsh", "q16", "kept share of each kept group's patches, Q16"),
    *INT_LAYER_TENSORS,
)

#: All tensor specs of schema v1: ``global`` ones by full name, the rest per layer.
TENSOR_SCHEMA: Tuple[TensorSpec, ...] = GLOBAL_TENSORS + LAYER_TENSORS
_LAYER_SPEC = {s.name: s for s in LAYER_TENSORS}
_GLOBAL_SPEC = {s.name: s for s in GLOBAL_TENSORS}
_LAYER_POS = {s.name: i for i, s in enumerate(LAYER_TENSORS)}

#: Per method, each optional tensor group: "required", "optional" or "forbidden".
METHOD_GROUPS: Dict[str, Dict[str, str]] = {
    "vitcod": {"attn_sparse": "required", "ae": "optional", "lsh": "forbidden", "int": "required"},
    "revit": {"attn_sparse": "optional", "ae": "forbidden", "lsh": "required", "int": "optional"},
    "dense": {"attn_sparse": "optional", "ae": "forbidden", "lsh": "forbidden", "int": "required"},
}
#: The optional tensor groups (every group but ``global`` and ``layer``).
GROUPS: Tuple[str, ...] = tuple(dict.fromkeys(s.group for s in TENSOR_SCHEMA if s.group not in ("global", "layer")))
#: Groups that exist only from a format version on: in an older file they are refused, and a rule
#: "required" reads as "optional" (the file loads; compiling it says it needs re-exporting).
GROUP_SINCE: Dict[str, int] = {"int": INT_MODEL_VERSION}
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


def _ln_check(a: np.ndarray) -> Optional[str]:
    if not 16 <= int(a[0]) <= 62:
        return f"expected a LayerNorm shift in [16, 62] at index [0], found {int(a[0])}"
    if int(a[1]) < 0:
        return f"expected eps >= 0 at index [1], found {int(a[1])}"
    return None


def _add_check(a: np.ndarray) -> Optional[str]:
    for i in (0, 1):
        if not 0 <= int(a[i]) < MULT_LIMIT:
            return f"expected a multiplier in [0, 2^31) at index [{i}], found {int(a[i])}"
    if not 0 <= int(a[2]) <= 62:
        return f"expected a shift in [0, 62] at index [2], found {int(a[2])}"
    return None


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
    "q16": _range_check(1, 1 << 16, "a Q16 ratio in [1, 65536] (ratio * 2^16)"),
    "ln": lambda a, dims: _ln_check(a),
    "add": lambda a, dims: _add_check(a),
}


def _dims_table(d: ModelDims, meta: Mapping[str, Any]) -> Dict[str, int]:
    dims = {
        "D": d.embed_dim, "C": d.in_chans, "P": d.patch_size, "N": d.num_tokens, "H": d.num_heads,
        "K": d.num_classes, "M": d.mlp_dim, "3D": 3 * d.embed_dim, "N+1": d.num_tokens + 1,
        "N-1": d.num_tokens - 1, "H+1": d.num_heads + 1, "CPP": d.in_chans * d.patch_size ** 2,
    }
    if d.ae_heads is not None:
        dims["Hc"] = d.ae_heads
    groups = meta.get("groups")
    if isinstance(groups, dict) and _is_int(groups.get("n_groups")):
        dims["G"] = groups["n_groups"]
    return dims


# ==================================================================================================
# Per-method hooks: checks across the tensors of one layer
# ==================================================================================================

#: ``check(tensors, "layers.{i}.", dims)``: raise :class:`BundleError` naming the first wrong tensor. It runs
#: after every tensor passed its own dtype, shape and value rules (``dims`` is the symbol table of
#: :class:`TensorSpec` shapes, with ``N``, ``H``, ...).
LayerCheck = Callable[[Mapping[str, np.ndarray], str, Dict[str, int]], None]

#: Per method (``meta.method``): ``(group, check)`` pairs, run in this order for every layer of a bundle of
#: that method that holds ``group`` (``"layer"``: always). Filled by the method modules through
#: :func:`register_layer_check`; the validator reads it and nothing else.
METHOD_CHECKS: Dict[str, List[Tuple[str, LayerCheck]]] = {m: [] for m in METHODS}


def register_layer_check(method: str, group: str, check: LayerCheck) -> LayerCheck:
    """Run ``check`` on every layer of ``method`` bundles that hold tensor group ``group``; return ``check``.

    Registering the same function again (same module and name, e.g. after a reload) replaces it in place.
    """
    if method not in METHOD_GROUPS:
        raise ValueError(f"unknown method {method!r}; expected one of {', '.join(METHOD_GROUPS)}")
    if group != "layer" and METHOD_GROUPS[method].get(group, "forbidden") == "forbidden":
        raise ValueError(f"method {method!r} has no {group!r} tensors; expected one of "
                         f"{', '.join(g for g, r in METHOD_GROUPS[method].items() if r != 'forbidden')} "
                         f"or 'layer'")
    key = (getattr(check, "__module__", None), getattr(check, "__qualname__", None))
    entries = METHOD_CHECKS[method]
    for i, (g, fn) in enumerate(entries):
        if g == group and (getattr(fn, "__module__", None), getattr(fn, "__qualname__", None)) == key:
            entries[i] = (group, check)
            return check
    entries.append((group, check))
    return check
