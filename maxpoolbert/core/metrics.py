"""GLUE and SuperGLUE metrics, computed offline from gathered predictions.

Reported numbers come from scikit-learn / scipy in float64, exactly what ``evaluate``'s ``glue``
metric computes (accuracy, binary F1, Matthews correlation, Pearson and Spearman correlation;
macro F1 for SuperGLUE's CB), so no hub download is needed. The live per-epoch curves use the
torchmetrics versions in :mod:`maxpoolbert.training.live_metrics`.

Light on purpose: numpy at import, scikit-learn and scipy when a metric is computed, so that task
configs (which name their metrics) are checked before anything heavy loads.

Each metric is declared once, in :data:`REGISTRY` (:class:`Metric`: its function, short name,
range and kind); the task check, the table headers, the report's range check and its vectorised
estimators (``report.collect``, ``report.statistics``) read it, and the live torchmetrics versions
(:data:`maxpoolbert.live_metrics.LIVE`) are keyed by it (``tests/test_metrics.py`` checks both
name the same metrics).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Literal

import numpy as np


def _f64(x) -> np.ndarray:
    return np.asarray(x, dtype=np.float64)


def accuracy(preds, labels) -> float:
    from sklearn import metrics as skm

    return float(skm.accuracy_score(_f64(labels), _f64(preds)))


def f1(preds, labels) -> float:
    from sklearn import metrics as skm

    return float(skm.f1_score(_f64(labels), _f64(preds)))


def mcc(preds, labels) -> float:
    from sklearn import metrics as skm

    return float(skm.matthews_corrcoef(_f64(labels), _f64(preds)))


def macro_f1(preds, labels) -> float:
    """F1 per class, averaged with equal weight (SuperGLUE's CB); classes are those in labels or preds."""
    from sklearn import metrics as skm

    return float(skm.f1_score(_f64(labels), _f64(preds), average="macro"))


def pearson(preds, labels) -> float:
    from scipy import stats

    return float(stats.pearsonr(_f64(preds), _f64(labels))[0])


def spearman(preds, labels) -> float:
    from scipy import stats

    return float(stats.spearmanr(_f64(preds), _f64(labels))[0])


@dataclass(frozen=True)
class Metric:
    """One metric, declared once. ``kind``: ``"class"`` compares predicted with gold classes
    (computable from class counts), ``"rank"`` correlates predicted with gold values (STS-B).
    ``low``/``high``: its range (a reported value outside it is a damaged record)."""

    name: str
    fn: Callable[..., float]
    short: str  # its name in table headers (MRPC: "F1/acc")
    low: float
    high: float
    kind: Literal["class", "rank"]


REGISTRY: dict[str, Metric] = {m.name: m for m in (
    Metric("accuracy", accuracy, "acc", 0.0, 1.0, "class"),
    Metric("f1", f1, "F1", 0.0, 1.0, "class"),
    Metric("mcc", mcc, "MCC", -1.0, 1.0, "class"),
    Metric("macro_f1", macro_f1, "mF1", 0.0, 1.0, "class"),
    Metric("pearson", pearson, "P", -1.0, 1.0, "rank"),
    Metric("spearman", spearman, "S", -1.0, 1.0, "rank"),
)}

METRICS: dict[str, Callable] = {name: m.fn for name, m in REGISTRY.items()}  # metric name -> its function


def names_of(kind: str) -> tuple[str, ...]:
    """The names of the metrics of one ``kind`` (``"class"``, ``"rank"``), in registry order."""
    return tuple(name for name, m in REGISTRY.items() if m.kind == kind)


def ranges() -> dict[str, tuple[float, float]]:
    """``{metric name: (low, high)}``."""
    return {name: (m.low, m.high) for name, m in REGISTRY.items()}


# result key (a task's ``eval.<split>.metrics`` key) -> its short name in table headers: every
# metric's own, and MNLI's two splits' keys; a key not listed is shown as it is
SHORT_NAMES = {**{name: m.short for name, m in REGISTRY.items()}, "accuracy_m": "m", "accuracy_mm": "mm"}


def compute(metrics: Mapping[str, str], preds, labels) -> dict[str, float]:
    """``metrics`` maps result keys to metric names, e.g. ``{"accuracy_m": "accuracy"}``."""
    return {key: METRICS[name](preds, labels) for key, name in metrics.items()}


def glue_score(values: Mapping[str, float]) -> float:
    """A task's GLUE score: the mean of its metrics."""
    return float(np.mean(list(values.values())))


def metrics_label(metrics: list[str] | tuple[str, ...]) -> str:
    """The short header label of a task's metrics, in display order: ``["f1", "accuracy"]`` -> ``F1/acc``."""
    return "/".join(SHORT_NAMES.get(m, m) for m in metrics)
