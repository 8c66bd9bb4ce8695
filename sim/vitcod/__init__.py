"""ViTCoD's engines (two-pronged attention, Q/K auto-encoder), its descriptor format, the NumPy model of
``vitcod_top``, its C-simulation bindings, its whole-model program and baselines. Each engine's functional
model and cycle model sit in the same module, following the HLS in ``hls/vitcod/``."""
