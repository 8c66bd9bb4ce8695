"""The `vitaccel` command line.

Sub-commands: ``info`` (hardware configs, derived figures, backend), ``config`` (list / gen / check the
files rendered from the configs), ``selfcheck`` (the integer numerics against float references and,
when g++ and hls4ml are present, against the HLS C++ compiled for C-simulation), ``sim`` (predicted
cycles of a bundle, baselines, plots), ``run`` (the main job: a bundle over images on the board or the
simulator, :mod:`vitaccel.host.run`), ``eval`` (top-1 / top-5 over class folders, optionally sharded over a
Dask cluster: :mod:`vitaccel.host.evaluate`, :mod:`vitaccel.host.distributed`) and ``prune`` (a DeiT
checkpoint to a bundle: :mod:`vitaccel.models.prune`, needs torch).
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import time
import warnings
from typing import Callable, List, Optional

from vitaccel import __version__, accelerators
from vitaccel.hwconfig import COMMON_FIELDS, ConfigError, list_configs, load_config, stale_generated, write_generated
from vitaccel.safetext import printable


# -- option types: a bad value is refused by argparse, naming the option and the allowed range (exit 2) --

def _int_in(lo: int, hi: Optional[int] = None) -> Callable[[str], int]:
    rule = f"an integer >= {lo}" if hi is None else f"an integer in [{lo}, {hi}]"

    def parse(text: str) -> int:
        try:
            v = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {rule}, got {text!r}") from None
        if v < lo or (hi is not None and v > hi):
            raise argparse.ArgumentTypeError(f"expected {rule}, got {text!r}")
        return v
    parse.__name__ = "integer"
    return parse


def _float(*, positive: bool, what: str) -> Callable[[str], float]:
    def parse(text: str) -> float:
        rule = f"a finite {what} > 0" if positive else f"a finite {what}"
        try:
            v = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {rule}, got {text!r}") from None
        if not math.isfinite(v) or (positive and v <= 0):
            raise argparse.ArgumentTypeError(f"expected {rule}, got {text!r}")
        return v
    parse.__name__ = "number"
    return parse


def _fraction(what: str, lo: float, hi: float, *, lo_open: bool = False, hi_open: bool = False
              ) -> Callable[[str], float]:
    rule = f"a number in {'(' if lo_open else '['}{lo:g}, {hi:g}{')' if hi_open else ']'}"

    def parse(text: str) -> float:
        try:
            v = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {rule}, got {text!r}") from None
        if not math.isfinite(v) or v < lo or v > hi or (lo_open and v == lo) or (hi_open and v == hi):
            raise argparse.ArgumentTypeError(f"expected {rule} ({what}), got {text!r}")
        return v
    parse.__name__ = "number"
    return parse


#: Seeds: numpy's default_rng takes any non-negative integer; we keep them to 63 bits.
_SEED = _int_in(0, 2 ** 63 - 1)


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
        section = c.spec.section
        width = max(len(f.name) for f in (*COMMON_FIELDS, *section)) + len(c.accelerator) + 1
        for f in COMMON_FIELDS:
            if f.name in ("name", "description"):
                continue
            print(f"  {f.name:<{width}}  {getattr(c, f.name)!s:<22} {f.doc}")
        print(f"  {'accelerator':<{width}}  {c.accelerator:<22} {c.spec.title}")
        for f in section:
            print(f"  {c.accelerator + '.' + f.name:<{width}}  {getattr(c, f.name)!s:<22} {f.doc}")
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


def cmd_sim(args) -> int:
    from vitaccel.host.bundle import BundleError, check_limits, load_bundle, resolve_config
    from vitaccel.sim.vitcod.model import compile_program, forward_batched, model_baselines, program_cycles

    try:
        bundle = load_bundle(args.bundle)
        if bundle.meta.get("method") == "revit":   # per-image cycles on the ReViT engines
            return _sim_revit(args, bundle)
        # --config is the user's (a name or a path); the bundle's config_name only ever names a shipped config
        cfg = resolve_config(bundle, args.config)
        check_limits(bundle, cfg)
    except BundleError as e:
        if e.path is None:
            e = BundleError(e.field, e.message, path=args.bundle)
        print(f"vitaccel: {e}", file=sys.stderr)
        return 2
    if cfg.hash != bundle.config_hash:
        print(f"note: bundle was compiled for '{bundle.config_name}' ({bundle.config_hash[:8]}); predicting cycles "
              f"on '{cfg.name}' ({cfg.hash[:8]}). A board would refuse this pairing.", file=sys.stderr)
    prog = compile_program(bundle, cfg)
    report = program_cycles(prog)
    doc = {"bundle": args.bundle, "report": report.to_dict(kernels=True), "by_layer": report.by_layer(),
           "by_kernel": report.by_kernel()}
    base = model_baselines(prog) if args.baselines else None
    if base:
        doc["baselines"] = {k: {**v.to_dict(kernels=False), "speedup_of_vitcod": v.total_cycles / report.total_cycles}
                            for k, v in base.items()}
    if args.images:
        import numpy as np

        from vitaccel.host.run import EMULATED_BATCH, check_logits, load_images

        dims = bundle.model
        imgs, labels = load_images(args.images, size=dims.img_size, chans=dims.in_chans,
                                   num_classes=dims.num_classes)
        t0 = time.perf_counter()
        logits = check_logits(forward_batched(prog, imgs, EMULATED_BATCH), args.images)  # one batch in memory
        doc["images"] = {"count": int(len(imgs)), "predictions": np.argmax(logits, 1).tolist(),
                         "host_seconds": time.perf_counter() - t0}
        if labels is not None:
            doc["images"]["top1"] = float(np.mean(np.argmax(logits, 1) == labels))
    if args.plot:
        from pathlib import Path

        from vitaccel.sim.plots import plot_breakdown, plot_roofline

        out = Path(args.plot)
        out.mkdir(parents=True, exist_ok=True)
        doc["plots"] = [str(plot_breakdown(report, out / "breakdown.png", baselines=base)),
                        str(plot_roofline(report, out / "roofline.png"))]
    if args.json:
        print(json.dumps(doc, indent=2, default=str))
        return 0
    print(bundle.summary())  # escapes control characters from the file (printable)
    print()
    print(report.table() if args.verbose else _layer_table(report))
    if base:
        print(f"\n{'attention dataflow':<18} {'cycles':>10} {'latency us':>11} {'ViTCoD speedup':>15}")
        for k, v in base.items():
            print(f"{k:<18} {v.total_cycles:>10} {v.latency_us:>11.2f} {v.total_cycles / report.total_cycles:>14.2f}x")
    if args.images:
        im = doc["images"]
        line = f"\n{im['count']} images: predictions {im['predictions'][:16]}{' ...' if im['count'] > 16 else ''}"
        if "top1" in im:
            line += f"; top-1 {100 * im['top1']:.2f}%"
        print(line)
    for p in doc.get("plots", []):
        print(f"wrote {p}")
    return 0


def _sim_revit(args, bundle) -> int:
    """``vitaccel sim`` for a ReViT bundle: the work depends on the image, so ``--images`` is required and the
    cycles are per image (:mod:`vitaccel.sim.revit.bundle_cycles`)."""
    from vitaccel.host.run import load_images
    from vitaccel.sim.revit.bundle_cycles import bundle_reports, format_summary, summarise

    if not args.images:
        print("vitaccel: a ReViT bundle's cycles depend on the image (group sizes, Booth digits, kept patches): "
              "pass --images", file=sys.stderr)
        return 2
    name = args.config or (bundle.config_name if str(bundle.config_name).startswith("revit") else "revit-paper")
    try:
        cfg = load_config(name)
    except (ConfigError, ValueError, OSError) as e:
        print(f"vitaccel: --config {name}: {e}", file=sys.stderr)
        return 2
    if cfg.accelerator != "revit":
        print(f"vitaccel: config {cfg.name!r} is for the {cfg.accelerator} accelerator; a ReViT bundle runs on a revit "
              "config (revit-paper, revit-zcu104, revit-kv260, revit-pynq-z2)", file=sys.stderr)
        return 2
    if not args.config and not str(bundle.config_name).startswith("revit"):
        print(f"note: bundle names config '{bundle.config_name}' (not a ReViT one); predicting on '{cfg.name}'",
              file=sys.stderr)
    dims = bundle.model
    imgs, labels = load_images(args.images, size=dims.img_size, chans=dims.in_chans, num_classes=dims.num_classes)
    t0 = time.perf_counter()
    res = bundle_reports(bundle, imgs, cfg, baselines=args.baselines)
    doc = {"bundle": args.bundle, **summarise(res), "host_seconds": time.perf_counter() - t0}
    import numpy as np

    pred = np.argmax(res["logits"], 1)
    doc["predictions"] = pred.tolist()
    if labels is not None:
        doc["top1"] = float(np.mean(pred == labels))
    if args.verbose or args.json:
        doc["image0_report"] = res["revit"][0].to_dict(kernels=True)
    if args.plot:
        from pathlib import Path

        from vitaccel.sim.plots import plot_breakdown, plot_roofline

        out = Path(args.plot)
        out.mkdir(parents=True, exist_ok=True)
        base = {k: v[0] for k, v in res.items() if k in doc.get("baselines", {})}
        base = {"revit": res["revit"][0], **base} if base else None
        doc["plots"] = [str(plot_breakdown(res["revit"][0], out / "breakdown.png", baselines=base)),
                        str(plot_roofline(res["revit"][0], out / "roofline.png"))]
    if args.json:
        print(json.dumps(doc, indent=2, default=str))
        return 0
    print(bundle.summary())
    print()
    print(format_summary(doc))
    if args.verbose:
        print("\nimage 0:\n" + res["revit"][0].table())
    line = f"\n{len(pred)} images: predictions {doc['predictions'][:16]}{' ...' if len(pred) > 16 else ''}"
    if "top1" in doc:
        line += f"; top-1 {100 * doc['top1']:.2f}%"
    print(line)
    for p in doc.get("plots", []):
        print(f"wrote {p} (image 0)")
    return 0


def cmd_golden(args) -> int:
    from pathlib import Path

    from vitaccel.sim.golden import write_golden

    out = Path(args.out)
    if out.exists() and any(out.iterdir()):
        print(f"vitaccel: {out} is not empty; golden cases go into a fresh folder", file=sys.stderr)
        return 2
    load_config(args.config)  # a clear error for an unknown config before anything is written
    cases = write_golden(out, args.config)
    for kernel, dirs in cases.items():
        print(f"{kernel}: {len(dirs)} case(s) in {out / kernel}")
    return 0


def cmd_run(args) -> int:
    from vitaccel.host.run import run_command

    return run_command(args)


def cmd_compare(args) -> int:
    from vitaccel.host.compare import compare_command

    return compare_command(args)


def cmd_eval(args) -> int:
    from vitaccel.host.evaluate import eval_command

    return eval_command(args)


def cmd_prune(args) -> int:
    try:
        import torch
    except ImportError:
        print("vitaccel: prune needs PyTorch: pip install 'vitaccel[models]'", file=sys.stderr)
        return 2
    from vitaccel.models.prune import PruneOptions, format_summary, parse_keep, prune

    torch.set_num_threads(args.threads)
    if args.method == "revit":
        given = [o for o, v in (("--sparsity", args.sparsity), ("--ae", args.ae), ("--theta-d", args.theta_d),
                                ("--plots", args.plots)) if v is not None]
        if given:
            print(f"vitaccel: {', '.join(given)} apply to --method vitcod (ReViT prunes tokens: --keep, --groups)",
                  file=sys.stderr)
            return 2
    elif args.keep:
        print("vitaccel: --keep applies to --method revit (ViTCoD prunes attention: --sparsity)", file=sys.stderr)
        return 2
    keep = dict(parse_keep(k) for k in args.keep or ())
    opts = PruneOptions(
        checkpoint=args.checkpoint, calib=args.calib, output=args.output, arch=args.arch, heads=args.heads,
        ema=args.ema, method=args.method, sparsity=0.9 if args.sparsity is None else args.sparsity,
        theta_d=0.5 if args.theta_d is None else args.theta_d, ae=0.5 if args.ae is None else args.ae,
        calib_limit=args.calib_limit, train=args.train, epochs=args.epochs, lr=args.lr, batch_size=args.batch_size,
        test=args.test, test_limit=args.test_limit, groups=args.groups, gamma=args.gamma, keep=keep,
        config=args.config or ("revit-zcu104" if args.method == "revit" else "zcu104"), plots=args.plots,
        mean=args.mean, std=args.std, seed=args.seed,
        progress=not args.json and not args.no_progress)
    if args.epochs != 1 and not args.train:
        print("vitaccel: --epochs needs --train (the images to finetune on)", file=sys.stderr)
        return 2
    say = (lambda m: None) if args.json else None
    doc = prune(opts, say=say)
    if args.json:
        print(json.dumps(doc, indent=2, default=str))
    else:
        print(format_summary(doc))
    return 0


def cmd_reproduce(args) -> int:
    from vitaccel.sim.reproduce import format_table, plot_rows, reproduce

    say = None if args.json else (lambda line: print(line, file=sys.stderr))
    doc = reproduce(args.paper, quick=args.quick, log=say)
    if args.plot:
        doc["plots"] = [str(p) for p in plot_rows(doc, args.plot)]
    if args.json:
        print(json.dumps(doc, indent=2, default=str))
        return 0
    print(format_table(doc))
    for p in doc.get("plots", []):
        print(f"wrote {p}")
    return 0


def _layer_table(report) -> str:
    rows = report.by_layer()
    head = f"{'layer':>5} {'cycles':>10} {'compute':>9} {'preproc':>9} {'data':>9} {'us':>9}"
    lines = [head, "-" * len(head)]
    for layer, r in rows.items():   # layer None ('-'): patch embedding, tokens, final LayerNorm, head
        lines.append(f"{'-' if layer is None else layer!s:>5} {r['total']:>10} {r['compute']:>9} {r['preprocess']:>9} "
                     f"{r['data']:>9} {r['total'] / report.config.clock_mhz:>9.2f}")
    b = report.breakdown
    lines.append("-" * len(head))
    lines.append(f"{'all':>5} {report.total_cycles:>10} {b['compute']:>9} {b['preprocess']:>9} {b['data']:>9} "
                 f"{report.latency_us:>9.2f}")
    by_k = report.by_kernel()
    shares = ", ".join(f"{k} {100 * v['total'] / report.total_cycles:.0f}%" for k, v in by_k.items())
    lines.append(f"latency {report.latency_us:.2f} us per image on '{report.config.name}' "
                 f"({report.config.clock_mhz:g} MHz); time by kernel: {shares}; "
                 f"MAC utilisation {100 * report.mac_utilisation:.1f}%; DRAM {report.dram_bytes / 1e6:.2f} MB")
    return "\n".join(lines)


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
    from vitaccel.sim.selfcheck import MAX_CASES

    sc.add_argument("--cases", type=_int_in(1, MAX_CASES), default=2000,
                    help=f"random rows/values per check, 1..{MAX_CASES} (default 2000)")
    sc.add_argument("--seed", type=_SEED, default=0, help="random seed, 0..2^63-1 (default 0)")
    sc.add_argument("--config", default="paper", help="target whose header the C-simulation compiles with")
    g = sc.add_mutually_exclusive_group()
    g.add_argument("--csim", dest="csim", action="store_const", const=True, default=None,
                   help="require the C-simulation comparison (fail if g++/hls4ml are missing)")
    g.add_argument("--no-csim", dest="csim", action="store_const", const=False, help="skip the C-simulation comparison")
    sc.add_argument("--json", action="store_true")
    sc.set_defaults(func=cmd_selfcheck)
    sim = sub.add_parser("sim", help="predict cycles of a bundle on the simulator (and run images through it)")
    sim.add_argument("bundle", help="deployment bundle (.vcb)")
    sim.add_argument("--images", help=".npy (B, C, H, W), .npz with 'images' [and 'labels'], an image file or a folder")
    sim.add_argument("--config", help="hardware config to predict on (default: the bundle's)")
    sim.add_argument("--baselines", action="store_true", help="also dense, S-stationary, pruning-only, ... side by side")
    sim.add_argument("--json", action="store_true", help="machine-readable output")
    sim.add_argument("--plot", metavar="DIR", help="write breakdown.png and roofline.png into DIR")
    sim.add_argument("-v", "--verbose", action="store_true", help="one line per kernel instead of per layer")
    sim.set_defaults(func=cmd_sim)

    gold = sub.add_parser("golden", help="write golden test vectors for the HLS testbenches (build.tcl's csim step)")
    gold.add_argument("--out", required=True, help="a new or empty folder; one sub-folder per kernel")
    gold.add_argument("--config", default="paper", help="hardware config the cases are sized for (default paper)")
    gold.set_defaults(func=cmd_golden)

    run = sub.add_parser("run", help="run a bundle over images on the board, or on the simulator (the main job)",
                         description="Run a deployment bundle over images on the best backend and report top-1, "
                                     "latency per image, speedup against dense attention and where the time goes. "
                                     "With no arguments: the shipped demo bundle over its held-out images.")
    run_what = run.add_mutually_exclusive_group()
    run_what.add_argument("--bundle", help="deployment bundle (.vcb); default: the shipped ViTCoD demo (models/demo/demo.vcb)")
    run_what.add_argument("--demo", choices=("vitcod", "revit"),
                          help="a shipped demo bundle over its held-out images: vitcod (models/demo/demo.vcb, the "
                               "default) or revit (models/demo/revit.vcb)")
    run.add_argument("--images", help=".npy (B, C, H, W), .npz with 'images' [and 'labels'], an image file, or a "
                                      "folder of images (labels from integer sub-folder names)")
    run.add_argument("--config", help="hardware config to compile for (default: the bundle's)")
    run.add_argument("--backend", default="auto", choices=tuple(accelerators.BACKENDS),
                     help="; ".join(f"{k}: {v}" for k, v in accelerators.BACKENDS.items()) + " (default auto)")
    run.add_argument("--overlay", metavar="BIT", help="bitstream to load on a board (default: overlay/$BOARD/"
                                                      "<accelerator>-<config>/<accelerator>-<config>.bit)")
    run.add_argument("--batch-size", type=_int_in(1, 1 << 16), help="images per accelerator start (default: 1 on a board, so the "
                                                    "measured latency is one image's; 16 on the emulated backends)")
    run.add_argument("--limit", type=_int_in(1), help="run only the first N images")
    run.add_argument("--timeout", type=_float(positive=True, what="number of seconds"), default=30.0,
                     help="seconds to wait for one accelerator run, finite and > 0 (default 30)")
    run.add_argument("--mean", type=_float(positive=False, what="mean"), nargs="+",
                     help="normalisation mean for image files (per channel; not for .npy/.npz arrays)")
    run.add_argument("--std", type=_float(positive=True, what="std"), nargs="+",
                     help="normalisation std for image files (per channel, > 0; not for .npy/.npz arrays)")
    run.add_argument("--json", action="store_true", help="machine-readable output")
    run.add_argument("--report", metavar="DIR", help="write breakdown.png, roofline.png and report.json into DIR")
    run.add_argument("--no-progress", action="store_true", help="no progress bar")
    run.set_defaults(func=cmd_run)

    cmp = sub.add_parser("compare", help="bundles (ViTCoD and ReViT) and their baselines side by side on the same "
                                         "images and hardware budget",
                         description="One table (and PNG) of accuracy, latency (mean, min, max per image), utilisation, "
                                     "DRAM bytes and an energy proxy for every bundle and every baseline of each, on the "
                                     "same images and the same hardware budget, from the simulator.")
    cmp.add_argument("bundles", nargs="+", metavar="BUNDLE", help="deployment bundles (.vcb), any mix of methods")
    cmp.add_argument("--images", help="as for `vitaccel run`; default: the demo images when every bundle is a "
                                      "shipped demo bundle")
    cmp.add_argument("--config", action="append", metavar="NAME",
                     help="a hardware budget (paper: ReViT's Table III, the default; zcu104, kv260, pynq-z2: each "
                          "accelerator's config for that board), or a config name / file for its accelerator's "
                          "bundles; repeatable")
    cmp.add_argument("--limit", type=_int_in(1), help="only the first N images")
    cmp.add_argument("--no-baselines", action="store_true", help="only the bundles themselves")
    cmp.add_argument("--mean", type=_float(positive=False, what="mean"), nargs="+", help="as for `vitaccel run`")
    cmp.add_argument("--std", type=_float(positive=True, what="std"), nargs="+", help="as for `vitaccel run`")
    cmp.add_argument("--json", action="store_true", help="machine-readable output")
    cmp.add_argument("--plot", metavar="DIR", help="write compare.png and compare.json into DIR")
    cmp.add_argument("--no-progress", action="store_true", help="no progress bar")
    cmp.set_defaults(func=cmd_compare)

    ev = sub.add_parser("eval", help="top-1 and top-5 of a bundle over a folder of class folders (any size)",
                        description="Evaluate a bundle over an ImageFolder layout (one sub-folder of images per "
                                    "class; indices from the sorted folder names, integer folder names, or "
                                    "--labels). Images are preprocessed as timm evaluates DeiT and decoded a "
                                    "chunk at a time, so memory stays bounded for any number of images.")
    ev.add_argument("bundle", help="deployment bundle (.vcb)")
    ev.add_argument("--images", required=True, help="folder with one sub-folder of images per class")
    ev.add_argument("--labels", help="class list: one class a line, its folder name first (e.g. ImageNet's "
                                     "LOC_synset_mapping.txt); the line number is the class index")
    ev.add_argument("--config", help="hardware config to compile for (default: the bundle's)")
    ev.add_argument("--backend", default="auto", choices=tuple(accelerators.BACKENDS))
    ev.add_argument("--batch-size", type=_int_in(1, 1 << 16), help="images per accelerator start (default 16)")
    ev.add_argument("--limit", type=_int_in(1), help="only the first N images (in sorted order)")
    ev.add_argument("--mean", type=_float(positive=False, what="mean"), nargs="+", help="normalisation mean")
    ev.add_argument("--std", type=_float(positive=True, what="std"), nargs="+", help="normalisation std (> 0)")
    ev.add_argument("--json", action="store_true", help="machine-readable output")
    ev.add_argument("--no-progress", action="store_true", help="no progress bar")
    scale = ev.add_mutually_exclusive_group()
    scale.add_argument("--workers", type=_int_in(1, 1024), metavar="N",
                       help="shard the images over a local Dask cluster of N worker processes (vitaccel[scale])")
    scale.add_argument("--scheduler", metavar="tcp://HOST:PORT",
                       help="shard the images over an existing Dask cluster (image and bundle paths must be "
                            "readable by its workers)")
    ev.add_argument("--retries", type=_int_in(0, 100), default=2,
                    help="with --workers/--scheduler: times a failed shard is run again, on another worker "
                         "when there is one (default 2)")
    ev.set_defaults(func=cmd_eval)

    pr = sub.add_parser("prune", help="a DeiT checkpoint -> a pruned, quantised deployment bundle (needs torch)",
                        description="Load a DeiT checkpoint (timm key names; .pth or .safetensors), insert the Q/K "
                                    "auto-encoders, calibrate, prune attention to the target sparsity (ViTCoD) or "
                                    "convert to ReViT, optionally finetune, export the int8 bundle and compare "
                                    "float with int8. Prints a one-screen summary.")
    pr.add_argument("checkpoint", help=".pth/.pt/.bin or .safetensors; wrappers model/state_dict/model_ema and "
                                       "DDP 'module.' prefixes are handled")
    pr.add_argument("--arch", default="auto", choices=("auto", "deit_tiny", "deit_small", "deit_base"),
                    help="auto (default): read the architecture from the tensor shapes")
    pr.add_argument("--heads", type=_int_in(1, 64), help="attention heads, when the shapes cannot tell "
                                                          "(default: the checkpoint's config, the DeiT, or dim/64)")
    pr.add_argument("--ema", action="store_true", help="take the checkpoint's EMA weights (model_ema)")
    pr.add_argument("--calib", required=True, metavar="DIR|NPZ",
                    help="calibration images: .npz/.npy (already normalised), an image file, a folder of images, "
                         "or one sub-folder per class")
    pr.add_argument("--calib-limit", type=_int_in(1), default=64, metavar="N",
                    help="calibration images used, spread evenly over the set (default 64)")
    pr.add_argument("--method", default="vitcod", choices=("vitcod", "revit"))
    pr.add_argument("--sparsity", type=_fraction("sparsity", 0.0, 1.0, hi_open=True),
                    help="vitcod: pruned fraction of attention, in [0, 1) (default 0.9)")
    pr.add_argument("--theta-d", type=_fraction("theta_d", 0.0, 1.0, lo_open=True, hi_open=True),
                    help="vitcod: a key column is global when more than this fraction of queries keep it (default 0.5)")
    pr.add_argument("--ae", type=_fraction("AE ratio", 0.0, 1.0),
                    help="vitcod: Q/K auto-encoder compression over heads, ceil(H * ratio) heads; 0 = none "
                         "(default 0.5)")
    pr.add_argument("--groups", type=_int_in(1, 64), default=4, help="revit: LSH groups per layer (default 4)")
    pr.add_argument("--gamma", type=_float(positive=True, what="gamma"), default=1.0,
                    help="revit: LSH bucket width (default 1)")
    pr.add_argument("--keep", action="append", metavar="LAYER:G:P",
                    help="revit: prune after LAYER's attention, keeping fraction G of the groups and P of each kept "
                         "group's patches (repeatable), e.g. 1:0.75:0.7")
    pr.add_argument("--train", metavar="DIR|NPZ", help="labelled images to finetune on (.npz with labels, or class "
                                                       "folders); without it nothing is trained")
    pr.add_argument("--epochs", type=_int_in(0, 10000), default=1,
                    help="with --train: epochs per finetuning stage (vitcod: after the AEs and after the masks; "
                         "default 1)")
    pr.add_argument("--lr", type=_float(positive=True, what="learning rate"), default=1e-4, help="default 1e-4")
    pr.add_argument("--batch-size", type=_int_in(1, 1 << 16), default=32, help="finetuning batch (default 32)")
    pr.add_argument("--test", metavar="DIR|NPZ", help="held-out images for the float-vs-int8 agreement "
                                                      "(default: the calibration images)")
    pr.add_argument("--test-limit", type=_int_in(1), default=64, metavar="N",
                    help="images for the agreement (default 64)")
    pr.add_argument("--config", help="hardware config the bundle is for (default zcu104 for vitcod, revit-zcu104 for "
                                      "revit; a config of the method's accelerator)")
    pr.add_argument("-o", "--output", required=True, metavar="BUNDLE", help="the bundle to write (.vcb)")
    pr.add_argument("--plots", metavar="DIR", help="vitcod: write masks.png and sparsity.png into DIR")
    pr.add_argument("--mean", type=_float(positive=False, what="mean"), nargs="+",
                    help="normalisation mean for image files (default ImageNet's for RGB)")
    pr.add_argument("--std", type=_float(positive=True, what="std"), nargs="+", help="normalisation std (> 0)")
    pr.add_argument("--seed", type=_SEED, default=0, help="random seed (default 0)")
    pr.add_argument("--threads", type=_int_in(1, 1024), default=1, help="torch CPU threads (default 1)")
    pr.add_argument("--json", action="store_true", help="machine-readable summary")
    pr.add_argument("--no-progress", action="store_true", help="no progress bars")
    pr.set_defaults(func=cmd_prune)
    rp = sub.add_parser("reproduce", help="the ViTCoD and ReViT papers' speedups next to ours, in one table",
                        description="Build the papers' workloads (DeiT-Tiny/Small/Base, LeViT-128 attention; synthetic "
                                    "Q/K), run ViTCoD and the baselines (Sanger, SpAtten) on the papers' configs and "
                                    "print paper figure, ours, ratio, and a reason where they differ beyond 1.5x.")
    rp.add_argument("--paper", default="all", choices=("vitcod", "revit", "all"), help="whose rows (default all)")
    rp.add_argument("--quick", action="store_true", help="DeiT-Tiny and LeViT-128 only (seconds; every row still printed)")
    rp.add_argument("--json", action="store_true", help="machine-readable rows, per-model figures and diagnostics")
    rp.add_argument("--plot", metavar="DIR", help="write paper-vs-ours bar charts into DIR (needs matplotlib)")
    rp.set_defaults(func=cmd_reproduce)
    return p


_default_showwarning = warnings.showwarning


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """Warnings about the user's inputs as one line, ``vitaccel: warning: ...`` (no source line)."""
    from vitaccel.host.run import InputWarning

    if issubclass(category, InputWarning):
        print(f"vitaccel: warning: {printable(message)}", file=sys.stderr)
    else:
        _default_showwarning(message, category, filename, lineno, file, line)


def main(argv: Optional[List[str]] = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:  # argparse printed the usage and the option's error (2), or --help (0)
        return e.code if isinstance(e.code, int) else 2
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    from vitaccel.host.run import InputWarning

    with warnings.catch_warnings():
        warnings.simplefilter("always", InputWarning)
        warnings.showwarning = _show_warning
        try:
            return args.func(args)
        except BrokenPipeError:  # output piped into `head` and the like: not an error of ours
            sys.stderr.close()
            return 0
        except ConfigError as e:
            print(f"vitaccel: config error: {printable(e)}", file=sys.stderr)
            return 2
        except (ValueError, NotImplementedError, RuntimeError, OSError, ImportError) as e:
            print(f"vitaccel: {printable(e)}", file=sys.stderr)  # one line, control characters escaped
            return 2


if __name__ == "__main__":
    sys.exit(main())
