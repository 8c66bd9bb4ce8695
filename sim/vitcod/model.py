"""A whole model on the simulator: a bundle and an image batch in, logits and a cycle report out.

The bundle is first turned into a :class:`Program` (per-layer kernel arguments and fixed sparsity
plans, computed once), then run image batch by image batch, integer from the int8 image to the int8
logits (KERNELS.md, "The integer model graph"): the host quantises the images
(:func:`vitaccel.sim.common.intmodel.quantize_images`), every step after that is an integer kernel through a
:class:`Kernels` object, and the host dequantises the logits. :class:`SimKernels` is the NumPy
implementation; a C-simulation provides the same methods, which is how every backend runs the same
program and returns the same bits. :func:`forward_int` is the functional model of the one accelerator
start the host compiler emits per batch (``vitaccel.host.vitcod.program``). Cycles do not depend on the
image (the masks are fixed), so the report is computed once per program.

The bundle is taken duck-typed (``.model``, ``.depth``, ``.layer(i)``, ``.globals()``, ``.has(group)``), so
this module does not import the host package; ``vitaccel.host.bundle.Bundle`` is what callers pass.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Callable, Dict, Iterable, List, Optional

import numpy as np

from vitaccel.hwconfig import ConfigLike, HardwareConfig, load_config
from vitaccel.sim import numerics as nx
from vitaccel.sim.common import intmodel as im
from vitaccel.sim.common.eltwise import add_cycles, add_requant, lut_cycles, lut_int8
from vitaccel.sim.common.gemm import gemm, gemm_cycles
from vitaccel.sim.common.layernorm import layernorm_cycles, layernorm_int
from vitaccel.sim.report import Report
from vitaccel.sim.vitcod.attention import AEParams, SparsePlan, attention_cycles, engine_plan
from vitaccel.sim.vitcod.autoencoder import ae_mix_cycles, best_staging, fuse_encoder, mix_heads, qkv_ae_cycles

__all__ = ["Kernels", "SimKernels", "Norm", "Linear", "LayerProgram", "Program", "ModelResult", "compile_program",
           "forward", "forward_int", "forward_batched", "prepare_input", "run_model", "program_cycles",
           "model_baselines", "model_with_attention", "LINEARS", "int_model_problem"]

LINEARS = ("qkv", "proj", "fc1", "fc2")


class Kernels:
    """What a backend must run: the integer kernels of KERNELS.md."""

    name = "abstract"

    def gemm(self, x, w, bias, mult, shift) -> np.ndarray:
        raise NotImplementedError

    def mix_heads(self, x, weight, bias, mult, shift) -> np.ndarray:
        raise NotImplementedError

    def attention(self, q, k, v, plan: SparsePlan, m_exp: int, s_exp: int, m_out: int, s_out: int) -> np.ndarray:
        raise NotImplementedError

    def layernorm(self, x16, g, b, shift: int, eps: int) -> np.ndarray:
        raise NotImplementedError

    def add(self, a, ma: int, b, mb: int, shift: int, out_bits: int) -> np.ndarray:
        raise NotImplementedError

    def lut(self, x8, table) -> np.ndarray:
        raise NotImplementedError


class SimKernels(Kernels):
    """The simulator's functional models."""

    name = "sim"

    def gemm(self, x, w, bias, mult, shift):
        return gemm(x, w, bias, mult, shift)

    def mix_heads(self, x, weight, bias, mult, shift):
        return mix_heads(x, weight, bias, mult, shift)

    def attention(self, q, k, v, plan, m_exp, s_exp, m_out, s_out):
        # Heads of several images are stacked on axis 0; the plan's mask repeats per image.
        reps = q.shape[0] // plan.mask.shape[0]
        mask = np.tile(plan.mask, (reps, 1, 1)) if reps > 1 else plan.mask
        s = nx.matmul_int(q, np.swapaxes(k, 1, 2))
        p = nx.softmax(s, mask, m_exp, s_exp)
        return nx.requantize(nx.matmul_int(p, v), m_out, s_out)

    def layernorm(self, x16, g, b, shift, eps):
        return layernorm_int(x16, g, b, shift, eps)

    def add(self, a, ma, b, mb, shift, out_bits):
        return add_requant(a, ma, b, mb, shift, out_bits)

    def lut(self, x8, table):
        return lut_int8(x8, table)


@dataclasses.dataclass(frozen=True)
class Norm:
    """An integer LayerNorm's operands (NUMERICS.md layernorm)."""

    g: np.ndarray
    b: np.ndarray
    shift: int
    eps: int

    @classmethod
    def from_tensors(cls, t: Dict[str, np.ndarray], prefix: str) -> "Norm":
        ln = t[prefix + ".ln"]
        return cls(t[prefix + ".g"], t[prefix + ".b"], int(ln[0]), int(ln[1]))


@dataclasses.dataclass(frozen=True)
class Linear:
    """A GEMM's operands; ``out_scale`` is what its int8 output means (reports, dequantisation)."""

    weight: np.ndarray
    bias: np.ndarray
    mult: np.ndarray
    shift: np.ndarray
    out_scale: float

    @classmethod
    def from_tensors(cls, t: Dict[str, np.ndarray], prefix: str) -> "Linear":
        i32 = lambda k: np.ascontiguousarray(t[prefix + k], np.int32)  # noqa: E731  (per channel: the schema's (O,))
        return cls(np.ascontiguousarray(t[prefix + ".weight"], np.int8), i32(".bias"), i32(".mult"), i32(".shift"),
                   float(t[prefix + ".out_scale"]))


@dataclasses.dataclass
class LayerProgram:
    index: int
    linears: Dict[str, Linear]                   # qkv, proj, fc1, fc2
    norm1: Norm
    norm2: Norm
    add1: tuple                                  # (ma, mb, shift): x + proj out -> int16
    add2: tuple                                  # (ma, mb, shift): x + fc2 out -> int16
    gelu: np.ndarray                             # int8 (256,)
    plan: SparsePlan
    softmax: tuple                               # (m_exp, s_exp)
    attn_out: tuple                              # (m_out, s_out)
    ae: Optional[tuple]                          # (AEParams for q, AEParams for k) or None


@dataclasses.dataclass
class Program:
    """Everything the kernels need, unpacked from a bundle once."""

    dims: Any
    layers: List[LayerProgram]
    config: HardwareConfig
    input_scale: float                           # the host's image quantisation
    patch: Linear                                # (D, C P P)
    tokens: np.ndarray                           # int16 (N, D): CLS + pos (row 0), pos (rows 1..)
    tokens_add: tuple                            # (ma, mb, shift)
    norm: Norm                                   # final LayerNorm (CLS rows)
    head: Linear

    @property
    def heads(self) -> int:
        return self.dims.num_heads

    @property
    def head_dim(self) -> int:
        return self.dims.embed_dim // self.dims.num_heads


def _ae_params(t: Dict[str, np.ndarray], which: str) -> AEParams:
    p = f"ae.{which}."
    return AEParams(t[p + "enc_weight"], t[p + "enc_bias"], int(t[p + "enc_mult"]), int(t[p + "enc_shift"]),
                    t[p + "dec_weight"], t[p + "dec_bias"], int(t[p + "dec_mult"]), int(t[p + "dec_shift"]))


def int_model_problem(bundle, exporter: str = "vitaccel prune, or vitaccel.models.export.export_bundle") -> Optional[str]:
    """Why ``bundle`` cannot run on the accelerator's integer model, or None; ``exporter`` is what to export it
    again with."""
    if not bundle.has("int"):
        return (f"this bundle (format version {bundle.format_version}) has no integer whole model (the 'int' "
                f"tensors: LayerNorm, GELU, residual, patch-embedding and head parameters), which the accelerator "
                f"needs since format version 3; export it again from its checkpoint ({exporter})")
    return None


def _add3(a) -> tuple:
    return tuple(int(v) for v in np.asarray(a))


def compile_program(bundle, config: Optional[ConfigLike] = None) -> Program:
    """Unpack a (validated) bundle into per-layer kernel arguments and sparsity plans."""
    # ``config`` comes from the caller (a name, a path, a config); the bundle's own config is resolved as a
    # shipped NAME only (Bundle.hardware_config), never opened as a path.
    cfg = load_config(config) if config is not None else bundle.hardware_config()
    if bundle.method == "revit":
        raise ValueError("a ReViT bundle runs on the ReViT model (vitaccel.sim.revit.model.run_revit) and on a revit "
                         "config (vitaccel.host.Accelerator picks the bundle's); this is ViTCoD's")
    problem = int_model_problem(bundle)
    if problem:
        raise ValueError(problem)
    dims = bundle.model
    n, h = dims.num_tokens, dims.num_heads
    sparse = bundle.has("attn_sparse")
    with_ae = bundle.has("ae")
    layers = []
    for i in range(bundle.depth):
        t = bundle.layer(i)
        lin = {name: Linear.from_tensors(t, name) for name in LINEARS}
        if sparse:   # the bundle's globals, unless the host compiler runs a head all on the sparser engine
            plan = engine_plan(cfg, SparsePlan.from_mask(np.asarray(t["attn.mask"]), np.asarray(t["attn.order"]),
                                                         np.asarray(t["attn.n_global"])), dims.embed_dim // h)
        else:  # dense attention: every column on the denser engine
            plan = SparsePlan.from_mask(np.ones((h, n, n), dtype=bool), np.tile(np.arange(n, dtype=np.int32), (h, 1)),
                                        np.full(h, n, dtype=np.int32))
        layers.append(LayerProgram(
            i, lin, Norm.from_tensors(t, "int.norm1"), Norm.from_tensors(t, "int.norm2"), _add3(t["int.add1"]),
            _add3(t["int.add2"]), np.asarray(t["int.gelu"], np.int8), plan,
            (int(t["attn.softmax_mult"]), int(t["attn.softmax_shift"])),
            (int(t["attn.out_mult"]), int(t["attn.out_shift"])),
            (_ae_params(t, "q"), _ae_params(t, "k")) if with_ae else None))
    g = bundle.globals()
    return Program(dims, layers, cfg, float(g["int.input.scale"]), Linear.from_tensors(g, "int.patch"),
                   np.ascontiguousarray(g["int.tokens.value"], np.int16), _add3(g["int.tokens.add"]),
                   Norm.from_tensors(g, "int.norm"), Linear.from_tensors(g, "int.head"))


# -- cycles ------------------------------------------------------------------------------------------------

def _embed_kernels(prog: Program) -> List:
    cfg, dims = prog.config, prog.dims
    n, dm = dims.num_tokens, dims.embed_dim
    k = prog.patch.weight.shape[1]
    return [gemm_cycles(cfg, n - 1, k, dm, name="patch_embed"),
            add_cycles(cfg, n * dm, a_bytes=1, b_bytes=2, out_bits=16, name="tokens")]


def _head_kernels(prog: Program) -> List:
    cfg, dims = prog.config, prog.dims
    return [layernorm_cycles(cfg, 1, dims.embed_dim, name="norm"),
            gemm_cycles(cfg, 1, dims.embed_dim, dims.num_classes, name="head")]


#: How the qkv projection runs with an AE: the host compiler's choice, or forced (benchmarks compare them).
ENCODER_PLACEMENTS = ("auto", "fused", "unfused")


def _layer_kernels(prog: Program, lp: LayerProgram, attention=None, with_ae: bool = True,
                   encoder: str = "auto") -> List:
    """One layer's kernel reports in the order the accelerator runs them for one image (the host's
    descriptor program, ``vitaccel.host.vitcod.program``): LayerNorm, qkv (with an AE: the fused OP_QKV_AE
    where :func:`~vitaccel.sim.vitcod.autoencoder.fuse_encoder` picks it, else the GEMM and the encoder on Q and K),
    attention, proj, the residual add, LayerNorm, fc1, GELU, fc2, the residual add. ``attention`` replaces
    the attention report (baselines); ``with_ae=False`` drops the encoder."""
    cfg, dims = prog.config, prog.dims
    n, d_model, h, d, mlp = dims.num_tokens, dims.embed_dim, dims.num_heads, prog.head_dim, dims.mlp_dim
    i = lp.index
    hc = lp.ae[0].compressed_heads if lp.ae else None
    out = [layernorm_cycles(cfg, n, d_model, name=f"layers.{i}.norm1", layer=i)]
    if encoder not in ENCODER_PLACEMENTS:
        raise ValueError(f"encoder must be one of {ENCODER_PLACEMENTS}, got {encoder!r}")
    mode = None
    if hc and with_ae and encoder != "unfused":
        if encoder == "fused":   # the faster of the stagings that fit (apart raises if none does)
            staging = best_staging(cfg, n, d_model, h, d, hc)
            mode = staging[0] if staging is not None else 0
        else:
            mode = fuse_encoder(cfg, 1, n, d_model, h, d, hc)
    if mode is not None:
        out.append(qkv_ae_cycles(cfg, n, d_model, h, d, hc, together=bool(mode), name=f"layers.{i}.qkv", layer=i))
    else:
        out.append(gemm_cycles(cfg, n, d_model, 3 * d_model, name=f"layers.{i}.qkv", layer=i))
        if hc and with_ae:
            out += [ae_mix_cycles(cfg, h, hc, n, d, name=f"layers.{i}.ae_{w}", layer=i) for w in "qk"]
    out.append(attention if attention is not None else
               attention_cycles(cfg, lp.plan, d, compressed_heads=hc, name=f"layers.{i}.attn", layer=i))
    out += [gemm_cycles(cfg, n, d_model, d_model, name=f"layers.{i}.proj", layer=i),
            add_cycles(cfg, n * d_model, name=f"layers.{i}.add1", layer=i),
            layernorm_cycles(cfg, n, d_model, name=f"layers.{i}.norm2", layer=i),
            gemm_cycles(cfg, n, d_model, mlp, name=f"layers.{i}.fc1", layer=i),
            lut_cycles(cfg, n * mlp, name=f"layers.{i}.gelu", layer=i),
            gemm_cycles(cfg, n, mlp, d_model, name=f"layers.{i}.fc2", layer=i),
            add_cycles(cfg, n * d_model, name=f"layers.{i}.add2", layer=i)]
    return out


def program_cycles(prog: Program, *, encoder: str = "auto") -> Report:
    """Cycles of one image through every kernel, in the accelerator's order. ``encoder``: where the AE
    encoder runs, as the host compiler picks (``"auto"``) or forced ``"fused"`` / ``"unfused"``."""
    rep = Report(prog.config)
    rep.kernels.extend(_embed_kernels(prog))
    for lp in prog.layers:
        rep.kernels.extend(_layer_kernels(prog, lp, encoder=encoder))
    rep.kernels.extend(_head_kernels(prog))
    return rep


#: Baselines that have no auto-encoder (their Q and K go to DRAM uncompressed).
_NO_AE = ("vitcod_no_ae", "dense", "sanger", "pruning_only", "reordering_only")


def model_baselines(prog: Program) -> Dict[str, Report]:
    """The whole model on ViTCoD and each attention baseline (``attention_baselines``), every other kernel
    unchanged. Side by side from one program, so ratios between them come from one run."""
    from vitaccel.sim.vitcod.api import attention_baselines

    out: Dict[str, Report] = {}
    for lp in prog.layers:
        hc = lp.ae[0].compressed_heads if lp.ae else None
        alts = attention_baselines(lp.plan, prog.head_dim, config=prog.config, compressed_heads=hc, layer=lp.index)
        for name, rep in alts.items():
            r = out.setdefault(name, Report(prog.config))
            if not r.kernels:
                r.kernels.extend(_embed_kernels(prog))
            r.kernels.extend(_layer_kernels(prog, lp, attention=rep, with_ae=name not in _NO_AE))
    for r in out.values():
        r.kernels.extend(_head_kernels(prog))
    return out


def model_with_attention(prog: Program, attention: Dict[int, Any], *, with_ae: bool = False) -> Report:
    """The whole model with each layer's attention kernel report given (``attention[layer]``: another engine's,
    e.g. Sanger's on its own predicted masks), every other kernel unchanged."""
    out = Report(prog.config)
    out.kernels.extend(_embed_kernels(prog))
    for lp in prog.layers:
        out.kernels.extend(_layer_kernels(prog, lp, attention=attention[lp.index], with_ae=with_ae))
    out.kernels.extend(_head_kernels(prog))
    return out


# -- bits --------------------------------------------------------------------------------------------------

def _gemm(kern: Kernels, x8: np.ndarray, lin: Linear) -> np.ndarray:
    lead = x8.shape[:-1]
    y = kern.gemm(x8.reshape(-1, x8.shape[-1]), lin.weight, lin.bias, lin.mult, lin.shift)
    return y.reshape(*lead, -1)


def _attention(kern: Kernels, prog: Program, lp: LayerProgram, h8: np.ndarray, trace) -> np.ndarray:
    """qkv GEMM, AE (if any), attention, output projection: LayerNorm1's int8 rows in, proj's out."""
    b, n, dm = h8.shape
    h, d = prog.heads, prog.head_dim
    qkv8 = _gemm(kern, h8, lp.linears["qkv"])                                  # (B, N, 3D)
    heads = qkv8.reshape(b, n, 3, h, d).transpose(2, 0, 3, 1, 4)                # (3, B, H, N, d)
    q, k, v = (np.ascontiguousarray(a.reshape(b * h, n, d)) for a in heads)
    if lp.ae is not None:
        def roundtrip(x8: np.ndarray, ae: AEParams) -> np.ndarray:
            # The AE mixes heads of one image: (B*H, N, d) -> per image (H, N*d) through the kernels.
            per = x8.reshape(b, h, n, d)
            out = np.empty_like(per)
            for j in range(b):
                enc = kern.mix_heads(per[j], ae.enc_weight, ae.enc_bias, ae.enc_mult, ae.enc_shift)
                out[j] = kern.mix_heads(enc, ae.dec_weight, ae.dec_bias, ae.dec_mult, ae.dec_shift)
            return out.reshape(b * h, n, d)
        q, k = roundtrip(q, lp.ae[0]), roundtrip(k, lp.ae[1])
    a8 = kern.attention(q, k, v, lp.plan, *lp.softmax, *lp.attn_out)           # (B*H, N, d)
    a8 = np.ascontiguousarray(a8.reshape(b, h, n, d).transpose(0, 2, 1, 3).reshape(b, n, dm))
    p8 = _gemm(kern, a8, lp.linears["proj"])
    if trace is not None:
        for key, val in (("qkv", qkv8), ("attn", a8), ("proj", p8)):
            trace[f"layers.{lp.index}.{key}"] = val
    return p8


def _norm(kern: Kernels, x16: np.ndarray, nm: Norm) -> np.ndarray:
    return kern.layernorm(x16, nm.g, nm.b, nm.shift, nm.eps)


def _block(kern: Kernels, prog: Program, lp: LayerProgram, x16: np.ndarray, trace) -> np.ndarray:
    p8 = _attention(kern, prog, lp, _norm(kern, x16, lp.norm1), trace)
    xm = kern.add(x16, lp.add1[0], p8, lp.add1[1], lp.add1[2], 16)
    f8 = _gemm(kern, _norm(kern, xm, lp.norm2), lp.linears["fc1"])
    g8 = kern.lut(f8, lp.gelu)
    o8 = _gemm(kern, g8, lp.linears["fc2"])
    out = kern.add(xm, lp.add2[0], o8, lp.add2[1], lp.add2[2], 16)
    if trace is not None:
        for key, val in (("res1", xm), ("fc1", f8), ("gelu", g8), ("fc2", o8), ("res2", out)):
            trace[f"layers.{lp.index}.{key}"] = val
    return out


def embed_int(kern: Kernels, prog: Program, rows8: np.ndarray) -> np.ndarray:
    """Patch rows (B, N-1, C P P) int8 -> the int16 residual stream x0 (B, N, D): the patch-embedding GEMM
    into rows 1.. of each image (row 0 stays 0), plus the CLS/position tokens."""
    b = rows8.shape[0]
    n, dm = prog.dims.num_tokens, prog.dims.embed_dim
    pe = np.zeros((b, n, dm), np.int8)
    pe[:, 1:] = _gemm(kern, rows8, prog.patch)
    tok = np.broadcast_to(prog.tokens, (b, n, dm))
    return kern.add(pe, prog.tokens_add[0], tok, prog.tokens_add[1], prog.tokens_add[2], 16)


def forward_int(prog: Program, rows8: np.ndarray, kernels: Optional[Kernels] = None,
                trace: Optional[Dict[str, np.ndarray]] = None) -> np.ndarray:
    """The integer model: int8 patch rows (B, N-1, C P P) -> int8 logits (B, num_classes).

    What one accelerator start computes for a batch (the host compiler's program); ``trace`` collects
    every kernel output."""
    kern = kernels or SimKernels()
    x16 = embed_int(kern, prog, np.asarray(rows8, np.int8))
    if trace is not None:
        trace["x0"] = x16
    for lp in prog.layers:
        x16 = _block(kern, prog, lp, x16, trace)
    c8 = _norm(kern, np.ascontiguousarray(x16[:, 0]), prog.norm)
    return _gemm(kern, c8, prog.head)


def prepare_input(prog: Program, images: np.ndarray) -> np.ndarray:
    """The host's part before the accelerator: shape check, int8 quantisation, patch rows."""
    dims = prog.dims
    imgs = np.asarray(images, dtype=np.float32)
    want = (dims.in_chans, dims.img_size, dims.img_size)
    if imgs.ndim != 4 or imgs.shape[1:] != want:
        raise ValueError(f"images must be (B, {want[0]}, {want[1]}, {want[2]}) float, got shape {imgs.shape}")
    return im.patch_rows(im.quantize_images(imgs, prog.input_scale), dims.patch_size)


def forward(prog: Program, images: np.ndarray, kernels: Optional[Kernels] = None,
            trace: Optional[Dict[str, np.ndarray]] = None) -> np.ndarray:
    """Float32 logits (B, num_classes) for float32 images (B, C, H, W): quantise, the integer model
    (``kernels``, default the simulator's functional models), dequantise."""
    rows8 = prepare_input(prog, images)
    if not len(rows8):
        return np.zeros((0, prog.dims.num_classes), np.float32)
    return im.dequantize_logits(forward_int(prog, rows8, kernels, trace), prog.head.out_scale)


def forward_batched(prog: Program, images: np.ndarray, batch_size: int, *,
                    run: Optional[Callable[[np.ndarray], np.ndarray]] = None,
                    progress: Optional[Callable[[Iterable[int]], Iterable[int]]] = None) -> np.ndarray:
    """:func:`forward` over ``images`` in batches of at most ``batch_size``: memory holds one batch's
    activations, whatever the number of images. ``run(rows8) -> int8 logits`` is the integer model of a
    batch (the host runtime's device; default :func:`forward_int` on the simulator's kernels);
    ``progress`` wraps the batch start indices (a progress bar)."""
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise ValueError(f"batch_size must be an integer >= 1, got {batch_size!r}")
    run = run or (lambda rows8: forward_int(prog, rows8))
    starts: Iterable[int] = range(0, len(images), int(batch_size))
    if progress is not None:
        starts = progress(starts)
    out: List[np.ndarray] = []
    for i in starts:
        rows8 = prepare_input(prog, images[i:i + batch_size])
        out.append(im.dequantize_logits(run(rows8), prog.head.out_scale))
    return np.concatenate(out) if out else np.zeros((0, prog.dims.num_classes), np.float32)


@dataclasses.dataclass
class ModelResult:
    logits: np.ndarray       # float32 (B, num_classes)
    report: Report           # cycles of one image (the same for every image: masks are fixed)
    program: Program

    @property
    def predictions(self) -> np.ndarray:
        return np.argmax(self.logits, axis=1)


def run_model(bundle, images, *, config: Optional[ConfigLike] = None, kernels: Optional[Kernels] = None,
              batch_size: int = 16, progress: bool = False) -> ModelResult:
    """Run a bundle over an image batch on the simulator: logits and the per-image cycle report."""
    prog = compile_program(bundle, config)
    wrap = None
    if progress:
        from tqdm import tqdm

        wrap = lambda starts: tqdm(list(starts), desc="images", unit="batch")  # noqa: E731
    out = forward_batched(prog, np.asarray(images, dtype=np.float32), batch_size,
                          run=lambda rows8: forward_int(prog, rows8, kernels), progress=wrap)
    return ModelResult(out, program_cycles(prog), prog)
