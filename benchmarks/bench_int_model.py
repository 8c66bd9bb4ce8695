"""Benchmarks of the integer whole model (issue #10): its accuracy choices and its speed, as ratios measured
side by side in one run (absolute times on shared machines are noise).

    python benchmarks/bench_int_model.py [--quick] [--only width,speed,csim] [--json out.json]

1. **Residual stream width** on the shipped demo model (``models/demo/vitcod_sparse_ae.pth``, 90% sparse +
   AE): held-out top-1 over the 360 test images of the float model, of the integer model with the int16
   stream we ship, and with an int8 stream (the same export, every residual point at max/127 and every add
   saturating to int8).
2. **Simulator speed**: bit-exact integer inference on the simulator (``vitaccel.sim.vitcod.model.forward``,
   the functional model of the one accelerator start) against float PyTorch on the same model and the
   same images, one thread, for DeiT-Tiny and DeiT-Small dimensions at 224 (random weights under timm's
   keys, calibrated on scikit-image photos; dense attention, as the float model runs it).
3. **C-simulation** of DeiT-Tiny: seconds per image through ``Accelerator(backend="csim")`` (the HLS C++
   top compiled with g++), bits compared with the simulator.
4. **Host share on ``zcu104``**: the host's own time per image (quantisation, window writes, syncs, logit
   read-back; measured on this CPU) against the predicted accelerator time of DeiT-Tiny.
"""
from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse  # noqa: E402
import json  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def photos(size: int, count: int) -> np.ndarray:
    """Real photos from scikit-image, preprocessed the way timm evaluates DeiT (vitaccel's loader)."""
    from PIL import Image
    from skimage import data

    from vitaccel.host.run import load_image_files

    names = ["astronaut", "coffee", "chelsea", "rocket", "hubble_deep_field", "immunohistochemistry", "camera",
             "retina", "cat", "colorwheel", "logo", "page"]
    with tempfile.TemporaryDirectory() as tmp:
        files = []
        for i in range(count):
            img = np.asarray(getattr(data, names[i % len(names)])())
            if img.ndim == 2:
                img = np.stack([img] * 3, -1)
            img = img[..., :3]
            if i >= len(names):  # more images than photos: a different crop of one
                img = img[i % 7:, i % 5:]
            p = Path(tmp) / f"{i}.png"
            Image.fromarray(img.astype(np.uint8)).save(p)
            files.append(p)
        return load_image_files(files, size=size, chans=3, say=False)


def residual_width(quick: bool) -> dict:
    from vitaccel.models import vitcod
    from vitaccel.models.export import activation_scales, build_bundle, int_scales
    from vitaccel.models import digits
    from vitaccel.sim.common import intmodel as im
    from vitaccel.sim.vitcod.model import SimKernels, compile_program, forward

    model, res = vitcod.load_vitcod(ROOT / "models/demo/vitcod_sparse_ae.pth")
    model.eval()
    split = digits.load_digits_split(seed=0)
    calib = digits.make_loader(split.train_x, split.train_y, batch_size=256, shuffle=False)
    test = np.load(ROOT / "models/demo/test_images.npz")
    x, y = test["images"], test["labels"]
    if quick:
        x, y = x[:120], y[:120]
    with torch.no_grad():
        ref = model(torch.as_tensor(x)).numpy().astype(np.float64)
    top_float = float((ref.argmax(1) == y).mean())
    scales = activation_scales(model, calib, progress=False)
    out = {"images": int(len(x)), "float": top_float}

    class Int8Stream(SimKernels):
        def add(self, a, ma, b, mb, shift, out_bits):
            return np.clip(super().add(a, ma, b, mb, shift, out_bits), -128, 127).astype(np.int16)

    for bits in (16, 8):
        old = im.RES_BITS
        im.RES_BITS = bits
        try:
            bundle = build_bundle(model, scales, config="paper", split=res)
        finally:
            im.RES_BITS = old
        prog = compile_program(bundle)
        kern = SimKernels() if bits == 16 else Int8Stream()
        logits = np.concatenate([forward(prog, x[i:i + 32], kern) for i in range(0, len(x), 32)])
        out[f"int{bits}_residual"] = float((logits.argmax(1) == y).mean())
        g = logits.astype(np.float64)
        cos = (ref * g).sum(1) / (np.linalg.norm(ref, axis=1) * np.linalg.norm(g, axis=1))
        out[f"int{bits}_logit_cosine"] = float(cos.mean())
        out[f"int{bits}_max_logit_error"] = float(np.abs(ref - g).max())
    return out


def deit_bundle(arch: str, images: np.ndarray, config: str, seed: int = 0):
    from vitaccel.models.deit import DEIT_CONFIGS, VisionTransformer
    from vitaccel.models.export import activation_scales, build_bundle

    torch.manual_seed(seed)
    model = VisionTransformer(img_size=224, num_classes=1000, **DEIT_CONFIGS[arch]).eval()
    scales = activation_scales(model, [torch.as_tensor(images)], progress=False)
    return model, build_bundle(model, scales, config=config)


def speed(arch: str, images: np.ndarray, reps: int) -> dict:
    from vitaccel.sim.vitcod.model import compile_program, forward

    model, bundle = deit_bundle(arch, images, "paper")
    prog = compile_program(bundle)
    x = torch.as_tensor(images)
    with torch.no_grad():
        model(x[:1])
        ref = model(x).numpy()
    forward(prog, images[:1])
    t_torch, t_sim = [], []
    for _ in range(reps):   # interleaved, best of reps: both see the same machine load
        t0 = time.perf_counter()
        with torch.no_grad():
            model(x)
        t_torch.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        got = forward(prog, images)
        t_sim.append(time.perf_counter() - t0)
    n = len(images)
    ips_torch, ips_sim = n / min(t_torch), n / min(t_sim)
    return {"images": n, "torch_images_per_s": ips_torch, "sim_images_per_s": ips_sim,
            "ratio_sim_over_torch": ips_sim / ips_torch,
            "top1_agreement_with_float": float((got.argmax(1) == ref.argmax(1)).mean())}


def csim_and_host(images: np.ndarray) -> dict:
    from vitaccel.host import Accelerator

    _, bundle = deit_bundle("deit_tiny", images, "zcu104")
    out = {}
    with Accelerator(bundle, backend="sim", batch_size=len(images)) as acc:
        acc.run(images[:1], progress=False)     # warm caches
        r = acc.run(images, progress=False)
        sim_logits = r.logits
        out["zcu104_predicted_us_per_image"] = r.report.latency_us
        out["zcu104_host_ms_per_image"] = 1e3 * r.report.host_s
        out["zcu104_host_share"] = r.report.host_share
    with Accelerator(bundle, backend="csim", batch_size=1) as acc:
        acc.run(images[:1], progress=False)     # compiles the library, warms it
        t0 = time.perf_counter()
        r = acc.run(images, progress=False)
        out["csim_s_per_image"] = (time.perf_counter() - t0) / len(images)
        out["csim_equals_sim"] = bool(np.array_equal(r.logits, sim_logits))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="fewer images and repetitions")
    ap.add_argument("--json", type=Path, help="write the figures here")
    ap.add_argument("--only", default="width,speed,csim",
                    help="comma-separated sections to run: width (1), speed (2), csim (3 and 4); default all")
    args = ap.parse_args()
    only = {w.strip() for w in args.only.split(",") if w.strip()}
    if not only or only - {"width", "speed", "csim"}:
        ap.error(f"--only takes width, speed, csim; got {args.only!r}")
    torch.set_num_threads(1)
    res: dict = {}
    if "width" in only:
        res["residual_width"] = rw = residual_width(args.quick)
        print(f"residual width (demo, {rw['images']} held-out images): float {100 * rw['float']:.2f}%, "
              f"int16 stream {100 * rw['int16_residual']:.2f}% (logit cosine with float {rw['int16_logit_cosine']:.5f}, "
              f"max |error| {rw['int16_max_logit_error']:.3f}), int8 stream {100 * rw['int8_residual']:.2f}% (cosine "
              f"{rw['int8_logit_cosine']:.5f}, max |error| {rw['int8_max_logit_error']:.3f})", flush=True)
    if only & {"speed", "csim"}:
        imgs = photos(224, 4 if args.quick else 8)
    for arch in ("deit_tiny", "deit_small") if "speed" in only else ():
        res[arch] = s = speed(arch, imgs, 2 if args.quick else 3)
        print(f"{arch} at 224, {s['images']} photos, one thread: float PyTorch {s['torch_images_per_s']:.1f} images/s, "
              f"integer simulator {s['sim_images_per_s']:.1f} images/s: ratio {s['ratio_sim_over_torch']:.2f}x "
              f"(top-1 agreement with float {100 * s['top1_agreement_with_float']:.0f}%)", flush=True)
    if "csim" in only:
        res["deit_tiny_devices"] = c = csim_and_host(imgs[:2])
        print(f"deit_tiny C-simulation: {c['csim_s_per_image']:.2f} s per image (bits equal to the simulator: "
              f"{c['csim_equals_sim']}); zcu104: host {c['zcu104_host_ms_per_image']:.2f} ms per image against "
              f"{c['zcu104_predicted_us_per_image'] / 1e3:.2f} ms predicted accelerator time: host share "
              f"{100 * c['zcu104_host_share']:.2f}%", flush=True)
    if args.json:
        args.json.write_text(json.dumps(res, indent=2) + "\n")


if __name__ == "__main__":
    main()
