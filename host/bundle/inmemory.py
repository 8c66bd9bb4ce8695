"""The in-memory bundle: what the exporter builds, the loader returns, and the compiler and simulator read.

It is a plain pair of dicts (``meta``, ``tensors``) so that it costs nothing to build or to hold views on
a file's bytes; the accessors only name things the schema defines (layers, groups, model dimensions), and
validation stays in ``validate.py``, so that a ``Bundle`` can hold an invalid pair (tests, the exporter
before it writes) and say so when asked.

NumPy and the standard library only: this runs on a PYNQ board, without torch.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Dict

import numpy as np

from vitaccel.safetext import printable
from vitaccel.host.bundle.schema import _LAYER_NAME, _LAYER_SPEC, ModelDims, _is_int

__all__ = ["Bundle"]


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

    def hardware_config(self, config: Any = None) -> Any:
        """The ``HardwareConfig`` to run on: ``config`` when given (from the user: a name, a path or a
        config), else the shipped config ``meta.hw.config_name`` names (a name only, never opened as a
        path; see :func:`vitaccel.host.bundle.resolve_config`)."""
        from vitaccel.host.bundle.validate import resolve_config  # validate.py imports this module

        return resolve_config(self, config)

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
        """Whether the bundle holds the optional tensor group ``attn_sparse``, ``ae``, ``lsh`` or ``int``."""
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
        from vitaccel.host.bundle.validate import validate_bundle  # validate.py imports this module

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
        # text from the file is escaped: no terminal escape sequences, bidi overrides or surrogates printed
        return "\n".join(printable(line) for line in lines)

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

