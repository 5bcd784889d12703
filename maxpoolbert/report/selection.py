"""Model selection across runs: ``python -m maxpoolbert.report --select KEY [--select-on half]``.

Per cell (model, task, pooling, train size) the value of ``KEY`` (any key of the runs' settings,
e.g. ``optimizer.lr``: :func:`maxpoolbert.runs.identity.settings`) with the best mean dev score over seeds
is chosen, and only that value's runs are reported. ``KEY`` is taken out of the runs' identity,
so the runs of one cell differ in it alone.

``--select-on all`` chooses and reports on the same dev rows (what most papers do: optimistic).
``--select-on half`` is honest selection: scores are recomputed from ``dev_predictions.tsv``;
the value is chosen on the dev rows with an even ``index`` and every reported number is computed
on the odd rows only, so no reported number took part in the choice.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from maxpoolbert.core.metrics import compute
from maxpoolbert.report.collect import CELL, SelectionError, metric_columns, show_value, with_values
from maxpoolbert.report.rows import evaluation, noun
from maxpoolbert.runs.folder import RunFolder
from maxpoolbert.runs.record import RunRecord

MODES = ("all", "half")
COLUMNS = ["model", "task", "pooling", "train_size", "key", "value", "n_seeds", "mean_score", "chosen"]


@dataclass
class Selection:
    runs: pd.DataFrame                       # the chosen value's runs (scores per the mode)
    table: pd.DataFrame                      # selection.csv: one row per cell and candidate value
    notes: list[str] = field(default_factory=list)
    # every candidate run (all values), with ``_value`` (JSON text), ``_select_score`` (the score that
    # chose: all dev rows, or the even half) and ``score`` (the reported one: all rows, or the odd half)
    candidates: pd.DataFrame = field(default_factory=pd.DataFrame)


def describe(key: str, mode: str, rows: str = "dev") -> str:
    """The selection, in words a reader of a paper understands (``rows``: the dev set, or the
    held-out training rows, ``--rows heldout``)."""
    where = "dev examples" if rows == "dev" else f"{noun(rows)} (rows no run trained on)"
    if mode == "half":
        return (f"**Honest model selection.** For every cell (model, task, pooling, training-set size) the value "
                f"of `{key}` with the best mean score over seeds was chosen, using only the {where} with "
                f"an even index. Every number in this report (means, standard deviations, differences, p-values) "
                f"is computed on the {where} with an odd index only, which took no part in the choice: the "
                f"numbers are unbiased by the selection, and noisier than on all of them (half the rows).")
    return (f"**Model selection on the evaluation rows.** For every cell (model, task, pooling, training-set size) the "
            f"value of `{key}` with the best mean score over seeds on the {where} was chosen, and that value's runs "
            f"are reported. The same rows chose the value and are reported, so the numbers are optimistically biased "
            f"(use `--select-on half` for an unbiased report).")


def half_metrics(folder: RunFolder, record: RunRecord, rows_of: str = "dev") -> tuple[dict[str, float], dict[str, float]]:
    """Metrics of the even-index and of the odd-index rows scored (``--rows``: dev, from
    ``dev_predictions.tsv``, or the held-out rows)."""
    try:
        task_eval, rows = evaluation(folder, record, rows_of)
    except (OSError, ValueError) as err:  # missing, unreadable, or its gold labels' data folder not given
        raise SelectionError(" ".join(str(err).split())) from None
    if not task_eval:
        raise SelectionError(f"{folder.path}: its record names no dev metrics (a record of an old version "
                             "without a stored config)")
    halves = []
    for parity in (0, 1):
        metrics: dict[str, float] = {}
        for split, spec in task_eval.items():
            part = rows[(rows["split"] == split) & (rows["index"] % 2 == parity)]
            if part.empty:
                raise SelectionError(f"{folder.path}: no {'even' if parity == 0 else 'odd'}-index rows of "
                                     f"split {split} in {folder.predictions_file.name}")
            metrics.update(compute(spec, part["prediction"].to_numpy(), part["label"].to_numpy()))
        halves.append(metrics)
    return halves[0], halves[1]


def _score(metrics: dict[str, float]) -> float:
    values = list(metrics.values())
    return float(np.mean(values)) if values and all(math.isfinite(v) for v in values) else math.nan


def select(runs: pd.DataFrame, key: str, mode: str = "all", root: Path | None = None, rows: str = "dev") -> Selection:
    """Choose ``key``'s value per cell (see the module docstring). ``runs`` are the report's
    run records; ``root`` is the folder their ``path`` is relative to (configs, predictions)."""
    if mode not in MODES:
        raise SelectionError(f"--select-on={mode}: unknown mode; allowed: {', '.join(MODES)}")
    runs = runs.copy() if "_value" in runs else with_values(runs, key)
    distinct = sorted(set(runs["_value"].dropna()))
    if len(distinct) < 2:
        raise SelectionError(f"--select={key}: every run has the same value ({distinct[0]}): nothing to choose; "
                             "sweep it first (e.g. experiment=lr_search)")
    notes = []
    missing = runs["_value"].isna()
    if missing.any():
        notes.append(f"{int(missing.sum())} run(s) without `{key}` left out.")
        runs = runs[~missing].reset_index(drop=True)
    runs["_select_score"] = runs["score"]
    if mode == "half":
        if root is None:
            raise SelectionError("--select-on half needs run folders with their dev predictions (not --from-wandb)")
        metric_cols = metric_columns(runs)
        for i, path in enumerate(runs["path"]):
            folder = RunFolder(root / path)
            record = folder.record()
            if record is None:
                raise SelectionError(f"{path}: the run's record cannot be read")
            even, odd = half_metrics(folder, record, rows)
            runs.loc[i, "_select_score"] = _score(even)
            for col in metric_cols:
                runs.loc[i, col] = odd.get(col, np.nan)
            runs.loc[i, "score"] = _score(odd)
    table, keep = [], []
    for cell, group in runs.groupby(CELL, dropna=False, sort=False):
        seeds = {v: set(g["seed"]) for v, g in group.groupby("_value", sort=True)}
        common = set.intersection(*seeds.values())
        if len({len(s) for s in seeds.values()}) > 1:
            counts = ", ".join(f"{v}: {len(s)}" for v, s in seeds.items())
            notes.append(f"{_cell_name(cell)}: unequal seed counts per value ({counts}); the values were compared "
                         f"on the {len(common)} seed(s) they share")
        means = {}
        for value, g in group.groupby("_value", sort=True):
            shared = g[g["seed"].isin(common)]["_select_score"] if common else g["_select_score"]
            means[value] = float(shared.mean()) if shared.notna().any() else -math.inf
        chosen = max(means, key=lambda v: (means[v], -sorted(means).index(v)))  # ties: the smaller value
        keep.append(group[group["_value"] == chosen])
        for value, g in group.groupby("_value", sort=True):
            table.append({"model": cell[0], "task": cell[2], "pooling": cell[1], "train_size": cell[3], "key": key,
                          "value": show_value(value), "n_seeds": len(common) if common else len(g),
                          "mean_score": means[value], "chosen": value == chosen})
    chosen_runs = pd.concat(keep).drop(columns=["_value", "_select_score"]).reset_index(drop=True)
    chosen_runs = chosen_runs.astype({c: t for c, t in runs.dtypes.items() if c in chosen_runs.columns})
    return Selection(chosen_runs, pd.DataFrame(table, columns=COLUMNS), notes, runs)


def _cell_name(cell: tuple) -> str:
    model, pooling, task, size = cell
    return f"model={model} task={task} pooling={pooling} train_size={'full' if pd.isna(size) else size}"


def chosen_markdown(table: pd.DataFrame, key: str) -> str:
    """Chosen value per cell, in the main table's layout (rows: model and pooling; columns: tasks)."""
    chosen = table[table["chosen"]]
    lines = []
    for size, block in chosen.groupby(chosen["train_size"].astype("string").fillna("full"), sort=False):
        tasks = list(dict.fromkeys(block["task"]))
        lines.append(f"Chosen `{key}` (train size {size}):\n")
        lines.append("| Model | Pooling | " + " | ".join(tasks) + " |")
        lines.append("|:---|:---|" + "---:|" * len(tasks))
        for (model, pooling), rows in block.groupby(["model", "pooling"], sort=False):
            by_task = {r.task: r for r in rows.itertuples()}
            cells = [f"{by_task[t].value} ({100 * by_task[t].mean_score:.1f}, n={by_task[t].n_seeds})"
                     if t in by_task else "" for t in tasks]
            lines.append(f"| {model} | `{pooling}` | " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines)
