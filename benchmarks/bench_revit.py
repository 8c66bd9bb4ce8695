"""ReViT's Fig. 18 ablations and effectual bits, measured side by side with the paper, and the simulator's speed.

    python benchmarks/bench_revit.py [--images N] [--photos N] [--skip-small]

Two workloads, each on ``revit-paper`` (Table III: 64 x 64 RBSPs, 1 GHz, 256 GB/s):

1. the shipped demo ReViT bundle (a digits ViT: N 197, D 96, 3 heads, 4 layers, trained) over its first
   ``--images`` held-out images;
2. DeiT-Small dimensions (224 px, 16 px patches, N 197, D 384, 6 heads, 12 layers, MLP 1536) over real photos
   from ``skimage.data``: a **randomly initialised** DeiT-Small with timm's state_dict keys (no pretrained
   weights ship here), converted to ReViT (G = 4, joint), pruning EViT's schedule (patch keep 0.7 at blocks
   3, 6 and 9; every group kept), calibrated and exported on the same photos. Its groups and CLS attention are
   an untrained model's, so it measures the accelerator on DeiT-Small's shapes, not the paper's trained model.

Per workload: each baseline's whole-model latency over ReViT's (mean over images of the per-image ratio),
DRAM saved by pruning and by differential attention, the mean effectual Booth digits of the qkv operands
raw against delta (the paper: 3 effectual bits on DeiT-Small at 8 bits), and the RBSP lane utilisation.
Then the simulator's speed on one DeiT-Small image: bits and cycles through the NumPy ``revit_top`` (the
``sim`` backend's work), the goal 1 s on one core. One thread; ratios only come from one run.
"""
from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np  # noqa: E402

PAPER = {"no_reconfig": 1.8, "no_differential": 1.4, "no_pruning": 3.4, "in_order": 1.15,
         "dram_saved_pruning_%": 58.8, "dram_saved_differential_%": 28.0, "effectual_bits_deit_small": 3.0}
PHOTOS = ("astronaut", "coffee", "chelsea", "rocket", "hubble_deep_field", "immunohistochemistry", "colorwheel",
          "motorcycle_left", "retina", "cat")
MEAN, STD = np.array([0.485, 0.456, 0.406], np.float32), np.array([0.229, 0.224, 0.225], np.float32)


def photos(n: int, size: int = 224) -> np.ndarray:
    """Up to ``n`` real RGB photos from skimage.data (those bundled with it), centre-cropped and resized to
    ``size``, ImageNet-normalised: float32 (n, 3, size, size)."""
    import skimage.data as sd
    from PIL import Image

    out = []
    for name in PHOTOS:
        if len(out) >= n:
            break
        try:
            a = np.asarray(getattr(sd, name)())
        except Exception:          # a photo skimage would have to download: skip it
            continue
        if a.ndim != 3 or a.shape[2] < 3:
            continue
        a = a[..., :3]
        h, w = a.shape[:2]
        s = min(h, w)
        a = a[(h - s) // 2:(h - s) // 2 + s, (w - s) // 2:(w - s) // 2 + s]
        a = np.asarray(Image.fromarray(a).resize((size, size), Image.BICUBIC), np.float32) / 255.0
        out.append(((a - MEAN) / STD).transpose(2, 0, 1))
    if not out:
        raise RuntimeError("no photo could be read from skimage.data")
    return np.stack(out).astype(np.float32)


def deit_small_revit(images: np.ndarray, seed: int = 0):
    """A random DeiT-Small converted to ReViT and exported on ``images`` (the calibration set)."""
    import torch

    from vitaccel.models import revit
    from vitaccel.models.deit import VisionTransformer
    from vitaccel.models.revit_export import build_revit_bundle
    from vitaccel.models.export import activation_scales

    torch.manual_seed(seed)
    dense = VisionTransformer(img_size=224, patch_size=16, in_chans=3, num_classes=1000, embed_dim=384, depth=12,
                              num_heads=6).eval()
    model = revit.convert_to_revit(dense, num_groups=4, gamma=1.0, keep={3: (1.0, 0.7), 6: (1.0, 0.7), 9: (1.0, 0.7)},
                                   seed=seed).eval()
    x = torch.as_tensor(images)
    scales = activation_scales(model, [x], progress=False)
    return build_revit_bundle(model, scales, config="revit-paper")


def effectual(bundle, images) -> dict:
    from vitaccel.sim.revit.booth import booth_terms
    from vitaccel.sim.revit.model import run_revit

    raw, delta = [], []
    for tr in run_revit(bundle, images, trace=True).traces:
        for rec in tr:
            raw.append(booth_terms(rec["h8"][1:]).mean())
            delta.append(booth_terms(rec["deltas"], 10).mean())
    return {"booth_digits_raw": float(np.mean(raw)), "booth_digits_delta": float(np.mean(delta))}


def ablations(bundle, images) -> dict:
    from vitaccel.sim.revit.bundle_cycles import bundle_reports, summarise

    t0 = time.perf_counter()
    res = bundle_reports(bundle, images, "revit-paper", baselines=True)
    doc = summarise(res)
    out = {k: v["ratio_to_revit"]["mean"] for k, v in doc["baselines"].items()}
    d = [r.dram_bytes for r in res["revit"]]
    out["dram_saved_pruning_%"] = 100 * (1 - np.mean(d) / np.mean([r.dram_bytes for r in res["no_pruning"]]))
    out["dram_saved_differential_%"] = 100 * (1 - np.mean(d) / np.mean([r.dram_bytes for r in res["no_differential"]]))
    out["latency_us"] = doc["latency_us_per_image"]["mean"]
    out["tokens_per_layer"] = np.mean(res["tokens"], 0).round(1).tolist()
    out["seconds_per_image_with_baselines"] = (time.perf_counter() - t0) / len(images)
    return out


def sim_speed(bundle, image) -> float:
    from vitaccel.host.revit.program import compile_device_program
    from vitaccel.sim.revit.top import run_top

    dp = compile_device_program(bundle, "revit-paper", batch=1)
    w = dp.window_with(dp.prepare_input(image[None]))
    s = dp.start(1)
    best = float("inf")
    for _ in range(2):
        win = w.copy()
        t0 = time.perf_counter()
        res = run_top(win, s.desc_off, s.count, "revit-paper", cycles=True)
        best = min(best, time.perf_counter() - t0)
        assert res.status == 0, hex(res.status)
    return best


def show(name: str, abl: dict, eff: dict) -> None:
    print(f"\n{name}: ReViT {abl['latency_us']:.1f} us per image; tokens per layer {abl['tokens_per_layer']}")
    print(f"{'row':<34} {'paper':>8} {'ours':>8} {'ours/paper':>11}")
    for k in ("no_reconfig", "no_differential", "no_pruning", "in_order"):
        print(f"{'Fig. 18 ReViT vs ' + k:<34} {PAPER[k]:>7.2f}x {abl[k]:>7.3f}x {abl[k] / PAPER[k]:>11.2f}")
    print(f"{'ReViT vs dense (flat attention)':<34} {'-':>8} {abl['dense']:>7.3f}x")
    for k in ("dram_saved_pruning_%", "dram_saved_differential_%"):
        print(f"{k:<34} {PAPER[k]:>7.1f}% {abl[k]:>7.1f}%")
    print(f"{'Booth digits per element raw/delta':<34} {'-':>8} {eff['booth_digits_raw']:.2f} / {eff['booth_digits_delta']:.2f}"
          f"  (paper: {PAPER['effectual_bits_deit_small']:.0f} effectual bits on DeiT-Small)")
    print(f"(simulator with every baseline: {abl['seconds_per_image_with_baselines']:.2f} s per image)")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--images", type=int, default=16, help="demo images")
    ap.add_argument("--photos", type=int, default=6, help="skimage photos for DeiT-Small")
    ap.add_argument("--skip-small", action="store_true", help="only the demo model")
    a = ap.parse_args(argv)
    try:
        import torch

        torch.set_num_threads(1)
    except ImportError:
        pass
    from vitaccel.host.bundle import load_bundle
    from vitaccel.host.run import demo_dir

    demo = load_bundle(demo_dir() / "revit.vcb")
    imgs = np.load(demo_dir() / "test_images.npz")["images"][:a.images]
    show(f"demo ReViT bundle, {len(imgs)} held-out images", ablations(demo, imgs), effectual(demo, imgs))
    if a.skip_small:
        return 0
    ph = photos(a.photos)
    t0 = time.perf_counter()
    small = deit_small_revit(ph)
    print(f"\n(random DeiT-Small converted and exported on {len(ph)} photos in {time.perf_counter() - t0:.1f} s)")
    show(f"DeiT-Small dimensions (random weights), {len(ph)} skimage photos", ablations(small, ph), effectual(small, ph))
    t = sim_speed(small, ph[0])
    print(f"\nsimulator speed, one DeiT-Small image, bits + cycles through the NumPy revit_top: {t:.2f} s "
          f"(goal 1 s on one core: {'met' if t <= 1.0 else 'not met'})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
