"""ViTCoD algorithm: split & conquer on hand-made maps, the sparsity-target mode, the Q/K auto-encoder,
calibration and the finetuning loop (tiny models, a few seconds in all)."""
import gc
import time
import weakref

import numpy as np
import pytest

torch = pytest.importorskip("torch")
torch.set_num_threads(1)

from vitaccel.models import vitcod  # noqa: E402
from vitaccel.models.deit import VisionTransformer, capture_attention  # noqa: E402
from vitaccel.models.vitcod import split_and_conquer, split_and_conquer_to_sparsity  # noqa: E402


def maps_with_rows(n, rows):
    """(N, N) map, uniform rows except those given {row index: probabilities}."""
    a = np.full((n, n), 1.0 / n)
    for i, r in rows.items():
        a[i] = r
    return a


def kept(res, row):
    return np.flatnonzero(res.mask[row]).tolist()


def reference_prune(a, theta_p):
    """Algorithm 1 (the paper's prose) one row at a time, in plain Python."""
    n = a.shape[-1]
    mask = np.zeros_like(a, dtype=bool)
    for i in range(n):
        total = 0.0
        for j in sorted(range(n), key=lambda j: (-a[i, j], j)):
            if total >= theta_p - 1e-9:
                break
            mask[i, j] = True
            total += a[i, j]
    mask[0, :] = True
    mask[:, 0] = True
    return mask


def random_maps(shape, n, temperature=3.0, seed=0):
    rng = np.random.default_rng(seed)
    logits = temperature * rng.standard_normal(shape + (n, n))
    e = np.exp(logits - logits.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


# ---------------------------------------------------------------------------------------------- pruning

@pytest.mark.parametrize("theta_p, expected", [
    (0.5, [0, 1]),       # the first entry reaches 0.5 exactly: kept, nothing after it
    (0.51, [0, 1, 2]),   # 0.5 < 0.51, so the crossing entry (0.3) is kept too
    (0.8, [0, 1, 2]),    # 0.5 + 0.3 reaches 0.8 exactly (float rounding does not matter)
    (0.85, [0, 1, 2]),   # crosses at col 0 (0.1, ranked before its tie col 3): col 3 stays out
    (0.91, [0, 1, 2, 3]),
    (1.0, [0, 1, 2, 3]),
])
def test_threshold_crossing_entry_is_kept(theta_p, expected):
    # Row 2 sorted: col1 0.5, col2 0.3, col0 0.1, col3 0.1 (tie: lower index first). Col 3 enters only
    # when the mass ranked above it (0.9) is still below theta_p.
    a = maps_with_rows(4, {2: [0.1, 0.5, 0.3, 0.1]})
    assert kept(split_and_conquer(a, theta_p, 4), 2) == expected


def test_ties_broken_by_lower_index():
    a = maps_with_rows(6, {3: [0.0, 0.2, 0.2, 0.2, 0.2, 0.2]})
    assert kept(split_and_conquer(a, 0.4, 6), 3) == [0, 1, 2]   # cols 1, 2 of five equal ones
    assert kept(split_and_conquer(a, 0.41, 6), 3) == [0, 1, 2, 3]


def test_cls_row_and_column_always_kept():
    n = 5
    a = np.eye(n) * 0.95 + 0.01  # rows sum to 1; CLS column holds only 0.01 in each row
    res = split_and_conquer(a, 0.5, n)
    assert res.mask[0].all() and res.mask[:, 0].all()
    expected = np.eye(n, dtype=bool)
    expected[0, :] = expected[:, 0] = True
    np.testing.assert_array_equal(res.mask, expected)
    # theta_p = 0 keeps nothing but the CLS row and column, and no row is ever empty.
    res0 = split_and_conquer(a, 0.0, n)
    np.testing.assert_array_equal(res0.mask, np.logical_or.outer(np.arange(n) == 0, np.arange(n) == 0))
    assert res0.mask.any(axis=-1).all()


def test_matches_reference_loop_on_random_maps():
    a = random_maps((3,), 23, seed=1)
    for theta in (0.1, 0.5, 0.9, 0.99):
        res = split_and_conquer(a, theta, 5)
        for h in range(3):
            np.testing.assert_array_equal(res.mask[h], reference_prune(a[h], theta), err_msg=f"theta {theta} head {h}")


# ---------------------------------------------------------------------------------------------- reordering

def column_map(n, target_cols):
    """Row i puts all its mass on key target_cols[i] (one kept entry per row besides the CLS column)."""
    a = np.zeros((n, n))
    a[np.arange(n), target_cols] = 1.0
    return a


def test_theta_d_as_count_and_fraction():
    n = 8
    # Column counts after pruning: col0 8 (CLS, forced), col3 4 queries + CLS row, col5 2 + CLS row, others 1.
    cols = [0, 3, 3, 3, 3, 5, 5, 7]
    a = column_map(n, cols)
    counts = split_and_conquer(a, 0.5, n).mask.sum(axis=0)
    assert counts.tolist() == [8, 1, 1, 5, 1, 3, 1, 2]

    res = split_and_conquer(a, 0.5, 3)  # global: MORE than 3 entries
    assert res.n_global == 2
    assert res.order.tolist() == [0, 3, 1, 2, 4, 5, 6, 7]
    res = split_and_conquer(a, 0.5, 2)
    assert res.n_global == 3 and res.order.tolist() == [0, 3, 5, 1, 2, 4, 6, 7]
    res = split_and_conquer(a, 0.5, 5)  # col 3 keeps exactly 5: not more than 5
    assert res.n_global == 1 and res.order.tolist() == list(range(n))
    # Fractions of N: 0.3 * 8 = 2.4 -> count > 2.4, the same as the int 2.
    res = split_and_conquer(a, 0.5, 0.3)
    assert res.n_global == 3 and res.theta_d == pytest.approx(2.4)
    res = split_and_conquer(a, 0.5, 0.62)  # count > 4.96: CLS (8) and col 3 (5)
    assert res.n_global == 2 and res.order.tolist()[:2] == [0, 3]


def test_reordered_mask_puts_globals_left():
    a = column_map(8, [0, 3, 3, 3, 3, 5, 5, 7])
    res = split_and_conquer(a, 0.5, 2)
    r = res.reordered_mask
    np.testing.assert_array_equal(r, res.mask[:, res.order])
    assert (r[:, :3].sum(0) > 2).all() and (r[:, 3:].sum(0) <= 2).all()


def test_leading_dims_and_per_map_theta():
    a = random_maps((2, 3), 17, seed=2)
    theta = np.array([[0.3], [0.8]])  # broadcasts over heads
    res = split_and_conquer(a, theta, 0.25)
    assert res.mask.shape == (2, 3, 17, 17) and res.order.shape == (2, 3, 17) and res.n_global.shape == (2, 3)
    assert res.theta_p.shape == (2, 3)
    for l in range(2):
        for h in range(3):
            one = split_and_conquer(a[l, h], theta[l, 0], 0.25)
            np.testing.assert_array_equal(res.mask[l, h], one.mask)
            np.testing.assert_array_equal(res.order[l, h], one.order)
            assert res.n_global[l, h] == one.n_global
    assert res.sparsity == pytest.approx(1 - res.mask.mean())
    np.testing.assert_allclose(res.map_sparsity, 1 - res.mask.mean(axis=(-2, -1)))
    # order is a permutation with globals first, the rest increasing.
    for l in range(2):
        for h in range(3):
            o, g = res.order[l, h], res.n_global[l, h]
            assert sorted(o.tolist()) == list(range(17))
            assert (np.diff(o[:g]) > 0).all() and (np.diff(o[g:]) > 0).all()


def test_numpy_and_torch_inputs_agree():
    a = random_maps((4,), 11, seed=3).astype(np.float32)
    a /= a.sum(-1, keepdims=True)
    r_np = split_and_conquer(a, 0.7, 3)
    r_t = split_and_conquer(torch.from_numpy(a), torch.tensor(0.7), 3)
    np.testing.assert_array_equal(r_np.mask, r_t.mask)
    np.testing.assert_array_equal(r_np.order, r_t.order)
    np.testing.assert_array_equal(r_np.n_global, r_t.n_global)


@pytest.mark.parametrize("attn, theta_p, theta_d, match", [
    (np.ones((3, 4)) / 4, 0.5, 1, "shape"),
    (np.ones((4, 4)), 0.5, 1, "row-normalised"),
    (np.full((2, 2), 0.5) * np.array([[1, 1], [3, -1]]), 0.5, 1, "non-negative"),
    (np.full((2, 2), np.nan), 0.5, 1, "NaN"),
    (np.ones((4, 4)) / 4, 1.5, 1, r"theta_p must lie in \[0, 1\]"),
    (np.ones((4, 4)) / 4, 0.5, 1.5, r"fraction of N and must lie in \(0, 1\)"),
    (np.ones((4, 4)) / 4, 0.5, -1, ">= 0"),
    (np.ones((2, 4, 4)) / 4, [0.1, 0.2, 0.3], 1, "does not broadcast"),
])
def test_bad_input_is_named(attn, theta_p, theta_d, match):
    with pytest.raises(ValueError, match=match):
        split_and_conquer(attn, theta_p, theta_d)


def test_bool_theta_d_and_bool_maps_rejected():
    with pytest.raises(TypeError, match="bool"):
        split_and_conquer(np.ones((4, 4)) / 4, 0.5, True)
    with pytest.raises(TypeError, match="float"):
        split_and_conquer(np.eye(4, dtype=bool), 0.5, 1)


def test_deit_sized_maps_are_fast():
    a = random_maps((12, 12), 197, seed=4)
    t = time.perf_counter()
    res = split_and_conquer(a, 0.9, 0.5)
    dt = time.perf_counter() - t
    assert res.mask.shape == (12, 12, 197, 197)
    assert dt < 2.0, f"split_and_conquer took {dt:.2f} s on (12, 12, 197, 197)"


# ---------------------------------------------------------------------------------------------- target sparsity

@pytest.mark.parametrize("target", [0.5, 0.8, 0.9, 0.95])
def test_sparsity_target_is_reached(target):
    # Maps of different peakedness per layer, so each layer needs its own theta_p.
    a = np.stack([random_maps((3,), 197, temperature=t, seed=5)[..., :, :] for t in (1.0, 2.5, 4.0, 6.0)])
    res = split_and_conquer_to_sparsity(a, target, 0.5)
    assert abs(res.sparsity - target) <= 0.005
    per_layer = res.map_sparsity.mean(axis=1)
    assert (per_layer >= target - 1e-12).all() and (per_layer - target < 0.005).all()
    assert (res.theta_p == res.theta_p[:, :1]).all()  # one theta_p per layer, shared by its heads
    assert len(np.unique(res.theta_p[:, 0])) == 4
    # The same thresholds through the public function give the same masks.
    again = split_and_conquer(a, res.theta_p, 0.5)
    np.testing.assert_array_equal(again.mask, res.mask)


def test_sparsity_target_out_of_reach():
    a = random_maps((2,), 10, seed=6)  # CLS row + column alone keep 19 of 100 entries
    with pytest.raises(ValueError, match="out of reach"):
        split_and_conquer_to_sparsity(a, 0.9, 3)
    with pytest.raises(ValueError, match=r"\[0, 1\)"):
        split_and_conquer_to_sparsity(a, 1.2, 3)


# ---------------------------------------------------------------------------------------------- auto-encoder

@pytest.mark.parametrize("heads, hc", [(3, 2), (6, 3), (12, 6)])
def test_autoencoder_shapes(heads, hc):
    assert vitcod.compressed_heads_for(heads) == hc
    ae = vitcod.QKAutoEncoder(heads, hc)
    assert ae.q.encoder.weight.shape == (hc, heads) and ae.q.decoder.weight.shape == (heads, hc)
    assert ae.k.encoder.weight.shape == (hc, heads)
    q, k = torch.randn(2, heads, 7, 5), torch.randn(2, heads, 7, 5)
    assert ae.q.encode(q).shape == (2, hc, 7, 5)
    q2, k2, recon = ae(q, k)
    assert q2.shape == q.shape and k2.shape == k.shape and recon.ndim == 0 and recon > 0
    expected = ((q2 - q) ** 2).mean() + ((k2 - k) ** 2).mean()
    torch.testing.assert_close(recon, expected)


def test_autoencoder_mixes_heads_only():
    # The same linear map over heads at every (token, feature): permuting tokens commutes with it.
    ae = vitcod.HeadAutoEncoder(4, 2)
    x = torch.randn(1, 4, 6, 3)
    perm = torch.randperm(6)
    torch.testing.assert_close(ae(x)[:, :, perm], ae(x[:, :, perm]))
    manual = torch.einsum("hc,bcnf->bhnf", ae.decoder.weight,
                          torch.einsum("ch,bhnf->bcnf", ae.encoder.weight, x) + ae.encoder.bias[None, :, None, None])
    torch.testing.assert_close(ae(x), manual + ae.decoder.bias[None, :, None, None])


def tiny_model(heads=3, depth=2, seed=0):
    torch.manual_seed(seed)
    return VisionTransformer(img_size=16, patch_size=4, in_chans=1, num_classes=3, embed_dim=8 * heads,
                             depth=depth, num_heads=heads, mlp_ratio=2.0)


def test_insert_autoencoders_and_pca_init():
    x = torch.randn(16, 1, 16, 16)
    model = tiny_model(heads=4)
    dense_logits = model(x)
    assert vitcod.insert_autoencoders(model, ratio=1.0, init_data=[x]) == 4
    # Full-rank PCA reconstructs exactly: the model is unchanged and the loss ~0.
    logits, recon = model(x, return_recon=True)
    torch.testing.assert_close(logits, dense_logits, atol=1e-4, rtol=1e-4)
    assert recon < 1e-8
    keys = [k for k in model.state_dict() if ".ae." in k]
    assert "blocks.0.attn.ae.q.encoder.weight" in keys and "blocks.1.attn.ae.k.decoder.bias" in keys
    assert not any(".ae.v" in k for k in keys)

    pca, rand = tiny_model(heads=4), tiny_model(heads=4)
    vitcod.insert_autoencoders(pca, 0.5, init_data=[x])
    vitcod.insert_autoencoders(rand, 0.5)
    assert pca(x, return_recon=True)[1] < rand(x, return_recon=True)[1]
    with pytest.raises(ValueError, match="already has"):
        vitcod.insert_autoencoders(pca)
    with pytest.raises(ValueError, match="ratio"):
        vitcod.insert_autoencoders(tiny_model(), ratio=0.0)


# ---------------------------------------------------------------------------------------------- calibration

def batches(n_batches, batch=4, seed=0, labels=True):
    g = torch.Generator().manual_seed(seed)
    for _ in range(n_batches):
        x = torch.randn(batch, 1, 16, 16, generator=g)
        yield (x, torch.zeros(batch, dtype=torch.long)) if labels else x


def test_calibrate_equals_naive_mean_and_is_deterministic():
    model = tiny_model()
    data = list(batches(3))
    got = vitcod.calibrate(model, data, progress=False)
    assert got.shape == (2, 3, 17, 17) and got.dtype == np.float64
    maps = {0: [], 1: []}
    with torch.no_grad(), capture_attention(model, lambda i, p: maps[i].append(p)):
        for x, _ in data:
            model(x)
    naive = np.stack([torch.cat(maps[i]).double().mean(0).numpy() for i in range(2)])
    np.testing.assert_allclose(got, naive, rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(got.sum(-1), 1.0, atol=1e-5)
    np.testing.assert_array_equal(got, vitcod.calibrate(model, data, progress=False))
    # Bare image batches and a one-shot generator give the same answer.
    np.testing.assert_array_equal(got, vitcod.calibrate(model, batches(3, labels=False), progress=False))


def test_calibrate_streams_without_keeping_batches():
    model = tiny_model()
    refs = []

    def gen():
        for i, (x, y) in enumerate(batches(12)):
            refs.append(weakref.ref(x))
            if i >= 2:
                gc.collect()
                # Two batches back must be gone: calibrate keeps running sums, not images or maps.
                assert refs[i - 2]() is None, f"batch {i - 2} is still referenced"
            yield x, y
            del x, y

    out = vitcod.calibrate(model, gen(), progress=False)
    assert np.isfinite(out).all()
    with pytest.raises(ValueError, match="no images"):
        vitcod.calibrate(model, [], progress=False)


def test_apply_masks_checks_shape():
    model = tiny_model()
    res = split_and_conquer(vitcod.calibrate(model, list(batches(1)), progress=False), 0.5, 0.5)
    vitcod.apply_masks(model, res)
    assert model.blocks[1].attn.mask.shape == (3, 17, 17)
    with pytest.raises(ValueError, match="do not fit"):
        vitcod.apply_masks(model, res.mask[:1])
    vitcod.apply_masks(model, None)
    assert model.blocks[0].attn.mask is None


# ---------------------------------------------------------------------------------------------- training

def toy_task(n=48, seed=0):
    """Labels = which third of the image is brightest: learnable in a few steps."""
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 3, (n,), generator=g)
    x = 0.3 * torch.randn(n, 1, 16, 16, generator=g)
    for i in range(n):
        x[i, 0, :, 5 * int(y[i]):5 * int(y[i]) + 5] += 1.0
    return [(x[i:i + 16], y[i:i + 16]) for i in range(0, n, 16)]


def test_finetune_loss_decreases_with_ae_and_masks():
    data = toy_task()
    model = tiny_model()
    vitcod.insert_autoencoders(model, init_data=data)
    vitcod.apply_masks(model, split_and_conquer(vitcod.calibrate(model, data, progress=False), 0.6, 0.5))
    hist = vitcod.finetune(model, data, epochs=10, lr=3e-3, recon_weight=1.0, seed=0, device="cpu",
                           progress=False, log_epochs=False)
    assert [h["epoch"] for h in hist] == list(range(1, 11))
    assert hist[-1]["loss"] < 0.7 * hist[0]["loss"], [h["loss"] for h in hist]
    assert all(h["recon"] > 0 for h in hist)


class Interrupted(Exception):
    pass


def test_finetune_resume_matches_uninterrupted_run(tmp_path):
    data = toy_task()
    kw = dict(epochs=3, lr=2e-3, recon_weight=0.5, seed=7, device="cpu", progress=False, log_epochs=False)

    def run(checkpoint, fail_at=None):
        model = tiny_model(seed=1)
        vitcod.insert_autoencoders(model, seed=1)
        calls = {"n": 0}

        def augment(x):  # random noise: checks the per-epoch reseeding too
            calls["n"] += 1
            if fail_at is not None and calls["n"] == fail_at:
                raise Interrupted
            return x + 0.01 * torch.randn_like(x)

        return model, vitcod.finetune(model, data, checkpoint=checkpoint, augment=augment, **kw)

    ref_model, ref_hist = run(None)
    ck = tmp_path / "ck.pth"
    with pytest.raises(Interrupted):
        run(ck, fail_at=5)  # 3 batches per epoch: dies in epoch 2, after epoch 1's checkpoint
    assert torch.load(ck, weights_only=True)["epoch"] == 1
    model, hist = run(ck)
    assert [h["loss"] for h in hist] == [h["loss"] for h in ref_hist]
    for (k, a), b in zip(ref_model.state_dict().items(), model.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=0, atol=0, msg=k)
    with pytest.raises(ValueError, match="resume=False"):
        vitcod.finetune(tiny_model(), data, checkpoint=ck, **{**kw, "lr": 1e-3})


def test_finetune_rejects_one_shot_iterables():
    with pytest.raises(TypeError, match="re-iterable"):
        vitcod.finetune(tiny_model(), iter(toy_task()), epochs=1, lr=1e-3)


def test_save_and_load_vitcod_roundtrip(tmp_path):
    data = toy_task()
    model = tiny_model()
    vitcod.insert_autoencoders(model, init_data=data)
    res = split_and_conquer(vitcod.calibrate(model, data, progress=False), 0.5, 0.5)
    vitcod.apply_masks(model, res)
    vitcod.save_vitcod(tmp_path / "m.pth", model, res, accuracy=0.5)
    loaded, res2 = vitcod.load_vitcod(tmp_path / "m.pth")
    np.testing.assert_array_equal(res2.mask, res.mask)
    np.testing.assert_array_equal(res2.order, res.order)
    x = data[0][0]
    torch.testing.assert_close(loaded(x), model.eval()(x))


def test_plots_write_pngs(tmp_path):
    res = split_and_conquer(random_maps((2, 3), 20, seed=8), 0.6, 0.3)
    vitcod.plot_masks(res, tmp_path / "m.png")
    vitcod.plot_sparsity(res, tmp_path / "s.png")
    for f in ("m.png", "s.png"):
        assert (tmp_path / f).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.slow
def test_train_demo_end_to_end_smoke(tmp_path):
    """The demo script on 96 images, one epoch per stage: every output is written and loads back."""
    from vitaccel.models import train_demo

    m = train_demo.main(["--out", str(tmp_path), "--train-limit", "96", "--low-res-epochs", "1", "--dense-epochs", "1",
                         "--ae-epochs", "1", "--sparse-epochs", "1", "--quiet", "--sparsity", "0.9"])
    assert abs(m["sparsity"] - 0.9) <= 0.005
    for f in ("dense.pth", "vitcod_sparse_ae.pth", "vitcod_masks.npz", "metrics.json", "masks.png", "sparsity.png"):
        assert (tmp_path / f).exists(), f
    assert not (tmp_path / "work").exists()
    model, res = vitcod.load_vitcod(tmp_path / "vitcod_sparse_ae.pth")
    assert model.blocks[0].attn.ae.compressed_heads == 2 and res.mask.shape == (4, 3, 197, 197)
    npz = np.load(tmp_path / "vitcod_masks.npz")
    np.testing.assert_array_equal(npz["mask"], res.mask)
    assert npz["order"].dtype == np.int32
