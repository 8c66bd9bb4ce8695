"""A whole ReViT bundle's cycles per image, and its baselines in the same model on the same images and config.

Per image (the work depends on the image: group sizes, Booth digits, kept patches), in ``revit_top``'s
order: the patch embedding and the token add, then per layer LayerNorm-1, the attention layer on the engines
(:func:`~vitaccel.sim.revit.layer.engine_layer`: group generation, Q/K/V projection, attention; its qkv GEMM
is inside it), proj, the residual add, at pruning layers the pruners
(:func:`~vitaccel.sim.revit.pruner.prune_layer` on the layer's CLS and group rows) and the token compaction
(:func:`~vitaccel.sim.revit.compact.compact_cycles`), LayerNorm-2, fc1, GELU,
fc2, the residual add, then the final LayerNorm and the head. The common kernels are sim/common's cycle
models on the config's array (the RMMU as a Pn x Pc int8 MAC array, as ``revit_top`` runs them), at the
image's token count after pruning (``1 + kept patches + 1`` package token). Their reports include the
exposed DRAM transfers of the common model; ``revit_top``'s own counters are their ``compute`` part.
The attention layers', the pruners' and the compactions' transfers are :mod:`vitaccel.sim.revit.dram`'s
(bytes and exposed cycles: loads before, stores after, as the common LayerNorm's).

The tokens are those of the integer reference (:func:`~vitaccel.sim.revit.model.forward_image`'s trace).
Baselines (``BASELINES``), every other kernel unchanged:

* ``no_reconfig``: one large array for every group (rSched ``ONE_ARRAY``);
* ``no_differential``: raw operands on an int8 MAC array of the same Pn x Pc (``array="int8"``);
* ``in_order``: the scheduler waits for every group before the inter-group work;
* ``no_pruning``: the same layers with both keep ratios at 1, i.e. the reference run again with no tokens
  dropped (the bundle's logits and later layers' bits differ: a timing variant, the bundle's bits are those of
  ``revit``);
* ``dense``: flat attention over all tokens (no pruning, no groups, no deltas) on the one large RBSP array:
  the raw projection, per head ``Q K^T``, the softmax unit over whole rows and ``P V`` (timing only: flat
  attention is another function, its bits are not the bundle's).

The variants that keep the bundle's tokens (``no_reconfig``, ``no_differential``, ``in_order``) leave the
bits unchanged (engine_layer's bits do not depend on mode, array or order). NumPy only.
"""
from __future__ import annotations

import dataclasses
from typing import Dict, List, Optional

import numpy as np

from vitaccel.hwconfig import ConfigLike, load_config
from vitaccel.sim import numerics as nx
from vitaccel.sim.common.eltwise import add_cycles, lut_cycles
from vitaccel.sim.common.gemm import gemm_cycles
from vitaccel.sim.common.layernorm import layernorm_cycles
from vitaccel.sim.report import KernelReport, Report
from vitaccel.sim.revit.attention import Q16
from vitaccel.sim.revit.compact import compact_cycles, patched_words
from vitaccel.sim.revit.dram import attn_data_cycles, attn_dram_bytes, compact_dram, flat_attention_dram, prune_dram
from vitaccel.sim.revit.dsoftmax import dsoftmax
from vitaccel.sim.revit.layer import engine_layer, head_overlap
from vitaccel.sim.revit.pruner import prune_layer
from vitaccel.sim.revit.rmmu import rbsp_pass, wrap32
from vitaccel.sim.revit.sched import ONE_ARRAY
from vitaccel.sim.schedule import PIPE_RQ

__all__ = ["attn_dram_bytes", "BASELINES", "ENGINE_VARIANTS", "no_pruning_program", "flat_attention", "attention_macs",
           "image_report", "bundle_reports", "summarise", "format_summary"]

#: engine_layer's keyword arguments per variant that keeps the bundle's tokens.
ENGINE_VARIANTS = {"revit": {}, "no_reconfig": dict(mode=ONE_ARRAY),
                   "no_differential": dict(delta=False, array="int8"), "in_order": dict(out_of_order=False)}
BASELINES = ("no_reconfig", "no_differential", "no_pruning", "in_order", "dense")


def no_pruning_program(prog):
    """``prog`` with every layer's keep ratios at 1 (Q16): no token is dropped (another function: timing only)."""
    return dataclasses.replace(prog, layers=[dataclasses.replace(lp, keep=(Q16, Q16)) for lp in prog.layers])


def attention_macs(counts: np.ndarray, n: int, dm: int, heads: int, combine: str, delta: bool = True) -> int:
    """MACs of one ReViT attention layer's passes (as engine_layer times them): per non-empty group of l
    tokens its projection ``(l + 1) D 3D`` (the centroid row), per head scores and output over
    ``delta + l + e`` keys (``e`` other groups' centroids when ``joint``); CLS's projection, its row over all
    ``n`` tokens and its row over the centroids."""
    d = dm // heads
    ne = [int(c) for c in counts if c > 0]
    e = len(ne) - 1 if combine == "joint" else 0
    m = sum((l + 1) * dm * 3 * dm + heads * 2 * l * (int(delta) + l + e) * d for l in ne)
    if combine == "sum":       # attention among the centroids: scores and output
        m += heads * 2 * len(ne) * len(ne) * d
    return m + dm * 3 * dm + heads * (2 * n * d + len(ne) * d)


def flat_attention(h8: np.ndarray, lp, config: ConfigLike, *, name: str = "attn",
                   layer: Optional[int] = None) -> KernelReport:
    """Flat (dense) attention of one layer over every token of ``h8`` (N, D) on the whole RBSP array: raw
    projection, its requantisers, per head ``K``-serial scores, the softmax unit on whole rows and the
    ``V``-serial output, the output requantisers. Cycles from the same engine models as ReViT's passes;
    the heads overlapped on the array and the SIMD unit as ReViT's groups are (``head_overlap``); the bits
    are flat attention's, not the bundle's (timing only)."""
    cfg = load_config(config)
    pn, pc, sync = cfg.rmmu_cols, cfg.rmmu_lanes, cfg.sync_cols
    h8 = np.asarray(h8)
    n, dm = h8.shape
    H = lp.heads
    d = dm // H
    y, cp = rbsp_pass(h8.astype(np.int64), np.asarray(lp.qkv_weight), pn, pc, sync)       # (3D, N)
    qkv = nx.requantize(wrap32(y.T.astype(np.int64) + np.asarray(lp.qkv_bias, np.int64)), lp.qkv_mult, lp.qkv_shift)
    q, k, v = np.ascontiguousarray(qkv.reshape(n, 3, H, d).transpose(1, 2, 0, 3))
    m_exp, s_exp = lp.softmax
    eng = dict(projection=cp.cycles, requant=-(-n * 3 * dm // pn) + PIPE_RQ, scores=0, softmax=0, output=0)
    hs, hm, ho = [], [], []
    for h in range(H):
        s, cs = rbsp_pass(k[h].astype(np.int64), q[h], pn, pc, sync)                       # (N queries, N keys)
        p, cyc_sm = dsoftmax(s, None, m_exp, s_exp, lp.block, cfg.simd_lanes)
        _, co = rbsp_pass(v[h].T.astype(np.int64), p, pn, pc, sync)                       # (N, d)
        eng["scores"] += cs.cycles
        eng["softmax"] += cyc_sm["time"]
        eng["output"] += co.cycles
        hs.append(cs.cycles)
        hm.append(cyc_sm["time"])
        ho.append(co.cycles)
    eng["requant"] += -(-n * dm // pn) + PIPE_RQ
    macs = n * dm * 3 * dm + H * 2 * n * n * d
    # The heads overlapped on the array and the SIMD unit, as ReViT's groups are (layer.head_overlap).
    total = eng["projection"] + eng["requant"] + head_overlap(hs, hm, ho)
    nbytes, data = flat_attention_dram(cfg, n, dm)
    return KernelReport("attention", name, layer, total, 0, data, macs, macs, nbytes, engines=eng,
                        notes=["flat attention (dense baseline): timing only, its bits are not the bundle's"])


def _attn_bytes(n: int, dm: int, lp) -> int:
    return attn_dram_bytes(n, dm, lp.heads, lp.num_groups)


def _common(cfg, prog, n: int, i: int, which: str) -> List[KernelReport]:
    dm, mlp = prog.dims.embed_dim, prog.dims.mlp_dim
    if which == "pre":
        return [layernorm_cycles(cfg, n, dm, name=f"layers.{i}.norm1", layer=i)]
    if which == "mid":
        return [gemm_cycles(cfg, n, dm, dm, name=f"layers.{i}.proj", layer=i),
                add_cycles(cfg, n * dm, name=f"layers.{i}.add1", layer=i)]
    return [layernorm_cycles(cfg, n, dm, name=f"layers.{i}.norm2", layer=i),
            gemm_cycles(cfg, n, dm, mlp, name=f"layers.{i}.fc1", layer=i),
            lut_cycles(cfg, n * mlp, name=f"layers.{i}.gelu", layer=i),
            gemm_cycles(cfg, n, mlp, dm, name=f"layers.{i}.fc2", layer=i),
            add_cycles(cfg, n * dm, name=f"layers.{i}.add2", layer=i)]


def image_report(prog, trace: List[dict], config: ConfigLike, variant: str = "revit") -> Report:
    """One image's report from its trace (``forward_image``'s per-layer records). ``variant``: a key of
    ``ENGINE_VARIANTS`` (the trace is the bundle's), or ``"dense"`` (the trace must be a no-pruning run's:
    flat attention replaces the engines). ``no_pruning`` is ``"revit"`` on a no-pruning trace."""
    cfg = load_config(config)
    dims = prog.dims
    if len(trace) != len(prog.layers):
        raise ValueError(f"trace has {len(trace)} layers, the program {len(prog.layers)}")
    rep = Report(cfg)
    n0 = trace[0]["h8"].shape[0]
    k_patch = int(prog.patch.weight.shape[1])
    rep.kernels += [gemm_cycles(cfg, n0 - 1, k_patch, dims.embed_dim, name="patch_embed"),
                    add_cycles(cfg, n0 * dims.embed_dim, a_bytes=1, b_bytes=2, out_bits=16, name="tokens")]
    for lp, rec in zip(prog.layers, trace):
        i, h8 = lp.index, rec["h8"]
        n, dm = h8.shape
        rep.kernels += _common(cfg, prog, n, i, "pre")
        if variant == "dense":
            rep.kernels.append(flat_attention(h8, lp.attn, cfg, name=f"layers.{i}.attn", layer=i))
            cyc = None
        else:
            kw = ENGINE_VARIANTS[variant]
            _, cyc = engine_layer(h8, lp.attn, cfg, **kw)
            macs = attention_macs(rec["counts"], n, dm, lp.attn.heads, lp.attn.combine, kw.get("delta", True))
            rep.kernels.append(KernelReport("attention", f"layers.{i}.attn", i, cyc.total, 0,
                                            attn_data_cycles(cfg, n, dm, lp.attn.heads, lp.attn.num_groups), macs, macs,
                                            _attn_bytes(n, dm, lp.attn), engines=cyc.engines))
        rep.kernels += _common(cfg, prog, n, i, "mid")
        n_after = n
        if lp.prunes and cyc is not None:
            r = prune_layer(cyc.group_p, cyc.cls_p[:, 1:], rec["groups"], lp.attn.num_groups, *lp.keep, cfg)
            if "keep" in rec and not np.array_equal(np.asarray(r.keep, bool), np.asarray(rec["keep"], bool)):
                raise AssertionError(f"layer {i}: the pruner's keep mask differs from the reference's")
            n_after = 2 + int(np.count_nonzero(r.keep))
            G, H = lp.attn.num_groups, lp.attn.heads
            pb, pc = prune_dram(cfg, H, G, n - 1)
            rep.kernels.append(KernelReport("prune", f"layers.{i}.prune", i, sum(r.cycles.values()), 0, pc, 0, 0, pb,
                                            engines=dict(r.cycles)))
            npatch = patched_words([l.prunes for l in prog.layers], i)
            cc = compact_cycles(cfg, n, dm, npatch)
            cb, ccy = compact_dram(cfg, n, dm, n_after, npatch)
            rep.kernels.append(KernelReport("compact", f"layers.{i}.compact", i, sum(cc.values()), 0, ccy, 0, 0, cb,
                                            engines=dict(cc)))
        elif lp.prunes:
            raise ValueError("dense runs on a no-pruning trace; the program still prunes")
        rep.kernels += _common(cfg, prog, n_after, i, "post")
        rep.kernels[-1].notes.append(f"tokens {n} -> {n_after}")
    rep.kernels += [layernorm_cycles(cfg, 1, dims.embed_dim, name="norm"),
                    gemm_cycles(cfg, 1, dims.embed_dim, dims.num_classes, name="head")]
    return rep


def bundle_reports(bundle, images, config: ConfigLike = "revit-paper", *, baselines: bool = True,
                   progress: bool = False) -> Dict:
    """Per image: ``{"revit": [Report...], <baseline>: [Report...], "tokens": [[n per layer]...],
    "tokens_no_pruning": [...], "logits": (B, classes), "logits_no_pruning": (B, classes)}``, everything
    from one pass over the images (``progress``: a tqdm bar)."""
    from vitaccel.sim.revit.model import compile_revit, forward_image

    cfg = load_config(config)
    if getattr(cfg, "accelerator", "revit") != "revit":
        raise ValueError(f"config {cfg.name!r} is for the {cfg.accelerator} accelerator; a ReViT bundle needs a "
                         "revit config (revit-paper, revit-zcu104, revit-kv260, revit-pynq-z2)")
    prog = compile_revit(bundle, cfg)
    full = no_pruning_program(prog)
    imgs = np.asarray(images, np.float32)
    names = ("revit",) + (BASELINES if baselines else ())
    out: Dict = {k: [] for k in names}
    out["tokens"], out["tokens_no_pruning"], logits, logits_full = [], [], [], []
    it = imgs
    if progress:
        from tqdm import tqdm

        it = tqdm(imgs, desc=f"ReViT cycles ({cfg.name})", unit="image", leave=False)
    for img in it:
        tr: List[dict] = []
        logits.append(forward_image(prog, img, tr))
        out["tokens"].append([int(r["h8"].shape[0]) for r in tr])
        for v in ("revit", "no_reconfig", "no_differential", "in_order"):
            if v in out:
                out[v].append(image_report(prog, tr, cfg, v))
        if baselines:
            tr_full: List[dict] = []
            logits_full.append(forward_image(full, img, tr_full))
            out["tokens_no_pruning"].append([int(r["h8"].shape[0]) for r in tr_full])
            out["no_pruning"].append(image_report(full, tr_full, cfg, "revit"))
            out["dense"].append(image_report(full, tr_full, cfg, "dense"))
    out["logits"] = np.stack(logits) if logits else np.zeros((0, prog.dims.num_classes), np.float32)
    out["logits_no_pruning"] = np.stack(logits_full) if logits_full else None
    out["config"] = cfg
    return out


def _stats(v) -> Dict[str, float]:
    a = np.asarray(v, np.float64)
    return {"mean": float(a.mean()), "min": float(a.min()), "max": float(a.max())}


def summarise(res: Dict) -> Dict:
    """JSON-able summary: per-image cycles (mean/min/max), per-kernel and per-engine means, DRAM bytes, tokens
    per layer, and each baseline's cycles and its ratio to ReViT's (mean over images of the per-image ratio)."""
    cfg = res["config"]
    reps: List[Report] = res["revit"]
    if not reps:
        raise ValueError("no images")
    tot = [r.total_cycles for r in reps]
    by_kernel: Dict[str, float] = {}
    engines: Dict[str, float] = {}
    for r in reps:
        for k, v in r.by_kernel().items():
            by_kernel[k] = by_kernel.get(k, 0) + v["total"] / len(reps)
        for kr in r.kernels:
            for e, c in kr.engines.items():
                key = f"{kr.kernel}.{e}"
                engines[key] = engines.get(key, 0) + c / len(reps)
    doc = {"config": cfg.name, "config_hash": cfg.hash, "clock_mhz": cfg.clock_mhz, "images": len(reps),
           "cycles_per_image": _stats(tot), "latency_us_per_image": {k: v / cfg.clock_mhz for k, v in _stats(tot).items()},
           "per_image_cycles": tot, "dram_bytes_per_image": _stats([r.dram_bytes for r in reps]),
           "by_kernel_mean_cycles": {k: round(v, 1) for k, v in by_kernel.items()},
           "engines_mean_cycles": {k: round(v, 1) for k, v in engines.items()},
           "by_layer_mean_cycles": {str(k): round(float(np.mean([r.by_layer()[k]["total"] for r in reps])), 1)
                                    for k in reps[0].by_layer()},
           "tokens_per_layer": res["tokens"]}
    base = {}
    for name in BASELINES:
        if not res.get(name):
            continue
        bt = [r.total_cycles for r in res[name]]
        base[name] = {"cycles_per_image": _stats(bt), "dram_bytes_per_image": _stats([r.dram_bytes for r in res[name]]),
                      "ratio_to_revit": _stats([b / t for b, t in zip(bt, tot)]),
                      "bits": "the bundle's" if name in ENGINE_VARIANTS else "differ (timing only)"}
    if base:
        doc["baselines"] = base
        doc["tokens_per_layer_no_pruning"] = res["tokens_no_pruning"]
    return doc


def format_summary(doc: Dict) -> str:
    c, us = doc["cycles_per_image"], doc["latency_us_per_image"]
    lines = [f"ReViT on '{doc['config']}' ({doc['clock_mhz']:g} MHz), {doc['images']} image(s): "
             f"cycles per image mean {c['mean']:.0f}, min {c['min']:.0f}, max {c['max']:.0f} "
             f"({us['mean']:.2f} us mean); DRAM {doc['dram_bytes_per_image']['mean'] / 1e6:.3f} MB per image",
             f"tokens per layer (image 0): {doc['tokens_per_layer'][0]}", "",
             f"{'kernel':<12} {'mean cycles':>12} {'share':>7}"]
    for k, v in doc["by_kernel_mean_cycles"].items():
        lines.append(f"{k:<12} {v:>12.0f} {100 * v / c['mean']:>6.1f}%")
    lines += ["", f"{'engine':<28} {'mean cycles':>12}"]
    lines += [f"{k:<28} {v:>12.0f}" for k, v in doc["engines_mean_cycles"].items()
              if k.split(".")[0] in ("attention", "prune")]
    if "baselines" in doc:
        lines += ["", f"{'baseline':<16} {'mean cycles':>12} {'min':>10} {'max':>10} {'x ReViT':>8}  bits"]
        lines.append(f"{'revit':<16} {c['mean']:>12.0f} {c['min']:>10.0f} {c['max']:>10.0f} {1:>8.3f}  the bundle's")
        for k, v in doc["baselines"].items():
            b = v["cycles_per_image"]
            lines.append(f"{k:<16} {b['mean']:>12.0f} {b['min']:>10.0f} {b['max']:>10.0f} "
                         f"{v['ratio_to_revit']['mean']:>8.3f}  {v['bits']}")
    return "\n".join(lines)
