"""Encoder and decoder engines of the ViTCoD auto-encoder (KERNELS.md): bits and cycles.

Both mix the head axis with a small int8 matrix at every token and feature, on the mix engine: every MAC
line in dot-product mode over the input heads (``macs_per_line`` heads per cycle), one output per line at
a time, requantised by the line's requantiser (``hls/vitcod/autoencoder/autoencoder.h``).

* The encoder is its own operation (OP_AE_MIX, once for Q and once for K) after the qkv GEMM, reading Q
  or K out of the GEMM's output: token tiles of :func:`ae_tile_tokens` tokens, each loaded, mixed
  (``ceil(C tn d / L) * ceil(H_in / M)`` iterations + ``pipe_mix``) and stored. Nothing else runs
  meanwhile, so it has all ``mac_lines`` lines; ``ae_lines`` is not used by the engines.
  :func:`encode_cycles` counts the mix nests; :func:`ae_mix_cycles` is one descriptor's report, tiles'
  transfers included.
* The decoder's cycles are part of the attention kernel's schedule (``attention.decode_cycles``): it runs
  beside the softmax unit, decoding the next head.
* **Fused** (OP_QKV_AE, ``hls/vitcod/autoencoder/qkv_ae.h``): the qkv GEMM writes Q, then K, of a chunk of
  rows into an on-chip stage (the output buffer less the GEMM's partial sums), the encoder mixes them
  from there, and only the compressed Q/K and V reach DRAM. :func:`qkv_ae_cycles` is its report: the
  GEMM steps (:func:`vitaccel.sim.common.gemm.gemm_steps`, the staged ones without store traffic) and the
  encoder steps in the C++'s order, overlapped as one double-buffered sequence.
"""
from __future__ import annotations

from typing import List, Optional, Tuple

import numpy as np

from vitaccel.hwconfig import HardwareConfig
from vitaccel.sim import numerics as nx
from vitaccel.sim import schedule
from vitaccel.sim.common.dram import overlap, transfer_cycles
from vitaccel.sim.common.gemm import gemm_cycles, gemm_steps
from vitaccel.sim.report import KernelReport

__all__ = ["ae_encode", "ae_decode", "mix_heads", "encode_cycles", "mix_tiles", "ae_tile_tokens", "qkv_stage_rows",
           "qkv_ae_cycles", "best_staging", "fuse_encoder"]


def mix_heads(x, weight, bias, mult, shift) -> np.ndarray:
    """``requantize(sum_h W[c, h] * x[h] + b[c], mult, shift)`` for x int8 (H, N, d) -> (C, N, d)."""
    x = np.asarray(x)
    w = np.asarray(weight)
    b = np.asarray(bias)
    if x.dtype != np.int8 or x.ndim != 3:
        raise ValueError(f"x must be int8 (H, N, d), got {x.dtype} {x.shape}")
    if w.dtype != np.int8 or w.ndim != 2 or w.shape[1] != x.shape[0]:
        raise ValueError(f"weight must be int8 (C, {x.shape[0]}), got {w.dtype} {w.shape}")
    if b.dtype != np.int32 or b.shape != (w.shape[0],):
        raise ValueError(f"bias must be int32 ({w.shape[0]},), got {b.dtype} {b.shape}")
    h, n, d = x.shape
    acc = nx.matmul_int(w, x.reshape(h, n * d)).astype(np.int64) + b[:, None].astype(np.int64)
    return nx.requantize(acc, mult, shift).reshape(w.shape[0], n, d)


def ae_encode(x, enc_weight, enc_bias, mult, shift) -> np.ndarray:
    """Encoder engine: (H, N, d) -> (Hc, N, d)."""
    return mix_heads(x, enc_weight, enc_bias, mult, shift)


def ae_decode(x, dec_weight, dec_bias, mult, shift) -> np.ndarray:
    """Decoder engine: (Hc, N, d) -> (H, N, d)."""
    return mix_heads(x, dec_weight, dec_bias, mult, shift)


def ae_tile_tokens(cfg: HardwareConfig) -> int:
    """Tokens per encoder tile: ``max_heads`` input heads (padded to whole ``macs_per_line`` words) of
    ``max_head_dim`` features fill half the Q/K/S/V buffer (autoencoder.h ``TN``)."""
    m = cfg.macs_per_line
    cw = -(-cfg.max_heads // m) * m
    return cfg.qkvs_buffer_kb * 1024 // 2 // (cfg.max_head_dim * cw)


def mix_tiles(cfg: HardwareConfig, hin: int, c: int, n: int, d: int) -> List[Tuple[int, int, int, int]]:
    """One OP_AE_MIX (``hin`` -> ``c`` heads, ``n`` tokens) tile by tile: ``(load bytes, mix cycles, store
    bytes, tokens)`` per tile."""
    tn_max = ae_tile_tokens(cfg)
    kh = -(-hin // cfg.macs_per_line)
    out = []
    for n0 in range(0, n, tn_max):
        tn = min(tn_max, n - n0)
        cyc = -(-c * tn * d // cfg.mac_lines) * kh + schedule.pipe_mix(cfg.macs_per_line)
        out.append((hin * tn * d, cyc, c * tn * d, tn))
    return out


def encode_cycles(cfg: HardwareConfig, heads: int, compressed_heads: int, n: int, d: int) -> int:
    """Cycles of the encoder's mix nests for Q and K of one layer (two OP_AE_MIX, ``heads`` ->
    ``compressed_heads``), every MAC line."""
    return 2 * sum(t[1] for t in mix_tiles(cfg, heads, compressed_heads, n, d))


def ae_mix_cycles(cfg: HardwareConfig, hin: int, c: int, n: int, d: int, *, name: str = "ae_mix",
                  layer=None):
    """One OP_AE_MIX descriptor (the encoder on Q or on K): weights, then per token tile load, mix, store,
    with the next tile's load and the previous tile's store under the current tile's mix. The mix cycles
    are ``preprocess`` (the AE's cost on the critical path), exposed transfers ``data``."""
    w_bytes = [c * hin, 4 * c]
    steps = []
    dram = sum(w_bytes)
    for i, (lb, cyc, sb, _) in enumerate(mix_tiles(cfg, hin, c, n, d)):
        steps.append((sum(transfer_cycles(cfg, b) for b in (w_bytes if i == 0 else []) + [lb]), cyc,
                      transfer_cycles(cfg, sb)))
        dram += lb + sb
    comp, data = overlap(steps)
    macs = c * hin * n * d
    return KernelReport("ae_encoder", name, layer, 0, comp, data, macs, macs, dram,
                        {"encoder": comp, "dma": sum(s[0] + s[2] for s in steps)}, [], [])


def qkv_stage_bytes(cfg: HardwareConfig) -> int:
    """qkv_ae.h ``STAGE_BYTES``: the output buffer less the GEMM's int32 partial sums (PS_ROWS x lines)."""
    lines, lanes = cfg.gemm_array
    wline = cfg.weight_buffer_kb * 1024 // 2 // (lines * lanes)
    ps_rows = (cfg.qkvs_buffer_kb * 1024 // 2 // lanes) // wline
    return cfg.output_buffer_kb * 1024 - ps_rows * lines * 4


def qkv_stage_rows(cfg: HardwareConfig, width: int) -> int:
    """Rows of Q (``width`` = H d bytes each) one chunk of OP_QKV_AE stages (0: not even one)."""
    return qkv_stage_bytes(cfg) // width


def qkv_ae_cycles(cfg: HardwareConfig, m: int, k: int, heads: int, d: int, hc: int, *, together: bool = False,
                  name: str = "qkv_ae", layer=None) -> KernelReport:
    """One OP_QKV_AE: ``m`` rows of ``k`` features projected to Q, K, V (``heads`` x ``d`` each), Q and K
    encoded to ``hc`` heads on chip, staged one after the other or ``together`` (descriptor word stage_qk).
    ``compute`` is the GEMM's, ``preprocess`` the encoder's mix nests (the AE's own cost), ``data`` the
    exposed transfers of the whole sequence."""
    dm = heads * d
    width = 2 * dm if together else dm
    sr = qkv_stage_rows(cfg, width)
    if sr < 1:
        raise ValueError(f"a row of Q ({width} B) does not fit the stage of '{cfg.name}' ({qkv_stage_bytes(cfg)} B)")
    lines, lanes = cfg.mac_lines, cfg.macs_per_line
    kh = -(-heads // lanes)
    enc_bytes = [hc * heads, 4 * hc, hc * heads, 4 * hc]      # both encoders, into registers first
    steps: List[Tuple[int, int, int]] = []
    enc_steps: List[int] = []
    loaded = stored = mac_iters = gemm_comp = mix = 0
    chunks = 0
    for r0 in range(0, m, sr):
        mc = min(sr, m - r0)
        chunks += 1
        for which in range(2):
            if not together or which == 0:
                g = gemm_steps(cfg, mc, k, width, y_on_chip=True)
                steps += g["steps"]
                loaded += g["loaded"]
                mac_iters += g["mac_iterations"]
                gemm_comp += sum(st[1] for st in g["steps"])
            cyc = -(-hc * mc * d // lines) * kh + schedule.pipe_mix(lanes)
            mix += cyc
            enc_steps.append(len(steps))
            steps.append((0, cyc, transfer_cycles(cfg, hc * mc * d)))
            stored += hc * mc * d
    g = gemm_steps(cfg, m, k, dm)
    steps += g["steps"]
    loaded += g["loaded"]
    stored += g["stored"]
    mac_iters += g["mac_iterations"]
    gemm_comp += sum(st[1] for st in g["steps"])
    # The encoder uses no weight buffer, so the load of the GEMM step after an encoder step (the next
    # section's first tile) is issued under the GEMM step before it, like any double-buffered tile.
    for e in enc_steps:
        if e + 1 < len(steps):
            nxt = steps[e + 1]
            steps[e] = (nxt[0], steps[e][1], steps[e][2])
            steps[e + 1] = (0, nxt[1], nxt[2])
    first = steps[0]
    steps[0] = (first[0] + sum(transfer_cycles(cfg, b) for b in enc_bytes), first[1], first[2])
    comp, data = overlap(steps)
    assert comp == gemm_comp + mix
    macs = m * k * 3 * dm + 2 * m * hc * heads * d
    notes = [f"Q/K staged {'together' if together else 'apart'} in {chunks} chunk(s) of <= {sr} rows"]
    if chunks > 1:
        notes.append(f"Q and K weights reloaded {chunks}x")
    engines = {"gemm": gemm_comp, "encoder": mix, "mac_iterations": mac_iters,
               "dma": sum(st[0] + st[2] for st in steps)}
    return KernelReport("gemm", name, layer, gemm_comp, mix, data, macs, macs, loaded + stored + sum(enc_bytes),
                        engines, [], notes)


def best_staging(cfg: HardwareConfig, m: int, k: int, heads: int, d: int, hc: int) -> Optional[Tuple[int, int]]:
    """``(stage_qk, cycles)`` of the faster OP_QKV_AE staging over ``m`` rows (1: Q and K together, 0: apart;
    ties to apart), among those whose staged row fits; None when neither fits."""
    best: Optional[Tuple[int, int]] = None
    for tog in (1, 0):
        if qkv_stage_rows(cfg, (1 + tog) * heads * d) >= 1:
            t = qkv_ae_cycles(cfg, m, k, heads, d, hc, together=bool(tog)).total_cycles
            if best is None or t <= best[1]:
                best = (tog, t)
    return best


def fuse_encoder(cfg: HardwareConfig, images: int, n: int, k: int, heads: int, d: int, hc: int) -> Optional[int]:
    """How the host compiler runs a batch's qkv projection with an AE: ``stage_qk`` of OP_QKV_AE (0: Q and K
    staged apart, 1: together), whichever the cycle model predicts faster (:func:`best_staging`), or None for
    OP_GEMM followed by one OP_AE_MIX per image on Q and on K when that is predicted faster still (the fused op
    loses when the batch needs several stage chunks, each reloading the Q and K weights). Ties go to fusion
    (less DRAM)."""
    unfused = gemm_cycles(cfg, images * n, k, 3 * heads * d).total_cycles + 2 * images * ae_mix_cycles(
        cfg, heads, hc, n, d).total_cycles
    fused = best_staging(cfg, images * n, k, heads, d, hc)
    return fused[0] if fused is not None and fused[1] <= unfused else None
