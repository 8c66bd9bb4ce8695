"""The deployment bundle (``host/BUNDLE.md``): one versioned file that ``models/`` writes and the host reads.

Callers import from ``vitaccel.host.bundle`` only; the modules below are split by what changes together,
not by API:

* ``schema.py``: schema v1 as tables (``META_SCHEMA``, ``TENSOR_SCHEMA``, ``METHOD_GROUPS``),
  ``BundleError``, ``ModelDims``, and the per-method hook table ``METHOD_CHECKS``;
* ``validate.py``: the generic, table-driven validator (``validate_bundle``, ``check_config``);
* ``vitcod.py``: ViTCoD's cross-tensor rules (sparse attention order / CSC / mask), registered in
  ``METHOD_CHECKS`` when this package is imported; a new method adds its own module and import here;
* ``inmemory.py``: ``Bundle``, the in-memory pair of dicts;
* ``container.py``: the file format (``write_bundle``, ``load_bundle``, ``bundle_to_bytes``, ...).

The random test bundle lives outside the runtime, in ``vitaccel.testing.random_bundle``.

NumPy and the standard library only: this package runs on a PYNQ board, without torch.
"""
from vitaccel.host.bundle.schema import (
    DTYPES, FORMAT_VERSION, INT_MODEL_VERSION, META_SCHEMA, METHOD_CHECKS, METHOD_GROUPS, METHODS, TENSOR_SCHEMA, BundleError,
    LayerCheck, MetaField, ModelDims, TensorSpec, register_layer_check,
)
from vitaccel.host.bundle.inmemory import Bundle
from vitaccel.host.bundle.validate import check_config, check_limits, resolve_config, validate_bundle
from vitaccel.host.bundle.container import (
    ALIGN, MAGIC, MAX_HEADER_BYTES, assemble_unchecked, bundle_from_bytes, bundle_to_bytes, encode_unchecked,
    load_bundle, read_header, split_unchecked, write_bundle,
)
from vitaccel.host.bundle import vitcod  # noqa: F401  (registers ViTCoD's checks in METHOD_CHECKS)
from vitaccel.host.bundle import revit  # noqa: F401  (registers ReViT's checks in METHOD_CHECKS)

__all__ = [
    "MAGIC",
    "FORMAT_VERSION",
    "INT_MODEL_VERSION",
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
    "METHOD_CHECKS",
    "LayerCheck",
    "register_layer_check",
    "write_bundle",
    "load_bundle",
    "bundle_to_bytes",
    "bundle_from_bytes",
    "validate_bundle",
    "check_config",
    "check_limits",
    "resolve_config",
    "read_header",
    "encode_unchecked",
    "split_unchecked",
    "assemble_unchecked",
]
