"""Layer 6, training one run: data, the LightningModule, optimizers, the Trainer, checkpoints, loggers (imports core to runs)."""
