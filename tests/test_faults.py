"""Fault injection on the emulated device (issue #15): every way a board can misbehave ends in a documented
error with a register dump, never in a hang, a raw exception or silently wrong logits; a timeout is
recoverable through the reset path. The campaign prints its table (cases, documented errors, other
exceptions, hangs, silent wrong results) and requires zeros in the last three columns."""
from __future__ import annotations

import threading

import numpy as np
import pytest

import fake_pynq
from vitaccel.host.accelerator import Accelerator
from vitaccel.host.driver import AcceleratorError, AcceleratorTimeout, Driver, HardwareMismatch, check_timeout
from vitaccel.host.emulated import FAULTS, EmulatedDevice
from vitaccel.host.vitcod.program import compile_device_program
from vitaccel.testing import random_bundle

#: fault -> the documented error it must raise, and a phrase its message must carry.
EXPECT = {
    "hang": (AcceleratorTimeout, "no ap_done"),
    "lost_start": (AcceleratorTimeout, "no ap_done"),
    "stale_done": (AcceleratorError, "the start was lost"),
    "wrong_id": (HardwareMismatch, "hardware-config hash"),
    "garbage_status": (AcceleratorError, "unknown code"),
    "bus_error": (AcceleratorError, "reading register ap_return failed (OSError"),
    "non_integer": (AcceleratorError, "not an integer"),
}


@pytest.fixture(scope="module")
def small():
    return random_bundle(seed=11, embed_dim=24, num_heads=3, ae_heads=2, density=0.3)


@pytest.fixture(scope="module")
def reference(small):
    imgs = np.random.default_rng(0).normal(size=(3, 3, 16, 16)).astype(np.float32)
    with Accelerator(small, backend="sim") as acc:
        return imgs, acc.run(imgs, progress=False).logits


def _device(program, faults=()):
    dev = EmulatedDevice(program.mem_bytes, program.config, faults=faults)
    return dev


def _attempt(fn, timeout_s=60.0):
    """Run fn in a thread: ("ok", value) | ("documented", exc) | ("other", exc) | ("hang", None)."""
    box = {}

    def target():
        try:
            box["v"] = ("ok", fn())
        except AcceleratorError as e:
            box["v"] = ("documented", e)
        except BaseException as e:  # noqa: BLE001 - classified, not hidden
            box["v"] = ("other", e)

    t = threading.Thread(target=target, daemon=True)
    t.start()
    t.join(timeout_s)
    return box.get("v", ("hang", None))


def test_unknown_fault_is_refused():
    with pytest.raises(ValueError, match="unknown fault.*flaky.*known: hang"):
        EmulatedDevice(64, faults={"flaky"})


@pytest.mark.parametrize("value", [float("nan"), float("inf"), -1, 0, "soon"])
def test_only_finite_positive_timeouts(value, small):
    with pytest.raises(ValueError, match="timeout_s must be a"):
        check_timeout(value)
    with pytest.raises(ValueError, match="timeout_s must be a"):
        Driver(EmulatedDevice(64), timeout_s=value)
    with pytest.raises(ValueError, match="timeout_s must be a"):
        Accelerator(small, backend="sim", timeout_s=value)


def test_fault_campaign(small, reference, capsys):
    imgs, want = reference
    prog = compile_device_program(small)
    rows = []
    for fault in FAULTS:
        counts = dict(cases=0, documented=0, other=0, hangs=0, silent=0)
        for phase in ("open", "run"):
            counts["cases"] += 1
            dev = _device(prog, () if phase == "run" else (fault,))
            holder = {}

            def go():
                acc = holder["acc"] = Accelerator(small, device=dev, timeout_s=0.2)
                if phase == "run":       # the fault starts after a healthy open
                    dev.faults.add(fault)
                    dev.hang = fault == "hang"
                return acc.run(imgs, progress=False).logits

            kind, val = _attempt(go)
            cls, phrase = EXPECT[fault]
            if kind == "ok":
                counts["silent" if not np.array_equal(val, want) else "other"] += 1  # a fault must not pass
            elif kind == "documented" and isinstance(val, cls) and phrase in str(val) and val.registers:
                counts["documented"] += 1
            elif kind == "hang":
                counts["hangs"] += 1
            else:
                counts["other"] += 1
                print(f"{fault}/{phase}: {kind} {val!r}")
        rows.append((fault, counts))
    with capsys.disabled():
        print("\nfault injection: fault, cases, documented errors, other exceptions, hangs, silent wrong results")
        for fault, c in rows:
            print(f"  {fault:<15} {c['cases']:>3} {c['documented']:>3} {c['other']:>3} {c['hangs']:>3} {c['silent']:>3}")
    assert all(c["documented"] == c["cases"] for _, c in rows), rows


def test_recovery_after_a_timeout(small, reference):
    imgs, want = reference
    prog = compile_device_program(small)
    dev = _device(prog)
    acc = Accelerator(small, device=dev, timeout_s=0.2)
    dev.faults.add("hang")
    dev.hang = True
    with pytest.raises(AcceleratorTimeout, match="Accelerator.reset"):
        acc.run(imgs, progress=False)
    with pytest.raises(AcceleratorError, match="busy before a start.*reset"):
        acc.run(imgs, progress=False)
    dev.faults.discard("hang")
    dev.hang = False
    acc.reset()
    assert dev.resets == 1
    assert np.array_equal(acc.run(imgs, progress=False).logits, want)


def test_an_emulation_error_leaves_the_device_idle(small, reference):
    """An exception inside the emulated run (here: a pointer register moved off the window) is reported
    with a dump, and the device is idle afterwards, not stuck busy."""
    imgs, want = reference
    prog = compile_device_program(small)
    dev = _device(prog)
    acc = Accelerator(small, device=dev, timeout_s=5)
    dev.write_register("idx", dev.phys_addr + 64)
    with pytest.raises(AcceleratorError, match="reading register CTRL failed .*not the window's address"):
        acc.run(imgs, progress=False)
    assert dev.read_register("CTRL") & 0x4
    dev.write_register("idx", dev.phys_addr)
    assert np.array_equal(acc.run(imgs, progress=False).logits, want)


def test_board_reset_reloads_the_overlay_and_a_failed_open_frees_the_buffer(monkeypatch, small, reference):
    imgs, want = reference
    fake = fake_pynq.install(monkeypatch)
    acc = Accelerator(small, backend="pynq", overlay=__file__, timeout_s=0.2)
    fake.state.emu.faults.add("hang")
    fake.state.emu.hang = True
    with pytest.raises(AcceleratorTimeout):
        acc.run(imgs, progress=False)
    acc.reset()                                   # Overlay.download(): the PL is reprogrammed
    assert fake.state.downloads == 1
    assert np.array_equal(acc.run(imgs, progress=False).logits, want)
    acc.close()
    freed = fake.state.freed
    fake2 = fake_pynq.install(monkeypatch, config="pynq-z2")   # a bitstream of another config
    with pytest.raises(HardwareMismatch):
        Accelerator(small, backend="pynq", overlay=__file__)
    assert fake2.state.freed == 1 and freed == 1, "the window allocated before the failure is freed"
