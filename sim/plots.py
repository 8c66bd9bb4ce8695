"""PNG plots of cycle reports: the latency breakdown per layer, and a roofline of every kernel.

matplotlib is imported only here, only when a plot is asked for: it is not on a PYNQ image by default.
"""
from __future__ import annotations

from pathlib import Path
from typing import Dict, List, Optional

from vitaccel.sim.report import Report


def _plt():
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise RuntimeError("plots need matplotlib: pip install matplotlib (or pip install 'vitaccel[models]')") from None
    return plt


def plot_breakdown(report: Report, path, *, baselines: Optional[Dict[str, Report]] = None) -> Path:
    """Stacked bars of compute / preprocess / data cycles per layer (and per baseline, if given)."""
    plt = _plt()
    rows = report.by_layer()
    layers = [k for k in rows if k is not None]
    ncols = 2 if baselines else 1
    fig, axes = plt.subplots(1, ncols, figsize=(6 * ncols + 1, 4), squeeze=False)
    ax = axes[0, 0]
    bottom = [0.0] * len(layers)
    us = 1.0 / report.config.clock_mhz
    for part, color in (("compute", "#4477aa"), ("preprocess", "#ddaa33"), ("data", "#bb5566")):
        vals = [rows[layer][part] * us for layer in layers]
        ax.bar([str(x) for x in layers], vals, bottom=bottom, label=part, color=color)
        bottom = [b + v for b, v in zip(bottom, vals)]
    ax.set_xlabel("layer")
    ax.set_ylabel("latency (us)")
    ax.set_title(f"{report.latency_us:.1f} us per image on '{report.config.name}'")
    ax.legend()
    if baselines:
        ax2 = axes[0, 1]
        names = list(baselines)
        base = [baselines[n].breakdown for n in names]
        bottom = [0.0] * len(names)
        for part, color in (("compute", "#4477aa"), ("preprocess", "#ddaa33"), ("data", "#bb5566")):
            vals = [b[part] * us for b in base]
            ax2.bar(names, vals, bottom=bottom, label=part, color=color)
            bottom = [b + v for b, v in zip(bottom, vals)]
        ax2.set_ylabel("latency (us)")
        ax2.set_title("baselines, same hardware")
        ax2.tick_params(axis="x", rotation=30)
    fig.tight_layout()
    out = Path(path)
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return out


def plot_roofline(report: Report, path) -> Path:
    """Each kernel as a point (MACs per DRAM byte, achieved MACs per cycle) under the config's roofline."""
    plt = _plt()
    cfg = report.config
    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    xs: List[float] = []
    for kind, marker in (("gemm", "s"), ("attention", "o")):
        pts = [(k.macs / max(k.dram_bytes, 1), k.macs / max(k.total_cycles, 1)) for k in report.kernels
               if k.kernel == kind]
        if pts:
            ax.scatter([p[0] for p in pts], [p[1] for p in pts], marker=marker, label=kind, alpha=0.7)
            xs += [p[0] for p in pts]
    lo = min(xs + [cfg.ridge_macs_per_byte]) / 4
    hi = max(xs + [cfg.ridge_macs_per_byte]) * 4
    grid = [lo * (hi / lo) ** (i / 200) for i in range(201)]
    ax.plot(grid, [min(cfg.peak_macs_per_cycle, x * cfg.bytes_per_cycle) for x in grid], "k-", lw=1.5,
            label=f"roofline ({cfg.peak_macs_per_cycle} MAC/cycle, {cfg.bytes_per_cycle:.1f} B/cycle)")
    ax.axvline(cfg.ridge_macs_per_byte, color="grey", ls=":", lw=1)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("arithmetic intensity (MACs per DRAM byte)")
    ax.set_ylabel("achieved MACs per cycle")
    ax.set_title(f"roofline, config '{cfg.name}'")
    ax.legend(fontsize=8)
    fig.tight_layout()
    out = Path(path)
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return out


def plot_latency_spread(per_image_us: List[float], path, *, title: str = "") -> Path:
    """Histogram of the predicted latency per image (ReViT: the work depends on the image), mean marked."""
    plt = _plt()
    vals = [float(v) for v in per_image_us]
    if not vals:
        raise ValueError("no per-image latencies to plot")
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.hist(vals, bins=min(30, max(5, len(vals) // 4)), color="#4477aa")
    mean = sum(vals) / len(vals)
    ax.axvline(mean, color="#bb5566", label=f"mean {mean:.1f} us")
    ax.set_xlabel("predicted latency per image (us)")
    ax.set_ylabel("images")
    ax.set_title(title or f"{len(vals)} images: {min(vals):.1f} to {max(vals):.1f} us")
    ax.legend()
    fig.tight_layout()
    out = Path(path)
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return out
