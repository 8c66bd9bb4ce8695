"""Does the ViTCoD auto-encoder pay? The whole model's predicted cycles, exposed data cycles and DRAM bytes
per image with the encoder fused into the qkv GEMM's output stage (OP_QKV_AE), with it as its own op after
the GEMM (OP_GEMM + OP_AE_MIX: the full Q/K go to DRAM and back), with the host compiler's choice between
the two, and without an AE at all, side by side from one program per workload (cycle model only: the
bits of the three AE programs are identical, tests/test_sim_top.py).

    python benchmarks/bench_ae.py [--json out.json]

Workloads: the shipped demo bundle (90% sparse + AE, its trained masks) and DeiT-Tiny / DeiT-Small
dimensions at 224 (random weights and masks at 10% density, CLS column and diagonal kept, AE at H/2
heads: ``vitaccel.testing.random_bundle``), on the ``paper`` and ``zcu104`` configs.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def workloads():
    from vitaccel.host.bundle import load_bundle
    from vitaccel.testing import random_bundle

    yield "demo", lambda cfg: load_bundle(ROOT / "models" / "demo" / "demo.vcb")
    for name, (dm, h) in (("deit_tiny", (192, 3)), ("deit_small", (384, 6))):
        yield name, (lambda cfg, dm=dm, h=h: random_bundle(
            cfg, depth=12, img_size=224, patch_size=16, embed_dim=dm, num_heads=h, mlp_dim=4 * dm,
            num_classes=1000, ae_heads=h // 2, density=0.1, seed=1))


def measure(bundle, config: str) -> dict:
    from vitaccel.sim.vitcod.model import compile_program, model_baselines, program_cycles

    prog = compile_program(bundle, config)
    reps = {f"ae_{e}": program_cycles(prog, encoder=e) for e in ("auto", "fused", "unfused")}
    reps["no_ae"] = model_baselines(prog)["vitcod_no_ae"]
    out = {}
    for k, r in reps.items():
        out[k] = {"cycles": r.total_cycles, "data_cycles": r.breakdown["data"], "dram_bytes": r.dram_bytes,
                  "ae_cycles": r.breakdown["preprocess"], "latency_us": r.latency_us}
    base = out["no_ae"]
    for k in ("ae_auto", "ae_fused", "ae_unfused"):
        out[k]["speedup_vs_no_ae"] = base["cycles"] / out[k]["cycles"]
        out[k]["dram_vs_no_ae"] = out[k]["dram_bytes"] / base["dram_bytes"]
    fused_layers = sum(1 for k in reps["ae_auto"].kernels if k.name.endswith(".qkv") and "encoder" in k.engines)
    out["fused_layers"] = f"{fused_layers}/{len(prog.layers)}"
    # What the AE can save at most: the full Q and K written by the qkv GEMM and read back, every layer.
    dims = prog.dims
    out["qk_round_trip_bytes"] = len(prog.layers) * 2 * 2 * dims.num_tokens * dims.embed_dim
    out["qk_share_of_no_ae_dram"] = out["qk_round_trip_bytes"] / base["dram_bytes"]
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--json", type=Path, help="write the figures here")
    args = ap.parse_args()
    res = {}
    print(f"{'workload':<11} {'config':<7} {'variant':<11} {'cycles':>10} {'data':>9} {'AE cyc':>8} {'DRAM MB':>8} "
          f"{'vs no AE':>9} {'DRAM/noAE':>9}")
    for name, make in workloads():
        for config in ("paper", "zcu104"):
            r = res.setdefault(name, {})[config] = measure(make(config), config)
            for k in ("no_ae", "ae_unfused", "ae_fused", "ae_auto"):
                v = r[k]
                sp = f"{v['speedup_vs_no_ae']:.3f}x" if "speedup_vs_no_ae" in v else "-"
                dr = f"{v['dram_vs_no_ae']:.3f}" if "dram_vs_no_ae" in v else "-"
                print(f"{name:<11} {config:<7} {k:<11} {v['cycles']:>10} {v['data_cycles']:>9} {v['ae_cycles']:>8} "
                      f"{v['dram_bytes'] / 1e6:>8.3f} {sp:>9} {dr:>9}")
            print(f"{'':<19} compiler fused the qkv of {r['fused_layers']} layers; the full Q/K round trip is "
                  f"{100 * r['qk_share_of_no_ae_dram']:.1f}% of the no-AE DRAM bytes")
    if args.json:
        args.json.write_text(json.dumps(res, indent=1) + "\n")


if __name__ == "__main__":
    main()
