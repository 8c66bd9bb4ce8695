import json
import subprocess
import sys

import pytest

from vitaccel.cli import main
from vitaccel.hwconfig import list_configs, load_config


@pytest.mark.parametrize("name", ["paper", "zcu104", "kv260", "pynq-z2"])
def test_info_json_for_each_config(name, capsys):
    assert main(["info", "--config", name, "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    c = load_config(name)
    assert doc["config"]["name"] == name
    assert doc["config"]["derived"]["peak_macs_per_cycle"] == c.peak_macs_per_cycle
    assert doc["config"]["derived"]["ridge_macs_per_byte"] == pytest.approx(c.ridge_macs_per_byte, abs=1e-3)
    assert doc["config"]["derived"]["hash"] == c.hash
    assert doc["backend"] == "sim"


def test_info_table_lists_all(capsys):
    assert main(["info"]) == 0
    out = capsys.readouterr().out
    for n in ("paper", "zcu104", "kv260", "pynq-z2"):
        assert n in out


def test_info_unknown_config_is_a_clear_error(capsys):
    assert main(["info", "--config", "zcu106"]) == 2
    assert "unknown hardware config 'zcu106'" in capsys.readouterr().err


def test_config_check_passes(capsys):
    assert main(["config", "check"]) == 0


def test_selfcheck_without_csim(capsys):
    assert main(["selfcheck", "--no-csim", "--cases", "200", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert [c["status"] for c in doc["checks"]] == ["pass", "pass", "skip"]


def test_console_script_runs():
    r = subprocess.run([sys.executable, "-m", "vitaccel", "info", "--json"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert len(json.loads(r.stdout)["configs"]) == len(list_configs())


@pytest.fixture()
def bundle_file(tmp_path):
    from vitaccel.host.bundle import write_bundle
    from vitaccel.testing import random_bundle

    return str(write_bundle(tmp_path / "m.vcb", random_bundle(depth=2)))


def test_sim_json_with_images_and_baselines(bundle_file, tmp_path, capsys):
    import numpy as np

    imgs = np.random.default_rng(0).normal(size=(4, 3, 16, 16)).astype(np.float32)
    np.savez(tmp_path / "i.npz", images=imgs, labels=np.array([0, 1, 2, 3]))
    assert main(["sim", bundle_file, "--images", str(tmp_path / "i.npz"), "--baselines", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["report"]["total_cycles"] > 0 and len(doc["images"]["predictions"]) == 4
    assert 0.0 <= doc["images"]["top1"] <= 1.0
    assert doc["baselines"]["vitcod"]["speedup_of_vitcod"] == 1.0
    assert set(doc["by_layer"]) == {"null", "0", "1"}   # null: patch embedding, tokens, final LayerNorm, head


def test_sim_table_and_plots(bundle_file, tmp_path, capsys):
    assert main(["sim", bundle_file, "--plot", str(tmp_path / "p"), "--baselines"]) == 0
    out = capsys.readouterr().out
    assert "latency" in out and "sanger" in out
    for name in ("breakdown.png", "roofline.png"):
        data = (tmp_path / "p" / name).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000


def test_sim_errors_are_clear(bundle_file, tmp_path, capsys):
    bad = tmp_path / "bad.vcb"
    bad.write_bytes(b"VITACCB\x00" + b"\x00" * 20)
    assert main(["sim", str(bad)]) == 2
    assert "bad.vcb" in capsys.readouterr().err
    assert main(["sim", bundle_file, "--images", str(tmp_path / "x.png")]) == 2
    assert "x.png: no such file" in capsys.readouterr().err
    (tmp_path / "x.txt").write_text("not images")
    assert main(["sim", bundle_file, "--images", str(tmp_path / "x.txt")]) == 2
    assert "--images takes a .npy, a .npz, an image" in capsys.readouterr().err
    assert main(["sim", bundle_file, "--config", "pynq-z2"]) == 0
    assert "A board would refuse" in capsys.readouterr().err
