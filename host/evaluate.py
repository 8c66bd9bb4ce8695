"""``vitaccel eval``: a bundle's top-1 and top-5 over an image folder of any size, in bounded memory.

The folder is laid out as torchvision's ImageFolder: one sub-folder per class, class indices from the
sorted folder names, or from a mapping file (``--labels``: one class a line, its folder name first, as
ImageNet's ``LOC_synset_mapping.txt``; the line number is the index). Folders named by integers are
taken as the indices themselves (the layout ``vitaccel run`` reads). Images are decoded ``chunk`` at a
time with the same preprocessing and checks as ``vitaccel run`` (timm's DeiT evaluation transform), run
through one :class:`~vitaccel.host.accelerator.Accelerator`, and only the running counts are kept.
``--workers N`` / ``--scheduler ADDR`` shard the same work over a Dask cluster
(:mod:`vitaccel.host.distributed`), with the same logits and counts.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from vitaccel.host.run import IMAGE_SUFFIXES, load_image_files
from vitaccel.safetext import printable

__all__ = ["class_index", "list_images", "evaluate", "eval_command", "topk_counts", "check_classes", "CHUNK"]

#: Images decoded at once: the memory bound (CHUNK x C x H x W float32 plus one batch's activations).
CHUNK = 256


def class_index(root: Path, labels_file: Optional[Path] = None) -> Dict[str, int]:
    """Folder name -> class index: from ``labels_file`` (first token of each non-empty line, in order), or
    the integers the folders are named by, or the sorted folder names (torchvision's rule)."""
    folders = sorted(p.name for p in root.iterdir() if p.is_dir())
    if labels_file is not None:
        try:
            lines = [ln.split()[0] for ln in labels_file.read_text(encoding="utf-8").splitlines() if ln.strip()]
        except (OSError, UnicodeDecodeError) as e:
            raise ValueError(f"{printable(labels_file)}: cannot read the class list ({e})") from None
        if len(set(lines)) != len(lines):
            raise ValueError(f"{printable(labels_file)}: a class name appears twice")
        index = {name: i for i, name in enumerate(lines)}
        unknown = [f for f in folders if f not in index]
        if unknown:
            raise ValueError(f"{printable(root)}: folder(s) {', '.join(map(printable, unknown[:5]))} are not in "
                             f"{printable(labels_file)}")
        return {f: index[f] for f in folders}
    if not folders:
        raise ValueError(f"{printable(root)}: no class folders (one sub-folder of images per class)")
    if all(f.isdigit() for f in folders):
        return {f: int(f) for f in folders}
    return {f: i for i, f in enumerate(folders)}


def list_images(root: Path, index: Dict[str, int]) -> List[Tuple[Path, int]]:
    """Every image file under the class folders, with its class, in a fixed order (sorted paths)."""
    items = [(f, index[folder]) for folder in sorted(index)
             for f in sorted((root / folder).rglob("*")) if f.suffix.lower() in IMAGE_SUFFIXES and f.is_file()]
    if not items:
        raise ValueError(f"{printable(root)}: no image files ({', '.join(IMAGE_SUFFIXES)}) in its class folders")
    return items


def check_classes(items: Sequence[Tuple[Path, int]], num_classes: int) -> None:
    if max(c for _, c in items) >= num_classes:
        raise ValueError(f"class index {max(c for _, c in items)} but the model has {num_classes} classes")


def topk_counts(logits: np.ndarray, labels: np.ndarray, k5: int) -> Tuple[int, int]:
    """(top-1 hits, top-``k5`` hits); ties broken by the lower class index (a stable sort)."""
    best = np.argsort(-logits, axis=1, kind="stable")[:, :k5]
    return int((best[:, 0] == labels).sum()), int((best == labels[:, None]).any(axis=1).sum())


def evaluate(acc, items: Sequence[Tuple[Path, int]], *, mean=None, std=None, chunk: Optional[int] = None,
             progress: bool = True, return_logits: bool = False) -> Dict[str, object]:
    """Top-1 / top-5 of ``acc`` over ``items`` (path, class), ``chunk`` (default :data:`CHUNK`) images in
    memory at a time. ``return_logits``: also ``doc["logits"]``, float32 (images, classes), in item order."""
    import time

    from tqdm import tqdm

    chunk = CHUNK if chunk is None else int(chunk)
    dims = acc.program.dims
    check_classes(items, dims.num_classes)
    k5 = min(5, dims.num_classes)
    top1 = top5 = 0
    latency = []
    kept = []
    t0 = time.perf_counter()
    bar = tqdm(total=len(items), desc=f"eval ({acc.backend})", unit="image", disable=not progress, leave=False)
    for start in range(0, len(items), chunk):
        part = items[start:start + chunk]
        imgs = load_image_files([f for f, _ in part], size=dims.img_size, chans=dims.in_chans, mean=mean, std=std,
                                say=start == 0)
        labels = np.array([c for _, c in part], np.int64)
        res = acc.run(imgs, labels, progress=False)
        h1, h5 = topk_counts(res.logits, labels, k5)
        top1 += h1
        top5 += h5
        latency.append((len(part), res.report.latency_us))
        if return_logits:
            kept.append(res.logits)
        bar.update(len(part))
    bar.close()
    n = len(items)
    wall = time.perf_counter() - t0
    doc = {"images": n, "top1": top1 / n, "top5": top5 / n, "top5_k": k5, "backend": acc.backend,
           "latency_kind": res.report.latency_kind,
           "latency_us_per_image": sum(c * u for c, u in latency) / n,
           "wall_s": wall, "images_per_s": n / wall if wall > 0 else float("inf")}
    if return_logits:
        doc["logits"] = np.concatenate(kept)
    return doc


def eval_command(args) -> int:
    """The body of ``vitaccel eval`` (arguments in :mod:`vitaccel.cli`)."""
    from vitaccel.host.accelerator import Accelerator
    from vitaccel.host.bundle import BundleError, load_bundle

    root = Path(args.images)
    if not root.is_dir():
        print(f"vitaccel: {printable(root)}: --images must be a folder with one sub-folder per class", file=sys.stderr)
        return 2
    try:
        bundle = load_bundle(args.bundle)
        index = class_index(root, Path(args.labels) if args.labels else None)
        items = list_images(root, index)
    except (BundleError, ValueError) as e:
        print(f"vitaccel: {e}", file=sys.stderr)
        return 2
    if args.limit is not None:
        items = items[:args.limit]
    batch = args.batch_size or 16
    progress = not args.json and not args.no_progress
    workers, scheduler = getattr(args, "workers", None), getattr(args, "scheduler", None)
    if workers is not None or scheduler is not None:
        from vitaccel.host.distributed import evaluate_distributed

        doc = evaluate_distributed(args.bundle, items, workers=workers, scheduler=scheduler, backend=args.backend,
                                   config=args.config, batch_size=batch, mean=args.mean, std=args.std,
                                   retries=getattr(args, "retries", 2), progress=progress)
    else:
        with Accelerator(bundle, backend=args.backend, config=args.config, batch_size=batch) as acc:
            doc = evaluate(acc, items, mean=args.mean, std=args.std, progress=progress)
    doc.update(bundle=args.bundle, images_from=str(root), classes=len(index))
    if args.json:
        print(json.dumps(doc, indent=2))
    else:
        where = doc["backend"]
        if "workers" in doc:
            where += f", {len(doc['workers'])} Dask worker(s)"
        print(f"{doc['images']} images in {doc['classes']} classes from {printable(root)} on {where}: "
              f"top-1 {100 * doc['top1']:.2f}%, top-{doc['top5_k']} {100 * doc['top5']:.2f}%, "
              f"{doc['latency_us_per_image']:.1f} us per image ({doc['latency_kind']}); "
              f"{doc['images_per_s']:.1f} images/s on this host")
        for f in doc.get("failures", []):
            print(f"  retried: shard {f['shard']} (images {f['first']}-{f['last']}) failed on {printable(f['worker'])} "
                  f"(attempt {f['attempt'] + 1}): {printable(f['error'])}")
    return 0

