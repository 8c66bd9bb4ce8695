"""The host compiler: a deployment bundle becomes one DRAM window and the descriptor lists that run it.

Everything the accelerator reads lives in one window (hls/vitcod/DESCRIPTOR.md, "Memory model"), laid out
once per model:

* a **static region**, written once when a model is opened: every layer's int8 weights and int32
  bias / multiplier / shift arrays, the attention masks (reordered and bit-packed), order, CSC indexes and
  line splits, and the AE decoder weights;
* an **activation region** sized for ``batch`` images, shared by all layers (layers run one after another
  and the host reads each result before the next run overwrites it);
* the **descriptor lists**, one per accelerator start and per batch size ``1..batch`` (so a short last
  batch runs without padding).

Per layer the host starts the accelerator three times, because LayerNorm, GELU and the residual adds stay
on the CPU (KERNELS.md, "int8 model graph"):

* ``attn``: qkv GEMM, the AE encoder on Q and K of each image (with an AE), attention per image (reading
  Q, K in place from the qkv output, or the compressed tensors), output projection;
* ``fc1`` and ``fc2``: one GEMM each.

GEMMs fold the batch into their rows (M = b * N). Bits do not depend on the batch size: every kernel is
row-independent, which ``tests/test_host_runtime.py`` checks against :func:`vitaccel.sim.vitcod.model.forward`.
"""
from __future__ import annotations

import dataclasses
from typing import Dict, List, Optional, Tuple

import numpy as np

from vitaccel.hwconfig import ConfigLike, HardwareConfig
from vitaccel.sim.vitcod.descriptors import Dram, ae_descriptor, attention_descriptor, gemm_descriptor, pack_mask_bits
from vitaccel.sim.vitcod.attention import line_split
from vitaccel.sim.vitcod.model import LINEARS, Program, compile_program

__all__ = ["Start", "LayerRegions", "DeviceProgram", "compile_device_program", "MAX_BATCH"]

#: Largest batch a program is compiled for: the descriptor lists grow with the batch (about 3 b + 4 per layer).
MAX_BATCH = 64


@dataclasses.dataclass(frozen=True)
class Start:
    """One start of the accelerator: ``count`` descriptors at ``desc_off``; ``names`` label them (reports)."""

    name: str
    desc_off: int
    count: int
    names: Tuple[str, ...]


@dataclasses.dataclass(frozen=True)
class LayerRegions:
    """Byte offsets of the activation buffers (shared by every layer; sized for the program's batch)."""

    h8: int      # int8 (b N, D): quantize(LayerNorm1(x)), written by the host
    qkv: int     # int8 (b N, 3D)
    qc: int      # int8 (b, Hc, N, d): compressed Q (AE only)
    kc: int      # int8 (b, Hc, N, d)
    attn: int    # int8 (b N, D): attention output, concatenated heads
    proj: int    # int8 (b N, D), read by the host
    m8: int      # int8 (b N, D): quantize(LayerNorm2(x)), written by the host
    fc1: int     # int8 (b N, mlp), read by the host
    g8: int      # int8 (b N, mlp): quantize(GELU(fc1)), written by the host
    fc2: int     # int8 (b N, D), read by the host


@dataclasses.dataclass
class DeviceProgram:
    """A compiled model: the window's initial bytes, where things are, and what to start."""

    program: Program                  # the unpacked bundle (glue parameters, plans)
    config: HardwareConfig
    batch: int
    image: np.ndarray                 # uint8: the whole window as the host writes it at open time
    static_bytes: int                 # [0, static_bytes) never changes after open
    regions: LayerRegions
    starts: Dict[int, List[List[Start]]]   # batch size -> per layer [attn, fc1, fc2]
    sparse_lines: List[np.ndarray]    # per layer, the line split written into the attention descriptors

    @property
    def mem_bytes(self) -> int:
        return int(self.image.size)

    @property
    def hash32(self) -> int:
        return self.config.hash32

    def layer_starts(self, b: int) -> List[List[Start]]:
        if b not in self.starts:
            raise ValueError(f"batch of {b} images: this program was compiled for 1..{self.batch}")
        return self.starts[b]


def _put_linear(dram: Dram, lin: Dict[str, np.ndarray]) -> Dict[str, int]:
    o = lin["weight"].shape[0]
    per = lambda a: np.ascontiguousarray(np.broadcast_to(np.asarray(a, np.int32), (o,)))  # noqa: E731
    return {"w": dram.put(np.ascontiguousarray(lin["weight"], np.int8)), "bias": dram.put(per(lin["bias"])),
            "mult": dram.put(per(lin["mult"])), "shift": dram.put(per(lin["shift"])), "O": o,
            "K": lin["weight"].shape[1]}


def compile_device_program(bundle, config: Optional[ConfigLike] = None, *, batch: int = 1) -> DeviceProgram:
    """Lay ``bundle`` out in one window and build its descriptor lists for batches of 1..``batch`` images."""
    if not 1 <= int(batch) <= MAX_BATCH:
        raise ValueError(f"batch must be in [1, {MAX_BATCH}], got {batch}")
    batch = int(batch)
    prog = compile_program(bundle, config)
    cfg = prog.config
    dims = prog.dims
    n, dm, h, d, mlp = dims.num_tokens, dims.embed_dim, prog.heads, prog.head_dim, dims.mlp_dim
    dram = Dram(capacity=1 << 22)

    # -- static region: weights, masks, indexes, AE decoders ---------------------------------------------
    static = []
    splits = []
    for lp in prog.layers:
        s: Dict[str, object] = {name: _put_linear(dram, lp.linears[name]) for name in LINEARS}
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
    reg = LayerRegions(h8=dram.alloc(rows * dm), qkv=dram.alloc(rows * 3 * dm), qc=dram.alloc(batch * hc * n * d),
                       kc=dram.alloc(batch * hc * n * d), attn=dram.alloc(rows * dm), proj=dram.alloc(rows * dm),
                       m8=dram.alloc(rows * dm), fc1=dram.alloc(rows * mlp), g8=dram.alloc(rows * mlp),
                       fc2=dram.alloc(rows * dm))

    # -- descriptor lists -------------------------------------------------------------------------------
    starts: Dict[int, List[List[Start]]] = {}
    for b in range(1, batch + 1):
        per_layer = []
        for lp, s, ls in zip(prog.layers, static, splits):
            i = lp.index

            def gemm(name: str, x: int, y: int, _s=s, _b=b):
                w = _s[name]
                return gemm_descriptor(M=_b * n, K=w["K"], O=w["O"], x=x, w=w["w"], bias=w["bias"], mult=w["mult"],
                                       shift=w["shift"], y=y)

            descs, names = [gemm("qkv", reg.h8, reg.qkv)], [f"layers.{i}.qkv"]
            lhc = lp.ae[0].compressed_heads if lp.ae is not None else 0
            for j in range(b):
                img = reg.qkv + j * n * 3 * dm
                if lhc:
                    for which, (p, src, dst) in enumerate(((lp.ae[0], img, reg.qc), (lp.ae[1], img + dm, reg.kc))):
                        a = s["ae"][which]
                        descs.append(ae_descriptor(Hin=h, C=lhc, N=n, d=d, x=src, x_hs=d, x_ns=3 * dm, w=a["enc_w"],
                                                   b=a["enc_b"], mult=p.enc_mult, shift=p.enc_shift,
                                                   y=dst + j * lhc * n * d, y_hs=n * d, y_ns=d))
                        names.append(f"layers.{i}.ae_{'qk'[which]}[{j}]")
                    qk = dict(q=reg.qc + j * lhc * n * d, q_hs=n * d, q_ns=d, k=reg.kc + j * lhc * n * d, k_hs=n * d,
                              k_ns=d, Hc=lhc, dq_w=s["ae"][0]["dec_w"], dq_b=s["ae"][0]["dec_b"],
                              dq_m=lp.ae[0].dec_mult, dq_s=lp.ae[0].dec_shift, dk_w=s["ae"][1]["dec_w"],
                              dk_b=s["ae"][1]["dec_b"], dk_m=lp.ae[1].dec_mult, dk_s=lp.ae[1].dec_shift)
                else:
                    qk = dict(q=img, q_hs=d, q_ns=3 * dm, k=img + dm, k_hs=d, k_ns=3 * dm)
                descs.append(attention_descriptor(
                    H=h, N=n, d=d, n_global=lp.plan.n_global, v=img + 2 * dm, v_hs=d, v_ns=3 * dm,
                    o=reg.attn + j * n * dm, o_hs=d, o_ns=dm, m_exp=lp.softmax[0], s_exp=lp.softmax[1],
                    m_out=lp.attn_out[0], s_out=lp.attn_out[1], sparse_lines=ls, config=cfg, **s["plan"], **qk))
                names.append(f"layers.{i}.attn[{j}]")
            descs.append(gemm("proj", reg.attn, reg.proj))
            names.append(f"layers.{i}.proj")
            runs = [(f"layers.{i}.attn", descs, names),
                    (f"layers.{i}.fc1", [gemm("fc1", reg.m8, reg.fc1)], [f"layers.{i}.fc1"]),
                    (f"layers.{i}.fc2", [gemm("fc2", reg.g8, reg.fc2)], [f"layers.{i}.fc2"])]
            per_layer.append([Start(name, dram.put(np.concatenate(ds)), len(ds), tuple(nm)) for name, ds, nm in runs])
        starts[b] = per_layer
    image = dram.buffer.copy()
    return DeviceProgram(prog, cfg, batch, image, static_bytes, reg, starts, splits)
