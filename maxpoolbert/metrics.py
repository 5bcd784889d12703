"""GLUE and SuperGLUE metrics, computed offline from gathered predictions.

Reported numbers come from scikit-learn / scipy in float64, exactly what ``evaluate``'s ``glue``
metric computes (accuracy, binary F1, Matthews correlation, Pearson and Spearman correlation;
macro F1 for SuperGLUE's CB),
so no hub download is needed. torchmetrics versions of the same metrics drive the live
per-epoch curves; ``tests/test_metrics.py`` checks that both agree (our live MCC follows
scikit-learn where torchmetrics' does not).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import numpy as np
import torch
import torchmetrics
from scipy import stats
from sklearn import metrics as skm

from maxpoolbert.tasks import SHORT_NAMES, metrics_label  # noqa: F401  (short header names: public here)


def _f64(x) -> np.ndarray:
    return np.asarray(x, dtype=np.float64)


def accuracy(preds, labels) -> float:
    return float(skm.accuracy_score(_f64(labels), _f64(preds)))


def f1(preds, labels) -> float:
    return float(skm.f1_score(_f64(labels), _f64(preds)))


def mcc(preds, labels) -> float:
    return float(skm.matthews_corrcoef(_f64(labels), _f64(preds)))


def macro_f1(preds, labels) -> float:
    """F1 per class, averaged with equal weight (SuperGLUE's CB); classes are those in labels or preds."""
    return float(skm.f1_score(_f64(labels), _f64(preds), average="macro"))


def pearson(preds, labels) -> float:
    return float(stats.pearsonr(_f64(preds), _f64(labels))[0])


def spearman(preds, labels) -> float:
    return float(stats.spearmanr(_f64(preds), _f64(labels))[0])


METRICS: dict[str, Callable] = {
    "accuracy": accuracy,
    "f1": f1,
    "mcc": mcc,
    "macro_f1": macro_f1,
    "pearson": pearson,
    "spearman": spearman,
}

class MatthewsCorrCoef(torchmetrics.classification.MulticlassConfusionMatrix):
    """Live MCC with scikit-learn's convention (0 when a class is never predicted or never true).

    torchmetrics' own MCC returns a small non-zero value there (``tests/test_metrics.py``), and
    all-one-class predictions are common early in fine-tuning.
    """

    def compute(self) -> torch.Tensor:
        c = self.confmat.double()
        t_sum, p_sum, n = c.sum(1), c.sum(0), c.sum()
        cov_tp = c.trace() * n - t_sum @ p_sum
        cov_pp = n * n - p_sum @ p_sum
        cov_tt = n * n - t_sum @ t_sum
        den = cov_pp * cov_tt
        return torch.where(den > 0, cov_tp / den.clamp(min=1e-300).sqrt(), torch.zeros((), dtype=c.dtype))


class MacroF1(torchmetrics.classification.MulticlassConfusionMatrix):
    """Live macro F1 with scikit-learn's convention: the mean over the classes that occur in the
    labels or the predictions (torchmetrics' own averages over all ``num_classes``)."""

    def compute(self) -> torch.Tensor:
        c = self.confmat.double()
        tp, t_sum, p_sum = c.diagonal(), c.sum(1), c.sum(0)
        present = (t_sum + p_sum) > 0
        f1 = torch.where(present, 2 * tp / (t_sum + p_sum).clamp(min=1), torch.zeros_like(tp))
        return f1[present].mean() if present.any() else torch.zeros((), dtype=c.dtype)


TORCHMETRICS: dict[str, Callable[[int], torchmetrics.Metric]] = {
    "accuracy": lambda n: torchmetrics.Accuracy(task="multiclass", num_classes=n),
    "f1": lambda n: torchmetrics.F1Score(task="binary"),
    "mcc": lambda n: MatthewsCorrCoef(num_classes=n),
    "macro_f1": lambda n: MacroF1(num_classes=n),
    "pearson": lambda n: torchmetrics.PearsonCorrCoef(),
    "spearman": lambda n: torchmetrics.SpearmanCorrCoef(),
}


def compute(metrics: Mapping[str, str], preds, labels) -> dict[str, float]:
    """``metrics`` maps result keys to metric names, e.g. ``{"accuracy_m": "accuracy"}``."""
    return {key: METRICS[name](preds, labels) for key, name in metrics.items()}


def glue_score(values: Mapping[str, float]) -> float:
    """A task's GLUE score: the mean of its metrics."""
    return float(np.mean(list(values.values())))

