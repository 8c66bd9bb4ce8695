import json
import subprocess
import sys

import pytest

from vitaccel.cli import main
from vitaccel.hwconfig import load_config


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
    assert len(json.loads(r.stdout)["configs"]) == 4
