"""The generic validator: a bundle's meta and tensors against the schema tables, whatever the method.

It is table-driven on purpose: every rule it applies comes from ``schema.py`` (meta fields, tensor specs,
method groups, value rules) or from the per-method hook table that method modules fill (``vitcod.py``), so
adding a method or a tensor does not mean editing this file. It checks dicts, not files: the same code
guards the writer (nothing invalid is ever written) and the loader (nothing invalid is ever run).

NumPy and the standard library only: this runs on a PYNQ board, without torch.
"""
from __future__ import annotations

from typing import Any, Dict, Iterable, List, Mapping, Tuple, Union

import numpy as np

from vitaccel.host.bundle.inmemory import Bundle
from vitaccel.host.bundle.schema import (
    _GLOBAL_SPEC, _GROUP_META, _LAYER_NAME, _LAYER_POS, _LAYER_SPEC, _VALUE_CHECKS, DTYPES, GLOBAL_TENSORS,
    LAYER_TENSORS, META_SCHEMA, METHOD_CHECKS, METHOD_GROUPS, ModelDims, TensorSpec, _check_meta_object,
    _dims_table, _fail, _first_index, _where, config_name_problem, GROUP_SINCE, GROUPS,
)

__all__ = ["validate_bundle", "check_config", "check_limits", "resolve_config"]


def _validate_meta(meta: Any) -> ModelDims:
    if not isinstance(meta, dict):
        raise _fail("meta", f"expected a JSON object, found {type(meta).__name__}")
    _check_meta_object(meta, META_SCHEMA, "meta")
    return ModelDims.from_meta(meta)


def resolve_config(meta_or_bundle: Union["Bundle", Mapping[str, Any]], config: Any = None) -> Any:
    """The ``HardwareConfig`` to run a bundle on.

    ``config`` (a shipped name, a path to a JSON file, or a ``HardwareConfig``) comes from the user (the
    command line's ``--config``, an API argument) and is loaded as given. Without it, the bundle's
    ``meta.hw.config_name`` is resolved as a NAME only: it must be a shipped config
    (``vitaccel.hwconfig.list_configs()``); a path, a ``.json`` name or an unknown name raises
    :class:`BundleError` for ``meta.hw.config_name`` and nothing is opened. So a file never makes the
    loader open another path (``/dev/zero``, a FIFO, a private file)."""
    from vitaccel.hwconfig import ConfigError, list_configs, load_config

    if config is not None:
        return load_config(config)
    meta = meta_or_bundle.meta if isinstance(meta_or_bundle, Bundle) else meta_or_bundle
    hw = meta.get("hw") if isinstance(meta, Mapping) else None
    name = hw.get("config_name") if isinstance(hw, Mapping) else None
    problem = config_name_problem(name)
    if problem:
        raise _fail("meta.hw.config_name", problem)
    shipped = list_configs()
    if name not in shipped:
        raise _fail("meta.hw.config_name", f"names hardware config {name!r}, which is not a shipped config "
                                           f"({', '.join(shipped)}); pass its config file explicitly "
                                           f"(--config PATH, or config=...)")
    try:
        return load_config(name)
    except ConfigError as e:  # pragma: no cover - a shipped config that does not load is a packaging bug
        raise _fail("meta.hw.config_name", f"shipped config {name!r} does not load: {e}") from None


def check_limits(meta_or_bundle: Union["Bundle", Mapping[str, Any]], config: Any) -> None:
    """Raise :class:`BundleError` unless the bundle's model fits the size limits of ``config`` (a name,
    path or ``HardwareConfig``): tokens, heads, head dimension, model and MLP width, AE heads. The message
    names the limit and the config (``max_heads = 12 in config 'paper'``). Run when a model is opened
    (``Accelerator``, ``vitaccel sim``), so a model the hardware cannot run fails there, not at its first
    accelerator start."""
    from vitaccel.hwconfig import ConfigError, load_config

    meta = meta_or_bundle.meta if isinstance(meta_or_bundle, Bundle) else meta_or_bundle
    try:
        cfg = load_config(config)
    except ConfigError as e:
        raise _fail("expect_config", str(e)) from e
    d = _validate_meta(meta)
    limits = [
        ("num_tokens", "num_tokens", d.num_tokens, "max_tokens", cfg.max_tokens),
        ("num_heads", "num_heads", d.num_heads, "max_heads", cfg.max_heads),
        ("embed_dim", "embed_dim", d.embed_dim, "max_embed_dim", cfg.max_embed_dim),
        ("mlp_dim", "mlp_dim", d.mlp_dim, "max_mlp_dim", cfg.max_mlp_dim),
        ("num_heads", "head_dim (embed_dim / num_heads)", d.head_dim, "max_head_dim", cfg.max_head_dim),
    ]
    if d.ae_heads is not None:
        limits.append(("ae_heads", "ae_heads", d.ae_heads, "max_heads", cfg.max_heads))
    for key, what, value, limit_name, limit in limits:
        if value > limit:
            raise _fail(f"meta.model.{key}", f"expected {what} <= {limit} ({limit_name} = {limit} in config "
                                             f"{cfg.name!r}), found {value}: this hardware cannot run the model")


def check_config(meta_or_bundle: Union["Bundle", Mapping[str, Any]], config: Any) -> None:
    """Raise :class:`BundleError` unless the bundle was built for ``config`` (a name, path or
    ``HardwareConfig``) and its model fits that config's size limits (:func:`check_limits`)."""
    from vitaccel.hwconfig import ConfigError, load_config

    meta = meta_or_bundle.meta if isinstance(meta_or_bundle, Bundle) else meta_or_bundle
    try:
        cfg = load_config(config)
    except ConfigError as e:
        raise _fail("expect_config", str(e)) from e
    _validate_meta(meta)
    hw = meta["hw"]
    if hw["config_hash"] != cfg.hash or hw["config_name"] != cfg.name:
        fld = "meta.hw.config_hash" if hw["config_hash"] != cfg.hash else "meta.hw.config_name"
        raise _fail(fld, f"bundle was built for hardware config {hw['config_name']!r} (hash "
                         f"{hw['config_hash']}), expected {cfg.name!r} (hash {cfg.hash})")
    check_limits(meta, cfg)


def _classify_names(names: Iterable[str], depth: int) -> Tuple[Dict[str, Tuple[int, TensorSpec]], Dict[str, bool]]:
    """Map every name to (layer or -1, spec); reject unknown names. Return also which groups appear."""
    out: Dict[str, Tuple[int, TensorSpec]] = {}
    present = {g: False for g in GROUPS}
    for name in names:
        if not isinstance(name, str):
            raise _fail("tensors", f"expected string tensor names, found {name!r}")
        if name in _GLOBAL_SPEC:
            out[name] = (-1, _GLOBAL_SPEC[name])
            if _GLOBAL_SPEC[name].group in present:
                present[_GLOBAL_SPEC[name].group] = True
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
    names = [(s.name, s) for s in GLOBAL_TENSORS if s.group == "global" or groups.get(s.group, False)]
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
    version = int(meta["format_version"])
    for group, rule in METHOD_GROUPS[method].items():
        since = GROUP_SINCE.get(group, 0)
        if version < since:
            if present[group]:
                raise _fail(next(n for n, (_, spec) in classified.items() if spec.group == group),
                            f"{group} tensors need format_version >= {since}, the bundle says {version}")
            if rule == "required":
                rule = "optional"
        if rule == "forbidden" and present[group]:
            bad = min(((i, _LAYER_POS.get(spec.name, -1), n) for n, (i, spec) in classified.items()
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
    layer_checks = METHOD_CHECKS.get(method, ())  # registered by the method modules (vitcod.py, ...)
    for i in range(d.depth):
        for group, fn in layer_checks:
            if groups.get(group, group == "layer"):
                fn(tensors, f"layers.{i}.", dims)
    return [n for n, _ in expected]


def validate_bundle(bundle: "Bundle", *, expect_config: Any = None) -> None:
    """Check ``bundle`` against schema v1 (and, with ``expect_config``, against a hardware config).
    Raises :class:`BundleError` naming the first wrong field."""
    if not isinstance(bundle, Bundle):
        raise _fail("bundle", f"expected a Bundle, found {type(bundle).__name__}")
    _validate(bundle.meta, bundle.tensors, expect_config)

