"""Public entry points of the simulator: one attention layer, and the baselines beside it."""
from __future__ import annotations

import dataclasses
import math
from typing import Dict, Optional, Tuple, Union

import numpy as np

from vitaccel.hwconfig import ConfigLike, HardwareConfig, load_config
from vitaccel.sim import numerics as nx
from vitaccel.sim.vitcod.attention import AEParams, SparsePlan, attention_cycles, attention_int, engine_plan
from vitaccel.sim.vitcod.baselines import sanger_cycles
from vitaccel.sim.report import KernelReport, Report

__all__ = ["AttentionResult", "attention", "attention_baselines", "DEFAULT_QK_SCALE", "DEFAULT_OUT_RATIO"]

#: Default meaning of an int8 q or k: real = q / 32 (int8 covers [-4, 4)).
DEFAULT_QK_SCALE = 1.0 / 32
#: Default output requantisation: probabilities carry 2^-8, so dividing by 256 keeps v's scale.
DEFAULT_OUT_RATIO = 1.0 / 256

_QUANT_KEYS = ("score_scale", "softmax_mult", "softmax_shift", "out_ratio", "out_mult", "out_shift")


@dataclasses.dataclass
class AttentionResult:
    output: np.ndarray      # int8 (H, N, d)
    report: Report          # cycles, breakdown per engine and head
    plan: SparsePlan        # the mask, order, n_global and CSC that were run


def _quant_params(d: int, quant: Dict) -> Tuple[int, int, int, int]:
    unknown = sorted(set(quant) - set(_QUANT_KEYS))
    if unknown:
        raise TypeError(f"unknown quantisation keyword(s) {unknown}; allowed: {', '.join(_QUANT_KEYS)}")
    if "score_scale" in quant and ("softmax_mult" in quant or "softmax_shift" in quant):
        raise TypeError("give score_scale or softmax_mult/softmax_shift, not both")
    if ("softmax_mult" in quant) != ("softmax_shift" in quant):
        raise TypeError("softmax_mult and softmax_shift go together")
    if "out_ratio" in quant and ("out_mult" in quant or "out_shift" in quant):
        raise TypeError("give out_ratio or out_mult/out_shift, not both")
    if ("out_mult" in quant) != ("out_shift" in quant):
        raise TypeError("out_mult and out_shift go together")
    if "softmax_mult" in quant:
        m_exp, s_exp = int(quant["softmax_mult"]), int(quant["softmax_shift"])
    else:
        scale = quant.get("score_scale", DEFAULT_QK_SCALE ** 2 / math.sqrt(d))
        m_exp, s_exp = nx.softmax_params(scale)
    if "out_mult" in quant:
        m_out, s_out = int(quant["out_mult"]), int(quant["out_shift"])
    else:
        m_out, s_out = nx.quantize_multiplier(quant.get("out_ratio", DEFAULT_OUT_RATIO))
    return m_exp, s_exp, m_out, s_out


def attention(q, k, v, mask, *, config: ConfigLike = "paper", order=None, n_global=None,
              ae: Optional[Tuple[AEParams, AEParams]] = None, theta_d: Optional[int] = None,
              **quant) -> AttentionResult:
    """Run one ViTCoD attention layer: the output bits and the cycles on ``config``.

    ``q``, ``k``, ``v``: int8 (H, N, d). ``mask``: bool (H, N, N), True = kept, original token order.
    ``order``/``n_global``: the column reordering; when absent a key column is global when it keeps more
    than ``theta_d`` queries (default: the break-even point of the config's engines,
    :func:`vitaccel.sim.vitcod.attention.default_theta_d`). ``ae``: ``(ae_q, ae_k)`` auto-encoders.

    Quantisation keywords (defaults in brackets):

    * ``score_scale`` - real value of one unit of ``q.k`` [``(1/32)^2 / sqrt(d)``: q and k mean x/32], or
      ``softmax_mult``/``softmax_shift`` directly (see ``numerics.softmax_params``);
    * ``out_ratio`` - ``output = requantize(P.V * out_ratio)`` [1/256: the output keeps v's scale], or
      ``out_mult``/``out_shift`` directly.
    """
    cfg = load_config(config)
    qa = np.asarray(q)
    if qa.ndim != 3:
        raise ValueError(f"q must be (H, N, d), got shape {qa.shape}")
    d = int(qa.shape[2])
    m_exp, s_exp, m_out, s_out = _quant_params(d, quant)
    out = attention_int(q, k, v, mask, m_exp, s_exp, m_out, s_out, ae=ae)
    plan = engine_plan(cfg, SparsePlan.from_mask(np.asarray(mask), order, n_global, theta_d=theta_d, config=cfg), d)
    hc = ae[0].compressed_heads if ae is not None else None
    rep = attention_cycles(cfg, plan, d, compressed_heads=hc)
    return AttentionResult(out, Report(cfg, [rep]), plan)


def attention_baselines(plan: SparsePlan, d: int, *, config: ConfigLike = "paper",
                        compressed_heads: Optional[int] = None, layer: Optional[int] = None
                        ) -> Dict[str, KernelReport]:
    """One layer on ViTCoD and the baselines, same MAC budget and memory system, side by side.

    * ``vitcod``          - pruned + reordered masks, two engines, AE if ``compressed_heads`` is given;
    * ``vitcod_no_ae``    - the same without the auto-encoder;
    * ``dense``           - no pruning: every score on the denser engine;
    * ``sanger``          - S-stationary dataflow on the pruned mask (``sanger_cycles``);
    * ``pruning_only``    - pruned masks, no reordering: every column through the sparser engine's CSC;
    * ``reordering_only`` - no pruning, but the global columns split off to the denser engine.
    """
    cfg = load_config(config)
    h, n = plan.shape
    all_kept = np.ones((h, n, n), dtype=bool)
    tag = f"layers.{layer}.attn" if layer is not None else "attn"
    no_globals = (np.tile(np.arange(n, dtype=np.int32), (h, 1)), np.zeros(h, dtype=np.int32))
    run = engine_plan(cfg, plan, d)   # the host compiler's engines per head
    out = {
        "vitcod": attention_cycles(cfg, run, d, compressed_heads=compressed_heads, name=tag, layer=layer),
        "vitcod_no_ae": attention_cycles(cfg, run, d, name=tag, layer=layer),
        "dense": attention_cycles(cfg, SparsePlan.from_mask(all_kept, np.tile(np.arange(n, dtype=np.int32), (h, 1)),
                                                            np.full(h, n, dtype=np.int32)), d, name=tag, layer=layer),
        "sanger": sanger_cycles(cfg, plan.mask, d, name=tag, layer=layer),
        "pruning_only": attention_cycles(cfg, SparsePlan.from_mask(plan.mask, *no_globals), d, name=tag, layer=layer),
        "reordering_only": attention_cycles(cfg, SparsePlan.from_mask(all_kept, plan.order, plan.n_global), d,
                                            name=tag, layer=layer),
    }
    return out
