"""Plain-PyTorch DeiT: timm key names, masked attention semantics, checkpoint loading (.pth and
.safetensors, parsed without the safetensors package), the demo data's shape."""
import json
import math
import struct

import numpy as np
import pytest

torch = pytest.importorskip("torch")
torch.set_num_threads(1)
import torch.nn.functional as F  # noqa: E402

from vitaccel.models import deit  # noqa: E402
from vitaccel.models.deit import Attention, CheckpointMismatchError, VisionTransformer  # noqa: E402


def timm_deit_shapes(embed_dim, depth, num_heads, num_classes=1000, img_size=224, patch=16, in_chans=3, mlp_ratio=4):
    """Key -> shape of timm's ``deit_*_patch16_224`` state dict, written out from timm's naming
    (VisionTransformer: cls_token, pos_embed, patch_embed.proj, blocks.i.{norm1,attn.qkv,attn.proj,norm2,
    mlp.fc1,mlp.fc2}, norm, head), independently of our model code."""
    d, n, hid = embed_dim, (img_size // patch) ** 2 + 1, int(embed_dim * mlp_ratio)
    shapes = {"cls_token": (1, 1, d), "pos_embed": (1, n, d),
              "patch_embed.proj.weight": (d, in_chans, patch, patch), "patch_embed.proj.bias": (d,)}
    for i in range(depth):
        b = f"blocks.{i}."
        shapes.update({
            b + "norm1.weight": (d,), b + "norm1.bias": (d,),
            b + "attn.qkv.weight": (3 * d, d), b + "attn.qkv.bias": (3 * d,),
            b + "attn.proj.weight": (d, d), b + "attn.proj.bias": (d,),
            b + "norm2.weight": (d,), b + "norm2.bias": (d,),
            b + "mlp.fc1.weight": (hid, d), b + "mlp.fc1.bias": (hid,),
            b + "mlp.fc2.weight": (d, hid), b + "mlp.fc2.bias": (d,),
        })
    shapes.update({"norm.weight": (d,), "norm.bias": (d,), "head.weight": (num_classes, d), "head.bias": (num_classes,)})
    return shapes


SMALL = dict(embed_dim=24, depth=2, num_heads=3, num_classes=5, img_size=32, patch=16, in_chans=3)


def small_model():
    return VisionTransformer(img_size=32, patch_size=16, in_chans=3, num_classes=5, embed_dim=24, depth=2,
                             num_heads=3)


def timm_like_state_dict(seed=0, **cfg):
    g = torch.Generator().manual_seed(seed)
    return {k: torch.randn(s, generator=g) for k, s in timm_deit_shapes(**{**SMALL, **cfg}).items()}


# ---------------------------------------------------------------------------------------------- structure

@pytest.mark.parametrize("factory, dim, heads", [(deit.deit_tiny, 192, 3), (deit.deit_small, 384, 6)])
def test_keys_and_shapes_match_timm(factory, dim, heads):
    model = factory()
    got = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    assert got == timm_deit_shapes(dim, 12, heads)
    assert list(got)[:4] == ["cls_token", "pos_embed", "patch_embed.proj.weight", "patch_embed.proj.bias"]


def test_factory_overrides_and_config():
    m = deit.deit_base(depth=1, img_size=32, num_classes=7)
    assert m.config["embed_dim"] == 768 and m.config["num_heads"] == 12 and m.num_tokens == 5
    assert m.head.out_features == 7 and m.depth == 1
    assert VisionTransformer(**m.config).config == m.config


def test_layernorm_eps_and_exact_gelu():
    m = small_model()
    norms = [mod for mod in m.modules() if isinstance(mod, torch.nn.LayerNorm)]
    assert len(norms) == 2 * 2 + 1 and all(n.eps == 1e-6 for n in norms)
    assert m.blocks[0].mlp.act.approximate == "none"


@pytest.mark.parametrize("kw, match", [
    (dict(img_size=30, patch_size=16), "multiple of patch_size"),
    (dict(embed_dim=10, num_heads=3), "divisible by num_heads"),
    (dict(depth=0), "depth must be a positive int"),
])
def test_bad_config_is_named(kw, match):
    with pytest.raises(ValueError, match=match):
        VisionTransformer(**kw)


def test_forward_matches_manual_reference():
    """One block written out by hand, timm's order of operations (pre-norm, CLS first, pos added after)."""
    torch.manual_seed(0)
    m = VisionTransformer(img_size=8, patch_size=4, in_chans=2, num_classes=3, embed_dim=6, depth=1, num_heads=2)
    x = torch.randn(2, 2, 8, 8)
    p = dict(m.named_parameters())
    patches = x.unfold(2, 4, 4).unfold(3, 4, 4).permute(0, 2, 3, 1, 4, 5).reshape(2, 4, 32)
    t = patches @ p["patch_embed.proj.weight"].reshape(6, 32).T + p["patch_embed.proj.bias"]
    t = torch.cat([p["cls_token"].expand(2, 1, 6), t], 1) + p["pos_embed"]
    ln = lambda z, n: F.layer_norm(z, (6,), p[n + ".weight"], p[n + ".bias"], eps=1e-6)  # noqa: E731
    qkv = ln(t, "blocks.0.norm1") @ p["blocks.0.attn.qkv.weight"].T + p["blocks.0.attn.qkv.bias"]
    q, k, v = (qkv[..., i * 6:(i + 1) * 6].reshape(2, 5, 2, 3).transpose(1, 2) for i in range(3))
    a = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(3), -1) @ v
    t = t + a.transpose(1, 2).reshape(2, 5, 6) @ p["blocks.0.attn.proj.weight"].T + p["blocks.0.attn.proj.bias"]
    h = F.gelu(ln(t, "blocks.0.norm2") @ p["blocks.0.mlp.fc1.weight"].T + p["blocks.0.mlp.fc1.bias"])
    t = t + h @ p["blocks.0.mlp.fc2.weight"].T + p["blocks.0.mlp.fc2.bias"]
    ref = ln(t, "norm")[:, 0] @ p["head.weight"].T + p["head.bias"]
    torch.testing.assert_close(m(x), ref, atol=1e-5, rtol=1e-5)
    logits, recon = m(x, return_recon=True)
    assert recon.item() == 0.0


# ---------------------------------------------------------------------------------------------- masks

def manual_masked_attention(attn, x, mask):
    """Softmax over the kept entries only, one row at a time; pruned entries contribute nothing."""
    b, n, c = x.shape
    h, d = attn.num_heads, attn.head_dim
    qkv = attn.qkv(x).reshape(b, n, 3, h, d)
    out = torch.zeros(b, h, n, d, dtype=torch.float64)
    for bi in range(b):
        for hi in range(h):
            q, k, v = (qkv[bi, :, t, hi].double() for t in range(3))
            for i in range(n):
                keep = mask[hi, i].nonzero().flatten()
                s = (q[i] @ k[keep].T) / math.sqrt(d)
                out[bi, hi, i] = torch.softmax(s, 0) @ v[keep]
    return attn.proj(out.transpose(1, 2).reshape(b, n, c).float())


@pytest.mark.parametrize("explicit", [False, True])
def test_masked_attention_equals_softmax_over_kept_entries(explicit):
    torch.manual_seed(0)
    attn = Attention(dim=12, num_heads=3)
    x = torch.randn(2, 9, 12)
    mask = torch.rand(3, 9, 9) < 0.3
    mask[..., 0] = True  # every row keeps the CLS column
    mask[1, 4] = False
    mask[1, 4, 7] = True  # a row keeping a single entry (not even the CLS column)
    attn.set_mask(mask)
    if explicit:  # the path calibration takes; it must agree with the fused one
        seen = []
        attn.attn_callback = seen.append
    out, recon = attn(x)
    torch.testing.assert_close(out, manual_masked_attention(attn, x, mask), atol=1e-5, rtol=1e-5)
    assert torch.isfinite(out).all()
    if explicit:
        probs = seen[0]
        assert (probs[:, ~mask] == 0).all()
        torch.testing.assert_close(probs.sum(-1), torch.ones(2, 3, 9))


def test_mask_with_a_single_kept_entry_per_row_never_nans():
    attn = Attention(dim=6, num_heads=2)
    mask = torch.zeros(2, 5, 5, dtype=torch.bool)
    mask[..., 0] = True
    attn.set_mask(mask)
    x = 1e4 * torch.randn(1, 5, 6)  # huge scores: -inf fill must still give finite rows
    out, _ = attn(x)
    assert torch.isfinite(out).all()
    attn.attn_callback = lambda p: None
    assert torch.isfinite(attn(x)[0]).all()


@pytest.mark.parametrize("mask, err, match", [
    (torch.ones(3, 5, 5, dtype=torch.bool), ValueError, r"shape \(H=2, N, N\)"),
    (torch.ones(2, 5, 5), TypeError, "must be bool"),
    (torch.zeros(2, 5, 5, dtype=torch.bool), ValueError, "keeps nothing in 10 query row"),
])
def test_bad_masks_are_named(mask, err, match):
    with pytest.raises(err, match=match):
        Attention(dim=6, num_heads=2).set_mask(mask)


def test_model_masks_layer_count_and_token_count():
    m = small_model()
    with pytest.raises(ValueError, match="got masks for 1 layers"):
        m.set_masks(np.ones((1, 3, 5, 5), dtype=bool))
    bad = np.ones((2, 3, 5, 5), dtype=bool)
    bad[1, 0, 2] = False
    with pytest.raises(ValueError, match="layer 1: attention mask keeps nothing"):
        m.set_masks(bad)
    m.blocks[0].attn.set_mask(np.ones((3, 4, 4), dtype=bool))
    with pytest.raises(ValueError, match="for 4 tokens, input has 5"):
        m(torch.randn(1, 3, 32, 32))
    m.set_masks(None)
    assert "blocks.0.attn.mask" not in m.state_dict()  # masks never change the timm keys


def test_capture_attention_reports_each_layer_and_restores():
    m = small_model()
    seen = []
    with deit.capture_attention(m, lambda i, p: seen.append((i, tuple(p.shape)))):
        m(torch.randn(2, 3, 32, 32))
    assert seen == [(0, (2, 3, 5, 5)), (1, (2, 3, 5, 5))]
    assert all(b.attn.attn_callback is None for b in m.blocks)


# ---------------------------------------------------------------------------------------------- checkpoints

def write_safetensors_by_hand(sd, path, dtype_map=None):
    """The format, from its spec: u64 LE header size, JSON header with offsets, raw LE data."""
    header, blobs, off = {"__metadata__": {"format": "pt"}}, [], 0
    for k, v in sd.items():
        code, arr = (dtype_map or {}).get(k, ("F32", v.numpy().astype("<f4")))
        b = arr.tobytes()
        header[k] = {"dtype": code, "shape": list(v.shape), "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    h = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(h)) + h + b"".join(blobs))


@pytest.mark.parametrize("fmt", ["bare", "model", "state_dict", "safetensors", "safetensors_ours"])
def test_load_timm_named_checkpoint(tmp_path, fmt):
    sd = timm_like_state_dict()
    if fmt == "safetensors":
        path = tmp_path / "ck.safetensors"
        write_safetensors_by_hand(sd, path)
    elif fmt == "safetensors_ours":
        path = tmp_path / "ck.safetensors"
        deit.save_safetensors(sd, path, metadata={"source": "test"})
    else:
        path = tmp_path / "ck.pth"
        torch.save(sd if fmt == "bare" else {fmt: sd, "epoch": 3}, path)
    model = deit.load_checkpoint(small_model(), path)
    for k, v in model.state_dict().items():
        torch.testing.assert_close(v, sd[k], rtol=0, atol=0, msg=k)


def test_safetensors_other_dtypes(tmp_path):
    sd = timm_like_state_dict()
    f16 = sd["head.bias"].half()
    bf16 = sd["norm.weight"].bfloat16()
    dmap = {"head.bias": ("F16", f16.numpy().astype("<f2")),
            "norm.weight": ("BF16", bf16.view(torch.int16).numpy().astype("<i2"))}
    path = tmp_path / "mixed.safetensors"
    write_safetensors_by_hand(sd, path, dmap)
    got = deit.read_safetensors(path)
    assert got["head.bias"].dtype == torch.float16 and torch.equal(got["head.bias"], f16)
    assert got["norm.weight"].dtype == torch.bfloat16 and torch.equal(got["norm.weight"], bf16)
    model = deit.load_checkpoint(small_model(), path)  # cast to the model's float32
    torch.testing.assert_close(model.norm.weight, bf16.float())


def test_mismatch_lists_every_problem(tmp_path):
    sd = timm_like_state_dict()
    del sd["blocks.1.mlp.fc2.bias"], sd["norm.bias"]
    sd["blocks.0.attn.q_norm.weight"] = torch.ones(8)
    sd["head.weight"] = torch.zeros(1000, 24)
    sd["pos_embed"] = torch.zeros(1, 197, 24)
    for path in (tmp_path / "bad.pth", tmp_path / "bad.safetensors"):
        if path.suffix == ".pth":
            torch.save({"model": sd}, path)
        else:
            deit.save_safetensors(sd, path)
        with pytest.raises(CheckpointMismatchError) as ei:
            deit.load_checkpoint(small_model(), path)
        e = ei.value
        assert sorted(e.missing) == ["blocks.1.mlp.fc2.bias", "norm.bias"]
        assert e.unexpected == ["blocks.0.attn.q_norm.weight"]
        assert [w[0] for w in e.wrong_shape] == ["pos_embed", "head.weight"]
        msg = str(e)
        for name in ("blocks.1.mlp.fc2.bias", "norm.bias", "q_norm", "pos_embed", "[1, 197, 24]", "[1, 5, 24]",
                     "head.weight"):
            assert name in msg


def test_corrupt_or_foreign_files_are_named(tmp_path):
    p = tmp_path / "x.safetensors"
    p.write_bytes(struct.pack("<Q", 1000) + b"{}")
    with pytest.raises(ValueError, match="runs past the end"):
        deit.read_safetensors(p)
    h = json.dumps({"a": {"dtype": "F32", "shape": [4], "data_offsets": [0, 8]}}).encode()
    p.write_bytes(struct.pack("<Q", len(h)) + h + bytes(8))
    with pytest.raises(ValueError, match="offsets"):
        deit.read_safetensors(p)
    q = tmp_path / "list.pth"
    torch.save([torch.zeros(1)], q)
    with pytest.raises(ValueError, match="expected a state dict"):
        deit.load_checkpoint(small_model(), q)
    with pytest.raises(FileNotFoundError):
        deit.load_checkpoint(small_model(), tmp_path / "nope.pth")


# ---------------------------------------------------------------------------------------------- demo data

def test_digits_demo_shapes():
    from vitaccel.models import digits
    d = digits.load_digits_split()
    assert d.train_x.shape[1:] == (1, 56, 56) and len(d.train_x) + len(d.test_x) == 1797
    assert len(d.test_x) == 360 and sorted(set(d.test_y.tolist())) == list(range(10))
    assert abs(float(d.train_x.mean())) < 1e-4
    again = digits.load_digits_split()
    assert torch.equal(again.test_y, d.test_y)  # the split is fixed by its seed
    m = digits.demo_model()
    assert m.num_tokens == 197
    shifted = digits.RandomShift(4)(d.train_x[:3])
    assert shifted.shape == (3, 1, 56, 56)


def test_resize_pos_embed_and_with_img_size():
    m = small_model()  # 32x32, 2x2 patches
    pe = m.pos_embed.detach()
    torch.testing.assert_close(deit.resize_pos_embed(pe, 2), pe)
    big = deit.with_img_size(m, 64)
    assert big.pos_embed.shape == (1, 17, 24) and big.num_tokens == 17
    torch.testing.assert_close(big.pos_embed[:, 0], pe[:, 0])  # CLS position untouched
    torch.testing.assert_close(big.blocks[1].attn.qkv.weight, m.blocks[1].attn.qkv.weight)
    assert big(torch.randn(1, 3, 64, 64)).shape == (1, 5)
    with pytest.raises(ValueError, match="square grid"):
        deit.resize_pos_embed(torch.zeros(1, 6, 4), 3)
