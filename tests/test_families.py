"""Every encoder family (tiny random checkpoints): ``pooling=cls`` is the family's own
``AutoModelForSequenceClassification`` (logits and one training step, dropout on), every pooling
strategy trains on every family, and ``train.py model=auto`` runs them end to end."""

import json

import pytest
import torch
import transformers as T
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate

from maxpoolbert.core.errors import UserError
from maxpoolbert.model import encoders
from maxpoolbert.model.classifier import PooledClassifier
from maxpoolbert.model.families import family_of
from maxpoolbert.model.pooling import CLSPooling, MaxCLSPooling, MeanPooling

from .conftest import ROOT, train_each
from .test_train import POOLINGS
from .tiny_families import EMBEDDED, FAMILIES, TAKES_TOKEN_TYPES, save_checkpoint, stock_model

# Where the stock model keeps the head's weights (written out here, independently of families.py).
STOCK_HEAD = {
    "bert": ["bert.pooler.dense.weight", "bert.pooler.dense.bias", "classifier.weight", "classifier.bias"],
    "roberta": ["classifier.dense.weight", "classifier.dense.bias", "classifier.out_proj.weight",
                "classifier.out_proj.bias"],
    "electra": ["classifier.dense.weight", "classifier.dense.bias", "classifier.out_proj.weight",
                "classifier.out_proj.bias"],
    "deberta-v2": ["pooler.dense.weight", "pooler.dense.bias", "classifier.weight", "classifier.bias"],
    "distilbert": ["pre_classifier.weight", "pre_classifier.bias", "classifier.weight", "classifier.bias"],
    "modernbert": ["head.dense.weight", "head.norm.weight", "classifier.weight", "classifier.bias"],
}


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    root = tmp_path_factory.mktemp("families")
    return {family: save_checkpoint(family, root / family) for family in FAMILIES}


@pytest.fixture(scope="module")
def enc():
    tokenizer = encoders.tokenizer(EMBEDDED)
    out = tokenizer(["A man is playing a flute.", "Short."], ["Someone plays music on a flute today.", "Ok"],
                    padding=True, return_tensors="pt")
    assert (out["attention_mask"] == 0).any() and (out["token_type_ids"] == 1).any()
    return out


def ours_like(stock: T.PreTrainedModel, tmp_path, pooling_cls=CLSPooling) -> PooledClassifier:
    """Our classifier on the stock model's encoder, saved as a checkpoint (so the config, dropout
    rates included, is the stock model's), with the stock model's head weights."""
    path = tmp_path / f"ckpt{len(list(tmp_path.glob('ckpt*')))}"
    stock.base_model.save_pretrained(path)
    encoder = encoders.pretrained(str(path))
    model = PooledClassifier(encoder, pooling_cls(encoder.config), stock.config.num_labels)
    family = family_of(encoder.config)
    stock_state = stock.state_dict()
    model.load_state_dict({k: stock_state[family.stock_key(k)] for k in model.state_dict()})
    # every weight of the stock model is used once, nothing is left over
    assert {family.stock_key(k) for k in model.state_dict()} == set(stock_state)
    return model


def stock_inputs(family: str, enc) -> dict:
    keys = ["input_ids", "attention_mask"] + (["token_type_ids"] if TAKES_TOKEN_TYPES[family] else [])
    return {k: enc[k] for k in keys}


def ours_inputs(enc) -> tuple:
    return enc["input_ids"], enc["attention_mask"], enc["token_type_ids"]


@pytest.mark.parametrize("family", FAMILIES)
def test_stock_head_weights_are_ours(family, tmp_path):
    stock = stock_model(family)
    model = ours_like(stock, tmp_path)
    head = {k for k in stock.state_dict() if not k.startswith(stock.base_model_prefix + ".")}
    head |= {k for k in stock.state_dict() if k.startswith("bert.pooler.")}
    assert head == set(STOCK_HEAD[family])
    assert sum(p.numel() for p in model.parameters()) == sum(p.numel() for p in stock.parameters())


@pytest.mark.parametrize("num_labels", [3, 1])
@pytest.mark.parametrize("family", FAMILIES)
def test_cls_logits_equal_stock_model(family, num_labels, tmp_path, enc):
    stock = stock_model(family, num_labels=num_labels).eval()
    model = ours_like(stock, tmp_path).eval()
    with torch.no_grad():
        want = stock(**stock_inputs(family, enc)).logits
        got = model(*ours_inputs(enc))
    assert want.abs().max() > 1e-3  # the head is not degenerate
    torch.testing.assert_close(got, want, atol=1e-6, rtol=1e-5)


def train_step(model, forward, loss_fn, seed=5):
    """One AdamW step in train mode (dropout on); the loss before it."""
    torch.manual_seed(seed)  # the same dropout masks in both models
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    loss = loss_fn(forward())
    loss.backward()
    opt.step()
    return loss.detach()


DROPOUT = {  # dropout everywhere, at rates that differ from each other
    "bert": {"hidden_dropout_prob": 0.2, "classifier_dropout": 0.3},
    "roberta": {"hidden_dropout_prob": 0.2, "classifier_dropout": 0.3},
    "electra": {"hidden_dropout_prob": 0.2, "classifier_dropout": 0.3},
    "deberta-v2": {"hidden_dropout_prob": 0.2, "pooler_dropout": 0.15, "cls_dropout": 0.3},
    "distilbert": {"dropout": 0.2, "attention_dropout": 0.1, "seq_classif_dropout": 0.3},
    "modernbert": {"embedding_dropout": 0.1, "mlp_dropout": 0.2, "attention_dropout": 0.1, "classifier_dropout": 0.3},
}


@pytest.mark.parametrize("num_labels", [2, 1])
@pytest.mark.parametrize("family", FAMILIES)
def test_cls_training_step_equals_stock_model(family, num_labels, tmp_path, enc):
    stock = stock_model(family, num_labels=num_labels, **DROPOUT[family])
    model = ours_like(stock, tmp_path)
    labels = torch.tensor([1, 0]) if num_labels > 1 else torch.tensor([0.7, -0.4])
    want_loss = train_step(stock, lambda: stock(**stock_inputs(family, enc), labels=labels), lambda out: out.loss)
    got_loss = train_step(model, lambda: model(*ours_inputs(enc)), lambda logits: model.loss(logits, labels))
    torch.testing.assert_close(got_loss, want_loss, atol=1e-6, rtol=1e-5)
    # without dropout the same loss would be this one: dropout did act, and identically
    stock.eval()
    with torch.no_grad():
        assert not torch.allclose(stock(**stock_inputs(family, enc), labels=labels).loss, want_loss, atol=1e-4)
    family_obj = family_of(model.encoder.config)
    stock_state = stock.state_dict()
    for key, value in model.state_dict().items():
        torch.testing.assert_close(value, stock_state[family_obj.stock_key(key)], atol=1e-6, rtol=1e-5, msg=key)


def test_modernbert_mean_equals_classifier_pooling_mean(tmp_path, enc):
    stock = stock_model("modernbert", num_labels=3, classifier_pooling="mean").eval()
    model = ours_like(stock, tmp_path, MeanPooling).eval()
    with torch.no_grad():
        want = stock(**stock_inputs("modernbert", enc)).logits
        torch.testing.assert_close(model(*ours_inputs(enc)), want, atol=1e-6, rtol=1e-5)
        cls = ours_like(stock_model("modernbert", num_labels=3), tmp_path).eval()
        assert not torch.allclose(cls(*ours_inputs(enc)), want, atol=1e-3)  # mean and cls do differ


def test_modernbert_head_starts_as_the_stock_model_initialises_it():
    """A fresh ModernBERT head and classifier start from the stock model's distributions (its
    ``_init_weights``): normals cut at ±initializer_cutoff_factor std, std initializer_range /
    sqrt(2 layers) for the head's dense layer (also a new, wider one) and hidden_size ** -0.5 for
    the classifier; zero biases, LayerNorm weight 1. Wide layers: sample stds are precise."""
    config = T.ModernBertConfig(vocab_size=64, hidden_size=512, num_hidden_layers=2, num_attention_heads=4,
                                intermediate_size=64, pad_token_id=0, cls_token_id=1, sep_token_id=2,
                                bos_token_id=1, eos_token_id=2, classifier_bias=True, num_labels=16)
    torch.manual_seed(0)
    stock = T.ModernBertForSequenceClassification(config)
    model = PooledClassifier(T.ModernBertModel(config), CLSPooling(config), 16)
    wide = PooledClassifier(T.ModernBertModel(config), _Doubled(config), 16)
    dense_std, classifier_std = config.initializer_range / (2 * config.num_hidden_layers) ** 0.5, 512 ** -0.5
    cutoff = config.initializer_cutoff_factor
    for name, got, want, std in [("dense", model.pooler.dense, stock.head.dense, dense_std),
                                 ("wider dense", wide.pooler.dense, stock.head.dense, dense_std),
                                 ("classifier", model.classifier, stock.classifier, classifier_std)]:
        assert float(want.weight.abs().max()) <= cutoff * std  # (the stock model is as described)
        ratio = float(got.weight.std()) / float(want.weight.std())
        assert abs(ratio - 1) < 0.05, f"{name}: std {float(got.weight.std()):.4g}, stock {float(want.weight.std()):.4g}"
        assert float(got.weight.abs().max()) <= cutoff * std, f"{name}: beyond ±{cutoff} std"
        assert not got.bias.any() and not want.bias.any(), name
    assert model.pooler.norm.weight.eq(1).all() and stock.head.norm.weight.eq(1).all()


@pytest.mark.parametrize("family", FAMILIES)
def test_max_cls_of_one_layer_is_cls(family, tmp_path, enc):
    stock = stock_model(family).eval()
    cls = ours_like(stock, tmp_path).eval()
    max1 = ours_like(stock, tmp_path, lambda c: MaxCLSPooling(c, k=1)).eval()
    max3 = ours_like(stock, tmp_path, lambda c: MaxCLSPooling(c, k=3)).eval()
    with torch.no_grad():
        torch.testing.assert_close(max1(*ours_inputs(enc)), cls(*ours_inputs(enc)), atol=0, rtol=0)
        assert not torch.allclose(max3(*ours_inputs(enc)), cls(*ours_inputs(enc)), atol=1e-4)


def test_modernbert_layers_are_seen_through_the_final_norm(checkpoints, enc):
    encoder = encoders.pretrained(str(checkpoints["modernbert"]))
    with torch.no_grad():  # a final norm with a visible signature: every token gets standard deviation 3
        encoder.final_norm.weight.fill_(3.0)
        out = encoder(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"], output_hidden_states=True)
        layers = family_of(encoder.config).layers(encoder, out)
    assert len(layers) == encoder.config.num_hidden_layers + 1
    torch.testing.assert_close(layers[-1], out.last_hidden_state)
    three = torch.full(enc["input_ids"].shape, 3.0)
    for seen in layers[1:]:
        torch.testing.assert_close(seen.std(-1, correction=0), three, atol=1e-3, rtol=0)
    assert not torch.allclose(out.hidden_states[1].std(-1, correction=0), three, atol=0.5)  # raw: before the norm


def pooling_module(name: str, config):
    with initialize_config_dir(str(ROOT / "configs"), version_base="1.3"):
        cfg = compose("config", overrides=[f"pooling={name}"])
    return instantiate(cfg.pooling.module, _partial_=True)(encoder_config=config)


@pytest.mark.parametrize("family", FAMILIES)
def test_every_pooling_trains_on_every_family(family, checkpoints, enc):
    for name in POOLINGS:
        encoder = encoders.pretrained(str(checkpoints[family]))
        model = PooledClassifier(encoder, pooling_module(name, encoder.config), 2)
        before = {k: v.clone() for k, v in model.state_dict().items()}
        loss = train_step(model, lambda m=model: m(*ours_inputs(enc)),
                          lambda logits, m=model: m.loss(logits, torch.tensor([1, 0])))
        assert torch.isfinite(loss), (family, name)
        after = model.state_dict()
        changed = {k.split(".")[0] for k in after if not torch.equal(after[k], before[k])}
        assert {"encoder", "classifier"} <= changed, (family, name, changed)
        if any(True for _ in model.pooling.parameters()):
            assert "pooling" in changed, (family, name)
        model.eval()
        with torch.no_grad():  # padding does not matter: the short row alone gives the same output
            n = int(enc["attention_mask"][1].sum())
            alone = model(enc["input_ids"][1:, :n], enc["attention_mask"][1:, :n], enc["token_type_ids"][1:, :n])
            torch.testing.assert_close(alone, model(*ours_inputs(enc))[1:], atol=1e-4, rtol=1e-4,
                                       msg=f"{family} {name}")


@pytest.mark.parametrize("family", FAMILIES)
def test_token_type_ids_only_where_the_family_has_them(family, tmp_path, enc):
    stock = stock_model(family).eval()
    model = ours_like(stock, tmp_path).eval()
    with torch.no_grad():
        with_types = model(*ours_inputs(enc))
        zeros = model(enc["input_ids"], enc["attention_mask"], torch.zeros_like(enc["token_type_ids"]))
    uses_them = TAKES_TOKEN_TYPES[family] and family != "deberta-v2"  # DeBERTa-v3: type_vocab_size=0
    assert torch.allclose(with_types, zeros) != uses_them


def test_not_a_model_folder_is_one_line(tmp_path):
    (tmp_path / "notes.txt").write_text("no model here")
    with pytest.raises(UserError, match=r"no config.json in it \(not a model folder\)") as info:
        encoders.pretrained(str(tmp_path))
    assert "\n" not in str(info.value)
    # whole files, but a model type transformers does not know: AutoModel's own refusal, in one line
    T.BertModel(T.BertConfig(vocab_size=99, hidden_size=8, num_hidden_layers=1, num_attention_heads=1,
                             intermediate_size=8)).save_pretrained(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "no-such-model"}))
    with pytest.raises(UserError, match="is not a model checkpoint AutoModel can load") as info:
        encoders.pretrained(str(tmp_path))
    assert "\n" not in str(info.value)


def test_attention_weighted_without_attention_weights_is_one_line(tmp_path):
    """FNet mixes tokens with Fourier transforms: it has no attention weights."""
    T.FNetModel(T.FNetConfig(vocab_size=30522, hidden_size=32, num_hidden_layers=2, intermediate_size=64)) \
        .save_pretrained(tmp_path)
    encoder = encoders.pretrained(str(tmp_path))
    with pytest.raises(UserError, match="needs attention weights, which fnet encoders do not return") as info:
        PooledClassifier(encoder, pooling_module("attention_weighted", encoder.config), 2)
    assert "\n" not in str(info.value)
    PooledClassifier(encoder, pooling_module("mean", encoder.config), 2)  # other poolings are fine


# ---------------------------------------------------------------------------- train.py end to end
# Every pooling trains every family in-process above; end to end, each family runs the strategies
# that touch what differs between families: the stock head, the last k layers (+ the MHA's
# parameters), every layer, and the attention weights. (All ten poolings x six families as one
# sweep: the same command with E2E_POOLINGS = POOLINGS, about 2.5 minutes here.)
E2E_POOLINGS = ["cls", "maxpool_mha", "layer_mix", "attention_weighted"]


@pytest.fixture(scope="module")
def family_sweep(checkpoints, real_glue, cache_dir, tmp_path_factory):
    """``model=auto model.name_or_path=<each family> pooling=<...>``, each run in this process."""
    tmp = tmp_path_factory.mktemp("family_sweep")
    for family in FAMILIES:
        train_each(tmp / "sweep" / family, "pooling", E2E_POOLINGS, "model=auto",
                   f"model.name_or_path={checkpoints[family]}", "task=rte", "data.train_size=16",
                   "data.max_length=48", "trainer.max_steps=1", "logger=none", "trainer.enable_progress_bar=false",
                   "save_model=false", f"data.glue_dir={real_glue}", f"data.cache_dir={cache_dir}")
    return tmp / "sweep"


@pytest.mark.slow
@pytest.mark.parametrize("family", FAMILIES)
def test_train_py_runs_model_auto_on_every_family(family, family_sweep, checkpoints):
    from omegaconf import OmegaConf

    seen = {}
    for path in family_sweep.rglob("results.json"):
        cfg = OmegaConf.load(path.parent / ".hydra" / "config.yaml")
        if cfg.model.name_or_path == str(checkpoints[family]):
            seen[cfg.pooling.name] = json.loads(path.read_text())
    assert sorted(seen) == sorted(E2E_POOLINGS)
    for r in seen.values():
        assert r["model"] == "auto" and r["steps"] == 1 and 0 <= r["metrics"]["accuracy"] <= 1
    assert seen["maxpool_mha"]["params"]["pooling"] == 4 * 32 * 32 + 4 * 32


@pytest.mark.slow
def test_train_py_user_errors_are_one_line(tmp_path, real_glue):
    """Refused in one line (maxpoolbert.train raises it; the command line prints it, exit 2)."""
    import maxpoolbert
    from maxpoolbert.core.errors import UserError

    (tmp_path / "empty").mkdir()
    fnet = tmp_path / "fnet"
    T.FNetModel(T.FNetConfig(vocab_size=30522, hidden_size=32, num_hidden_layers=2, intermediate_size=64)) \
        .save_pretrained(fnet)
    encoders.tokenizer(EMBEDDED).save_pretrained(fnet)
    for path, pooling, message in [(tmp_path / "empty", "cls", "no config.json in it (not a model folder)"),
                                   (fnet, "attention_weighted", "needs attention weights, which fnet encoders")]:
        with pytest.raises(UserError) as refused:
            maxpoolbert.train(["model=auto", f"model.name_or_path={path}", f"pooling={pooling}", "logger=none",
                               f"data.glue_dir={real_glue}", "data.train_size=8"], output_dir=tmp_path / f"run-{pooling}")
        last = str(refused.value)
        assert "\n" not in last and message in last and len(last) < 300, last


@pytest.mark.parametrize("family", FAMILIES)
def test_stock_classifier_checkpoint_loads_with_its_head(family, tmp_path, enc):
    """A checkpoint that is already the family's sequence classifier (e.g. a fine-tuned one, or
    ModernBERT's with its pretrained prediction head): its head weights are loaded, as
    ``AutoModelForSequenceClassification.from_pretrained`` does, and ``pooling=cls`` is that model."""
    stock_model(family, num_labels=3, seed=4).save_pretrained(tmp_path)
    stock = T.AutoModelForSequenceClassification.from_pretrained(tmp_path).eval()
    encoder = encoders.pretrained(str(tmp_path))
    model = PooledClassifier(encoder, CLSPooling(encoder.config), 3)
    loaded = encoders.load_pretrained_head(model)
    assert loaded and all(not k.startswith("encoder.") for k in loaded)
    assert {k.split(".")[0] for k in loaded} == {"pooler", "classifier"}
    with torch.no_grad():
        torch.testing.assert_close(model.eval()(*ours_inputs(enc)), stock(**stock_inputs(family, enc)).logits,
                                   atol=1e-6, rtol=1e-5)
    two_labels = PooledClassifier(encoders.pretrained(str(tmp_path)), CLSPooling(encoder.config), 2)
    assert "classifier.weight" not in encoders.load_pretrained_head(two_labels)  # another shape: not loaded


class _Doubled(CLSPooling):
    """A pooling whose vector is twice the hidden size: [CLS] next to 2 * [CLS]."""

    def __init__(self, encoder_config):
        super().__init__(encoder_config)
        self.output_size = 2 * self.hidden_size

    def forward(self, hidden_states, attention_mask, attentions=None):
        cls = hidden_states[-1][:, 0]
        return torch.cat([cls, 2 * cls], dim=-1)


@pytest.mark.parametrize("family", FAMILIES)
def test_a_wider_pooling_gets_a_head_of_its_width(family, checkpoints, enc):
    """The width contract: the head's first dense layer takes ``output_size`` inputs (new weights,
    the family's init), the rest of the head is the family's own, and its output feeds the same
    final linear layer as for [CLS]; without the pooler the final layer takes the wide vector."""
    encoder = encoders.pretrained(str(checkpoints[family]))
    hidden = encoder.config.hidden_size
    stock = PooledClassifier(encoders.pretrained(str(checkpoints[family])), CLSPooling(encoder.config), 3)
    model = PooledClassifier(encoder, _Doubled(encoder.config), 3).eval()
    dense = [m for m in model.pooler.modules() if isinstance(m, torch.nn.Linear)]
    assert (dense[0].in_features, dense[0].out_features) == (2 * hidden, hidden)
    assert model.classifier.in_features == hidden
    std = getattr(encoder.config, "initializer_range", 0.02)
    if family == "modernbert":  # ModernBERT's own init: a normal with std range / sqrt(2 layers), cut at ±2 std
        std = 0.88 * std / (2 * encoder.config.num_hidden_layers) ** 0.5
    stock_dense = next(m for m in stock.pooler.modules() if isinstance(m, torch.nn.Linear))
    assert abs(float(dense[0].weight.std()) - std) < 0.3 * std
    assert (dense[0].bias is None) == (stock_dense.bias is None)  # ModernBERT's has none
    assert dense[0].bias is None or not dense[0].bias.any()
    # everything but that dense layer is the family's head, layer for layer
    assert [type(m) for m in model.pooler.modules()] == [type(m) for m in stock.pooler.modules()]
    with torch.no_grad():
        out = model.encoder(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"],
                            output_hidden_states=True, return_dict=True,
                            **({"token_type_ids": enc["token_type_ids"]} if model.use_token_type_ids else {}))
        wide = model.pooling(model.family.layers(model.encoder, out), enc["attention_mask"])
        expected = model.classifier(model.pooler(wide))  # dropout is off in eval mode
        torch.testing.assert_close(model(*ours_inputs(enc)), expected)
    bare = PooledClassifier(encoders.pretrained(str(checkpoints[family])), _Doubled(encoder.config), 3,
                            use_pooler=False)
    assert bare.classifier.in_features == 2 * hidden
