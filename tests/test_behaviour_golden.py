"""The ViTCoD path computes exactly what it computed before the two-accelerator restructuring
(tests/behaviour_golden.py recorded it): demo logits, per-kernel predicted cycles, and the simulator's
baselines JSON, config hashes aside."""
import json

from behaviour_golden import GOLDEN, behaviour


def test_behaviour_equals_golden():
    want = json.loads(GOLDEN.read_text())
    got = json.loads(json.dumps(behaviour(), sort_keys=True))
    assert got["logits_sha256"] == want["logits_sha256"]
    assert got["predictions"] == want["predictions"]
    assert len(got["predicted_kernels"]) == len(want["predicted_kernels"])
    for g, w in zip(got["predicted_kernels"], want["predicted_kernels"]):
        assert g == w, f"kernel {w['name']}: predicted report changed"
    assert got["sim_baselines_json"] == want["sim_baselines_json"]
    assert got == want
