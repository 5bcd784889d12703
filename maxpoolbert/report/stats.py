"""The report's statistics: which cells make the main table, main-table summary, paired
differences (t-test, Wilcoxon), low-resource and degenerate-run tables, and the report order of
rows. The inference of issue 20 (confidence intervals, bootstraps, Holm, ASO, power, search
budgets) is in :mod:`maxpoolbert.report.analysis`."""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from maxpoolbert.report.collect import BASELINE, CELL, tasks_of
from maxpoolbert.report.statistics import cell_summary
from maxpoolbert.tasks.task import TaskInfo

POOLING_ORDER = ("cls", "max_cls", "mha", "maxpool_mha")


def avg_key(benchmark: str) -> str:
    """The ``task`` value of a benchmark's average in the summary and ``results.csv``."""
    return f"{benchmark}_avg"


GLUE_AVG = avg_key("glue")


# --------------------------------------------------------------------------- ordering helpers


def pooling_key(name: str) -> tuple:
    """Sort key: cls, max_cls, mha, maxpool_mha, then the rest alphabetically; a labelled row
    (``maxpool_mha [pooling.module.k=1]``) after its pooling's plain one, its labels' numbers by
    value (``k=2`` before ``k=10``)."""
    base, _, label = name.partition(" [")
    rank = POOLING_ORDER.index(base) if base in POOLING_ORDER else len(POOLING_ORDER)
    parts = []
    for item in label.rstrip("]").split(", ") if label else []:
        key, _, value = item.partition("=")
        try:
            parts.append((key, 0, float(value), ""))
        except ValueError:
            parts.append((key, 0 if value == "default" else 1, 0.0, value))
    return (rank, base, tuple(parts))


def size_key(size: Any) -> tuple[int, int]:
    """Sort key for train sizes: the full training set first, then ascending sizes."""
    return (0, 0) if pd.isna(size) else (1, int(size))


MAIN, LOW = "main", "low_resource"   # the tables a cell belongs to


def table_key(table: str) -> tuple[int, str]:
    """Sort key: the main table first, then the low-resource one."""
    return (0 if table == MAIN else 1, table)


def _plain_key(value: Any) -> tuple:
    """Numbers by value (before text), anything else as text."""
    if isinstance(value, int | float | np.integer | np.floating) and not isinstance(value, bool) and not pd.isna(value):
        return (0, float(value), "")
    return (1, 0.0, str(value))


def _sort(df: pd.DataFrame, by: Sequence[str], tasks: dict[str, TaskInfo] | None = None) -> pd.DataFrame:
    """Sort rows by the columns ``by`` in report order (pooling, train_size, table and, given
    ``tasks``, task keys; other columns: numbers by value, the rest as text)."""
    keys = {"pooling": pooling_key, "train_size": size_key, "table": table_key}
    if tasks is not None:
        keys["task"] = lambda t: tasks[t].sort_key
    columns = [[keys.get(c, _plain_key)(v) for v in df[c]] for c in by]
    order = sorted(range(len(df)), key=lambda i: tuple(col[i] for col in columns))
    return df.iloc[order].reset_index(drop=True)


def benchmarks(tasks: dict[str, TaskInfo]) -> dict[str, list[str]]:
    """``{benchmark: its tasks}`` in column order (``tasks`` is in column order)."""
    out: dict[str, list[str]] = {}
    for name, info in tasks.items():
        out.setdefault(info.benchmark, []).append(name)
    return out


def table_columns(tasks: dict[str, TaskInfo]) -> list[str]:
    """The main table's columns after the pooling: each benchmark's tasks, then its average
    (:func:`avg_key`)."""
    return [c for bench, names in benchmarks(tasks).items() for c in (*names, avg_key(bench))]


# --------------------------------------------------------------------------- the main table's cells


def main_sizes(runs: pd.DataFrame) -> dict[str, int | None]:
    """``{task: the training-set size of its main-table cells}``: None (the full training set) when
    some run of the task used it, else the largest ``train_size`` of its runs (a study on fixed
    subsets, e.g. experiment=reference_study, has its main table at those sizes)."""
    out: dict[str, int | None] = {}
    for task, group in runs.groupby("task", sort=True):
        sizes = group["train_size"]
        out[task] = None if sizes.isna().any() else int(sizes.max())
    return out


def in_main(runs: pd.DataFrame, sizes: dict[str, int | None] | None = None) -> pd.Series:
    """Whether each run belongs to a main-table cell (its task's :func:`main_sizes` size); the
    others are the low-resource table's."""
    sizes = main_sizes(runs) if sizes is None else sizes
    flags = [(pd.isna(size) if sizes.get(task) is None else (not pd.isna(size) and int(size) == sizes[task]))
             for task, size in zip(runs["task"], runs["train_size"], strict=True)]
    return pd.Series(flags, index=runs.index, dtype=bool)


def table_of(runs: pd.DataFrame) -> pd.Series:
    """``main`` or ``low_resource`` for each run (:func:`in_main`)."""
    return in_main(runs).map({True: MAIN, False: LOW})


# --------------------------------------------------------------------------- tables


def _scored(runs: pd.DataFrame) -> pd.DataFrame:
    return runs[runs["score"].notna()]


def _stats(values: pd.Series) -> pd.Series:
    return pd.Series({"mean": values.mean(), "std": values.std(ddof=1), "n": values.count()})


def summary_table(runs: pd.DataFrame, tasks: dict[str, TaskInfo] | None = None) -> pd.DataFrame:
    """Main-table statistics, tidy: each task at its :func:`main_sizes` size (the full training
    set when the task has runs on it).

    One row per model, pooling, task, metric (the task's metrics, then ``score``) with the cells'
    ``train_size`` (empty: full) and mean, std (ddof=1, NaN for n=1) and n over seeds, all ×100;
    plus, per model, pooling and benchmark, one ``<benchmark>_avg``/``score`` row
    (``glue_avg``, ``superglue_avg``): the mean over the benchmark's tasks the row has of the
    per-task mean score, n = number of those tasks (``train_size``: their common size, empty when
    they differ or are full). Rows are in table order: each benchmark's tasks, then its average.
    ``tasks``: :func:`tasks_of` the runs.
    """
    tasks = tasks_of(runs) if tasks is None else tasks
    scored = _scored(runs)
    main = scored[in_main(scored, main_sizes(runs))]
    columns = ["model", "pooling", "task", "train_size", "metric", "mean", "std", "n"]
    rows = []
    for (model, pooling, task), group in main.groupby(["model", "pooling", "task"]):
        for metric in (*tasks[task].metrics, "score"):
            rows.append({"model": model, "pooling": pooling, "task": task,
                         "train_size": group["train_size"].iloc[0], "metric": metric,
                         **_stats(group[metric] * 100)})
    table = pd.DataFrame(rows, columns=columns)
    scores = table[table["metric"] == "score"]
    for (model, pooling), group in scores.groupby(["model", "pooling"]):
        for bench, members in benchmarks(tasks).items():
            mine = group[group["task"].isin(members)]
            if len(mine):
                sizes = set(mine["train_size"].dropna())
                common = sizes.pop() if len(sizes) == 1 and mine["train_size"].notna().all() else pd.NA
                rows.append({"model": model, "pooling": pooling, "task": avg_key(bench),
                             "train_size": common, "metric": "score", "mean": mine["mean"].mean(),
                             "std": math.nan, "n": len(mine)})
    table = pd.DataFrame(rows, columns=columns)
    table["n"] = table["n"].astype("int64")
    table["train_size"] = table["train_size"].astype("Int64")

    column = {c: i for i, c in enumerate(table_columns(tasks))}

    def order(row: pd.Series) -> tuple:
        task = tasks.get(row["task"])
        metric = (*task.metrics, "score").index(row["metric"]) if task else 0
        return (row["model"], pooling_key(row["pooling"]), column[row["task"]], metric)

    keys = [order(row) for _, row in table.iterrows()]
    return table.iloc[sorted(range(len(table)), key=keys.__getitem__)].reset_index(drop=True)


def full_train_sizes(runs: pd.DataFrame) -> dict[str, int]:
    """``{task: rows of its full training set}``: the runs' ``n_train_full``, or else the
    ``n_train`` of its full-size runs (the largest value where runs disagree); tasks with
    neither are absent."""
    out = {}
    for task, group in runs.groupby("task"):
        sizes = group["n_train_full"].dropna()
        if sizes.empty:
            sizes = group.loc[group["train_size"].isna(), "n_train"].dropna()
        if not sizes.empty:
            out[task] = int(sizes.max())
    return out


def _paired_tests(diffs: np.ndarray, treated: np.ndarray, base: np.ndarray) -> tuple[float, float]:
    """Paired t-test and Wilcoxon p-values; NaN with < 2 pairs or all differences zero."""
    if len(diffs) < 2 or np.all(diffs == 0):
        return math.nan, math.nan
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore", RuntimeWarning)
        warnings.simplefilter("ignore", UserWarning)
        t_p = float(stats.ttest_rel(treated, base).pvalue)
        w_p = float(stats.wilcoxon(treated, base).pvalue)
    return t_p, w_p


def difference_table(runs: pd.DataFrame, baseline: str = BASELINE) -> pd.DataFrame:
    """Each pooling minus ``baseline`` per model, task and train_size, paired by seed.

    Columns: model, train_size, task, pooling, n_pairs, mean_diff and std_diff (mean and sample
    std of the paired score differences ×100), ttest_p (scipy.stats.ttest_rel), wilcoxon_p
    (scipy.stats.wilcoxon, exact for small n without ties). Cells without a baseline are absent.
    """
    cols = ["model", "train_size", "task", "pooling", "n_pairs", "mean_diff", "std_diff",
            "ttest_p", "wilcoxon_p"]
    rows = []
    scored = _scored(runs)
    for (model, task, size), group in scored.groupby(["model", "task", "train_size"], dropna=False):
        base = group[group["pooling"] == baseline].set_index("seed")["score"]
        if base.empty:
            continue
        for pooling, other in group[group["pooling"] != baseline].groupby("pooling"):
            paired = pd.concat([other.set_index("seed")["score"], base], axis=1,
                               keys=["treated", "base"], join="inner").sort_index()
            treated, ref = paired["treated"].to_numpy() * 100, paired["base"].to_numpy() * 100
            diffs = treated - ref
            t_p, w_p = _paired_tests(diffs, treated, ref)
            rows.append({"model": model, "train_size": size, "task": task, "pooling": pooling,
                         "n_pairs": len(diffs),
                         "mean_diff": diffs.mean() if len(diffs) else math.nan,
                         "std_diff": pd.Series(diffs).std(ddof=1),
                         "ttest_p": t_p, "wilcoxon_p": w_p})
    table = pd.DataFrame(rows, columns=cols)
    table["train_size"] = table["train_size"].astype("Int64")
    return _sort(table, ["model", "train_size", "task", "pooling"], tasks_of(runs))


def low_resource_table(runs: pd.DataFrame) -> pd.DataFrame:
    """Score ×100 (mean, std ddof=1, n, and the Student-t 95% CI of the mean ``ci_low``,
    ``ci_high``) per model, task, pooling and train_size.

    Only tasks with runs at two or more training-set sizes (a reduced one among them); their
    full-size runs are included with ``train_size`` empty (NA) so each curve ends at "full". A
    task with one size only is in the main table alone.
    """
    scored = _scored(runs)
    sizes = scored.groupby("task")["train_size"].agg(lambda s: s.astype("Float64").fillna(-1).nunique())
    reduced = set(scored.loc[scored["train_size"].notna(), "task"])
    tasks = {t for t in reduced if sizes.get(t, 0) >= 2}
    rows = []
    subset = scored[scored["task"].isin(tasks)]
    for (model, task, pooling, size), group in subset.groupby(
            ["model", "task", "pooling", "train_size"], dropna=False):
        summary = cell_summary(group["score"].to_numpy() * 100)
        rows.append({"model": model, "task": task, "pooling": pooling, "train_size": size,
                     **_stats(group["score"] * 100), "ci_low": summary["ci_low"],
                     "ci_high": summary["ci_high"]})
    table = pd.DataFrame(rows, columns=["model", "task", "pooling", "train_size", "mean", "std", "n",
                                        "ci_low", "ci_high"])
    table["train_size"] = table["train_size"].astype("Int64")
    table["n"] = table["n"].astype("int64")
    return _sort(table, ["model", "task", "pooling", "train_size"], tasks_of(runs))


def degenerate_table(runs: pd.DataFrame) -> pd.DataFrame:
    """Per model, pooling, task, train_size: runs, runs with known status, failed (degenerate) runs,
    and collapsed runs (:func:`maxpoolbert.report.failures.collapsed`, where judged) with the collapse
    rate among the runs whose collapse is known and its 95% Wilson interval."""
    rows = []
    for (model, pooling, task, size), group in runs.groupby(CELL, dropna=False):
        known = group["degenerate"].dropna()
        row = {"model": model, "pooling": pooling, "task": task, "train_size": size,
               "n_runs": len(group), "n_known": len(known), "n_degenerate": int(known.sum())}
        if "collapsed" in group:
            judged = group["collapsed"].dropna()
            k, n = int(judged.sum()), len(judged)
            low, high = stats.binomtest(k, n).proportion_ci(method="wilson") if n else (math.nan, math.nan)
            row.update(n_collapsed=k, collapse_rate=k / n if n else math.nan, collapse_low=low, collapse_high=high)
        rows.append(row)
    columns = ["model", "pooling", "task", "train_size", "n_runs", "n_known", "n_degenerate"]
    if "collapsed" in runs:
        columns += ["n_collapsed", "collapse_rate", "collapse_low", "collapse_high"]
    table = pd.DataFrame(rows, columns=columns)
    table["train_size"] = table["train_size"].astype("Int64")
    return _sort(table, ["model", "train_size", "pooling", "task"], tasks_of(runs))
