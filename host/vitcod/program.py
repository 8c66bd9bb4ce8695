"""The host compiler: a deployment bundle becomes one DRAM window and the descriptor program that runs it.

Everything the accelerator reads lives in one window (hls/vitcod/DESCRIPTOR.md, "Memory model"), laid out
once per model:

* a **static region**, written once when a model is opened: the patch-embedding, every layer's and the
  head's int8 weights and int32 bias / multiplier / shift arrays, the int16 CLS/position tokens, the
  LayerNorms' integer gamma/beta, the GELU tables, the attention masks (reordered and bit-packed), order,
  CSC indexes and line splits, and the AE weights;
* an **activation region** sized for ``batch`` images;
* the **descriptor programs**, one per batch size ``1..batch`` (so a short last batch runs without
  padding).

**One start per batch** runs the whole model (KERNELS.md, "The integer model graph"): the host writes the
int8 patch rows of the batch (:func:`vitaccel.sim.vitcod.model.prepare_input`), starts the accelerator once
and reads the int8 logits back. The program, per image where a kernel works on one image:

* patch-embedding GEMM per image into rows 1.. of that image's block (row 0, the CLS slot, stays 0 from
  the window image), then the token add per image into the int16 residual stream ``xa``;
* per layer: LayerNorm1 (``xa`` -> int8), the qkv projection: with an AE, OP_QKV_AE (the encoders on the
  GEMM's output stage, only compressed Q/K reach DRAM) when :func:`~vitaccel.sim.vitcod.autoencoder.fuse_encoder`
  predicts it no slower for the batch, else the qkv GEMM and the AE encoder on Q and K of each image;
  attention per image, output projection, residual add into ``xb``, LayerNorm2, fc1, GELU table, fc2,
  residual add back into ``xa`` (two int16 buffers, so no kernel writes over what it reads);
* the final LayerNorm on each image's CLS row, and the head GEMM over the batch's CLS rows.

GEMMs and the row-wise kernels fold the batch into their rows (M = b * N). Bits do not depend on the batch
size: every kernel is row-independent, which ``tests/test_host_runtime.py`` checks against
:func:`vitaccel.sim.vitcod.model.forward_int`.
"""
from __future__ import annotations

import dataclasses
from typing import Dict, List, Optional, Tuple

import numpy as np

from vitaccel.hwconfig import ConfigLike, HardwareConfig
from vitaccel.sim.vitcod.descriptors import (Dram, add_descriptor, ae_descriptor, attention_descriptor, gemm_descriptor,
                                             layernorm_descriptor, lut_descriptor, pack_mask_bits, qkv_ae_descriptor)
from vitaccel.sim.vitcod.attention import line_split
from vitaccel.sim.vitcod.autoencoder import fuse_encoder
from vitaccel.host.program_base import CompiledProgram, put_linear, put_norm
from vitaccel.sim.report import Report
from vitaccel.sim.vitcod.model import LINEARS, Program, compile_program, model_baselines, prepare_input

__all__ = ["Start", "Regions", "DeviceProgram", "compile_device_program", "MAX_BATCH"]

#: Largest batch a program is compiled for: the descriptor list grows with the batch (3 b + 9 per layer
#: with an AE, b + 9 without; 3 b + 1 around the layers).
MAX_BATCH = 64


@dataclasses.dataclass(frozen=True)
class Start:
    """One start of the accelerator: ``count`` descriptors at ``desc_off``; ``names`` label them (reports)."""

    name: str
    desc_off: int
    count: int
    names: Tuple[str, ...]


@dataclasses.dataclass(frozen=True)
class Regions:
    """Byte offsets of the activation buffers (sized for the program's batch)."""

    rows8: int   # int8 (b, N-1, C P P): the quantised images' patch rows, written by the host
    pe: int      # int8 (b N, D): patch embedding (row 0 of each image stays 0)
    xa: int      # int16 (b N, D): residual stream (layer input and output)
    xb: int      # int16 (b N, D): residual stream after the attention add
    h8: int      # int8 (b N, D): LayerNorm1 out
    qkv: int     # int8 (b N, 3D)
    qc: int      # int8 (b, Hc, N, d): compressed Q (AE only)
    kc: int      # int8 (b, Hc, N, d)
    attn: int    # int8 (b N, D): attention output, concatenated heads
    proj: int    # int8 (b N, D)
    m8: int      # int8 (b N, D): LayerNorm2 out
    fc1: int     # int8 (b N, mlp)
    g8: int      # int8 (b N, mlp): GELU out
    fc2: int     # int8 (b N, D)
    c8: int      # int8 (b, D): final LayerNorm of the CLS rows
    logits: int  # int8 (b, K), read by the host


@dataclasses.dataclass
class DeviceProgram(CompiledProgram):
    """A compiled model: the window's initial bytes, where things are, and what to start."""

    program: Program                  # the unpacked bundle (kernel operands, plans)
    config: HardwareConfig
    batch: int
    image: np.ndarray                 # uint8: the whole window as the host writes it at open time
    static_bytes: int                 # [0, static_bytes) never changes after open
    regions: Regions
    starts: Dict[int, Start]          # batch size -> the one start that runs the model
    sparse_lines: List[np.ndarray]    # per layer, the line split written into the attention descriptors

    #: The cycles do not depend on the image (the masks are fixed): one prediction serves every image.
    data_dependent = False

    def prepare_input(self, images: np.ndarray) -> np.ndarray:
        """float32 images (b, C, H, W) -> the int8 patch rows the host writes (b, N-1, C P P)."""
        return prepare_input(self.program, images)

    def dense_baseline(self, images=None) -> Report:
        """The same model with dense attention on the same config (cycles do not depend on the images)."""
        return model_baselines(self.program)["dense"]


def _gemm(w: Dict[str, int], rows: int, x: int, y: int) -> np.ndarray:
    return gemm_descriptor(M=rows, K=w["K"], O=w["O"], x=x, w=w["w"], bias=w["bias"], mult=w["mult"],
                           shift=w["shift"], y=y)


def _ln(nm: Dict[str, int], rows: int, d: int, x: int, y: int) -> np.ndarray:
    return layernorm_descriptor(rows=rows, D=d, x=x, g=nm["g"], b=nm["b"], shift=nm["shift"], eps=nm["eps"], y=y)


def _residual_add(params: tuple, n: int, x16: int, y8: int, out16: int) -> np.ndarray:
    """int16 residual + a GEMM's int8 output -> int16 (the two scales brought to the output's)."""
    ma, mb, sh = params
    return add_descriptor(n=n, a=x16, a_bits=16, ma=ma, b=y8, b_bits=8, mb=mb, shift=sh, y=out16, y_bits=16)


def compile_device_program(bundle, config: Optional[ConfigLike] = None, *, batch: int = 1) -> DeviceProgram:
    """Lay ``bundle`` out in one window and build its descriptor programs for batches of 1..``batch`` images."""
    if not 1 <= int(batch) <= MAX_BATCH:
        raise ValueError(f"batch must be in [1, {MAX_BATCH}], got {batch}")
    batch = int(batch)
    prog = compile_program(bundle, config)
    cfg = prog.config
    dims = prog.dims
    n, dm, h, d, mlp = dims.num_tokens, dims.embed_dim, prog.heads, prog.head_dim, dims.mlp_dim
    kpatch, ncls = prog.patch.weight.shape[1], dims.num_classes
    dram = Dram(capacity=1 << 22)

    # -- static region ----------------------------------------------------------------------------------
    g_patch = put_linear(dram, prog.patch)
    g_tokens = dram.put(prog.tokens)
    g_norm = put_norm(dram, prog.norm)
    g_head = put_linear(dram, prog.head)
    static = []
    splits = []
    for lp in prog.layers:
        s: Dict[str, object] = {name: put_linear(dram, lp.linears[name]) for name in LINEARS}
        s["norm1"], s["norm2"] = put_norm(dram, lp.norm1), put_norm(dram, lp.norm2)
        s["gelu"] = dram.put(np.asarray(lp.gelu, np.int8))
        plan = lp.plan
        ls = line_split(cfg, plan, d)[1]
        splits.append(ls)
        s["plan"] = dict(mask=dram.put(pack_mask_bits(plan)), order=dram.put(plan.order.astype(np.int32)),
                         colptr=dram.put(plan.colptr.astype(np.int32)),
                         headptr=dram.put(plan.headptr.astype(np.int32)),
                         rowidx=dram.put(plan.rowidx.astype(np.int32) if plan.rowidx.size else np.zeros(1, np.int32)))
        if lp.ae is not None:
            s["ae"] = []
            for p in lp.ae:
                s["ae"].append(dict(enc_w=dram.put(np.ascontiguousarray(p.enc_weight, np.int8)),
                                    enc_b=dram.put(np.asarray(p.enc_bias, np.int32)),
                                    dec_w=dram.put(np.ascontiguousarray(p.dec_weight, np.int8)),
                                    dec_b=dram.put(np.asarray(p.dec_bias, np.int32))))
        static.append(s)
    static_bytes = dram.used

    # -- activation region ------------------------------------------------------------------------------
    hc = max((lp.ae[0].compressed_heads for lp in prog.layers if lp.ae is not None), default=0)
    rows = batch * n
    reg = Regions(rows8=dram.alloc(batch * (n - 1) * kpatch), pe=dram.alloc(rows * dm), xa=dram.alloc(2 * rows * dm),
                  xb=dram.alloc(2 * rows * dm), h8=dram.alloc(rows * dm), qkv=dram.alloc(rows * 3 * dm),
                  qc=dram.alloc(batch * hc * n * d), kc=dram.alloc(batch * hc * n * d), attn=dram.alloc(rows * dm),
                  proj=dram.alloc(rows * dm), m8=dram.alloc(rows * dm), fc1=dram.alloc(rows * mlp),
                  g8=dram.alloc(rows * mlp), fc2=dram.alloc(rows * dm), c8=dram.alloc(batch * dm),
                  logits=dram.alloc(batch * ncls))

    # -- descriptor programs ----------------------------------------------------------------------------
    starts: Dict[int, Start] = {}
    for b in range(1, batch + 1):
        descs: List[np.ndarray] = []
        names: List[str] = []

        def emit(desc: np.ndarray, name: str) -> None:
            descs.append(desc)
            names.append(name)

        for j in range(b):
            emit(_gemm(g_patch, n - 1, reg.rows8 + j * (n - 1) * kpatch, reg.pe + (j * n + 1) * dm),
                 f"patch_embed[{j}]")
        ma, mb, sh = prog.tokens_add
        for j in range(b):
            emit(add_descriptor(n=n * dm, a=reg.pe + j * n * dm, a_bits=8, ma=ma, b=g_tokens, b_bits=16, mb=mb,
                                shift=sh, y=reg.xa + 2 * j * n * dm, y_bits=16), f"tokens[{j}]")
        for lp, s, ls in zip(prog.layers, static, splits):
            i = lp.index
            emit(_ln(s["norm1"], b * n, dm, reg.xa, reg.h8), f"layers.{i}.norm1")
            lhc = lp.ae[0].compressed_heads if lp.ae is not None else 0
            mode = fuse_encoder(cfg, b, n, dm, h, d, lhc) if lhc else None
            fused = mode is not None
            if fused:
                q, k = lp.ae
                w, eq, ek = s["qkv"], s["ae"][0], s["ae"][1]
                emit(qkv_ae_descriptor(M=b * n, K=w["K"], H=h, d=d, Hc=lhc, N=n, x=reg.h8, w=w["w"], bias=w["bias"],
                                       mult=w["mult"], shift=w["shift"], y=reg.qkv, qc=reg.qc, kc=reg.kc,
                                       eq_w=eq["enc_w"], eq_b=eq["enc_b"], eq_m=q.enc_mult, eq_s=q.enc_shift,
                                       ek_w=ek["enc_w"], ek_b=ek["enc_b"], ek_m=k.enc_mult, ek_s=k.enc_shift,
                                       stage_qk=mode),
                     f"layers.{i}.qkv")
            else:
                emit(_gemm(s["qkv"], b * n, reg.h8, reg.qkv), f"layers.{i}.qkv")
            for j in range(b):
                img = reg.qkv + j * n * 3 * dm
                if lhc:
                    pairs = () if fused else ((lp.ae[0], img, reg.qc), (lp.ae[1], img + dm, reg.kc))
                    for which, (p, src, dst) in enumerate(pairs):
                        a = s["ae"][which]
                        emit(ae_descriptor(Hin=h, C=lhc, N=n, d=d, x=src, x_hs=d, x_ns=3 * dm, w=a["enc_w"],
                                           b=a["enc_b"], mult=p.enc_mult, shift=p.enc_shift,
                                           y=dst + j * lhc * n * d, y_hs=n * d, y_ns=d),
                             f"layers.{i}.ae_{'qk'[which]}[{j}]")
                    qk = dict(q=reg.qc + j * lhc * n * d, q_hs=n * d, q_ns=d, k=reg.kc + j * lhc * n * d, k_hs=n * d,
                              k_ns=d, Hc=lhc, dq_w=s["ae"][0]["dec_w"], dq_b=s["ae"][0]["dec_b"],
                              dq_m=lp.ae[0].dec_mult, dq_s=lp.ae[0].dec_shift, dk_w=s["ae"][1]["dec_w"],
                              dk_b=s["ae"][1]["dec_b"], dk_m=lp.ae[1].dec_mult, dk_s=lp.ae[1].dec_shift)
                else:
                    qk = dict(q=img, q_hs=d, q_ns=3 * dm, k=img + dm, k_hs=d, k_ns=3 * dm)
                emit(attention_descriptor(
                    H=h, N=n, d=d, n_global=lp.plan.n_global, v=img + 2 * dm, v_hs=d, v_ns=3 * dm,
                    o=reg.attn + j * n * dm, o_hs=d, o_ns=dm, m_exp=lp.softmax[0], s_exp=lp.softmax[1],
                    m_out=lp.attn_out[0], s_out=lp.attn_out[1], sparse_lines=ls, config=cfg, **s["plan"], **qk),
                    f"layers.{i}.attn[{j}]")
            emit(_gemm(s["proj"], b * n, reg.attn, reg.proj), f"layers.{i}.proj")
            emit(_residual_add(lp.add1, b * n * dm, reg.xa, reg.proj, reg.xb), f"layers.{i}.add1")
            emit(_ln(s["norm2"], b * n, dm, reg.xb, reg.m8), f"layers.{i}.norm2")
            emit(_gemm(s["fc1"], b * n, reg.m8, reg.fc1), f"layers.{i}.fc1")
            emit(lut_descriptor(n=b * n * mlp, x=reg.fc1, table=s["gelu"], y=reg.g8), f"layers.{i}.gelu")
            emit(_gemm(s["fc2"], b * n, reg.g8, reg.fc2), f"layers.{i}.fc2")
            emit(_residual_add(lp.add2, b * n * dm, reg.xb, reg.fc2, reg.xa), f"layers.{i}.add2")
        for j in range(b):
            emit(_ln(g_norm, 1, dm, reg.xa + 2 * j * n * dm, reg.c8 + j * dm), f"norm[{j}]")
        emit(_gemm(g_head, b, reg.c8, reg.logits), "head")
        starts[b] = Start(f"model[batch {b}]", dram.put(np.concatenate(descs)), len(descs), tuple(names))
    image = dram.buffer.copy()
    return DeviceProgram(prog, cfg, batch, image, static_bytes, reg, starts, splits)
