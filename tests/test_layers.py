"""Layer-wise learning-rate decay and re-initialised top layers, for BERT and DistilBERT."""

import functools
import re
from types import SimpleNamespace

import pytest
import torch
from transformers import BertConfig, BertModel, DistilBertConfig, DistilBertModel

from maxpoolbert.core.errors import UserError
from maxpoolbert.model.classifier import PooledClassifier
from maxpoolbert.model.layers import layer_decay_groups, reinit_top_layers
from maxpoolbert.model.pooling import MHAPooling
from maxpoolbert.training.module import GlueModule
from maxpoolbert.training.optim import adamw

LAYERS = 3
FAMILIES = {  # family -> (encoder, regex of a layer's parameter names)
    "bert": (lambda: BertModel(BertConfig(vocab_size=99, hidden_size=32, num_hidden_layers=LAYERS, num_attention_heads=4,
                                          intermediate_size=64), add_pooling_layer=True),
             r"^encoder\.encoder\.layer\.(\d+)\."),
    "distilbert": (lambda: DistilBertModel(DistilBertConfig(vocab_size=99, dim=32, n_layers=LAYERS, n_heads=4,
                                                            hidden_dim=64)),
                   r"^encoder\.transformer\.layer\.(\d+)\."),
}


def classifier(family: str) -> PooledClassifier:
    torch.manual_seed(0)
    encoder = FAMILIES[family][0]()
    return PooledClassifier(encoder, MHAPooling(encoder.config, k=2), num_labels=3, dropout=0.1)


def expected_lr(name: str, family: str, lr: float, d: float) -> float:
    """Independent: from the parameter's name alone."""
    layer = re.match(FAMILIES[family][1], name)
    if layer:
        return lr * d ** (LAYERS - int(layer.group(1)))
    if name.startswith("encoder.embeddings."):
        return lr * d ** (LAYERS + 1)
    assert name.startswith(("pooling.", "pooler.", "classifier.")), name
    return lr


@pytest.mark.parametrize("family", list(FAMILIES))
def test_every_parameter_gets_its_layer_learning_rate(family):
    model = classifier(family)
    lr, d = 1e-4, 0.8
    groups = layer_decay_groups(model, lr, d)
    lr_of = {id(p): g["lr"] for g in groups for p in g["params"]}
    wd_of = {id(p): g.get("weight_decay") for g in groups for p in g["params"]}
    assert len(lr_of) == sum(1 for _ in model.parameters())  # every parameter once
    for name, p in model.named_parameters():
        assert lr_of[id(p)] == pytest.approx(expected_lr(name, family, lr, d)), name
        assert (wd_of[id(p)] == 0.0) == (p.ndim < 2), name
    assert len({round(g["lr"], 20) for g in groups}) == LAYERS + 2  # head, 3 layers, embeddings


def test_the_optimizer_receives_the_layer_groups():
    model = classifier("bert")
    module = GlueModule(model, SimpleNamespace(eval={}, num_labels=3), functools.partial(adamw, lr=2e-5, layer_decay=0.5))
    module._trainer = SimpleNamespace(estimated_stepping_batches=10)
    optimizer = module.configure_optimizers()["optimizer"]
    lrs = sorted({g["initial_lr"] if "initial_lr" in g else g["lr"] for g in optimizer.param_groups})
    assert lrs == pytest.approx(sorted(2e-5 * 0.5 ** k for k in range(LAYERS + 2)))


@pytest.mark.parametrize("decay", [0, -0.5, 1.5, float("nan")])
def test_layer_decay_outside_0_1_is_refused(decay):
    with pytest.raises(UserError, match=r"optimizer.layer_decay=.*allowed: 0 < d <= 1"):
        layer_decay_groups(classifier("bert"), 1e-4, decay)


@pytest.mark.parametrize("family", list(FAMILIES))
def test_reinit_changes_the_top_layers_and_the_pooler_only(family):
    model = classifier(family)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    torch.manual_seed(1)
    reinit_top_layers(model, 2)
    for name, p in model.named_parameters():
        layer = re.match(FAMILIES[family][1], name)
        top = (layer and int(layer.group(1)) >= LAYERS - 2) or name.startswith("pooler.")
        if top and p.ndim >= 2:
            assert not torch.equal(p, before[name]), f"{name} was not re-initialised"
        elif not top:
            assert torch.equal(p, before[name]), f"{name} changed"


def test_reinit_more_layers_than_the_encoder_has_is_refused():
    with pytest.raises(UserError, match=r"model.reinit_layers=4: the encoder has 3 layers; allowed: 0 to 3"):
        reinit_top_layers(classifier("bert"), 4)


LAYER_NAMES = r"^encoder\.(?:encoder\.layer|transformer\.layer|layers)\.(\d+)\."


@pytest.mark.parametrize("family", __import__("tests.tiny_families", fromlist=["FAMILIES"]).FAMILIES)
def test_layer_decay_and_reinit_on_every_family(family):
    """Every encoder family: each parameter's learning rate from its name alone (layers, embeddings,
    other encoder parameters with the top layer, the rest at lr), and re-initialisation of the
    top layer and the head's pretrained layers only."""
    from transformers import AutoModel

    from tests.tiny_families import CONFIGS

    torch.manual_seed(0)
    encoder = AutoModel.from_config(CONFIGS[family]())
    model = PooledClassifier(encoder, MHAPooling(encoder.config, k=2), num_labels=2)
    lr, d = 1e-4, 0.5
    lr_of = {id(p): g["lr"] for g in layer_decay_groups(model, lr, d) for p in g["params"]}
    for name, p in model.named_parameters():
        layer = re.match(LAYER_NAMES, name)
        if layer:
            want = lr * d ** (LAYERS - int(layer.group(1)))
        elif name.startswith("encoder.") and "embed" in name.lower():
            want = lr * d ** (LAYERS + 1)
        elif name.startswith("encoder."):
            want = lr * d  # final norms: with the top layer
        else:
            want = lr
        assert lr_of[id(p)] == pytest.approx(want), name
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    reinit_top_layers(model, 1)
    for name, p in model.named_parameters():
        layer = re.match(LAYER_NAMES, name)
        top = (layer and int(layer.group(1)) == LAYERS - 1) or name.startswith("pooler.")
        if not top:
            assert torch.equal(p, before[name]), f"{name} changed"
    assert any(not torch.equal(p, before[n]) for n, p in model.named_parameters() if re.match(LAYER_NAMES, n))
