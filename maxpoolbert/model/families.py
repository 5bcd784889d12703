"""Encoder families: what differs between BERT, RoBERTa, ELECTRA, DeBERTa-v2/v3, DistilBERT and
ModernBERT, declared once per family.

A :class:`Family` says, for one family of Hugging Face encoders:

* ``head``: the layers of the family's own ``AutoModelForSequenceClassification`` head between the
  first-token vector and the final dropout + linear layer (BERT: the pretrained pooler's dense +
  tanh; RoBERTa: dropout, dense, tanh; ...). The pooled vector enters exactly these layers, so
  ``pooling=cls`` is the stock model.
* ``stock_names``: where those layers and the final linear layer live in the stock model's state
  dict (for export), and ``encoder_prefix``: the stock model's attribute holding the encoder.
* ``classifier_dropout``: the dropout before the final linear layer, as the stock model reads it.
* ``init``: how the stock model initialises a new linear layer of the head (``"dense"``) and the
  final linear layer (``"classifier"``): normal(0, initializer_range) for most families, ModernBERT's
  own truncated normals.
* ``token_type_ids``: whether the encoder takes segment ids.
* ``layers``: the per-layer hidden states the pooling strategies see (``[embeddings, layer 1, ...,
  layer L]``, the last one being exactly what the stock head reads).
* ``attentions``: whether the encoder can return its attention weights (``attention_weighted``).
* ``stock_pooling``: which pooling strategies the stock model itself implements (ModernBERT:
  ``classifier_pooling`` ``cls`` or ``mean``), as ``{pooling class: config changes}`` (that class
  exactly: a subclass or a class of the same name elsewhere computes something else).

Encoders of a model type no family declares use :data:`GENERIC`: a BERT-style dense + tanh head,
freshly initialised, that is not any stock head. This module imports only torch, transformers and
its neighbours ``errors`` and ``pooling``: it is copied into exported model folders with them
(``maxpoolbert.export``).
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from torch import Tensor, nn
from transformers.activations import ACT2FN, get_activation

from maxpoolbert.core.errors import UserError

from .pooling import CLSPooling, MeanPooling


def _bert_dropout(config) -> float:
    p = getattr(config, "classifier_dropout", None)
    return config.hidden_dropout_prob if p is None else p


def _deberta_dropout(config) -> float:
    return config.hidden_dropout_prob if getattr(config, "cls_dropout", None) is None else config.cls_dropout


def _distilbert_dropout(config) -> float:
    return config.seq_classif_dropout


def _modernbert_dropout(config) -> float:
    return config.classifier_dropout


def _generic_dropout(config) -> float:
    for name in ("classifier_dropout", "hidden_dropout_prob"):
        if getattr(config, name, None) is not None:
            return getattr(config, name)
    return 0.1


def _init_linear(layer: nn.Linear, std: float) -> nn.Linear:
    """As the stock models' ``_init_weights``: normal(0, initializer_range) weights, zero bias."""
    nn.init.normal_(layer.weight, std=std)
    if layer.bias is not None:
        nn.init.zeros_(layer.bias)
    return layer


def normal_init(layer: nn.Linear, config, role: str) -> nn.Linear:
    """Most families' ``_init_weights``: normal(0, initializer_range) weights, zero bias, whatever
    the layer's ``role`` (``"dense"`` or ``"classifier"``)."""
    return _init_linear(layer, getattr(config, "initializer_range", 0.02))


def modernbert_init(layer: nn.Linear, config, role: str) -> nn.Linear:
    """``ModernBertPreTrainedModel._init_weights``: weights from a normal truncated at
    ±initializer_cutoff_factor standard deviations, zero bias. The standard deviation is
    initializer_range / sqrt(2 * layers) for the head's dense layer (``"dense"``) and
    hidden_size ** -0.5 for the classifier (``"classifier"``)."""
    cutoff = 3 if config.initializer_cutoff_factor is None else config.initializer_cutoff_factor
    std = config.hidden_size ** -0.5 if role == "classifier" else \
        config.initializer_range / math.sqrt(2.0 * config.num_hidden_layers)
    nn.init.trunc_normal_(layer.weight, mean=0.0, std=std, a=-cutoff * std, b=cutoff * std)
    if layer.bias is not None:
        nn.init.zeros_(layer.bias)
    return layer


def _bert_head(encoder: nn.Module) -> nn.Module:
    # Taken out of the encoder: there it would only pool the final [CLS] again.
    pooler = getattr(encoder, "pooler", None)
    encoder.pooler = None
    size = encoder.config.hidden_size
    dense = pooler.dense if pooler is not None else nn.Linear(size, size)
    return nn.Sequential(dense, nn.Tanh())


def _roberta_head(encoder: nn.Module) -> nn.Module:
    config = encoder.config
    encoder.pooler = None
    dense = _init_linear(nn.Linear(config.hidden_size, config.hidden_size), config.initializer_range)
    return nn.Sequential(nn.Dropout(_bert_dropout(config)), dense, nn.Tanh())


def _electra_head(encoder: nn.Module) -> nn.Module:
    config = encoder.config
    dense = _init_linear(nn.Linear(config.hidden_size, config.hidden_size), config.initializer_range)
    return nn.Sequential(nn.Dropout(_bert_dropout(config)), dense, get_activation("gelu"))


def _deberta_head(encoder: nn.Module) -> nn.Module:
    """DeBERTa's ContextPooler: dropout, dense, activation (``pooler_*`` settings)."""
    config = encoder.config
    size = config.pooler_hidden_size
    if size != config.hidden_size:
        raise UserError(f"DeBERTa pooler_hidden_size={size} differs from hidden_size={config.hidden_size}: "
                        "the pooled vector cannot enter its ContextPooler")
    dense = _init_linear(nn.Linear(size, size), config.initializer_range)
    return nn.Sequential(nn.Dropout(config.pooler_dropout), dense, ACT2FN[config.pooler_hidden_act])


def _distilbert_head(encoder: nn.Module) -> nn.Module:
    config = encoder.config
    return nn.Sequential(_init_linear(nn.Linear(config.dim, config.dim), config.initializer_range), nn.ReLU())


def _modernbert_head(encoder: nn.Module) -> nn.Module:
    """ModernBERT's prediction head: dense, activation, LayerNorm (built with weight 1, bias 0, as
    the stock model initialises it)."""
    from transformers.models.modernbert.modeling_modernbert import ModernBertPredictionHead

    head = ModernBertPredictionHead(encoder.config)
    modernbert_init(head.dense, encoder.config, "dense")
    return head


def _generic_head(encoder: nn.Module) -> nn.Module:
    config = encoder.config
    if hasattr(encoder, "pooler"):
        encoder.pooler = None
    dense = _init_linear(nn.Linear(config.hidden_size, config.hidden_size), getattr(config, "initializer_range", 0.02))
    return nn.Sequential(dense, nn.Tanh())


def all_layers(encoder: nn.Module, outputs) -> Sequence[Tensor]:
    """The encoder's own ``hidden_states``: embeddings output, then every layer's output."""
    return outputs.hidden_states


def modernbert_layers(encoder: nn.Module, outputs) -> Sequence[Tensor]:
    """ModernBERT's layers seen through its final LayerNorm, as the stock head sees the last one.

    ``hidden_states`` holds each layer's output before ``final_norm`` (transformers may replace the
    last one by ``last_hidden_state``, which is after it): every layer but the last goes through
    ``final_norm`` here, and the last is ``last_hidden_state``. The embeddings output is already
    normalised and stays as it is."""
    states = outputs.hidden_states
    return (states[0], *(encoder.final_norm(h) for h in states[1:-1]), outputs.last_hidden_state)


def _cls_only() -> dict[type, dict]:
    return {CLSPooling: {}}


@dataclass(frozen=True)
class Family:
    name: str
    model_types: tuple[str, ...]
    head: Callable[[nn.Module], nn.Module]
    classifier_dropout: Callable[[object], float]
    token_type_ids: bool | None  # None: if the encoder's forward takes them and it has 2+ types
    encoder_prefix: str | None = None
    stock_names: dict[str, str] = field(default_factory=dict)
    layers: Callable[[nn.Module, object], Sequence[Tensor]] = all_layers
    load_kwargs: dict = field(default_factory=dict)
    stock_pooling: dict[type, dict] = field(default_factory=_cls_only)
    attentions: bool | None = True  # None: if the encoder records them (after switching to eager)
    init: Callable[[nn.Linear, object, str], nn.Linear] = normal_init  # (layer, config, "dense" | "classifier")

    @property
    def has_stock_head(self) -> bool:
        return bool(self.stock_names)

    def stock_key(self, key: str) -> str | None:
        """The stock model's state-dict key for a :class:`~maxpoolbert.model.classifier.PooledClassifier` key
        (``None``: the stock model has no such weight)."""
        if key.startswith("encoder."):
            return f"{self.encoder_prefix}.{key.removeprefix('encoder.')}" if self.encoder_prefix else None
        for ours, stock in self.stock_names.items():
            if key.startswith(ours + "."):
                return stock + key[len(ours):]
        return None

    def uses_token_type_ids(self, encoder: nn.Module) -> bool:
        if self.token_type_ids is not None:
            return self.token_type_ids
        takes_them = "token_type_ids" in inspect.signature(encoder.forward).parameters
        return takes_them and getattr(encoder.config, "type_vocab_size", 0) > 1

    def returns_attentions(self, encoder: nn.Module) -> bool:
        if self.attentions is not None:
            return self.attentions
        recorded = getattr(encoder, "_can_record_outputs", None) or {}
        return "attentions" in recorded or "output_attentions" in inspect.signature(encoder.forward).parameters


FAMILIES: tuple[Family, ...] = (
    Family("bert", ("bert",), _bert_head, _bert_dropout, token_type_ids=True, encoder_prefix="bert",
           stock_names={"pooler.0": "bert.pooler.dense", "classifier": "classifier"},
           load_kwargs={"add_pooling_layer": True}),
    Family("roberta", ("roberta", "xlm-roberta", "camembert"), _roberta_head, _bert_dropout, token_type_ids=False,
           encoder_prefix="roberta", stock_names={"pooler.1": "classifier.dense", "classifier": "classifier.out_proj"},
           load_kwargs={"add_pooling_layer": False}),
    Family("electra", ("electra",), _electra_head, _bert_dropout, token_type_ids=True, encoder_prefix="electra",
           stock_names={"pooler.1": "classifier.dense", "classifier": "classifier.out_proj"}),
    Family("deberta-v2", ("deberta-v2",), _deberta_head, _deberta_dropout, token_type_ids=True, encoder_prefix="deberta",
           stock_names={"pooler.1": "pooler.dense", "classifier": "classifier"}),
    Family("distilbert", ("distilbert",), _distilbert_head, _distilbert_dropout, token_type_ids=False,
           encoder_prefix="distilbert", stock_names={"pooler.0": "pre_classifier", "classifier": "classifier"}),
    Family("modernbert", ("modernbert",), _modernbert_head, _modernbert_dropout, token_type_ids=False,
           encoder_prefix="model", stock_names={"pooler": "head", "classifier": "classifier"},
           layers=modernbert_layers, init=modernbert_init,
           stock_pooling={CLSPooling: {"classifier_pooling": "cls"}, MeanPooling: {"classifier_pooling": "mean"}}),
)

GENERIC = Family("generic", (), _generic_head, _generic_dropout, token_type_ids=None, stock_pooling={},
                 attentions=None)


def family_of(config) -> Family:
    """The family of an encoder config (by ``model_type``); :data:`GENERIC` for undeclared types."""
    for family in FAMILIES:
        if config.model_type in family.model_types:
            return family
    return GENERIC


def names() -> list[str]:
    return [family.name for family in FAMILIES]
