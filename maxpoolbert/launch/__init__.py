"""Layer 7, launching runs: one run, the Python entry, Hydra callbacks and sweeps (imports every layer below)."""
