"""Aggregate finished runs into GLUE tables, paired significance tests and plots.

Run as ``python -m maxpoolbert.report [--runs DIR] [--out DIR] [--from-wandb ENTITY/PROJECT]``.

Every finished run leaves a folder with ``results.json`` (see DESIGN.md). This module reads all of
them under ``--runs`` (default ``$RUNS`` or ``outputs``), or the same summaries from W&B, and
writes into ``--out`` (default ``reports``):

``results.md``
    the human report: main table, differences vs ``cls``, low-resource table, stability and
    degenerate-run counts, and the list of skipped runs with reasons.
``results.csv``
    tidy main-table statistics, one row per model, pooling, task, metric (full training set).
``differences.csv``
    each pooling minus ``cls`` with paired t-test and Wilcoxon p-values.
``low_resource.csv``, ``degenerate.csv``, ``skipped.csv``
    the other tables in tidy form.
``results.tex``
    booktabs versions of the main, difference and low-resource tables.
``low_resource.png``, ``stability.png``
    score vs training-set size, and the spread of scores over seeds.

Conventions (also printed in ``results.md``):

* All scores are dev-set scores ×100. A cell is ``mean ± std (n=seeds)``; std is the sample
  standard deviation (ddof=1) over seeds, shown as ``–`` (empty in the CSVs) when n=1.
* Two-metric tasks show both metrics the way GLUE papers do (MRPC/QQP F1/acc, STS-B
  Pearson/Spearman, MNLI m/mm), each with its own std: ``88.1/84.0 ± 0.9/1.1 (n=5)``. A task's
  score is the mean of its metrics; it ranks the rows (bold = best mean score per column within a
  model block, only when at least two rows have the column) and enters the GLUE average.
* The GLUE average of a row is the mean, over the tasks that row has, of its per-task mean
  score. Its n in ``results.csv`` is the number of tasks, its std is empty.
* A run is degenerate when its score is at or below ``majority_score + 1e-9``. Without
  ``majority_score`` (or with a NaN one, as for regression) it is degenerate when all predictions
  in ``dev_predictions.tsv`` are one value, and of unknown status when that file is missing too.
  A run with a non-finite score (e.g. Pearson of constant predictions) counts as degenerate and
  is left out of every mean.
* Duplicate seeds in a cell (model, pooling, task, train_size): the newest ``results.json``
  (mtime) is kept, the others are skipped as "duplicate seed". Mixing different ``hparams`` in one
  cell (after removing duplicates) is refused unless ``--allow-mixed``; runs without ``hparams``
  never conflict.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import warnings
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from maxpoolbert import rundir, selection
from maxpoolbert.errors import EXIT_CODE, UserError, check_writable_folder

# --------------------------------------------------------------------------- constants

# task -> (display name, metrics in display order, short metric label); dict order = GLUE order.
TASKS: dict[str, tuple[str, tuple[str, ...], str]] = {
    "cola": ("CoLA", ("mcc",), "MCC"),
    "sst2": ("SST-2", ("accuracy",), "acc"),
    "mrpc": ("MRPC", ("f1", "accuracy"), "F1/acc"),
    "stsb": ("STS-B", ("pearson", "spearman"), "P/S"),
    "qqp": ("QQP", ("f1", "accuracy"), "F1/acc"),
    "mnli": ("MNLI", ("accuracy_m", "accuracy_mm"), "m/mm"),
    "qnli": ("QNLI", ("accuracy",), "acc"),
    "rte": ("RTE", ("accuracy",), "acc"),
    "wnli": ("WNLI", ("accuracy",), "acc"),
}
ALL_METRICS: tuple[str, ...] = tuple(dict.fromkeys(m for _, ms, _ in TASKS.values() for m in ms))
# Size of the official GLUE training sets: where "full" sits on the low-resource x axis.
GLUE_TRAIN_SIZE = {
    "cola": 8551, "sst2": 67349, "mrpc": 3668, "stsb": 5749, "qqp": 363846,
    "mnli": 392702, "qnli": 104743, "rte": 2490, "wnli": 635,
}
POOLING_ORDER = ("cls", "max_cls", "mha", "maxpool_mha")
BASELINE = "cls"
REQUIRED_KEYS = rundir.RESULT_KEYS  # what makes a results.json a finished run
CELL = selection.CELL
DEGENERATE_TOL = 1e-9
GLUE_AVG = "glue_avg"
DASH = "–"
PRUNE_DIRS = {"wandb", "__pycache__", "lightning_logs", "checkpoints"}
RUN_COLUMNS = [
    "path", "mtime", "model", "pooling", "task", "seed", "train_size", "score",
    *ALL_METRICS, "majority_score", "degenerate", "hparams",
]


class ReportError(Exception):
    """A problem the user must fix (no usable runs): one line, no traceback, exit status 1."""

    exit_code = 1


class MixedHparamsError(ReportError):
    """Different ``hparams`` in one table cell: exit status 2."""

    exit_code = 2


class RunError(ValueError):
    """A results record that cannot be used; the message is the skip reason."""


# --------------------------------------------------------------------------- ordering helpers


def pooling_key(name: str) -> tuple[int, str]:
    """Sort key: cls, max_cls, mha, maxpool_mha, then the rest alphabetically."""
    return (POOLING_ORDER.index(name) if name in POOLING_ORDER else len(POOLING_ORDER), name)


def task_key(name: str) -> int:
    return list(TASKS).index(name)


def size_key(size: Any) -> tuple[int, int]:
    """Sort key for train sizes: the full training set first, then ascending sizes."""
    return (0, 0) if pd.isna(size) else (1, int(size))


SORT_KEYS = {"pooling": pooling_key, "task": task_key, "train_size": size_key}


def _sort(df: pd.DataFrame, by: Sequence[str]) -> pd.DataFrame:
    """Sort rows by the columns ``by`` in report order (pooling, task, train_size keys)."""
    columns = [[SORT_KEYS.get(c, str)(v) for v in df[c]] for c in by]
    order = sorted(range(len(df)), key=lambda i: tuple(col[i] for col in columns))
    return df.iloc[order].reset_index(drop=True)


# --------------------------------------------------------------------------- reading runs


def parse_record(data: Any) -> dict[str, Any]:
    """Validate one results.json payload and flatten it into a run record.

    Raises :class:`RunError` whose message is the reason the run is skipped.
    """
    if not isinstance(data, dict):
        raise RunError("corrupt: results.json is not a JSON object")
    missing = [k for k in REQUIRED_KEYS if k not in data]
    if missing:
        raise RunError(f"corrupt: missing key(s) {', '.join(missing)}")
    task = data["task"]
    if task not in TASKS:
        raise RunError(f"other configuration: unknown task {task!r}")
    metrics = data["metrics"]
    expected = TASKS[task][1]
    if not isinstance(metrics, dict) or any(m not in metrics for m in expected):
        got = ", ".join(metrics) if isinstance(metrics, dict) else type(metrics).__name__
        raise RunError(f"corrupt: {task} needs metrics {', '.join(expected)}, got {got or 'none'}")
    try:
        values = {m: float(metrics[m]) for m in expected}
        score = float(data["score"])
        seed = data["seed"]
        if isinstance(seed, bool) or int(seed) != seed:
            raise ValueError
        train_size = data.get("train_size")
        if train_size is not None and (isinstance(train_size, bool) or int(train_size) != train_size
                                       or train_size <= 0):
            raise ValueError
        majority = data.get("majority_score")
        majority = math.nan if majority is None else float(majority)
    except (TypeError, ValueError):
        raise RunError("corrupt: non-numeric score, metric, seed, train_size or majority_score") from None
    hparams = data.get("hparams")
    if hparams is not None and not isinstance(hparams, dict):
        raise RunError("corrupt: hparams is not a JSON object")
    if not math.isfinite(score) or not all(math.isfinite(v) for v in values.values()):
        degenerate: bool | None = True
        score = math.nan
    elif math.isfinite(majority):
        degenerate = score <= majority + DEGENERATE_TOL
    else:
        degenerate = None
    return {
        "model": str(data["model"]), "pooling": str(data["pooling"]), "task": task,
        "seed": int(seed), "train_size": None if train_size is None else int(train_size),
        "score": score, **values, "majority_score": majority, "degenerate": degenerate,
        "hparams": hparams,
    }


def find_run_dirs(root: Path) -> Iterator[Path]:
    """Yield every folder under ``root`` that looks like a run, in sorted order.

    A run folder has ``results.json``, ``failed.json`` or ``.hydra/config.yaml``. Hidden folders
    and bulky side folders (wandb, checkpoints, ...) are not searched.
    """
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith(".") and d not in PRUNE_DIRS)
        here = Path(dirpath)
        if ("results.json" in filenames or "failed.json" in filenames
                or (here / ".hydra" / "config.yaml").is_file()):
            yield here


def read_failure(run_dir: Path) -> str | None:
    """The failure recorded in ``failed.json`` / ``error.txt``, or None if the run did not fail."""
    failed, error = run_dir / "failed.json", run_dir / "error.txt"
    if failed.is_file():
        try:
            info = json.loads(failed.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            info = None
        if isinstance(info, dict):
            for key in ("error", "message", "reason", "exception"):
                if info.get(key):
                    return _one_line(str(info[key]))
        return "failed.json present"
    if error.is_file():
        try:
            lines = [ln for ln in error.read_text(encoding="utf-8", errors="replace").splitlines()
                     if ln.strip()]
        except OSError:
            lines = []
        return _one_line(lines[-1]) if lines else "error.txt present"
    return None


def _one_line(text: str, limit: int = 120) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def predictions_constant(path: Path) -> bool | None:
    """True when every dev prediction in ``dev_predictions.tsv`` is the same value.

    None when the file is missing or unreadable (degenerate status unknown).
    """
    if not path.is_file():
        return None
    try:
        preds = pd.read_csv(path, sep="\t")["prediction"]
    except (OSError, ValueError, KeyError):
        return None
    return bool(len(preds)) and preds.nunique(dropna=False) <= 1


def records_to_frame(records: Iterable[dict[str, Any]]) -> pd.DataFrame:
    """Run records -> DataFrame with :data:`RUN_COLUMNS` (``train_size`` is nullable Int64)."""
    df = pd.DataFrame(list(records), columns=RUN_COLUMNS)
    df["train_size"] = df["train_size"].astype("Int64")
    df["seed"] = df["seed"].astype("int64")
    df["degenerate"] = df["degenerate"].astype("boolean")
    for col in ("mtime", "score", "majority_score", *ALL_METRICS):
        df[col] = df[col].astype("float64")
    return df


def drop_duplicate_seeds(runs: pd.DataFrame) -> tuple[pd.DataFrame, list[dict[str, str]]]:
    """Keep the newest run (by results.json mtime) per cell and seed; list the others."""
    kept, skipped = [], []
    for _, group in runs.groupby([*CELL, "seed"], dropna=False, sort=False):
        group = group.sort_values(["mtime", "path"], kind="stable")
        newest = group.iloc[-1]
        kept.append(newest)
        for path in group["path"].iloc[:-1]:
            skipped.append({"path": path, "reason": f"duplicate seed {newest['seed']} "
                                                    f"(kept newer {newest['path']})"})
    if not kept:
        return runs, skipped
    result = pd.DataFrame(kept).sort_values("path").reset_index(drop=True)
    return result.astype(runs.dtypes.to_dict()), skipped


def collect_runs(root: str | os.PathLike, by: str | None = None) -> tuple[pd.DataFrame, list[dict[str, str]]]:
    """Read every run under ``root``.

    Returns the usable runs (one row per run, see :data:`RUN_COLUMNS`) and the skipped ones as
    ``{"path", "reason"}`` dicts: failed, incomplete, corrupt, other configuration, duplicate seed,
    and non-finite scores (which stay in the runs as degenerate but out of every mean).
    """
    root = Path(root)
    records, skipped = [], []
    for run_dir in find_run_dirs(root):
        rel = os.path.relpath(run_dir, root)
        failure = read_failure(run_dir)
        if failure is not None:
            skipped.append({"path": rel, "reason": f"failed: {failure}"})
            continue
        results = run_dir / "results.json"
        if not results.is_file():
            skipped.append({"path": rel, "reason": "incomplete: no results.json"})
            continue
        try:
            record = parse_record(json.loads(results.read_text(encoding="utf-8")))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            skipped.append({"path": rel, "reason": f"corrupt: invalid JSON ({_one_line(str(exc), 60)})"})
            continue
        except RunError as exc:
            skipped.append({"path": rel, "reason": str(exc)})
            continue
        if record["degenerate"] is None:
            record["degenerate"] = predictions_constant(run_dir / "dev_predictions.tsv")
        record.update(path=rel, mtime=results.stat().st_mtime)
        records.append(record)
    return _finish_collection(records, skipped, by, root)


def _finish_collection(records: list[dict[str, Any]], skipped: list[dict[str, str]], by: str | None = None,
                       root: Path | None = None):
    """Runs as a frame, duplicates dropped; with ``by`` (``--select KEY``) a seed may appear once
    per value of that key in a cell (column ``_value``)."""
    runs = records_to_frame(records)
    if by is None:
        runs, dups = drop_duplicate_seeds(runs)
    else:
        runs = selection.with_values(runs, by, root)
        parts = [drop_duplicate_seeds(g) for _, g in runs.groupby("_value", dropna=False, sort=True)]
        runs = pd.concat([p[0] for p in parts]).reset_index(drop=True) if parts else runs
        dups = [d for p in parts for d in p[1]]
    skipped = skipped + dups
    for path in runs.loc[runs["score"].isna(), "path"]:
        skipped.append({"path": path,
                        "reason": "non-finite metric (constant predictions?): left out of the "
                                  "means, counted as degenerate"})
    return runs, skipped


# --------------------------------------------------------------------------- W&B


def _plain(value: Any) -> Any:
    """Turn W&B summary/config wrappers into plain dicts (they expose ``_json_dict``)."""
    value = getattr(value, "_json_dict", value)
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


def _lookup(mapping: dict[str, Any], *keys: str) -> Any:
    """First present key; ``a.b`` looks into nested dicts; a dict value yields its ``name``."""
    for key in keys:
        node: Any = mapping
        if key in node:
            node = node[key]
        else:
            for part in key.split("."):
                if not isinstance(node, dict) or part not in node:
                    node = None
                    break
                node = node[part]
        if isinstance(node, dict) and "value" in node and len(node) <= 2:
            node = node["value"]
        if isinstance(node, dict):
            node = node.get("name")
        if node is not None:
            return node
    return None


def wandb_run_to_record(run: Any) -> dict[str, Any]:
    """Map one W&B public-API run to the results.json dict format.

    Identity (task, pooling, model, seed, train_size) comes from ``run.config`` (flat keys, dotted
    keys or nested Hydra groups with a ``name``), falling back to ``run.summary``. Metrics come
    from ``summary["metrics"]`` or from ``metrics/<key>``, ``dev/<key>``, ``val/<key>`` or bare
    ``<key>`` summary entries; ``score`` defaults to the mean of the task's metrics.
    """
    summary, config = _plain(run.summary) or {}, _plain(run.config) or {}
    record: dict[str, Any] = {}
    for key in ("task", "pooling", "model", "seed"):
        value = _lookup(config, key, f"{key}.name")
        record[key] = value if value is not None else _lookup(summary, key)
    size = _lookup(config, "train_size", "data.train_size")
    record["train_size"] = size if size is not None else _lookup(summary, "train_size")
    metrics = summary.get("metrics") if isinstance(summary.get("metrics"), dict) else {}
    metrics = dict(metrics)
    for name in TASKS.get(record["task"], ("", ()))[1]:
        if name not in metrics:
            for key in (f"metrics/{name}", f"dev/{name}", f"val/{name}", name):
                if key in summary:
                    metrics[name] = summary[key]
                    break
    record["metrics"] = metrics
    score = summary.get("score")
    if score is None and metrics:
        score = float(np.mean([float(v) for v in metrics.values()]))
    record["score"] = score
    for key in ("train_samples_per_s", "wall_s", "params", "majority_score"):
        if key in summary:
            record[key] = summary[key]
    hparams = summary.get("hparams", config.get("hparams"))
    if isinstance(hparams, dict):
        record["hparams"] = hparams
    return {k: v for k, v in record.items() if v is not None or k == "train_size"}


def collect_wandb(path: str, api: Any = None, by: str | None = None) -> tuple[pd.DataFrame, list[dict[str, str]]]:
    """Like :func:`collect_runs` for the runs of a W&B project ``ENTITY/PROJECT``.

    ``api`` defaults to ``wandb.Api()`` (imported here, so wandb stays optional).
    """
    try:
        if api is None:
            import wandb

            api = wandb.Api()
        wandb_runs = list(api.runs(path))
    except ImportError:
        raise ReportError("--from-wandb needs the wandb package (pip install wandb)") from None
    except Exception as exc:  # auth, network, unknown project: one line, no traceback
        raise ReportError(f"could not read W&B runs of {path}: {_one_line(str(exc))}") from None
    records, skipped = [], []
    for run in wandb_runs:
        where = f"wandb:{path}/{getattr(run, 'id', '?')}"
        state = getattr(run, "state", "finished")
        if state != "finished":
            kind = "failed" if state in ("failed", "crashed", "killed") else "incomplete"
            skipped.append({"path": where, "reason": f"{kind}: W&B state {state}"})
            continue
        try:
            record = parse_record(wandb_run_to_record(run))
        except RunError as exc:
            skipped.append({"path": where, "reason": str(exc)})
            continue
        summary = _plain(run.summary) or {}
        stamp = summary.get("_timestamp")
        if stamp is None:
            created = pd.to_datetime(getattr(run, "created_at", None), utc=True, errors="coerce")
            stamp = 0.0 if pd.isna(created) else created.timestamp()
        record.update(path=where, mtime=float(stamp))
        records.append(record)
    return _finish_collection(records, skipped, by)


# --------------------------------------------------------------------------- checks


def check_hparams(runs: pd.DataFrame) -> None:
    """Refuse cells whose runs were trained with different ``hparams`` (names keys and cells)."""
    problems = []
    for cell, group in runs.groupby(CELL, dropna=False, sort=False):
        hps = [h for h in group["hparams"] if isinstance(h, dict)]
        if len({json.dumps(h, sort_keys=True) for h in hps}) <= 1:
            continue
        keys = sorted(k for k in set().union(*hps)
                      if len({json.dumps(h.get(k), sort_keys=True) for h in hps}) > 1)
        details = ", ".join(
            f"{k} ({' vs '.join(sorted({json.dumps(h.get(k)) for h in hps}))})" for k in keys)
        model, pooling, task, size = cell
        problems.append(f"model={model} pooling={pooling} task={task} "
                        f"train_size={'full' if pd.isna(size) else size}: {details}")
    if problems:
        more = f" (and {len(problems) - 3} more cells)" if len(problems) > 3 else ""
        raise MixedHparamsError("refusing to mix different hparams in one cell; differing keys in "
                          + "; ".join(problems[:3]) + more
                          + ". Remove the stale runs or pass --allow-mixed.")


# --------------------------------------------------------------------------- tables


def _scored(runs: pd.DataFrame) -> pd.DataFrame:
    return runs[runs["score"].notna()]


def _stats(values: pd.Series) -> pd.Series:
    return pd.Series({"mean": values.mean(), "std": values.std(ddof=1), "n": values.count()})


def summary_table(runs: pd.DataFrame) -> pd.DataFrame:
    """Main-table statistics on the full training set, tidy.

    One row per model, pooling, task, metric (the task's metrics, then ``score``) with mean, std
    (ddof=1, NaN for n=1) and n over seeds, all ×100; plus one ``glue_avg``/``score`` row per model
    and pooling: the mean over its tasks of the per-task mean score, n = number of tasks.
    """
    full = _scored(runs)
    full = full[full["train_size"].isna()]
    rows = []
    for (model, pooling, task), group in full.groupby(["model", "pooling", "task"]):
        for metric in (*TASKS[task][1], "score"):
            rows.append({"model": model, "pooling": pooling, "task": task, "metric": metric,
                         **_stats(group[metric] * 100)})
    table = pd.DataFrame(rows, columns=["model", "pooling", "task", "metric", "mean", "std", "n"])
    scores = table[table["metric"] == "score"]
    for (model, pooling), group in scores.groupby(["model", "pooling"]):
        rows.append({"model": model, "pooling": pooling, "task": GLUE_AVG, "metric": "score",
                     "mean": group["mean"].mean(), "std": math.nan, "n": len(group)})
    table = pd.DataFrame(rows, columns=table.columns)
    table["n"] = table["n"].astype("int64")

    def order(row: pd.Series) -> tuple:
        if row["task"] == GLUE_AVG:
            return (row["model"], pooling_key(row["pooling"]), len(TASKS), 0)
        metrics = (*TASKS[row["task"]][1], "score")
        return (row["model"], pooling_key(row["pooling"]), task_key(row["task"]),
                metrics.index(row["metric"]))

    keys = [order(row) for _, row in table.iterrows()]
    return table.iloc[sorted(range(len(table)), key=keys.__getitem__)].reset_index(drop=True)


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
    return _sort(table, ["model", "train_size", "task", "pooling"])


def low_resource_table(runs: pd.DataFrame) -> pd.DataFrame:
    """Score ×100 (mean, std ddof=1, n) per model, task, pooling and train_size.

    Only tasks with at least one reduced-size run; their full-size runs are included with
    ``train_size`` empty (NA) so each curve ends at "full".
    """
    scored = _scored(runs)
    tasks = set(scored.loc[scored["train_size"].notna(), "task"])
    rows = []
    subset = scored[scored["task"].isin(tasks)]
    for (model, task, pooling, size), group in subset.groupby(
            ["model", "task", "pooling", "train_size"], dropna=False):
        rows.append({"model": model, "task": task, "pooling": pooling, "train_size": size,
                     **_stats(group["score"] * 100)})
    table = pd.DataFrame(rows, columns=["model", "task", "pooling", "train_size", "mean", "std", "n"])
    table["train_size"] = table["train_size"].astype("Int64")
    table["n"] = table["n"].astype("int64")
    return _sort(table, ["model", "task", "pooling", "train_size"])


def degenerate_table(runs: pd.DataFrame) -> pd.DataFrame:
    """Per model, pooling, task, train_size: runs, runs with known status, degenerate runs."""
    rows = []
    for (model, pooling, task, size), group in runs.groupby(CELL, dropna=False):
        known = group["degenerate"].dropna()
        rows.append({"model": model, "pooling": pooling, "task": task, "train_size": size,
                     "n_runs": len(group), "n_known": len(known), "n_degenerate": int(known.sum())})
    table = pd.DataFrame(rows, columns=["model", "pooling", "task", "train_size", "n_runs",
                                        "n_known", "n_degenerate"])
    table["train_size"] = table["train_size"].astype("Int64")
    return _sort(table, ["model", "train_size", "pooling", "task"])


# --------------------------------------------------------------------------- formatting


def fmt(x: float, signed: bool = False) -> str:
    """One decimal, ``–`` for NaN, no negative zero."""
    if x is None or pd.isna(x):
        return DASH
    x = round(float(x), 1) + 0.0
    return f"{x:+.1f}" if signed else f"{x:.1f}"


def fmt_p(p: float) -> str:
    if p is None or pd.isna(p):
        return DASH
    return "<0.001" if p < 0.001 else f"{p:.3f}"


def size_label(size: Any) -> str:
    return "full" if pd.isna(size) else str(int(size))


def task_header(task: str) -> str:
    name, _, label = TASKS[task]
    return f"{name} ({label})"


def cell_parts(stats_rows: pd.DataFrame, task: str) -> tuple[str, str, int]:
    """``(means, stds, n)`` strings of one task cell from its summary rows."""
    by_metric = stats_rows.set_index("metric")
    metrics = TASKS[task][1]
    means = "/".join(fmt(by_metric.at[m, "mean"]) for m in metrics)
    n = int(by_metric.at["score", "n"])
    stds = DASH if n < 2 else "/".join(fmt(by_metric.at[m, "std"]) for m in metrics)
    return means, stds, n


def main_table_blocks(summary: pd.DataFrame) -> tuple[list[str], dict[str, list[list[dict]]], bool]:
    """Lay the summary out as one block of rows per model.

    Returns the task columns, ``{model: rows}`` where each row is a list of cell dicts
    (``means``, ``stds``, ``n``, ``bold``; the first is the pooling name) and whether rows cover
    different task sets (a row's GLUE average is marked with a dagger when it does not cover every
    task column; the average is bolded only among rows of the model covering all its tasks).
    """
    tasks = sorted({t for t in summary["task"] if t != GLUE_AVG}, key=task_key)
    blocks: dict[str, list[list[dict]]] = {}
    mixed_sets = False
    for model, block in summary.groupby("model", sort=True):
        scores = block[block["metric"] == "score"]
        poolings = sorted(set(block["pooling"]), key=pooling_key)
        best = {}
        for task in tasks:
            col = scores[scores["task"] == task]["mean"]
            if len(col) >= 2:
                best[task] = col.max()
        task_sets = {p: set(scores[(scores["pooling"] == p) & (scores["task"] != GLUE_AVG)]["task"])
                     for p in poolings}
        block_tasks = set().union(*task_sets.values())
        comparable = [p for p in poolings if task_sets[p] == block_tasks]
        avg = scores[(scores["task"] == GLUE_AVG) & scores["pooling"].isin(comparable)]["mean"]
        if len(avg) >= 2:
            best[GLUE_AVG] = avg.max()
        rows = []
        for pooling in poolings:
            mine = block[block["pooling"] == pooling]
            row = [{"text": pooling}]
            for task in tasks:
                cell = mine[mine["task"] == task]
                if cell.empty:
                    row.append({"empty": True})
                    continue
                means, stds, n = cell_parts(cell, task)
                mean = cell.loc[cell["metric"] == "score", "mean"].iloc[0]
                row.append({"means": means, "stds": stds, "n": n,
                            "bold": task in best and bool(np.isclose(mean, best[task]))})
            avg_row = mine[mine["task"] == GLUE_AVG]
            partial = task_sets[pooling] != set(tasks)
            mixed_sets |= partial
            if avg_row.empty:
                row.append({"empty": True})
            else:
                mean = avg_row["mean"].iloc[0]
                row.append({"means": fmt(mean), "stds": None, "n": int(avg_row["n"].iloc[0]),
                            "dagger": partial,
                            "bold": GLUE_AVG in best and pooling in comparable
                            and bool(np.isclose(mean, best[GLUE_AVG]))})
            rows.append(row)
        blocks[model] = rows
    return tasks, blocks, mixed_sets


def render_cell(cell: dict, latex: bool = False) -> str:
    """Render a main-table cell as markdown or LaTeX."""
    if "text" in cell:
        return latex_escape(cell["text"]) if latex else f"`{cell['text']}`"
    if cell.get("empty"):
        return "--" if latex else DASH
    means = cell["means"]
    if cell["bold"]:
        means = f"\\textbf{{{means}}}" if latex else f"**{means}**"
    pm = " $\\pm$ " if latex else " ± "
    stds = cell["stds"]
    if stds is None:  # GLUE average
        dagger = ("$^\\dagger$" if latex else " †") if cell.get("dagger") else ""
        return f"{means}{dagger}"
    if latex:
        stds = stds.replace(DASH, "--")
        return f"{means}{pm}{stds} ($n$={cell['n']})"
    return f"{means}{pm}{stds} (n={cell['n']})"


def markdown_table(header: Sequence[str], rows: Iterable[Sequence[str]], left: int = 1) -> str:
    """A GitHub markdown table; the first ``left`` columns left-aligned, the rest right-aligned."""
    lines = ["| " + " | ".join(header) + " |",
             "|" + "|".join([":---"] * left + ["---:"] * (len(header) - left)) + "|"]
    lines += ["| " + " | ".join(str(c).replace("|", "\\|") for c in row) + " |" for row in rows]
    return "\n".join(lines)


LATEX_SPECIALS = {"\\": "\\textbackslash{}", "&": "\\&", "%": "\\%", "$": "\\$", "#": "\\#",
                  "_": "\\_", "{": "\\{", "}": "\\}"}


def latex_escape(text: str) -> str:
    """Escape LaTeX specials in plain text; map –, ±, Δ, × and < to their LaTeX forms."""
    out = "".join(LATEX_SPECIALS.get(ch, ch) for ch in str(text))
    for symbol, tex in ((DASH, "--"), ("±", "$\\pm$"), ("Δ", "$\\Delta$"), ("×", "$\\times$"),
                        ("<", "$<$")):
        out = out.replace(symbol, tex)
    return out


def latex_table(header: Sequence[str], blocks: Sequence[tuple[str | None, list[list[str]]]],
                caption: str, label: str, left: int = 1) -> str:
    """A booktabs table; ``blocks`` are (title, rows) separated by \\midrule. Cells are LaTeX.

    The first ``left`` columns are left-aligned, the rest right-aligned.
    """
    ncol = len(header)
    lines = ["\\begin{table}[t]", "\\centering", "\\small",
             "\\begin{tabular}{" + "l" * left + "r" * (ncol - left) + "}", "\\toprule",
             " & ".join(latex_escape(h) for h in header) + " \\\\", "\\midrule"]
    for i, (title, rows) in enumerate(blocks):
        if i:
            lines.append("\\midrule")
        if title is not None:
            lines.append(f"\\multicolumn{{{ncol}}}{{l}}{{\\textit{{{latex_escape(title)}}}}} \\\\")
        lines += [" & ".join(row) + " \\\\" for row in rows]
    lines += ["\\bottomrule", "\\end{tabular}", f"\\caption{{{caption}}}", f"\\label{{{label}}}",
              "\\end{table}", ""]
    return "\n".join(lines)


def _stat_cell(mean: float, std: float, n: int) -> str:
    return f"{fmt(mean)} ± {fmt(std) if n >= 2 else DASH} (n={n})"


# --------------------------------------------------------------------------- plots


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _colors(poolings: Iterable[str]) -> dict[str, Any]:
    plt = _pyplot()
    cmap = plt.get_cmap("tab10")
    return {p: cmap(i % 10) for i, p in enumerate(sorted(set(poolings), key=pooling_key))}


def _grid(n: int, plt, width: float = 4.6, height: float = 3.6):
    """A constrained-layout figure with ``n`` subplots, at most 3 per row."""
    ncols = min(n, 3)
    nrows = math.ceil(n / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(width * ncols, height * nrows + 1.0),
                             squeeze=False, layout="constrained")
    for ax in axes.flat[n:]:
        ax.set_visible(False)
    return fig, list(axes.flat[:n])


def _task_title(task: str) -> str:
    return f"{TASKS[task][0]} ({TASKS[task][2]})"


def plot_low_resource(low: pd.DataFrame, path: Path) -> bool:
    """Score vs training-set size (log x), one subplot per task; False if there is no data.

    One line per pooling (line style per model), error bars = std over seeds. The full training
    set is the right-most point, placed at the official GLUE training-set size.
    """
    if low.empty or low["train_size"].notna().sum() == 0:
        return False
    plt = _pyplot()
    from matplotlib.ticker import NullLocator

    tasks = sorted(set(low["task"]), key=task_key)
    models = sorted(set(low["model"]))
    colors = _colors(low["pooling"])
    styles = ["-", "--", ":", "-."]
    fig, axes = _grid(len(tasks), plt)
    handles = {}
    for ax, task in zip(axes, tasks, strict=True):
        sub = low[low["task"] == task]
        sizes = sorted(int(s) for s in sub["train_size"].dropna().unique())
        full_x = GLUE_TRAIN_SIZE.get(task, 0)
        if full_x <= sizes[-1]:
            full_x = sizes[-1] * 4
        lines = sorted(sub.groupby(["model", "pooling"]),
                       key=lambda g: (g[0][0], pooling_key(g[0][1])))
        for (model, pooling), line in lines:
            line = _sort(line, ["train_size"])
            x = np.array([full_x if pd.isna(s) else int(s) for s in line["train_size"]])
            order = np.argsort(x)
            label = pooling if len(models) == 1 else f"{model} / {pooling}"
            handles[label] = ax.errorbar(
                x[order], line["mean"].to_numpy()[order],
                yerr=line["std"].fillna(0).to_numpy()[order], marker="o", capsize=3,
                color=colors[pooling], linestyle=styles[models.index(model) % len(styles)])
        has_full = bool(sub["train_size"].isna().any())
        ax.set_xscale("log")
        ax.set_xticks([*sizes, *([full_x] if has_full else [])])
        ax.set_xticklabels([f"{t:,}" for t in sizes] + ([f"full\n({full_x:,})"] if has_full else []))
        ax.xaxis.set_minor_locator(NullLocator())
        ax.set_title(_task_title(task))
        ax.set_xlabel("training examples (log scale)")
        ax.set_ylabel("dev score ×100")
        ax.grid(alpha=0.3)
    entry_width = 0.7 + 0.09 * max(len(label) for label in handles)  # inches, roughly
    ncol = max(1, min(len(handles), int(fig.get_figwidth() // entry_width)))
    fig.legend(list(handles.values()), list(handles), loc="outside lower center", ncol=ncol,
               title="pooling" if len(models) == 1 else "model / pooling")
    fig.suptitle("Low-resource GLUE: mean dev score vs training-set size\n"
                 "(error bars: std over seeds)")
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def plot_stability(runs: pd.DataFrame, path: Path) -> bool:
    """Box plot plus one dot per seed of the full-size scores, one subplot per task.

    Degenerate seeds are red crosses; the majority-class score is a dashed line when it lies
    near the scores (otherwise its value is written in the corner, to keep the boxes readable).
    """
    data = _scored(runs)
    data = data[data["train_size"].isna()]
    if data.empty:
        return False
    plt = _pyplot()
    from matplotlib.lines import Line2D

    tasks = sorted(set(data["task"]), key=task_key)
    models = sorted(set(data["model"]))
    colors = _colors(data["pooling"])
    fig, axes = _grid(len(tasks), plt, width=4.8, height=3.9)
    any_degenerate = any_majority = False
    for ax, task in zip(axes, tasks, strict=True):
        sub = data[data["task"] == task]
        groups = sorted(sub.groupby(["model", "pooling"]),
                        key=lambda g: (g[0][0], pooling_key(g[0][1])))
        values = [g["score"].to_numpy() * 100 for _, g in groups]
        ax.boxplot(values, positions=range(len(values)), widths=0.5, showfliers=False,
                   medianprops={"color": "black"})
        for i, ((_, pooling), g) in enumerate(groups):
            y = g["score"].to_numpy() * 100
            x = i + (np.linspace(-0.12, 0.12, len(y)) if len(y) > 1 else np.zeros(1))
            degen = g["degenerate"].fillna(False).to_numpy(dtype=bool)
            ax.scatter(x[~degen], y[~degen], color=colors[pooling], edgecolor="black",
                       zorder=3, s=28)
            ax.scatter(x[degen], y[degen], color="red", marker="x", zorder=4, s=45)
            any_degenerate |= bool(degen.any())
        majority = sub["majority_score"].dropna()
        note = ""
        if not majority.empty:
            level = majority.mean() * 100
            low, high = min(v.min() for v in values), max(v.max() for v in values)
            if level >= low - max(5.0, 0.5 * (high - low)):
                ax.axhline(level, color="grey", linestyle="--", linewidth=1)
                any_majority = True
            else:
                note = f"\nmajority-class score {level:.1f}: far below, not drawn"
        ax.set_xticks(range(len(groups)))
        ax.set_xticklabels([p if len(models) == 1 else f"{m}\n{p}" for (m, p), _ in groups],
                           rotation=20, ha="right")
        ax.set_title(_task_title(task) + note, fontsize=10 if note else None)
        ax.set_xlabel("pooling")
        ax.set_ylabel("dev score ×100")
        ax.grid(axis="y", alpha=0.3)
    legend = [Line2D([], [], marker="o", color="grey", markeredgecolor="black", linestyle="",
                     label="one seed")]
    if any_degenerate:
        legend.append(Line2D([], [], marker="x", color="red", linestyle="",
                             label="degenerate seed (≤ majority class)"))
    if any_majority:
        legend.append(Line2D([], [], color="grey", linestyle="--", label="majority-class score"))
    fig.legend(handles=legend, loc="outside lower center", ncol=len(legend))
    fig.suptitle("Seed stability on the full training set\n(boxes: quartiles over seeds)")
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


# --------------------------------------------------------------------------- writers


def main_table_markdown(summary: pd.DataFrame) -> str:
    if summary.empty:
        return "_No full-training-set runs._"
    tasks, blocks, mixed = main_table_blocks(summary)
    header = ["Pooling", *(task_header(t) for t in tasks), "GLUE avg"]
    parts = []
    for model, rows in blocks.items():
        parts.append(f"### Model `{model}`\n\n"
                     + markdown_table(header, [[render_cell(c) for c in r] for r in rows]))
    if mixed:
        parts.append(f"† Rows cover different task sets: the GLUE average of a row marked † is over "
                     f"only the tasks it has (columns: {', '.join(TASKS[t][0] for t in tasks)}); "
                     f"averages are bolded only against rows of the same model with the same tasks.")
    return "\n\n".join(parts)


def main_table_latex(summary: pd.DataFrame) -> str:
    tasks, blocks, mixed = main_table_blocks(summary)
    header = ["Pooling", *(task_header(t) for t in tasks), "GLUE avg"]
    caption = ("GLUE dev results ($\\times$100), mean $\\pm$ sample std over seeds ($n$ seeds). "
               "MRPC/QQP: F1/acc, STS-B: Pearson/Spearman, MNLI: m/mm. Bold: best mean per column.")
    if mixed:
        caption += " $^\\dagger$Average over the tasks the row has."
    return latex_table(header, [(m, [[render_cell(c, latex=True) for c in r] for r in rows])
                                for m, rows in blocks.items()], caption, "tab:glue-main")


def _difference_rows(diff: pd.DataFrame, latex: bool = False) -> list[list[str]]:
    rows = []
    for _, r in diff.iterrows():
        cells = [r["model"], size_label(r["train_size"]), TASKS[r["task"]][0], r["pooling"],
                 fmt(r["mean_diff"], signed=True), str(r["n_pairs"]), fmt_p(r["ttest_p"]),
                 fmt_p(r["wilcoxon_p"])]
        if latex:
            cells = [latex_escape(c) for c in cells]
        else:
            cells[3] = f"`{cells[3]}`"
        rows.append(cells)
    return rows


DIFF_HEADER = ["Model", "Train size", "Task", "Pooling", f"Δ vs {BASELINE} (×100)", "Pairs",
               "t-test p", "Wilcoxon p"]


def _low_resource_wide(low: pd.DataFrame, markdown: bool = True) -> tuple[list[str], list[list[str]]]:
    """Low-resource table laid out wide: one row per model, task, pooling; one column per size."""
    sizes = sorted({int(s) for s in low["train_size"].dropna()})
    has_full = low["train_size"].isna().any()
    header = ["Model", "Task", "Pooling", *(f"{s:,}" for s in sizes), *(["full"] if has_full else [])]
    rows = []
    for (model, task, pooling), g in _sort(low, ["model", "task", "pooling"]).groupby(
            ["model", "task", "pooling"], sort=False):
        cells = {size_label(r["train_size"]): _stat_cell(r["mean"], r["std"], r["n"])
                 for _, r in g.iterrows()}
        rows.append([model, TASKS[task][0], f"`{pooling}`" if markdown else pooling,
                     *(cells.get(str(s), DASH) for s in sizes),
                     *([cells.get("full", DASH)] if has_full else [])])
    return header, rows


def _degenerate_markdown(degen: pd.DataFrame) -> str:
    if degen.empty:
        return "_No runs._"
    tasks = sorted(set(degen["task"]), key=task_key)
    rows = []
    for (model, size, pooling), g in degen.groupby(["model", "train_size", "pooling"],
                                                   dropna=False, sort=False):
        cells = {}
        for _, r in g.iterrows():
            unknown = r["n_runs"] - r["n_known"]
            cells[r["task"]] = f"{r['n_degenerate']}/{r['n_runs']}" + (
                f" ({unknown} unknown)" if unknown else "")
        rows.append([model, size_label(size), f"`{pooling}`", *(cells.get(t, DASH) for t in tasks)])
    return markdown_table(["Model", "Train size", "Pooling", *(TASKS[t][0] for t in tasks)], rows,
                          left=3)


def write_report(runs: pd.DataFrame, skipped: list[dict[str, str]], out: Path, source: str,
                 preface: Sequence[str] = ()) -> None:
    """Compute every table and plot and write all report files into ``out``; ``preface``:
    markdown sections put before the main results (the model selection, when there is one)."""
    out.mkdir(parents=True, exist_ok=True)
    summary = summary_table(runs)
    diff = difference_table(runs)
    low = low_resource_table(runs)
    degen = degenerate_table(runs)
    skipped_df = pd.DataFrame(skipped, columns=["path", "reason"])

    summary.to_csv(out / "results.csv", index=False)
    diff.to_csv(out / "differences.csv", index=False)
    low.to_csv(out / "low_resource.csv", index=False)
    degen.to_csv(out / "degenerate.csv", index=False)
    skipped_df.to_csv(out / "skipped.csv", index=False)

    plots = {}
    for name, plot, data in (("low_resource.png", plot_low_resource, low),
                             ("stability.png", plot_stability, runs)):
        plots[name] = plot(data, out / name)
        if not plots[name]:
            (out / name).unlink(missing_ok=True)  # never leave a stale plot behind

    md = [
        "# GLUE results",
        f"Source: `{source}` — {len(runs)} run(s) used, {len(skipped)} skipped (see the end).",
        "All numbers are dev-set scores ×100. Cells: mean ± sample std over seeds (ddof=1; `–` when "
        "n=1) with the number of seeds n. MRPC/QQP show F1/accuracy, STS-B Pearson/Spearman, MNLI "
        "matched/mismatched, each metric with its own std. Bold: best mean task score (mean of the "
        "task's metrics) per column within a model. GLUE avg: mean over tasks of the per-task mean "
        "score.",
        *preface,
        "## Main results (full training set)",
        "Runs with a reduced `train_size` are only in the low-resource section. Duplicate seeds "
        "in a cell keep the newest results.json.",
        main_table_markdown(summary),
        f"## Differences vs `{BASELINE}`",
        "Δ is the mean over paired seeds of (pooling − cls) score ×100; runs are paired by model, "
        "task, train size and seed. p-values: paired t-test (`scipy.stats.ttest_rel`) and Wilcoxon "
        "signed-rank (`scipy.stats.wilcoxon`); `–` with fewer than 2 pairs or all differences zero.",
        markdown_table(DIFF_HEADER, _difference_rows(diff), left=4) if not diff.empty
        else f"_No cell has both `{BASELINE}` and another pooling._",
        "## Low-resource results",
    ]
    if low.empty:
        md.append("_No runs with a reduced train_size: table and plot skipped._")
    else:
        md.append("Mean dev score ×100 ± std over seeds by number of training examples.")
        md.append(markdown_table(*_low_resource_wide(low), left=3))
        md.append("![Score vs training-set size](low_resource.png)")
    md.append("## Seed stability")
    if plots["stability.png"]:
        md.append("![Spread of scores over seeds](stability.png)")
    else:
        md.append("_No full-training-set runs: stability plot skipped._")
    md.append(f"Degenerate runs (dev score ≤ majority-class score + {DEGENERATE_TOL:g}; without "
              "majority_score: all dev predictions identical; non-finite scores count as "
              "degenerate), as degenerate/runs per cell:")
    md.append(_degenerate_markdown(degen))
    md.append("## Skipped runs")
    md.append(markdown_table(["Path", "Reason"], [[f"`{s['path']}`", s["reason"]] for s in skipped],
                             left=2)
              if skipped else "None.")
    (out / "results.md").write_text("\n\n".join(md) + "\n", encoding="utf-8")

    tex = ["% Generated by python -m maxpoolbert.report; needs \\usepackage{booktabs}.", ""]
    if not summary.empty:
        tex.append(main_table_latex(summary))
    if not diff.empty:
        tex.append(latex_table(DIFF_HEADER, [(None, _difference_rows(diff, latex=True))],
                               f"Difference to {BASELINE} pooling ($\\times$100), paired by seed.",
                               "tab:glue-diff", left=4))
    if not low.empty:
        header, rows = _low_resource_wide(low, markdown=False)
        tex.append(latex_table(header, [(None, [[latex_escape(c) for c in r] for r in rows])],
                               "Low-resource dev scores ($\\times$100), mean $\\pm$ std over seeds.",
                               "tab:glue-low", left=3))
    (out / "results.tex").write_text("\n".join(tex), encoding="utf-8")


# --------------------------------------------------------------------------- CLI


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m maxpoolbert.report", description=__doc__.split("\n")[0])
    parser.add_argument("--runs", default=os.environ.get("RUNS", "outputs"),
                        help="folder searched recursively for results.json (default: $RUNS or outputs)")
    parser.add_argument("--out", default="reports", help="output folder (default: reports)")
    parser.add_argument("--from-wandb", metavar="ENTITY/PROJECT",
                        help="read run summaries from W&B instead of --runs")
    parser.add_argument("--allow-mixed", action="store_true",
                        help="allow different hparams within one table cell")
    parser.add_argument("--select", metavar="KEY",
                        help="per cell, report only the value of KEY (e.g. optimizer.lr) with the best mean dev "
                             "score over seeds; writes selection.csv")
    parser.add_argument("--select-on", choices=selection.MODES, default="all",
                        help="all: choose and report on every dev row (optimistic); half: choose on even-index "
                             "dev rows, report odd-index rows only (honest)")
    return parser.parse_args(argv)


def apply_selection(runs: pd.DataFrame, args: argparse.Namespace, root: Path | None):
    """``--select``: the chosen runs, the selection table and the report's selection section."""
    chosen = selection.select(runs, args.select, args.select_on, root)
    section = ["## Model selection", selection.describe(args.select, args.select_on),
               selection.chosen_markdown(chosen.table, args.select),
               "Each cell: chosen value (its mean selection score ×100 over n seeds); every candidate is in "
               "`selection.csv`."]
    section += [f"Note: {note}" for note in chosen.notes]
    return chosen, section


def main(argv: Sequence[str] | None = None) -> int:
    """CLI entry point; returns the exit status (0 ok, 1 no usable runs, 2 mixed hparams, no
    ``--runs`` folder or an unwritable ``--out``)."""
    args = parse_args(argv)
    try:
        check_writable_folder(args.out, "--out")
        if not args.from_wandb and not Path(args.runs).is_dir():
            raise UserError("no runs found: not a folder", key="--runs", value=args.runs,
                            allowed="a folder with run folders (results.json) anywhere below it")
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_CODE
    try:
        if args.from_wandb:
            source = f"wandb:{args.from_wandb}"
            runs, skipped = collect_wandb(args.from_wandb, by=args.select)
        else:
            source = args.runs
            runs, skipped = collect_runs(args.runs, by=args.select)
        if runs.empty:
            example = (f" ({len(skipped)} skipped, e.g. {skipped[0]['path']}: "
                       f"{skipped[0]['reason']})") if skipped else ""
            raise ReportError(f"no usable runs found in {source}{example}")
        preface: list[str] = []
        chosen = None
        if args.select:
            chosen, preface = apply_selection(runs, args, None if args.from_wandb else Path(args.runs))
            runs = chosen.runs
        if not args.allow_mixed:
            check_hparams(runs)
    except selection.SelectionError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except ReportError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    out = Path(args.out)
    write_report(runs, skipped, out, source, preface)
    if chosen is not None:
        chosen.table.to_csv(out / "selection.csv", index=False)
    print(f"report: {len(runs)} run(s) used, {len(skipped)} skipped -> {out / 'results.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
