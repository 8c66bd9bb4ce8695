"""The Fig. 5 analysis helpers (vitaccel.models.revit_analysis)."""
from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("matplotlib")

from vitaccel.models import revit_analysis as ra  # noqa: E402


def test_term_stats_known_answers() -> None:
    raw = [np.array([0, 0, 1, 42], np.int8), np.array([127, -1], np.int8)]
    delta = [np.array([0, 0, 0, 3], np.int16), np.array([-256, 511], np.int16)]
    st = ra.term_stats(raw, delta)
    l0 = st["layers"][0]
    assert l0["raw"]["zero_share"] == 0.5 and l0["raw"]["cdf"] == [0.5, 0.75, 0.75, 0.75, 1.0, 1.0]
    assert l0["delta"]["zero_share"] == 0.75 and l0["delta"]["mean_terms"] == 0.5   # 3 = 4 - 1: two digits
    assert st["all"]["raw"]["values"] == 6 and st["all"]["delta"]["zero_share"] == 0.5


def test_positions_follow_pruning() -> None:
    trace = [{"groups": np.zeros(5, np.int64), "keep": np.array([True, False, True, False, True])},
             {"groups": np.zeros(4, np.int64)}]
    assert ra._positions(trace, 0).tolist() == [0, 1, 2, 3, 4]
    assert ra._positions(trace, 1).tolist() == [0, 2, 4, 10 ** 6]


def test_plots_write_small_pngs(tmp_path) -> None:
    st = ra.term_stats([np.arange(-128, 128, dtype=np.int8)], [np.arange(-255, 256, dtype=np.int16)])
    ra.plot_cdf({"a": st}, tmp_path / "cdf.png")
    ra.plot_group_maps([("x", np.zeros((8, 8)), np.arange(16) % 4, np.arange(16) % 3 > 0)], tmp_path / "g.png")
    assert 0 < (tmp_path / "cdf.png").stat().st_size < 200_000 and (tmp_path / "g.png").stat().st_size < 200_000


@pytest.mark.slow
def test_photos_through_random_deit() -> None:
    pytest.importorskip("skimage")
    names, x = ra.photo_images()
    assert x.shape == (len(ra.PHOTOS), 3, 224, 224)
    raw, delta, groups = ra.photo_features(x[:2])
    assert len(raw) == 12 and raw[0].dtype == np.int8 and delta[0].dtype == np.int16 and groups[0].shape == (2, 196)
    st = ra.term_stats(raw, delta)
    assert st["all"]["delta"]["mean_terms"] < st["all"]["raw"]["mean_terms"]
