"""Reported GLUE metrics (scikit-learn / scipy) against hand-written formulas, and the live
torchmetrics curves against the reported numbers, including the edge cases where they have
disagreed (ties, one-class predictions)."""

import math

import numpy as np
import pytest
import torch

from maxpoolbert.core import metrics as M
from maxpoolbert.training.live_metrics import LIVE


def mcc_by_hand(p, y):
    tp = sum(1 for a, b in zip(p, y, strict=True) if a == 1 and b == 1)
    tn = sum(1 for a, b in zip(p, y, strict=True) if a == 0 and b == 0)
    fp = sum(1 for a, b in zip(p, y, strict=True) if a == 1 and b == 0)
    fn = sum(1 for a, b in zip(p, y, strict=True) if a == 0 and b == 1)
    den = math.sqrt((tp + fp) * (tp + fn) * (tn + fp) * (tn + fn))
    return 0.0 if den == 0 else (tp * tn - fp * fn) / den


def f1_by_hand(p, y):
    tp = sum(1 for a, b in zip(p, y, strict=True) if a == 1 and b == 1)
    fp = sum(1 for a, b in zip(p, y, strict=True) if a == 1 and b == 0)
    fn = sum(1 for a, b in zip(p, y, strict=True) if a == 0 and b == 1)
    return 0.0 if tp == 0 else 2 * tp / (2 * tp + fp + fn)


def ranks(x):
    x = np.asarray(x, dtype=float)
    order = np.argsort(x, kind="stable")
    r = np.empty(len(x))
    r[order] = np.arange(1, len(x) + 1)
    for v in np.unique(x):  # ties get their average rank
        r[x == v] = r[x == v].mean()
    return r


CASES = {
    "random": (np.random.default_rng(0).integers(0, 2, 200), np.random.default_rng(1).integers(0, 2, 200)),
    "all_one_class_pred": (np.ones(50, int), np.random.default_rng(2).integers(0, 2, 50)),
    "all_zero_pred": (np.zeros(50, int), np.random.default_rng(3).integers(0, 2, 50)),
    "perfect": (np.array([0, 1, 1, 0, 1]), np.array([0, 1, 1, 0, 1])),
    "inverse": (np.array([1, 0, 0, 1]), np.array([0, 1, 1, 0])),
}


@pytest.mark.parametrize("case", list(CASES))
def test_classification_metrics_match_formulas_and_torchmetrics(case):
    p, y = CASES[case]
    assert M.accuracy(p, y) == pytest.approx(np.mean(p == y), abs=1e-12)
    assert M.f1(p, y) == pytest.approx(f1_by_hand(p, y), abs=1e-12)
    assert M.mcc(p, y) == pytest.approx(mcc_by_hand(p, y), abs=1e-12)
    tp, ty = torch.as_tensor(p), torch.as_tensor(y)
    for name in ["accuracy", "f1", "mcc"]:
        live = LIVE[name](2)
        live.update(tp, ty)
        assert float(live.compute()) == pytest.approx(M.METRICS[name](p, y), abs=1e-6), name


def test_multiclass_accuracy_agrees():
    rng = np.random.default_rng(4)
    p, y = rng.integers(0, 3, 300), rng.integers(0, 3, 300)
    live = LIVE["accuracy"](3)
    live.update(torch.as_tensor(p), torch.as_tensor(y))
    assert float(live.compute()) == pytest.approx(M.accuracy(p, y), abs=1e-6)


@pytest.mark.parametrize("ties", [False, True])
def test_correlations_match_formulas_and_torchmetrics(ties):
    rng = np.random.default_rng(5)
    y = rng.uniform(0, 5, 400)
    p = y + rng.normal(0, 1.5, 400)
    if ties:  # STS-B labels come in steps of 0.2: many ties
        y, p = np.round(y * 5) / 5, np.round(p)
    pearson = np.corrcoef(p, y)[0, 1]
    spearman = np.corrcoef(ranks(p), ranks(y))[0, 1]
    assert M.pearson(p, y) == pytest.approx(pearson, abs=1e-12)
    assert M.spearman(p, y) == pytest.approx(spearman, abs=1e-12)
    for name, ref in [("pearson", pearson), ("spearman", spearman)]:
        live = LIVE[name](1)
        live.update(torch.as_tensor(p, dtype=torch.float32), torch.as_tensor(y, dtype=torch.float32))
        assert float(live.compute()) == pytest.approx(ref, abs=1e-4), name


def test_compute_uses_result_keys_and_score_is_mean():
    p, y = np.array([1, 0, 1, 1]), np.array([1, 0, 0, 1])
    out = M.compute({"accuracy": "accuracy", "f1": "f1"}, p, y)
    assert out == {"accuracy": 0.75, "f1": pytest.approx(0.8)}
    assert M.glue_score(out) == pytest.approx(0.775)


def macro_f1_by_hand(p, y):
    """Mean over the classes seen in labels or predictions of 2 tp / (2 tp + fp + fn)."""
    scores = []
    for c in sorted(set(p) | set(y)):
        tp = sum(1 for a, b in zip(p, y, strict=True) if a == c and b == c)
        fp = sum(1 for a, b in zip(p, y, strict=True) if a == c and b != c)
        fn = sum(1 for a, b in zip(p, y, strict=True) if a != c and b == c)
        scores.append(2 * tp / (2 * tp + fp + fn))
    return sum(scores) / len(scores)


@pytest.mark.parametrize("preds,labels", [
    ([0, 1, 2, 2, 1, 0, 0], [0, 2, 2, 1, 1, 0, 1]),   # three classes, mixed
    ([0, 0, 0, 0], [0, 1, 2, 0]),                     # one class predicted (CB early in training)
    ([2, 2, 1], [2, 2, 2]),                           # a class predicted that never occurs
])
def test_macro_f1_matches_formula_and_live_metric(preds, labels):
    expected = macro_f1_by_hand(preds, labels)
    assert M.macro_f1(preds, labels) == pytest.approx(expected, abs=1e-12)
    live = LIVE["macro_f1"](3)
    live.update(torch.tensor(preds), torch.tensor(labels))
    assert float(live.compute()) == pytest.approx(expected, abs=1e-9)


def test_each_metric_is_declared_once_and_every_user_reads_the_registry():
    """metrics.REGISTRY is the one declaration: the functions, the header names, the report's ranges
    and its vectorised estimators' metric lists come from it, and the live curves cover exactly it."""
    from maxpoolbert.report import collect, statistics

    assert list(LIVE) == list(M.REGISTRY)
    assert M.METRICS == {name: m.fn for name, m in M.REGISTRY.items()}
    assert all(M.SHORT_NAMES[name] == m.short for name, m in M.REGISTRY.items())
    assert collect.METRIC_RANGES == {name: (m.low, m.high) for name, m in M.REGISTRY.items()}
    assert statistics.BATCH_METRICS == tuple(M.REGISTRY)
    assert set(statistics.CLASS_METRICS) == {n for n, m in M.REGISTRY.items() if m.kind == "class"}
    for name, m in M.REGISTRY.items():  # a perfect prediction reaches the top of the declared range
        y = np.array([0, 1, 1, 0, 1, 2, 0]) if m.kind == "class" else np.array([0.1, 2.0, 1.5, 3.0])
        y = y.clip(0, 1) if name == "f1" else y
        assert m.low < m.high and m.fn(y, y) == pytest.approx(m.high), name
