"""The host runtime: compiled programs, the register protocol, the backends, and their bits.

* Every backend (the simulator's model of ``vitcod_top``, its C-simulation, the board driver over a
  stand-in ``pynq``) returns logits bit-identical to :func:`vitaccel.sim.vitcod.model.forward`, for batch sizes
  that do and do not divide the image count.
* The driver's protocol: pointers and sizes set once, start, bounded wait; a hung accelerator raises a
  timeout that dumps the status registers; a bitstream of another config is refused naming both hashes;
  a failing descriptor names its index and the reason.
* The predicted report is the cycle models of the descriptors the program runs, and equals the
  simulator's model-level report (:func:`vitaccel.sim.vitcod.model.program_cycles`).
"""
from __future__ import annotations

import json

import numpy as np
import pytest

from vitaccel.host.accelerator import Accelerator
from vitaccel.host.driver import AcceleratorError, AcceleratorTimeout, HardwareMismatch, Driver
from vitaccel.host.emulated import EmulatedDevice
from vitaccel.host.vitcod.program import compile_device_program
from vitaccel.sim.vitcod.descriptors import OP_QKV_AE
from vitaccel.sim.vitcod.model import compile_program, forward, program_cycles
from vitaccel.testing import random_bundle

import fake_pynq


def images_for(bundle, count: int, seed: int = 0) -> np.ndarray:
    m = bundle.model
    return np.random.default_rng(seed).normal(size=(count, m.in_chans, m.img_size, m.img_size)).astype(np.float32)


@pytest.fixture(scope="module")
def small():
    # N = 17, D = 24, 3 heads with an AE to 2, depth 2; sparse attention with some global columns.
    return random_bundle(seed=5, embed_dim=24, num_heads=3, ae_heads=2, density=0.3)


@pytest.fixture(scope="module")
def reference(small):
    imgs = images_for(small, 5)
    return imgs, forward(compile_program(small), imgs)


# -- the compiled program ------------------------------------------------------------------------------

def test_program_layout(small):
    p = compile_device_program(small, batch=3)
    assert p.static_bytes <= min(vars(p.regions).values())       # activations after the static part
    assert p.mem_bytes == p.image.size
    for b in (1, 2, 3):
        s = p.start(b)     # the whole model in one start
        # per image: patch embedding, tokens; per layer: LN, qkv with the AE encoders fused (this small
        # model's batches fit one stage chunk), per image attention, proj, add, LN, fc1, GELU, fc2, add;
        # per image the final LN, then the head over the batch
        assert s.count == 2 * b + small.depth * (9 + b) + b + 1 and len(s.names) == s.count
        assert not any(".ae_" in nm for nm in s.names)
        ops = p.image[s.desc_off:s.desc_off + 256 * s.count].view("<i4").reshape(s.count, 64)[:, 0]
        assert [nm for nm, op in zip(s.names, ops) if op == OP_QKV_AE] == [f"layers.{i}.qkv" for i in range(small.depth)]
        assert s.names[0] == "patch_embed[0]" and s.names[-1] == "head"
        assert s.desc_off % 4 == 0 and s.desc_off + 256 * s.count <= p.mem_bytes
    with pytest.raises(ValueError, match="compiled for 1..3"):
        p.start(4)
    with pytest.raises(ValueError, match="batch must be"):
        compile_device_program(small, batch=0)


# -- bits: every backend against the simulator's forward -----------------------------------------------

@pytest.mark.parametrize("batch_size", [1, 2, 5])
def test_sim_backend_is_bit_exact(small, reference, batch_size):
    imgs, want = reference
    with Accelerator(small, backend="sim", batch_size=batch_size) as acc:
        res = acc.run(imgs, progress=False)
    assert res.logits.dtype == np.float32
    assert np.array_equal(res.logits, want)
    assert res.report.images == 5 and res.report.latency_kind == "predicted"


def test_dense_bundle_without_ae(reference):
    b = random_bundle(seed=9, ae=False, sparse_attention=False, depth=1)
    imgs = images_for(b, 3)
    with Accelerator(b, backend="sim", batch_size=2) as acc:
        assert np.array_equal(acc.run(imgs, progress=False).logits, forward(compile_program(b), imgs))


@pytest.mark.csim
def test_csim_backend_is_bit_exact(small, reference):
    imgs, want = reference
    with Accelerator(small, backend="csim", batch_size=2) as acc:
        assert np.array_equal(acc.run(imgs, progress=False).logits, want)


@pytest.mark.parametrize("split64", [False, True])
def test_board_backend_over_a_stand_in_pynq(monkeypatch, small, reference, split64):
    imgs, want = reference
    fake = fake_pynq.install(monkeypatch, split64=split64)
    from vitaccel.host.backend import detect_backend

    assert detect_backend()[0] == "pynq"
    with Accelerator(small, backend="auto", overlay=__file__) as acc:   # any existing path stands for the .bit
        assert acc.backend == "pynq"
        res = acc.run(imgs, labels=np.zeros(5, np.int64), progress=False)
    assert np.array_equal(res.logits, want)
    st = fake.state
    assert len(st.buffers) == 1 and len(st.overlays) == 1             # one window, allocated once
    # Every pointer register holds the buffer's address, written once, high word included.
    emu = st.emu
    ptr_writes = [w for w in emu.log if w[0] == "w" and w[1] == "act_in"]
    assert ptr_writes[-1][2] == st.buffers[0].device_address
    starts = [w for w in emu.log if w[0] == "w" and w[1] == "CTRL"]
    assert len(starts) == 1 + 5                                      # ID check + one run per image (batch 1)
    assert st.flushes >= len(starts) - 1 and st.invalidates >= len(starts) - 1
    # Syncs cover only what a start reads or the host reads back: after the open-time write of the program
    # image, no flush or invalidate spans the whole window, and each lies inside it.
    window = st.buffers[0].nbytes
    assert st.flushed[0] == (0, acc.program.mem_bytes)
    for off, n in st.flushed[1:] + st.invalidated:
        assert 0 <= off and off + n <= window and n < window, (off, n)
    reg = acc.program.regions
    assert {off for off, _ in st.flushed[1:]} == {reg.rows8}         # the host writes only the image rows
    assert {off for off, _ in st.invalidated} == {reg.logits}        # ... and reads only the logits
    assert res.report.latency_kind == "measured" and res.report.latency_us > 0
    assert res.report.top1 is not None


def test_overlays_are_keyed_by_accelerator_and_config(monkeypatch, tmp_path):
    import vitaccel.host.pynq_backend as pb
    from vitaccel.hwconfig import load_config

    monkeypatch.setattr(pb, "OVERLAY_DIR", tmp_path)
    monkeypatch.setenv("BOARD", "zcu104")
    cfg = load_config("zcu104")
    with pytest.raises(RuntimeError, match="no bitstream .*zcu104/vitcod-zcu104/vitcod-zcu104.bit"):
        pb.find_overlay(cfg)
    d = pb.overlay_dir("zcu104", "vitcod", "zcu104")
    assert d == tmp_path / "zcu104" / "vitcod-zcu104"
    assert pb.overlay_dir("zcu104", "revit", "revit-zcu104") == tmp_path / "zcu104" / "revit-zcu104"
    d.mkdir(parents=True)
    (d / "vitcod-zcu104.bit").write_bytes(b"bit")
    # Another accelerator's or config's overlay on the same board is never taken for this one.
    other = tmp_path / "zcu104" / "vitcod-other"
    other.mkdir()
    (other / "vitcod-other.bit").write_bytes(b"bit")
    assert pb.find_overlay(cfg) == d / "vitcod-zcu104.bit"
    (d / "manifest.json").write_text(json.dumps({"accelerator": "vitcod", "config": "zcu104", "config_hash": "0" * 64}))
    with pytest.raises(RuntimeError, match="built for config_hash '0000"):
        pb.find_overlay(cfg)
    (d / "manifest.json").write_text(json.dumps({"accelerator": "vitcod", "config": "zcu104", "config_hash": cfg.hash}))
    assert pb.find_overlay(cfg) == d / "vitcod-zcu104.bit"


def test_board_refuses_another_config(monkeypatch, small):
    fake_pynq.install(monkeypatch, config="pynq-z2")
    with pytest.raises(HardwareMismatch) as e:
        Accelerator(small, backend="pynq", overlay=__file__)
    msg = str(e.value)
    from vitaccel.hwconfig import load_config

    assert f"0x{load_config('pynq-z2').hash32:08x}" in msg and f"0x{load_config('paper').hash32:08x}" in msg


def test_hung_board_times_out_with_a_register_dump(monkeypatch, small):
    fake_pynq.install(monkeypatch, hang=True)
    with pytest.raises(AcceleratorTimeout) as e:
        Accelerator(small, backend="pynq", overlay=__file__, timeout_s=0.05)
    assert "no ap_done" in str(e.value) and "CTRL=0x" in str(e.value) and "num_instr=" in str(e.value)
    assert e.value.registers["CTRL"] & 0x4 == 0                        # still running: not idle


def test_pynq_backend_without_pynq(small, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "pynq", None)  # import pynq -> ImportError
    import vitaccel.host.pynq_backend as pb

    monkeypatch.setattr(pb, "_classes", None)
    with pytest.raises(RuntimeError, match="needs the pynq package"):
        Accelerator(small, backend="pynq")


# -- the driver on an emulated device ------------------------------------------------------------------

def test_driver_polls_until_done_and_reports_failures(small):
    p = compile_device_program(small)
    dev = EmulatedDevice(p.mem_bytes, "paper", busy_reads=3)
    dev.mem[:] = p.image
    drv = Driver(dev, timeout_s=5)
    assert drv.hardware_id() == p.hash32
    s = p.start(1)
    assert drv.run(s.desc_off, s.count) == 0
    reads = [w for w in dev.log if w[:2] == ("r", "CTRL")]
    assert len(reads) >= 4
    # A corrupted descriptor: unknown opcode in the second descriptor of a run.
    bad = p.start(1)
    word = bad.desc_off + 256
    dev.mem[word:word + 4] = np.array([77], np.int32).view(np.uint8)
    with pytest.raises(AcceleratorError, match="descriptor 1: unknown opcode") as e:
        drv.run(bad.desc_off, bad.count)
    assert e.value.status == (1 << 16) | 0x001


def test_driver_refuses_a_busy_accelerator(small):
    dev = EmulatedDevice(4096, "paper", hang=True)
    drv = Driver(dev, timeout_s=0.01)
    with pytest.raises(AcceleratorTimeout):
        drv.run(0, 0)
    with pytest.raises(AcceleratorError, match="busy before a start"):
        drv.run(0, 0)


def test_window_too_small(small):
    with pytest.raises(ValueError, match="window has 64 bytes"):
        Accelerator(small, device=EmulatedDevice(64, "paper"))


def test_bad_inputs(small):
    with pytest.raises(ValueError, match="backend must be one of"):
        Accelerator(small, backend="fpga")
    with Accelerator(small, backend="sim") as acc:
        with pytest.raises(ValueError, match=r"images must be \(B, 3, 16, 16\)"):
            acc.run(np.zeros((2, 3, 8, 8), np.float32))
        with pytest.raises(ValueError, match="2 labels for 3 images"):
            acc.run(images_for(small, 3), labels=[1, 2], progress=False)


# -- predictions -----------------------------------------------------------------------------------------

def test_prediction_is_the_programs_cycles(small):
    with Accelerator(small, backend="sim") as acc:
        pred = acc.predict()
        model = program_cycles(compile_program(small))
        names = [k.name for k in pred.kernels]
        assert names[:2] == ["patch_embed[0]", "tokens[0]"] and "layers.0.attn[0]" in names and names[-1] == "head"
        # The same kernels in the same order with the same cycles as `vitaccel sim` predicts.
        assert [n.replace("[0]", "") for n in names] == [k.name for k in model.kernels]
        assert [k.to_dict() | {"name": ""} for k in pred.kernels] == [k.to_dict() | {"name": ""} for k in model.kernels]
        assert pred.total_cycles > 0 and acc.dense_baseline().total_cycles > 0
        res = acc.run(images_for(small, 2), labels=[0, 1], progress=False)
        rep = res.report
        assert rep.latency_us == pytest.approx(pred.latency_us)
        assert rep.speedup_vs_dense == pytest.approx(acc.dense_baseline().total_cycles / pred.total_cycles)
        d = rep.to_dict()
        assert d["images"] == 2 and "by_layer" in d and 0 <= d["host_s_per_image"] and 0 <= d["host_share"] < 1
        assert "where the accelerator's time goes" in rep.table()


# -- on a real board ---------------------------------------------------------------------------------------

def _on_board() -> bool:
    from vitaccel.host.backend import detect_backend

    return detect_backend()[0] == "pynq"


@pytest.mark.board
@pytest.mark.skipif(not _on_board(), reason="needs a PYNQ board with the vitaccel overlay (pynq reports no device here)")
def test_board_matches_the_simulator_on_the_demo():
    from vitaccel.host.run import demo_dir

    with np.load(demo_dir() / "test_images.npz") as z:
        imgs, labels = z["images"][:16], z["labels"][:16]
    with Accelerator(demo_dir() / "demo.vcb", backend="pynq") as board:
        got = board.run(imgs, labels, progress=False)
    with Accelerator(demo_dir() / "demo.vcb", backend="sim") as sim:
        want = sim.run(imgs, labels, progress=False)
    assert np.array_equal(got.logits, want.logits)
    assert got.report.latency_kind == "measured" and got.report.latency_us > 0
