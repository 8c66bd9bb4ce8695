"""``vitaccel compare``: ViTCoD and ReViT bundles and their baselines on the same images and hardware budget."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from vitaccel.host.compare import (BUDGETS, E_DRAM_PJ_PER_BYTE, E_MAC_PJ, compare_bundles, resolve_configs)
from vitaccel.sim.revit.bundle_cycles import BASELINES
from vitaccel.sim.revit.model import run_revit
from vitaccel.sim.vitcod.model import compile_program, forward_batched
from vitaccel.testing import random_bundle

DEMO = Path(__file__).resolve().parents[1] / "models" / "demo"


@pytest.fixture(scope="module")
def pair():
    v = random_bundle("zcu104", seed=2, embed_dim=24, num_heads=3, ae_heads=2, density=0.3)
    r = random_bundle("revit-zcu104", method="revit", seed=2, embed_dim=24, num_heads=3)
    imgs = np.random.default_rng(0).normal(size=(3, 3, 16, 16)).astype(np.float32)
    labels = np.array([1, 2, 3])
    return v, r, imgs, labels


def test_rows_of_both_accelerators_and_their_baselines(pair):
    v, r, imgs, labels = pair
    res = compare_bundles([v, r], imgs, labels, configs=["zcu104"])
    assert res.configs == BUDGETS["zcu104"] and res.images == 3
    vit = [x for x in res.rows if x.accelerator == "vitcod"]
    rev = [x for x in res.rows if x.accelerator == "revit"]
    assert [x.variant for x in vit] == ["vitcod", "vitcod_no_ae", "dense", "sanger", "pruning_only", "reordering_only"]
    assert [x.variant for x in rev] == ["revit", *BASELINES]
    # top-1 from each bundle's own integer model on these images; timing-only baselines have none.
    want_v = float(np.mean(np.argmax(forward_batched(compile_program(v, "zcu104"), imgs, 16), 1) == labels))
    want_r = float(np.mean(run_revit(r, imgs, config="revit-zcu104").predictions == labels))
    assert vit[0].top1 == want_v and rev[0].top1 == want_r
    assert all(x.top1 is None for x in vit[1:])
    assert [x.top1 is None for x in rev[1:]] == [False, False, False, False, True]   # only dense: timing only
    for rows in (vit, rev):
        dense = next(x for x in rows if x.variant == "dense")
        assert dense.speedup_vs_dense == pytest.approx(1.0)
        assert rows[0].speedup_vs_dense == pytest.approx(dense.cycles / rows[0].cycles)
    # ViTCoD's cycles do not depend on the image; ReViT's reported spread is a real one.
    assert vit[0].latency_us_min == vit[0].latency_us == vit[0].latency_us_max
    assert rev[0].latency_us_min <= rev[0].latency_us <= rev[0].latency_us_max
    x = rev[0]
    assert x.energy_uj == pytest.approx((x.macs * E_MAC_PJ + x.dram_bytes * E_DRAM_PJ_PER_BYTE) * 1e-6)
    assert x.latency_us == pytest.approx(x.cycles / 200.0)                          # revit-zcu104 at 200 MHz
    table = res.table()
    assert "no_differential" in table and "sanger" in table and "budget 'zcu104'" in table
    only = compare_bundles([r], imgs, configs=["revit-kv260"], baselines=False)
    assert [x.variant for x in only.rows] == ["revit"] and only.rows[0].config == "revit-kv260"


def test_budgets_and_configs():
    assert resolve_configs()[0] == "paper" and resolve_configs()[1]["revit"] == "revit-paper"
    assert Path(resolve_configs()[1]["vitcod"]).name == "table3-vitcod.json"
    b, c = resolve_configs(["kv260", "revit-zcu104"])
    assert b == "kv260" and c == {"vitcod": "kv260", "revit": "revit-zcu104"}
    # A budget's name wins over the ViTCoD config of the same name; ViTCoD's own paper config is a file.
    root = Path(__file__).resolve().parents[1] / "configs"
    assert resolve_configs([str(root / "paper.json")])[1]["vitcod"] == str(root / "paper.json")
    with pytest.raises(ValueError, match="more than one hardware budget"):
        resolve_configs(["kv260", "zcu104"])
    with pytest.raises(ValueError, match="two configs for accelerator 'vitcod'"):
        resolve_configs([str(root / "paper.json"), str(root / "kv260.json")])


def test_bad_inputs(pair):
    v, r, imgs, _ = pair
    other = random_bundle(method="revit", seed=1, img_size=32)
    with pytest.raises(ValueError, match="different inputs"):
        compare_bundles([v, other], imgs)
    with pytest.raises(ValueError, match="at least one image"):
        compare_bundles([v], imgs[:0])
    with pytest.raises(ValueError, match="at least one bundle"):
        compare_bundles([], imgs)


def test_vitaccel_compare_on_the_demo_bundles(capsys, tmp_path):
    from vitaccel.cli import main

    args = ["compare", str(DEMO / "demo.vcb"), str(DEMO / "revit.vcb"), "--limit", "3", "--no-progress"]
    assert main(args + ["--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["images"] == 3 and doc["budget"] == "paper" and doc["images_from"].endswith("test_images.npz")
    main_rows = {r["variant"]: r for r in doc["rows"] if r["variant"] in ("vitcod", "revit")}
    assert set(main_rows) == {"vitcod", "revit"} and all(r["top1"] is not None for r in main_rows.values())
    assert {r["config"].rsplit("/", 1)[-1] for r in main_rows.values()} == {"table3-vitcod.json", "revit-paper"}
    assert main(args + ["--no-baselines", "--plot", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "energy proxy" in out and (tmp_path / "compare.png").stat().st_size > 1000
    assert json.loads((tmp_path / "compare.json").read_text())["rows"][0]["variant"] == "vitcod"
    # Bundles that are not the shipped demos need --images.
    b = tmp_path / "b.vcb"
    b.write_bytes((DEMO / "revit.vcb").read_bytes())
    assert main(["compare", str(b)]) == 2
    assert "--images is needed" in capsys.readouterr().err
