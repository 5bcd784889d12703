"""maxpoolbert: Hydra-configured GLUE experiments for BERT pooling research.

``maxpoolbert.train(["task=rte", "pooling=cls"]) -> RunRecord``: one run from Python, as
``python train.py task=rte pooling=cls`` (:mod:`maxpoolbert.launch.entry`).
"""

from __future__ import annotations

__version__ = "0.1.0"
__all__ = ["train"]


def train(overrides=(), output_dir=None):
    """One run from Python: :func:`maxpoolbert.launch.entry.train` (imported when called: ``import maxpoolbert`` stays light)."""
    from maxpoolbert.launch.entry import train as _train

    return _train(overrides, output_dir)
