"""GLUE and SuperGLUE metrics, computed offline from gathered predictions.

Reported numbers come from scikit-learn / scipy in float64, exactly what ``evaluate``'s ``glue``
metric computes (accuracy, binary F1, Matthews correlation, Pearson and Spearman correlation;
macro F1 for SuperGLUE's CB), so no hub download is needed. The live per-epoch curves use the
torchmetrics versions in :mod:`maxpoolbert.training.live_metrics`.

Light on purpose: numpy at import, scikit-learn and scipy when a metric is computed, so that task
configs (which name their metrics) are checked before anything heavy loads.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import numpy as np

# result key (a task's ``eval.<split>.metrics`` key) -> its short name in table headers (MRPC: "F1/acc");
# a key not listed is shown as it is
SHORT_NAMES = {"accuracy": "acc", "f1": "F1", "mcc": "MCC", "pearson": "P", "spearman": "S",
               "accuracy_m": "m", "accuracy_mm": "mm", "macro_f1": "mF1"}


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


METRICS: dict[str, Callable] = {
    "accuracy": accuracy,
    "f1": f1,
    "mcc": mcc,
    "macro_f1": macro_f1,
    "pearson": pearson,
    "spearman": spearman,
}


def compute(metrics: Mapping[str, str], preds, labels) -> dict[str, float]:
    """``metrics`` maps result keys to metric names, e.g. ``{"accuracy_m": "accuracy"}``."""
    return {key: METRICS[name](preds, labels) for key, name in metrics.items()}


def glue_score(values: Mapping[str, float]) -> float:
    """A task's GLUE score: the mean of its metrics."""
    return float(np.mean(list(values.values())))


def metrics_label(metrics: list[str] | tuple[str, ...]) -> str:
    """The short header label of a task's metrics, in display order: ``["f1", "accuracy"]`` -> ``F1/acc``."""
    return "/".join(SHORT_NAMES.get(m, m) for m in metrics)
