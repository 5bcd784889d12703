"""Reading runs: run folders and results.json (or W&B summaries) into run records, duplicate
seeds and the hparams check."""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from maxpoolbert import rundir, selection
from maxpoolbert.tasks import BENCHMARKS, config_info, metrics_label

REQUIRED_KEYS = rundir.RESULT_KEYS  # what makes a results.json a finished run
CELL = selection.CELL
DEGENERATE_TOL = 1e-9
PRUNE_DIRS = {"wandb", "__pycache__", "lightning_logs", "checkpoints"}
# The columns of every run frame; the metric columns (one per metric key of the runs' tasks,
# e.g. accuracy, f1, pearson) follow them.
RUN_COLUMNS = [
    "path", "mtime", "model", "pooling", "task", "seed", "train_size", "score",
    "majority_score", "degenerate", "hparams", "n_train", "n_train_full", "task_info",
]


class ReportError(Exception):
    """A problem the user must fix (no usable runs): one line, no traceback, exit status 1."""

    exit_code = 1


class MixedHparamsError(ReportError):
    """Different ``hparams`` in one table cell: exit status 2."""

    exit_code = 2


class RunError(ValueError):
    """A results record that cannot be used; the message is the skip reason."""


# --------------------------------------------------------------------------- tasks


@dataclass(frozen=True)
class TaskInfo:
    """What the tables know about a task: results.json's ``task_info`` (see DESIGN.md)."""

    name: str
    display_name: str
    benchmark: str          # glue, superglue, custom, ...
    benchmark_name: str     # GLUE, SuperGLUE, Custom: names the benchmark's average column
    metrics: tuple[str, ...]  # metric keys in display order: ("f1", "accuracy")
    order: int              # column position within its benchmark

    @property
    def label(self) -> str:
        """Short metric label for headers: ``F1/acc``, ``P/S``, ``m/mm``."""
        return metrics_label(self.metrics)

    @property
    def header(self) -> str:
        return f"{self.display_name} ({self.label})"

    @property
    def sort_key(self) -> tuple:
        """Column order: benchmark (glue, superglue, custom, then others alphabetically), then
        ``order``, then name."""
        return (benchmark_key(self.benchmark), self.order, self.name)


def benchmark_key(benchmark: str) -> tuple[int, str]:
    known = list(BENCHMARKS)
    return (known.index(benchmark) if benchmark in known else len(known), benchmark)


def task_of(data: dict[str, Any]) -> TaskInfo:
    """The run's :class:`TaskInfo`: results.json's ``task_info``, or for a run written before it
    existed the project's ``configs/task/<name>.yaml`` (:func:`maxpoolbert.rundir.task_info`).

    Raises :class:`RunError` for an unknown task or a malformed ``task_info``.
    """
    info = rundir.task_info(data)
    if info is None:
        raise RunError(f"other configuration: unknown task {data['task']!r}")
    try:
        metrics, order = info["metrics"], info["order"]
        if isinstance(metrics, str) or not all(isinstance(m, str) for m in metrics):
            raise ValueError
        if isinstance(order, bool) or int(order) != order:
            raise ValueError
        task = TaskInfo(name=str(data["task"]), display_name=str(info["display_name"]),
                        benchmark=str(info["benchmark"]), benchmark_name=str(info["benchmark_name"]),
                        metrics=tuple(metrics), order=int(order))
    except (TypeError, ValueError, KeyError):
        raise RunError("corrupt: task_info needs display_name, benchmark, benchmark_name, a list "
                       "of metric names and an integer order") from None
    if not task.metrics:
        raise RunError(f"corrupt: task {task.name!r} names no metrics")
    clash = [m for m in task.metrics if m in RUN_COLUMNS]
    if clash:
        raise RunError(f"corrupt: metric name {clash[0]!r} is reserved")
    return task


def tasks_of(runs: pd.DataFrame) -> dict[str, TaskInfo]:
    """``{task: TaskInfo}`` of the tasks in ``runs``, in column order; a task whose runs disagree
    (written by different versions) takes the newest run's description."""
    newest = runs.sort_values(["mtime", "path"], kind="stable").drop_duplicates("task", keep="last")
    return {t.name: t for t in sorted(newest["task_info"], key=lambda t: t.sort_key)}


def metric_columns(runs: pd.DataFrame) -> list[str]:
    """The metric columns of a run frame: every metric key of its runs' tasks."""
    return list(dict.fromkeys(m for t in runs["task_info"] for m in t.metrics))


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
    info = task_of(data)
    task, expected = info.name, info.metrics
    metrics = data["metrics"]
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
        "hparams": hparams, "n_train": _count(data.get("n_train")),
        "n_train_full": _count(data.get("n_train_full")), "task_info": info,
    }


def _count(value: Any) -> int | None:
    """A positive row count, or None (missing or not a count: these only place the "full" point
    of the low-resource plot, so a bad one is ignored rather than skipping the run)."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return None
    return int(value) if value == int(value) and value > 0 else None


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
    """Run records -> DataFrame with :data:`RUN_COLUMNS`, then one float column per metric key of
    the runs' tasks (NaN for runs of tasks without it); counts are nullable Int64."""
    records = list(records)
    metrics = list(dict.fromkeys(m for r in records for m in r["task_info"].metrics))
    df = pd.DataFrame(records, columns=[*RUN_COLUMNS, *metrics])
    for col in ("train_size", "n_train", "n_train_full"):
        df[col] = df[col].astype("Int64")
    df["seed"] = df["seed"].astype("int64")
    df["degenerate"] = df["degenerate"].astype("boolean")
    for col in ("mtime", "score", "majority_score", *metrics):
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
    ``<key>`` summary entries; ``score`` defaults to the mean of the task's metrics. The task's
    description (``task_info``) comes from the summary, or from the run's task config when it
    names its benchmark, or else (see :func:`task_of`) from the project's task configs.
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
    info = _wandb_task_info(summary, config)
    if info is not None:
        record["task_info"] = info
    known = rundir.task_info(record) if record["task"] is not None else None
    for name in (known or {}).get("metrics") or ():
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
    for key in ("train_samples_per_s", "wall_s", "params", "majority_score", "n_train", "n_train_full"):
        if key in summary:
            record[key] = summary[key]
    hparams = summary.get("hparams", config.get("hparams"))
    if isinstance(hparams, dict):
        record["hparams"] = hparams
    return {k: v for k, v in record.items() if v is not None or k == "train_size"}


def _wandb_task_info(summary: dict[str, Any], config: dict[str, Any]) -> dict[str, Any] | None:
    """``task_info`` from a W&B summary, or built from the run's task config (``config["task"]``,
    as :meth:`maxpoolbert.tasks.Task.info` does) when that names its benchmark."""
    if isinstance(summary.get("task_info"), dict):
        return summary["task_info"]
    node = config.get("task")
    if not isinstance(node, dict) or "benchmark" not in node:
        return None
    try:
        return config_info(node)
    except (AttributeError, TypeError):  # not the shape of a task config
        return None


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
