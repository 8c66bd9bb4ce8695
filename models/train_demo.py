"""Train the shipped demo model and run the ViTCoD pipeline on it.

    python -m vitaccel.models.train_demo [--out models/demo] [--seed 0]

1. dense: train the small DeiT (vitaccel.models.digits) from scratch on the digits train split, first
   at 28x28 (50 tokens, cheap), then, position embedding resized, at 56x56 (197 tokens);
2. insert the Q/K auto-encoders (3 -> 2 heads, PCA-initialised) and finetune;
3. calibrate the averaged attention maps on the train split;
4. split & conquer to the target sparsity (90%), one theta_p per layer;
5. fix the masks and finetune again;
6. int8 export to the deployment bundle ``demo.vcb`` (scales from the train split), and the held-out top-1
   of the int8 bundle on the simulator next to the float model's.

Writes to ``--out``: ``dense.pth`` (float weights, timm keys), ``vitcod_sparse_ae.pth`` (weights with
``blocks.{i}.attn.ae.*``, masks/order/n_global; load with ``vitcod.load_vitcod``), ``vitcod_masks.npz``
(the same masks for numpy-only tools), ``metrics.json`` (held-out top-1 of each stage, timings,
settings), ``masks.png``, ``sparsity.png``, ``demo.vcb`` (the int8 bundle) and ``test_images.npz`` (the
held-out split, normalised as the model expects, with labels: what ``vitaccel run`` evaluates).
``--export-only`` redoes step 6 from the checkpoints already in ``--out``. Every stage checkpoints each epoch under ``--out/work``
and resumes from there when re-run; the folder is removed once the run completes (``--keep-work`` keeps
it). One CPU thread by default; a fixed seed gives the same numbers on the same machine and torch.
"""
from __future__ import annotations

import argparse
import copy
import json
import platform
import shutil
import sys
import time
from pathlib import Path
from typing import List, Optional

import numpy as np
import torch

from . import digits, vitcod
from .deit import with_img_size

DEFAULT_OUT = Path(__file__).resolve().parent / "demo"


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m vitaccel.models.train_demo", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output folder")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1, help="torch threads")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--low-res", type=int, default=28, help="image size of the first dense phase")
    p.add_argument("--low-res-epochs", type=int, default=30)
    p.add_argument("--low-res-batch-size", type=int, default=32)
    p.add_argument("--dense-lr", type=float, default=1e-3, help="learning rate of the low-res phase")
    p.add_argument("--dense-epochs", type=int, default=3, help="dense epochs at full resolution")
    p.add_argument("--dense-finetune-lr", type=float, default=3e-4, help="learning rate at full resolution")
    p.add_argument("--ae-epochs", type=int, default=6)
    p.add_argument("--sparse-epochs", type=int, default=25)
    p.add_argument("--finetune-lr", type=float, default=5e-4)
    p.add_argument("--recon-weight", type=float, default=1.0, help="weight of the AE reconstruction loss")
    p.add_argument("--ae-ratio", type=float, default=0.5, help="compressed heads = ceil(H * ratio)")
    p.add_argument("--sparsity", type=float, default=0.90, help="target fraction of attention pruned")
    p.add_argument("--theta-d", type=float, default=0.5,
                   help="global column: keeps more than this many queries (>= 1: a count, < 1: a fraction of N)")
    p.add_argument("--dense-from", type=Path, default=None,
                   help="skip step 1: start the pipeline from this dense checkpoint (a dense.pth written before)")
    p.add_argument("--train-limit", type=int, default=None, help="use only the first N training images (smoke tests)")
    p.add_argument("--keep-work", action="store_true", help="keep the per-epoch checkpoints under OUT/work")
    p.add_argument("--no-resume", action="store_true", help="ignore checkpoints left by an interrupted run")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.add_argument("--config", default="paper", help="hardware config the bundle is compiled for")
    p.add_argument("--export-only", action="store_true",
                   help="only step 6: export OUT/vitcod_sparse_ae.pth to OUT/demo.vcb and update metrics.json")
    args = p.parse_args(argv)
    if not 0.0 < args.sparsity < 1.0:
        p.error(f"--sparsity must lie in (0, 1), got {args.sparsity}")
    if args.theta_d <= 0:
        p.error(f"--theta-d must be > 0, got {args.theta_d}")
    return args


def export_demo(out: Path, model, res, data: "digits.DigitsSplit", *, config: str, seed: int) -> dict:
    """Step 6: int8 bundle + held-out images; returns the float-vs-int8 figures for metrics.json."""
    from .export import agreement, export_bundle

    t0 = time.perf_counter()
    calib = digits.make_loader(data.train_x, data.train_y, batch_size=256, shuffle=False)
    bundle = export_bundle(model, calib, out / "demo.vcb", config=config, split=res,
                           extra={"dataset": "sklearn load_digits, 56x56, seeded 80/20 split", "seed": seed,
                                  "normalise": {"mean": float(data.mean), "std": float(data.std)}})
    test_x = data.test_x.numpy().astype(np.float32)
    test_y = data.test_y.numpy().astype(np.int64)
    np.savez_compressed(out / "test_images.npz", images=test_x, labels=test_y)
    agree = agreement(model, bundle, test_x, labels=test_y)
    agree["export_s"] = round(time.perf_counter() - t0, 1)
    return agree


def _export_only(args) -> dict:
    out: Path = args.out
    model, res = vitcod.load_vitcod(out / "vitcod_sparse_ae.pth")
    data = digits.load_digits_split(seed=args.seed)
    agree = export_demo(out, model, res, data, config=args.config, seed=args.seed)
    path = out / "metrics.json"
    metrics = json.loads(path.read_text()) if path.exists() else {}
    metrics["int8"] = agree
    metrics.setdefault("top1", {})["sparse_ae_int8"] = agree["top1_int8"]
    path.write_text(json.dumps(metrics, indent=2) + "\n")
    print(f"int8 bundle {out / 'demo.vcb'}: held-out top-1 {100 * agree['top1_int8']:.2f}% "
          f"(float {100 * agree['top1_float']:.2f}%), top-1 agreement {100 * agree['top1_agreement']:.2f}%, "
          f"max logit error {agree['max_logit_error']:.4f}", flush=True)
    return metrics


def main(argv: Optional[List[str]] = None) -> dict:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.export_only:
        return _export_only(args)
    out: Path = args.out
    work = out / "work"
    work.mkdir(parents=True, exist_ok=True)
    progress = not args.quiet
    theta_d = int(args.theta_d) if args.theta_d >= 1 else float(args.theta_d)
    log = (lambda msg: print(msg, flush=True))

    data = digits.load_digits_split(seed=args.seed)
    train_x, train_y = data.train_x, data.train_y
    if args.train_limit is not None:
        train_x, train_y = train_x[:args.train_limit], train_y[:args.train_limit]
    train = digits.make_loader(train_x, train_y, batch_size=args.batch_size, shuffle=True)
    train_fixed = digits.make_loader(train_x, train_y, batch_size=256, shuffle=False)  # calibration, AE init
    test = digits.make_loader(data.test_x, data.test_y, batch_size=256, shuffle=False)
    augment = digits.RandomShift(4)
    common = dict(seed=args.seed, resume=not args.no_resume, progress=progress)  # device: CUDA when present
    log(f"digits: {len(train_y)} train / {len(data.test_y)} test images, {digits.IMG_SIZE}x{digits.IMG_SIZE}, "
        f"model {digits.DEMO_MODEL}, {args.threads} thread(s)")
    timings = {}

    # 1. Dense baseline. ViTs learn slowly from scratch (attention over 197 near-uniform tokens gives
    # the query/key weights little gradient), so most of the training runs at half resolution (28x28,
    # 50 tokens, ~5x cheaper per image), then the position embedding is resized and the model is
    # finetuned at 56x56 -- DeiT's own recipe for its 384 models.
    if args.dense_from is not None:
        model, _ = vitcod.load_vitcod(args.dense_from)
        if model.config != digits.demo_model().config or model.blocks[0].attn.ae is not None:
            raise SystemExit(f"{args.dense_from} is not a dense demo model (config {model.config})")
        acc_low = None
        acc_dense = vitcod.evaluate(model, test)
        log(f"dense (from {args.dense_from}): top-1 {100 * acc_dense:.2f}%")
        if args.dense_from.resolve() != (out / "dense.pth").resolve():
            shutil.copyfile(args.dense_from, out / "dense.pth")
    else:
        t0 = time.perf_counter()
        torch.manual_seed(args.seed)
        low = digits.load_digits_split(seed=args.seed, img_size=args.low_res)
        low_x, low_y = (low.train_x, low.train_y) if args.train_limit is None else \
            (low.train_x[:args.train_limit], low.train_y[:args.train_limit])
        model = digits.demo_model(img_size=args.low_res)
        vitcod.finetune(model, digits.make_loader(low_x, low_y, batch_size=args.low_res_batch_size, shuffle=True),
                        epochs=args.low_res_epochs, lr=args.dense_lr, warmup_epochs=1, label_smoothing=0.1,
                        augment=digits.RandomShift(2), checkpoint=work / "dense_low.pth", desc=f"dense@{args.low_res}",
                        eval_data=digits.make_loader(low.test_x, low.test_y, batch_size=256, shuffle=False), **common)
        acc_low = vitcod.evaluate(model, digits.make_loader(low.test_x, low.test_y, batch_size=256, shuffle=False))
        log(f"dense at {args.low_res}x{args.low_res}: top-1 {100 * acc_low:.2f}%")
        model = with_img_size(model, digits.IMG_SIZE)
        vitcod.finetune(model, train, epochs=args.dense_epochs, lr=args.dense_finetune_lr, warmup_epochs=0.5,
                        label_smoothing=0.1, augment=augment, checkpoint=work / "dense.pth", desc="dense", **common)
        timings["dense_train_s"] = time.perf_counter() - t0
        acc_dense = vitcod.evaluate(model, test)
        vitcod.save_vitcod(out / "dense.pth", model, accuracy=acc_dense, train_s=timings["dense_train_s"])
        log(f"dense: top-1 {100 * acc_dense:.2f}%  ({timings['dense_train_s']:.0f} s)")

    # 2. Auto-encoders on Q/K, PCA-initialised from the dense model, then finetuned.
    t0 = time.perf_counter()
    model = copy.deepcopy(model)
    hc = vitcod.insert_autoencoders(model, args.ae_ratio, init_data=train_fixed, seed=args.seed)
    acc_ae_init = vitcod.evaluate(model, test)
    log(f"AE {model.num_heads} -> {hc} heads inserted (PCA init): top-1 {100 * acc_ae_init:.2f}%")
    vitcod.finetune(model, train, epochs=args.ae_epochs, lr=args.finetune_lr, recon_weight=args.recon_weight,
                    label_smoothing=0.1, augment=augment, checkpoint=work / "ae.pth", desc="AE finetune", **common)
    acc_ae = vitcod.evaluate(model, test)
    timings["ae_finetune_s"] = time.perf_counter() - t0
    log(f"AE finetuned: top-1 {100 * acc_ae:.2f}%")

    # 3-4. Calibrate and split & conquer.
    t0 = time.perf_counter()
    attn = vitcod.calibrate(model, train_fixed, seed=args.seed, progress=progress)
    res = vitcod.split_and_conquer_to_sparsity(attn, args.sparsity, theta_d)
    timings["calibrate_split_s"] = time.perf_counter() - t0
    log(f"split & conquer: sparsity {100 * res.sparsity:.2f}%, theta_p per layer "
        f"{np.round(res.theta_p[:, 0], 4).tolist()}, global columns per head {res.n_global.tolist()}")

    # 5. Fixed masks, finetune.
    t0 = time.perf_counter()
    vitcod.apply_masks(model, res)
    acc_masked = vitcod.evaluate(model, test)
    log(f"masks applied: top-1 {100 * acc_masked:.2f}%")
    vitcod.finetune(model, train, epochs=args.sparse_epochs, lr=args.finetune_lr, recon_weight=args.recon_weight,
                    warmup_epochs=0.5, label_smoothing=0.1, augment=augment, checkpoint=work / "sparse.pth",
                    desc="sparse finetune",
                    **common)
    acc_sparse = vitcod.evaluate(model, test)
    timings["sparse_finetune_s"] = time.perf_counter() - t0
    log(f"sparse {100 * res.sparsity:.1f}% + AE: top-1 {100 * acc_sparse:.2f}% "
        f"(dense {100 * acc_dense:.2f}%, drop {100 * (acc_dense - acc_sparse):+.2f} points)")

    vitcod.save_vitcod(out / "vitcod_sparse_ae.pth", model, res, accuracy=acc_sparse)
    np.savez_compressed(out / "vitcod_masks.npz", mask=res.mask, order=res.order.astype(np.int32),
                        n_global=res.n_global.astype(np.int32), theta_p=res.theta_p, theta_d=np.float64(res.theta_d))
    vitcod.plot_masks(res, out / "masks.png", title=f"demo DeiT on digits: {100 * res.sparsity:.1f}% pruned, "
                                                    f"theta_d = {res.theta_d:g}")
    vitcod.plot_sparsity(res, out / "sparsity.png")
    agree = export_demo(out, model, res, data, config=args.config, seed=args.seed)
    log(f"int8 bundle: top-1 {100 * agree['top1_int8']:.2f}% on the simulator, "
        f"agreement with float {100 * agree['top1_agreement']:.2f}%")
    metrics = dict(
        top1=dict(dense_low_res=acc_low, dense=acc_dense, ae_init=acc_ae_init, ae_finetuned=acc_ae, sparse_before_finetune=acc_masked,
                  sparse_ae=acc_sparse, sparse_ae_int8=agree["top1_int8"]),
        int8=agree,
        drop_points=100 * (acc_dense - acc_sparse), sparsity=res.sparsity,
        theta_p=res.theta_p[:, 0].tolist(), theta_d=res.theta_d, n_global=res.n_global.tolist(), ae_heads=hc,
        timings_s={k: round(v, 1) for k, v in timings.items()}, total_s=round(sum(timings.values()), 1),
        test_images=len(data.test_y), train_images=len(train_y), model=digits.DEMO_MODEL,
        settings={k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items() if k != "out"},
        torch=torch.__version__, python=platform.python_version(),
    )
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    if not args.keep_work:
        shutil.rmtree(work, ignore_errors=True)
    log(f"wrote {out}/: dense.pth, vitcod_sparse_ae.pth, vitcod_masks.npz, demo.vcb, test_images.npz, metrics.json, "
        f"masks.png, sparsity.png "
        f"({metrics['total_s']:.0f} s in all)")
    return metrics


if __name__ == "__main__":
    main()
    sys.exit(0)
