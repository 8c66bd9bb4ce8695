"""ViTCoD attention against its roofline bound (issue #14): predicted cycles of DeiT-Small attention (12 layers
of 6 heads, N = 197, d = 64) at 80% and 90% sparsity, next to the roofline bound max(MACs / peak, bytes /
bandwidth) of the same work and to dense attention and the baselines on the same config, all from one
run of the cycle model (ratios of cycles: no wall time involved).

    python benchmarks/bench_roofline.py [--json out.json] [--configs paper zcu104 ...]

Masks: ``bench_sim.deit_small_masks`` (synthetic averaged attention maps with a locality band, a few
global tokens and a CLS column, pruned per layer to the target sparsity; see that file). MACs are the
kept entries' (2 x kept x d: S and S.V); bytes are what ViTCoD's own schedule moves (the bound's data term).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Dict, List

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

D = 64


def measure(config: str, masks_by_sparsity: Dict[float, List]) -> Dict[str, Dict[str, float]]:
    from vitaccel.hwconfig import load_config
    from vitaccel.sim.vitcod.api import attention_baselines
    from vitaccel.sim.vitcod.attention import SparsePlan

    cfg = load_config(config)
    out = {}
    for sp, masks in masks_by_sparsity.items():
        tot: Dict[str, int] = {}
        bound = 0.0
        for mask in masks:
            plan = SparsePlan.from_mask(mask, config=cfg)
            reps = attention_baselines(plan, D, config=cfg)
            for k, r in reps.items():
                tot[k] = tot.get(k, 0) + r.total_cycles
            mine = reps["vitcod_no_ae"]
            bound += max(2 * int(mask.sum()) * D / cfg.peak_macs_per_cycle, mine.dram_bytes / cfg.bytes_per_cycle)
        v = tot["vitcod_no_ae"]
        row = {"vitcod_cycles": v, "roofline_bound_cycles": round(bound), "over_roofline": v / bound}
        for k, c in tot.items():
            if k not in ("vitcod", "vitcod_no_ae"):
                row[f"speedup_vs_{k}"] = c / v
        out[f"{int(round(100 * sp))}%"] = row
    return out


def main() -> None:
    from bench_sim import deit_small_masks

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--json", type=Path, help="write the figures here")
    ap.add_argument("--configs", nargs="+", default=["paper", "zcu104", "kv260", "pynq-z2"])
    args = ap.parse_args()
    masks = {sp: deit_small_masks(sp)[0] for sp in (0.8, 0.9)}
    res = {c: measure(c, masks) for c in args.configs}
    cols = sorted({k for r in res.values() for row in r.values() for k in row if k.startswith("speedup_vs_")})
    print(f"{'config':<9} {'sparsity':>8} {'x roofline':>10} " + " ".join(f"{c[11:]:>15}" for c in cols))
    for c, r in res.items():
        for sp, row in r.items():
            print(f"{c:<9} {sp:>8} {row['over_roofline']:>10.2f} " + " ".join(f"{row[k]:>14.2f}x" for k in cols))
    print("(x roofline: ViTCoD's cycles over max(MACs/peak, bytes/bandwidth); speedup_vs_X: X's cycles over ViTCoD's)")
    if args.json:
        args.json.write_text(json.dumps(res, indent=1) + "\n")


if __name__ == "__main__":
    main()
