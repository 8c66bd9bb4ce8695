"""Measurements of the ReViT engines on a ReViT bundle's images: effectual Booth terms of raw against
delta operands, and the attention layers' cycles per image in the engine variants (workload-sized
sub-arrays out of order = ReViT; one array; fixed 16-column sub-arrays; raw operands; whole sub-arrays in
lock step; in order). ``python -m vitaccel.sim.revit.measure [--images N] [--config NAME]`` on the shipped
demo. Attention layers only (group generation, Q/K/V projection, attention; not the MLP, the other GEMMs
or the pruners); pruning is as the bundle does it (the traced tokens)."""
from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Dict

import numpy as np

from vitaccel.sim.revit.booth import booth_terms
from vitaccel.sim.revit.layer import engine_layer
from vitaccel.sim.revit.sched import FIXED, ONE_ARRAY

__all__ = ["VARIANTS", "measure"]

VARIANTS = {"revit": {}, "one_array": dict(mode=ONE_ARRAY), "fixed16": dict(mode=FIXED, fixed_cols=16),
            "raw_operands": dict(delta=False), "lockstep": dict(sync=1 << 10), "in_order": dict(out_of_order=False),
            "int8_array": dict(delta=False, array="int8")}
# lockstep: sync_cols wider than any sub-array, i.e. each sub-array's columns in lock step. int8_array: the
# paper's ReViT-w/o-Differential, an int8 MAC array of the same Pn x Pc (one cycle per step) on raw operands.


def measure(bundle, images, config="revit-paper") -> Dict:
    from vitaccel.sim.revit.model import compile_revit, run_revit

    prog = compile_revit(bundle)
    traces = run_revit(bundle, images, trace=True).traces
    terms = {"tokens_raw": [], "tokens_delta": []}
    cyc = {k: [] for k in VARIANTS}
    util = []
    for tr in traces:
        per = {k: 0 for k in VARIANTS}
        for lp, rec in zip(prog.layers, tr):
            terms["tokens_raw"].append(booth_terms(rec["h8"][1:]).mean())
            terms["tokens_delta"].append(booth_terms(rec["deltas"], 10).mean())
            for name, kw in VARIANTS.items():
                _, c = engine_layer(rec["h8"], lp.attn, config, **kw)
                per[name] += c.total
                if name == "revit":
                    util.append(c.rbsp.utilisation)
        for k in VARIANTS:
            cyc[k].append(per[k])
    mean = {k: float(np.mean(v)) for k, v in cyc.items()}
    return {"images": len(traces), "config": config,
            "booth_terms_per_element": {k: round(float(np.mean(v)), 3) for k, v in terms.items()},
            "attention_cycles_per_image": {k: round(v) for k, v in mean.items()},
            "ratio_to_revit": {k: round(v / mean["revit"], 3) for k, v in mean.items()},
            "rbsp_term_utilisation": round(float(np.mean(util)), 3)}


def main(argv=None) -> int:
    from vitaccel.host.bundle import load_bundle

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--images", type=int, default=8)
    ap.add_argument("--config", default="revit-paper")
    ap.add_argument("--bundle", default=str(Path(__file__).resolve().parents[2] / "models" / "demo" / "revit.vcb"))
    a = ap.parse_args(argv)
    bundle = load_bundle(a.bundle)
    imgs = np.load(Path(a.bundle).parent / "test_images.npz")["images"][:a.images]
    print(json.dumps(measure(bundle, imgs, a.config), indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
