"""Optimizers as the ``optimizer`` config group instantiates them (``_partial_: true``)."""

from __future__ import annotations

import torch


def adamw(params, layer_decay: float | None = None, **kwargs) -> torch.optim.AdamW:
    """torch's AdamW. ``layer_decay`` is read by the training module, which builds the
    per-layer parameter groups from it before calling this (see :mod:`maxpoolbert.model.layers`)."""
    return torch.optim.AdamW(params, **kwargs)


def fused_policy(cfg) -> dict:
    """``fused: null`` means automatic: the fused (single-kernel) optimizer step, except with
    ``*-mixed`` precision and gradient clipping together, which Lightning refuses for an optimizer
    that unscales gradients itself."""
    if "fused" in cfg.optimizer and cfg.optimizer.fused is None:
        mixed = str(cfg.trainer.precision).endswith("-mixed")
        return {"fused": not (mixed and cfg.trainer.gradient_clip_val)}
    return {}


def from_config(cfg):
    """The optimizer factory of ``cfg.optimizer`` (a partial taking the parameter groups)."""
    from hydra.utils import instantiate

    if cfg.optimizer.get("layer_decay") is not None:
        from maxpoolbert.model.layers import check_layer_decay

        check_layer_decay(cfg.optimizer.layer_decay)
    return instantiate(cfg.optimizer, **fused_policy(cfg))
