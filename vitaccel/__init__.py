"""vitaccel: sparse Vision Transformer accelerators (ViTCoD, ReViT) for PYNQ FPGAs and their simulator.

Sub-packages map onto the repository's top-level folders:

* ``vitaccel.sim``    (``sim/``)    - bit-exact, cycle-accurate NumPy model of the kernels; numpy only.
* ``vitaccel.host``   (``host/``)   - host runtime: bundle loader, backends (board or simulator); numpy only.
* ``vitaccel.models`` (``models/``) - PyTorch models and the pruning / auto-encoder / LSH algorithms.
* ``vitaccel.hls``    (``hls/``)    - HLS C++ sources, shipped as data for the C-simulation harness.
* ``vitaccel.configs`` (``configs/``) - one JSON file per hardware target.

This root package holds what all of them share: the hardware config (:mod:`vitaccel.hwconfig`) and the CLI.
"""
__version__ = "0.1.0"
