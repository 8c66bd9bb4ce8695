"""Writes the notebooks in this folder from the cell lists below, so that they are reviewed as code.

    python notebooks/_build.py          # (re)write every notebook, without outputs
    python notebooks/_build.py --check  # exit 1 if a committed notebook differs from what this writes

``tests/test_notebooks.py`` runs the check and executes every notebook on the simulator backend.
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Dict, List, Tuple

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

HERE = Path(__file__).resolve().parent
Cell = Tuple[str, str]  # ("md" | "py", source)

QUICKSTART: List[Cell] = [
    ("md", """# Board quickstart: the demo bundle on the accelerator

This notebook runs the shipped demo bundle (a DeiT-style model, 90% sparse attention, auto-encoder) on the
ViTCoD accelerator. On a PYNQ board it loads the overlay from `overlay/$BOARD/`. Anywhere else it runs on
the simulator, with the same API and the same output bits.

Then it does three things:
- compares the board's logits with the simulator's, bit for bit;
- times the run (measured on a board, predicted from cycles elsewhere);
- shows where the time goes.

On a board, install vitaccel with its board extra (`pip install -e '.[board]'`) and open this notebook in
the board's Jupyter."""),
    ("py", """import numpy as np
from IPython.display import Image, display

from vitaccel.host import Accelerator, detect_backend
from vitaccel.host.run import demo_dir

backend, reason = detect_backend()
print(f"backend: {backend} ({reason})")
bundle_path = demo_dir() / "demo.vcb"
with np.load(demo_dir() / "test_images.npz") as z:
    images, labels = z["images"][:24], z["labels"][:24]
print(f"{len(images)} held-out images of shape {images.shape[1:]}")"""),
    ("md", """## Open the bundle and run it

`Accelerator` does all of this:
- compiles the bundle into one DRAM window and the descriptor lists the accelerator runs;
- writes the weights, masks, CSC indexes and AE weights once;
- checks the bitstream's ID register against the bundle's hardware-config hash.

`run` does the CPU glue between the accelerator runs: LayerNorm, GELU, the residual adds and the
classifier head."""),
    ("py", """acc = Accelerator(bundle_path, backend="auto")
result = acc.run(images, labels, progress=False)
print(result.report.table())"""),
    ("md", """## Same bits as the simulator

`backend="sim"` runs the same compiled program on the simulator's model of the accelerator's top-level
function. On a board this compares the hardware's logits with it. Off a board both sides are the
simulator, and the check runs the same comparison code."""),
    ("py", """with Accelerator(bundle_path, backend="sim") as sim:
    reference = sim.run(images, labels, progress=False)
same = np.array_equal(result.logits, reference.logits)
print(f"{acc.backend} vs simulator: bit-identical logits: {same}")
assert same"""),
    ("md", """If `g++` and the `hls4ml` package are installed, `backend="csim"` runs the HLS C++ itself, compiled
with g++, on the same program. It gives a third, independent copy of the bits."""),
    ("py", """from vitaccel.sim.csim import CsimUnavailable

try:
    with Accelerator(bundle_path, backend="csim") as cs:
        c = cs.run(images[:4], progress=False)
    print("HLS C-simulation matches:", np.array_equal(c.logits, reference.logits[:4]))
except CsimUnavailable as e:
    print(f"C-simulation not available here: {e}")"""),
    ("md", """## Timing

- **On a board:** the latency is measured from the start of every accelerator run to its `ap_done`,
  averaged per image.
- **Elsewhere:** the latency is predicted from the cycle models of the descriptors the program runs.
- **Host glue:** always measured.

The dense baseline is the same model with dense attention on the same hardware config."""),
    ("py", """rep = result.report
print(f"latency: {rep.latency_us:.1f} us per image ({rep.latency_kind}); predicted {rep.predicted.latency_us:.1f} us")
print(f"dense attention: {rep.dense.latency_us:.1f} us per image -> speedup {rep.speedup_vs_dense:.2f}x")
print(f"host glue: {1e3 * rep.glue_s:.2f} ms per image")
print("top-1 on these images:", rep.top1)"""),
    ("py", """from vitaccel.sim.plots import plot_breakdown

png = plot_breakdown(rep.predicted, "quickstart_breakdown.png", baselines={"dense": rep.dense})
display(Image(filename=str(png)))
acc.close()"""),
]

WALKTHROUGH: List[Cell] = [
    ("md", """# ViTCoD, step by step

ViTCoD (HPCA 2023) does three things to a trained ViT:
- prunes its attention maps into fixed masks;
- polarises each mask into a denser part (the "global" key columns, moved to the front) and a sparser
  part (stored as CSC indexes), which two engines process in parallel;
- compresses Q and K across heads with a small auto-encoder before they go to DRAM.

This notebook goes through each step on the shipped demo model (sklearn digits at 56x56, patch 4, so 197
tokens like DeiT at 224/16). It uses small inputs so that it runs in a minute. The full pipeline, with
finetuning, is `python -m vitaccel.models.train_demo`."""),
    ("py", """import copy
import tempfile
from pathlib import Path

import numpy as np
import torch
from IPython.display import Image, display

from vitaccel.host.run import demo_dir
from vitaccel.models import digits, vitcod
from vitaccel.models.deit import load_checkpoint

torch.set_num_threads(1)  # two threads are 30x slower on a busy machine
DEMO = demo_dir()
OUT = Path(tempfile.mkdtemp(prefix="vitcod_walkthrough_"))
data = digits.load_digits_split(seed=0)
calib = digits.make_loader(data.train_x[:64], data.train_y[:64], batch_size=32, shuffle=False)
test = digits.make_loader(data.test_x[:120], data.test_y[:120], batch_size=120, shuffle=False)

dense = digits.demo_model()
load_checkpoint(dense, DEMO / "dense.pth")
print(f"dense model: top-1 {100 * vitcod.evaluate(dense, test):.2f}% on 120 held-out images")"""),
    ("md", """## 1. Calibrate: average attention maps

Section IV-A of the paper: run the trained model over a calibration set and average each head's softmax
attention map. The result is one (N, N) map per layer and head."""),
    ("py", """maps = vitcod.calibrate(dense, calib, progress=False)
print("maps:", maps.shape, "(layers, heads, queries, keys)")"""),
    ("md", """## 2. Split and conquer: prune and polarise

Algorithm 1 of the paper:
- keep, in every query row, the largest entries until their sum reaches `theta_p`;
- call a key column *global* when more than `theta_d` queries keep it;
- move the global columns to the front (the denser engine's part) and store the rest as CSC (the sparser
  engine's part).

`split_and_conquer_to_sparsity` chooses `theta_p` per layer so that the model reaches the target."""),
    ("py", """res = vitcod.split_and_conquer_to_sparsity(maps, 0.90, 0.5)
print(f"sparsity {100 * res.sparsity:.1f}%, global columns per head: mean {res.n_global.mean():.1f}")
vitcod.plot_masks(res, OUT / "masks.png", title="walk-through masks (reordered: global columns first)")
vitcod.plot_sparsity(res, OUT / "sparsity.png")
display(Image(filename=str(OUT / "masks.png")))
display(Image(filename=str(OUT / "sparsity.png")))"""),
    ("md", """## 3. The auto-encoder over heads

Section IV-B of the paper: a linear encoder mixes the H heads of Q (and of K) into Hc < H. The
accelerator writes the compressed tensors to DRAM and a decoder rebuilds the heads on chip.

We start from the PCA of Q and K over heads. Masking and compression cost accuracy before finetuning,
which takes about 20 minutes on one thread and is not repeated here. The shipped checkpoint
`vitcod_sparse_ae.pth` is the finetuned result of exactly these steps."""),
    ("py", """masked = copy.deepcopy(dense)
vitcod.apply_masks(masked, res)
hc = vitcod.insert_autoencoders(masked, ratio=0.5, init_data=calib)
print(f"H = {dense.blocks[0].attn.num_heads} heads compressed to Hc = {hc}")
print(f"masked + AE (PCA start), before finetuning: top-1 {100 * vitcod.evaluate(masked, test):.2f}%")

tuned, tuned_res = vitcod.load_vitcod(DEMO / "vitcod_sparse_ae.pth")
print(f"shipped finetuned model ({100 * tuned_res.sparsity:.1f}% sparse + AE): "
      f"top-1 {100 * vitcod.evaluate(tuned, test):.2f}%")"""),
    ("md", """## 4. Export an int8 bundle and run it on the accelerator

`export_bundle` does four things:
- calibrates the activation scales;
- quantises the weights per channel;
- writes the masks, the CSC indexes, the AE and the requantisation constants;
- validates the result as one versioned file.

`Accelerator` then runs that file on the board, or here on the simulator, with integer kernels only."""),
    ("py", """from vitaccel.host import Accelerator
from vitaccel.models.export import export_bundle

bundle = export_bundle(tuned, calib, OUT / "walkthrough.vcb", split=tuned_res, config="paper", max_batches=2)
print(bundle.summary())
x, y = data.test_x[:64].numpy(), data.test_y[:64].numpy()
with Accelerator(OUT / "walkthrough.vcb", backend="sim", batch_size=16) as acc:
    run = acc.run(x, y, progress=False)
print(f"int8 on the accelerator (simulated): top-1 {100 * run.report.top1:.2f}% on 64 images")"""),
    ("md", """## 5. Where the time goes, and the baselines

The simulator models the cycles of each engine from its loop nests, using the same schedule as the
HLS C++ (a test checks the two term by term). The baselines run on the same MAC budget and memory system:
- dense attention;
- an S-stationary dataflow like Sanger's;
- pruning only (no reordering);
- reordering only (no pruning);
- ViTCoD without the auto-encoder.

Compare Fig. 15 of the paper."""),
    ("py", """from vitaccel.sim.model import compile_program, model_baselines
from vitaccel.sim.plots import plot_breakdown

prog = compile_program(bundle)
base = model_baselines(prog)
ours = base["vitcod"].total_cycles
print(f"{'dataflow':<16} {'us / image':>11} {'ViTCoD speedup':>15}")
for name, rep in base.items():
    print(f"{name:<16} {rep.latency_us:>11.1f} {rep.total_cycles / ours:>14.2f}x")
png = plot_breakdown(base["vitcod"], OUT / "breakdown.png", baselines=base)
display(Image(filename=str(png)))"""),
]

NOTEBOOKS: Dict[str, List[Cell]] = {
    "board_quickstart.ipynb": QUICKSTART,
    "vitcod_walkthrough.ipynb": WALKTHROUGH,
}


def render(cells: List[Cell]) -> str:
    nb = new_notebook(cells=[new_markdown_cell(src) if kind == "md" else new_code_cell(src) for kind, src in cells])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.metadata["language_info"] = {"name": "python"}
    for i, c in enumerate(nb.cells):
        c["id"] = f"cell-{i}"  # stable ids keep the files diffable
    return nbformat.writes(nb) + "\n"


def main(argv: List[str]) -> int:
    check = "--check" in argv
    stale = []
    for name, cells in NOTEBOOKS.items():
        path = HERE / name
        text = render(cells)
        if check:
            if not path.exists() or path.read_text() != text:
                stale.append(name)
        else:
            path.write_text(text)
            print(f"wrote {path}")
    if stale:
        print("stale notebooks (run python notebooks/_build.py): " + ", ".join(stale))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
