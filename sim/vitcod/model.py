"""A whole model on the simulator: a bundle and an image batch in, logits and a cycle report out.

The bundle is first turned into a :class:`Program` (per-layer kernel arguments and fixed sparsity
plans, computed once), then run image batch by image batch: float glue on the host (``glue.py``) and the
int8 kernels through a :class:`Kernels` object. :class:`SimKernels` is the NumPy implementation; a
C-simulation or a board backend provides the same four methods, which is how every backend runs the same
program and returns the same bits. Cycles do not depend on the image (the masks are fixed), so the report
is computed once per program.

The bundle is taken duck-typed (``.model``, ``.depth``, ``.layer(i)``, ``.globals()``, ``.has(group)``), so
this module does not import the host package; ``vitaccel.host.bundle.Bundle`` is what callers pass.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Any, Callable, Dict, Iterable, List, Optional

import numpy as np

from vitaccel.hwconfig import ConfigLike, HardwareConfig, load_config
from vitaccel.sim import glue
from vitaccel.sim import numerics as nx
from vitaccel.sim.vitcod.attention import AEParams, SparsePlan, attention_cycles
from vitaccel.sim.vitcod.autoencoder import ae_mix_cycles, mix_heads
from vitaccel.sim.common.gemm import gemm, gemm_cycles
from vitaccel.sim.quant import dequantize, quantize
from vitaccel.sim.report import Report

__all__ = ["Kernels", "SimKernels", "Segments", "KernelSegments", "LayerProgram", "Program", "ModelResult", "compile_program", "run_model"]

LINEARS = ("qkv", "proj", "fc1", "fc2")


class Kernels:
    """What a backend must run: the int8 kernels of KERNELS.md. Every method returns int8."""

    name = "abstract"

    def gemm(self, x, w, bias, mult, shift) -> np.ndarray:
        raise NotImplementedError

    def mix_heads(self, x, weight, bias, mult, shift) -> np.ndarray:
        raise NotImplementedError

    def attention(self, q, k, v, plan: SparsePlan, m_exp: int, s_exp: int, m_out: int, s_out: int) -> np.ndarray:
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


@dataclasses.dataclass
class LayerProgram:
    index: int
    linears: Dict[str, Dict[str, np.ndarray]]   # name -> weight, bias, mult, shift, in_scale, out_scale
    norm1: tuple
    norm2: tuple
    plan: SparsePlan
    softmax: tuple                               # (m_exp, s_exp)
    attn_out: tuple                              # (m_out, s_out)
    ae: Optional[tuple]                          # (AEParams for q, AEParams for k) or None


@dataclasses.dataclass
class Program:
    """Everything the kernels and the glue need, unpacked from a bundle once."""

    dims: Any
    globals: Dict[str, np.ndarray]
    layers: List[LayerProgram]
    config: HardwareConfig

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


def compile_program(bundle, config: Optional[ConfigLike] = None) -> Program:
    """Unpack a (validated) bundle into per-layer kernel arguments and sparsity plans."""
    # ``config`` comes from the caller (a name, a path, a config); the bundle's own config is resolved as a
    # shipped NAME only (Bundle.hardware_config), never opened as a path.
    cfg = load_config(config) if config is not None else bundle.hardware_config()
    if bundle.method == "revit":
        raise NotImplementedError("ReViT bundles need the ReViT kernels (LSH groups, differential attention), "
                                  "which the simulator does not have yet")
    dims = bundle.model
    n, h = dims.num_tokens, dims.num_heads
    sparse = bundle.has("attn_sparse")
    with_ae = bundle.has("ae")
    layers = []
    for i in range(bundle.depth):
        t = bundle.layer(i)
        lin = {name: {k: t[f"{name}.{k}"] for k in ("weight", "bias", "mult", "shift", "in_scale", "out_scale")}
               for name in LINEARS}
        if sparse:
            plan = SparsePlan.from_mask(np.asarray(t["attn.mask"]), np.asarray(t["attn.order"]),
                                        np.asarray(t["attn.n_global"]))
        else:  # dense attention: every column on the denser engine
            plan = SparsePlan.from_mask(np.ones((h, n, n), dtype=bool), np.tile(np.arange(n, dtype=np.int32), (h, 1)),
                                        np.full(h, n, dtype=np.int32))
        layers.append(LayerProgram(
            i, lin, (t["norm1.weight"], t["norm1.bias"]), (t["norm2.weight"], t["norm2.bias"]), plan,
            (int(t["attn.softmax_mult"]), int(t["attn.softmax_shift"])),
            (int(t["attn.out_mult"]), int(t["attn.out_shift"])),
            (_ae_params(t, "q"), _ae_params(t, "k")) if with_ae else None))
    return Program(dims, bundle.globals(), layers, cfg)


def _layer_kernels(prog: Program, lp: LayerProgram, attention=None, with_ae: bool = True) -> List:
    """One layer's kernel reports in the order the accelerator runs them for one image (the host's
    descriptor program, ``vitaccel.host.vitcod.program``): qkv, the AE encoder on Q and on K, attention, proj,
    fc1, fc2. ``attention`` replaces the attention report (baselines); ``with_ae=False`` drops the encoder."""
    cfg, dims = prog.config, prog.dims
    n, d_model, h, d = dims.num_tokens, dims.embed_dim, dims.num_heads, prog.head_dim
    i = lp.index
    hc = lp.ae[0].compressed_heads if lp.ae else None
    out = [gemm_cycles(cfg, n, d_model, 3 * d_model, name=f"layers.{i}.qkv", layer=i)]
    if hc and with_ae:
        out += [ae_mix_cycles(cfg, h, hc, n, d, name=f"layers.{i}.ae_{w}", layer=i) for w in "qk"]
    out.append(attention if attention is not None else
               attention_cycles(cfg, lp.plan, d, compressed_heads=hc, name=f"layers.{i}.attn", layer=i))
    out += [gemm_cycles(cfg, n, d_model, d_model, name=f"layers.{i}.proj", layer=i),
            gemm_cycles(cfg, n, d_model, dims.mlp_dim, name=f"layers.{i}.fc1", layer=i),
            gemm_cycles(cfg, n, dims.mlp_dim, d_model, name=f"layers.{i}.fc2", layer=i)]
    return out


def program_cycles(prog: Program) -> Report:
    """Cycles of one image through every kernel, layer by layer, in the accelerator's order."""
    rep = Report(prog.config)
    for lp in prog.layers:
        rep.kernels.extend(_layer_kernels(prog, lp))
    return rep


#: Baselines that have no auto-encoder (their Q and K go to DRAM uncompressed).
_NO_AE = ("vitcod_no_ae", "dense", "sanger", "pruning_only", "reordering_only")


def model_baselines(prog: Program) -> Dict[str, Report]:
    """The whole model on ViTCoD and each attention baseline (``attention_baselines``), GEMMs unchanged.

    Side by side from one program, so ratios between them come from one run.
    """
    from vitaccel.sim.vitcod.api import attention_baselines

    out: Dict[str, Report] = {}
    for lp in prog.layers:
        hc = lp.ae[0].compressed_heads if lp.ae else None
        alts = attention_baselines(lp.plan, prog.head_dim, config=prog.config, compressed_heads=hc, layer=lp.index)
        for name, rep in alts.items():
            r = out.setdefault(name, Report(prog.config))
            r.kernels.extend(_layer_kernels(prog, lp, attention=rep, with_ae=name not in _NO_AE))
    return out


def _linear(kern: Kernels, x8: np.ndarray, lin: Dict[str, np.ndarray]) -> np.ndarray:
    b, n, k = x8.shape
    y = kern.gemm(x8.reshape(b * n, k), lin["weight"], lin["bias"], lin["mult"], lin["shift"])
    return y.reshape(b, n, -1)


class Segments:
    """What runs on the accelerator between two host glue steps of a block (KERNELS.md, "int8 model graph").

    A backend implements these three; :func:`forward` does everything else, so the glue is one
    implementation whichever backend runs the kernels. Inputs and outputs are int8 ``(B, N, features)``.
    """

    def attention_block(self, lp: LayerProgram, h8: np.ndarray) -> np.ndarray:
        """qkv GEMM, AE (if any), attention, output projection: quantize(LN1(x)) in, proj out."""
        raise NotImplementedError

    def fc1(self, lp: LayerProgram, m8: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def fc2(self, lp: LayerProgram, g8: np.ndarray) -> np.ndarray:
        raise NotImplementedError


class KernelSegments(Segments):
    """The segments from :class:`Kernels` calls (the simulator's functional models, or C-simulation)."""

    def __init__(self, kern: Kernels, prog: "Program", trace: Optional[Dict[str, np.ndarray]] = None):
        self.kern, self.prog, self.trace = kern, prog, trace

    def attention_block(self, lp: LayerProgram, h8: np.ndarray) -> np.ndarray:
        kern = self.kern
        b, n, dm = h8.shape
        h, d = self.prog.heads, self.prog.head_dim
        L = lp.linears
        qkv8 = _linear(kern, h8, L["qkv"])                                    # (B, N, 3D)
        heads = qkv8.reshape(b, n, 3, h, d).transpose(2, 0, 3, 1, 4)            # (3, B, H, N, d)
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
        a8 = kern.attention(q, k, v, lp.plan, *lp.softmax, *lp.attn_out)       # (B*H, N, d)
        a8 = np.ascontiguousarray(a8.reshape(b, h, n, d).transpose(0, 2, 1, 3).reshape(b, n, dm))
        p8 = _linear(kern, a8, L["proj"])
        if self.trace is not None:
            for key, val in (("qkv", qkv8), ("attn", a8), ("proj", p8)):
                self.trace[f"layers.{lp.index}.{key}"] = val
        return p8

    def fc1(self, lp: LayerProgram, m8: np.ndarray) -> np.ndarray:
        f8 = _linear(self.kern, m8, lp.linears["fc1"])
        if self.trace is not None:
            self.trace[f"layers.{lp.index}.fc1"] = f8
        return f8

    def fc2(self, lp: LayerProgram, g8: np.ndarray) -> np.ndarray:
        o8 = _linear(self.kern, g8, lp.linears["fc2"])
        if self.trace is not None:
            self.trace[f"layers.{lp.index}.fc2"] = o8
        return o8


def _block(seg: Segments, lp: LayerProgram, x: np.ndarray) -> np.ndarray:
    L = lp.linears
    p8 = seg.attention_block(lp, quantize(glue.layer_norm(x, *lp.norm1), float(L["qkv"]["in_scale"])))
    x = x + dequantize(p8, float(L["proj"]["out_scale"]))
    f8 = seg.fc1(lp, quantize(glue.layer_norm(x, *lp.norm2), float(L["fc1"]["in_scale"])))
    g8 = quantize(glue.gelu(dequantize(f8, float(L["fc1"]["out_scale"]))), float(L["fc2"]["in_scale"]))
    o8 = seg.fc2(lp, g8)
    return x + dequantize(o8, float(L["fc2"]["out_scale"]))


def forward(prog: Program, images: np.ndarray, kernels: Optional[Kernels] = None,
            trace: Optional[Dict[str, np.ndarray]] = None, *, segments: Optional[Segments] = None) -> np.ndarray:
    """Logits (B, num_classes) for float32 images (B, C, H, W).

    The int8 work runs through ``segments`` (the host runtime passes its device's), else through
    ``kernels`` (default: the simulator's functional models); ``trace`` then collects every kernel output.
    """
    if segments is not None and (kernels is not None or trace is not None):
        raise ValueError("give segments, or kernels / trace, not both")
    seg = segments or KernelSegments(kernels or SimKernels(), prog, trace)
    g = prog.globals
    dims = prog.dims
    imgs = np.asarray(images, dtype=np.float32)
    want = (dims.in_chans, dims.img_size, dims.img_size)
    if imgs.ndim != 4 or imgs.shape[1:] != want:
        raise ValueError(f"images must be (B, {want[0]}, {want[1]}, {want[2]}) float, got shape {imgs.shape}")
    x = glue.add_tokens(glue.patch_embed(imgs, g["patch_embed.weight"], g["patch_embed.bias"]),
                        g["cls_token"], g["pos_embed"])
    for lp in prog.layers:
        x = _block(seg, lp, x)
    cls = glue.layer_norm(x[:, 0], g["norm.weight"], g["norm.bias"])
    return np.stack([glue.linear(row[None], g["head.weight"], g["head.bias"])[0] for row in cls]) if len(cls) else \
        np.zeros((0, dims.num_classes), np.float32)


def forward_batched(prog: Program, images: np.ndarray, batch_size: int, *,
                    segments: Optional[Callable[[int], Segments]] = None,
                    progress: Optional[Callable[[Iterable[int]], Iterable[int]]] = None) -> np.ndarray:
    """:func:`forward` over ``images`` in batches of at most ``batch_size``: memory holds one batch's
    activations, whatever the number of images. ``segments(n)`` gives the segments of a batch of ``n``
    (the host runtime's device); ``progress`` wraps the batch start indices (a progress bar)."""
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise ValueError(f"batch_size must be an integer >= 1, got {batch_size!r}")
    starts: Iterable[int] = range(0, len(images), int(batch_size))
    if progress is not None:
        starts = progress(starts)
    out: List[np.ndarray] = []
    for i in starts:
        batch = images[i:i + batch_size]
        out.append(forward(prog, batch, segments=None if segments is None else segments(len(batch))))
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
    imgs = np.asarray(images, dtype=np.float32)
    chunks: Iterable[int] = range(0, len(imgs), batch_size)
    if progress:
        from tqdm import tqdm

        chunks = tqdm(list(chunks), desc="images", unit="batch")
    logits = [forward(prog, imgs[i:i + batch_size], kernels) for i in chunks]
    out = np.concatenate(logits) if logits else np.zeros((0, prog.dims.num_classes), np.float32)
    return ModelResult(out, program_cycles(prog), prog)
