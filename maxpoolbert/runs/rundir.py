"""The run record: a run folder, what a finished run records, and when two runs are the same.

Nothing outside this module spells a run-folder file name or a ``results.json`` key.

* :class:`RunFolder`: one run's folder (Hydra's run or multirun job directory) and the rules that
  make it one run. It holds

  - ``.hydra/config.yaml``, ``hydra.yaml``, ``overrides.yaml``: written once, when the run first
    starts (Hydra's own saving is off: ``hydra.output_subdir: null``), exactly as composed, with
    no path of the machine resolved into it (``data.glue_dir`` stays ``${oc.env:GLUE_DIR,null}``).
    A relaunch whose settings differ is refused (:meth:`RunFolder.claim`).
  - ``checkpoints/last.ckpt`` while the run is under way (written atomically beside itself,
    :mod:`maxpoolbert.training.checkpointing`); one that cannot be loaded is moved aside
    (:meth:`RunFolder.resume_checkpoint`).
  - ``dev_predictions.tsv``, then ``model.safetensors`` (``save_model``), then ``results.json``
    atomically (the record says whether the weights were written): the run is finished when
    ``results.json`` can be read as a :class:`RunRecord`, so a kill before it leaves a run that a
    relaunch completes; one that cannot be read is moved aside. A re-run of a finished run
    (``skip_finished=false``) keeps the earlier ``results.json`` and weights until it writes its
    own (then as ``*.replaced``); when it fails, the earlier results stay the run's and the failure
    goes to ``rerun_failed.json``, never ``failed.json``. A write that fails for want
    of space is one line (:class:`~maxpoolbert.core.errors.WriteFailed`), leaving no partial file.
  - ``failed.json`` when the run failed (beside a usable ``results.json``, as older versions left
    it after a failed re-run: the run is finished, the failure was its re-run's), ``launches.jsonl`` with one line per launch (finished,
    skipped, rerun, failed, interrupted, refused; the optimizer steps reached) for the sweep
    summary and for telling a run that never trained (:meth:`RunFolder.never_trained`: other
    settings may take its folder over), ``wandb_id`` for a resumed W&B run.
  - ``data_dirs.local.json``: the data folders the run read, as paths of the machine that trained
    it (never committed: a study commits results, predictions and config only), which ``predict``
    falls back on where the shell sets no ``GLUE_DIR`` (:meth:`RunFolder.data_dirs`).
  - ``.lock``: an OS file lock held by the process that runs the folder (:meth:`RunFolder.lock`),
    naming it; a sweep folder notes the jobs refused because their folder was in use
    (``refused_in_use.jsonl``).

* :class:`RunRecord`: what a finished run records (``results.json``). :mod:`maxpoolbert.launch.run`
  writes it; the report, selection, predict, export, sweeps and callbacks read it. Every record
  carries its ``format`` (:data:`FORMAT`); records written by older versions are upgraded here, when
  read, by one path (:func:`upgrade`), and nowhere else; a newer format is refused (:class:`NewerFormat`).

* A run's identity, :func:`settings`: the resolved config, flattened, without the seed (it has its
  own key) and without the keys that do not change what a run computes (one declared list:
  ``hydra.job.config.override_dirname.exclude_keys`` in ``configs/config.yaml``: logger, data and
  cache folders, progress bar, ...). Trainer flags at Lightning's own default are left out (so a
  Lightning release that adds a flag changes no identity) and a pooling strategy's options are
  filled in with the defaults its class declares. :func:`settings_id` is a short hash of it. Runs
  of one report cell are the same experiment exactly when their ``settings_id`` is the same. No
  allowlist: a setting added next year is part of the identity without an edit.

This module imports no torch at import time, so the sweep callbacks can use it cheaply.
"""

from __future__ import annotations

import dataclasses
import errno
import fcntl
import functools
import hashlib
import json
import logging
import math
import os
import pickle
import shlex
import shutil
import socket
import time
import zipfile
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, ListConfig, OmegaConf

from maxpoolbert.core import signatures

from maxpoolbert.config import targets
from maxpoolbert.core.errors import UserError, WriteFailed, write_failure
from maxpoolbert.config.schema import plain
from maxpoolbert.tasks.task import CONFIGS, HELDOUT, TaskInfo, benchmark_dirs
from maxpoolbert.tasks.task import from_config as task_from_config
from maxpoolbert.tasks.task import task_info as configured_task_info
from maxpoolbert.tasks.task import upgrade as upgrade_task

log = logging.getLogger("maxpoolbert")

RESULTS = "results.json"
FAILED = "failed.json"
RERUN_FAILED = "rerun_failed.json"  # a failed re-run (skip_finished=false) of a finished run: its results stay
ERROR_TXT = "error.txt"  # failures recorded by other tools (submitit logs copied in): read, never written
PREDICTIONS = "dev_predictions.tsv"
HELDOUT_PREDICTIONS = "heldout_predictions.tsv"   # data.heldout_size: the held-out training rows, same columns
# The predictions as a study commits them (archive_predictions): split, index, prediction, without the
# gold labels, which stay with the data (GLUE_DIR) and are read back from the task's files (the dev files;
# the training file for the held-out rows).
PREDICTIONS_ARCHIVE = "dev_predictions.csv"
HELDOUT_ARCHIVE = "heldout_predictions.csv"
ARCHIVES = {PREDICTIONS: PREDICTIONS_ARCHIVE, HELDOUT_PREDICTIONS: HELDOUT_ARCHIVE}
MODEL = "model.safetensors"
CONFIG_DIR = ".hydra"
CONFIG = f"{CONFIG_DIR}/config.yaml"
HYDRA = f"{CONFIG_DIR}/hydra.yaml"
OVERRIDES = f"{CONFIG_DIR}/overrides.yaml"
CHECKPOINTS = "checkpoints"
LAST_CKPT = "last.ckpt"
LAUNCHES = "launches.jsonl"
WANDB_ID = "wandb_id"
LOCAL_DATA = "data_dirs.local.json"  # the data folders the run read on this machine: a fallback, never committed
LOCK = ".lock"  # the run folder's OS file lock; holds the holder's PID and host
IN_USE = "refused_in_use.jsonl"  # in a sweep folder: jobs refused because another process ran their folder
CORRUPT = ".corrupt"
REPLACED = ".replaced"  # .hydra/ of a run that never trained, kept aside when other settings take its folder over
WEIGHTS = ("saved", "missing", "off")  # results.json "weights": written; could not be written; save_model=false
LAUNCH_ENV = "MAXPOOLBERT_LAUNCH"  # set by the sweep callback: which launch a job belongs to
SIDE_FOLDERS = {"wandb", "__pycache__", "lightning_logs", CHECKPOINTS, "csv", "submission"}  # never hold runs
UNSET = "<unset>"


# ---------------------------------------------------------------------------- atomic files
def tmp_path(path: Path) -> Path:
    """The temporary file beside ``path`` that an atomic write goes through."""
    return path.with_name(f".{path.name}.{os.getpid()}.tmp")


def write_atomic(path: Path, text: str) -> None:
    """``text`` into ``path`` through a temporary file beside it, renamed into place: ``path`` is
    the old file or the new one, never a part. A full disk, a spent quota or a read-only
    filesystem raise :class:`~maxpoolbert.core.errors.WriteFailed` (one line); the temporary file goes."""
    def write(tmp: Path) -> None:
        with tmp.open("w") as f:
            f.write(text)
            synced(f)

    write_through(path, write, OSError)


def synced(f: Any) -> None:
    """Flush the open file ``f`` to the disk."""
    f.flush()
    os.fsync(f.fileno())


def write_through(path: Path, write: Callable[[Path], None], catch: type[BaseException] = Exception) -> None:
    """``write(tmp)`` into a temporary file beside ``path``, then renamed into place: ``path`` is the
    old file or the new one, never a part. A full disk, a spent quota or a read-only filesystem
    (an error of type ``catch`` that :func:`~maxpoolbert.core.errors.write_failure` recognises) raise
    :class:`~maxpoolbert.core.errors.WriteFailed` (one line); the temporary file never stays."""
    tmp = tmp_path(path)
    try:
        write(tmp)
        os.replace(tmp, path)
    except catch as err:
        tmp.unlink(missing_ok=True)
        failed = write_failure(path, err)
        if failed is None:
            raise
        raise failed from err
    finally:
        tmp.unlink(missing_ok=True)


def umask() -> int:
    """The process's umask (read by setting it, and set back at once)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def as_new_file(path: Path) -> None:
    """The permissions the user's umask gives a new file (0644 with umask 022) on ``path``, which
    a library wrote private (0600)."""
    path.chmod(0o666 & ~umask())


def write_json_atomic(path: Path, obj: Any) -> None:
    write_atomic(path, json.dumps(_finite(obj), indent=2) + "\n")


def _finite(obj: Any) -> Any:
    """NaN/inf are not JSON: write them as null."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_finite(v) for v in obj]
    return obj


def set_aside(path: Path, suffix: str = CORRUPT) -> Path:
    """Rename ``path`` to ``<path><suffix>`` (``.1``, ``.2`` ... when taken); returns the new name."""
    target = path.with_name(path.name + suffix)
    n = 0
    while target.exists():
        n += 1
        target = path.with_name(f"{path.name}{suffix}.{n}")
    os.replace(path, target)
    return target


# ---------------------------------------------------------------------------- identity
def _key(key: str) -> str:
    return str(key).replace("/", ".")


def neutral_keys(hydra_cfg: DictConfig | Mapping | None = None) -> tuple[str, ...]:
    """The keys that do not change what a run computes: the running (or a stored) Hydra config's
    ``job.config.override_dirname.exclude_keys``, else the project's ``configs/config.yaml``'s
    (reading records made before they carried their settings). Also left out of job folder names."""
    if hydra_cfg is None:
        return _project_neutral_keys()
    node = OmegaConf.select(OmegaConf.create(hydra_cfg) if not OmegaConf.is_config(hydra_cfg) else hydra_cfg,
                            "job.config.override_dirname.exclude_keys", default=None)
    return tuple(_key(k) for k in (node or []))


@functools.cache
def _project_neutral_keys() -> tuple[str, ...]:
    cfg = OmegaConf.load(CONFIGS / "config.yaml")
    return neutral_keys(cfg.hydra)


def _is_neutral(key: str, neutral: tuple[str, ...] | list[str]) -> bool:
    return any(key == n or key.startswith(n + ".") for n in neutral)


def _flat(obj: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(obj, dict):
        out: dict[str, Any] = {}
        for k, v in obj.items():
            out.update(_flat(v, f"{prefix}{k}."))
        return out or ({prefix[:-1]: {}} if prefix else {})
    return {prefix[:-1]: obj}


def _trainer_flag(key: str) -> str | None:
    """``trainer.<flag>`` -> ``flag`` (a top-level Trainer argument), else None."""
    rest = key.removeprefix("trainer.")
    return rest if key.startswith("trainer.") and "." not in rest else None


@functools.cache
def _trainer_defaults() -> dict[str, Any]:
    from maxpoolbert.config.lightning_flags import trainer_defaults

    return trainer_defaults()


def settings(cfg: DictConfig | Mapping, neutral: tuple[str, ...] | list[str] | None = None) -> dict[str, Any]:
    """A run's identity: its config resolved and flattened (``optimizer.lr``), without ``seed``,
    ``hydra``, the ``neutral`` keys (default :func:`neutral_keys`) and the Trainer flags at
    Lightning's default; the pooling's options completed with its class's defaults; a task config
    of an older version upgraded to today's fields; every ``_target_`` by its canonical name
    (:func:`maxpoolbert.config.targets.canonical`: the identity does not depend on where the code lives).
    Sorted by key; JSON values."""
    neutral = neutral_keys() if neutral is None else tuple(neutral)
    node = plain(cfg) if OmegaConf.is_config(cfg) else json.loads(json.dumps(cfg, default=str))
    node = {k: v for k, v in node.items() if k not in ("seed", "hydra")}
    if isinstance(node.get("task"), dict):
        node["task"] = upgrade_task(node["task"])
    pooling = node.get("pooling")
    module = pooling.get("module") if isinstance(pooling, dict) else None
    if isinstance(module, dict) and isinstance(module.get("_target_"), str):
        declared = signatures.defaults(targets.current(module["_target_"]), skip=("self", "encoder_config"))
        node["pooling"]["module"] = {**declared, **module}
    defaults = _trainer_defaults()
    out = {}
    for key, value in _flat(node).items():
        flag = _trainer_flag(key)
        if _is_neutral(key, neutral) or (flag is not None and flag in defaults and defaults[flag] == value):
            continue
        out[key] = targets.canonical(value) if targets.is_target(key) and isinstance(value, str) else value
    return dict(sorted(out.items()))


def settings_id(values: Mapping[str, Any]) -> str:
    """A short, stable name of a run's settings: the first 12 hex digits of the SHA-256 of their
    canonical JSON (sorted keys)."""
    text = json.dumps(dict(values), sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def _missing(key: str) -> Any:
    """The value of a key a run's settings lack: Lightning's default for a Trainer flag (left out
    because it was the default); for a setting of the project's own sections (``configs/config.yaml``:
    ``data``, ``eval``, ``speed`` ...) its default there, which is what a run recorded before the
    setting existed computed; else :data:`UNSET`."""
    flag = _trainer_flag(key)
    if flag is not None:
        return _trainer_defaults().get(flag, UNSET)
    return _project_defaults().get(key, UNSET)


@functools.cache
def _project_defaults() -> dict[str, Any]:
    """The flat defaults of the settings ``configs/config.yaml`` itself defines (not its groups)."""
    cfg = OmegaConf.to_container(OmegaConf.load(CONFIGS / "config.yaml"), resolve=False)
    cfg = {k: v for k, v in cfg.items() if k not in ("defaults", "hydra", "seed")}
    return {k: v for k, v in _flat(cfg).items() if not (isinstance(v, str) and "${" in v)}


def completed(values: Mapping[str, Any], keys: Any) -> dict[str, Any]:
    """``values`` with every key of ``keys`` it lacks at its value when missing (:func:`_missing`):
    the settings of runs recorded by different versions, made comparable."""
    out = dict(values)
    for key in keys:
        if key not in out:
            out[key] = _missing(key)
    return dict(sorted(out.items()))


def differences(a: Mapping[str, Any], b: Mapping[str, Any], both_only: bool = False) -> list[tuple[str, Any, Any]]:
    """``(key, value in a, value in b)`` for every key whose values differ (a missing Trainer flag
    is Lightning's default; another missing key is :data:`UNSET`). ``both_only``: keys only one side
    has are not compared, except Trainer flags (a relaunch: a setting the project added or removed
    since the run started cannot have been set differently)."""
    out = []
    for key in sorted(a.keys() | b.keys()):
        if both_only and (key not in a or key not in b) and _trainer_flag(key) is None:
            continue
        old = a[key] if key in a else _missing(key)
        new = b[key] if key in b else _missing(key)
        if _json(old) != _json(new):
            out.append((key, old, new))
    return out


def _json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=str)


def show(value: Any) -> str:
    """A setting's value as it is written on the command line."""
    return value if value == UNSET or isinstance(value, str) else json.dumps(value)


# ---------------------------------------------------------------------------- the record
class RecordError(ValueError):
    """A ``results.json`` that cannot be used; ``kind`` is ``corrupt`` or ``other configuration``."""

    def __init__(self, message: str, kind: str = "corrupt") -> None:
        super().__init__(message)
        self.kind = kind

    @property
    def reason(self) -> str:
        return f"{self.kind}: {self}"


REQUIRED_KEYS = ("task", "pooling", "model", "seed", "metrics", "score")

# results.json's ``format``: the version of the record's layout, written in every record. Records
# without it (format 1; format 0: so old they carry no settings) are upgraded when read by one path
# (:func:`upgrade`); a newer format than this one is refused (:class:`NewerFormat`), never guessed at.
FORMAT = 2


class NewerFormat(RecordError):
    """A ``results.json`` written by a newer version of this project (its ``format``): never guessed
    at. Read: not a usable record (the report lists it); its folder's run is finished all the same,
    and a relaunch there is refused (:meth:`RunFolder.conflict`), the folder left as it is."""

    def __init__(self, source: str | os.PathLike, version: int) -> None:
        super().__init__(f"{source}: format {version}: written by a newer version of maxpoolbert (this one reads "
                         f"formats up to {FORMAT}); read it with that version or a newer one", "newer format")
        self.version = version


def record_format(data: Mapping[str, Any], source: str | os.PathLike = RESULTS) -> int:
    """The ``format`` of a ``results.json`` payload: 1 without one (format 0 records, without
    ``settings``, are read by the same path); :class:`RecordError` when it is not a whole number,
    :class:`NewerFormat` when it is newer than :data:`FORMAT`."""
    version = data.get("format", 1)
    if isinstance(version, bool) or not isinstance(version, int) or version < 0:
        raise RecordError(f"format {version!r} is not a version number")
    if version > FORMAT:
        raise NewerFormat(source, version)
    return version


def _configured_info(task: str) -> dict[str, Any] | None:
    """The ``task_info`` of a task as ``configs/task/<task>.yaml`` describes it (None: no such task)."""
    try:
        info = configured_task_info(task)
    except ValueError as err:
        raise RecordError(str(err)) from None
    return info.to_dict() if info else None


def upgrade(data: dict[str, Any], config: DictConfig | Mapping | None = None,
            source: str | os.PathLike = RESULTS) -> dict[str, Any]:
    """A ``results.json`` payload of any format this version reads, as one of :data:`FORMAT` (a new
    dict; ``data`` is not changed). The one upgrade path of older records (format 0 and 1, written
    without a ``format``): ``task_info`` from ``configs/task/<name>.yaml`` when the record has none;
    ``settings`` computed from ``config`` (the run's stored ``.hydra/config.yaml`` or W&B config)
    when given, else from the ``hparams`` the record kept then (a partial identity); ``settings_id``
    from the settings when the record has none."""
    version = record_format(data, source)
    data = dict(data)
    if version < 2:
        if not isinstance(data.get("task_info"), dict):
            data["task_info"] = _configured_info(str(data["task"]))
        if not isinstance(data.get("settings"), dict):
            data["settings"] = settings(config) if config is not None else _legacy_settings(data.get("hparams"))
            data["settings_id"] = settings_id(data["settings"])
        elif not data.get("settings_id"):
            data["settings_id"] = settings_id(data["settings"])
    data["format"] = FORMAT
    return data


@dataclass
class RunRecord:
    """What a finished run records, as ``results.json`` holds it (:meth:`to_json`).

    Scores and metrics are fractions (correlations in [-1, 1]); ``score`` is the mean of the
    task's metrics; NaN where a metric is undefined (stored as null). ``settings`` and
    ``settings_id`` are the run's identity (:func:`settings`). Timings are seconds."""

    task: str
    pooling: str
    model: str
    seed: int
    metrics: dict[str, float]
    score: float
    format: int = FORMAT                       # results.json's layout (:data:`FORMAT`); older ones upgraded when read
    task_info: TaskInfo | None = None          # None: a task neither the record nor the project describes
    settings: dict[str, Any] = field(default_factory=dict)
    settings_id: str = ""
    train_size: int | None = None              # data.train_size (None: the full training set)
    n_train: int | None = None                 # training rows used
    n_train_full: int | None = None            # training rows before data.train_size
    n_dev: dict[str, int] = field(default_factory=dict)
    majority_score: float | None = None        # dev score of the most frequent training label (None: regression)
    history: list[dict] = field(default_factory=list)  # one entry per dev evaluation: epoch, step, metrics, score
    selected: dict | None = None               # eval.select and the history entry it chose
    epochs: int | None = None
    steps: int | None = None
    resumed: bool = False
    stopped_early: bool = False
    world_size: int = 1
    train_samples: int | None = None           # rows trained on, summed over processes
    train_samples_per_s: float | None = None
    train_s: float | None = None
    wall_s: float | None = None
    process_s: float | None = None
    first_step_s: float | None = None
    peak_memory_mb: dict[str, float] = field(default_factory=dict)
    params: dict[str, int] = field(default_factory=dict)  # total, pooling
    versions: dict[str, str] = field(default_factory=dict)  # python, torch, transformers, lightning
    device: str | None = None                  # where the model ran: cpu, cuda:0
    hardware: dict[str, Any] = field(default_factory=dict)  # cpu model, cores, threads, gpu
    weights_sha256: str | None = None          # of the pretrained encoder's weights file (None: random init)
    compiled: dict[str, int] | None = None     # speed.compile: graphs captured, frames compiled (recompilations)
    weights: str | None = None                 # model.safetensors: one of WEIGHTS (None: recorded before it was)
    heldout: dict | None = None                # data.heldout_size: n, metrics, score of the held-out training rows
    # per evaluated split, the data it was scored on (:func:`fingerprint`: rows, labels_sha256);
    # empty: recorded before it was
    dev_data: dict[str, dict[str, Any]] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)   # keys of other versions, kept as they are

    # ------------------------------------------------------------------ writing
    def to_json(self) -> dict[str, Any]:
        data = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name not in ("extra",)}
        data["task_info"] = self.task_info.to_dict() if self.task_info else _configured_info(self.task)
        data["settings_id"] = self.settings_id or settings_id(self.settings)  # a record made without it: its own
        settings_last = data.pop("settings")
        return {"format": FORMAT, **self.extra, **data, "settings": settings_last}

    # ------------------------------------------------------------------ reading (and upgrading)
    @classmethod
    def from_json(cls, data: Any, config: DictConfig | Mapping | None = None,
                  source: str | os.PathLike = RESULTS) -> RunRecord:
        """A record from ``results.json``'s payload (``source``: its file, for messages);
        :class:`RecordError` when it cannot be used, :class:`NewerFormat` when a newer version wrote it.

        Records of older formats are upgraded first (:func:`upgrade`; ``config``: the run's stored
        config, from which a record without ``settings`` gets them)."""
        if not isinstance(data, dict):
            raise RecordError("results.json is not a JSON object")
        missing = [k for k in REQUIRED_KEYS if k not in data]
        if missing:
            raise RecordError(f"missing key(s) {', '.join(missing)}")
        data = upgrade(data, config, source)
        task = str(data["task"])
        info = data.get("task_info")
        try:
            info = TaskInfo.from_dict(info, task) if isinstance(info, dict) else None
        except ValueError as err:
            raise RecordError(str(err)) from None
        if not isinstance(data.get("settings"), dict) or not data.get("settings_id"):
            raise RecordError("no settings or settings_id (both are in every record of this format)")
        metrics = data["metrics"]
        expected = info.metrics if info else tuple(metrics) if isinstance(metrics, dict) else ()
        if not isinstance(metrics, dict) or any(m not in metrics for m in expected):
            got = ", ".join(metrics) if isinstance(metrics, dict) else type(metrics).__name__
            raise RecordError(f"{task} needs metrics {', '.join(expected)}, got {got or 'none'}")
        try:
            values = {m: _number(metrics[m]) for m in (expected or metrics)}
            score = _number(data["score"])
            seed = data["seed"]
            if isinstance(seed, bool) or int(seed) != seed:
                raise ValueError
            train_size = data.get("train_size")
            if train_size is not None and (isinstance(train_size, bool) or int(train_size) != train_size
                                           or train_size <= 0):
                raise ValueError
            majority = data.get("majority_score")
            majority = None if majority is None else _number(majority)
        except (TypeError, ValueError):
            raise RecordError("non-numeric score, metric, seed, train_size or majority_score") from None
        known = {f.name for f in dataclasses.fields(cls)} - {"extra"}
        given = {k: v for k, v in data.items() if k in known}
        extra = {k: v for k, v in data.items() if k not in known}
        return cls(**{**given, "task": task, "pooling": str(data["pooling"]), "model": str(data["model"]),
                      "seed": int(seed), "metrics": values, "score": score, "task_info": info,
                      "train_size": None if train_size is None else int(train_size),
                      "majority_score": majority, "n_train": _count(data.get("n_train")),
                      "n_train_full": _count(data.get("n_train_full"))}, extra=extra)

    # ------------------------------------------------------------------ derived
    @property
    def failed(self) -> bool | None:
        """A failed run: its score is not finite, or at or below the majority-class score (the
        classifier learnt nothing; Mosbach et al. 2021). None when that cannot be told (no
        majority score, e.g. regression)."""
        if not math.isfinite(self.score):
            return True
        if self.majority_score is None or not math.isfinite(self.majority_score):
            return None
        return self.score <= self.majority_score + 1e-9

    def eval_metrics(self) -> dict[str, dict[str, str]]:
        """``{dev split: {metric key: metric name}}`` of the run's task (``{"dev": {"accuracy":
        "accuracy"}}``), from its settings (``task.eval.<split>.metrics.<key>``): what recomputing
        its metrics from ``dev_predictions.tsv`` needs. Empty for a record without them."""
        out: dict[str, dict[str, str]] = {}
        for key, value in self.settings.items():
            parts = key.split(".")
            if len(parts) == 5 and parts[0] == "task" and parts[1] == "eval" and parts[3] == "metrics":
                out.setdefault(parts[2], {})[parts[4]] = str(value)
        return out

    @property
    def recorded_glue_dir(self) -> str | None:
        """The GLUE folder a run of an older version recorded (absolute; newer runs record none)."""
        value = self.extra.get("glue_dir")
        return str(value) if value else None


def fingerprint(labels: Any) -> dict[str, Any]:
    """What identifies the rows a split was scored on: their count and a SHA-256 of their gold
    labels in file order, each written with 4 decimals (a class id 1 is ``1.0000``; an STS-B score
    read as float32 or float64 is the same text), one a line."""
    text = "".join(f"{float(v):.4f}\n" for v in labels)
    return {"rows": len(labels), "labels_sha256": hashlib.sha256(text.encode()).hexdigest()}


def _number(value: Any) -> float:
    """A metric value: null (NaN written by :func:`_finite`) is NaN."""
    if value is None:
        return math.nan
    if isinstance(value, bool):
        raise ValueError
    return float(value)


def _count(value: Any) -> int | None:
    """A positive row count, or None (missing or not a count)."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return None
    return int(value) if value == int(value) and value > 0 else None


# results.json ``hparams`` of records written before ``settings``, by their names then
_LEGACY_HPARAMS = {"lr": "optimizer.lr", "weight_decay": "optimizer.weight_decay", "batch_size": "data.batch_size",
                   "max_epochs": "trainer.max_epochs", "max_steps": "trainer.max_steps",
                   "max_length": "data.max_length", "warmup_ratio": "scheduler.warmup_ratio",
                   "use_pooler": "head.use_pooler", "head_dropout": "head.dropout"}


def _legacy_settings(hparams: Any) -> dict[str, Any]:
    """The settings of an old record with neither ``settings`` nor a stored config: its ``hparams``
    under today's key names (``pooling.k`` -> ``pooling.module.k``)."""
    if not isinstance(hparams, dict):
        return {}
    out = {}
    for key, value in hparams.items():
        key = _LEGACY_HPARAMS.get(key, key)
        if key.startswith("pooling.") and not key.startswith("pooling.module."):
            key = "pooling.module." + key.removeprefix("pooling.")
        out[key] = value
    return dict(sorted(out.items()))


# ---------------------------------------------------------------------------- W&B runs
def wandb_plain(value: Any) -> Any:
    """W&B summary/config wrappers as plain dicts (they expose ``_json_dict``)."""
    value = getattr(value, "_json_dict", value)
    if isinstance(value, dict):
        return {k: wandb_plain(v) for k, v in value.items()}
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


def payload_from_wandb(summary: dict[str, Any], config: dict[str, Any]) -> dict[str, Any]:
    """A W&B run (its summary and config, :func:`wandb_plain`) as a ``results.json`` payload for
    :meth:`RunRecord.from_json` (whose ``config`` argument is the run's W&B config: the resolved
    run config that :mod:`maxpoolbert.launch.run` logs, from which its settings are computed).

    Task, pooling, model, seed and train size come from ``config`` (flat keys, dotted keys or nested
    Hydra groups with a ``name``), falling back to ``summary``. Metrics come from
    ``summary["metrics"]`` or ``metrics/<key>``, ``dev/<key>``, ``val/<key>`` or bare ``<key>``
    entries; ``score`` defaults to the mean of the metrics. ``task_info`` comes from the summary,
    or from the run's task config when it names its benchmark, else from the project's configs."""
    from maxpoolbert.tasks.task import config_info

    record: dict[str, Any] = {}
    for key in ("task", "pooling", "model", "seed"):
        value = _lookup(config, key, f"{key}.name")
        record[key] = value if value is not None else _lookup(summary, key)
    size = _lookup(config, "train_size", "data.train_size")
    record["train_size"] = size if size is not None else _lookup(summary, "train_size")
    metrics = dict(summary["metrics"]) if isinstance(summary.get("metrics"), dict) else {}
    info: Any = summary.get("task_info")
    node = config.get("task")
    if not isinstance(info, dict) and isinstance(node, dict) and "benchmark" in node:
        try:
            info = config_info(node).to_dict()
        except (AttributeError, TypeError, ValueError):  # not the shape of a task config
            info = None
    if isinstance(info, dict):
        record["task_info"] = info
    known = configured_task_info(str(record["task"])) if record["task"] is not None else None
    names = (info or {}).get("metrics") if isinstance(info, dict) else (known.metrics if known else ())
    for name in names or ():
        if name not in metrics:
            for key in (f"metrics/{name}", f"dev/{name}", f"val/{name}", name):
                if key in summary:
                    metrics[name] = summary[key]
                    break
    record["metrics"] = metrics
    score = summary.get("score")
    if score is None and metrics:
        score = sum(float(v) for v in metrics.values()) / len(metrics)
    record["score"] = score
    for key in ("train_samples_per_s", "wall_s", "params", "majority_score", "n_train", "n_train_full",
                "settings", "settings_id"):
        if key in summary:
            record[key] = summary[key]
    return {k: v for k, v in record.items() if v is not None or k == "train_size"}


# ---------------------------------------------------------------------------- the folder
class RunFolderConflict(Exception):
    """The folder already holds a run with other settings."""


class RunFolderBusy(Exception):
    """Another live process runs in this folder (it holds the folder's lock)."""


# Run folders that did not exist when this process's config check ran (CheckConfig, before Hydra
# makes the folder): this launch created them, so nothing of earlier work can be in them.
# Each with the outermost of its folders that did not exist either (outputs/runs/<day>).
_CREATED_HERE: dict[Path, Path] = {}


def note_new_folder(path: str | os.PathLike) -> None:
    """Remember ``path`` as created by this launch when it does not exist yet."""
    path = Path(path).absolute()
    if os.path.lexists(path):
        return
    top = path
    while not os.path.lexists(top.parent) and top.parent != top:
        top = top.parent
    _CREATED_HERE[path] = top


class RunFolder:
    """One run's folder: its files, whether it is finished, and how it is written."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        self._lock_fd: int | None = None

    def __repr__(self) -> str:
        return f"RunFolder({str(self.path)!r})"

    # ------------------------------------------------------------------ files
    results = property(lambda self: self.path / RESULTS)
    failed_file = property(lambda self: self.path / FAILED)
    predictions_file = property(lambda self: self.path / PREDICTIONS)
    heldout_file = property(lambda self: self.path / HELDOUT_PREDICTIONS)
    model_file = property(lambda self: self.path / MODEL)
    config_file = property(lambda self: self.path / CONFIG)
    hydra_file = property(lambda self: self.path / HYDRA)
    checkpoints = property(lambda self: self.path / CHECKPOINTS)
    launches_file = property(lambda self: self.path / LAUNCHES)
    lock_file = property(lambda self: self.path / LOCK)

    def looks_like_a_run(self) -> bool:
        """A folder a run has started in: a record, a failure or a stored config."""
        return self.results.is_file() or self.failed_file.is_file() or self.config_file.is_file()

    # ------------------------------------------------------------------ reading
    def config(self) -> DictConfig | None:
        """The stored job config (``.hydra/config.yaml``), or None."""
        return OmegaConf.load(self.config_file) if self.config_file.is_file() else None

    def read(self) -> tuple[RunRecord | None, RecordError | None]:
        """``(record, None)`` for a finished run, ``(None, why)`` when ``results.json`` exists but
        cannot be used (:class:`NewerFormat` when a newer version wrote it), ``(None, None)`` when
        there is none."""
        if not self.results.exists():
            return None, None
        try:
            data = json.loads(self.results.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
            return None, RecordError(f"invalid JSON ({_one_line(str(err), 60)})")
        try:
            needs_config = isinstance(data, dict) and not isinstance(data.get("settings"), dict)
            return RunRecord.from_json(data, self.config() if needs_config else None, self.results), None
        except RecordError as err:
            return None, err

    def record(self) -> RunRecord | None:
        """The finished run's record, or None."""
        return self.read()[0]

    def is_finished(self) -> bool:
        """A usable ``results.json`` is here, or one of a newer format (:class:`NewerFormat`)."""
        record, broken = self.read()
        return record is not None or isinstance(broken, NewerFormat)

    def failure(self) -> str | None:
        """The failure recorded in ``failed.json`` (or a tool's ``error.txt``), in one line; None if
        the run did not fail. A ``failed.json`` beside a usable ``results.json`` is a failed re-run's
        (older versions wrote it there): the run finished. A tool's ``error.txt`` always counts."""
        if self.failed_file.is_file() and not self.is_finished():
            try:
                info = json.loads(self.failed_file.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                info = None
            if isinstance(info, dict):
                for key in ("error", "message", "reason", "exception"):
                    if info.get(key):
                        return _one_line(str(info[key]))
            return f"{FAILED} present"
        error = self.path / ERROR_TXT
        if error.is_file():
            try:
                lines = [ln for ln in error.read_text(encoding="utf-8", errors="replace").splitlines() if ln.strip()]
            except OSError:
                lines = []
            return _one_line(lines[-1]) if lines else f"{ERROR_TXT} present"
        return None

    def predictions(self, check: bool = True, heldout: bool = False):
        """``dev_predictions.tsv`` (``heldout``: ``heldout_predictions.tsv``) as a DataFrame (``split
        index label prediction``); for a run whose predictions are archived
        (:meth:`archive_predictions`), the archive with the labels read back from the task's files.
        OSError / ValueError when they are missing or unreadable, and (``check``) ValueError when they
        are not what the record was scored on (:meth:`check_predictions`)."""
        import pandas as pd

        tsv = self.heldout_file if heldout else self.predictions_file
        archive = self.path / ARCHIVES[tsv.name]
        if tsv.is_file() or not archive.is_file():
            if heldout and not tsv.is_file():
                raise OSError(f"{tsv}: no held-out predictions (a run trained without data.heldout_size)")
            frame = pd.read_csv(tsv, sep="\t")
            source = tsv.name
        else:
            frame = pd.read_csv(archive)
            frame.insert(2, "label", self._gold_labels(frame, archive.name))
            source = f"{archive.name} with the gold labels of the data folder"
        if check:
            self.check_predictions(frame, source)
        return frame

    def check_predictions(self, frame, source: str) -> None:
        """Refuse predictions that are not those the record was scored on (``ValueError``, one line
        naming the run): per split, the rows the record counts (``n_dev``), the gold labels'
        :func:`fingerprint` (records that keep it) and the metrics recomputed from the rows."""
        import numpy as np

        from maxpoolbert.core.metrics import compute

        record = self.record()
        if record is None or not {"split", "label", "prediction"} <= set(frame.columns):
            return
        where = f"{self.path}: {source}"
        counts, specs, kept_metrics = record.n_dev, record.eval_metrics(), record.metrics
        if HELDOUT in set(frame["split"]):  # the held-out rows, scored with the first dev split's metrics
            held = record.heldout or {}
            counts = {HELDOUT: held.get("n")} if held.get("n") is not None else {}
            specs = {HELDOUT: next(iter(specs.values()))} if specs else {}
            kept_metrics = held.get("metrics") or {}
        for split, n in counts.items():
            rows = frame[frame["split"] == split]
            if len(rows) != n:
                raise ValueError(f"{where} has {len(rows)} {split} rows, the run was scored on {n}: they are not "
                                 "the rows of its record (another copy of the data, or a damaged file)")
            kept = (record.dev_data.get(split) or {}).get("labels_sha256")
            if kept and fingerprint(rows["label"].tolist())["labels_sha256"] != kept:
                raise ValueError(f"{where}: the {split} gold labels differ from those the run was scored on "
                                 "(another copy of the data, reordered or relabelled?); point the data folder "
                                 "(GLUE_DIR) at the copy the run used")
        for split, spec in specs.items():
            rows = frame[frame["split"] == split]
            if rows.empty:
                continue
            again = compute(spec, rows["prediction"].to_numpy(), rows["label"].to_numpy())
            for key, value in again.items():
                kept = kept_metrics.get(key)
                if kept is None or (math.isnan(kept) and math.isnan(value)):
                    continue
                if not np.isclose(value, kept, rtol=0, atol=1e-6):
                    raise ValueError(f"{where}: {key} recomputed from its rows is {value:.6g}, the record says "
                                     f"{kept:.6g}: they are not the predictions and labels the run was scored on")

    def _gold_labels(self, frame, archive: str = PREDICTIONS_ARCHIVE) -> list:
        """The gold label of each (split, index) row of ``frame``, from the task's files in the data
        folder of the run's config (``data.glue_dir``: ``GLUE_DIR``): a dev split's file, or the
        training file for the held-out rows; OSError when they cannot be read."""
        cfg = self.config()
        if cfg is None:
            raise OSError(f"{self.path}: no {CONFIG}: the labels of {archive} cannot be read")
        try:
            task = task_from_config(cfg.task, str(self.config_file))  # data: a Task, nothing instantiated
            dirs = self.data_dirs(cfg)
            labels = {}
            for name in frame["split"].unique():
                folder = task.folder(dirs, name)
                if folder is None:
                    raise OSError(f"the gold labels of {self.path / archive} come from the "
                                  f"{task.name} {'train' if name == HELDOUT else name} file; {task.folder_hint()}")
                split = task.split(name)
                labels[name] = task.read_file(folder / split.file, split)[0]["label"]
        except UserError as err:  # the task's file is missing or unreadable
            raise OSError(str(err)) from None
        for split, index in zip(frame["split"], frame["index"], strict=True):
            if not 0 <= index < len(labels[split]):
                raise ValueError(f"{self.path}: {archive} has a {split} row {index}, the {task.name} "
                                 f"{'train' if split == HELDOUT else split} file of the data folder has only "
                                 f"{len(labels[split])} rows: another copy "
                                 "of the data; point the data folder (GLUE_DIR) at the copy the run used")
        return [labels[split][index] for split, index in zip(frame["split"], frame["index"], strict=True)]

    def archive_predictions(self) -> bool:
        """Replace ``dev_predictions.tsv`` and ``heldout_predictions.tsv`` by their archives
        (:data:`ARCHIVES`), the same rows without the gold labels (what a study commits: no data of the
        benchmark). False when there is nothing to archive."""
        import pandas as pd

        archived = False
        for tsv, archive in ARCHIVES.items():
            if (self.path / tsv).is_file():
                frame = pd.read_csv(self.path / tsv, sep="\t", dtype=str)
                write_atomic(self.path / archive, frame.drop(columns=["label"]).to_csv(index=False))
                (self.path / tsv).unlink()
                archived = True
        return archived

    def launches(self) -> list[dict]:
        out = []
        if self.launches_file.is_file():
            for line in self.launches_file.read_text().splitlines():
                try:
                    out.append(json.loads(line))
                except json.JSONDecodeError:
                    continue  # a line cut by a kill
        return out

    def job(self) -> DictConfig | None:
        """The stored Hydra job description (``.hydra/hydra.yaml``'s ``hydra`` node), or None."""
        return OmegaConf.load(self.hydra_file).hydra if self.hydra_file.is_file() else None

    # ------------------------------------------------------------------ claiming
    def stored_differences(self, cfg: DictConfig, hydra_cfg: DictConfig) -> list[tuple[str, Any, Any]]:
        """How the job config ``cfg`` differs from the one stored here (none stored: none), by
        :func:`settings` and the seed (a folder is one run: one seed; keys only one side has are not
        compared: :func:`differences`)."""
        stored = self.config()
        if stored is None:
            return []
        neutral = neutral_keys(hydra_cfg)

        def run_of(c: DictConfig) -> dict[str, Any]:
            return {**settings(c, neutral), "seed": c.get("seed")}

        return differences(run_of(stored), run_of(cfg), both_only=True)

    def never_trained(self) -> bool:
        """Whether the folder keeps nothing a run computed: no ``results.json``, no checkpoint, no
        predictions or weights, and every launch it records (at least one) stopped before its
        first optimizer step."""
        kept = (self.results, self.predictions_file, self.model_file)
        if any(p.exists() for p in kept) or (self.checkpoints.is_dir() and any(self.checkpoints.iterdir())):
            return False
        launches = self.launches()
        return bool(launches) and not any(_trained(e) for e in launches)

    def conflict(self, cfg: DictConfig, hydra_cfg: DictConfig) -> RunFolderConflict | None:
        """The refusal of a relaunch whose settings differ from the stored ones, naming the keys and
        the ways out; None when they are the same, nothing is stored, or the folder's run never
        trained (the new settings take it over: :meth:`claim`). Reads only: the config check asks
        it before anything loads, :meth:`claim` again under the folder's lock."""
        newer = self.newer_format(hydra_cfg)
        if newer is not None:
            return newer
        diff = self.stored_differences(cfg, hydra_cfg)
        if not diff or self.never_trained():
            return None
        key, shown, more = _differing(diff, hydra_cfg)
        where = shlex.quote(str(self.path))
        return RunFolderConflict(
            f"{key}={self.path}: the folder holds a run with other settings: {shown}{more}; relaunch with "
            f"the folder's own settings, choose another folder ({key}=), or move the old run aside: "
            f"mv {where} {where}.old")

    def newer_format(self, hydra_cfg: DictConfig) -> RunFolderConflict | None:
        """The refusal of a launch in a folder whose ``results.json`` a newer version wrote
        (:class:`NewerFormat`): this version would neither skip nor redo that run."""
        _, broken = self.read()
        if not isinstance(broken, NewerFormat):
            return None
        key = _differing([], hydra_cfg)[0]
        return RunFolderConflict(f"{key}={self.path}: its {RESULTS} is format {broken.version}, written by a newer "
                                 f"version of maxpoolbert (this one reads formats up to {FORMAT}); relaunch with "
                                 f"that version, or choose another folder ({key}=)")

    def claim(self, cfg: DictConfig, hydra_cfg: DictConfig) -> bool:
        """Make this folder the run's: write its config on the first start; on a relaunch, refuse
        settings that differ from the stored ones (:class:`RunFolderConflict`, naming the keys and
        the ways out), unless the folder's run never trained (:meth:`never_trained`): then the new
        settings take the folder over and its ``.hydra/`` is kept aside (``.hydra.replaced``).
        Returns True when this launch's config was written (first start or takeover)."""
        newer = self.newer_format(hydra_cfg)
        if newer is not None:
            raise newer
        if self.config_file.is_file():
            diff = self.stored_differences(cfg, hydra_cfg)
            if not diff:
                return False
            conflict = self.conflict(cfg, hydra_cfg)
            if conflict is not None:
                raise conflict
            key, shown, more = _differing(diff, hydra_cfg)
            kept = set_aside(self.path / CONFIG_DIR, REPLACED)
            log.info("%s=%s: the run there stopped before its first training step; this launch's settings take the "
                     "folder over: %s%s (old settings kept in %s)", key, self.path, shown, more, kept.name)
        (self.path / CONFIG_DIR).mkdir(parents=True, exist_ok=True)
        write_atomic(self.hydra_file, OmegaConf.to_yaml(OmegaConf.create({"hydra": hydra_cfg})))
        overrides = list(hydra_cfg.overrides.task) if isinstance(hydra_cfg.overrides.task, ListConfig) else []
        write_atomic(self.path / OVERRIDES, OmegaConf.to_yaml(OmegaConf.create(overrides)))
        # last: its presence marks a started run; unresolved, as Hydra saves it: no machine path in it
        write_atomic(self.config_file, OmegaConf.to_yaml(cfg))
        return True

    # ------------------------------------------------------------------ writing
    def clean_stale_tmp(self) -> list[Path]:
        """Remove temporary files that a killed process left in the folder (and its checkpoints)."""
        removed = []
        for folder in (self.path, self.checkpoints):
            if folder.is_dir():
                for path in folder.glob(".*.tmp"):
                    path.unlink(missing_ok=True)
                    removed.append(path)
        if removed:
            log.info("removed %d stale temporary file(s) in %s", len(removed), self.path)
        return removed

    def set_aside_results(self) -> Path:
        return set_aside(self.results)

    def clear_failure(self) -> None:
        self.failed_file.unlink(missing_ok=True)
        (self.path / RERUN_FAILED).unlink(missing_ok=True)

    def write_results(self, record: RunRecord) -> None:
        """``results.json``, last and atomically: its presence makes the run finished."""
        write_json_atomic(self.results, record.to_json())

    def write_failed(self, err: BaseException, user_error: bool, traceback: str | None, steps: int,
                     quiet: bool = False) -> Path:
        """``failed.json``: why the run failed (a user error has no traceback) and how far it got
        (``steps``: optimizer steps). ``quiet``: a failure to write it is not reported (the run's
        own error already says that this filesystem fails). A failed re-run of a finished run
        writes ``rerun_failed.json`` instead: the earlier results stay the run's. Returns the file."""
        path = self.path / RERUN_FAILED if self.is_finished() else self.failed_file
        try:
            write_json_atomic(path, {"error": f"{type(err).__name__}: {err}", "user_error": user_error,
                                                 "steps": steps, "traceback": traceback, "time": time.time()})
        except (OSError, WriteFailed) as write_err:  # a full disk: the run's own error says what to do
            (log.debug if quiet else log.error)("could not write %s: %s", path, write_err)
        return path

    def write_predictions(self, evals: dict[str, dict], regression: bool, path: Path | None = None) -> None:
        """``dev_predictions.tsv`` (or ``path``: ``heldout_predictions.tsv``, whose index is the row's
        position in the training file): ``split index label prediction``, every row in file order."""
        fmt = (lambda x: repr(float(x))) if regression else (lambda x: str(int(x)))
        lines = ["split\tindex\tlabel\tprediction\n"]
        for split, rows in evals.items():
            for i, y, p in zip(rows["index"], rows["label"], rows["prediction"], strict=True):
                lines.append(f"{split}\t{int(i)}\t{fmt(y)}\t{fmt(p)}\n")
        write_atomic(path or self.predictions_file, "".join(lines))

    def save_weights(self, model: Any) -> None:
        """``model.safetensors`` (weights only), atomically; a full disk (or quota, or read-only
        filesystem) raises :class:`~maxpoolbert.core.errors.WriteFailed`, leaving no partial file."""
        from safetensors.torch import save_model

        def write(tmp: Path) -> None:
            save_model(model, str(tmp))
            as_new_file(tmp)  # safetensors writes its file 0600

        # safetensors' own error type carries the OS error in its text: every exception is looked at
        write_through(self.model_file, write)

    def record_launch(self, outcome: str, quiet: bool = False, **extra: Any) -> None:
        """Append what this launch did to the run (``launches.jsonl``; one short line, appended).
        ``quiet``: a failure to write it is not reported (see :meth:`write_failed`)."""
        entry = {"launch": os.environ.get(LAUNCH_ENV), "outcome": outcome, "time": time.time(),
                 "host": socket.gethostname(), "pid": os.getpid(), **extra}
        try:
            self.path.mkdir(parents=True, exist_ok=True)
            with self.launches_file.open("a") as f:
                f.write(json.dumps(entry) + "\n")
        except OSError as err:  # never let bookkeeping hide the run's own outcome
            (log.debug if quiet else log.warning)("could not record the launch in %s: %s", self.launches_file, err)

    def record_data_dirs(self, cfg: DictConfig) -> None:
        """Note the data folders this launch reads (``data.glue_dir``, ``data.superglue_dir`` as
        resolved here, made absolute) in :data:`LOCAL_DATA`, for :meth:`data_dirs`; none set: nothing
        is noted. Bookkeeping: a failed write is one debug line."""
        dirs = {name: os.path.abspath(os.path.expanduser(str(value)))
                for name, value in benchmark_dirs(cfg.data).items() if value}
        try:
            if dirs:
                write_json_atomic(self.path / LOCAL_DATA, {**dirs, "host": socket.gethostname()})
        except (OSError, UserError) as err:
            log.debug("could not note the data folders in %s: %s", self.path / LOCAL_DATA, err)

    def data_dirs(self, cfg: DictConfig) -> dict[str, str | None]:
        """Each benchmark's data folder for this run: its config's (``data.glue_dir``: the shell's
        ``GLUE_DIR``); one the config leaves null falls back on the folder the run read on this
        machine (:meth:`record_data_dirs`), when that folder exists here."""
        try:
            noted = json.loads((self.path / LOCAL_DATA).read_text())
        except (OSError, ValueError):
            noted = {}
        noted = noted if isinstance(noted, dict) else {}
        out: dict[str, str | None] = {}
        for name, value in benchmark_dirs(cfg.data).items():
            local = noted.get(name)
            out[name] = value or (local if isinstance(local, str) and os.path.isdir(local) else None)
        return out

    # ------------------------------------------------------------------ the lock
    def lock(self) -> None:
        """Hold this folder's lock until :meth:`unlock`: an OS file lock (``flock``) on ``.lock``,
        which the kernel releases when the process ends, also when it is killed, so no lock is
        ever stale. The file then names the holder (PID, host, since). Another process holding it:
        :class:`RunFolderBusy`, naming it, and nothing in the folder is changed. A filesystem
        without file locks: one warning, and the run goes on unlocked."""
        if self._lock_fd is not None:
            return
        self.path.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.lock_file, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as err:
            os.close(fd)
            if err.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise RunFolderBusy(self.holder()) from None
            log.warning("%s cannot be locked (%s): the run goes on without a lock; start no other run in it",
                        self.path, err.strerror or err)
            return
        self._lock_fd = fd
        try:  # in place, never by renaming: the lock belongs to this file
            os.ftruncate(fd, 0)
            os.write(fd, (json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "since": time.time()})
                          + "\n").encode())
        except OSError:
            pass  # a full disk: held, unnamed

    def unlock(self) -> None:
        """Let the folder's lock go (the lock file stays: removing it would race with a next holder)."""
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    def holder(self) -> str:
        """Who holds the folder's lock, as the lock file names it: ``process 123 on host (since ...)``."""
        try:
            info = json.loads(self.lock_file.read_text())
            since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(float(info["since"])))
            return f"process {int(info['pid'])} on {info['host']} (since {since})"
        except (OSError, ValueError, KeyError, TypeError):
            return "another process (it has not named itself yet)"

    def in_use(self, key: str) -> str:
        """The one-line refusal of a launch that finds the folder locked: who holds it, and what to do."""
        return (f"{key}={self.path}: the folder is in use by {self.holder()}; wait until that run ends, or choose "
                f"another folder ({key}=)")

    def wandb_id(self, make: Any) -> str:
        """The W&B run id of this folder, made by ``make()`` on its first start and kept in
        ``wandb_id``, so that a resumed run continues its own W&B run."""
        path = self.path / WANDB_ID
        if path.is_file() and path.read_text().strip():
            return path.read_text().strip()
        self.path.mkdir(parents=True, exist_ok=True)
        write_atomic(path, make() + "\n")
        return path.read_text().strip()

    # ------------------------------------------------------------------ checkpoints
    def _checkpoint_candidates(self) -> list[Path]:
        """``last.ckpt``, then the other ``*.ckpt`` in ``checkpoints/``, newest first."""
        folder = self.checkpoints
        if not folder.is_dir():
            return []
        last = folder / LAST_CKPT
        others = sorted((p for p in folder.glob("*.ckpt") if p.name != LAST_CKPT),
                        key=lambda p: p.stat().st_mtime, reverse=True)
        return ([last] if last.exists() else []) + others

    def relaunch_hint(self) -> str:
        """What relaunching the same command does now, read only: ``resumes from checkpoints/last.ckpt
        (saved after epoch 2, step 16)``, or ``starts the run again (no checkpoint)``."""
        for path in self._checkpoint_candidates():
            position = checkpoint_position(path)
            if position is not None:
                return (f"resumes from {path.relative_to(self.path)} (saved after epoch {position[0]}, "
                        f"step {position[1]})")
        return "starts the run again (no checkpoint)"

    def resume_checkpoint(self) -> Path | None:
        """The checkpoint to resume from: ``last.ckpt`` if it loads, else the newest other intact
        ``*.ckpt`` in ``checkpoints/``. Checkpoints that cannot be loaded are moved aside
        (``<name>.corrupt``) with one warning each, so a relaunch always makes progress."""
        for path in self._checkpoint_candidates():
            problem = checkpoint_problem(path)
            if problem is None:
                return path
            moved = set_aside(path)
            log.warning("checkpoint %s cannot be loaded (%s): moved to %s", path, problem, moved.name)
        return None

    def remove_if_refused_here(self) -> bool:
        """Remove this folder when this launch created it (:func:`note_new_folder`) and it keeps
        nothing a run computed (:meth:`never_trained`) and no launch but this process's: a run
        refused before its first step leaves nothing behind. Returns whether it was removed."""
        if self.path.absolute() not in _CREATED_HERE or not self.never_trained():
            return False
        if any(e.get("pid") != os.getpid() for e in self.launches()):
            return False
        top = _CREATED_HERE.pop(self.path.absolute())
        shutil.rmtree(self.path, ignore_errors=True)
        parent = self.path.absolute().parent
        while top != self.path.absolute() and parent.is_relative_to(top):  # the empty folders above it made here
            try:
                parent.rmdir()  # only when empty: another run's folder beside it keeps it
            except OSError:
                break
            parent = parent.parent
        return not self.path.exists()

    def remove_checkpoints(self) -> None:
        """After success: the resume checkpoints go; damaged ones set aside (``*.corrupt``) stay for
        inspection."""
        folder = self.checkpoints
        for path in folder.glob("*.ckpt"):
            path.unlink(missing_ok=True)
        if folder.is_dir() and not any(folder.iterdir()):
            folder.rmdir()


def _trained(launch: dict) -> bool:
    """Whether a launch (a ``launches.jsonl`` line) took an optimizer step. Lines of older versions
    say no ``steps``: a refused or skipped launch ran nothing, and a failure by a user error came
    before training (those versions raised them only while building the run); any other line may
    have trained."""
    if launch.get("outcome") in ("refused", "skipped"):
        return False
    steps = launch.get("steps")
    if isinstance(steps, int | float) and not isinstance(steps, bool):
        return steps > 0
    return not (launch.get("outcome") == "failed" and str(launch.get("error", "")).startswith("UserError"))


def checkpoint_position(path: Path) -> tuple[int, int] | None:
    """``(epochs done, optimizer steps)`` of an intact resume checkpoint, else None."""
    if checkpoint_problem(path) is not None:
        return None
    import torch

    state = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    return int(state.get("epoch", -1)) + 1, int(state["global_step"])


def _differing(diff: list[tuple[str, Any, Any]], hydra_cfg: DictConfig) -> tuple[str, str, str]:
    """The folder's setting (``hydra.run.dir`` or ``hydra.sweep.dir``) and the differing keys, as
    the messages show them: ``optimizer.lr=0.001 (stored: 2e-05)``, at most six, then how many more."""
    shown = ", ".join(f"{k}={show(new)} (stored: {show(old)})" for k, old, new in diff[:6])
    more = f" and {len(diff) - 6} more" if len(diff) > 6 else ""
    run = str(hydra_cfg.mode).rpartition(".")[2] == "RUN"  # RunMode.RUN live, RUN as a stored or composed node
    return "hydra.run.dir" if run else "hydra.sweep.dir", shown, more


def checkpoint_problem(path: Path) -> str | None:
    """Why ``path`` cannot be a resume checkpoint (empty, truncated, damaged), or None.

    Checks the zip container that ``torch.save`` writes (every member's CRC) and loads it
    memory-mapped (the tensors' bytes are not read twice) with ``weights_only=True``: tensors and
    plain values only, so a pickled object planted in a run folder is refused, never run."""
    try:
        if path.stat().st_size == 0:
            return "empty file"
        with zipfile.ZipFile(path) as archive:
            bad = archive.testzip()
        if bad is not None:
            return f"damaged member {bad}"
        import torch

        state = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        if not isinstance(state, dict) or "state_dict" not in state or "global_step" not in state:
            return "not a Lightning checkpoint"
    except pickle.UnpicklingError:  # torch's weights-only loader refused an object
        return "it holds objects other than tensors and plain values, which are never unpickled"
    except Exception as err:  # noqa: BLE001 - any failure to read means: not usable
        return f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}".rstrip(": ")
    return None


# ---------------------------------------------------------------------------- a sweep's folder
def record_in_use(sweep_dir: str | os.PathLike, folder: RunFolder, message: str) -> None:
    """A job of this launch refused because another process runs its folder: one line in the sweep
    folder's ``refused_in_use.jsonl`` (the job's own folder is the other process's: untouched)."""
    entry = {"launch": os.environ.get(LAUNCH_ENV), "folder": str(folder.path), "error": message,
             "time": time.time(), "host": socket.gethostname(), "pid": os.getpid()}
    try:
        with (Path(sweep_dir) / IN_USE).open("a") as f:
            f.write(json.dumps(entry) + "\n")
    except OSError as err:
        log.warning("could not record the refusal in %s: %s", Path(sweep_dir) / IN_USE, err)


def refused_in_use(sweep_dir: str | os.PathLike, launch: str | None) -> list[tuple[Path, str]]:
    """``(folder, message)`` of the jobs of ``launch`` refused because their folder was in use."""
    path = Path(sweep_dir) / IN_USE
    out = []
    if path.is_file():
        for line in path.read_text().splitlines():
            try:
                entry = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(entry, dict) and entry.get("launch") == launch:
                out.append((Path(entry.get("folder", "")), str(entry.get("error", ""))))
    return out


def find_run_folders(root: str | os.PathLike) -> Iterator[RunFolder]:
    """Every run folder under ``root`` (:meth:`RunFolder.looks_like_a_run`), in sorted order; hidden
    folders and side folders (wandb, checkpoints, ...) are not searched. Symbolic links to folders
    are followed (runs of several sweeps gathered in one folder), each real folder once."""
    seen: set[str] = set()
    for dirpath, dirnames, _ in os.walk(root, followlinks=True):
        real = os.path.realpath(dirpath)
        if real in seen:
            dirnames[:] = []
            continue
        seen.add(real)
        dirnames[:] = sorted(d for d in dirnames if not d.startswith(".") and d not in SIDE_FOLDERS)
        folder = RunFolder(dirpath)
        if folder.looks_like_a_run():
            yield folder


def _one_line(text: str, limit: int = 120) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"
