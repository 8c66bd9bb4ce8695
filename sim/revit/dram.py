"""What ReViT's own descriptors move to and from DRAM, in bytes and in exposed cycles (``vitaccel.sim.common.dram``'s
cost model: a setup per transfer, then the config's bytes per cycle).

Like the common LayerNorm and element-wise kernels, a descriptor's loads come before its compute and its stores
after (nothing overlaps them: the engines start on the whole layer's operands), so every transfer is exposed:

* ``ATTN``: tokens, qkv weights, their bias / multiplier / shift, hash weights and biases in; the output
  tokens, the group indexes and the CLS and CLS-to-centroid rows (for the pruner) out;
* ``PRUNE``: the CLS-to-centroid and CLS rows and the group indexes in; keep masks and patch scores out;
* ``COMPACT``: the stream, keep mask, scores and patch list in; the compacted stream and the token count out,
  and each patched descriptor word as its own one-word write (posted writes to scattered addresses: a
  setup each, the conservative reading of the cost model).

The C++ counters count the engines' compute only; these are the data part of the reports, as for the common
kernels.
"""
from __future__ import annotations

from typing import Tuple

from vitaccel.sim.common.dram import transfer_cycles, transfers_cycles

__all__ = ["attn_dram_bytes", "attn_data_cycles", "flat_attention_dram", "prune_dram", "compact_dram"]


def attn_dram_bytes(n: int, dm: int, heads: int, groups: int) -> int:
    """Bytes one attention layer must move (``ATTN``)."""
    return 2 * n * dm + 3 * dm * dm + 36 * dm + groups * dm + 4 * groups + 4 * (n - 1) + heads * n + heads * groups


def attn_data_cycles(cfg, n: int, dm: int, heads: int, groups: int) -> int:
    loads = transfers_cycles(cfg, n * dm, 3 * dm * dm, 12 * dm, 12 * dm, 12 * dm, groups * dm, 4 * groups)
    stores = transfers_cycles(cfg, n * dm, 4 * (n - 1), heads * n, heads * groups)
    return loads + stores


def flat_attention_dram(cfg, n: int, dm: int) -> Tuple[int, int]:
    """``(bytes, exposed cycles)`` of flat attention (the ``dense`` baseline): tokens, qkv weights and their
    constants in, the output tokens out (no groups, no pruner rows)."""
    ins = (n * dm, 3 * dm * dm, 12 * dm, 12 * dm, 12 * dm)
    return sum(ins) + n * dm, transfers_cycles(cfg, *ins) + transfer_cycles(cfg, n * dm)


def prune_dram(cfg, heads: int, groups: int, n: int) -> Tuple[int, int]:
    """``(bytes, exposed cycles)`` of one ``PRUNE`` over ``n`` non-CLS tokens."""
    ins = (heads * groups, heads * (n + 1), 4 * n)
    outs = (n, groups, 4 * n)
    return sum(ins) + sum(outs), transfers_cycles(cfg, *ins) + transfers_cycles(cfg, *outs)


def compact_dram(cfg, n: int, dm: int, n_out: int, npatch: int) -> Tuple[int, int]:
    """``(bytes, exposed cycles)`` of one ``COMPACT`` of ``n`` tokens into ``n_out`` with ``npatch`` patches."""
    ins = (2 * n * dm, n - 1, 4 * (n - 1), 12 * npatch)
    outs = (2 * n_out * dm, 4)
    cyc = transfers_cycles(cfg, *ins) + transfers_cycles(cfg, *outs) + npatch * transfer_cycles(cfg, 4)
    return sum(ins) + sum(outs) + 4 * npatch, cyc
