"""ReViT bundles: int8 export round trip, validation of every new field, the integer reference forward."""
from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import vitaccel.host.bundle as B  # noqa: E402
from vitaccel.host.bundle import Bundle, BundleError, load_bundle, write_bundle  # noqa: E402
from vitaccel.models import revit  # noqa: E402
from vitaccel.models.deit import VisionTransformer  # noqa: E402
from vitaccel.models.revit_export import build_revit_bundle, export_revit_bundle, revit_agreement  # noqa: E402
from vitaccel.sim.revit.model import run_revit  # noqa: E402
from vitaccel.testing import random_bundle  # noqa: E402

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    torch.manual_seed(0)
    base = VisionTransformer(img_size=16, patch_size=4, in_chans=1, num_classes=3, embed_dim=24, depth=2,
                             num_heads=2, mlp_ratio=2.0).eval()
    model = revit.convert_to_revit(base, num_groups=4, gamma=1.0, keep={0: (0.75, 0.7)}).eval()
    x = torch.randn(24, 1, 16, 16)
    path = tmp_path_factory.mktemp("rv") / "m.vcb"
    bundle = export_revit_bundle(model, [(x, torch.zeros(24))], path, block=4, extra={"note": "test"})
    return model, bundle, path, x


def parts(b: Bundle):
    return (__import__("json").loads(__import__("json").dumps(b.meta)), {k: np.array(v) for k, v in b.tensors.items()})


def expect(meta, t, field, contains=""):
    with pytest.raises(BundleError) as ei:
        Bundle(meta, t).validate()
    assert ei.value.field == field, str(ei.value)
    assert contains in ei.value.message, str(ei.value)


def test_export_round_trip(exported) -> None:
    model, bundle, path, x = exported
    got = load_bundle(path, expect_config="paper")
    assert got.identical(bundle) and got.method == "revit" and got.has("lsh")
    g = got.meta["groups"]
    assert g["n_groups"] == 4 and g["combine"] == "joint" and g["block"] == 4 and g["seed"] == 0
    l0, l1 = got.layer(0), got.layer(1)
    assert np.array_equal(l0["lsh.alpha"], model.blocks[0].attn.lsh_alpha.numpy())
    assert int(l0["prune.keep_groups"]) == revit.keep_q16(0.75) and int(l1["prune.keep_patches"]) == 1 << 16
    assert l0["lsh.hash_weight"].dtype == np.int8 and l0["lsh.hash_weight"].shape == (4, 24)
    a = run_revit(bundle, x.numpy()).logits
    b = run_revit(got, x.numpy()).logits
    assert np.array_equal(a, b)
    agree = revit_agreement(model, got, x.numpy(), np.zeros(len(x), np.int64))
    assert agree["images"] == 24 and agree["top1_agreement"] >= 0.75 and agree["max_logit_error"] < 1.0


def test_integer_reference_traces_prune_and_keep_cls(exported) -> None:
    _, bundle, _, x = exported
    res = run_revit(bundle, x[:3].numpy(), trace=True)
    for tr in res.traces:
        assert tr[0]["h8"].shape == (17, 24) and tr[0]["groups"].shape == (16,)
        kept = int(tr[0]["keep"].sum())
        assert 1 <= kept < 16 and tr[1]["h8"].shape == (kept + 2, 24)   # CLS + kept + package token
        assert tr[0]["deltas"].dtype == np.int16 and np.abs(tr[0]["deltas"]).max() <= 255
    assert res.predictions.shape == (3,)


def test_random_revit_bundle_is_valid_and_runs() -> None:
    b = random_bundle(method="revit", seed=4)
    b.validate()
    out = run_revit(b, np.random.default_rng(0).standard_normal((2, 3, 16, 16)).astype(np.float32))
    assert out.logits.shape == (2, 10) and np.isfinite(out.logits).all()


@pytest.mark.parametrize("case", [
    "hash_weight", "hash_bias", "hash_mult", "hash_shift", "keep_zero", "keep_big", "keep_dtype", "hash_shape",
    "combine", "block", "centroid", "package", "prune_score", "cls", "missing_hash"])
def test_validation_names_the_wrong_field(exported, case) -> None:
    _, bundle, _, _ = exported
    meta, t = parts(bundle)
    p = "layers.1."
    if case == "hash_weight":
        t[p + "lsh.hash_weight"][2, 3] ^= 1
        expect(meta, t, p + "lsh.hash_weight", "disagrees with lsh.alpha")
    elif case == "hash_bias":
        t[p + "lsh.hash_bias"][1] += 1
        expect(meta, t, p + "lsh.hash_bias", "disagrees")
    elif case == "hash_mult":
        t[p + "lsh.hash_mult"] = np.array(int(t[p + "lsh.hash_mult"]) - 1, np.int32)
        expect(meta, t, p + "lsh.hash_mult", "disagrees")
    elif case == "hash_shift":
        t[p + "lsh.hash_shift"] = np.array(64, np.int32)
        expect(meta, t, p + "lsh.hash_shift", "[0, 63]")
    elif case == "keep_zero":
        t[p + "prune.keep_groups"] = np.array(0, np.int32)
        expect(meta, t, p + "prune.keep_groups", "Q16")
    elif case == "keep_big":
        t["layers.0.prune.keep_patches"] = np.array((1 << 16) + 1, np.int32)
        expect(meta, t, "layers.0.prune.keep_patches", "Q16")
    elif case == "keep_dtype":
        t[p + "prune.keep_patches"] = np.array(0.5, np.float32)
        expect(meta, t, p + "prune.keep_patches", "int32")
    elif case == "hash_shape":
        t[p + "lsh.hash_weight"] = t[p + "lsh.hash_weight"][:3]
        expect(meta, t, p + "lsh.hash_weight", "(G, D)")
    elif case == "missing_hash":
        del t["layers.0.lsh.hash_bias"]
        expect(meta, t, "layers.0.lsh.hash_bias", "missing tensor")
    else:
        bad = {"combine": "mean", "block": 0, "centroid": "floor", "package": "mean", "prune_score": "v_norm",
               "cls": "grouped"}[case]
        meta["groups"][case] = bad
        expect(meta, t, f"meta.groups.{case}", "expected")


def test_writer_refuses_and_loader_names_a_tampered_file(exported, tmp_path) -> None:
    _, bundle, _, _ = exported
    meta, t = parts(bundle)
    t["layers.0.lsh.alpha"][0, 0] += 0.5
    with pytest.raises(BundleError) as ei:
        write_bundle(tmp_path / "bad.vcb", Bundle(meta, t))
    assert ei.value.field == "layers.0.lsh.hash_weight"
    with pytest.raises(BundleError) as ei:
        B.bundle_from_bytes(B.encode_unchecked(meta, t))
    assert ei.value.field == "layers.0.lsh.hash_weight"


def test_build_needs_a_revit_model(exported) -> None:
    _, bundle, _, _ = exported
    with pytest.raises(TypeError):
        build_revit_bundle(VisionTransformer(img_size=16, patch_size=4, in_chans=1, num_classes=3, embed_dim=24,
                                             depth=2, num_heads=2), {})


DEMO = __import__("pathlib").Path(revit.__file__).resolve().parent / "demo"


def test_shipped_demo_bundle_loads_and_matches_its_model() -> None:
    bundle = load_bundle(DEMO / "revit.vcb")
    assert bundle.method == "revit" and bundle.meta["groups"]["combine"] == "joint"
    model = revit.load_revit(DEMO / "revit.pth")
    assert model.keep_ratios()[1] == (revit.keep_q16(0.75) / 65536, revit.keep_q16(0.7) / 65536)
    t = np.load(DEMO / "test_images.npz")
    x, y = t["images"][:8], t["labels"][:8]
    got = run_revit(bundle, x).predictions
    with torch.no_grad():
        ref = model(torch.from_numpy(x)).argmax(1).numpy()
    assert np.mean(got == ref) >= 0.875 and np.mean(got == y) >= 0.875


@pytest.mark.slow
def test_shipped_demo_bundle_accuracy() -> None:
    t = np.load(DEMO / "test_images.npz")
    pred = run_revit(load_bundle(DEMO / "revit.vcb"), t["images"]).predictions
    assert abs(np.mean(pred == t["labels"]) - 0.9917) < 1e-3   # README / revit_metrics.json: 99.17%
