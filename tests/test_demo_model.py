"""The shipped demo model: its bundle loads, the HLS kernels (C-simulation) agree with the simulator bit
for bit on its real masks and images, and its held-out accuracy is what metrics.json records."""
import json
from pathlib import Path

import numpy as np
import pytest

from vitaccel.host.bundle import load_bundle
from vitaccel.sim.vitcod.model import compile_program, forward, run_model

DEMO = Path(__file__).resolve().parent.parent / "models" / "demo"


@pytest.fixture(scope="module")
def demo():
    bundle = load_bundle(DEMO / "demo.vcb", expect_config="paper")
    with np.load(DEMO / "test_images.npz") as z:
        images, labels = z["images"], z["labels"]
    return bundle, images, labels


def test_demo_bundle_is_the_197_token_vitcod_model(demo):
    bundle, images, labels = demo
    m = bundle.model
    assert (m.num_tokens, m.img_size, m.patch_size) == (197, 56, 4)
    assert bundle.method == "vitcod" and bundle.has("ae")
    kept = np.mean([bundle.layer(i)["attn.mask"].mean() for i in range(bundle.depth)])
    assert abs((1 - kept) - 0.90) < 0.005
    assert images.shape == (len(labels), 1, 56, 56)


@pytest.mark.csim
def test_hls_kernels_match_simulator_on_the_demo_model(demo):
    from vitaccel.sim.vitcod.csim_kernels import CsimKernels

    bundle, images, _ = demo
    prog = compile_program(bundle)
    t_sim, t_hls = {}, {}
    want = forward(prog, images[:3], trace=t_sim)
    got = forward(prog, images[:3], CsimKernels("paper"), trace=t_hls)
    for key in t_sim:
        assert np.array_equal(t_sim[key], t_hls[key]), key
    assert np.array_equal(want, got)


def test_int8_accuracy_matches_metrics(demo):
    bundle, images, labels = demo
    metrics = json.loads((DEMO / "metrics.json").read_text())
    res = run_model(bundle, images)
    top1 = float(np.mean(res.predictions == labels))
    assert top1 == pytest.approx(metrics["top1"]["sparse_ae_int8"], abs=1e-9)
    assert top1 >= metrics["top1"]["sparse_ae"] - 0.01  # int8 stays within a point of float
