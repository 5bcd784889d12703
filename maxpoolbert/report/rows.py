"""Which evaluation rows the report scores (``--rows``): the official dev set (``dev``: each run's
``dev_predictions.tsv``), or the held-out rows of the training file (``heldout``:
``heldout_predictions.tsv`` of runs trained with ``data.heldout_size``, scored with the task's dev
metrics). :func:`evaluation` gives a run's metric spec per split and its predictions on those rows;
selection (``--select-on half``), the two-level bootstrap and the failure rule all read rows through
it, and :func:`rescore` puts every run's scores on them."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd

from maxpoolbert.core.metrics import compute, glue_score
from maxpoolbert.report.collect import SelectionError
from maxpoolbert.runs.folder import ARCHIVES, RunFolder
from maxpoolbert.runs.record import RunRecord
from maxpoolbert.tasks.task import HELDOUT

ROWS = ("dev", HELDOUT)


def noun(rows: str) -> str:
    """The rows scored, as the report's words name them."""
    return "held-out training rows" if rows == HELDOUT else "dev rows"


def source(folder: RunFolder, rows: str) -> Path:
    """The file a run's predictions on ``rows`` come from (its archive once a study committed it)."""
    tsv = folder.predictions_file if rows == "dev" else folder.heldout_file
    archive = folder.path / ARCHIVES[tsv.name]
    return archive if archive.is_file() and not tsv.is_file() else tsv


def evaluation(folder: RunFolder, record: RunRecord, rows: str = "dev") -> tuple[dict[str, dict[str, str]], pd.DataFrame]:
    """``(spec, frame)``: the metrics of each split (``{split: {key: metric}}``) and the run's
    predictions on the rows scored (``split index label prediction``), checked against its record.
    OSError / ValueError when the predictions are missing, unreadable or not those the record was
    scored on (the message says which file)."""
    spec = record.eval_metrics()
    if rows == "dev":
        return spec, folder.predictions()
    if not spec:
        return spec, pd.DataFrame()
    return {HELDOUT: next(iter(spec.values()))}, folder.predictions(heldout=True)


def rescore(runs: pd.DataFrame, root: Path, metric_columns: list[str]) -> tuple[pd.DataFrame, list[dict[str, str]]]:
    """``--rows heldout``: every run's metrics and score recomputed on its held-out rows; the runs
    without them are left out and listed (``{"path", "reason"}``), with the dev score they had kept in
    ``dev_score``."""
    runs = runs.copy()
    runs["dev_score"] = runs["score"]
    keep, skipped = [], []
    for i, path in zip(runs.index, runs["path"], strict=True):
        folder = RunFolder(root / path)
        record = folder.record()
        if record is None:
            skipped.append({"path": path, "reason": "unreadable record"})
            continue
        if not source(folder, HELDOUT).is_file():
            skipped.append({"path": path, "reason": "other configuration: no held-out predictions (a run trained "
                                                    "without data.heldout_size)"})
            continue
        try:
            spec, frame = evaluation(folder, record, HELDOUT)
            metrics: dict[str, float] = {}
            for split, keys in spec.items():
                part = frame[frame["split"] == split]
                if part.empty:
                    raise ValueError(f"no {split} rows in its held-out predictions")
                metrics.update(compute(keys, part["prediction"].to_numpy(), part["label"].to_numpy()))
        except (OSError, ValueError) as err:  # unreadable, its labels' data folder not given, or not its record's
            raise SelectionError(" ".join(str(err).split())) from None
        for column in metric_columns:
            runs.at[i, column] = metrics.get(column, np.nan)
        values = list(metrics.values())
        runs.at[i, "score"] = glue_score(metrics) if all(math.isfinite(v) for v in values) else math.nan
        keep.append(i)
    return runs.loc[keep].reset_index(drop=True), skipped
