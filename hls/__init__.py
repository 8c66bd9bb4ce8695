"""HLS C++ sources (data only): kernels, their testbenches and the C API used by the C-simulation harness."""
from pathlib import Path

HLS_DIR = Path(__file__).resolve().parent
INCLUDE_DIR = HLS_DIR / "include"
