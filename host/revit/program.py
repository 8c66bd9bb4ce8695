"""The ReViT host compiler: a ``revit`` bundle becomes one DRAM window and the descriptor program of
``revit_top`` that runs it (hls/revit/DESCRIPTOR.md), one start per batch of images.

The window, laid out once per model:

* a **static region**, written once when the model is opened: the patch embedding, every layer's int8
  weights and int32 bias / multiplier / shift arrays (the qkv ones as the ATTN descriptor reads them), the
  integer LSH hash weights and biases, the LayerNorms' integer gamma/beta, the GELU tables, the CLS /
  position tokens, the head; the keep ratios, the hash multipliers and shifts and the softmax and output
  constants are descriptor words;
* an **activation region**: the batch's int8 patch rows and logits, and one image's buffers (images of a
  start run one after another and reuse them), sized for the most tokens a layer can see
  (:func:`vitaccel.sim.revit.model.max_tokens`);
* the **descriptor program** of ``batch`` images and, per image and pruning layer, the COMPACT's patch
  list. A start of ``b`` images runs the first ``b`` images' descriptors.

What is produced on chip per image, never by the host: the group indexes and member lists (ATTN's group
generation), the deltas (inside ATTN), the CLS and CLS-to-centroid probabilities, the keep decisions
(PRUNE), the surviving tokens and the package token (COMPACT). Because pruning makes the token count depend
on the image, every descriptor field that depends on it (GEMM ``M``, LayerNorm ``rows``, ADD / LUT ``n``,
ATTN ``N``, PRUNE ``n``, the next COMPACT's ``N``) after a COMPACT is in that COMPACT's patch list, as
``a * tokens + c``: ``revit_top`` writes them before it reaches them (it reads each descriptor from DRAM
when it runs it), so the descriptor words in the window change during a run and are rewritten by the next.

Per image: patch-embedding GEMM into rows 1.. (row 0, the CLS slot, stays 0), the token add into the int16
stream ``xa``; per layer: LayerNorm-1, ATTN (its qkv projection inside), proj GEMM, the residual add into
``xb``; at a pruning layer PRUNE and COMPACT (``xb`` -> ``xc``, the stream from then on); LayerNorm-2, fc1,
GELU table, fc2, the residual add back into ``xa``; then the final LayerNorm of the CLS row and the head.
The functional model of the same program is :func:`vitaccel.sim.revit.model.forward_int`.
"""
from __future__ import annotations

import dataclasses
from typing import Dict, List, Optional, Tuple

import numpy as np

from vitaccel.host.program_base import CompiledProgram, put_linear, put_norm
from vitaccel.hwconfig import ConfigLike, HardwareConfig
from vitaccel.sim.revit.compact import patched_words
from vitaccel.sim.revit.isa import COMBINE_CODES, ISA
from vitaccel.sim.revit.model import RevitProgram, compile_revit, max_tokens, prepare_image
from vitaccel.sim.revit.sched import WORKLOAD
from vitaccel.sim.report import Report, mean_report
from vitaccel.sim.revit.top import kernel_report, op_descriptor
from vitaccel.sim.window import Dram

__all__ = ["Start", "Regions", "RevitDeviceProgram", "compile_device_program", "MAX_BATCH"]

#: Largest batch a program is compiled for (its descriptors grow linearly with it).
MAX_BATCH = 64
DESC_BYTES = 4 * ISA.desc_words


@dataclasses.dataclass(frozen=True)
class Start:
    """One start of the accelerator: ``count`` descriptors at ``desc_off``; ``names`` label them, ``images``
    gives each image's descriptor range ``[lo, hi)`` (indexes into the start's descriptors)."""

    name: str
    desc_off: int
    count: int
    names: Tuple[str, ...]
    images: Tuple[Tuple[int, int], ...]


@dataclasses.dataclass(frozen=True)
class Regions:
    rows8: int      # int8 (b, N-1, C P P): the batch's patch rows, written by the host
    logits: int     # int8 (b, K), read by the host
    pe: int         # int8 (N, D): patch embedding (row 0 stays 0)
    xa: int         # int16 (T, D): the residual stream (layer input and output)
    xb: int         # int16 (T, D): after the attention add
    xc: int         # int16 (T + 1, D): after COMPACT
    h8: int         # int8 (T, D): LayerNorm-1 out
    a8: int         # int8 (T, D): attention out
    p8: int         # int8 (T, D): proj out
    m8: int         # int8 (T, D): LayerNorm-2 out
    f8: int         # int8 (T, mlp): fc1 out
    g8: int         # int8 (T, mlp): GELU out
    o8: int         # int8 (T, D): fc2 out
    groups: int     # int32 (T - 1,): group indexes
    cls_p: int      # uint8 (H, T): CLS row probabilities
    group_p: int    # uint8 (H, G): CLS-to-centroid probabilities
    keep: int       # uint8 (T - 1,)
    keep_g: int     # uint8 (G,)
    scores: int     # int32 (T - 1,)
    count: int      # int32: tokens after the last COMPACT
    c8: int         # int8 (D,): final LayerNorm of the CLS row


@dataclasses.dataclass
class RevitDeviceProgram(CompiledProgram):
    """A compiled ReViT model: the window's initial bytes, where things are, and what to start."""

    program: RevitProgram
    config: HardwareConfig
    batch: int
    image: np.ndarray
    static_bytes: int
    regions: Regions
    starts: Dict[int, Start]
    max_tokens: int

    #: The work (and so the cycles) depends on the image: group sizes, Booth digits, kept tokens.
    data_dependent = True

    def prepare_input(self, images: np.ndarray) -> np.ndarray:
        return prepare_image(self.program, images)

    def window_with(self, rows8: np.ndarray) -> np.ndarray:
        """A copy of the window with ``rows8`` (b, N-1, C P P) in place: what a start of b images reads."""
        w = self.image.copy()
        x = np.ascontiguousarray(rows8, np.int8).reshape(-1)
        w[self.regions.rows8:self.regions.rows8 + x.size] = x.view(np.uint8)
        return w

    def image_reports(self, b: int, reports: List[dict]) -> List[Report]:
        """Per image of a start of ``b``, its :class:`~vitaccel.sim.report.Report` from the NumPy top's
        per-descriptor reports of that start (each carries its descriptor ``index``)."""
        s = self.start(b)
        out = []
        for lo, hi in s.images:
            rep = Report(self.config)
            for r in reports:
                if lo <= r["index"] < hi:
                    name = s.names[r["index"]].split("[")[0]
                    layer = int(name.split(".")[1]) if name.startswith("layers.") else None
                    rep.kernels.append(kernel_report(r, name, layer))
            out.append(rep)
        return out

    def simulate(self, rows8: np.ndarray) -> List[Report]:
        """The cycle model of a start over ``rows8``: one report per image (runs the NumPy top on a copy of
        the window; the bits it computes are those of every backend)."""
        from vitaccel.sim.revit.top import run_top

        b = int(rows8.shape[0])
        s = self.start(b)
        res = run_top(self.window_with(rows8), s.desc_off, s.count, self.config, cycles=True)
        if res.status:
            raise RuntimeError(f"{s.name}: the compiled program fails on the simulator (status 0x{res.status:x}, "
                               f"{ISA.status_message(res.status)}); this is a bug in the host compiler")
        return self.image_reports(b, res.reports)

    def dense_baseline(self, images) -> Report:
        """Flat attention over every token (no groups, no deltas, no pruning) on the one large RBSP array, the
        rest of the model unchanged, on the same config: the mean over ``images`` (its cycles depend on the
        image's Booth digits)."""
        from vitaccel.sim.revit.bundle_cycles import image_report, no_pruning_program
        from vitaccel.sim.revit.model import forward_int

        full = no_pruning_program(self.program)
        reps = []
        for rows in self.prepare_input(images):
            tr: List[dict] = []
            forward_int(full, rows, tr)
            reps.append(image_report(full, tr, self.config, "dense"))
        return mean_report(reps)


class _Emitter:
    """Descriptors of one start, and the token-dependent words each COMPACT must patch."""

    def __init__(self):
        self.descs: List[np.ndarray] = []
        self.names: List[str] = []
        self.pending: List[Tuple[int, int, int, int]] = []   # (descriptor, word, a, c) after the open COMPACT
        self.compacts: List[Tuple[int, List[Tuple[int, int, int, int]]]] = []

    def emit(self, op: str, name: str, tok: Optional[Dict[str, Tuple[int, int]]] = None, **fields) -> None:
        """``tok``: fields that are ``a * tokens + c`` (their values in ``fields`` are those at the static count)."""
        i = len(self.descs)
        self.descs.append(op_descriptor(op, **fields))
        self.names.append(name)
        if tok and self.compacts:
            for k, (a, c) in tok.items():
                self.pending.append((i, ISA.words(op)[k], a, c))

    def open_compact(self) -> None:
        """The descriptor just emitted is a COMPACT: later token-dependent words are its to patch."""
        if self.compacts:
            self.compacts[-1][1].extend(self.pending)
        self.pending = []
        self.compacts.append((len(self.descs) - 1, []))

    def close(self) -> None:
        if self.compacts:
            self.compacts[-1][1].extend(self.pending)
        self.pending = []


def compile_device_program(bundle, config: Optional[ConfigLike] = None, *, batch: int = 1) -> RevitDeviceProgram:
    """Lay ``bundle`` out in one window and build the descriptor program for up to ``batch`` images."""
    if not 1 <= int(batch) <= MAX_BATCH:
        raise ValueError(f"batch must be in [1, {MAX_BATCH}], got {batch}")
    batch = int(batch)
    prog = compile_revit(bundle, config)
    cfg = prog.config
    if cfg.accelerator != "revit":
        raise ValueError(f"config {cfg.name!r} is for the {cfg.accelerator} accelerator; a ReViT bundle runs on a "
                         "revit config (revit-paper, revit-zcu104, revit-kv260, revit-pynq-z2)")
    dims = prog.dims
    n, dm, H, mlp, ncls = dims.num_tokens, dims.embed_dim, dims.num_heads, dims.mlp_dim, dims.num_classes
    G = prog.layers[0].attn.num_groups if prog.layers else 1
    T = max_tokens(prog)
    if T > cfg.max_tokens:
        raise ValueError(f"the model can see {T} tokens in a layer (N = {n} plus one package token per pruning "
                         f"layer), config {cfg.name!r} takes at most max_tokens = {cfg.max_tokens}")
    kpatch = prog.patch.weight.shape[1]
    dram = Dram(capacity=1 << 22)

    # -- static region ----------------------------------------------------------------------------------
    g_patch = put_linear(dram, prog.patch)
    g_tokens = dram.put(prog.tokens)
    g_norm = put_norm(dram, prog.norm)
    g_head = put_linear(dram, prog.head)
    static = []
    for lp in prog.layers:
        s: Dict[str, object] = {k: put_linear(dram, lp.linears[k]) for k in ("qkv", "proj", "fc1", "fc2")}
        s["norm1"], s["norm2"] = put_norm(dram, lp.norm1), put_norm(dram, lp.norm2)
        s["gelu"] = dram.put(np.asarray(lp.gelu, np.int8))
        s["hw"] = dram.put(np.ascontiguousarray(lp.attn.hash_weight, np.int8))
        s["hb"] = dram.put(np.asarray(lp.attn.hash_bias, np.int32))
        static.append(s)
    static_bytes = dram.used

    # -- activation region (one image's buffers, shared by the images of a start) ----------------------
    reg = Regions(rows8=dram.alloc(batch * (n - 1) * kpatch), logits=dram.alloc(batch * ncls), pe=dram.alloc(n * dm),
                  xa=dram.alloc(2 * T * dm), xb=dram.alloc(2 * T * dm), xc=dram.alloc(2 * (T + 1) * dm),
                  h8=dram.alloc(T * dm), a8=dram.alloc(T * dm), p8=dram.alloc(T * dm), m8=dram.alloc(T * dm),
                  f8=dram.alloc(T * mlp), g8=dram.alloc(T * mlp), o8=dram.alloc(T * dm), groups=dram.alloc(4 * T),
                  cls_p=dram.alloc(H * T), group_p=dram.alloc(H * G), keep=dram.alloc(T), keep_g=dram.alloc(G),
                  scores=dram.alloc(4 * T), count=dram.alloc(4), c8=dram.alloc(dm))

    # -- the program ------------------------------------------------------------------------------------
    e = _Emitter()
    bounds: List[Tuple[int, int]] = []
    patch_words: Dict[int, List[Tuple[int, int, int, int]]] = {}     # COMPACT index -> its patched words
    sync = cfg.sync_cols
    for j in range(batch):
        lo = len(e.descs)
        e.compacts, e.pending = [], []
        e.emit("GEMM", f"patch_embed[{j}]", M=n - 1, K=g_patch["K"], O=g_patch["O"],
               x=reg.rows8 + j * (n - 1) * kpatch, w=g_patch["w"], bias=g_patch["bias"], mult=g_patch["mult"],
               shift=g_patch["shift"], y=reg.pe + dm)
        ma, mb, sh = prog.tokens_add
        e.emit("ADD", f"tokens[{j}]", n=n * dm, a=reg.pe, a_bits=8, ma=ma, b=g_tokens, b_bits=16, mb=mb, shift=sh,
               y=reg.xa, y_bits=16)
        t = n                        # the token count at compile time (until the first COMPACT)
        stream = reg.xa
        for lp, s in zip(prog.layers, static):
            i, ap = lp.index, lp.attn
            tag = f"layers.{i}"
            n1, n2 = s["norm1"], s["norm2"]
            e.emit("LAYERNORM", f"{tag}.norm1", tok={"rows": (1, 0)}, rows=t, D=dm, x=reg.xa, g=n1["g"], b=n1["b"],
                   shift=n1["shift"], eps=n1["eps"], y=reg.h8)
            q = s["qkv"]
            e.emit("ATTN", f"{tag}.attn", tok={"N": (1, 0)}, N=t, D=dm, H=H, G=ap.num_groups, block=ap.block,
                   combine=COMBINE_CODES[ap.combine], mode=WORKLOAD, F=min(16, cfg.rmmu_cols), delta=1, sync=sync,
                   ooo=1, x=reg.h8, w=q["w"], b=q["bias"], m=q["mult"], s=q["shift"], hw=s["hw"], hb=s["hb"],
                   hm=ap.hash_mult, hs=ap.hash_shift, m_exp=ap.softmax[0], s_exp=ap.softmax[1], out_m=ap.out[0],
                   out_s=ap.out[1], y=reg.a8, groups=reg.groups, cls_p=reg.cls_p, group_p=reg.group_p)
            p = s["proj"]
            e.emit("GEMM", f"{tag}.proj", tok={"M": (1, 0)}, M=t, K=p["K"], O=p["O"], x=reg.a8, w=p["w"],
                   bias=p["bias"], mult=p["mult"], shift=p["shift"], y=reg.p8)
            e.emit("ADD", f"{tag}.add1", tok={"n": (dm, 0)}, n=t * dm, a=reg.xa, a_bits=16, ma=lp.add1[0], b=reg.p8,
                   b_bits=8, mb=lp.add1[1], shift=lp.add1[2], y=reg.xb, y_bits=16)
            stream = reg.xb
            if lp.prunes:
                e.emit("PRUNE", f"{tag}.prune", tok={"n": (1, -1)}, H=H, G=ap.num_groups, n=t - 1, q_groups=lp.keep[0],
                       q_patches=lp.keep[1], group_p=reg.group_p, cls_p=reg.cls_p, groups=reg.groups, keep=reg.keep,
                       keep_g=reg.keep_g, scores=reg.scores)
                e.emit("COMPACT", f"{tag}.compact", tok={"N": (1, 0)}, N=t, D=dm, x=reg.xb, keep=reg.keep,
                       scores=reg.scores, pm=prog.package[0], ps=prog.package[1], y=reg.xc, count=reg.count,
                       patch=0, npatch=0)
                e.open_compact()
                t += 1               # the static value of later fields (overwritten by the patch before use)
                stream = reg.xc
            f1, f2 = s["fc1"], s["fc2"]
            e.emit("LAYERNORM", f"{tag}.norm2", tok={"rows": (1, 0)}, rows=t, D=dm, x=stream, g=n2["g"], b=n2["b"],
                   shift=n2["shift"], eps=n2["eps"], y=reg.m8)
            e.emit("GEMM", f"{tag}.fc1", tok={"M": (1, 0)}, M=t, K=f1["K"], O=f1["O"], x=reg.m8, w=f1["w"],
                   bias=f1["bias"], mult=f1["mult"], shift=f1["shift"], y=reg.f8)
            e.emit("LUT", f"{tag}.gelu", tok={"n": (mlp, 0)}, n=t * mlp, x=reg.f8, table=s["gelu"], y=reg.g8)
            e.emit("GEMM", f"{tag}.fc2", tok={"M": (1, 0)}, M=t, K=f2["K"], O=f2["O"], x=reg.g8, w=f2["w"],
                   bias=f2["bias"], mult=f2["mult"], shift=f2["shift"], y=reg.o8)
            e.emit("ADD", f"{tag}.add2", tok={"n": (dm, 0)}, n=t * dm, a=stream, a_bits=16, ma=lp.add2[0], b=reg.o8,
                   b_bits=8, mb=lp.add2[1], shift=lp.add2[2], y=reg.xa, y_bits=16)
        e.emit("LAYERNORM", f"norm[{j}]", rows=1, D=dm, x=reg.xa, g=g_norm["g"], b=g_norm["b"], shift=g_norm["shift"],
               eps=g_norm["eps"], y=reg.c8)
        e.emit("GEMM", f"head[{j}]", M=1, K=g_head["K"], O=g_head["O"], x=reg.c8, w=g_head["w"], bias=g_head["bias"],
               mult=g_head["mult"], shift=g_head["shift"], y=reg.logits + j * ncls)
        e.close()
        # Each COMPACT's patch list, now that the descriptor indexes are known.
        prunes = [lp.prunes for lp in prog.layers]
        for (ci, words), layer in zip(e.compacts, [lp.index for lp in prog.layers if lp.prunes]):
            # The simulator's whole-bundle timing (sim/revit/bundle_cycles.py) counts the same words.
            assert len(words) == patched_words(prunes, layer), (layer, len(words))
            e.descs[ci][ISA.words("COMPACT")["npatch"]] = len(words)
            patch_words[ci] = words
        bounds.append((lo, len(e.descs)))
    # The patch lists and the program: the lists' addresses go into their COMPACTs, the program's address
    # into the lists' triples, so the program's place is reserved first.
    desc_off = dram.alloc(DESC_BYTES * len(e.descs))
    for ci, words in patch_words.items():
        tri = np.array([[desc_off + DESC_BYTES * k + 4 * w, a, c] for k, w, a, c in words], np.int32).reshape(-1, 3)
        e.descs[ci][ISA.words("COMPACT")["patch"]] = dram.put(tri) if len(tri) else 0
    dram.write(desc_off, np.concatenate([np.asarray(d, np.int32) for d in e.descs]))
    starts = {b: Start(f"model[batch {b}]", desc_off, bounds[b - 1][1], tuple(e.names[:bounds[b - 1][1]]),
                       tuple(bounds[:b])) for b in range(1, batch + 1)}
    image = dram.buffer.copy()
    return RevitDeviceProgram(prog, cfg, batch, image, static_bytes, reg, starts, T)
