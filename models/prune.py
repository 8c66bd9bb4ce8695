"""``vitaccel prune``: a DeiT checkpoint to a deployment bundle in one command.

The README's checkpoint-to-bundle pipeline, as one function (:func:`prune`), over the library's own steps:

1. read the checkpoint and its architecture (:mod:`vitaccel.models.checkpoint`);
2. load calibration (and optionally training and test) images: ``.npy``/``.npz`` arrays as they are, image
   files and folders with timm's DeiT evaluation preprocessing (:func:`vitaccel.host.run.load_images`,
   :func:`~vitaccel.host.run.load_image_files`; class folders as ``vitaccel eval`` reads them);
3. ``vitcod``: insert the Q/K auto-encoders (:func:`vitcod.insert_autoencoders`, PCA start on the training
   or calibration images), finetune (with ``train``), calibrate the attention maps, split & conquer to the
   target sparsity, fix the masks, finetune again (with ``train``), export (:func:`export.export_bundle`)
   and compare float with int8 on the simulator (:func:`export.agreement`);
   ``revit``: convert (:func:`revit.convert_to_revit`, LSH groups and keep ratios), finetune (with
   ``train``), export (:func:`revit_export.export_revit_bundle`) and compare on the integer reference;
4. a summary: sparsity and global tokens per layer, bundle size, agreement (top-1 and logit cosine).

With ``train``, ``epochs`` apply to each finetuning stage (ViTCoD: after inserting the AEs and after fixing
the masks; ReViT: after conversion). Without it nothing is trained: the AEs keep their PCA start and the
masks are applied as pruned, which costs accuracy (the summary's agreement says how much the int8 bundle
follows the float model, not how accurate either is).
"""
from __future__ import annotations

import dataclasses
import os
import sys
import time
from pathlib import Path
from typing import Callable, Dict, Optional, Sequence, Tuple

import numpy as np
import torch
from tqdm.auto import tqdm

from vitaccel.safetext import printable

__all__ = ["PruneOptions", "prune", "load_data", "format_summary", "parse_keep"]


@dataclasses.dataclass
class PruneOptions:
    checkpoint: str
    calib: str
    output: str
    arch: str = "auto"
    heads: Optional[int] = None
    ema: bool = False
    method: str = "vitcod"
    sparsity: float = 0.9
    theta_d: float = 0.5
    ae: float = 0.5                       # AE compression ratio over heads; 0 = no auto-encoder
    calib_limit: int = 64
    train: Optional[str] = None
    epochs: int = 1
    lr: float = 1e-4
    batch_size: int = 32
    test: Optional[str] = None
    test_limit: int = 64
    groups: int = 4                       # ReViT
    gamma: float = 1.0
    keep: Dict[int, Tuple[float, float]] = dataclasses.field(default_factory=dict)
    config: str = "zcu104"
    plots: Optional[str] = None
    mean: Optional[Sequence[float]] = None
    std: Optional[Sequence[float]] = None
    seed: int = 0
    progress: bool = True


def parse_keep(text: str) -> Tuple[int, Tuple[float, float]]:
    """``LAYER:GROUPS:PATCHES`` (e.g. ``1:0.75:0.7``) -> ``(layer, (group ratio, patch ratio))``."""
    parts = text.split(":")
    try:
        if len(parts) != 3:
            raise ValueError
        layer, g, p = int(parts[0]), float(parts[1]), float(parts[2])
    except ValueError:
        raise ValueError(f"--keep {printable(text)}: expected LAYER:GROUP_RATIO:PATCH_RATIO, e.g. 1:0.75:0.7") from None
    if layer < 0 or not (0 < g <= 1 and 0 < p <= 1):
        raise ValueError(f"--keep {printable(text)}: the layer must be >= 0 and both ratios in (0, 1]")
    return layer, (g, p)


# -- images ---------------------------------------------------------------------------------------------

def _spread(n: int, limit: Optional[int]) -> np.ndarray:
    """``limit`` indices spread evenly over ``range(n)`` (all when limit is None or >= n): a class-sorted
    folder's first N images would all be of one class."""
    if limit is None or limit >= n:
        return np.arange(n)
    return np.unique(np.linspace(0, n - 1, limit).round().astype(np.int64))


def load_data(path: str, *, size: int, chans: int, num_classes: int, mean=None, std=None,
              limit: Optional[int] = None, need_labels: bool = False, what: str = "--calib",
              progress: bool = True) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
    """``(images float32 (B, C, H, W), labels int64 or None)`` from ``path``: a ``.npy``/``.npz`` array file,
    an image file, a flat folder of images, or class folders (``vitaccel eval``'s rules: sorted folder names,
    or integer names as the indices). ``limit`` keeps that many, spread evenly over the set."""
    from vitaccel.host.evaluate import CHUNK, class_index, list_images
    from vitaccel.host.run import IMAGE_SUFFIXES, load_image_files, load_images

    p = Path(path)
    if not p.exists():
        raise ValueError(f"{what} {printable(path)}: no such file or folder")
    labels = None
    if p.is_dir():
        subdirs = [d for d in p.iterdir() if d.is_dir()]
        if subdirs:
            try:
                items = list_images(p, class_index(p))
            except ValueError as e:
                raise ValueError(f"{what}: {e}") from None
        else:
            files = sorted(f for f in p.iterdir() if f.suffix.lower() in IMAGE_SUFFIXES and f.is_file())
            if not files:
                raise ValueError(f"{what} {printable(path)}: no image files ({', '.join(IMAGE_SUFFIXES)}) here")
            items = [(f, -1) for f in files]
        items = [items[i] for i in _spread(len(items), limit)]
        out = np.zeros((len(items), chans, size, size), np.float32)
        bar = tqdm(total=len(items), desc=f"{what.lstrip('-')}: decoding images", unit="image", leave=False,
                   disable=not progress)
        for start in range(0, len(items), CHUNK):
            part = items[start:start + CHUNK]
            out[start:start + len(part)] = load_image_files([f for f, _ in part], size=size, chans=chans, mean=mean,
                                                            std=std, say=start == 0)
            bar.update(len(part))
        bar.close()
        if items[0][1] >= 0:
            labels = np.array([c for _, c in items], np.int64)
        imgs = out
    else:
        try:
            imgs, labels = load_images(str(p), size=size, chans=chans, mean=mean, std=std)
        except ValueError as e:
            if "images must be (B," in str(e):
                raise ValueError(f"{what}: {e}; the checkpoint's model takes {chans}x{size}x{size} inputs") from None
            raise
        keep = _spread(len(imgs), limit)
        imgs = imgs[keep]
        labels = None if labels is None else labels[keep]
    if labels is not None:
        bad = (labels < 0) | (labels >= num_classes)
        if bad.any():
            raise ValueError(f"{what} {printable(path)}: class index {int(labels[np.argmax(bad)])} but the checkpoint "
                             f"has {num_classes} classes (class folders are numbered in sorted order)")
    if need_labels and labels is None:
        raise ValueError(f"{what} {printable(path)}: training needs labels: an .npz with 'labels', or one "
                         f"sub-folder of images per class")
    return torch.from_numpy(np.ascontiguousarray(imgs)), (None if labels is None else torch.from_numpy(labels))


# -- the pipeline ---------------------------------------------------------------------------------------

class _Steps:
    """Times each step and says it when it ends (below any progress bar)."""

    def __init__(self, say: Callable[[str], None]):
        self.say = say
        self.times: Dict[str, float] = {}

    def __call__(self, name: str, fn, *a, **kw):
        t0 = time.perf_counter()
        out = fn(*a, **kw)
        dt = time.perf_counter() - t0
        self.times[name] = round(self.times.get(name, 0.0) + dt, 3)
        self.say(f"{name}: {dt:.1f} s")
        return out


def _check_fits(arch, cfg) -> None:
    """The model against the config's size limits, before any work (the bundle is checked again after)."""
    h = arch.num_heads
    for what, value, limit in (("tokens", arch.tokens, cfg.max_tokens), ("heads", h, cfg.max_heads),
                               ("head dim", arch.embed_dim // h, cfg.max_head_dim),
                               ("embed dim", arch.embed_dim, cfg.max_embed_dim),
                               ("MLP width", int(arch.embed_dim * arch.mlp_ratio), cfg.max_mlp_dim)):
        if value > limit:
            raise ValueError(f"the model's {what} {value} is over config '{cfg.name}''s limit {limit}: this hardware "
                             f"cannot run it (pick another --config, or a smaller model or image size)")


def _loader(x: torch.Tensor, y: Optional[torch.Tensor], batch: int, shuffle: bool):
    if y is None:
        return [x[i:i + batch] for i in range(0, len(x), batch)]
    from torch.utils.data import DataLoader, TensorDataset

    return DataLoader(TensorDataset(x, y), batch_size=batch, shuffle=shuffle, num_workers=0)


@torch.no_grad()
def _revit_agreement(model, bundle, images: torch.Tensor, labels, progress: bool) -> Dict[str, float]:
    """:func:`revit_export.revit_agreement`'s figures plus the logit cosine, in one pass each way."""
    from vitaccel.sim.revit.model import run_revit

    model.eval()
    ref = torch.cat([model(images[i:i + 64]) for i in range(0, len(images), 64)]).numpy()
    got = run_revit(bundle, images.numpy(), progress=progress).logits
    return _figures(ref, got, labels)


def _figures(ref: np.ndarray, got: np.ndarray, labels) -> Dict[str, float]:
    r64, g64 = ref.astype(np.float64), got.astype(np.float64)
    norms = np.linalg.norm(r64, axis=1) * np.linalg.norm(g64, axis=1)
    cos = np.where(norms > 0, np.sum(r64 * g64, axis=1) / np.where(norms > 0, norms, 1.0), 1.0)
    out = {"images": int(len(ref)), "top1_agreement": float(np.mean(ref.argmax(1) == got.argmax(1))),
           "max_logit_error": float(np.max(np.abs(ref - got))), "logit_cosine": float(np.mean(cos))}
    if labels is not None:
        lab = np.asarray(labels)
        out["top1_float"] = float(np.mean(ref.argmax(1) == lab))
        out["top1_int8"] = float(np.mean(got.argmax(1) == lab))
    return out


def write_and_return(path, bundle):
    """:func:`vitaccel.host.bundle.write_bundle` (atomic), returning the bundle."""
    from vitaccel.host.bundle import write_bundle

    write_bundle(path, bundle)
    return bundle


def prune(o: PruneOptions, say: Optional[Callable[[str], None]] = None) -> Dict[str, object]:
    """Run the pipeline (module docstring) and return the summary document (:func:`format_summary`)."""
    from vitaccel.host.bundle import check_limits
    from vitaccel.hwconfig import load_config

    from . import vitcod
    from .checkpoint import load_any

    if say is None:
        def say(msg: str) -> None:
            tqdm.write(msg, file=sys.stderr)
    t_all = time.perf_counter()
    if o.method not in ("vitcod", "revit"):
        raise ValueError(f"--method {printable(o.method)}: expected vitcod or revit")
    if not 0.0 <= o.sparsity < 1.0:
        raise ValueError(f"--sparsity {o.sparsity:g}: expected a fraction in [0, 1)")
    if not 0.0 <= o.ae <= 1.0:
        raise ValueError(f"--ae {o.ae:g}: expected a compression ratio in (0, 1], or 0 for no auto-encoder")
    if not 0.0 < o.theta_d < 1.0:
        raise ValueError(f"--theta-d {o.theta_d:g}: expected a fraction of the tokens in (0, 1)")
    out = Path(o.output)
    if out.is_dir():
        raise ValueError(f"-o {printable(o.output)} is a folder; give the bundle's file name (model.vcb)")
    if not out.parent.is_dir():
        raise ValueError(f"-o {printable(o.output)}: the folder {printable(out.parent)} does not exist")
    cfg = load_config(o.config)          # ConfigError names the config and the fields
    want = "revit" if o.method == "revit" else "vitcod"
    if cfg.accelerator != want:
        board = f" (board {cfg.board}: revit-{cfg.board})" if want == "revit" and cfg.board else ""
        raise ValueError(f"--config {cfg.name} is a {cfg.accelerator} config; a {o.method} bundle runs on the {want} "
                         f"accelerator: pick one of its configs{board}")
    torch.manual_seed(o.seed)
    steps = _Steps(say)

    model, arch, notes = steps("checkpoint", load_any, o.checkpoint, o.arch, heads=o.heads, ema=o.ema)
    for n in notes:
        say(f"note: {n}")
    if o.method == "vitcod":
        _check_fits(arch, cfg)
    elif o.keep and max(o.keep) >= arch.depth:
        raise ValueError(f"--keep layer {max(o.keep)}: the model has {arch.depth} layers (0..{arch.depth - 1})")
    data_kw = dict(size=arch.img_size, chans=arch.in_chans, num_classes=arch.num_classes, mean=o.mean, std=o.std,
                   progress=o.progress)
    calib_x, calib_y = steps("calibration images", load_data, o.calib, limit=o.calib_limit, what="--calib", **data_kw)
    train = None
    if o.train:
        tx, ty = steps("training images", load_data, o.train, need_labels=True, what="--train", **data_kw)
        train = _loader(tx, ty, o.batch_size, shuffle=True)
    if o.test:
        test_x, test_y = steps("test images", load_data, o.test, limit=o.test_limit, what="--test", **data_kw)
        agree_on = f"{len(test_x)} images of {o.test}"
    else:
        test_x, test_y = calib_x[:o.test_limit], (None if calib_y is None else calib_y[:o.test_limit])
        agree_on = f"{len(test_x)} calibration images (not held out: pass --test for held-out images)"
    calib = _loader(calib_x, None, 16, shuffle=False)
    extra = {"source": os.path.basename(o.checkpoint), "tool": "vitaccel prune"}
    ft = dict(epochs=o.epochs, lr=o.lr, seed=o.seed, progress=o.progress, log_epochs=o.progress)
    doc: Dict[str, object] = {"checkpoint": o.checkpoint, "arch": dataclasses.asdict(arch), "notes": notes,
                              "method": o.method, "config": cfg.name, "bundle": str(out),
                              "calibration_images": int(len(calib_x)),
                              "training_images": 0 if train is None else len(train.dataset), "epochs": o.epochs if train else 0}

    if test_y is not None:       # the dense model's accuracy on the agreement images: what pruning costs
        with torch.no_grad():
            pred = torch.cat([model(test_x[i:i + 64]).argmax(1) for i in range(0, len(test_x), 64)])
        doc["top1_dense_float"] = float((pred == test_y).double().mean())
    if o.method == "vitcod":
        from .export import activation_scales, agreement, build_bundle

        hc = None
        if o.ae > 0:
            hc = steps("auto-encoders (PCA start)", vitcod.insert_autoencoders, model, o.ae,
                       init_data=train if train is not None else calib, progress=o.progress, seed=o.seed)
            if train is not None:
                steps("finetune with the AEs", vitcod.finetune, model, train, desc="finetune (AE)", **ft)
        attn = steps("attention calibration", vitcod.calibrate, model, calib, seed=o.seed, progress=o.progress)
        try:
            res = steps("split & conquer", vitcod.split_and_conquer_to_sparsity, attn, o.sparsity, o.theta_d)
        except ValueError as e:
            raise ValueError(f"--sparsity {o.sparsity:g}: {e}") from None
        vitcod.apply_masks(model, res)
        if train is not None:
            steps("finetune with the masks", vitcod.finetune, model, train, desc="finetune (masks)", **ft)
        # export_bundle's three steps, so that the calibration's progress bar follows --no-progress
        bundle = steps("export", lambda: write_and_return(out, build_bundle(
            model, activation_scales(model, calib, progress=o.progress), config=cfg, split=res, extra=extra)))
        agree = steps("agreement", agreement, model, bundle, test_x.numpy(),
                      None if test_y is None else test_y.numpy(), progress=o.progress)
        doc.update(sparsity=res.sparsity, theta_d=float(res.theta_d), ae_heads=hc,
                   layers=[{"sparsity": float(res.map_sparsity[i].mean()), "theta_p": float(res.theta_p[i].flat[0]),
                            "global_tokens": [int(v) for v in res.n_global[i]],
                            "head_sparsity": [float(v) for v in res.map_sparsity[i]]} for i in range(arch.depth)])
        if o.plots:
            pd = Path(o.plots)
            pd.mkdir(parents=True, exist_ok=True)
            steps("plots", lambda: (vitcod.plot_masks(res, pd / "masks.png"), vitcod.plot_sparsity(res, pd / "sparsity.png")))
            doc["plots"] = [str(pd / "masks.png"), str(pd / "sparsity.png")]
    else:
        from . import revit
        from .export import activation_scales
        from .revit_export import build_revit_bundle

        model = steps("ReViT conversion", revit.convert_to_revit, model, o.groups, o.gamma, keep=o.keep or None,
                      seed=o.seed)
        if train is not None:
            steps("finetune", revit.finetune_revit, model, train, **ft)
        bundle = steps("export", lambda: write_and_return(out, build_revit_bundle(
            model, activation_scales(model, calib, progress=o.progress), config=cfg, extra=extra)))
        agree = steps("agreement", _revit_agreement, model, bundle, test_x,
                      None if test_y is None else test_y.numpy(), o.progress)
        doc.update(groups=o.groups, gamma=o.gamma,
                   layers=[{"keep_groups": g, "keep_patches": p} for g, p in model.keep_ratios()])
    fits = None
    if o.method == "vitcod":
        try:
            check_limits(bundle, cfg)
        except ValueError as e:        # _check_fits ran first, so this is a bug or an edge: say it, keep the file
            fits = str(e)
    doc.update(bundle_bytes=os.path.getsize(out), agreement=agree, agreement_on=agree_on, fits_config=fits,
               steps_s=steps.times, wall_s=round(time.perf_counter() - t_all, 3))
    return doc


def _mb(n: int) -> str:
    return f"{n / 1e6:.2f} MB" if n >= 1e5 else f"{n / 1e3:.1f} KB"


def format_summary(doc: Dict[str, object]) -> str:
    """The one-screen summary of :func:`prune`'s document."""
    a = doc["arch"]
    from .checkpoint import Arch

    lines = [f"vitaccel prune: {doc['checkpoint']} -> {doc['bundle']} ({doc['method']}, config {doc['config']})",
             f"model     {Arch(**a).describe()}",
             f"data      {doc['calibration_images']} calibration images"
             + (f", {doc['training_images']} training images x {doc['epochs']} epoch(s) per stage"
                if doc["training_images"] else ", no finetuning (pass --train for it)")]
    if doc["method"] == "vitcod":
        ae = f"Q/K auto-encoder {a['num_heads']} -> {doc['ae_heads']} heads" if doc["ae_heads"] else "no auto-encoder"
        lines.append(f"attention {100 * doc['sparsity']:.2f}% pruned overall; {ae}; global column when > "
                     f"{doc['theta_d']:g} of {a['img_size'] // a['patch_size'] * (a['img_size'] // a['patch_size']) + 1}"
                     f" queries keep it")
        lines.append("")
        head = f"{'layer':>5} {'sparsity':>9} {'theta_p':>8}  global tokens per head"
        lines += [head, "-" * max(len(head), 40)]
        for i, l in enumerate(doc["layers"]):
            g = l["global_tokens"]
            lines.append(f"{i:>5} {100 * l['sparsity']:>8.2f}% {l['theta_p']:>8.4f}  {' '.join(map(str, g))}"
                         f"  (mean {np.mean(g):.1f})")
    else:
        pruned = [(i, l) for i, l in enumerate(doc["layers"]) if (l["keep_groups"], l["keep_patches"]) != (1.0, 1.0)]
        lines.append(f"ReViT     {doc['groups']} LSH groups per layer, gamma {doc['gamma']:g}; token pruning "
                     + (", ".join(f"layer {i}: groups {l['keep_groups']:.3g}, patches {l['keep_patches']:.3g}"
                                  for i, l in pruned) if pruned else "none (pass --keep LAYER:G:P)"))
        lines.append(f"          (runs on the ReViT accelerator: vitaccel run --bundle {doc['bundle']} --images ...)")
    g = doc["agreement"]
    lines.append("")
    lines.append(f"bundle    {doc['bundle']}: {_mb(doc['bundle_bytes'])}")
    acc = ""
    if "top1_float" in g:
        acc = (f"; top-1: dense float {100 * doc['top1_dense_float']:.2f}%, pruned float {100 * g['top1_float']:.2f}%, "
               f"int8 {100 * g['top1_int8']:.2f}%")
    lines.append(f"int8      top-1 agreement with float {100 * g['top1_agreement']:.2f}%, logit cosine "
                 f"{g['logit_cosine']:.4f}, max |logit error| {g['max_logit_error']:.3g}{acc}")
    lines.append(f"          on {doc['agreement_on']}")
    if doc.get("fits_config"):
        lines.append(f"warning   {doc['fits_config']}")
    for p in doc.get("plots", []):
        lines.append(f"wrote     {p}")
    st = doc["steps_s"]
    lines.append(f"time      {doc['wall_s']:.1f} s: " + ", ".join(f"{k} {v:.1f}" for k, v in st.items()))
    return "\n".join(lines)
