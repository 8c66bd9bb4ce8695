"""Hardware target configs, one JSON file per target (see vitaccel.hwconfig)."""
