"""Failed runs, judged on the rows the report scores (issue 26).

A run fails when, on the dev rows reported (every row; with ``--select-on half`` the odd-index
ones), its score is not finite, is at or below the majority-class score on those same rows, or its
predictions are one class (one value, for regression) on every one of them. The majority-class
score on the reported rows is that of predicting, for every row, the most frequent label of the
run's training set: the label whose full-dev score is the recorded ``majority_score`` (a tie, which
two labels of a balanced dev set can give: the higher of their scores on the reported rows); a
record without one, or whose value no label reproduces (the held-out rows of ``--rows heldout`` are
not the dev set the record scored): the best constant label on the rows.

Runs whose predictions cannot be read keep the judgement of their record (its full-dev score
against its recorded majority score).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd

from maxpoolbert.metrics import compute, glue_score
from maxpoolbert.report.collect import DEGENERATE_TOL
from maxpoolbert.report.rows import evaluation
from maxpoolbert.rundir import RunFolder

MATCH = 1e-9   # a constant label "reproduces" the recorded majority score this closely


def reported_rows(frame: pd.DataFrame, half: bool) -> pd.DataFrame:
    """The rows of a predictions frame the report scores: all, or the odd-index ones."""
    return frame[frame["index"] % 2 == 1] if half else frame


def _constant_scores(spec: dict[str, dict[str, str]], frame: pd.DataFrame, value) -> float:
    scores: dict[str, float] = {}
    for split, metrics in spec.items():
        labels = frame.loc[frame["split"] == split, "label"].to_numpy()
        if labels.size == 0:
            return math.nan
        scores.update(compute(metrics, np.full(labels.size, value, dtype=labels.dtype), labels))
    return glue_score(scores)


def majority_on(spec: dict[str, dict[str, str]], full: pd.DataFrame, rows: pd.DataFrame,
                recorded: float | None) -> float:
    """The majority-class score on ``rows`` of a classification task (see the module docstring)."""
    candidates = list(pd.unique(full["label"]))
    if recorded is not None and math.isfinite(recorded):
        fits = [c for c in candidates if abs(_constant_scores(spec, full, c) - recorded) <= MATCH]
        candidates = fits or candidates
    scores = [_constant_scores(spec, rows, c) for c in candidates]
    scores = [x for x in scores if math.isfinite(x)]
    return max(scores) if scores else math.nan


def judge(runs: pd.DataFrame, root: Path | None, half: bool, rows: str = "dev") -> pd.DataFrame:
    """``runs`` with ``majority_score`` on the reported rows, ``constant`` (one prediction on every
    reported row; NA when unread) and ``degenerate`` (failed) by the rule of this module."""
    runs = runs.copy()
    constant: list = []
    for i in runs.index:
        judged = _judge_one(runs.loc[i], root, half, rows) if root is not None else None
        if judged is None:
            constant.append(pd.NA)
            continue
        majority, const = judged
        constant.append(const)
        runs.at[i, "majority_score"] = majority
        score = runs.at[i, "score"]
        runs.at[i, "degenerate"] = bool(not math.isfinite(score) or const
                                        or (math.isfinite(majority) and score <= majority + DEGENERATE_TOL))
    runs["constant"] = pd.array(constant, dtype="boolean")
    return runs


def _judge_one(run: pd.Series, root: Path, half: bool, rows_of: str) -> tuple[float, bool] | None:
    folder = RunFolder(root / run["path"])
    record = folder.record()
    if record is None:
        return None
    try:
        spec, frame = evaluation(folder, record, rows_of)
    except (OSError, ValueError):
        return None
    if not spec or not {"split", "index", "label", "prediction"} <= set(frame.columns):
        return None
    frame = frame[frame["split"].isin(list(spec))]
    rows = reported_rows(frame, half)
    if rows.empty:
        return None
    const = bool(all(part["prediction"].nunique(dropna=False) <= 1 for _, part in rows.groupby("split")))
    regression = record.majority_score is None
    majority = math.nan if regression else majority_on(spec, frame, rows, record.majority_score)
    return majority, const
