"""Live dev metrics for the training curves: torchmetrics versions of :mod:`maxpoolbert.core.metrics`.

The reported numbers come from :mod:`maxpoolbert.core.metrics` (scikit-learn / scipy on the gathered
predictions); these drive the per-epoch curves only. ``tests/test_metrics.py`` checks that both
agree (our live MCC and macro F1 follow scikit-learn where torchmetrics' own do not).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torchmetrics


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


LIVE: dict[str, Callable[[int], torchmetrics.Metric]] = {  # metric name -> its live metric for n classes
    "accuracy": lambda n: torchmetrics.Accuracy(task="multiclass", num_classes=n),
    "f1": lambda n: torchmetrics.F1Score(task="binary"),
    "mcc": lambda n: MatthewsCorrCoef(num_classes=n),
    "macro_f1": lambda n: MacroF1(num_classes=n),
    "pearson": lambda n: torchmetrics.PearsonCorrCoef(),
    "spearman": lambda n: torchmetrics.SpearmanCorrCoef(),
}
