"""What the ViTCoD path computes today, recorded as one JSON file so that a restructuring can prove it
changed nothing: the demo's logits (sha256 of the float32 bytes) on the simulator backend, the predicted
per-kernel cycle report, and ``vitaccel sim models/demo/demo.vcb --baselines --json``.

Config hashes are left out: their scope is allowed to change once (the bundle header is then
regenerated), everything else must stay bit for bit. ``python tests/behaviour_golden.py`` rewrites
``tests/golden/behaviour.json``; only do that for an intended change of behaviour, and say why.
"""
from __future__ import annotations

import contextlib
import hashlib
import io
import json
from pathlib import Path

import numpy as np

GOLDEN = Path(__file__).resolve().parent / "golden" / "behaviour.json"
DEMO = Path(__file__).resolve().parents[1] / "models" / "demo"
IMAGES = 64


def _strip_hashes(obj):
    if isinstance(obj, dict):
        return {k: _strip_hashes(v) for k, v in obj.items() if k not in ("config_hash", "hash", "hash32")}
    if isinstance(obj, list):
        return [_strip_hashes(v) for v in obj]
    return obj


def behaviour() -> dict:
    from vitaccel.cli import main
    from vitaccel.host import Accelerator

    data = np.load(DEMO / "test_images.npz")
    images, labels = data["images"][:IMAGES], data["labels"][:IMAGES]
    with Accelerator(DEMO / "demo.vcb", backend="sim", batch_size=16) as acc:
        res = acc.run(images, labels, progress=False)
        kernels = [json.loads(json.dumps(k.to_dict(), default=int)) for k in acc.predict().kernels]
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        rc = main(["sim", str(DEMO / "demo.vcb"), "--baselines", "--json"])
    assert rc == 0
    sim = json.loads(buf.getvalue())
    sim.pop("bundle", None)
    return {
        "images": IMAGES,
        "logits_sha256": hashlib.sha256(np.ascontiguousarray(res.logits, np.float32).tobytes()).hexdigest(),
        "predictions": [int(p) for p in res.predictions],
        "predicted_kernels": kernels,
        "sim_baselines_json": _strip_hashes(sim),
    }


if __name__ == "__main__":
    GOLDEN.write_text(json.dumps(behaviour(), indent=1, sort_keys=True) + "\n")
    print(f"wrote {GOLDEN}")
