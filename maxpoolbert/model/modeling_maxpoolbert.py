"""A fine-tuned classifier as a Hugging Face model with its own code (``trust_remote_code=True``).

``python -m maxpoolbert.export`` writes runs whose head no stock ``transformers`` class has (every
pooling but ``cls``) with this module: it copies this file and the modules it imports (``classifier``,
``pooling``, ``families`` beside it, ``core/errors.py``; torch, transformers and the standard library
besides) flat into the model folder, the package's own imports made relative
(:data:`maxpoolbert.export.CODE`), and names the classes in ``config.json``'s ``auto_map``, so

    AutoModelForSequenceClassification.from_pretrained(folder, trust_remote_code=True)

rebuilds the same encoder, pooling strategy and head without this project installed.
"""

from __future__ import annotations

import torch
from transformers import AutoConfig, AutoModel, PretrainedConfig, PreTrainedModel
from transformers.modeling_outputs import SequenceClassifierOutput

from . import pooling as strategies
from .classifier import PooledClassifier
from .families import family_of
from .pooling import Pooling


class MaxPoolBertConfig(PretrainedConfig):
    """``encoder``: the encoder's own config (``to_dict()``); ``pooling``: ``{"class": name in
    pooling.py, "options": constructor options}``; ``use_pooler`` and ``head_dropout``: the head."""

    model_type = "maxpoolbert"

    def __init__(self, encoder: dict | None = None, pooling: dict | None = None, use_pooler: bool = True,
                 head_dropout: float | None = None, **kwargs) -> None:
        self.encoder = dict(encoder or {})
        self.pooling = dict(pooling or {"class": "CLSPooling", "options": {}})
        self.use_pooler = use_pooler
        self.head_dropout = head_dropout
        super().__init__(**kwargs)


def pooling_class(name: str) -> type[Pooling]:
    cls = getattr(strategies, name, None)
    if not (isinstance(cls, type) and issubclass(cls, Pooling)):
        raise ValueError(f"pooling strategy {name!r} is not in pooling.py")
    return cls


class MaxPoolBertForSequenceClassification(PreTrainedModel):
    config_class = MaxPoolBertConfig
    base_model_prefix = "maxpoolbert"
    main_input_name = "input_ids"

    def __init__(self, config: MaxPoolBertConfig) -> None:
        super().__init__(config)
        encoder_config = AutoConfig.for_model(**config.encoder)
        encoder = AutoModel.from_config(encoder_config, **family_of(encoder_config).load_kwargs)
        pooling = pooling_class(config.pooling["class"])(encoder_config, **config.pooling.get("options", {}))
        self.model = PooledClassifier(encoder, pooling, config.num_labels, use_pooler=config.use_pooler,
                                      dropout=config.head_dropout)
        self.post_init()

    def _init_weights(self, module) -> None:
        """Every weight comes from the checkpoint; the encoder initialises itself when built."""

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                token_type_ids: torch.Tensor | None = None, labels: torch.Tensor | None = None,
                **kwargs) -> SequenceClassifierOutput:
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        if token_type_ids is None:
            token_type_ids = torch.zeros_like(input_ids)
        logits = self.model(input_ids, attention_mask, token_type_ids)
        loss = self.model.loss(logits, labels) if labels is not None else None
        return SequenceClassifierOutput(loss=loss, logits=logits)
