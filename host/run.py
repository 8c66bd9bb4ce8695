"""``vitaccel run``: the main job. A bundle over a set of images on the best backend, with a report.

With no arguments it runs the shipped demo bundle (``models/demo/demo.vcb``) over its held-out images
(``models/demo/test_images.npz``). Both are found without importing ``vitaccel.models`` (which needs torch).
"""
from __future__ import annotations

import importlib.util
import json
import math
import os
import stat
import sys
import tokenize
import warnings
import zipfile
import zlib
from pathlib import Path
from typing import BinaryIO, Optional, Sequence, Tuple

import numpy as np

from vitaccel.fileio import NotRegularFile, file_kind, open_regular
from vitaccel.safetext import printable

__all__ = ["demo_dir", "load_images", "load_image_files", "check_images", "check_labels", "check_logits", "run_command", "emit", "InputWarning",
           "IMAGE_SUFFIXES", "MAX_ARRAY_BYTES", "MAX_IMAGE_PIXELS", "NORMALISED_RANGE", "MAX_PIXEL_MAGNITUDE", "EMULATED_BATCH"]

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".pgm", ".ppm", ".tif", ".tiff")
#: torchvision's ImageNet statistics, the default normalisation of image files with 3 channels.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
#: How timm evaluates DeiT (its data config): the shorter side resized to floor(size / CROP_PCT) with bicubic
#: interpolation, then the centre size x size crop, then mean / std. Image files get the same.
CROP_PCT = 0.875
#: Largest array a .npy / .npz member may hold, and largest float32 batch built from image files: 2 GiB
#: (10,000 images of 3x224x224 float32 are 6 GB, so such sets go in parts). Checked against the array
#: header before anything is allocated or read.
MAX_ARRAY_BYTES = 2 << 30
#: Largest image file, in pixels (8192 x 8192), checked from the file's header before it is decoded. Every
#: image is resized to the model's input (224 x 224 for DeiT), so nothing real comes near it.
MAX_IMAGE_PIXELS = 1 << 26
#: Normalised images lie within a few units of 0 (ImageNet normalisation: about [-2.1, 2.6]). Beyond this
#: magnitude a warning says by what factor (raw 0..255 pixels, a missing normalisation).
NORMALISED_RANGE = 10.0
#: Largest pixel magnitude run at all: 1e5 times the normalised range. Such an image is nothing like a
#: normalised one (a wrong dtype or a missing scaling, not a bright photo): quantised, it would be all
#: saturated int8 codes and classified silently wrong, so it is refused.
MAX_PIXEL_MAGNITUDE = 1e6
#: Images per accelerator start on the emulated backends (``vitaccel run``) and per simulator batch
#: (``vitaccel sim --images``): memory is one batch's activations, whatever the number of images.
EMULATED_BATCH = 16


class InputWarning(UserWarning):
    """Images that will run but are probably not what the model expects (values far outside its range)."""


def demo_dir() -> Path:
    """``models/demo`` of the installed package, located without importing it."""
    spec = importlib.util.find_spec("vitaccel.models")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("the vitaccel.models package is not installed, so there is no demo bundle; "
                                "pass --bundle and --images")
    return Path(list(spec.submodule_search_locations)[0]) / "demo"


class _Refused(ValueError):
    """One of our own refusals (already naming the file), as opposed to a decoder's error."""


def _err(where: object, msg: str) -> ValueError:
    return _Refused(f"{printable(where)}: {printable(msg)}")


# -- arrays: .npy and .npz, headers checked before anything is allocated ---------------------------------

def _array_header(f: BinaryIO, where: object) -> Tuple[Tuple[int, ...], bool, np.dtype, int]:
    """(shape, fortran_order, dtype, nbytes) from a .npy header at ``f``'s position, within the limits."""
    try:
        version = np.lib.format.read_magic(f)
        if version == (1, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_1_0(f)
        elif version == (2, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_2_0(f)
        else:
            raise ValueError(f"format version {version[0]}.{version[1]} (this reader takes 1.0 and 2.0)")
    except (ValueError, TypeError, EOFError, SyntaxError, RecursionError, MemoryError, OverflowError,
            tokenize.TokenError) as e:  # numpy's header parser tokenises and literal_evals the header text
        raise _err(where, f"not a .npy array ({type(e).__name__}: {e})") from None
    if dtype.hasobject or dtype.names is not None or dtype.subdtype is not None:
        raise _err(where, f"dtype {dtype} (objects or records): expected an array of real numbers")
    if dtype.kind == "c":
        raise _err(where, f"complex values (dtype {dtype}): pixels and labels are real numbers")
    if dtype.kind not in "biuf":
        raise _err(where, f"dtype {dtype}: expected an array of real numbers (float or integer)")
    if not isinstance(shape, tuple) or not all(isinstance(s, int) and not isinstance(s, bool) and s >= 0
                                               for s in shape):
        raise _err(where, f"invalid shape {shape!r:.80} in the array header")
    nbytes = math.prod(shape) * dtype.itemsize
    if nbytes > MAX_ARRAY_BYTES:
        raise _err(where, f"the header claims a {dtype} array of shape {shape}, {nbytes:,} bytes: over the "
                          f"limit of {MAX_ARRAY_BYTES:,} bytes (vitaccel.host.run.MAX_ARRAY_BYTES); refused "
                          f"before reading. Split the images into smaller files")
    return tuple(shape), bool(fortran), dtype, nbytes


def _read_array(f: BinaryIO, available: int, where: object) -> np.ndarray:
    """The array of a .npy stream; ``available``: bytes from the stream's start to its end."""
    shape, fortran, dtype, nbytes = _array_header(f, where)
    left = available - f.tell()
    if left < nbytes:
        raise _err(where, f"truncated: the header claims {nbytes:,} data bytes ({dtype} {shape}), the file "
                          f"holds {max(left, 0):,}")
    data = f.read(nbytes)
    if len(data) != nbytes:
        raise _err(where, f"truncated: expected {nbytes:,} data bytes, read {len(data):,}")
    a = np.frombuffer(data, dtype=dtype)
    return a.reshape(shape[::-1]).transpose() if fortran else a.reshape(shape)


def _load_npy(path: Path) -> np.ndarray:
    with _open(path) as f:
        return _read_array(f, os.fstat(f.fileno()).st_size, path)


def _load_npz(path: Path) -> Tuple[np.ndarray, Optional[np.ndarray]]:
    with _open(path) as f:
        try:
            with zipfile.ZipFile(f) as z:
                members = {(n[:-4] if n.endswith(".npy") else n): z.getinfo(n) for n in z.namelist()}
                if "images" not in members:
                    found = ", ".join(sorted(members)[:20]) or "nothing"
                    raise _err(path, f"no 'images' array (found: {found})")
                out = []
                for key in ("images", "labels"):
                    if key not in members:
                        out.append(None)
                        continue
                    info = members[key]
                    with z.open(info) as m:
                        out.append(_read_array(m, info.file_size, f"{path}[{key}]"))
                return out[0], out[1]
        except (zipfile.BadZipFile, zipfile.LargeZipFile, zlib.error, EOFError, NotImplementedError, RuntimeError,
                KeyError, OverflowError, OSError) as e:  # OSError: a member offset the archive cannot seek to
            raise _err(path, f"not a readable .npz archive ({type(e).__name__}: {e})") from None


def _open(path: Path) -> BinaryIO:
    try:
        return open_regular(path)
    except NotRegularFile:
        raise _err(path, f"not a regular file ({file_kind(os.stat(path).st_mode)}); --images reads .npy, .npz "
                         f"and image files, or a folder of image files") from None


# -- image files, sized from their header before decoding ---------------------------------------------------

def _norm(values: Optional[Sequence[float]], default: Sequence[float], chans: int, what: str) -> np.ndarray:
    v = np.asarray(default if values is None else values, dtype=np.float64).reshape(-1)
    if v.shape[0] not in (1, chans):
        raise ValueError(f"--mean/--std need 1 or {chans} values, got {v.shape[0]} for {what}")
    for x in v:
        if not math.isfinite(x) or (what == "--std" and x <= 0):
            rule = "finite numbers > 0" if what == "--std" else "finite numbers"
            raise ValueError(f"{what} values must be {rule}, got {x:g}")
    return v.astype(np.float32).reshape(-1, 1, 1)


def _decode_image(f: Path, size: int, chans: int) -> np.ndarray:
    try:
        from PIL import Image
    except ImportError as e:
        raise ValueError("reading image files needs Pillow (pip install pillow); or pass a .npy/.npz array") from e
    with _open(f) as fh:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # our own, lower, limit follows
                im = Image.open(fh)
            with im:
                w, h = im.size
                if w * h > MAX_IMAGE_PIXELS:
                    raise _err(f, f"{w} x {h} = {w * h:,} pixels, over the limit of {MAX_IMAGE_PIXELS:,} pixels "
                                  f"(vitaccel.host.run.MAX_IMAGE_PIXELS); refused before decoding")
                mode = "L" if chans == 1 else "RGB"
                changes = []
                if im.mode != mode:
                    changes.append(f"converted from {im.mode} to {mode}")
                im = im.convert(mode)
                if (w, h) != (size, size):
                    short = int(math.floor(size / CROP_PCT))
                    nw, nh = (short, max(short, round(h * short / w))) if w <= h else \
                        (max(short, round(w * short / h)), short)
                    changes.append(f"resized from {w}x{h} (bicubic, shorter side to {short}, centre crop)")
                    im = im.resize((nw, nh), Image.BICUBIC)
                    left, top = (nw - size) // 2, (nh - size) // 2
                    im = im.crop((left, top, left + size, top + size))
                a = np.asarray(im, np.float32) / 255.0
        except _Refused:
            raise
        except Image.DecompressionBombError as e:
            raise _err(f, f"over the limit of {MAX_IMAGE_PIXELS:,} pixels (vitaccel.host.run.MAX_IMAGE_PIXELS; "
                          f"Pillow: {e}); refused before decoding") from None
        except Exception as e:  # noqa: BLE001 - Pillow's decoders raise anything (SyntaxError, struct.error, ...)
            raise _err(f, f"not a readable image ({type(e).__name__}: {e})") from None
    return (a[None] if a.ndim == 2 else a.transpose(2, 0, 1)), changes


def _from_files(files, size: int, chans: int, mean, std, say: bool = True) -> np.ndarray:
    need = len(files) * chans * size * size * 4
    if need > MAX_ARRAY_BYTES:
        raise ValueError(f"{printable(files[0].parent)}: {len(files)} images of {chans}x{size}x{size} float32 are "
                         f"{need:,} bytes, over the limit of {MAX_ARRAY_BYTES:,} (vitaccel.host.run.MAX_ARRAY_BYTES); "
                         f"run them in parts")
    out = np.zeros((len(files), chans, size, size), np.float32)
    changed: dict = {}
    for i, f in enumerate(files):
        a, changes = _decode_image(f, size, chans)
        out[i] = (a - mean) / std
        for c in changes:
            changed.setdefault(c.split(" from ")[0], []).append((f, c))
    # Said once per kind of change, not once per image: a folder of photos is usually all of one kind.
    for kind, hits in (changed.items() if say else ()):
        first = hits[0]
        more = f" (and {len(hits) - 1} more image(s))" if len(hits) > 1 else ""
        print(f"note: {printable(first[0])}: {first[1]}{more}, to the model's {chans}x{size}x{size} input",
              file=sys.stderr)
    return out


# -- what the model is given ---------------------------------------------------------------------------

def check_images(images, *, chans: int, size: int, where: object = "images",
                 calibrated: Optional[float] = None) -> np.ndarray:
    """``images`` as float32 ``(B, chans, size, size)``, refusing what would be classified silently wrong:
    complex, non-numeric or non-finite pixels and pixels beyond :data:`MAX_PIXEL_MAGNITUDE` (naming the
    first bad image), and no images at all. Values outside the normalised range (:data:`NORMALISED_RANGE`)
    raise an :class:`InputWarning` stating by what factor. ``calibrated`` (the bundle's largest calibrated
    |pixel|, 127 times ``int.input.scale``): an image beyond it by more than
    :data:`~vitaccel.sim.common.intmodel.INPUT_RANGE_FACTOR` gets an :class:`InputWarning` naming it, since
    its pixels saturate at int8."""
    a = images if isinstance(images, np.ndarray) else np.asarray(images)
    if a.dtype.kind == "c":
        raise _err(where, f"complex values (dtype {a.dtype}): pixels must be real numbers")
    if a.dtype.kind not in "biuf":
        raise _err(where, f"dtype {a.dtype}: pixels must be real numbers (float or integer)")
    want = (chans, size, size)
    if a.ndim != 4 or tuple(a.shape[1:]) != want:
        raise _err(where, f"images must be (B, {chans}, {size}, {size}) float (B, C, H, W), found shape "
                          f"{tuple(a.shape)}")
    if a.shape[0] == 0:
        raise _err(where, f"no images (shape {tuple(a.shape)})")
    with np.errstate(over="ignore", invalid="ignore"):
        x = np.asarray(a, dtype=np.float32)
    if x.dtype.kind == "f":
        finite = np.isfinite(x).reshape(len(x), -1).all(axis=1)
        if not finite.all():
            i = int(np.argmin(finite))
            what = "NaN" if np.isnan(x[i]).any() else "inf (or values beyond float32)"
            raise _err(where, f"image {i} has {what} pixel values; pixels must be finite numbers")
    mags = np.abs(x).reshape(len(x), -1).max(axis=1)
    peak = float(mags.max())
    if peak > MAX_PIXEL_MAGNITUDE:
        i = int(np.argmax(mags > MAX_PIXEL_MAGNITUDE))
        raise _err(where, f"image {i} has pixel values up to {float(mags[i]):.3g}, "
                          f"{float(mags[i]) / NORMALISED_RANGE:.3g} times the normalised range |x| <= "
                          f"{NORMALISED_RANGE:g}, beyond the limit |x| <= {MAX_PIXEL_MAGNITUDE:g} "
                          f"(vitaccel.host.run.MAX_PIXEL_MAGNITUDE): the float32 arithmetic would overflow")
    if peak > NORMALISED_RANGE:
        warnings.warn(InputWarning(
            f"{printable(where)}: pixel values reach {peak:.3g}, {peak / NORMALISED_RANGE:.3g} times the "
            f"normalised range |x| <= {NORMALISED_RANGE:g}: were the images normalised (mean/std)?"),
            stacklevel=2)
    if calibrated is not None and calibrated > 0:
        from vitaccel.sim.common.intmodel import INPUT_RANGE_FACTOR

        over = mags > INPUT_RANGE_FACTOR * calibrated
        if over.any():
            i = int(np.argmax(over))
            warnings.warn(InputWarning(
                f"{printable(where)}: image {i} (and {int(over.sum()) - 1} more) has pixel values up to "
                f"{float(mags[i]):.3g}, {float(mags[i]) / calibrated:.3g} times the calibrated range "
                f"|x| <= {calibrated:.3g} (warning above {INPUT_RANGE_FACTOR:g} times): those pixels saturate at "
                f"int8 and the prediction may be wrong"), stacklevel=2)
    return x


def check_logits(logits: np.ndarray, where: object = "images") -> np.ndarray:
    """Refuse logits that are not finite (pixel values so large that the float32 glue overflowed): such an
    image would be classified by the argmax of NaNs, silently. Names the first such image."""
    finite = np.isfinite(logits).all(axis=1) if logits.ndim == 2 else np.isfinite(logits)
    if not np.all(finite):
        i = int(np.argmin(finite))
        raise _err(where, f"image {i}: the model's outputs are not finite (its pixel values overflow the float32 "
                          f"arithmetic); refused rather than classified")
    return logits


def check_labels(labels, count: int, num_classes: Optional[int] = None, *, where: object = "labels") -> np.ndarray:
    """``labels`` as int64 ``(count,)``: 1-D integer class indices, one per image, in ``[0, num_classes)``."""
    a = labels if isinstance(labels, np.ndarray) else np.asarray(labels)
    if a.ndim != 1:
        raise _err(where, f"labels must be 1-D (B,) class indices, found shape {tuple(a.shape)}")
    if a.dtype.kind not in "iu":
        raise _err(where, f"labels must be integer class indices, found dtype {a.dtype}")
    if len(a) != count:
        raise _err(where, f"{len(a)} labels for {count} images: labels need one per image")
    if num_classes is not None and len(a):
        bad = (a < 0) | (a >= num_classes)
        if bad.any():
            i = int(np.argmax(bad))
            raise _err(where, f"labels must be in [0, {num_classes}) (the model's classes), found {int(a[i])} "
                              f"at index {i}")
    return a.astype(np.int64)


def load_image_files(files: Sequence[Path], *, size: int, chans: int, mean=None, std=None,
                     say: bool = True) -> np.ndarray:
    """Image files (already listed) as checked float32 ``(B, chans, size, size)``, preprocessed as
    :func:`load_images` does; ``say``: print the once-per-kind notes on resized / converted images."""
    m = _norm(mean, IMAGENET_MEAN if chans == 3 else (0.5,) * chans, chans, "--mean")
    s = _norm(std, IMAGENET_STD if chans == 3 else (0.5,) * chans, chans, "--std")
    return check_images(_from_files(list(files), size, chans, m, s, say=say), chans=chans, size=size,
                        where=Path(files[0]).parent)


def load_images(path: str, *, size: int, chans: int, mean=None, std=None,
                num_classes: Optional[int] = None) -> Tuple[np.ndarray, Optional[np.ndarray]]:
    """``(images float32 (B, C, H, W), labels int64 or None)`` from a .npy, a .npz (``images`` [``labels``]),
    an image file, or a folder of image files (labels from integer sub-folder names, ``3/img.png``).

    Arrays are taken as already preprocessed (``mean``/``std`` are refused for them); image files are
    preprocessed as timm evaluates DeiT (shorter side to ``floor(size / CROP_PCT)``, bicubic, centre crop
    ``size``), scaled to [0, 1] and normalised with ``mean``/``std`` (default: ImageNet's for RGB,
    0.5/0.5 for one channel). Everything is checked (:func:`check_images`, :func:`check_labels`; array sizes
    against :data:`MAX_ARRAY_BYTES` from their headers, image files against :data:`MAX_IMAGE_PIXELS` before
    decoding); any problem raises ``ValueError`` naming the file."""
    p = Path(path)
    try:
        st = os.stat(p)
    except FileNotFoundError:
        raise _err(path, "no such file or folder") from None
    suffix = p.suffix.lower()
    labels = None
    if suffix in (".npy", ".npz"):
        if mean is not None or std is not None:
            raise _err(path, "--mean/--std apply to image files only; arrays (.npy/.npz) are taken as already "
                             "normalised: drop --mean/--std, or normalise the arrays")
        if suffix == ".npy":
            imgs = _load_npy(p)
        else:
            imgs, labels = _load_npz(p)
    else:
        m = _norm(mean, IMAGENET_MEAN if chans == 3 else (0.5,) * chans, chans, "--mean")
        s = _norm(std, IMAGENET_STD if chans == 3 else (0.5,) * chans, chans, "--std")
        if not stat.S_ISDIR(st.st_mode):
            if suffix not in IMAGE_SUFFIXES:
                raise _err(path, f"--images takes a .npy, a .npz, an image ({', '.join(IMAGE_SUFFIXES)}) "
                                 f"or a folder of images")
            imgs = _from_files([p], size, chans, m, s)
        else:
            files = sorted(f for f in p.rglob("*") if f.suffix.lower() in IMAGE_SUFFIXES)
            if not files:
                raise _err(path, f"no image files ({', '.join(IMAGE_SUFFIXES)}) in this folder")
            parents = [f.parent for f in files]
            if all(q != p and q.parent == p and q.name.isdigit() for q in parents):
                labels = np.array([int(q.name) for q in parents], np.int64)
            imgs = _from_files(files, size, chans, m, s)
    imgs = check_images(imgs, chans=chans, size=size, where=path)
    if labels is not None:
        labels = check_labels(labels, len(imgs), num_classes, where=path)
    return imgs, labels


#: The shipped demo bundles (``vitaccel run --demo NAME``), over the same held-out images.
DEMOS = {"vitcod": "demo.vcb", "revit": "revit.vcb"}


def run_command(args) -> int:
    """The body of ``vitaccel run`` (argument parsing is in :mod:`vitaccel.cli`)."""
    from vitaccel.host.accelerator import Accelerator
    from vitaccel.host.bundle import BundleError, load_bundle

    bundle_path = args.bundle or str(demo_dir() / DEMOS[getattr(args, "demo", None) or "vitcod"])
    if args.images and not args.bundle:
        print(f"note: no --bundle given: running the shipped demo bundle ({bundle_path}) on {args.images}",
              file=sys.stderr)
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
    try:
        imgs, labels = load_images(images_path, size=dims.img_size, chans=dims.in_chans, mean=args.mean,
                                   std=args.std, num_classes=dims.num_classes)
    except ValueError as e:
        if "images must be (B," in str(e):   # arrays of another size: name the bundle whose input they miss
            raise ValueError(f"{e}; the bundle {printable(bundle_path)} takes {dims.in_chans}x{dims.img_size}x"
                             f"{dims.img_size} inputs") from None
        raise
    if args.limit is not None:  # >= 1: the option's type
        imgs = imgs[:args.limit]
        labels = None if labels is None else labels[:args.limit]
    progress = not args.json and not args.no_progress
    backend = args.backend
    if backend == "auto":
        from vitaccel.host.backend import detect_backend

        backend = detect_backend()[0]
    batch = args.batch_size if args.batch_size is not None else (1 if backend == "pynq" else EMULATED_BATCH)
    with Accelerator(bundle, backend=args.backend, config=args.config, batch_size=batch,
                     overlay=args.overlay, timeout_s=args.timeout) as acc:
        if acc.config.hash != bundle.config_hash:   # the same rule as `vitaccel sim` (a board refuses it)
            print(f"note: bundle was compiled for '{printable(bundle.config_name)}' ({bundle.config_hash[:8]}); "
                  f"running on '{acc.config.name}' ({acc.config.hash[:8]}). A board would refuse this pairing.",
                  file=sys.stderr)
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
        if acc.program.data_dependent:
            base = {"dense": rep.dense}                  # the rest: `vitaccel sim BUNDLE --baselines`
        else:
            from vitaccel.sim.vitcod.model import model_baselines

            base = model_baselines(acc.program.program)  # every baseline, as `vitaccel sim --plot` draws them
        doc["plots"] = [str(plot_breakdown(rep.predicted, out / "breakdown.png", baselines=base)),
                        str(plot_roofline(rep.predicted, out / "roofline.png"))]
        if rep.per_image_us:
            from vitaccel.sim.plots import plot_latency_spread

            doc["plots"].append(str(plot_latency_spread(rep.per_image_us, out / "latency_per_image.png",
                                                        title=f"{Path(bundle_path).name} on {acc.config.name}")))
        (out / "report.json").write_text(json.dumps(doc, indent=2, default=str))
        doc["plots"].append(str(out / "report.json"))
    return emit(doc, rep.table(), as_json=args.json)


def emit(doc: dict, table: str, *, as_json: bool) -> int:
    """A command's output: ``doc`` as JSON, or the table and the files written (``doc["plots"]``)."""
    import json

    if as_json:
        print(json.dumps(doc, indent=2, default=str))
        return 0
    print(table)
    for p in doc.get("plots", []):
        print(f"wrote {p}")
    return 0
