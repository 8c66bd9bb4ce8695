"""The ViTCoD kernels: for each, the functional model (exact bits, KERNELS.md) and, in the same module,
the cycle model that follows the HLS loop nests, so the two cannot drift apart."""
