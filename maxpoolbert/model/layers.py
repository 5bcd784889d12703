"""The encoder's layers, for the recipes that treat layers differently: layer-wise learning-rate
decay (``optimizer.layer_decay``) and re-initialising the top layers (``model.reinit_layers``).

"The layers" of any encoder family are its stack of ``num_hidden_layers`` transformer blocks
(the ``nn.ModuleList`` of that length: ``encoder.layer`` in BERT, RoBERTa, ELECTRA and
DeBERTa, ``transformer.layer`` in DistilBERT, ``layers`` in ModernBERT). Encoder parameters
outside the stack belong to the embeddings (names with ``embed``: word, position, type and
relative-position embeddings) or, otherwise (final norms), to the top layer.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from maxpoolbert.core.errors import UserError


def encoder_layers(encoder: nn.Module) -> nn.ModuleList:
    """The encoder's stack of transformer blocks."""
    n = getattr(encoder.config, "num_hidden_layers", None)
    stacks = [m for m in encoder.modules() if isinstance(m, nn.ModuleList) and n and len(m) == n]
    if not stacks:
        raise UserError(f"{type(encoder).__name__}: no stack of {n} layers found for layer-wise settings")
    return max(stacks, key=lambda m: sum(p.numel() for p in m.parameters()))


def depth_of_parameters(model: nn.Module) -> dict[int, int]:
    """``{id(parameter): depth}``: 0 for the embeddings, i + 1 for layer i, L + 1 for everything
    above the encoder (pooling strategy and classification head)."""
    encoder = model.encoder
    layers = encoder_layers(encoder)
    depth = {}
    for i, layer in enumerate(layers):
        for p in layer.parameters():
            depth[id(p)] = i + 1
    for name, p in encoder.named_parameters():
        if id(p) not in depth:
            depth[id(p)] = 0 if "embed" in name.lower() else len(layers)
    for p in model.parameters():
        depth.setdefault(id(p), len(layers) + 1)
    return depth


def check_layer_decay(decay: float) -> None:
    if not (isinstance(decay, int | float) and 0 < decay <= 1 and math.isfinite(decay)):
        raise UserError(f"optimizer.layer_decay={decay}: the factor per layer must be in (0, 1]; allowed: "
                        "0 < d <= 1 (e.g. 0.9), or null for none")


def layer_decay_groups(model: nn.Module, lr: float, decay: float) -> list[dict]:
    """Parameter groups for layer-wise learning-rate decay: the head and pooling at ``lr``, the top
    layer at ``lr * decay``, each layer below times ``decay`` again, the embeddings last
    (``lr * decay ** (L + 1)``); weight decay on matrices only, as in :func:`param_groups`."""
    check_layer_decay(decay)
    depth = depth_of_parameters(model)
    top = max(depth.values())
    groups: dict[tuple[int, bool], dict] = {}
    for p in model.parameters():
        if not p.requires_grad:
            continue
        d = depth[id(p)]
        key = (d, p.ndim >= 2)
        group = groups.setdefault(key, {"params": [], "lr": lr * decay ** (top - d), "depth": d})
        if p.ndim < 2:
            group["weight_decay"] = 0.0
        group["params"].append(p)
    return [groups[k] for k in sorted(groups, reverse=True)]


@torch.no_grad()
def reinit_top_layers(model: nn.Module, n: int) -> None:
    """Re-initialise the top ``n`` encoder layers and the head's pretrained dense layers (the
    pooler) as the encoder's pre-training did (Zhang et al., ICLR 2021): linear and embedding
    weights ~ N(0, initializer_range), biases 0, norms 1/0."""
    layers = encoder_layers(model.encoder)
    if not (isinstance(n, int) and 0 <= n <= len(layers)):
        raise UserError(f"model.reinit_layers={n}: the encoder has {len(layers)} layers; allowed: 0 to {len(layers)}")
    if n == 0:
        return
    std = getattr(model.encoder.config, "initializer_range", 0.02) or 0.02
    modules = [m for layer in list(layers)[-n:] for m in layer.modules()]
    modules += list(getattr(model, "pooler", nn.Identity()).modules())
    for m in modules:
        if isinstance(m, nn.Linear | nn.Embedding):
            nn.init.normal_(m.weight, mean=0.0, std=std)
            if getattr(m, "bias", None) is not None:
                nn.init.zeros_(m.bias)
        elif "norm" in type(m).__name__.lower():
            if getattr(m, "weight", None) is not None:
                nn.init.ones_(m.weight)
            if getattr(m, "bias", None) is not None:
                nn.init.zeros_(m.bias)
