"""Each pooling strategy against an independent computation written out here (loops over
examples, only the real tokens of each), padding invariance, normalised weights, gradients."""

import math

import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.utils import get_class, instantiate
from omegaconf import OmegaConf
from transformers import BertConfig

from maxpoolbert.model import pooling as P

from .conftest import CONFIGS, ROOT, config_names

POOLINGS = config_names("pooling")  # a new configs/pooling/*.yaml needs a reference() below
# Weighted averages (their weights are checked too): every pooling whose class is one.
WEIGHTED = [n for n in POOLINGS if issubclass(
    get_class(OmegaConf.load(CONFIGS / "pooling" / f"{n}.yaml").module._target_), P.WeightedAveragePooling)]
H, LAYERS, HEADS = 16, 4, 2
LENGTHS = [5, 3, 7, 1]  # real tokens per example


def make_pooling(name: str, config=None, **overrides):
    with initialize_config_dir(str(ROOT / "configs"), version_base="1.3"):
        cfg = compose("config", overrides=[f"pooling={name}"] + [f"pooling.module.{k}={v}" for k, v in overrides.items()])
    config = config or BertConfig(hidden_size=H, num_hidden_layers=LAYERS, num_attention_heads=HEADS,
                                  max_position_embeddings=32)
    torch.manual_seed(0)
    module = instantiate(cfg.pooling.module, _partial_=True)(encoder_config=config)
    for p in module.parameters():  # move away from the (uniform) initialisation
        with torch.no_grad():
            p.add_(torch.randn_like(p) * 0.5)
    return module.eval()


def inputs(width: int, seed: int = 0, garbage: float = 100.0):
    """Hidden states (embeddings + LAYERS layers) and attentions; pad positions hold large garbage."""
    g = torch.Generator().manual_seed(seed)
    B, T = len(LENGTHS), max(LENGTHS)
    real = [torch.randn(B, T, H, generator=g) for _ in range(LAYERS + 1)]
    att_logits = torch.randn(LAYERS, B, HEADS, T, T, generator=g)
    mask = torch.zeros(B, width, dtype=torch.long)
    for b, n in enumerate(LENGTHS):
        mask[b, :n] = 1
    hs, atts = [], []
    for layer in real:
        h = torch.full((B, width, H), garbage)
        h[:, :T] = layer
        h = torch.where(mask.unsqueeze(-1) == 1, h, torch.full_like(h, garbage))
        hs.append(h)
    for logits in att_logits:
        a = torch.full((B, HEADS, width, width), 0.0)
        for b, n in enumerate(LENGTHS):  # attention over real keys only, as BERT's masked softmax
            a[b, :, :min(width, T), :n] = torch.softmax(logits[b, :, :min(width, T), :n], -1)
        atts.append(a)
    return tuple(hs), mask, tuple(atts)


def mha_by_hand(attn: torch.nn.MultiheadAttention, x: torch.Tensor) -> torch.Tensor:
    """One example's real tokens x (n, H): query = x[0]; written out from the in/out projections."""
    Wq, Wk, Wv = attn.in_proj_weight.chunk(3)
    bq, bk, bv = attn.in_proj_bias.chunk(3)
    q, k, v = x[0] @ Wq.T + bq, x @ Wk.T + bk, x @ Wv.T + bv
    d = H // attn.num_heads
    heads = []
    for h in range(attn.num_heads):
        s = slice(h * d, (h + 1) * d)
        scores = torch.stack([q[s] @ k[i, s] for i in range(len(x))]) / math.sqrt(d)
        w = torch.softmax(scores, 0)
        heads.append(sum(w[i] * v[i, s] for i in range(len(x))))
    return torch.cat(heads) @ attn.out_proj.weight.T + attn.out_proj.bias


def reference(name: str, module, hs, atts) -> torch.Tensor:
    out = []
    for b, n in enumerate(LENGTHS):
        final = hs[-1][b, :n]
        if name == "cls":
            v = final[0]
        elif name == "max_cls":
            v = hs[-3][b, 0]
            for layer in hs[-2:]:
                v = torch.maximum(v, layer[b, 0])
        elif name == "mha":
            v = mha_by_hand(module.attn, final)
        elif name == "maxpool_mha":
            seq = hs[-3][b, :n]
            for layer in hs[-2:]:
                seq = torch.maximum(seq, layer[b, :n])
            v = mha_by_hand(module.attn, seq)
        elif name == "mean":
            v = sum(final[i] for i in range(n)) / n
        elif name == "max":
            v = torch.stack([final[:, j].max() for j in range(H)])
        elif name == "mean_max":
            mean = sum(final[i] for i in range(n)) / n
            top = torch.stack([final[:, j].max() for j in range(H)])
            v = torch.cat([mean, top])
        elif name == "concat_last4":
            v = torch.cat([hs[LAYERS - 3][b, 0], hs[LAYERS - 2][b, 0], hs[LAYERS - 1][b, 0], hs[LAYERS][b, 0]])
        elif name == "layer_mix":
            e = [math.exp(s) for s in module.scores.tolist()]
            w = [x / sum(e) for x in e]
            v = module.gamma * sum(w[i] * hs[i + 1][b, 0] for i in range(LAYERS))
        elif name in ("attention_weighted", "learned_weighted", "positional_weighted"):
            if name == "attention_weighted":
                raw = atts[-1][b, :, 0, :n].mean(0)
            elif name == "learned_weighted":
                raw = torch.exp(torch.stack([module.scorer(final[i]).squeeze() for i in range(n)]))
            else:
                raw = torch.exp(module.scores[:n])
            w = raw / raw.sum()
            v = sum(w[i] * final[i] for i in range(n))
        else:
            pytest.fail(f"configs/pooling/{name}.yaml has no independent reference: add one for {name!r} "
                        "to reference() in tests/test_pooling.py")
        out.append(v)
    return torch.stack(out)


@pytest.mark.parametrize("name", POOLINGS)
def test_matches_independent_computation(name):
    module = make_pooling(name)
    hs, mask, atts = inputs(width=max(LENGTHS))
    with torch.no_grad():
        got = module(hs, mask, atts if module.needs_attentions else None)
        want = reference(name, module, hs, atts)
    assert got.shape == want.shape == (len(LENGTHS), module.output_size)  # the width contract
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("name", POOLINGS)
def test_appending_padding_changes_nothing(name):
    module = make_pooling(name)
    with torch.no_grad():
        short = module(*inputs(width=max(LENGTHS), garbage=3.0))
        long = module(*inputs(width=max(LENGTHS) + 6, garbage=-50.0))
    torch.testing.assert_close(short, long, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("name", WEIGHTED)
def test_weights_sum_to_one_over_real_tokens(name):
    module = make_pooling(name)
    hs, mask, atts = inputs(width=max(LENGTHS) + 3)
    w = module.weights(hs, mask, atts)
    torch.testing.assert_close(w.sum(-1), torch.ones(len(LENGTHS)))
    assert (w[mask == 0] == 0).all() and (w[mask == 1] > 0).all()


def test_layer_mix_weights_sum_to_one():
    module = make_pooling("layer_mix")
    assert module.weights().sum().item() == pytest.approx(1.0)
    assert len(module.weights()) == LAYERS
    assert len(make_pooling("layer_mix", include_embeddings=True).weights()) == LAYERS + 1


@pytest.mark.parametrize("name", POOLINGS)
def test_gradients_reach_new_parameters(name):
    module = make_pooling(name).train()
    hs, mask, atts = inputs(width=max(LENGTHS) + 2)
    hs = tuple(h.clone().requires_grad_(True) for h in hs)
    module(hs, mask, atts).pow(2).sum().backward()
    assert hs[-1].grad.abs().sum() > 0
    for pname, p in module.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, pname


def test_options_residual_layer_norm_and_k():
    base = make_pooling("maxpool_mha")
    assert base.k == 3 and base.attn.num_heads == 4 and base.attn.batch_first
    assert not base.residual and isinstance(base.norm, torch.nn.Identity) and base.attn.dropout == 0.0
    res = make_pooling("maxpool_mha", residual=True, layer_norm=True, k=2)
    assert res.k == 2 and isinstance(res.norm, torch.nn.LayerNorm)
    hs, mask, _ = inputs(width=max(LENGTHS))
    with torch.no_grad():
        res.norm = torch.nn.Identity()
        plain = P.MHAPooling.forward(res, hs, mask)
        res.residual = False
        no_res = P.MHAPooling.forward(res, hs, mask)
    torch.testing.assert_close(plain - no_res, torch.maximum(hs[-2], hs[-1])[:, 0])
    assert make_pooling("mha").k == 1
    with pytest.warns(UserWarning, match="using k=4"):
        assert make_pooling("max_cls", k=9).k == LAYERS


# ---------------------------------------------------------------------------- options, one model per strategy
POOLING_CLASSES = sorted(n for n, c in vars(P).items()
                         if isinstance(c, type) and issubclass(c, P.Pooling) and c.__module__ == P.__name__)


@pytest.mark.parametrize("name", POOLING_CLASSES)
def test_the_options_model_is_the_constructors_signature(name):
    """signatures.options_model (read from the source, no torch) has exactly the constructor's
    options, with its defaults; the export and a run's settings complete a YAML from it."""
    import inspect

    from maxpoolbert.core import signatures

    target = f"{P.__name__}.{name}"
    model = signatures.options_model(target)
    params = {k: p for k, p in inspect.signature(getattr(P, name)).parameters.items() if k != "encoder_config"}
    assert list(model.model_fields) == list(params)
    assert {k: f.default for k, f in model.model_fields.items()} == {k: p.default for k, p in params.items()}
    assert signatures.with_defaults(target, {"_target_": target}) == {**{k: p.default for k, p in params.items()},
                                                                      "_target_": target}
    assert signatures.options_model(target) is model  # built once


@pytest.mark.parametrize("text", ["__import__('os').system('echo hi')", "torch.dtype", "int.__class__",
                                  "Annotated[int, print(1)]", "Literal[x]", "dict", "Range(ge=1)"])
def test_an_annotation_outside_the_table_is_refused_not_evaluated(text):
    from maxpoolbert.core import signatures

    with pytest.raises(signatures.AnnotationError):
        signatures.annotation_type(text)


def test_the_annotations_the_table_covers():
    from typing import Literal, Optional, get_args

    from maxpoolbert.core import signatures, values

    T = signatures.annotation_type
    assert T("int") is int and T("bool") is bool and T("str") is values.Text
    assert T("int | None") == Optional[int] == T("Optional[int]") == T("Union[int, None]")  # noqa: UP045
    assert T("Literal['a', 1]") == Literal["a", 1]
    bounded = T("Annotated[int, Range(ge=1, lt=5)]")
    assert get_args(bounded)[0] is int and get_args(bounded)[1].metadata[0].ge == 1
    assert T("PositiveInt") is values.PositiveInt and T("list[float]") == list[float]
    inner, none = get_args(T("Annotated[float, Range(ge=0)] | None"))
    assert none is type(None) and get_args(inner)[0] is float and get_args(inner)[1].metadata[0].ge == 0


def test_a_pooling_with_an_unreadable_option_is_refused_in_one_line(tmp_path, monkeypatch):
    from maxpoolbert.config import schema
    from maxpoolbert.core.errors import UserError

    (tmp_path / "my_pool.py").write_text("import torch\nclass Odd:\n"
                                         "    def __init__(self, encoder_config, dtype: torch.dtype = None): ...\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(UserError) as err:
        schema.check_pooling_options({"_target_": "my_pool.Odd"})
    assert "option dtype of Odd is annotated torch.dtype" in str(err.value)
    assert err.value.key == "pooling.module._target_"


def test_an_explicit_default_and_an_omitted_option_are_one_identity():
    from maxpoolbert.runs import identity as rundir

    def ident(module):
        return rundir.settings_id(rundir.settings({"pooling": {"name": "mha", "module": module}}, neutral=()))

    target = {"_target_": "maxpoolbert.model.pooling.MHAPooling"}
    explicit = {**target, "k": 1, "num_heads": 4, "dropout": 0.0, "residual": False, "layer_norm": False}
    assert ident(target) == ident(explicit) == ident({**target, "num_heads": 4}) != ident({**target, "num_heads": 2})
