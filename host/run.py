"""``vitaccel run``: the main job. A bundle over a set of images on the best backend, with a report.

With no arguments it runs the shipped demo bundle (``models/demo/demo.vcb``) over its held-out images
(``models/demo/test_images.npz``). Both are found without importing ``vitaccel.models`` (which needs torch).
"""
from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from typing import Optional, Tuple

import numpy as np

__all__ = ["demo_dir", "load_images", "run_command", "IMAGE_SUFFIXES"]

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".pgm", ".ppm", ".tif", ".tiff")
#: torchvision's ImageNet statistics, the default normalisation of image files with 3 channels.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def demo_dir() -> Path:
    """``models/demo`` of the installed package, located without importing it."""
    spec = importlib.util.find_spec("vitaccel.models")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("the vitaccel.models package is not installed, so there is no demo bundle; "
                                "pass --bundle and --images")
    return Path(list(spec.submodule_search_locations)[0]) / "demo"


def _from_files(files, size: int, chans: int, mean, std) -> np.ndarray:
    try:
        from PIL import Image
    except ImportError as e:
        raise ValueError("reading image files needs Pillow (pip install pillow); or pass a .npy/.npz array") from e
    out = np.zeros((len(files), chans, size, size), np.float32)
    m = np.asarray(mean, np.float32).reshape(-1, 1, 1)
    s = np.asarray(std, np.float32).reshape(-1, 1, 1)
    if m.shape[0] not in (1, chans) or s.shape[0] not in (1, chans):
        raise ValueError(f"--mean/--std need 1 or {chans} values")
    for i, f in enumerate(files):
        try:
            with Image.open(f) as im:
                im = im.convert("L" if chans == 1 else "RGB").resize((size, size), Image.BILINEAR)
                a = np.asarray(im, np.float32) / 255.0
        except OSError as e:
            raise ValueError(f"{f}: not a readable image ({e})") from e
        a = a[None] if a.ndim == 2 else a.transpose(2, 0, 1)
        out[i] = (a - m) / s
    return out


def load_images(path: str, *, size: int, chans: int, mean=None, std=None) -> Tuple[np.ndarray, Optional[np.ndarray]]:
    """``(images float32 (B, C, H, W), labels or None)`` from a .npy, a .npz (``images`` [``labels``]), an
    image file, or a folder of image files (labels from integer sub-folder names, ``3/img.png``).

    Arrays are taken as already preprocessed; image files are resized to ``size``, scaled to [0, 1] and
    normalised with ``mean``/``std`` (default: ImageNet's for RGB, 0.5/0.5 for one channel)."""
    p = Path(path)
    if not p.exists():
        raise ValueError(f"{path}: no such file or folder")
    if p.suffix.lower() == ".npy":
        return np.load(p, allow_pickle=False), None
    if p.suffix.lower() == ".npz":
        with np.load(p, allow_pickle=False) as z:
            if "images" not in z:
                raise ValueError(f"{path}: no 'images' array (found: {', '.join(z.files)})")
            return z["images"], (z["labels"] if "labels" in z else None)
    mean = mean if mean is not None else (IMAGENET_MEAN if chans == 3 else (0.5,) * chans)
    std = std if std is not None else (IMAGENET_STD if chans == 3 else (0.5,) * chans)
    if p.is_file():
        if p.suffix.lower() not in IMAGE_SUFFIXES:
            raise ValueError(f"{path}: --images takes a .npy, a .npz, an image ({', '.join(IMAGE_SUFFIXES)}) "
                             f"or a folder of images")
        return _from_files([p], size, chans, mean, std), None
    files = sorted(f for f in p.rglob("*") if f.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise ValueError(f"{path}: no image files ({', '.join(IMAGE_SUFFIXES)}) in this folder")
    labels = None
    parents = [f.parent for f in files]
    if all(q != p and q.parent == p and q.name.isdigit() for q in parents):
        labels = np.array([int(q.name) for q in parents], np.int64)
    return _from_files(files, size, chans, mean, std), labels


def run_command(args) -> int:
    """The body of ``vitaccel run`` (argument parsing is in :mod:`vitaccel.cli`)."""
    from vitaccel.host.accelerator import Accelerator
    from vitaccel.host.bundle import BundleError, load_bundle

    bundle_path = args.bundle or str(demo_dir() / "demo.vcb")
    images_path = args.images or (str(demo_dir() / "test_images.npz") if not args.bundle else None)
    if images_path is None:
        print("vitaccel: --images is needed with --bundle (the demo images belong to the demo bundle)",
              file=sys.stderr)
        return 2
    try:
        bundle = load_bundle(bundle_path)
    except BundleError as e:
        print(f"vitaccel: {e}", file=sys.stderr)
        return 2
    dims = bundle.model
    imgs, labels = load_images(images_path, size=dims.img_size, chans=dims.in_chans, mean=args.mean, std=args.std)
    if args.limit is not None:
        if args.limit < 1:
            raise ValueError(f"--limit must be >= 1, got {args.limit}")
        imgs = imgs[:args.limit]
        labels = None if labels is None else labels[:args.limit]
    progress = not args.json and not args.no_progress
    backend = args.backend
    if backend == "auto":
        from vitaccel.host.backend import detect_backend

        backend = detect_backend()[0]
    batch = args.batch_size if args.batch_size is not None else (1 if backend == "pynq" else 16)
    with Accelerator(bundle, backend=args.backend, config=args.config, batch_size=batch,
                     overlay=args.overlay, timeout_s=args.timeout) as acc:
        if not args.json:
            print(f"vitaccel run: {bundle_path} on {acc.backend} ({acc.reason or acc.device.name}); "
                  f"{len(imgs)} images from {images_path}", file=sys.stderr)
        result = acc.run(imgs, labels, progress=progress)
    rep = result.report
    doc = {"bundle": bundle_path, "images_from": images_path, **rep.to_dict(),
           "predictions": result.predictions.tolist()}
    if args.report:
        from vitaccel.sim.plots import plot_breakdown, plot_roofline

        out = Path(args.report)
        out.mkdir(parents=True, exist_ok=True)
        base = {"dense": rep.dense}
        doc["plots"] = [str(plot_breakdown(rep.predicted, out / "breakdown.png", baselines=base)),
                        str(plot_roofline(rep.predicted, out / "roofline.png"))]
        (out / "report.json").write_text(json.dumps(doc, indent=2, default=str))
        doc["plots"].append(str(out / "report.json"))
    if args.json:
        print(json.dumps(doc, indent=2, default=str))
        return 0
    print(rep.table())
    for p in doc.get("plots", []):
        print(f"wrote {p}")
    return 0
