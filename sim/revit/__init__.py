"""ReViT's integer functional models (numpy only, no float inside a kernel): the LSH hash GEMM and
argmax, integer centroids and deltas, differential Q/K/V generation, dot product and output, the
blockwise softmax bit-exact with NUMERICS.md's one-pass softmax, the radix-4 Booth term count of the
bit-serial PE, one attention layer with its pruning decisions, and a whole bundle (``model.py``).
KERNELS.md ("ReViT") is the spec. The accelerator's engines (bits and cycles side by side, each with its HLS twin
under ``hls/revit/``) are ``rmmu``, ``groupgen``, ``dsoftmax``, ``pruner``, ``sched``, composed per layer by
``layer`` and behind ``revit_top`` by ``top`` (KERNELS.md, "ReViT accelerator")."""
from vitaccel.sim.revit.booth import booth_digits, booth_terms  # noqa: F401
from vitaccel.sim.revit.differential import (  # noqa: F401
    centroids_int, deltas_int, diff_output, diff_projection, diff_scores, imatmul, plain_projection,
)
from vitaccel.sim.revit.lsh import hash_params, lsh_codes_int, lsh_groups_int  # noqa: F401
from vitaccel.sim.revit.softmax import (  # noqa: F401
    blockwise_softmax_int, blockwise_softmax_qmax, exp_from_offset, softmax_at_reference, zero_offset,
)
from vitaccel.sim.revit.attention import LayerParams, LayerResult, prune_decisions, revit_attention_layer  # noqa: F401
