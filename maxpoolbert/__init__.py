"""maxpoolbert: Hydra-configured GLUE experiments for BERT pooling research."""

__version__ = "0.1.0"
