"""The classifier: encoder -> pooling strategy -> standard BERT head.

The head is exactly BertForSequenceClassification's: pooler dense + tanh (initialised from the
checkpoint's pooler), dropout, linear. The pooling strategy only decides which vector enters it,
so ``pooling=cls`` reproduces the stock model (``tests/test_model.py``).
"""

from __future__ import annotations

from torch import Tensor, nn
from torch.nn import functional as F

from maxpoolbert.pooling import Pooling


class PooledClassifier(nn.Module):
    def __init__(
        self, encoder: nn.Module, pooling: Pooling, num_labels: int,
        use_pooler: bool = True, dropout: float | None = None,
    ) -> None:
        super().__init__()
        config = encoder.config
        self.encoder = encoder
        self.pooling = pooling
        self.num_labels = num_labels
        if pooling.needs_attentions:
            encoder.set_attn_implementation("eager")
        # Take the pooler out of the encoder: it would only pool the final [CLS] again.
        bert_pooler = getattr(encoder, "pooler", None)
        encoder.pooler = None
        dense = bert_pooler.dense if bert_pooler is not None else nn.Linear(config.hidden_size, config.hidden_size)
        self.pooler = nn.Sequential(dense, nn.Tanh()) if use_pooler else nn.Identity()
        if dropout is None:
            dropout = getattr(config, "classifier_dropout", None)
            dropout = config.hidden_dropout_prob if dropout is None else dropout
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(config.hidden_size, num_labels)
        nn.init.normal_(self.classifier.weight, std=config.initializer_range)
        nn.init.zeros_(self.classifier.bias)

    def forward(self, input_ids: Tensor, attention_mask: Tensor, token_type_ids: Tensor | None = None) -> Tensor:
        out = self.encoder(
            input_ids=input_ids,
            attention_mask=attention_mask,
            token_type_ids=token_type_ids,
            output_hidden_states=True,
            output_attentions=self.pooling.needs_attentions,
            return_dict=True,
        )
        attentions = out.attentions if self.pooling.needs_attentions else None
        pooled = self.pooling(out.hidden_states, attention_mask, attentions)
        return self.classifier(self.dropout(self.pooler(pooled)))

    def loss(self, logits: Tensor, labels: Tensor, reduction: str = "mean") -> Tensor:
        if self.num_labels == 1:
            return F.mse_loss(logits.squeeze(-1), labels.to(logits.dtype), reduction=reduction)
        return F.cross_entropy(logits, labels.long(), reduction=reduction)

    @staticmethod
    def predictions(logits: Tensor) -> Tensor:
        return logits.squeeze(-1).float() if logits.shape[-1] == 1 else logits.argmax(-1)

    def param_counts(self) -> dict[str, int]:
        count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
        return {"total": count(self), "pooling": count(self.pooling)}

