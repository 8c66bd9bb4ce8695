"""Build the shipped ReViT demo from the dense demo model (no training from scratch).

    python -m vitaccel.models.train_revit_demo [--out models/demo] [--ablation] [--export-only]

1. load ``OUT/dense.pth`` (written by ``vitaccel.models.train_demo``; same digits task, same seeded split,
   same 360 held-out images) and convert it (``revit.convert_to_revit``: LSH groups per layer, G = 4);
2. finetune ReViT without pruning (``--combine`` hierarchy; ``--ablation`` also finetunes the other
   combine modes for the same epochs and records their accuracy, nothing else of theirs is kept);
3. switch on semantic hierarchical pruning at the ``--keep`` layers and finetune with the Gumbel
   keep decisions and the keep-ratio loss;
4. int8 export to ``OUT/revit.vcb`` (method ``revit``, config ``revit-paper``) and the held-out top-1 of the
   bundle on its integer whole model (``vitaccel.sim.revit.model``, what ``vitaccel run --demo revit`` runs on
   the accelerator).

Writes ``revit.pth`` (``revit.load_revit``), ``revit.vcb``, ``revit_metrics.json`` (every stage's held-out
top-1, settings, timings, tokens per layer). Checkpoints every epoch under ``OUT/work_revit`` and resumes
from there; removed when done. One CPU thread by default.
"""
from __future__ import annotations

import argparse
import json
import platform
import shutil
import sys
import time
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import numpy as np
import torch

from . import digits, revit, vitcod

DEFAULT_OUT = Path(__file__).resolve().parent / "demo"


def _parse_keep(text: str) -> Dict[int, Tuple[float, float]]:
    out = {}
    for item in filter(None, text.split(",")):
        layer, rg, rp = item.split(":")
        out[int(layer)] = (float(rg), float(rp))
    return out


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m vitaccel.models.train_revit_demo", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--out", type=Path, default=DEFAULT_OUT)
    p.add_argument("--dense", type=Path, default=None, help="dense checkpoint (default OUT/dense.pth)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--groups", type=int, default=4)
    p.add_argument("--gamma", type=float, default=1.0, help="LSH bucket width on the LayerNorm-1 output")
    p.add_argument("--combine", default="joint", choices=revit.COMBINE_MODES)
    p.add_argument("--ablation", action="store_true", help="also finetune the other combine modes (step 2)")
    p.add_argument("--nopr-epochs", type=int, default=4)
    p.add_argument("--prune-epochs", type=int, default=3)
    p.add_argument("--lr", type=float, default=5e-4, help="learning rate without pruning")
    p.add_argument("--prune-lr", type=float, default=1e-4, help="learning rate with pruning")
    p.add_argument("--keep", type=_parse_keep, default=_parse_keep("1:0.75:0.7,2:1.0:0.7"),
                   help="pruning layers as layer:group_ratio:patch_ratio,...")
    p.add_argument("--keep-weight", type=float, default=2.0, help="weight of the keep-ratio loss")
    p.add_argument("--train-limit", type=int, default=None)
    p.add_argument("--config", default="revit-paper")
    p.add_argument("--quiet", action="store_true")
    p.add_argument("--no-resume", action="store_true")
    p.add_argument("--keep-work", action="store_true")
    p.add_argument("--export-only", action="store_true", help="only step 4, from OUT/revit.pth")
    return p.parse_args(argv)


@torch.no_grad()
def token_stats(model: revit.ReViTModel, x: torch.Tensor) -> Dict[str, list]:
    """Mean alive tokens entering each layer and mean group sizes per layer, over images ``x``."""
    model.eval()
    model.trace = {}
    try:
        model(x)
        tr = model.trace
    finally:
        model.trace = None
    tokens = [float(tr["alive"][i].sum(1).mean()) for i in range(model.depth)]
    sizes = []
    for i in range(model.depth):
        g, alive = tr["groups"][i], tr["alive"][i][:, 1:]
        oh = torch.nn.functional.one_hot(g, model.revit["num_groups"]).float() * alive[..., None]
        sizes.append(sorted((oh.sum(1).mean(0)).tolist(), reverse=True))
    return {"alive_tokens_per_layer": tokens, "mean_group_sizes_sorted": sizes}


def export_demo(out: Path, model: revit.ReViTModel, data, *, config: str, seed: int, block: int = 16) -> dict:
    from .revit_export import export_revit_bundle, revit_agreement

    t0 = time.perf_counter()
    calib = digits.make_loader(data.train_x, data.train_y, batch_size=256, shuffle=False)
    bundle = export_revit_bundle(model, calib, out / "revit.vcb", config=config, block=block,
                                 extra={"dataset": "sklearn load_digits, 56x56, seeded 80/20 split", "seed": seed,
                                        "normalise": {"mean": float(data.mean), "std": float(data.std)},
                                        "test_images": "test_images.npz"})
    res = revit_agreement(model, bundle, data.test_x.numpy(), data.test_y.numpy())
    res["export_s"] = round(time.perf_counter() - t0, 1)
    return res


def main(argv: Optional[List[str]] = None) -> dict:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    out: Path = args.out
    log = (lambda msg: print(msg, flush=True))
    data = digits.load_digits_split(seed=args.seed)
    metrics_path = out / "revit_metrics.json"
    if args.export_only:
        model = revit.load_revit(out / "revit.pth")
        agree = export_demo(out, model, data, config=args.config, seed=args.seed)
        metrics = json.loads(metrics_path.read_text()) if metrics_path.exists() else {}
        metrics["int8"] = agree
        metrics.setdefault("top1", {})["revit_int8"] = agree["top1_int8"]
        metrics_path.write_text(json.dumps(metrics, indent=2) + "\n")
        log(f"int8 {out / 'revit.vcb'}: top-1 {100 * agree['top1_int8']:.2f}% (float {100 * agree['top1_float']:.2f}%), "
            f"agreement {100 * agree['top1_agreement']:.2f}%")
        return metrics

    work = out / "work_revit"
    work.mkdir(parents=True, exist_ok=True)
    train_x, train_y = data.train_x, data.train_y
    if args.train_limit is not None:
        train_x, train_y = train_x[:args.train_limit], train_y[:args.train_limit]
    train = digits.make_loader(train_x, train_y, batch_size=args.batch_size, shuffle=True)
    test = digits.make_loader(data.test_x, data.test_y, batch_size=256, shuffle=False)
    augment = digits.RandomShift(4)
    common = dict(seed=args.seed, resume=not args.no_resume, progress=not args.quiet, label_smoothing=0.1,
                  augment=augment, warmup_epochs=0.5)
    dense, _ = vitcod.load_vitcod(args.dense or out / "dense.pth")
    top1 = {"dense": vitcod.evaluate(dense, test)}
    log(f"dense: top-1 {100 * top1['dense']:.2f}%")
    timings: Dict[str, float] = {}
    modes = [args.combine] + ([m for m in revit.COMBINE_MODES if m != args.combine] if args.ablation else [])
    ablation = {}
    model = None
    for mode in modes:
        t0 = time.perf_counter()
        m = revit.convert_to_revit(dense, args.groups, args.gamma, seed=args.seed, combine=mode)
        acc0 = vitcod.evaluate(m, test)
        revit.finetune_revit(m, train, keep_weight=0.0, epochs=args.nopr_epochs, lr=args.lr,
                             checkpoint=work / f"nopr_{mode}.pth", desc=f"ReViT {mode}", **common)
        acc = vitcod.evaluate(m, test)
        dt = time.perf_counter() - t0
        ablation[mode] = {"converted_no_finetune": acc0, "finetuned": acc, "train_s": round(dt, 1)}
        log(f"ReViT w/o pruning, combine={mode}: converted {100 * acc0:.2f}%, finetuned {100 * acc:.2f}% ({dt:.0f} s)")
        if mode == args.combine:
            model, timings["nopr_finetune_s"] = m, dt
            top1["revit_converted"], top1["revit_no_pruning"] = acc0, acc
    t0 = time.perf_counter()
    model.set_keep(args.keep)
    top1["revit_pruned_no_finetune"] = vitcod.evaluate(model, test)
    log(f"pruning on at {model.keep_ratios()}: top-1 {100 * top1['revit_pruned_no_finetune']:.2f}% before finetuning")
    hist = revit.finetune_revit(model, train, keep_weight=args.keep_weight, epochs=args.prune_epochs, lr=args.prune_lr,
                                checkpoint=work / "pruned.pth", desc="ReViT pruned", **common)
    top1["revit"] = vitcod.evaluate(model, test)
    timings["prune_finetune_s"] = time.perf_counter() - t0
    log(f"ReViT (pruned): top-1 {100 * top1['revit']:.2f}% (dense {100 * top1['dense']:.2f}%)")
    revit.save_revit(out / "revit.pth", model, accuracy=top1["revit"])
    stats = token_stats(model, data.test_x)
    agree: dict = {}
    metrics = dict(top1=top1, drop_points=100 * (top1["dense"] - top1["revit"]), ablation_combine=ablation,
                   int8=agree, keep_ratios=model.keep_ratios(), revit=model.revit, tokens=stats,
                   keep_ratio_loss_history=[h["recon"] for h in hist],
                   timings_s={k: round(v, 1) for k, v in timings.items()}, total_s=round(sum(timings.values()), 1),
                   settings={k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items() if k != "out"},
                   test_images=len(data.test_y), torch=torch.__version__, python=platform.python_version())
    metrics["settings"]["keep"] = {str(k): list(v) for k, v in args.keep.items()}
    metrics_path.write_text(json.dumps(metrics, indent=2) + "\n")  # float stages saved before the export
    agree.update(export_demo(out, model, data, config=args.config, seed=args.seed))
    top1["revit_int8"] = agree["top1_int8"]
    log(f"int8 bundle on the integer reference: top-1 {100 * agree['top1_int8']:.2f}%, agreement "
        f"{100 * agree['top1_agreement']:.2f}%")
    metrics_path.write_text(json.dumps(metrics, indent=2) + "\n")
    if not args.keep_work:
        shutil.rmtree(work, ignore_errors=True)
    return metrics


if __name__ == "__main__":
    main()
    sys.exit(0)
