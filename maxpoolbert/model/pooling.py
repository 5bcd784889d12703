"""Pooling strategies: all hidden states + attention mask in, one vector per example out.

Every strategy is one small ``nn.Module`` with the same call signature::

    pooled = pooling(hidden_states, attention_mask, attentions)   # (batch, pooling.output_size)

``hidden_states`` is the encoder's tuple of ``num_layers + 1`` tensors ``(batch, seq, hidden)``;
index 0 is the embeddings output, which is not a layer. ``attention_mask`` is ``(batch, seq)``
with 1 for real tokens. ``attentions`` is the encoder's per-layer attention tuple, passed only
to strategies that set ``needs_attentions = True``. The constructor receives the encoder's
``encoder_config`` (hidden size, layer count, ...) plus the strategy's own options from
``configs/pooling/<name>.yaml``. To add a strategy: subclass :class:`Pooling` here (or in any
importable module) and point a new YAML file's ``module._target_`` at it. Nothing else changes.

Options are declared once, as the constructor's keyword arguments with their types and defaults
(bounds in ``Annotated[int, Range(ge=1)]``): the config check refuses an unknown option or a bad
value before anything loads, a run's settings and the export complete a YAML that leaves an
option out with this default (:mod:`maxpoolbert.core.signatures` reads them from the source).

Width contract: a strategy states the width of the vector it returns in ``output_size``
(default: the encoder's hidden size; set ``self.output_size`` in ``__init__`` otherwise, e.g.
``2 * hidden_size`` for a concatenation of two vectors). The classification head is sized from it
(:class:`maxpoolbert.model.classifier.PooledClassifier`).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Annotated

import torch
from torch import Tensor, nn


def Range(**bounds: float) -> dict[str, float]:  # noqa: N802 - reads as part of a type: Annotated[int, Range(ge=1)]
    """Bounds of an option's value (``ge``, ``gt``, ``le``, ``lt``), written in its annotation;
    the config check reads them (:mod:`maxpoolbert.config.schema`)."""
    return bounds


Layers = Annotated[int, Range(ge=1)]
Dropout = Annotated[float, Range(ge=0, lt=1)]


class Pooling(nn.Module):
    """Base class: holds the encoder config; subclasses implement ``forward``."""

    needs_attentions: bool = False

    def __init__(self, encoder_config) -> None:
        super().__init__()
        self.hidden_size = encoder_config.hidden_size
        self.num_layers = encoder_config.num_hidden_layers
        self.output_size = self.hidden_size  # the width of the returned vector

    def forward(
        self, hidden_states: Sequence[Tensor], attention_mask: Tensor, attentions: Sequence[Tensor] | None = None
    ) -> Tensor:
        raise NotImplementedError


def _check_k(k: int, num_layers: int) -> int:
    """``k`` layers, at most all of them (a 2-layer test model with the paper's k=3 uses 2)."""
    if k < 1:
        raise ValueError(f"k={k}: the number of layers to pool must be at least 1")
    if k > num_layers:
        warnings.warn(f"k={k} but the encoder has {num_layers} layers: using k={num_layers}", stacklevel=3)
    return min(k, num_layers)


def masked_softmax(scores: Tensor, mask: Tensor) -> Tensor:
    """Softmax over the last dim with padded positions (mask 0) given weight exactly 0."""
    scores = scores.masked_fill(mask == 0, torch.finfo(scores.dtype).min)
    return torch.softmax(scores, dim=-1) * mask


class CLSPooling(Pooling):
    """Final-layer [CLS] vector: the stock BERT classification input."""

    def forward(self, hidden_states, attention_mask, attentions=None):
        return hidden_states[-1][:, 0]


class MaxCLSPooling(Pooling):
    """MaxPoolBERT (i): element-wise max over the [CLS] vectors of the last ``k`` layers."""

    def __init__(self, encoder_config, k: Layers = 3) -> None:
        super().__init__(encoder_config)
        self.k = _check_k(k, self.num_layers)

    def forward(self, hidden_states, attention_mask, attentions=None):
        return torch.stack([h[:, 0] for h in hidden_states[-self.k :]]).amax(dim=0)


class MHAPooling(Pooling):
    """MaxPoolBERT (ii) and (iii): multi-head attention with the [CLS] position as the query.

    With ``k=1`` (``pooling=mha``) the sequence is the final layer. With ``k>1``
    (``pooling=maxpool_mha``, the paper's MaxSeq+MHA) the sequence is first max-pooled element-wise
    over the last ``k`` layers at every token position. The query is the (pooled) [CLS] vector, the
    keys and values are all (pooled) tokens with padding masked, and the output is taken at the
    query position. ``dropout``, ``residual`` (add the query back) and ``layer_norm`` are options
    the paper leaves open; all default off.
    """

    def __init__(
        self, encoder_config, k: Layers = 1, num_heads: Annotated[int, Range(ge=1)] = 4, dropout: Dropout = 0.0,
        residual: bool = False, layer_norm: bool = False,
    ) -> None:
        super().__init__(encoder_config)
        self.k = _check_k(k, self.num_layers)
        self.attn = nn.MultiheadAttention(self.hidden_size, num_heads, dropout=dropout, batch_first=True)
        self.residual = residual
        eps = getattr(encoder_config, "layer_norm_eps", None) or getattr(encoder_config, "norm_eps", 1e-12)
        self.norm = nn.LayerNorm(self.hidden_size, eps=eps) if layer_norm else nn.Identity()

    def forward(self, hidden_states, attention_mask, attentions=None):
        seq = hidden_states[-1] if self.k == 1 else torch.stack(hidden_states[-self.k :]).amax(dim=0)
        query = seq[:, :1]
        out, _ = self.attn(query, seq, seq, key_padding_mask=attention_mask == 0, need_weights=False)
        out = out[:, 0]
        if self.residual:
            out = out + query[:, 0]
        return self.norm(out)


class MeanPooling(Pooling):
    """Mean of the final layer over real tokens."""

    def forward(self, hidden_states, attention_mask, attentions=None):
        mask = attention_mask.unsqueeze(-1).to(hidden_states[-1].dtype)
        return (hidden_states[-1] * mask).sum(1) / mask.sum(1).clamp(min=1.0)


class MaxPooling(Pooling):
    """Element-wise max of the final layer over real tokens."""

    def forward(self, hidden_states, attention_mask, attentions=None):
        h = hidden_states[-1]
        return h.masked_fill(attention_mask.unsqueeze(-1) == 0, torch.finfo(h.dtype).min).amax(dim=1)


class MeanMaxPooling(Pooling):
    """Concatenation of the masked mean and the masked element-wise max of the final layer's real
    tokens (sentence-transformers' mean + max tokens, here mean first): a vector of 2H."""

    def __init__(self, encoder_config) -> None:
        super().__init__(encoder_config)
        self.output_size = 2 * self.hidden_size

    def forward(self, hidden_states, attention_mask, attentions=None):
        h = hidden_states[-1]
        mask = attention_mask.unsqueeze(-1)
        mean = (h * mask.to(h.dtype)).sum(1) / mask.to(h.dtype).sum(1).clamp(min=1.0)
        top = h.masked_fill(mask == 0, torch.finfo(h.dtype).min).amax(dim=1)
        return torch.cat([mean, top], dim=-1)


class ConcatCLSPooling(Pooling):
    """Concatenation of the [CLS] vectors of the last ``k`` layers, the 4th-last first (Devlin et
    al., 2019, who concatenated the last four layers as features): a vector of k * H."""

    def __init__(self, encoder_config, k: Layers = 4) -> None:
        super().__init__(encoder_config)
        self.k = _check_k(k, self.num_layers)
        self.output_size = self.k * self.hidden_size

    def forward(self, hidden_states, attention_mask, attentions=None):
        return torch.cat([h[:, 0] for h in hidden_states[-self.k :]], dim=-1)


class LayerMixPooling(Pooling):
    """Scalar mix (ELMo-style): ``gamma * sum_l softmax(s)_l * CLS_l`` over the [CLS] vectors of all
    layers; ``include_embeddings`` adds the embeddings output as one more input."""

    def __init__(self, encoder_config, include_embeddings: bool = False) -> None:
        super().__init__(encoder_config)
        self.include_embeddings = include_embeddings
        n = self.num_layers + int(include_embeddings)
        self.scores = nn.Parameter(torch.zeros(n))
        self.gamma = nn.Parameter(torch.ones(()))

    def weights(self) -> Tensor:
        return torch.softmax(self.scores, dim=0)

    def forward(self, hidden_states, attention_mask, attentions=None):
        layers = hidden_states if self.include_embeddings else hidden_states[1:]
        cls = torch.stack([h[:, 0] for h in layers], dim=-1)  # (batch, hidden, n)
        return self.gamma * (cls * self.weights()).sum(-1)


class WeightedAveragePooling(Pooling):
    """``sum_i w_i h_i`` over final-layer tokens, with ``w`` summing to one over real tokens.
    Subclasses define ``weights``."""

    def weights(self, hidden_states, attention_mask, attentions=None) -> Tensor:
        raise NotImplementedError

    def forward(self, hidden_states, attention_mask, attentions=None):
        w = self.weights(hidden_states, attention_mask, attentions)
        return torch.einsum("bt,bth->bh", w.to(hidden_states[-1].dtype), hidden_states[-1])


class AttentionWeightedPooling(WeightedAveragePooling):
    """Weights from the encoder's own final-layer attention from [CLS] to each token, averaged
    over heads and renormalised over real tokens. Needs an attention implementation that returns
    weights (the model switches the encoder to ``eager`` for this strategy)."""

    needs_attentions = True

    def weights(self, hidden_states, attention_mask, attentions=None):
        if not attentions:
            raise RuntimeError("attention_weighted pooling needs the encoder's attentions")
        w = attentions[-1][:, :, 0, :].float().mean(dim=1) * attention_mask
        return w / w.sum(-1, keepdim=True).clamp(min=torch.finfo(w.dtype).tiny)


class LearnedWeightedPooling(WeightedAveragePooling):
    """Weights = masked softmax of a small feed-forward scorer on each token's hidden state."""

    def __init__(self, encoder_config, scorer_hidden: Annotated[int, Range(ge=1)] = 128) -> None:
        super().__init__(encoder_config)
        self.scorer = nn.Sequential(
            nn.Linear(self.hidden_size, scorer_hidden), nn.Tanh(), nn.Linear(scorer_hidden, 1)
        )

    def weights(self, hidden_states, attention_mask, attentions=None):
        return masked_softmax(self.scorer(hidden_states[-1]).squeeze(-1).float(), attention_mask)


class PositionalWeightedPooling(WeightedAveragePooling):
    """Weights = masked softmax of learned per-position scores (one per position, zero-initialised,
    so training starts from the mean)."""

    def __init__(self, encoder_config, max_positions: Annotated[int, Range(ge=1)] | None = None) -> None:
        super().__init__(encoder_config)
        self.scores = nn.Parameter(torch.zeros(max_positions or encoder_config.max_position_embeddings))

    def weights(self, hidden_states, attention_mask, attentions=None):
        seq_len = attention_mask.shape[1]
        scores = self.scores[:seq_len].unsqueeze(0).expand(attention_mask.shape[0], -1)
        return masked_softmax(scores.float(), attention_mask)
