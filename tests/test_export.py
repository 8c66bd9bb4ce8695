"""int8 export: a PyTorch DeiT (masks, AE) -> bundle -> the simulator agrees with the float model."""
import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="models extra not installed")

from vitaccel.host.bundle import load_bundle  # noqa: E402
from vitaccel.models.deit import VisionTransformer  # noqa: E402
from vitaccel.models.export import activation_scales, agreement, build_bundle, export_bundle  # noqa: E402
from vitaccel.models.vitcod import apply_masks, calibrate, insert_autoencoders, split_and_conquer  # noqa: E402


@pytest.fixture(scope="module")
def setup():
    torch.set_num_threads(1)
    torch.manual_seed(0)
    m = VisionTransformer(img_size=16, patch_size=4, in_chans=1, num_classes=10, embed_dim=32, depth=2, num_heads=4)
    # A trained-looking head: larger logits make agreement a real test.
    with torch.no_grad():
        m.head.weight.mul_(20)
    x = torch.randn(64, 1, 16, 16)
    data = [x[i:i + 16] for i in range(0, 64, 16)]
    return m, x, data


def test_sparse_ae_export_round_trip_and_agreement(setup, tmp_path):
    m, x, data = setup
    res = split_and_conquer(calibrate(m, data), 0.7, 0.5)
    apply_masks(m, res)
    insert_autoencoders(m, init_data=data)
    try:
        b = export_bundle(m, data, tmp_path / "m.vcb", split=res, extra={"note": "test"})
        loaded = load_bundle(tmp_path / "m.vcb", expect_config="paper")
        assert loaded.identical(b)
        assert loaded.method == "vitcod" and loaded.has("ae") and loaded.model.ae_heads == 2
        assert np.array_equal(loaded.layer(1)["attn.mask"], res.mask[1])
        a = agreement(m, loaded, x.numpy(), labels=np.zeros(64, int))
        assert a["top1_agreement"] >= 0.95
        assert a["max_logit_error"] < 0.1 * float(np.abs(m(x).detach().numpy()).max())
        assert 0.99 <= a["logit_cosine"] <= 1.0 + 1e-9
        # Batched through the simulator (16 at a time): a subset gives the same figures for its images.
        few = agreement(m, loaded, x[:20].numpy(), progress=False)
        assert few["images"] == 20 and few["logit_cosine"] > 0.99
    finally:
        apply_masks(m, None)
        for blk in m.blocks:
            blk.attn.ae = None


def test_dense_export(setup):
    m, x, data = setup
    b = build_bundle(m, activation_scales(m, data), config="zcu104")
    assert b.method == "dense" and not b.has("attn_sparse") and b.config_name == "zcu104"
    assert agreement(m, b, x.numpy()[:16])["top1_agreement"] >= 0.9


def test_export_errors(setup):
    m, x, data = setup
    res = split_and_conquer(np.full((2, 4, 17, 17), 1 / 17), 0.5, 0.5)
    with pytest.raises(ValueError, match="split masks have shape"):
        build_bundle(m, activation_scales(m, data), split=split_and_conquer(np.full((1, 4, 17, 17), 1 / 17), 0.5, 0.5))
    assert res.mask.shape == (2, 4, 17, 17)
    with pytest.raises(ValueError, match="no calibration batches"):
        activation_scales(m, [])


def test_calibration_quantile_equals_torch_quantile():
    """The top-k quantile used for calibration is torch.quantile bit for bit (it only avoids the sort)."""
    from vitaccel.models.export import _quantile

    g = torch.Generator().manual_seed(0)
    for trial in range(200):
        n = int(torch.randint(2, 120000, (1,), generator=g))
        a = (torch.randn(n, generator=g) * 5).abs()
        if trial % 5 == 0:
            a[: n // 2] = 0
        q = 0.9999 if trial % 3 == 0 else 0.99 + 0.01 * float(torch.rand(1, generator=g))
        assert torch.equal(_quantile(a, q), torch.quantile(a, q)), (n, q)
    assert torch.equal(_quantile(a, 0.5), torch.quantile(a, 0.5))   # far from the top: the plain path
