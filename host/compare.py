"""``vitaccel compare``: several bundles (ViTCoD and ReViT alike) and every baseline of each, on the same
images and the same hardware budget, in one table: accuracy, latency, utilisation, DRAM bytes and an energy
proxy. Bits and cycles come from the simulator (the NumPy models every backend is bit-exact with).

**Hardware budget.** The two accelerators have different configs; a budget names one per accelerator:

* ``paper``: ReViT's Table III, where the ReViT paper compares them: ReViT ``revit-paper`` (64 x 64 RBSP
  array, 1 GHz, 256 GB/s HBM) and ViTCoD as Table III configures it, ``configs/reproduce/table3-vitcod.json``
  (128 lines x 32 MACs, 1 GHz, 256 GB/s);
* ``zcu104``, ``kv260``, ``pynq-z2``: each accelerator's config for that board (the same part, clock and
  DRAM: ``zcu104`` / ``revit-zcu104``, ...).

A config name (or file) given instead applies to the bundles of its accelerator; the others keep the budget.
A budget's name wins over the ViTCoD config of the same name (they agree for the boards); ViTCoD's own paper
config (500 MHz, 76.8 GB/s) is ``configs/paper.json``.

**Rows.** Per bundle, the bundle as exported (top-1 from its integer model on these images) and its
baselines on the same config: ViTCoD's ``vitcod_no_ae``, ``pruning_only``, ``reordering_only``, ``sanger``,
``dense`` (:func:`vitaccel.sim.vitcod.model.model_baselines`); ReViT's ``no_reconfig``, ``no_differential``,
``in_order``, ``no_pruning``, ``dense`` (:mod:`vitaccel.sim.revit.bundle_cycles`). A baseline that computes
the same bits has the bundle's top-1; one that computes another function (dense attention, no pruning,
another mask) is timing only (top-1 blank), except ReViT's ``no_pruning``, whose logits the same pass computes.

**Energy proxy** (per image, the same constants for every design, documented rather than measured):
``MACs x 0.23 pJ + DRAM bytes x 160 pJ``: an int8 multiply-add and a DRAM access at 45 nm (Horowitz,
"Computing's energy problem", ISSCC 2014: 8-bit multiply 0.2 pJ, 8-bit add 0.03 pJ; DRAM 1.3-2.6 nJ per 64
bits, the low end). It leaves out on-chip SRAM and control, and counts a bit-serial RBSP MAC as a whole int8
MAC (its saving from skipped Booth digits shows in its latency, not in this proxy). ViTCoD's latency is the
same for every image (fixed masks); ReViT's is per image (mean, min, max).
"""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Union

import numpy as np

from vitaccel.hwconfig import HardwareConfig, load_config

__all__ = ["BUDGETS", "E_MAC_PJ", "E_DRAM_PJ_PER_BYTE", "Row", "CompareResult", "compare_bundles", "resolve_configs"]

_REPRO = Path(__file__).resolve().parents[1] / "configs" / "reproduce"

#: Budget name -> accelerator -> config (a shipped name or a path).
BUDGETS: Dict[str, Dict[str, str]] = {
    "paper": {"vitcod": str(_REPRO / "table3-vitcod.json"), "revit": "revit-paper"},
    "zcu104": {"vitcod": "zcu104", "revit": "revit-zcu104"},
    "kv260": {"vitcod": "kv260", "revit": "revit-kv260"},
    "pynq-z2": {"vitcod": "pynq-z2", "revit": "revit-pynq-z2"},
}
E_MAC_PJ = 0.23
E_DRAM_PJ_PER_BYTE = 160.0



@dataclasses.dataclass
class Row:
    bundle: str
    method: str
    variant: str                 # the bundle itself ("vitcod", "revit") or a baseline's name
    accelerator: str
    config: str
    top1: Optional[float]
    latency_us: float            # mean over the images
    latency_us_min: float
    latency_us_max: float
    cycles: float
    speedup_vs_dense: float      # this bundle's dense baseline over this row, same config
    utilisation: float           # useful MACs over the array's peak in the row's time (mean)
    macs: float                  # per image (mean)
    dram_bytes: float            # per image (mean)
    bits: str                    # "the bundle's" or "timing only"

    @property
    def energy_uj(self) -> float:
        return (self.macs * E_MAC_PJ + self.dram_bytes * E_DRAM_PJ_PER_BYTE) * 1e-6

    def to_dict(self) -> Dict[str, Any]:
        d = dataclasses.asdict(self)
        d["energy_proxy_uj"] = self.energy_uj
        return d


@dataclasses.dataclass
class CompareResult:
    rows: List[Row]
    images: int
    budget: str
    configs: Dict[str, str]
    #: Per ReViT bundle: its mean token count per layer over the images (pruning), and without pruning.
    tokens: Dict[str, Dict[str, List[float]]] = dataclasses.field(default_factory=dict)

    def to_dict(self) -> Dict[str, Any]:
        return {"images": self.images, "budget": self.budget, "configs": self.configs, "tokens": self.tokens,
                "energy_proxy": {"mac_pj": E_MAC_PJ, "dram_pj_per_byte": E_DRAM_PJ_PER_BYTE},
                "rows": [r.to_dict() for r in self.rows]}

    def table(self) -> str:
        ref = self.rows[0].latency_us if self.rows else 1.0
        head = (f"{'bundle':<12} {'variant':<16} {'config':<14} {'top-1':>7} {'latency us':>11} {'min':>9} {'max':>9} "
                f"{'x first':>8} {'vs dense':>8} {'util':>6} {'MMACs':>8} {'DRAM MB':>8} {'energy uJ':>9}")
        lines = [f"{self.images} images, budget '{self.budget}' "
                 f"({', '.join(f'{a}: {Path(c).stem}' for a, c in self.configs.items())}); energy proxy = MACs x "
                 f"{E_MAC_PJ} pJ + DRAM bytes x {E_DRAM_PJ_PER_BYTE:g} pJ", head, "-" * len(head)]
        for r in self.rows:
            top1 = f"{100 * r.top1:6.2f}%" if r.top1 is not None else f"{'-':>7}"
            lines.append(f"{r.bundle[:12]:<12} {r.variant:<16} {Path(r.config).stem[:14]:<14} {top1} "
                         f"{r.latency_us:>11.1f} {r.latency_us_min:>9.1f} {r.latency_us_max:>9.1f} "
                         f"{r.latency_us / ref:>8.3f} {r.speedup_vs_dense:>7.2f}x {100 * r.utilisation:>5.1f}% "
                         f"{r.macs / 1e6:>8.2f} {r.dram_bytes / 1e6:>8.3f} {r.energy_uj:>9.2f}")
        return "\n".join(lines)

    def plot(self, path) -> Path:
        """Bars of latency (mean, with the min-max range) and of the energy proxy, one per row."""
        from vitaccel.sim.plots import _plt

        plt = _plt()
        labels = [f"{r.bundle}:{r.variant}" for r in self.rows]
        colors = ["#4477aa" if r.accelerator == "vitcod" else "#228833" for r in self.rows]
        fig, axes = plt.subplots(1, 2, figsize=(13, 0.45 * len(labels) + 1.5), squeeze=False)
        y = np.arange(len(labels))
        lat = np.array([r.latency_us for r in self.rows])
        err = np.array([[r.latency_us - r.latency_us_min for r in self.rows],
                        [r.latency_us_max - r.latency_us for r in self.rows]])
        ax = axes[0, 0]
        ax.barh(y, lat, xerr=err, color=colors)
        ax.set_yticks(y, labels)
        ax.invert_yaxis()
        ax.set_xlabel("latency per image (us), min-max over the images")
        ax.set_title(f"budget '{self.budget}', {self.images} images (blue ViTCoD, green ReViT)")
        ax2 = axes[0, 1]
        ax2.barh(y, [r.energy_uj for r in self.rows], color=colors)
        ax2.set_yticks(y, [""] * len(labels))
        ax2.invert_yaxis()
        ax2.set_xlabel(f"energy proxy per image (uJ): MACs x {E_MAC_PJ} pJ + DRAM B x {E_DRAM_PJ_PER_BYTE:g} pJ")
        fig.tight_layout()
        out = Path(path)
        fig.savefig(out, dpi=120)
        plt.close(fig)
        return out


def resolve_configs(configs: Sequence[Union[str, Path]] = ()) -> tuple:
    """``(budget name, {accelerator: config})`` from ``--config`` values: at most one budget name (default
    ``paper``), then config names or files, each replacing its accelerator's."""
    budget = "paper"
    explicit: Dict[str, str] = {}
    names = [str(c) for c in configs]
    budgets = [c for c in names if c in BUDGETS]
    if len(budgets) > 1:
        raise ValueError(f"more than one hardware budget given ({', '.join(budgets)}); pick one of {', '.join(BUDGETS)}")
    if budgets:
        budget = budgets[0]
    for c in names:
        if c in BUDGETS:
            continue
        cfg = load_config(c)
        if cfg.accelerator in explicit:
            raise ValueError(f"two configs for accelerator {cfg.accelerator!r}: {explicit[cfg.accelerator]} and {c}")
        explicit[cfg.accelerator] = c
    return budget, {**BUDGETS[budget], **explicit}


def _stats(vals) -> tuple:
    a = np.asarray(vals, np.float64)
    return float(a.mean()), float(a.min()), float(a.max())


def _row(name, method, variant, cfg: HardwareConfig, config, reports, top1, dense_cycles, bits) -> Row:
    cyc = [r.total_cycles for r in reports]
    mean, lo, hi = _stats(cyc)
    us = 1.0 / cfg.clock_mhz
    return Row(name, method, variant, cfg.accelerator, str(config), top1, mean * us, lo * us, hi * us, mean,
               dense_cycles / mean if mean else 0.0, float(np.mean([r.mac_utilisation for r in reports])),
               float(np.mean([r.macs for r in reports])), float(np.mean([r.dram_bytes for r in reports])), bits)


def _top1(logits, labels) -> Optional[float]:
    if labels is None or not len(labels):
        return None
    return float(np.mean(np.argmax(logits, 1) == labels))


def compare_bundles(bundles: Sequence, images: np.ndarray, labels: Optional[np.ndarray] = None, *,
                    configs: Sequence[Union[str, Path]] = (), baselines: bool = True,
                    progress: bool = False) -> CompareResult:
    """Every bundle (paths or loaded bundles) and its baselines over ``images`` (float32 (B, C, H, W)) on one
    hardware budget (``configs``: see :func:`resolve_configs`)."""
    from vitaccel.host.bundle import Bundle, load_bundle

    if not len(bundles):
        raise ValueError("compare needs at least one bundle")
    imgs = np.asarray(images, np.float32)
    if not len(imgs):
        raise ValueError("compare needs at least one image")
    budget, by_accel = resolve_configs(configs)
    rows: List[Row] = []
    used: Dict[str, str] = {}
    tokens: Dict[str, Dict[str, List[float]]] = {}
    loaded = []
    for b in bundles:
        if isinstance(b, _Named):
            name, bundle = Path(b.path).stem, b.bundle
        elif isinstance(b, Bundle):
            name, bundle = b.method, b
        else:
            name, bundle = Path(str(b)).stem, load_bundle(b)
        loaded.append((name, bundle))
    names = [n for n, _ in loaded]
    for k, (n, bd) in enumerate(loaded):       # two bundles of one name (a.vcb in two folders): number them
        if names.count(n) > 1:
            loaded[k] = (f"{n}#{k}", bd)
    shapes = {(bd.model.in_chans, bd.model.img_size) for _, bd in loaded}
    if len(shapes) > 1:
        raise ValueError(f"the bundles take different inputs ({sorted(shapes)}): compare them on images of one size")
    for name, bundle in loaded:
        acc = "revit" if bundle.method == "revit" else "vitcod"
        config = by_accel[acc]
        cfg = load_config(config)
        used[acc] = config
        if acc == "revit":
            from vitaccel.sim.revit.bundle_cycles import BASELINES, ENGINE_VARIANTS, bundle_reports

            res = bundle_reports(bundle, imgs, cfg, baselines=baselines, progress=progress)
            tokens[name] = {"pruned": np.mean(res["tokens"], 0).round(1).tolist()}
            if res["tokens_no_pruning"]:
                tokens[name]["no_pruning"] = np.mean(res["tokens_no_pruning"], 0).round(1).tolist()
            top1 = _top1(res["logits"], labels)
            dense = float(np.mean([r.total_cycles for r in res["dense"]])) if baselines else 0.0
            rows.append(_row(name, "revit", "revit", cfg, config, res["revit"], top1, dense, "the bundle's"))
            for v in (BASELINES if baselines else ()):
                same = v in ENGINE_VARIANTS
                t1 = top1 if same else (_top1(res["logits_no_pruning"], labels) if v == "no_pruning" else None)
                rows.append(_row(name, "revit", v, cfg, config, res[v], t1, dense,
                                 "the bundle's" if same else ("its own (no pruning)" if v == "no_pruning" else "timing only")))
        else:
            from vitaccel.sim.vitcod.model import compile_program, forward_batched, model_baselines

            prog = compile_program(bundle, cfg)
            logits = forward_batched(prog, imgs, 16)
            top1 = _top1(logits, labels)
            base = model_baselines(prog)
            dense = float(base["dense"].total_cycles)
            main = base.pop("vitcod") if bundle.has("ae") else base["vitcod_no_ae"]
            if not bundle.has("ae"):
                base.pop("vitcod", None)
                base.pop("vitcod_no_ae", None)
            rows.append(_row(name, bundle.method, bundle.method, cfg, config, [main], top1, dense, "the bundle's"))
            # Every ViTCoD baseline computes another function (no AE round trip, other masks, dense
            # attention): timing only.
            for v, rep in (base.items() if baselines else ()):
                rows.append(_row(name, bundle.method, v, cfg, config, [rep], None, dense, "timing only"))
    return CompareResult(rows, len(imgs), budget, used, tokens)


def compare_command(args) -> int:
    """The body of ``vitaccel compare`` (arguments in :mod:`vitaccel.cli`)."""
    import json
    import sys

    from vitaccel.host.bundle import BundleError, load_bundle
    from vitaccel.host.run import demo_dir, emit, load_images
    from vitaccel.safetext import printable

    try:
        bundles = [load_bundle(p) for p in args.bundles]
    except BundleError as e:
        print(f"vitaccel: {e}", file=sys.stderr)
        return 2
    demo = demo_dir().resolve()
    images = args.images
    if images is None:
        if not all(Path(p).resolve().parent == demo for p in args.bundles):
            print("vitaccel: --images is needed (the demo images belong to the shipped demo bundles)", file=sys.stderr)
            return 2
        images = str(demo / "test_images.npz")
    dims = bundles[0].model
    imgs, labels = load_images(images, size=dims.img_size, chans=dims.in_chans, mean=args.mean, std=args.std,
                               num_classes=min(b.model.num_classes for b in bundles))
    if args.limit is not None:
        imgs = imgs[:args.limit]
        labels = None if labels is None else labels[:args.limit]
    try:
        res = compare_bundles([_Named(p, b) for p, b in zip(args.bundles, bundles)], imgs, labels, configs=args.config or (), baselines=not args.no_baselines,
                              progress=not args.no_progress and not args.json)
    except ValueError as e:
        print(f"vitaccel: {e}", file=sys.stderr)
        return 2
    doc = res.to_dict()
    doc["images_from"] = images
    doc["bundles"] = [printable(str(p)) for p in args.bundles]
    if args.plot:
        out = Path(args.plot)
        out.mkdir(parents=True, exist_ok=True)
        doc["plots"] = [str(res.plot(out / "compare.png"))]
        (out / "compare.json").write_text(json.dumps(doc, indent=2, default=str))
        doc["plots"].append(str(out / "compare.json"))
    return emit(doc, res.table(), as_json=args.json)


class _Named:
    """A loaded bundle with the path it came from (for the row names)."""

    def __init__(self, path, bundle):
        self.path, self.bundle = str(path), bundle
