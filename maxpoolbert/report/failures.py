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

A run **collapses** (issue 28; a rule fixed before the second study's runs were read) when it failed,
or when its score on the reported rows falls below half-way from chance to the median run of its task:
``score < chance + (median - chance) / 2``, where chance is the majority-class score on those rows
(0 for a task without one: a correlation or MCC of 0) and the median is over every run of the same
model, task and training-set size, all poolings and settings together, so that the line favours no
arm. The report gives each cell's collapse rate with its 95% Wilson interval.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd

from maxpoolbert.core.metrics import compute, glue_score
from maxpoolbert.report.collect import DEGENERATE_TOL
from maxpoolbert.report.rows import evaluation
from maxpoolbert.runs.folder import RunFolder

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
    runs["collapsed"] = collapsed(runs)
    return runs


def collapsed(runs: pd.DataFrame) -> pd.Series:
    """Which runs collapsed (the rule of the module docstring); NA where a run's failure is unknown
    and its score is above the line."""
    out = pd.Series(pd.NA, index=runs.index, dtype="boolean")
    for _, group in runs.groupby(["model", "task", "train_size"], dropna=False):
        scores = group["score"].astype(float)
        finite = scores[np.isfinite(scores)]
        if finite.empty:
            out[group.index] = True
            continue
        median = float(finite.median())
        chance = group["majority_score"].astype(float).where(lambda x: np.isfinite(x), 0.0)
        line = chance + (median - chance) / 2
        below = ~np.isfinite(scores) | (scores < line)
        failed = group["degenerate"].astype("boolean")
        out[group.index] = (below | failed.fillna(False)).where(below | failed.notna(), pd.NA)
    return out


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
