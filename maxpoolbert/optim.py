"""Optimizers as the ``optimizer`` config group instantiates them (``_partial_: true``)."""

from __future__ import annotations

import torch


def adamw(params, layer_decay: float | None = None, **kwargs) -> torch.optim.AdamW:
    """torch's AdamW. ``layer_decay`` is read by the training module, which builds the
    per-layer parameter groups from it before calling this (see :mod:`maxpoolbert.layers`)."""
    return torch.optim.AdamW(params, **kwargs)
