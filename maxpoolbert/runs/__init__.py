"""Layer 5, the run record: atomic run folders, the record and its upgrades, a run's identity, W&B conversion, the run context (imports core to config)."""
