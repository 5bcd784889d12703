"""A run folder: :class:`RunFolder`, one run's folder (Hydra's run or multirun job directory) and
the rules that make it one run. It holds

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

The record it holds is :mod:`maxpoolbert.runs.record`, a run's identity :mod:`maxpoolbert.runs.identity`,
the atomic writes :mod:`maxpoolbert.core.io`. Nothing outside these modules spells a run-folder file
name or a ``results.json`` key. This module imports no torch at import time, so the sweep callbacks
can use it cheaply.
"""

from __future__ import annotations

import errno
import fcntl
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
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, ListConfig, OmegaConf

from maxpoolbert.core.errors import UserError, WriteFailed
from maxpoolbert.core.io import (
    as_new_file,
    set_aside,
    write_atomic,
    write_json_atomic,
    write_through,
)
from maxpoolbert.runs.identity import differences, neutral_keys, settings, show
from maxpoolbert.runs.record import (
    FORMAT,
    RESULTS,
    NewerFormat,
    RecordError,
    RunRecord,
    fingerprint,
)
from maxpoolbert.tasks.benchmarks import benchmark_dirs
from maxpoolbert.tasks.task import HELDOUT
from maxpoolbert.tasks.task import from_config as task_from_config

log = logging.getLogger("maxpoolbert")

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
REPLACED = ".replaced"  # .hydra/ of a run that never trained, kept aside when other settings take its folder over
WEIGHTS = ("saved", "missing", "off")  # results.json "weights": written; could not be written; save_model=false
LAUNCH_ENV = "MAXPOOLBERT_LAUNCH"  # set by the sweep callback: which launch a job belongs to
SIDE_FOLDERS = {"wandb", "__pycache__", "lightning_logs", CHECKPOINTS, "csv", "submission"}  # never hold runs


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
