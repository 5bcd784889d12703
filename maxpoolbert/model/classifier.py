"""The classifier: encoder -> pooling strategy -> the encoder family's stock classification head.

The head is exactly the one the family's own ``AutoModelForSequenceClassification`` puts on the
first token (``maxpoolbert.model.families``; for BERT: the checkpoint's pooler dense + tanh, dropout,
linear). The pooling strategy only decides which vector enters it, so ``pooling=cls`` reproduces
the stock model (``tests/test_model.py``, ``tests/test_families.py``).

A strategy whose vector is wider (or narrower) than the hidden size (``pooling.output_size``:
``mean_max`` 2H, ``concat_last4`` 4H) cannot enter the pretrained head's dense layer, which is
``hidden -> hidden``. The head keeps its structure (dropout, activation, ...), but its first dense
layer becomes a new ``output_size -> hidden`` layer, initialised as the family initialises heads
(``Family.init``: normal(0, initializer_range) and zero bias but for ModernBERT); everything after
it, the final linear layer included, is unchanged. The final linear layer is initialised the same
way. With ``head.use_pooler=false`` the final linear layer takes the pooled vector directly
(``output_size -> num_labels``). This module imports only torch, transformers and its siblings: it
is copied into exported model folders.
"""

from __future__ import annotations

from collections.abc import Callable

from torch import Tensor, nn
from torch.nn import functional as F

from maxpoolbert.core.errors import UserError

from .families import family_of
from .pooling import Pooling


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
        self.family = family_of(config)
        self.use_token_type_ids = self.family.uses_token_type_ids(encoder)
        if pooling.needs_attentions:
            if not self.family.returns_attentions(encoder):
                raise UserError(f"pooling {type(pooling).__name__} needs attention weights, which "
                                f"{config.model_type} encoders do not return; choose another pooling")
            encoder.set_attn_implementation("eager")
        head = self.family.head(encoder)
        self.pooler = head if use_pooler else nn.Identity()
        if dropout is None:
            dropout = self.family.classifier_dropout(config)
        self.dropout = nn.Dropout(dropout)
        width = pooling.output_size
        init = self.family.init
        self.classifier = init(nn.Linear(config.hidden_size if use_pooler else width, num_labels), config, "classifier")
        if use_pooler and width != config.hidden_size:  # after the classifier: its initial weights stay paired
            resize_input(self.pooler, width, lambda layer: init(layer, config, "dense"))

    def forward(self, input_ids: Tensor, attention_mask: Tensor, token_type_ids: Tensor | None = None) -> Tensor:
        extra = {"token_type_ids": token_type_ids} if self.use_token_type_ids else {}
        needs_attentions = self.pooling.needs_attentions
        out = self.encoder(
            input_ids=input_ids,
            attention_mask=attention_mask,
            output_hidden_states=True,
            output_attentions=needs_attentions,
            return_dict=True,
            **extra,
        )
        attentions = out.attentions if needs_attentions else None
        if needs_attentions and not attentions:
            raise UserError(f"this {self.encoder.config.model_type} encoder returned no attention weights "
                            f"for pooling {type(self.pooling).__name__}; choose another pooling")
        pooled = self.pooling(self.family.layers(self.encoder, out), attention_mask, attentions)
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


def resize_input(head: nn.Module, width: int, init: Callable[[nn.Linear], nn.Linear]) -> None:
    """Replace the first dense layer of ``head`` by a new one taking ``width`` inputs (same output
    size), initialised by ``init``."""
    for parent in head.modules():
        for name, child in parent.named_children():
            if isinstance(child, nn.Linear):
                setattr(parent, name, init(nn.Linear(width, child.out_features, bias=child.bias is not None)))
                return
    raise ValueError(f"{type(head).__name__} has no dense layer to take a {width}-wide pooled vector")
