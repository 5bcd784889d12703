"""What a finished run records: ``results.json``.

:class:`RunRecord`: what a finished run records (``results.json``). :mod:`maxpoolbert.launch.run`
writes it; the report, selection, predict, export, sweeps and callbacks read it. Every record
carries its ``format`` (:data:`FORMAT`); records written by older versions are upgraded here, when
read, by one path (:func:`upgrade`), and nowhere else; a newer format is refused (:class:`NewerFormat`).

Imports no torch.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from omegaconf import DictConfig

from maxpoolbert.runs.identity import settings, settings_id
from maxpoolbert.tasks.task import TaskInfo
from maxpoolbert.tasks.task import task_info as configured_task_info

RESULTS = "results.json"


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
