"""Reading runs: run folders (or W&B runs) into a frame of run records, duplicate seeds, and the
rule that a table cell holds one experiment.

A cell (model, task, pooling, train size) holds the runs of one ``settings_id``
(:mod:`maxpoolbert.runs.folder`: the whole resolved config minus the keys that do not change what a
run computes). Runs of a cell whose settings differ are different experiments: they are never
taken for duplicate seeds of each other and never averaged together. The report refuses them in
one line naming every differing key with its values (:func:`check_settings`), or, asked to
(``--split-settings``), shows each as its own row labelled by its differing keys. ``--select KEY``
and ``--ignore KEY`` take a key out of the identity (a searched key; a setting a later version
added).
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from maxpoolbert.core.metrics import ranges as metric_ranges
from maxpoolbert.runs import folder as run_folder
from maxpoolbert.runs import identity
from maxpoolbert.runs.folder import RunFolder, find_run_folders
from maxpoolbert.runs.from_wandb import payload_from_wandb, wandb_plain
from maxpoolbert.runs.identity import UNSET, completed
from maxpoolbert.runs.record import RecordError, RunRecord
from maxpoolbert.tasks.task import TaskInfo

MISSING = object()
BASELINE = "cls"   # the pooling every other one is compared with (--baseline pooling=NAME)
CELL = ["model", "pooling", "task", "train_size"]  # a table cell
DEGENERATE_TOL = 1e-9
# The columns of every run frame; the metric columns (one per metric key of the runs' tasks,
# e.g. accuracy, f1, pearson) follow them. ``identity``: the settings_id the report groups by
# (the record's, or recomputed without the --select/--ignore keys). ``versions``, ``device``,
# ``hardware`` and ``weights_sha256`` are what the record says of the run's environment (the report's
# protocol block); empty dicts / None for records without them.
RUN_COLUMNS = [
    "path", "mtime", "model", "pooling", "task", "seed", "train_size", "score",
    "majority_score", "degenerate", "settings", "settings_id", "identity", "n_train", "n_train_full",
    "task_info", "versions", "device", "hardware", "weights_sha256", "eval_data",
]
# ``eval_data``: what each dev split was scored on, ``{split: [rows, labels_sha256 or None]}`` (the
# record's n_dev and dev_data; {} when it records neither): runs scored on other data never share a cell.
# A metric's range: scores outside it are damaged records (52.7 for an accuracy: percent, not a fraction)
METRIC_RANGES = metric_ranges()


class ReportError(Exception):
    """A problem the user must fix (no usable runs): one line, no traceback, exit status 1."""

    exit_code = 1


class MixedSettingsError(ReportError):
    """Runs with different settings in one table cell: exit status 2."""

    exit_code = 2


class SelectionError(Exception):
    """Bad ``--select`` input: one line, exit status 2."""


class RunError(ValueError):
    """A run that cannot be used; the message is the skip reason."""


# --------------------------------------------------------------------------- tasks


def tasks_of(runs: pd.DataFrame) -> dict[str, TaskInfo]:
    """``{task: TaskInfo}`` of the tasks in ``runs``, in column order; a task whose runs disagree
    (written by different versions) takes the newest run's description."""
    newest = runs.sort_values(["mtime", "path"], kind="stable").drop_duplicates("task", keep="last")
    return {t.name: t for t in sorted(newest["task_info"], key=lambda t: t.sort_key)}


def metric_columns(runs: pd.DataFrame) -> list[str]:
    """The metric columns of a run frame: every metric key of its runs' tasks."""
    return list(dict.fromkeys(m for t in runs["task_info"] for m in t.metrics))


# --------------------------------------------------------------------------- reading runs


def row_of(record: RunRecord) -> dict[str, Any]:
    """One run record as a row of the run frame (scores as fractions; NaN where undefined).

    Raises :class:`RunError` (the skip reason) for a run whose task is unknown or malformed."""
    info = record.task_info
    if info is None:
        raise RunError(f"other configuration: unknown task {record.task!r}")
    clash = [m for m in info.metrics if m in RUN_COLUMNS]
    if clash:
        raise RunError(f"corrupt: metric name {clash[0]!r} is reserved")
    values = {m: record.metrics[m] for m in info.metrics}
    check_ranges(record, values)
    score = record.score
    majority = math.nan if record.majority_score is None else record.majority_score
    if not math.isfinite(score) or not all(math.isfinite(v) for v in values.values()):
        degenerate: bool | None = True
        score = math.nan
    elif math.isfinite(majority):
        degenerate = score <= majority + DEGENERATE_TOL
    else:
        degenerate = None
    return {
        "model": record.model, "pooling": record.pooling, "task": record.task, "seed": record.seed,
        "train_size": record.train_size, "score": score, **values, "majority_score": majority,
        "degenerate": degenerate, "settings": record.settings, "settings_id": record.settings_id,
        "identity": record.settings_id, "n_train": record.n_train, "n_train_full": record.n_train_full,
        "task_info": info, "versions": _mapping(record.versions), "device": record.device,
        "hardware": _mapping(record.hardware), "weights_sha256": record.weights_sha256,
        "eval_data": eval_data(record),
    }


def check_ranges(record: RunRecord, values: dict[str, float]) -> None:
    """:class:`RunError` for a metric or score outside its range (a damaged record)."""
    names = {key: name for split in record.eval_metrics().values() for key, name in split.items()}
    for key, value in [*values.items(), ("score", record.score)]:
        low, high = METRIC_RANGES.get(names.get(key, key), (-1.0, 1.0))  # a score: a mean of metrics
        if math.isfinite(value) and not low <= value <= high:
            hint = " (a percentage instead of a fraction?)" if high < abs(value) <= 100 * high else ""
            raise RunError(f"corrupt: {key} {value:g} outside its range [{low:g}, {high:g}]{hint}")


def eval_data(record: RunRecord) -> dict[str, list]:
    """``{split: [rows, labels_sha256 or None]}``: the data each dev split was scored on, as far as
    the record says (:data:`RUN_COLUMNS`)."""
    out = {}
    for split, rows in sorted(record.n_dev.items()):
        kept = record.dev_data.get(split) if isinstance(record.dev_data, dict) else None
        out[str(split)] = [rows, kept.get("labels_sha256") if isinstance(kept, dict) else None]
    return out


def data_differences(group: pd.DataFrame) -> str | None:
    """How the runs of ``group`` differ in the data they were scored on (row counts, or the labels'
    fingerprints where both keep one), in words; None when they do not (or cannot be told apart)."""
    known = [d for d in group["eval_data"] if d]
    rows = sorted({json.dumps({s: v[0] for s, v in d.items()}, sort_keys=True) for d in known})
    if len(rows) > 1:
        return "dev rows " + " vs ".join(", ".join(f"{s}: {n}" for s, n in json.loads(r).items()) for r in rows)
    hashes = sorted({json.dumps({s: v[1] for s, v in d.items()}, sort_keys=True) for d in known
                     if all(v[1] for v in d.values())})
    if len(hashes) > 1:
        return "dev labels " + " vs ".join(", ".join(f"{s}: {h[:12]}" for s, h in json.loads(x).items()) for x in hashes)
    return None


def data_label(data: dict[str, list]) -> str:
    """A run's evaluation data, as a row label: ``dev rows=200 labels=1a2b3c4d5e6f``."""
    if not data:
        return "dev data unknown"
    return "; ".join(f"{s} rows={v[0]}" + (f" labels={v[1][:12]}" if v[1] else "") for s, v in data.items())


def _mapping(value: Any) -> dict[str, Any]:
    return dict(value) if isinstance(value, dict) else {}


def parse_record(data: Any, config: Any = None) -> dict[str, Any]:
    """A results.json payload (or a W&B run's) as a run-frame row; :class:`RunError` with the skip
    reason when it cannot be used."""
    try:
        record = RunRecord.from_json(data, config)
    except RecordError as err:
        raise RunError(err.reason) from None
    return row_of(record)


def predictions_constant(folder: RunFolder) -> bool | None:
    """True when every dev prediction of the run is the same value; None when they cannot be read
    (degenerate status unknown)."""
    try:
        preds = folder.predictions()["prediction"]
    except (OSError, ValueError, KeyError):
        return None
    return bool(len(preds)) and preds.nunique(dropna=False) <= 1


def records_to_frame(records: Iterable[dict[str, Any]]) -> pd.DataFrame:
    """Run rows -> DataFrame with :data:`RUN_COLUMNS`, then one float column per metric key of
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


def collect_runs(root: str | os.PathLike, by: str | None = None, ignore: Sequence[str] = (),
                 split: bool = False, compare: Sequence[str] = ()) -> tuple[pd.DataFrame, list[dict[str, str]]]:
    """Read every run under ``root``.

    Returns the usable runs (one row per run, see :data:`RUN_COLUMNS`) and the skipped ones as
    ``{"path", "reason"}`` dicts: failed, incomplete, corrupt, other configuration, duplicate seed,
    and non-finite scores (which stay in the runs as degenerate but out of every mean). ``by``
    (``--select KEY``) and ``ignore`` are taken out of the runs' identity; ``split`` shows runs of
    different settings in one cell as separate rows instead of refusing them.
    """
    root = Path(root)
    rows, skipped = [], []
    for folder in find_run_folders(root):
        rel = os.path.relpath(folder.path, root)
        failure = folder.failure()
        if failure is not None:
            skipped.append({"path": rel, "reason": f"failed: {failure}"})
            continue
        record, problem = folder.read()
        if record is None:
            reason = problem.reason if problem else f"incomplete: no {folder.results.name}"
            skipped.append({"path": rel, "reason": reason})
            continue
        try:
            row = row_of(record)
        except RunError as exc:
            skipped.append({"path": rel, "reason": str(exc)})
            continue
        if row["degenerate"] is None:
            row["degenerate"] = predictions_constant(folder)
        row.update(path=rel, mtime=folder.results.stat().st_mtime)
        rows.append(row)
    return finish_collection(rows, skipped, by, ignore, split, root, compare)


def finish_collection(rows: list[dict[str, Any]], skipped: list[dict[str, str]], by: str | None = None,
                      ignore: Sequence[str] = (), split: bool = False, root: Path | None = None,
                      compare: Sequence[str] = ()):
    """Runs as a frame: identities without ``by``/``ignore``/``compare``, each compared key a factor
    (:func:`with_factors`: a column and a label on the row), duplicates dropped (same cell, identity,
    seed and, with ``by``, value; refused when ``ignore`` would make runs of different settings one
    seed's duplicates), runs of different settings in one cell refused (:class:`MixedSettingsError`)
    or, with ``split``, labelled as their own rows (their differing keys become factors too, so that
    each settings group keeps its comparisons)."""
    runs = records_to_frame(rows)
    complete_settings(runs)
    keys = [k for k in dict.fromkeys(compare) if k != "pooling"]
    dropped = [*(() if by is None else (by,)), *ignore, *keys]
    runs["identity"] = [identity.settings_id({k: v for k, v in s.items() if k not in dropped})
                        for s in runs["settings"]]
    if by is not None:
        runs = with_values(runs, by)
    runs["_pooling"] = runs["pooling"]
    runs = with_factors(runs, keys)
    if split:
        runs = label_data(runs)
        runs = with_factors(runs, [k for k in split_keys(runs) if k not in keys], context_only=True)
    check_settings(runs)
    runs, dups = drop_duplicate_seeds(runs, ignore)
    skipped = skipped + dups
    for path in runs.loc[runs["score"].isna(), "path"]:
        skipped.append({"path": path,
                        "reason": "non-finite metric (constant predictions?): left out of the "
                                  "means, counted as degenerate"})
    return runs, skipped


def complete_settings(runs: pd.DataFrame) -> None:
    """Make the settings of one cell's runs comparable when different versions recorded them: a key
    some runs lack is added to theirs at the value it has when missing (a Trainer flag: Lightning's
    default; a setting of ``configs/config.yaml``: its default there, what the older version
    computed; else ``<unset>``, which differs from any value). Runs recorded by one version are
    unchanged (their ``settings_id`` is their identity)."""
    for _, group in runs.groupby(CELL, dropna=False, sort=False):
        keys = set().union(*group["settings"])
        for i in group.index:
            if keys - set(runs.at[i, "settings"]):
                runs.at[i, "settings"] = completed(runs.at[i, "settings"], keys)


def drop_duplicate_seeds(runs: pd.DataFrame, ignore: Sequence[str] = ()) -> tuple[pd.DataFrame, list[dict[str, str]]]:
    """Keep the newest run (by results.json mtime) per cell, identity, searched value and seed; list
    the others: only runs that computed the same thing are duplicates. Runs that ``ignore`` (``--ignore
    KEY``) alone made one seed's duplicates, though their values of those keys differ, are refused in
    one line naming them (:class:`MixedSettingsError`): dropping one would lose a run in silence."""
    keys = [*CELL, "identity", *(["_value"] if "_value" in runs else []), "seed"]
    kept, skipped = [], []
    for _, group in runs.groupby(keys, dropna=False, sort=False):
        group = group.sort_values(["mtime", "path"], kind="stable")
        clash = _ignored_differences(group, ignore)
        if clash:
            key, (a, path_a), (b, path_b) = clash
            raise MixedSettingsError(
                f"--ignore {key} would make runs of different settings duplicates of seed {group['seed'].iloc[0]}: "
                f"{path_a} ({key}={identity.show(a)}) and {path_b} ({key}={identity.show(b)}); compare them "
                f"(--compare {key}) or show them as rows (--split-settings) instead")
        newest = group.iloc[-1]
        kept.append(newest)
        for path in group["path"].iloc[:-1]:
            skipped.append({"path": path, "reason": f"duplicate seed {newest['seed']} of the same settings "
                                                    f"{newest['identity']} (kept newer {newest['path']})"})
    if not kept:
        return runs, skipped
    result = pd.DataFrame(kept).sort_values("path").reset_index(drop=True)
    return result.astype(runs.dtypes.to_dict()), skipped


def _ignored_differences(group: pd.DataFrame, ignore: Sequence[str]):
    """``(key, (value, path), (other value, other path))`` for the first ignored key whose values
    differ between ``group``'s runs (a key a run lacks counts at its value when missing), else None."""
    if len(group) < 2:
        return None
    for key in ignore:
        seen: dict[str, tuple[Any, str]] = {}
        for settings, path in zip(group["settings"], group["path"], strict=True):
            value = settings[key] if key in settings else completed({}, [key])[key]
            seen.setdefault(json.dumps(value, sort_keys=True, default=str), (value, path))
        if len(seen) > 1:
            first, second = list(seen.values())[:2]
            return key, first, second
    return None


# --------------------------------------------------------------------------- factors

FACTOR = "_f:"          # the column prefix of a compared (or split) key's values: JSON text, None when unset
DEFAULT_LABEL = "default"


def factor_column(key: str) -> str:
    return "_pooling" if key == "pooling" else FACTOR + key


def show_value(text: Any) -> str:
    """A factor value (JSON text) as the report writes it: ``null`` (the config's default, e.g.
    ``optimizer.layer_decay`` off) as ``default``, a string without quotes."""
    if text is None or (isinstance(text, float) and math.isnan(text)):
        return UNSET
    value = json.loads(text) if isinstance(text, str) else text
    if value is None:
        return DEFAULT_LABEL
    return value if isinstance(value, str) else json.dumps(value)


def factor_keys(runs: pd.DataFrame) -> list[str]:
    """The keys of the factor columns of ``runs`` (besides pooling), in the order they were added."""
    return [c[len(FACTOR):] for c in runs.columns if c.startswith(FACTOR)]


def with_factors(runs: pd.DataFrame, keys: Sequence[str], context_only: bool = False) -> pd.DataFrame:
    """``runs`` with a column per key (:func:`factor_column`: the run's value as JSON text, None when
    its settings lack the key, e.g. ``pooling.module.k`` of ``cls``) and the keys' values added to
    the row label (``pooling``): ``maxpool_mha [pooling.module.k=1]``. A key no run has is refused in
    one line (:class:`SelectionError`)."""
    if not keys:
        return runs
    runs = runs.copy()
    known = sorted(set().union(*runs["settings"])) if len(runs) else []
    for key in keys:
        if not any(key in s for s in runs["settings"]):
            close = _close_keys(key, known)
            hint = f"did you mean {', '.join(close)}? " if close else ""
            option = "--split-settings" if context_only else "--compare"
            raise SelectionError(f"{option}={key}: no run has this key in its settings; {hint}"
                                 "e.g. optimizer.layer_decay, pooling.module.k, head.use_pooler, model.name")
        runs[factor_column(key)] = [_json_text(s[key]) if s.get(key, UNSET) != UNSET else None
                                    for s in runs["settings"]]
    labels = []
    for i in runs.index:
        parts = [f"{k}={show_value(runs.at[i, factor_column(k)])}" for k in keys
                 if not unset(runs.at[i, factor_column(k)])]
        label = runs.at[i, "pooling"]
        if parts:
            base, _, inner = label.partition(" [")
            inner = inner[:-1] if inner.endswith("]") else inner
            label = f"{base} [{', '.join(([inner] if inner else []) + parts)}]"
        labels.append(label)
    runs["pooling"] = labels
    return runs


def _close_keys(key: str, known: Sequence[str]) -> list[str]:
    """Settings keys like ``key``: the same last part, or close in spelling."""
    import difflib

    same = [k for k in known if k.endswith("." + key.rpartition(".")[2])]
    return list(dict.fromkeys([*difflib.get_close_matches(key, known, n=3, cutoff=0.8), *same]))[:3]


def _json_text(value: Any) -> str:
    return json.dumps(value.item() if isinstance(value, np.generic) else value, sort_keys=True)


def config_default(key: str, settings: dict[str, Any]) -> Any:
    """The value ``key`` has in the project's configs when nobody sets it: a setting of
    ``configs/config.yaml``'s own sections at its value there; a key of a config group (``optimizer.
    layer_decay``, ``pooling.module.k``) at its value in the group's file that ``settings`` chose
    (``pooling.name``), else in the default list's choice. :data:`MISSING` when neither knows it."""
    from omegaconf import OmegaConf

    from maxpoolbert.tasks.task import CONFIGS

    group = key.partition(".")[0]
    own = identity._project_defaults()
    if key in own:
        return own[key]
    folder = CONFIGS / group
    if not folder.is_dir():
        return MISSING
    choice = settings.get(f"{group}.name")
    if choice is None:
        top = OmegaConf.to_container(OmegaConf.load(CONFIGS / "config.yaml"), resolve=False)
        for item in top.get("defaults", []):
            if isinstance(item, dict) and group in item:
                choice = item[group]
    path = folder / f"{choice}.yaml"
    if not isinstance(choice, str) or not path.is_file():
        return MISSING
    values = identity._flat({group: OmegaConf.to_container(OmegaConf.load(path), resolve=False)})
    return values.get(key, MISSING)


def resolve_baselines(runs: pd.DataFrame, compare: Sequence[str], baselines: Sequence[str]
                      ) -> tuple[tuple[str, str], ...]:
    """The factors to compare along and each one's baseline value: ``pooling`` (baseline ``cls``
    unless ``--baseline pooling=NAME``) first, then every ``--compare KEY`` with ``--baseline
    KEY=VALUE`` (VALUE as on the command line; ``default``: the config's default) or, without one,
    the config's default value (:func:`config_default`). Refused in one line
    (:class:`SelectionError`): a baseline for a key not compared, a value no run has."""
    given: dict[str, str] = {}
    for item in baselines:
        key, sep, value = item.partition("=")
        if not sep or not key or not value:
            raise SelectionError(f"--baseline={item}: not KEY=VALUE; e.g. --baseline pooling=cls, "
                                 "--baseline optimizer.layer_decay=default")
        given[key.strip()] = value.strip()
    keys = ["pooling", *(k for k in dict.fromkeys(compare) if k != "pooling")]
    stray = sorted(set(given) - set(keys))
    if stray:
        raise SelectionError(f"--baseline={stray[0]}=...: {stray[0]} is not compared; add --compare {stray[0]} "
                             f"(compared: {', '.join(keys)})")
    out = []
    for key in keys:
        values = factor_values_of(runs, key)
        if key == "pooling":
            out.append((key, given.get(key, BASELINE)))
            if given.get(key) is not None and given[key] not in values:
                raise SelectionError(f"--baseline=pooling={given[key]}: no run has this pooling; the poolings: "
                                     + ", ".join(sorted(values)))
            continue
        shown = {show_value(v): v for v in values}
        if key in given:
            text = given[key]
            if text in shown:
                out.append((key, shown[text]))
                continue
            import yaml

            try:
                parsed = _json_text(yaml.safe_load(text))
            except yaml.YAMLError:
                parsed = None
            if parsed not in values:
                raise SelectionError(f"--baseline={key}={text}: no run has this value; its values: "
                                     + ", ".join(sorted(shown)))
            out.append((key, parsed))
            continue
        default = None
        for settings in runs["settings"]:
            value = config_default(key, settings)
            if value is not MISSING and _json_text(value) in values:
                default = _json_text(value)
                break
        if default is None:
            raise SelectionError(f"--compare={key}: no run has the config's default value; name the baseline "
                                 f"(--baseline {key}=VALUE); its values: " + ", ".join(sorted(shown)))
        out.append((key, default))
    return tuple(out)


def factor_values_of(runs: pd.DataFrame, key: str) -> set:
    """The distinct values of a factor column (``_pooling`` for pooling), without the unset ones."""
    column = factor_column(key)
    source = runs[column] if column in runs else runs["pooling"]
    return {v for v in source if not unset(v)}


def unset(value: Any) -> bool:
    """A factor value a run does not have (None, or the NaN pandas may turn it into)."""
    return value is None or (isinstance(value, float) and math.isnan(value))


def split_keys(runs: pd.DataFrame) -> list[str]:
    """``--split-settings``: every key whose value differs between the runs of some cell."""
    keys: dict[str, None] = {}
    for _, group in runs.groupby(CELL, dropna=False, sort=False):
        if group["identity"].nunique() > 1:
            keys.update(dict.fromkeys(_differing(group, [c for c in ("_value",) if c in group])))
    return list(keys)


def with_values(runs: pd.DataFrame, key: str) -> pd.DataFrame:
    """``runs`` with column ``_value``: each run's value of ``key`` in its settings (JSON text;
    None when unset). A key no run has is refused in one line."""
    runs = runs.copy()
    values = [settings.get(key, MISSING) for settings in runs["settings"]]
    if all(v is MISSING for v in values):
        known = sorted(set().union(*runs["settings"])) if len(runs) else []
        close = _close_keys(key, known)
        hint = f"did you mean {', '.join(close)}? " if close else ""
        raise SelectionError(f"--select={key}: no run has this key in its settings; {hint}e.g. optimizer.lr, "
                             "data.batch_size, scheduler.warmup_ratio")
    runs["_value"] = [json.dumps(v.item() if isinstance(v, np.generic) else v, sort_keys=True) if v is not MISSING else None for v in values]
    distinct = sorted(set(runs["_value"].dropna()))
    if len(distinct) < 2:
        raise SelectionError(f"--select={key}: every run has the same value ({distinct[0]}): nothing to choose; "
                             "sweep it first (e.g. experiment=lr_search)")
    return runs


# --------------------------------------------------------------------------- one experiment per cell


def _differing(group: pd.DataFrame, dropped: Sequence[str] = ()) -> dict[str, list[Any]]:
    """``{key: [its values]}`` over the distinct settings of ``group``'s runs, for every key whose
    value differs between them (a key one lacks shows as ``<unset>``)."""
    distinct = list({sid: s for sid, s in zip(group["identity"], group["settings"], strict=True)}.values())
    keys = sorted(set().union(*distinct) - set(dropped))
    out = {}
    for key in keys:
        values = [s.get(key, UNSET) for s in distinct]
        if len({json.dumps(v, sort_keys=True, default=str) for v in values}) > 1:
            out[key] = values
    return out


def _cell_name(cell: tuple) -> str:
    model, pooling, task, size = cell
    return f"model={model} task={task} pooling={pooling} train_size={'full' if pd.isna(size) else size}"


def check_settings(runs: pd.DataFrame) -> None:
    """Refuse cells whose runs have different settings, or were scored on different dev data (one
    line: each differing key and its values, or the data's rows and fingerprints; the cells, and the
    ways out)."""
    problems, other_data = [], []
    for cell, group in runs.groupby(CELL, dropna=False, sort=False):
        data = data_differences(group)
        if data is not None:
            other_data.append(f"{_cell_name(cell)}: {data}")
            continue
        if group["identity"].nunique() <= 1:
            continue
        dropped = [c for c in ("_value",) if c in group]
        keys = _differing(group, dropped)
        details = ", ".join(f"{k} ({' vs '.join(identity.show(v) for v in vals)})" for k, vals in keys.items())
        problems.append(f"{_cell_name(cell)}: {details or 'settings ' + ' vs '.join(sorted(set(group['identity'])))}")
    if other_data:
        more = f" (and {len(other_data) - 3} more cells)" if len(other_data) > 3 else ""
        raise MixedSettingsError("runs scored on different dev data in one cell (another copy of the data?): "
                                 + "; ".join(other_data[:3]) + more
                                 + ". Report them as separate rows (--split-settings), or keep the runs of one "
                                   "copy of the data.")
    if problems:
        more = f" (and {len(problems) - 3} more cells)" if len(problems) > 3 else ""
        raise MixedSettingsError("runs with different settings in one cell; differing keys in "
                                 + "; ".join(problems[:3]) + more
                                 + ". Compare along the key (--compare KEY), report them as separate rows (--split-settings), choose "
                                   "one value of a searched key (--select KEY), or leave a key out of the identity "
                                   "(--ignore KEY).")


def label_data(runs: pd.DataFrame) -> pd.DataFrame:
    """``--split-settings``: in a cell whose runs were scored on different dev data, each run's row is
    labelled by its data (``rte [dev rows=200 labels=1a2b3c4d5e6f]``)."""
    runs = runs.copy()
    for _, group in runs.groupby(CELL, dropna=False, sort=False):
        if data_differences(group) is not None:
            for i in group.index:
                runs.at[i, "pooling"] = f"{runs.at[i, 'pooling']} [{data_label(runs.at[i, 'eval_data'])}]"
    return runs


# --------------------------------------------------------------------------- W&B


def collect_wandb(path: str, api: Any = None, by: str | None = None, ignore: Sequence[str] = (),
                  split: bool = False, compare: Sequence[str] = ()) -> tuple[pd.DataFrame, list[dict[str, str]]]:
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
        raise ReportError(f"could not read W&B runs of {path}: {run_folder._one_line(str(exc))}") from None
    rows, skipped = [], []
    for run in wandb_runs:
        where = f"wandb:{path}/{getattr(run, 'id', '?')}"
        state = getattr(run, "state", "finished")
        if state != "finished":
            kind = "failed" if state in ("failed", "crashed", "killed") else "incomplete"
            skipped.append({"path": where, "reason": f"{kind}: W&B state {state}"})
            continue
        summary, config = wandb_plain(run.summary) or {}, wandb_plain(run.config) or {}
        try:
            row = parse_record(payload_from_wandb(summary, config), config)
        except RunError as exc:
            skipped.append({"path": where, "reason": str(exc)})
            continue
        stamp = summary.get("_timestamp")
        if stamp is None:
            created = pd.to_datetime(getattr(run, "created_at", None), utc=True, errors="coerce")
            stamp = 0.0 if pd.isna(created) else created.timestamp()
        row.update(path=where, mtime=float(stamp))
        rows.append(row)
    return finish_collection(rows, skipped, by, ignore, split, compare=compare)


def wandb_run_to_record(run: Any) -> dict[str, Any]:
    """One W&B public-API run as a ``results.json`` payload (:func:`maxpoolbert.runs.payload_from_wandb`)."""
    return payload_from_wandb(wandb_plain(run.summary) or {}, wandb_plain(run.config) or {})

