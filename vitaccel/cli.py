"""The `vitaccel` command line.

Sub-commands: ``info`` (hardware configs, derived figures, backend), ``config`` (list / gen / check the
files rendered from the configs), ``selfcheck`` (the integer numerics against float references and,
when g++ and hls4ml are present, against the HLS C++ compiled for C-simulation).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from typing import List, Optional

from vitaccel import __version__
from vitaccel.hwconfig import ConfigError, FIELDS, list_configs, load_config, stale_generated, write_generated


def _backend() -> dict:
    from vitaccel.host.backend import detect_backend

    name, reason = detect_backend()
    return {"backend": name, "reason": reason}


def cmd_info(args) -> int:
    names = [args.config] if args.config else list_configs()
    cfgs = [load_config(n) for n in names]
    backend = _backend()
    if args.json:
        doc = {"version": __version__, **backend,
               "configs": [{**c.to_dict(), "derived": c.derived()} for c in cfgs]}
        if args.config:
            doc["config"] = doc.pop("configs")[0]
        print(json.dumps(doc, indent=2))
        return 0

    print(f"vitaccel {__version__}")
    print(f"backend: {backend['backend']}  ({backend['reason']})")
    if args.config:
        c = cfgs[0]
        print(f"\nconfig '{c.name}': {c.description}")
        width = max(len(f.name) for f in FIELDS)
        for f in FIELDS:
            if f.name in ("name", "description"):
                continue
            print(f"  {f.name:<{width}}  {getattr(c, f.name)!s:<22} {f.doc}")
        print("\n  derived:")
        for k, v in c.derived().items():
            print(f"  {k:<{width}}  {v}")
        if c.assumptions:
            print("\n  assumptions:")
            for a in c.assumptions:
                print(f"  - {a}")
        return 0

    head = f"{'config':<9} {'kind':<5} {'clock':>8} {'MACs':>5} {'GOPS':>7} {'DRAM GB/s':>9} {'B/cycle':>8} " \
           f"{'ridge MAC/B':>11} {'SRAM KB':>7}  hash32"
    print("\n" + head)
    print("-" * len(head))
    for c in cfgs:
        d = c.derived()
        print(f"{c.name:<9} {c.kind:<5} {c.clock_mhz:>5.0f}MHz {c.peak_macs_per_cycle:>5} {d['peak_gops']:>7.1f} "
              f"{c.dram_gbps:>9.1f} {d['bytes_per_cycle']:>8.2f} {d['ridge_macs_per_byte']:>11.2f} "
              f"{d['onchip_sram_kb']:>7}  {d['hash32']}")
    print("\n`vitaccel info --config NAME` shows one config in full.")
    return 0


def cmd_config(args) -> int:
    if args.action == "list":
        for n in list_configs():
            print(n)
        return 0
    if args.action == "gen":
        written = write_generated()
        for p in written:
            print(f"wrote {p}")
        if not written:
            print("generated files are up to date")
        return 0
    stale = stale_generated()
    if stale:
        print("stale generated files (run `vitaccel config gen`):", file=sys.stderr)
        for p in stale:
            print(f"  {p}", file=sys.stderr)
        return 1
    print("generated files are up to date")
    return 0


def cmd_selfcheck(args) -> int:
    from vitaccel.sim import selfcheck

    results = selfcheck.run(cases=args.cases, seed=args.seed, csim=args.csim, config=args.config)
    if args.json:
        print(json.dumps(results, indent=2))
    else:
        for r in results["checks"]:
            mark = {"pass": "PASS", "fail": "FAIL", "skip": "SKIP"}[r["status"]]
            print(f"[{mark}] {r['name']}: {r['detail']}")
    return 0 if all(r["status"] != "fail" for r in results["checks"]) else 1


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="vitaccel", description="Sparse ViT accelerators on PYNQ FPGAs and their simulator.")
    p.add_argument("--version", action="version", version=f"vitaccel {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")

    info = sub.add_parser("info", help="show hardware configs, derived figures and the backend that would run")
    info.add_argument("--config", metavar="NAME", help=f"one config by name or .json path ({', '.join(list_configs())})")
    info.add_argument("--json", action="store_true", help="machine-readable output")
    info.set_defaults(func=cmd_info)

    cfg = sub.add_parser("config", help="list configs; generate or check the C header / tcl rendered from them")
    cfg.add_argument("action", choices=("list", "gen", "check"))
    cfg.set_defaults(func=cmd_config)

    sc = sub.add_parser("selfcheck", help="check the integer numerics (NumPy vs float, and vs C-simulation)")
    sc.add_argument("--cases", type=int, default=2000, help="random rows/values per check (default 2000)")
    sc.add_argument("--seed", type=int, default=0)
    sc.add_argument("--config", default="paper", help="target whose header the C-simulation compiles with")
    g = sc.add_mutually_exclusive_group()
    g.add_argument("--csim", dest="csim", action="store_const", const=True, default=None,
                   help="require the C-simulation comparison (fail if g++/hls4ml are missing)")
    g.add_argument("--no-csim", dest="csim", action="store_const", const=False, help="skip the C-simulation comparison")
    sc.add_argument("--json", action="store_true")
    sc.set_defaults(func=cmd_selfcheck)
    return p


def main(argv: Optional[List[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return args.func(args)
    except ConfigError as e:
        print(f"vitaccel: config error: {e}", file=sys.stderr)
        return 2
