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
- compiles the bundle into one DRAM window and the descriptor program the accelerator runs;
- writes the weights, masks, CSC indexes, AE weights, LayerNorm and GELU tables once;
- checks the bitstream's ID register against the bundle's hardware-config hash.

`run` quantises each batch of images to int8 on the CPU, starts the accelerator once per batch (the whole
model, integer only: patch embedding, LayerNorm, attention, GELU, residual adds, head) and reads the int8
logits back."""),
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
- **Host time** (quantisation, window writes, syncs, logit read-back): always measured.

The dense baseline is the same model with dense attention on the same hardware config."""),
    ("py", """rep = result.report
print(f"latency: {rep.latency_us:.1f} us per image ({rep.latency_kind}); predicted {rep.predicted.latency_us:.1f} us")
print(f"dense attention: {rep.dense.latency_us:.1f} us per image -> speedup {rep.speedup_vs_dense:.2f}x")
print(f"host: {1e3 * rep.host_s:.3f} ms per image ({100 * rep.host_share:.1f}% of host + accelerator time)")
print("top-1 on these images:", rep.top1)"""),
    ("py", """from vitaccel.sim.plots import plot_breakdown

png = plot_breakdown(rep.predicted, "quickstart_breakdown.png", baselines={"dense": rep.dense})
display(Image(filename=str(png)))
acc.close()"""),
]

WALKTHROUGH: List[Cell] = [
    ("md", """# ViTCoD, step by step

ViTCoD (HPCA 2023) speeds up the attention of a trained Vision Transformer in three ways:

1. **Fixed sparse masks.** Every head's attention map is pruned once, offline, so most query-key scores
   are never computed (Section IV-B).
2. **Two workloads instead of one irregular one.** Each mask is reordered. The few key columns that
   almost every query keeps ("global tokens") go to the front and are computed densely. What is left is
   very sparse and is stored as compressed columns (CSC). A denser and a sparser engine work on the two
   parts side by side (Sections IV-B and V-B).
3. **Less Q/K traffic.** A small auto-encoder compresses Q and K across heads before they go off chip,
   and rebuilds them on chip (Section IV-C).

The paper chains these steps into one pipeline (ViTCoD (HPCA 2023), Section IV-D, Fig. 10): insert the
auto-encoders, run split and conquer, then finetune. This notebook takes each step on its own, on the
shipped demo model. That model is a small DeiT (4 layers, 3 heads, 96 features) trained on scikit-learn's
handwritten digits, upscaled to 56x56 with 4x4 patches. It therefore has 197 tokens, the same number as
DeiT at 224/16. The inputs are kept small (64 calibration images, at most 120 test images) so that the
notebook runs in well under a minute on one CPU thread. Finetuning is not repeated here: it takes about
20 minutes (`python -m vitaccel.models.train_demo`), and its result ships as
`models/demo/vitcod_sparse_ae.pth`."""),
    ("py", """import copy
import tempfile
import time
import warnings
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import torch
from IPython.display import Image, display

from vitaccel.host.run import demo_dir

warnings.filterwarnings("ignore", message="IProgress not found")  # tqdm without ipywidgets: no progress bars here
from vitaccel.models import digits, vitcod  # noqa: E402
from vitaccel.models.deit import load_checkpoint

torch.set_num_threads(1)  # one thread: the timings above assume it, and more threads hurt on a busy machine
t_start = time.perf_counter()
DEMO = demo_dir()  # models/demo: the checkpoints, the held-out images, the shipped bundle
WORK = tempfile.TemporaryDirectory(prefix="vitcod_walkthrough_")
OUT = Path(WORK.name)  # plots and the exported bundle go here; the last cell deletes it

# The demo's train/test split (fixed seed). 64 training images are enough to calibrate on.
data = digits.load_digits_split(seed=0)
calib = digits.make_loader(data.train_x[:64], data.train_y[:64], batch_size=32, shuffle=False)
# The held-out images, already normalised the way the model expects. We use the first 120 of 360.
with np.load(DEMO / "test_images.npz") as z:
    test_x, test_y = z["images"][:120], z["labels"][:120]
test = [(torch.from_numpy(test_x), torch.from_numpy(test_y))]  # one batch of (images, labels)

dense = digits.demo_model()
load_checkpoint(dense, DEMO / "dense.pth")
print(f"dense model: {dense.depth} layers, {dense.num_heads} heads, {dense.num_tokens} tokens; "
      f"top-1 {100 * vitcod.evaluate(dense, test):.2f}% on {len(test_y)} held-out images")

fig, axes = plt.subplots(1, 8, figsize=(8, 1.3))
for ax, img, label in zip(axes, test_x, test_y):
    ax.imshow(img[0], cmap="gray")
    ax.set_title(str(label), fontsize=9)
    ax.axis("off")
display(fig)
plt.close(fig)"""),
    ("md", """## 1. Calibrate: average the attention maps

The masks are fixed, so they have to be chosen before inference. ViTCoD (HPCA 2023), Section IV-B, runs
the trained model over the training set and averages each head's softmax attention map. The result is one
N x N map per layer and head: row *i* says how much query token *i* attends to each key token. Here we
use 64 training images instead of the whole set.

The paper's DeiT maps (Fig. 2 and Fig. 8) show bright diagonals, because neighbouring patches attend
to each other, plus a few bright columns. The demo model's maps below look different. They form a grid:
a patch attends to patches at fixed offsets in the 14 x 14 patch layout, and some key columns are
brighter than the rest. They are also flatter than DeiT's. The printout shows what share of each row's
attention its largest 10% of entries carry. Pruning 90% of the entries therefore removes a good part of
the attention, and accuracy drops until the model is finetuned with the masks in place (see the
accuracy table in step 3)."""),
    ("py", """maps = vitcod.calibrate(dense, calib, progress=False)  # float64 (layers, heads, queries, keys)
L, H, N, _ = maps.shape
print(f"averaged maps: {L} layers x {H} heads, each {N} x {N} (token 0 is the class token)")

# How concentrated is the attention? Share of each row's mass held by its largest 10% of entries.
top = int(np.ceil(0.1 * N))
top_mass = -np.sort(-maps, axis=-1)[..., :top].sum(axis=-1).mean(axis=-1)  # (L, H)
for l in range(L):
    shares = ", ".join(f"{100 * s:.0f}%" for s in top_mass[l])
    print(f"layer {l}: the top 10% of keys in a row hold {shares} of its attention (heads 0..{H - 1})")

fig, axes = plt.subplots(1, L, figsize=(2.6 * L, 2.9))
for l, ax in enumerate(axes):
    im = ax.imshow(np.log10(maps[l, 0] + 1e-6), cmap="magma", vmin=-4, vmax=0)
    ax.set_title(f"layer {l}, head 0", fontsize=9)
    ax.set_xlabel("key token", fontsize=8)
    ax.set_xticks([])
    ax.set_yticks([])
axes[0].set_ylabel("query token", fontsize=8)
fig.colorbar(im, ax=list(axes), shrink=0.8, label="log10 attention")
display(fig)
plt.close(fig)"""),
    ("md", """## 2. Split and conquer: prune, then reorder

This is Algorithm 1 of ViTCoD (HPCA 2023), Section IV-B. It has two halves.

**Pruning (lines 1-6).** In each query row, sort the scores from largest to smallest and keep entries
until their sum reaches a threshold `theta_p`. Drop the rest. Our version follows the paper's text: the
entry that reaches `theta_p` is kept and nothing after it. The paper's pseudo-code keeps one entry more
(the docstring of `vitcod.split_and_conquer` gives the details). The class token's row and column are
always kept, so no row is ever empty.

**Reordering (lines 7-14).** A key column is *global* when more than `theta_d` queries keep it. Global
columns move to the front, and the rest keep their original order after them. The accelerator computes
the global part with a dense engine and the rest from compressed sparse columns (CSC), with only the kept
entries.

We pick the *sparsity* rather than `theta_p`: `split_and_conquer_to_sparsity` searches, layer by layer,
for the `theta_p` that prunes 90% of all entries. The `theta_p` it finds is also, roughly, the share of
the averaged attention that each row keeps. Section VI-C of the paper reports that DeiT keeps its
accuracy (within 1 point) at 90%. `theta_d = 0.5` means a column is global when more than half of the
queries keep it."""),
    ("py", """res = vitcod.split_and_conquer_to_sparsity(maps, 0.90, theta_d=0.5)
print(f"overall sparsity {100 * res.sparsity:.2f}%; a key column is global when more than "
      f"{res.theta_d:g} of the {N} queries keep it")
print(f"{'layer':>5} {'theta_p':>8} {'pruned':>8}  global columns (head 0, 1, 2)")
for l in range(L):
    print(f"{l:>5} {res.theta_p[l, 0]:>8.3f} {100 * res.map_sparsity[l].mean():>7.1f}%  {res.n_global[l].tolist()}")

g = res.order[0, 0, :res.n_global[0, 0]]
print(f"layer 0, head 0: key tokens {g.tolist()} are global and move to the front; "
      f"the other {N - len(g)} follow in their original order")

vitcod.plot_masks(res, OUT / "masks.png", title="masks after pruning (left) and after pruning + reordering (right)")
vitcod.plot_sparsity(res, OUT / "sparsity.png")
display(Image(filename=str(OUT / "masks.png")))
display(Image(filename=str(OUT / "sparsity.png")))"""),
    ("md", """Compare the grid with the paper's Fig. 8 (a) and (c). The left half shows each head's mask after
pruning (black = kept). The right half shows the same mask with its global columns moved to the front,
and the red line marks where they end. After reordering, every mask is one dense block on the left plus a
very sparse remainder. In DeiT that remainder lies mostly along the diagonal; here it follows the grid
seen in step 1. The bar charts give each head's sparsity and its number
of global columns. `theta_p` is set per layer, so each layer lands at 90% while its heads differ.

The masks stay fixed from here on, for finetuning and for inference. Fixed masks are applied with
`vitcod.apply_masks(model, res)`."""),
    ("md", """## 3. The auto-encoder: compress Q and K across heads

After pruning, the sparse part does little computation per Q/K vector it loads. Moving Q and K on and off
chip then dominates (ViTCoD (HPCA 2023), Section IV-C and the roofline of Fig. 3). Shrinking each head's
feature size would lower the rank of the attention map. The paper compresses *across heads* instead
(Fig. 9 (a)). An encoder mixes the H heads of Q (and, separately, of K) into Hc < H heads. These smaller
tensors are what goes to DRAM. A decoder rebuilds H heads on chip. Both are linear maps over the head
axis, the same for every token and feature. Here H = 3 becomes Hc = 2, close to the paper's 50%.

The auto-encoder is trained with the model, with the loss of Eq. (2): cross-entropy plus the
reconstruction errors of Q and K. Instead of training it here, we start it from the PCA of Q and K over
heads, measured on the calibration images. For those images, no linear encoder and decoder through Hc
heads rebuilds the dense model's Q and K with a smaller squared error. The cell below measures how well
each starting point rebuilds Q and K on held-out images:
- a default (random) initialisation;
- the PCA start;
- the shipped finetuned model, where Q, K and the auto-encoder were trained together.

The error is the relative squared error ||X - X'||^2 / ||X||^2."""),
    ("py", """def qk_reconstruction_error(model, images):
    # Relative squared error of the AE's Q and K reconstruction, per layer: array (layers, 2) = (Q, K).
    errors, kept = [], {}
    def hook(ae, inputs, outputs):
        (q, k), (q_rec, k_rec, _) = inputs, outputs
        errors.append([float(((x - y) ** 2).sum() / (x ** 2).sum()) for x, y in ((q, q_rec), (k, k_rec))])
        kept.setdefault("first", (q[0], q_rec[0]))  # layer 0, image 0: for the picture below
    hooks = [blk.attn.ae.register_forward_hook(hook) for blk in model.blocks]
    try:
        with torch.no_grad():
            model.eval()(torch.as_tensor(images))
    finally:
        for h in hooks:
            h.remove()
    return np.array(errors), kept["first"]

ae_random = copy.deepcopy(dense)
vitcod.insert_autoencoders(ae_random, ratio=0.5)  # PyTorch's default init (seeded)
ae_pca = copy.deepcopy(dense)
hc = vitcod.insert_autoencoders(ae_pca, ratio=0.5, init_data=calib)  # PCA over heads
tuned, tuned_res = vitcod.load_vitcod(DEMO / "vitcod_sparse_ae.pth")  # the shipped, finetuned result
print(f"H = {H} heads -> Hc = {hc}: DRAM holds {hc}/{H} of Q and of K")

images = test_x[:32]
err_random, _ = qk_reconstruction_error(ae_random, images)
err_pca, (q, q_rec) = qk_reconstruction_error(ae_pca, images)
err_tuned, _ = qk_reconstruction_error(tuned, images)
print(f"{'layer':>5} | {'Q: random':>9} {'PCA':>6} {'tuned':>6} | {'K: random':>9} {'PCA':>6} {'tuned':>6}")
for l in range(L):
    print(f"{l:>5} | {err_random[l, 0]:>9.3f} {err_pca[l, 0]:>6.3f} {err_tuned[l, 0]:>6.3f} | "
          f"{err_random[l, 1]:>9.3f} {err_pca[l, 1]:>6.3f} {err_tuned[l, 1]:>6.3f}")

fig, axes = plt.subplots(1, 4, figsize=(13, 3.0), gridspec_kw=dict(width_ratios=[1, 1, 1, 1.5]))
tokens = slice(0, 48)  # the first 48 tokens of layer 0, head 0, every feature
vmax = float(q[0, tokens].abs().max())
panels = ((q[0, tokens], "Q (layer 0, head 0)"), (q_rec[0, tokens], "rebuilt by the PCA start"),
          (q[0, tokens] - q_rec[0, tokens], "difference"))
for ax, (arr, title) in zip(axes, panels):
    ax.imshow(arr.numpy().T, cmap="RdBu_r", vmin=-vmax, vmax=vmax, aspect="auto")
    ax.set_title(title, fontsize=9)
    ax.set_xlabel("token", fontsize=8)
axes[0].set_ylabel("feature", fontsize=8)
x = np.arange(L)
for j, (tensor, col) in enumerate((("Q", 0), ("K", 1))):
    for i, (err, label) in enumerate(((err_pca, "PCA start"), (err_tuned, "finetuned (shipped)"))):
        axes[3].bar(x - 0.3 + 0.2 * (2 * j + i), err[:, col], 0.2, label=f"{tensor}, {label}", color=f"C{2 * j + i}")
axes[3].set_xticks(x, [f"layer {l}" for l in range(L)])
axes[3].set_ylabel("relative squared error")
axes[3].legend(fontsize=7)
fig.tight_layout()
display(fig)
plt.close(fig)"""),
    ("md", """PCA is a much better start than a random initialisation, but it still loses part of Q and K: three
heads do not fit into two without loss. The finetuned model rebuilds its Q and K more closely. The
reconstruction term of Eq. (2) taught the Q/K projections to produce tensors that compress well, while
the cross-entropy term kept the task.

What does each step cost in accuracy before finetuning? The cell below applies the 90% masks from
step 2 and the auto-encoder, alone and together, to copies of the dense model. It then compares them with
the shipped model. That model was made by the same steps, each followed by finetuning:
1. the auto-encoder, finetuned for 6 epochs;
2. calibration and split and conquer on that model;
3. the fixed masks, finetuned for 25 epochs.

Its masks therefore differ a little from the ones computed above."""),
    ("py", """masked = copy.deepcopy(dense)
vitcod.apply_masks(masked, res)
masked_ae = copy.deepcopy(ae_pca)
vitcod.apply_masks(masked_ae, res)
rows = [("dense", dense), ("90% masks", masked), ("AE, PCA start", ae_pca), ("90% masks + AE, PCA start", masked_ae),
        (f"shipped: {100 * tuned_res.sparsity:.0f}% masks + AE, finetuned", tuned)]
float_top1 = {}
print(f"{'model (float)':<40} {'top-1':>7}")
for name, model in rows:
    float_top1[name] = vitcod.evaluate(model, test)
    print(f"{name:<40} {100 * float_top1[name]:>6.2f}%")
print(f"(on {len(test_y)} held-out images; models/demo/metrics.json has every stage on all 360)")"""),
    ("md", """## 4. Export an int8 bundle and run it on the simulated accelerator

The accelerator computes in integers. `export_bundle` quantises the finetuned model into one versioned
file, the *bundle* (format in `host/BUNDLE.md`):
- weights become int8, one scale per output channel;
- activations become int8, one scale per tensor, measured on calibration images;
- biases and requantisation multipliers follow from those scales (`NUMERICS.md`);
- the masks, the column order, the global-column counts, the CSC indexes and the auto-encoder weights are
  stored as well.

We export for the `paper` hardware config: the ASIC evaluated in ViTCoD (HPCA 2023), Section VI-A, with
64 MAC lines of 8 MACs at 500 MHz, 76.8 GB/s of DRAM bandwidth and 320 KB of SRAM.

`agreement` then runs the same held-out images through the float model and through the bundle on the
simulator. The simulator computes exactly the bits of the HLS kernels (`KERNELS.md`). A board gives the
same bits, as the board quickstart notebook checks."""),
    ("py", """from vitaccel.models.export import agreement, export_bundle

bundle = export_bundle(tuned, calib, OUT / "walkthrough.vcb", split=tuned_res, config="paper", max_batches=2)
print(bundle.summary())
print(f"bundle file: {(OUT / 'walkthrough.vcb').stat().st_size / 1024:.0f} KiB")

cmp = agreement(tuned, bundle, test_x[:64], test_y[:64])
print(f"\\n{cmp['images']} held-out images: float top-1 {100 * cmp['top1_float']:.2f}%, "
      f"int8 on the simulator {100 * cmp['top1_int8']:.2f}%")
print(f"same prediction on {100 * cmp['top1_agreement']:.1f}% of the images; "
      f"largest logit difference {cmp['max_logit_error']:.3f}")"""),
    ("md", """## 5. Where the time goes, and the baselines

The masks are fixed, so the cycles do not depend on the image. The simulator derives them from the loop
nests of each engine, with the same schedule as the HLS C++. A test checks its compute cycles and DRAM
bytes against cycle counters built into the HLS C++. The simulator splits the cycles into the three
parts of the paper's latency breakdown (ViTCoD (HPCA 2023), Section VI-D, Fig. 19):
- **compute:** cycles when the MAC lines or the softmax unit are on the critical path;
- **preprocess:** CSC index decoding and auto-encoder work that is not hidden;
- **data:** DRAM transfers that computation does not hide.

Every baseline runs the same model on the same MAC budget and memory system. Only the attention
dataflow changes:
- **dense:** no pruning; every score goes through the dense engine;
- **Sanger-like:** an S-stationary dataflow, as in Sanger (Section V-A, Fig. 11 (a)), on the same
  pruned masks;
- **pruning only:** the pruned masks without reordering, so every column goes through the sparse engine;
- **reordering only:** no pruning, but the global columns go to the dense engine;
- **ViTCoD without the auto-encoder**, and **ViTCoD** itself.

Section VI-C of the paper breaks pruning and reordering down the same way. The table gives the whole
model ("end to end") and the attention part alone: the attention kernels plus the auto-encoder passes,
which is what the paper calls core attention. The linear layers (qkv, proj, MLP) are the same in every
column."""),
    ("py", """from vitaccel.sim.vitcod.model import compile_program, model_baselines
from vitaccel.sim.plots import plot_breakdown
from vitaccel.sim.report import Report

prog = compile_program(bundle)  # per-layer kernel arguments and sparsity plans, unpacked from the bundle
base = model_baselines(prog)    # the whole model on ViTCoD and on each baseline, same hardware
cfg = prog.config
names = {"vitcod": "ViTCoD", "vitcod_no_ae": "ViTCoD, no AE", "dense": "dense", "sanger": "Sanger-like",
         "pruning_only": "pruning only", "reordering_only": "reordering only"}

def attention_part(rep):
    # Only the attention kernels and the AE encoder passes: the paper's "core attention".
    return Report(rep.config, [k for k in rep.kernels if k.kernel != "gemm"])

core = {key: attention_part(rep) for key, rep in base.items()}
ours = core["vitcod"].total_cycles
print(f"hardware config '{cfg.name}': {cfg.mac_lines} MAC lines x {cfg.macs_per_line} MACs, {cfg.clock_mhz:g} MHz, "
      f"{cfg.dram_gbps:g} GB/s")
print(f"{'dataflow':<16} {'end to end':>11} {'attention':>10} {'compute':>8} {'preproc':>8} {'data':>6} "
      f"{'DRAM KiB':>9} {'ViTCoD is':>10}")
print(f"{'':<16} {'us/image':>11} {'us/image':>10} {'(share of attention time)':>24} {'attention':>9} {'faster by':>10}")
for key, rep in base.items():
    c = core[key]
    share = {part: 100 * v / max(c.total_cycles, 1) for part, v in c.breakdown.items()}
    print(f"{names[key]:<16} {rep.latency_us:>11.1f} {c.latency_us:>10.1f} {share['compute']:>7.0f}% "
          f"{share['preprocess']:>7.0f}% {share['data']:>5.0f}% {c.dram_bytes / 1024:>9.0f} "
          f"{c.total_cycles / ours:>9.2f}x")

# One technique at a time, on attention only: each line is the ratio of two columns of the table.
steps = [("pruning (reordering only -> ViTCoD, no AE)", "reordering_only", "vitcod_no_ae"),
         ("reordering (pruning only -> ViTCoD, no AE)", "pruning_only", "vitcod_no_ae"),
         ("K-stationary two engines vs S-stationary (Sanger-like -> ViTCoD, no AE)", "sanger", "vitcod_no_ae"),
         ("the auto-encoder (ViTCoD, no AE -> ViTCoD)", "vitcod_no_ae", "vitcod"),
         ("everything (dense -> ViTCoD)", "dense", "vitcod")]
print("\\nspeedup on attention from")
for label, before, after in steps:
    print(f"  {label:<74} {core[before].total_cycles / core[after].total_cycles:>5.2f}x")"""),
    ("py", """png = plot_breakdown(base["vitcod"], OUT / "end_to_end.png", baselines={names[k]: r for k, r in base.items()})
print("End to end. Left: ViTCoD per layer. Right: the whole model on each dataflow.")
display(Image(filename=str(png)))
png = plot_breakdown(core["vitcod"], OUT / "attention.png", baselines={names[k]: r for k, r in core.items()})
print("Attention only (the attention kernels and the AE encoder passes).")
display(Image(filename=str(png)))"""),
    ("md", """How do these ratios compare with the paper? At 90% sparsity on DeiT, ViTCoD (HPCA 2023), Section VI-C,
reports 8.14x from pruning (against reordering only) and 2.03x from reordering (against pruning only).
Section VI-B reports 6.8x on core attention against Sanger. Expect smaller numbers here, for two reasons:
- The demo model is much smaller than DeiT: 3 heads of 32 features each, where DeiT-Tiny, -Small and
  -Base have 3, 6 and 12 heads of 64.
- Our Sanger-like baseline shares ViTCoD's MAC array, softmax unit and memory system. It follows Sanger's
  dataflow, but it is not the paper's model of the Sanger chip.

**The auto-encoder.** In this design the encoder is a pass of its own (`KERNELS.md`):
1. the qkv layer writes Q and K to DRAM;
2. the encoder reads them back and writes the compressed copy;
3. the attention kernel reads the compressed copy and decodes it on chip.

The attention kernel moves less data, but the encoder passes add traffic and time of their own. In the
paper, the gain comes from DeiT-sized attention that waits on memory. Fig. 3 shows this, and Section VI-D
reports that data movement falls from 50% to 28% of the time. The attention of this demo model is mostly
compute-bound (see the shares in the table), so the auto-encoder may cost more than it saves. The next
cell checks which case applies, on the paper's config and on the FPGA configs, whose DRAM is slower."""),
    ("py", """def kib(rep, kernel):
    return sum(k.dram_bytes for k in rep.kernels if k.kernel == kernel) / 1024

print(f"DRAM traffic per image on '{cfg.name}': the attention kernels move "
      f"{kib(core['vitcod_no_ae'], 'attention'):.0f} KiB without the AE and {kib(core['vitcod'], 'attention'):.0f} KiB with it; "
      f"the encoder passes add {kib(core['vitcod'], 'ae_encoder'):.0f} KiB")
ae_cost = core["vitcod"].total_cycles - core["vitcod_no_ae"].total_cycles
print(f"attention time with the AE: {ae_cost:+d} cycles per image, so here it "
      + ("pays off" if ae_cost < 0 else "does not pay off"))

from vitaccel.hwconfig import list_configs


print(f"\\n{'config':<9} {'ViTCoD us/image':>16} {'vs dense':>9} {'vs Sanger-like':>15} {'vs no AE':>9}  (attention only)")
for name in list_configs("vitcod"):
    alt = {k: attention_part(r) for k, r in model_baselines(compile_program(bundle, config=name)).items()}
    t = alt["vitcod"].total_cycles
    print(f"{name:<9} {alt['vitcod'].latency_us:>16.1f} {alt['dense'].total_cycles / t:>8.2f}x "
          f"{alt['sanger'].total_cycles / t:>14.2f}x {alt['vitcod_no_ae'].total_cycles / t:>8.2f}x")"""),
    ("md", """## Where to go from here

- `python -m vitaccel.models.train_demo` runs the whole pipeline with finetuning. It reproduces
  `models/demo/` and records every stage in `metrics.json`.
- `vitaccel sim BUNDLE --baselines --plot DIR` prints the same latency table and plots for any bundle.
  `vitaccel info --config NAME` describes a hardware config.
- `board_quickstart.ipynb` runs the shipped bundle on a PYNQ board (or on the simulator) and checks the
  board's output bit for bit."""),
    ("py", """WORK.cleanup()  # the temporary folder with the plots and the bundle
print(f"walk-through done in {time.perf_counter() - t_start:.1f} s")"""),
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
