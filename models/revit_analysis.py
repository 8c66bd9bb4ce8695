"""ReViT's Fig. 5: effectual bits (non-zero radix-4 Booth digits) of raw vs delta int8 features, and group maps.

    python -m vitaccel.models.revit_analysis [--bundle models/demo/revit.vcb] [--out models/demo]

Two sources, layer by layer, the features being each layer's qkv input (the int8 LayerNorm-1 output,
CLS excluded), the deltas those features minus their LSH group's integer centroid (``sim.revit``):

* the shipped ReViT demo bundle on held-out digits, through the integer reference (``sim.revit.model``);
* real photos shipped with scikit-image (``skimage.data``: astronaut, chelsea, coffee, rocket,
  immunohistochemistry, hubble_deep_field), resized to 224, through a DeiT-Small with timm's keys whose
  weights are RANDOMLY INITIALISED (seeded): no pretrained weights can be downloaded here, so its groups
  follow colour, texture and position embeddings, not learned semantics. The paper measured DeiT-Base,
  16-bit, on ImageNet. Features are quantised per layer (one scale per layer, 99.99th percentile of |x|
  over the photos) and grouped by the integer hash of ``make_lsh(384, 4, gamma, seed + layer)``.

Raw values are 8-bit (at most 4 Booth terms), deltas 10-bit (9 bits of value, at most 5 terms). Writes
``revit_fig5.json`` (per layer: the CDF over 0..5 terms, the zero-term share and mean terms, raw and
delta), ``revit_fig5_cdf.png`` and ``revit_groups.png`` (group maps drawn over the photos and digits).
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from vitaccel.sim.quant import quantize
from vitaccel.sim.revit import booth_terms, centroids_int, deltas_int, hash_params, lsh_groups_int

__all__ = ["term_stats", "photo_features", "demo_features", "plot_cdf", "plot_group_maps", "PHOTOS", "main"]

PHOTOS = ("astronaut", "chelsea", "coffee", "rocket", "immunohistochemistry", "hubble_deep_field")
MAX_TERMS = 5


def term_stats(raw: Sequence[np.ndarray], delta: Sequence[np.ndarray]) -> Dict[str, object]:
    """Per layer and overall: CDF of Booth terms (fraction with <= t terms, t = 0..5), zero-term share, mean."""
    def one(vals: np.ndarray, bits: int) -> Dict[str, object]:
        t = booth_terms(vals.ravel(), bits)
        hist = np.bincount(t, minlength=MAX_TERMS + 1)[:MAX_TERMS + 1]
        return {"cdf": (np.cumsum(hist) / max(1, t.size)).round(4).tolist(), "zero_share": float(np.mean(t == 0)),
                "mean_terms": float(t.mean()) if t.size else 0.0, "values": int(t.size)}

    layers = [{"raw": one(r, 8), "delta": one(d, 10)} for r, d in zip(raw, delta)]
    allr = np.concatenate([r.ravel() for r in raw])
    alld = np.concatenate([d.ravel() for d in delta])
    return {"layers": layers, "all": {"raw": one(allr, 8), "delta": one(alld, 10)}}


def photo_images(size: int = 224) -> Tuple[List[str], np.ndarray]:
    """The photos as float32 (B, 3, size, size), ImageNet-normalised, and their names."""
    import torch
    import torch.nn.functional as F
    from skimage import data as skdata

    names, imgs = [], []
    for name in PHOTOS:
        a = getattr(skdata, name)()
        if a.ndim == 2:
            a = np.stack([a] * 3, -1)
        a = a[..., :3].astype(np.float32) / (255.0 if a.dtype == np.uint8 else float(a.max() or 1))
        h, w = a.shape[:2]
        s = min(h, w)
        a = a[(h - s) // 2:(h - s) // 2 + s, (w - s) // 2:(w - s) // 2 + s]          # centre square crop
        t = torch.from_numpy(np.ascontiguousarray(a)).permute(2, 0, 1)[None]
        t = F.interpolate(t, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
        imgs.append(t[0].numpy())
        names.append(name)
    x = np.stack(imgs)
    mean = np.array([0.485, 0.456, 0.406], np.float32)[:, None, None]
    std = np.array([0.229, 0.224, 0.225], np.float32)[:, None, None]
    return names, ((x - mean) / std).astype(np.float32)


def photo_features(images: np.ndarray, *, num_groups: int = 4, gamma: float = 1.0, seed: int = 0,
                   model_seed: int = 0, pct: float = 99.99):
    """Raw int8 features, deltas and groups per layer of a random-init DeiT-Small over ``images``."""
    import torch

    from .deit import deit_small
    from .revit import make_lsh

    torch.manual_seed(model_seed)
    model = deit_small().eval()
    feats: List[np.ndarray] = []
    hooks = [blk.norm1.register_forward_hook(lambda m, i, o: feats.append(o.detach()[:, 1:].numpy()))
             for blk in model.blocks]
    with torch.no_grad():
        model(torch.from_numpy(images))
    for h in hooks:
        h.remove()
    raw, delta, groups = [], [], []
    for layer, f in enumerate(feats):
        s_in = float(np.float32(np.percentile(np.abs(f), pct) / 127.0))
        alpha, beta = make_lsh(f.shape[-1], num_groups, gamma, seed + layer)
        A, B, m, s = hash_params(alpha.astype(np.float32), beta.astype(np.float32), gamma, s_in)
        r8 = quantize(f, s_in)
        g = np.stack([lsh_groups_int(x, A, B, m, s) for x in r8])
        d = np.stack([deltas_int(x, gi, centroids_int(x, gi, num_groups)[0]) for x, gi in zip(r8, g)])
        raw.append(r8), delta.append(d), groups.append(g)
    return raw, delta, groups


def demo_features(bundle_path, images: np.ndarray):
    """Raw int8 features, deltas and groups per layer of the ReViT demo bundle (integer reference)."""
    from vitaccel.host.bundle import load_bundle
    from vitaccel.sim.revit.model import run_revit

    res = run_revit(load_bundle(bundle_path), images, trace=True)
    depth = len(res.traces[0])
    raw = [np.concatenate([tr[l]["h8"][1:] for tr in res.traces]) for l in range(depth)]
    delta = [np.concatenate([tr[l]["deltas"] for tr in res.traces]) for l in range(depth)]
    groups = [[tr[l]["groups"] for tr in res.traces] for l in range(depth)]
    keeps = [tr[l].get("keep") for tr in res.traces for l in range(depth)]
    return raw, delta, groups, res, keeps


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def plot_cdf(stats: Dict[str, Dict[str, object]], path) -> None:
    """One panel per source: the CDF of Booth terms per layer, raw (solid) and delta (dashed), like Fig. 5."""
    plt = _plt()
    fig, axes = plt.subplots(1, len(stats), figsize=(4.2 * len(stats), 3.3), squeeze=False)
    t = np.arange(MAX_TERMS + 1)
    for ax, (title, st) in zip(axes[0], stats.items()):
        layers = st["layers"]
        cmap = plt.get_cmap("viridis")
        for i, rec in enumerate(layers):
            c = cmap(i / max(1, len(layers) - 1))
            ax.step(t, rec["raw"]["cdf"], where="post", color=c, lw=1.0)
            ax.step(t, rec["delta"]["cdf"], where="post", color=c, lw=1.0, ls="--")
        a = st["all"]
        ax.set_title(f"{title}\nzero terms: raw {100 * a['raw']['zero_share']:.0f}%, delta "
                     f"{100 * a['delta']['zero_share']:.0f}% (paper 28% / 35%)", fontsize=8)
        ax.set_xlabel("effectual bits (non-zero radix-4 Booth digits)", fontsize=8)
        ax.set_ylabel("cumulative share of values", fontsize=8)
        ax.set_ylim(0, 1.02)
        ax.plot([], [], "k-", label="raw int8")
        ax.plot([], [], "k--", label="delta to group centroid")
        ax.legend(fontsize=7, loc="lower right")
        ax.tick_params(labelsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def plot_group_maps(panels: List[Tuple[str, np.ndarray, np.ndarray, Optional[np.ndarray]]], path, cols: int = 6) -> None:
    """Each panel: (title, image (H, W, 3) or (H, W) in [0, 1], groups (grid*grid,), alive mask or None),
    the group of each patch drawn over the image (pruned patches hatched out in grey)."""
    plt = _plt()
    rows = -(-len(panels) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(1.7 * cols, 1.85 * rows), squeeze=False)
    colors = np.array([[0.9, 0.1, 0.1], [0.1, 0.5, 0.95], [0.1, 0.8, 0.2], [0.95, 0.8, 0.1],
                       [0.7, 0.2, 0.9], [0.1, 0.9, 0.9], [1.0, 0.5, 0.0], [0.5, 0.5, 0.5]])
    for ax in axes.ravel():
        ax.axis("off")
    for ax, (title, img, g, alive) in zip(axes.ravel(), panels):
        grid = int(round(np.sqrt(len(g))))
        over = colors[np.asarray(g) % len(colors)].reshape(grid, grid, 3)
        if alive is not None:
            over = np.where(np.asarray(alive).reshape(grid, grid, 1), over, 0.25)
        ax.imshow(img, cmap="gray" if img.ndim == 2 else None, extent=(0, 1, 1, 0))
        ax.imshow(over, alpha=0.45, interpolation="nearest", extent=(0, 1, 1, 0))
        ax.set_title(title, fontsize=6)
    fig.tight_layout()
    fig.savefig(path, dpi=55)
    plt.close(fig)


def main(argv: Optional[List[str]] = None) -> dict:
    here = Path(__file__).resolve().parent / "demo"
    p = argparse.ArgumentParser(prog="python -m vitaccel.models.revit_analysis", description=__doc__.split("\n\n")[0])
    p.add_argument("--bundle", type=Path, default=here / "revit.vcb")
    p.add_argument("--images", type=Path, default=here / "test_images.npz", help="held-out digits (demo source)")
    p.add_argument("--demo-images", type=int, default=60, help="how many held-out digits")
    p.add_argument("--out", type=Path, default=here)
    p.add_argument("--gamma", type=float, default=1.0)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    import torch

    torch.set_num_threads(1)
    t0 = time.perf_counter()
    names, photos = photo_images()
    raw_p, delta_p, groups_p = photo_features(photos, gamma=args.gamma, seed=args.seed)
    digits_x = np.load(args.images)["images"][:args.demo_images]
    raw_d, delta_d, groups_d, res, _ = demo_features(args.bundle, digits_x)
    stats = {"ReViT demo (digits, int8 bundle)": term_stats(raw_d, delta_d),
             "DeiT-Small random init (skimage photos)": term_stats(raw_p, delta_p)}
    args.out.mkdir(parents=True, exist_ok=True)
    plot_cdf(stats, args.out / "revit_fig5_cdf.png")
    mean = np.array([0.485, 0.456, 0.406])[:, None, None]
    std = np.array([0.229, 0.224, 0.225])[:, None, None]
    panels = []
    for layer in (0, 6):
        for i, n in enumerate(names):
            img = np.clip(photos[i] * std + mean, 0, 1).transpose(1, 2, 0)
            panels.append((f"{n}, layer {layer}", img, groups_p[layer][i], None))
    for layer in range(len(groups_d)):
        for i in range(3):
            tr = res.traces[i][layer]
            g = np.full(196, -1)
            alive = np.zeros(196, bool)
            pos = _positions(res.traces[i], layer)
            real = pos < 196
            g[pos[real]] = tr["groups"][:len(pos)][real]
            alive[pos[real]] = True
            panels.append((f"digit {i}, layer {layer}", digits_x[i, 0], np.where(g < 0, 7, g), alive))
    plot_group_maps(panels, args.out / "revit_groups.png")
    out = {"sources": stats, "photos": list(names), "demo_images": int(len(digits_x)),
           "photo_model": "deit_small, timm keys, random init (torch seed 0), 224x224, 197 tokens",
           "groups": {"num_groups": 4, "gamma": args.gamma, "seed": args.seed}, "seconds": round(time.perf_counter() - t0, 1)}
    (args.out / "revit_fig5.json").write_text(json.dumps(out, indent=1) + "\n")
    for k, st in stats.items():
        a = st["all"]
        print(f"{k}: zero-term share raw {100 * a['raw']['zero_share']:.1f}% delta {100 * a['delta']['zero_share']:.1f}%, "
              f"mean terms raw {a['raw']['mean_terms']:.2f} delta {a['delta']['mean_terms']:.2f}")
    return out


def _positions(trace: List[dict], layer: int) -> np.ndarray:
    """Original patch index (0..195; 196+ for package tokens) of each non-CLS token entering ``layer``."""
    pos = np.arange(len(trace[0]["groups"]))
    nxt = 10 ** 6
    for l in range(layer):
        keep = trace[l].get("keep")
        if keep is not None:
            pos = np.concatenate([pos[keep], [nxt]])
            nxt += 1
    return pos


if __name__ == "__main__":
    main()
