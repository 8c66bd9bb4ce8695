"""No float arithmetic between input quantisation and the logits (issue #10).

The claim "board and simulator agree on any CPU" needs every step after ``quantize_images`` to be integer.
Three checks, each able to fail:

1. **Static**: the functions that compute the bits of the simulator's accelerator (the NumPy top and the
   kernels it calls) contain no float operation: no true division, no float literal, no float dtype, no
   transcendental function. One function is exempt by name, ``numerics.matmul_int``: it multiplies int8
   matrices through float32 BLAS over inner-dimension chunks short enough that every partial sum is an
   integer below 2^24 (so any summation order gives the same integer), and check 3 proves it changes nothing;
   ReViT's ``rmmu._exact`` is exempt the same way: float64 products of |B| < 2^18 and |S| < 2^10 over K <=
   2^16 keep every partial sum below 2^44, exact in float64 in any order.
2. **Runtime**: the whole demo model runs through the NumPy top with NumPy's and math's float functions
   replaced by ones that raise, and with ``matmul_int`` replaced by a pure integer product (int64, no BLAS);
   the logits equal the normal run's bit for bit.
3. ``matmul_int`` at the contract's extremes equals the int64 product.
"""
from __future__ import annotations

import ast
import inspect
import math
import re
import textwrap
import warnings

import numpy as np
import pytest

from vitaccel.sim import numerics as nx
from vitaccel.sim.common import eltwise, layernorm
from vitaccel.sim.vitcod import top

# The bit-producing code of the simulator's accelerator: (module, function names; "Class.method" allowed).
BIT_FUNCTIONS = [
    (top, ["_run_gemm", "_gemm_part", "_run_qkv_ae", "_run_ae", "_run_attention", "_run_layernorm", "_run_add",
           "_run_lut", "_bias_requant", "_gemm_bits", "_mix_bits", "softmax_kept", "_const_status", "_Window.i32", "_Window.i16", "_Window.tensor",
           "_Window.store", "_Window.i8_2d"]),
    (nx, ["requantize", "softmax", "_as_int64"]),
    (layernorm, ["layernorm_int", "isqrt"]),
    (eltwise, ["add_requant", "lut_int8", "_int_operand"]),
]
# ReViT's: revit_top's NumPy model, its engines' bit paths and the integer whole model (cycle models beside
# them are integer too, so whole functions are checked).
from vitaccel.sim.revit import (attention as rv_attention, compact as rv_compact, differential as rv_diff,  # noqa: E402
                                dsoftmax as rv_dsoftmax, groupgen as rv_groupgen, layer as rv_layer, model as rv_model,
                                pruner as rv_pruner, rmmu as rv_rmmu, softmax as rv_softmax, top as rv_top)

REVIT_BIT_FUNCTIONS = [
    (rv_top, ["_run_attn", "_run_prune", "_run_compact", "_run_gemm", "_run_layernorm", "_run_add", "_run_lut"]),
    (rv_compact, ["compact_tokens", "package_params", "compact_cycles"]),
    (rv_layer, ["engine_layer", "head_overlap", "column_cost"]),
    (rv_dsoftmax, ["dsoftmax", "dsoftmax_cycles", "row_pipeline"]),
    (rv_softmax, ["blockwise_softmax_int"]),
    (rv_rmmu, ["rbsp_pass", "rmmu_scores", "rmmu_output"]),
    (rv_groupgen, ["generate_groups"]),
    (rv_diff, ["centroids_int"]),
    (rv_pruner, ["prune_layer"]),
    (rv_attention, ["revit_attention_layer"]),
    (rv_model, ["forward_int"]),
]
FLOAT_NAMES = {"float", "float16", "float32", "float64", "floating", "exp", "exp2", "log", "log2", "sqrt", "erf",
               "tanh", "true_divide", "divide", "power", "rint", "round", "sin", "cos", "reciprocal"}


def _source(module, name: str) -> ast.AST:
    obj = module
    for part in name.split("."):
        obj = getattr(obj, part)
    return ast.parse(textwrap.dedent(inspect.getsource(obj)))


def _float_uses(tree: ast.AST):
    for node in ast.walk(tree):
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Div):
            yield node.lineno, "true division"
        elif isinstance(node, ast.AugAssign) and isinstance(node.op, ast.Div):
            yield node.lineno, "true division"
        elif isinstance(node, ast.Constant) and isinstance(node.value, float):
            yield node.lineno, f"float literal {node.value!r}"
        elif isinstance(node, ast.Attribute) and node.attr in FLOAT_NAMES:
            yield node.lineno, f".{node.attr}"
        elif isinstance(node, ast.Name) and node.id in FLOAT_NAMES:
            yield node.lineno, node.id


@pytest.mark.parametrize("module,names", BIT_FUNCTIONS, ids=lambda v: getattr(v, "__name__", "fns"))
def test_bit_functions_have_no_float_operations(module, names):
    bad = [f"{module.__name__}.{n} line {ln}: {what}" for n in names for ln, what in _float_uses(_source(module, n))]
    assert not bad, "float arithmetic in the accelerator's bits:\n" + "\n".join(bad)


@pytest.mark.parametrize("module,names", REVIT_BIT_FUNCTIONS, ids=lambda v: getattr(v, "__name__", "fns"))
def test_revit_bit_functions_have_no_float_operations(module, names):
    bad = [f"{module.__name__}.{n} line {ln}: {what}" for n in names for ln, what in _float_uses(_source(module, n))]
    assert not bad, "float arithmetic in the ReViT accelerator's bits:\n" + "\n".join(bad)


def test_the_static_check_can_fail():
    tree = ast.parse("def f(a):\n    return (a / 2).astype(np.float32) + np.exp(a) * 0.5\n")
    assert {w for _, w in _float_uses(tree)} == {"true division", ".float32", ".exp", "float literal 0.5"}


def _int_matmul(a, b):
    a, b = np.asarray(a), np.asarray(b)
    for arr in (a, b):
        if arr.dtype not in (np.int8, np.uint8):
            raise TypeError(arr.dtype)
    out = np.matmul(a.astype(np.int64), b.astype(np.int64))   # integer loops: no BLAS, no float
    if out.size and np.abs(out).max() >= 2 ** 31:
        raise OverflowError
    return out.astype(np.int32)


def _raiser(name):
    def f(*a, **k):
        raise AssertionError(f"float function {name} called after input quantisation")
    return f


def _forbid_float(monkeypatch):
    """NumPy's and math's float functions raise; ``matmul_int`` becomes the pure integer product."""
    monkeypatch.setattr(nx, "matmul_int", _int_matmul)
    for name in ("exp", "exp2", "log", "log2", "sqrt", "tanh", "true_divide", "divide", "power", "rint", "round",
                 "float_power", "reciprocal"):
        monkeypatch.setattr(np, name, _raiser(f"np.{name}"))
    for name in ("exp", "log", "sqrt", "erf", "pow"):
        monkeypatch.setattr(math, name, _raiser(f"math.{name}"))


def test_demo_runs_on_the_top_without_float(monkeypatch):
    from vitaccel.host import Accelerator
    from vitaccel.host.bundle import load_bundle
    from vitaccel.host.run import demo_dir
    from vitaccel.sim.vitcod.model import prepare_input

    bundle = load_bundle(demo_dir() / "demo.vcb")
    images = np.load(demo_dir() / "test_images.npz")["images"][:4]
    with Accelerator(bundle, backend="sim", batch_size=4) as acc:
        want = acc.run(images, progress=False).logits
        rows8 = prepare_input(acc.program.program, images)
        _forbid_float(monkeypatch)          # from here on (the int8 rows are made), nothing may use float
        got8 = acc._run_batch(rows8)
        monkeypatch.undo()
    got = (got8.astype(np.float32) * np.float32(acc.program.program.head.out_scale)).astype(np.float32)
    assert np.array_equal(got, want)


def test_revit_demo_runs_on_the_top_without_float(monkeypatch):
    """The ReViT demo through revit_top's NumPy model, float functions raising once the int8 rows exist: the
    same logits (the integer package token and every ReViT engine included)."""
    from vitaccel.host import Accelerator
    from vitaccel.host.bundle import load_bundle
    from vitaccel.host.run import demo_dir

    bundle = load_bundle(demo_dir() / "revit.vcb")
    images = np.load(demo_dir() / "test_images.npz")["images"][:3]
    with Accelerator(bundle, backend="sim", batch_size=3) as acc:
        want = acc.run(images, progress=False).logits
        rows8 = acc.program.prepare_input(images)
        _forbid_float(monkeypatch)
        monkeypatch.setattr(rv_rmmu, "_exact", _int_exact)
        got8 = acc._run_batch(rows8)
        monkeypatch.undo()
    assert np.array_equal(acc.program.dequantize(got8), want)


def _int_exact(b, s):
    return np.asarray(b, np.int64) @ np.asarray(s, np.int64).T


def test_rbsp_exact_product_is_the_integer_product_at_the_extremes():
    rng = np.random.default_rng(1)
    k = 1 << 16
    b = np.where(rng.random((3, k)) < 0.5, (1 << 18) - 1, -(1 << 18)).astype(np.int64)
    s_ = np.where(rng.random((2, k)) < 0.5, 511, -512).astype(np.int64)
    s_[1] = rng.integers(-512, 512, k)
    b[2] = rng.integers(-(1 << 18), 1 << 18, k)
    assert np.array_equal(rv_rmmu._exact(b, s_), _int_exact(b, s_))


def test_matmul_int_is_exact_at_the_extremes():
    rng = np.random.default_rng(0)
    k = (1 << 31) // (128 * 128) - 1   # the longest accumulation whose worst case stays inside int32
    a = np.full((2, k), -128, np.int8)
    b = np.concatenate([np.full((k, 1), 127, np.int8), rng.integers(-128, 128, (k, 1), dtype=np.int8)], 1)
    a[1] = rng.integers(-128, 128, k, dtype=np.int8)
    assert np.array_equal(nx.matmul_int(a, b), _int_matmul(a, b))
    p = rng.integers(0, 256, (3, 197, 197), dtype=np.uint8)
    v = rng.integers(-128, 128, (3, 197, 64), dtype=np.int8)
    assert np.array_equal(nx.matmul_int(p, v), _int_matmul(p, v))


def test_images_beyond_the_calibrated_range_warn_naming_the_image():
    from vitaccel.host import Accelerator
    from vitaccel.host.run import InputWarning
    from vitaccel.testing import random_bundle

    b = random_bundle(depth=1)
    with Accelerator(b, backend="sim") as acc:
        cal = 127.0 * acc.program.program.input_scale
        x = np.zeros((3, 3, 16, 16), np.float32)
        x[1, 0, 0, 0] = 1.5 * cal                # within the factor: quiet
        with warnings.catch_warnings(record=True) as seen:
            warnings.simplefilter("always", InputWarning)
            acc.run(x, progress=False)
        assert not [w for w in seen if "calibrated range" in str(w.message)]
        x[2, 0, 0, 0] = 3.0 * cal
        with warnings.catch_warnings(record=True) as seen:
            warnings.simplefilter("always", InputWarning)
            acc.run(x, progress=False)
        msgs = [str(w.message) for w in seen if issubclass(w.category, InputWarning)]
        assert any(re.search(r"image 2 .* 3 times the calibrated range.*saturate at int8", m) for m in msgs), msgs
        # 3x the calibrated range is also far outside a normalised image's: that warning comes too.
        assert any("normalised range" in m for m in msgs), msgs
    with pytest.raises(ValueError, match="image 0 has NaN"):
        Accelerator(b, backend="sim").run(np.full((1, 3, 16, 16), np.nan, np.float32), progress=False)
