"""ReViT's float algorithm (vitaccel.models.revit): hand-made cases, identities, the model and its training."""
from __future__ import annotations

import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from vitaccel.models import revit  # noqa: E402
from vitaccel.models.deit import VisionTransformer  # noqa: E402

torch.set_num_threads(1)


def tiny_model(seed: int = 0, **kw) -> VisionTransformer:
    torch.manual_seed(seed)
    cfg = dict(img_size=16, patch_size=4, in_chans=1, num_classes=3, embed_dim=24, depth=2, num_heads=2, mlp_ratio=2.0)
    cfg.update(kw)
    return VisionTransformer(**cfg).eval()


# --------------------------------------------------------------------------------------------------
# LSH
# --------------------------------------------------------------------------------------------------

def test_lsh_hand_made_and_ties() -> None:
    alpha = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    beta = np.array([0.0, 0.5, 0.0])
    x = np.array([[3.0, 0.0],    # codes floor([3, .5, 3] / 1) = [3, 0, 3]: tie of g0 and g2 -> 0
                  [0.0, 2.0],    # [0, 2, 2]: tie -> 1
                  [1.0, 1.0],    # [1, 1, 2] -> 2
                  [-5.0, -5.0]])  # [-5, -5, -10] (floor(-4.5) = -5): tie -> 0
    assert revit.lsh_codes(x, alpha, beta, 1.0).tolist() == [[3, 0, 3], [0, 2, 2], [1, 1, 2], [-5, -5, -10]]
    assert revit.lsh_partition(x, alpha, beta, 1.0).tolist() == [0, 1, 2, 0]
    # A wide bucket puts everything in one code: all ties, all group 0.
    assert revit.lsh_partition(x / 100, alpha, 0 * beta, 100.0).tolist() == [0, 0, 0, 0]
    got = revit.lsh_partition(torch.tensor(x), torch.tensor(alpha), torch.tensor(beta), 1.0)
    assert isinstance(got, torch.Tensor) and got.dtype == torch.int64 and got.tolist() == [0, 1, 2, 0]


def test_make_lsh_deterministic_per_seed() -> None:
    a1, b1 = revit.make_lsh(16, 4, 2.0, 7)
    a2, b2 = revit.make_lsh(16, 4, 2.0, 7)
    a3, _ = revit.make_lsh(16, 4, 2.0, 8)
    assert np.array_equal(a1, a2) and np.array_equal(b1, b2) and not np.array_equal(a1, a3)
    assert a1.shape == (4, 16) and b1.shape == (4,) and (b1 >= 0).all() and (b1 < 2.0).all()
    big, _ = revit.make_lsh(64, 64, 1.0, 0)
    assert abs(big.mean()) < 0.05 and abs(big.std() - 1) < 0.05
    with pytest.raises(ValueError):
        revit.make_lsh(16, 4, 0.0, 0)


def test_lsh_permutation_equivariance_and_identical_tokens() -> None:
    rng = np.random.default_rng(0)
    alpha, beta = revit.make_lsh(8, 4, 0.5, 3)
    x = rng.standard_normal((2, 30, 8))
    x[:, 10] = x[:, 3]  # identical tokens
    g = revit.lsh_partition(x, alpha, beta, 0.5)
    assert g.shape == (2, 30) and g.dtype == np.int64
    assert (g[:, 10] == g[:, 3]).all()
    perm = rng.permutation(30)
    assert np.array_equal(revit.lsh_partition(x[:, perm], alpha, beta, 0.5), g[:, perm])
    assert len(np.unique(g)) > 1


def test_group_centroids_hand_made_and_empty_group() -> None:
    x = np.array([[1.0, 2.0], [3.0, 4.0], [10.0, 0.0]])
    c, n = revit.group_centroids(x, np.array([0, 0, 2]), 4, return_counts=True)
    assert np.allclose(c, [[2, 3], [0, 0], [10, 0], [0, 0]]) and n.tolist() == [2, 0, 1, 0]
    assert np.isfinite(c).all()
    ct = revit.group_centroids(torch.tensor(x), torch.tensor([0, 0, 2]), 4)
    assert isinstance(ct, torch.Tensor) and torch.allclose(ct, torch.tensor(c))
    cw = revit.group_centroids(x, np.array([0, 0, 2]), 4, weights=np.array([1.0, 0.0, 1.0]))
    assert np.allclose(cw[0], [1, 2])


# --------------------------------------------------------------------------------------------------
# blockwise softmax and differential attention
# --------------------------------------------------------------------------------------------------

def test_blockwise_softmax_every_block_size_and_order() -> None:
    rng = np.random.default_rng(1)
    s = rng.standard_normal((3, 4, 11)) * 4
    mask = rng.random((3, 4, 11)) < 0.7
    mask[0, 0] = False  # an empty row
    ref = np.where(mask, np.exp(s - np.where(mask, s, -np.inf).max(-1, keepdims=True)), 0)
    ref = ref / np.maximum(ref.sum(-1, keepdims=True), 1e-300)
    for block in range(1, 12):
        nb = -(-11 // block)
        for order in (None, list(range(nb))[::-1], list(rng.permutation(nb))):
            got = revit.blockwise_softmax(s, block, mask=mask, order=order)
            assert np.allclose(got, ref, atol=1e-12, rtol=0), (block, order)
    assert np.all(revit.blockwise_softmax(s, 3, mask=mask)[0, 0] == 0)
    t = revit.blockwise_softmax(torch.tensor(s, dtype=torch.float32), 4)
    assert isinstance(t, torch.Tensor) and torch.allclose(t, torch.softmax(torch.tensor(s, dtype=torch.float32), -1), atol=1e-6)
    # Hand-made: two blocks, the max arrives in the second one.
    got = revit.blockwise_softmax(np.array([0.0, math.log(3.0)]), 1)
    assert np.allclose(got, [0.25, 0.75])


@pytest.mark.parametrize("dtype,tol", [(np.float64, 1e-9), (np.float32, 1e-5)])
def test_differential_equals_plain_group_attention(dtype, tol) -> None:
    rng = np.random.default_rng(2)
    h, n, d, G = 3, 23, 8, 4
    q, k, v = (rng.standard_normal((h, n, d)).astype(dtype) for _ in range(3))
    groups = rng.integers(0, G, n)
    groups[groups == 3] = 2  # an empty group
    ref = revit.plain_group_attention(q, k, v, groups, G)
    for block in range(1, n + 1):
        got = revit.differential_attention(q, k, v, groups, G, block=block)
        assert got.dtype == dtype and np.max(np.abs(got - ref)) < tol, block
    tq = revit.differential_attention(*(torch.tensor(a) for a in (q, k, v)), torch.tensor(groups), G, block=5)
    assert isinstance(tq, torch.Tensor) and np.max(np.abs(tq.numpy() - ref)) < tol


def test_differential_hand_made() -> None:
    # One group of two tokens, d = 1: S = [[1*1, 1*3], [2*1, 2*3]] (scale 1), Z = A v.
    q = np.array([[[1.0], [2.0]]])
    k = np.array([[[1.0], [3.0]]])
    v = np.array([[[10.0], [20.0]]])
    a0 = np.exp([1, 3]) / np.exp([1, 3]).sum()
    a1 = np.exp([2, 6]) / np.exp([2, 6]).sum()
    got = revit.differential_attention(q, k, v, np.array([1, 1]), 2, scale=1.0, block=1)
    assert np.allclose(got[0, :, 0], [a0 @ [10, 20], a1 @ [10, 20]])


def test_hierarchical_modes_and_module_agree() -> None:
    model = revit.convert_to_revit(tiny_model(), 3, 0.5).double().eval()
    x = torch.randn(2, 1, 16, 16, dtype=torch.float64)
    blk = model.blocks[0]
    with torch.no_grad():
        tok = torch.cat([model.cls_token.expand(2, -1, -1), model.patch_embed(x)], 1) + model.pos_embed
        h = blk.norm1(tok)
        n = h.shape[1]
        for mode in revit.COMBINE_MODES:
            blk.attn.combine = mode
            out, info = blk.attn(h, torch.ones(2, n, dtype=h.dtype))
            q, k, v = blk.attn.qkv(h).reshape(2, n, 3, 2, 12).permute(2, 0, 3, 1, 4)
            for i in range(2):
                ref = revit.hierarchical_attention(q[i], k[i], v[i], info["groups"][i], 3, combine=mode, block=4)
                ref = blk.attn.proj(ref.transpose(0, 1).reshape(n, -1))
                assert torch.max(torch.abs(ref - out[i])) < 1e-10, mode
    # sum = intra + the group's centroid context; CLS row identical in every mode.
    q, k, v = (torch.randn(2, 9, 4, dtype=torch.float64) for _ in range(3))
    g = torch.tensor([0, 0, 1, 1, 1, 2, 2, 0])
    hs = revit.hierarchical_attention(q, k, v, g, 3, combine="sum")
    hi = revit.hierarchical_attention(q, k, v, g, 3, combine="intra")
    hj = revit.hierarchical_attention(q, k, v, g, 3, combine="joint")
    assert torch.allclose(hs[:, 0], hi[:, 0]) and torch.allclose(hs[:, 0], hj[:, 0])
    qc, kc, vc = (torch.stack([t[:, 1:][:, g == j].mean(1) for j in range(3)], 1) for t in (q, k, v))
    zc = torch.softmax(qc @ kc.transpose(1, 2) / 2.0, -1) @ vc
    assert torch.allclose(hs[:, 1:] - hi[:, 1:], zc[:, g])


# --------------------------------------------------------------------------------------------------
# the model: conversion, pruning, training
# --------------------------------------------------------------------------------------------------

def test_convert_keeps_weights_and_shapes() -> None:
    base = tiny_model()
    m = revit.convert_to_revit(base, num_groups=4, gamma=1.0, keep={1: (0.5, 0.5)})
    assert m.blocks[0].attn.qkv.weight.data_ptr() != base.blocks[0].attn.qkv.weight.data_ptr()
    assert torch.equal(m.blocks[1].mlp.fc1.weight, base.blocks[1].mlp.fc1.weight)
    assert m.keep == {1: (revit.keep_q16(0.5), revit.keep_q16(0.5))}
    # Each layer has its own hash (seed + layer).
    assert not torch.equal(m.blocks[0].attn.lsh_alpha, m.blocks[1].attn.lsh_alpha)
    a0, _ = revit.make_lsh(24, 4, 1.0, 0)
    assert torch.equal(m.blocks[0].attn.lsh_alpha, torch.from_numpy(a0.astype(np.float32)))
    out = m.eval()(torch.randn(3, 1, 16, 16))
    assert out.shape == (3, 3) and torch.isfinite(out).all()
    with pytest.raises(ValueError):
        revit.keep_q16(0.0)
    with pytest.raises(ValueError):
        revit.convert_to_revit(base, keep={5: (0.5, 0.5)})


def test_pruning_hand_made_keeps_cls_and_package_rule() -> None:
    m = revit.convert_to_revit(tiny_model(), num_groups=2, keep={0: (0.5, 0.5)}).eval()
    x = torch.arange(6 * 24, dtype=torch.float32).reshape(1, 6, 24)          # CLS + 4 patches + 1 dead
    alive = torch.tensor([[1.0, 1, 1, 1, 1, 0]])
    info = dict(groups=torch.tensor([[0, 0, 1, 1, 0]]), counts=torch.tensor([[2.0, 2.0]]),
                cls_attn=torch.tensor([[0.0, 0.4, 0.1, 0.3, 0.2, 0.0]]), group_score=torch.tensor([[0.7, 0.3]]))
    x2, alive2, loss = m._prune(0, x, alive, info)
    # ceil(G'/2) = 1 group (group 0: tokens 1, 2), ceil(2/2) = 1 patch of it (token 1, score 0.4).
    assert alive2.tolist() == [[1.0, 1, 0, 0, 0, 0, 1]]
    pkg = 0.1 * x[0, 2] + 0.3 * x[0, 3] + 0.2 * x[0, 4]                        # unnormalised CLS-attention sum
    assert torch.allclose(x2[0, -1], pkg) and torch.equal(x2[0, :6], x[0]) and float(loss) == 0
    # Ties go to the lower index; a group of 3 at ratio 0.5 keeps ceil(1.5) = 2.
    m.set_keep({0: (1.0, 0.5)})
    info["groups"] = torch.tensor([[0, 0, 0, 1, 0]])
    info["counts"] = torch.tensor([[3.0, 1.0]])
    info["cls_attn"] = torch.tensor([[0.0, 0.2, 0.2, 0.2, 0.2, 0.2]])
    _, alive3, _ = m._prune(0, x, alive, info)
    assert alive3.tolist() == [[1.0, 1, 1, 0, 1, 0, 1]]


def test_pruned_forward_cls_always_alive_and_token_counts() -> None:
    m = revit.convert_to_revit(tiny_model(depth=3), num_groups=4, keep={0: (0.75, 0.7), 1: (1.0, 0.5)}).eval()
    m.trace = {}
    with torch.no_grad():
        m(torch.randn(4, 1, 16, 16))
    alive = m.trace["alive"]
    assert alive[0].shape == (4, 17) and alive[1].shape == (4, 18) and alive[2].shape == (4, 19)
    for a in alive.values():
        assert (a[:, 0] == 1).all() and (a[:, -1] == 1).all()
    assert (alive[1][:, 1:-1].sum(1) < 16).all() and (alive[2].sum(1) < alive[1].sum(1)).all()
    # Training: Gumbel decisions are hard 0/1 and the keep-ratio loss is returned as the auxiliary loss.
    m.train()
    torch.manual_seed(0)
    logits, aux = m(torch.randn(4, 1, 16, 16), return_recon=True)
    assert set(torch.unique(m.trace["alive"][1]).tolist()) <= {0.0, 1.0} and float(aux.detach()) > 0
    aux.backward()
    assert m.prune_theta["0"].grad is not None and torch.isfinite(m.prune_theta["0"].grad).all()
    m.trace = None


def test_finetune_smoke_lowers_loss(tmp_path) -> None:
    torch.manual_seed(0)
    x = torch.randn(16, 1, 16, 16)
    y = (x.mean((1, 2, 3)) > 0).long() + (x[:, 0, :8].mean((1, 2)) > 0).long()
    m = revit.convert_to_revit(tiny_model(), num_groups=4, keep={1: (0.75, 0.7)})
    hist = revit.finetune_revit(m, [(x, y)], epochs=12, lr=3e-3, progress=False, log_epochs=False,
                                checkpoint=tmp_path / "ck.pth", device="cpu")
    assert hist[-1]["loss"] < 0.8 * hist[0]["loss"], [h["loss"] for h in hist]
    revit.save_revit(tmp_path / "r.pth", m)
    back = revit.load_revit(tmp_path / "r.pth")
    assert back.keep == m.keep and back.revit == m.revit
    with torch.no_grad():
        assert torch.equal(back(x), m.eval()(x))
