"""Kernels every accelerator shares (today the GEMM mode of a MAC array, and the DRAM transfer model): for
each, the functional model (exact bits, KERNELS.md) and, in the same module, the cycle model that follows
the HLS loop nests (hls/common/), so the two cannot drift apart."""
