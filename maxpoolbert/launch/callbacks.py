"""Hydra callbacks: the config is checked before anything runs; a sweep ends with a summary of
what each job did in this launch, and a non-zero exit if any job failed."""

from __future__ import annotations

import logging
import math
import os
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from maxpoolbert.config.schema import check, task_file
from maxpoolbert.core.errors import UserError, check_writable_folder, fail
from maxpoolbert.launch.sweeps import refused_in_use
from maxpoolbert.model import folder as model_folder
from maxpoolbert.runs.folder import (
    LAUNCH_ENV,
    RunFolder,
    RunFolderBusy,
    RunFolderConflict,
    find_run_folders,
    note_new_folder,
)
from maxpoolbert.tasks import task as tasks
from maxpoolbert.tasks.benchmarks import BENCHMARK_DIRS, benchmark_dirs, check_data_dir

log = logging.getLogger("maxpoolbert")

OUTCOMES = {  # outcome recorded by a job -> how the summary names it
    "finished": "finished", "rerun": "re-run (broken results.json)", "skipped": "skipped (already finished)",
    "failed": "failed", "interrupted": "interrupted", "refused": "refused (folder holds other settings)",
    "in_use": "refused (folder in use)",
}
# what to do about the jobs of each kind that did not finish, for the summary's last line
REMEDIES = {
    "failed": "{n} job(s) failed: re-run the same command to retry them",
    "interrupted": "{n} job(s) interrupted: re-run the same command to resume them",
    "refused": ("{n} job(s) refused: their folders hold other settings or are in use (listed above): run them "
                "with their folders' own settings, in another folder (hydra.sweep.dir=), after the process "
                "using a folder has ended, or move a folder aside (mv <folder> <folder>.old)"),
}
KIND = {"failed": "failed", "interrupted": "interrupted", "refused": "refused", "in_use": "refused"}


class SweepSummary(Callback):
    """Tags every job of this launch (``MAXPOOLBERT_LAUNCH``, inherited by the launcher's
    processes and SLURM jobs), and after the sweep counts what the jobs recorded in their folders'
    ``launches.jsonl`` (finished, skipped, re-run, failed, interrupted, refused) and the jobs
    refused because another process ran their folder (noted in the sweep folder: theirs is not
    touched). The last line says what to do about each kind of job that did not finish."""

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        os.environ[LAUNCH_ENV] = uuid.uuid4().hex

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        root = Path(config.hydra.sweep.dir)
        launch = os.environ.get(LAUNCH_ENV)
        counts: Counter[str] = Counter()
        unfinished: list[tuple[str, Path, str]] = []  # (kind, folder, why)
        resumed = 0
        for folder in find_run_folders(root):
            mine = [e for e in folder.launches() if e.get("launch") == launch]
            if not mine:
                continue  # a folder of another launch
            last = mine[-1]
            counts[last["outcome"]] += 1
            resumed += bool(last.get("resumed"))
            if last["outcome"] in KIND:
                unfinished.append((KIND[last["outcome"]], folder.path, last.get("error", "")))
        for path, error in refused_in_use(root, launch):
            counts["in_use"] += 1
            unfinished.append(("refused", path, error))
        parts = [f"{counts[k]} {name}" for k, name in OUTCOMES.items() if counts[k] or k in ("finished", "failed")]
        if resumed:
            parts.append(f"{resumed} resumed from a checkpoint")
        log.info("sweep %s: %s", root, ", ".join(parts))
        for kind, path, error in unfinished:
            log.error("%s: %s%s", kind, path, f": {error}" if error else "")
        kinds = Counter(kind for kind, _, _ in unfinished)
        if kinds:
            raise SystemExit("error: " + "; ".join(REMEDIES[k].format(n=kinds[k]) for k in REMEDIES if kinds[k]))


class BestTrial(Callback):
    """``hparams_search=optuna``: after the search, ``best_trial.yaml`` beside Optuna's
    ``optimization_results.yaml``."""

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        write_best_trial(Path(config.hydra.sweep.dir), os.environ.get(LAUNCH_ENV))


def write_best_trial(root: Path, launch: str | None) -> None:
    """``best_trial.yaml``: the number (Optuna's trial number = the job number), score, overrides
    and folder of this launch's best trial."""
    best = None
    for folder in find_run_folders(root):
        if not any(e.get("launch") == launch for e in folder.launches()):
            continue
        record, job = folder.record(), folder.job()
        if record is None or not math.isfinite(record.score) or job is None:
            continue
        entry = (record.score, -int(job.job.num), folder.path, list(job.overrides.task))
        best = entry if best is None or entry[:2] > best[:2] else best
    if best is not None:
        score, num, folder, overrides = best
        OmegaConf.save(OmegaConf.create({"number": -num, "score": score, "overrides": overrides,
                                         "run_dir": str(folder)}), root / "best_trial.yaml")
        log.info("best trial: #%d, score %.4f (%s)", -num, score, folder)


class CheckConfig(Callback):
    """Refuses a bad setting right after Hydra composes the config: before torch & co. are
    imported, before any folder is made, and for a sweep before any job starts (a value swept
    over is checked again in each job: a bad one fails that job alone). A single run also has its
    task's data files and, when its folder holds a run already, that run's settings checked here."""

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        try:
            check_single_run(config)
        except (UserError, RunFolderConflict) as err:
            fail(err if isinstance(err, UserError) else str(err))

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        try:
            check_settings(config, "hydra.sweep.dir")
        except UserError as err:
            fail(err)


def check_single_run(config: DictConfig) -> None:
    """What :class:`CheckConfig` checks before a single run (``config`` with its ``hydra`` node, as
    composed): its settings, its task's data files, and when its folder holds a run already, that
    run's settings (a refusal is recorded in the folder's ``launches.jsonl``). Raises the
    UserError (or :class:`~maxpoolbert.runs.RunFolderConflict`); :func:`maxpoolbert.train` too."""
    note_new_folder(os.path.abspath(str(config.hydra.run.dir)))  # before Hydra makes it
    check_settings(config, "hydra.run.dir")
    dirs = benchmark_dirs(OmegaConf.select(config, "data"))
    tasks.from_config(config.task, task_file(OmegaConf.to_container(config.hydra, resolve=False)))\
        .check_files(dirs)
    folder = RunFolder(os.path.abspath(str(config.hydra.run.dir)))
    if not folder.config_file.is_file():
        return
    try:  # as the run would refuse it, under the folder's lock, without loading anything first
        folder.lock()
    except RunFolderBusy:
        return  # another process runs it: the run says so, and leaves the folder untouched
    try:
        conflict = folder.conflict(config, config.hydra)
        if conflict is not None:
            folder.record_launch("refused", error=str(conflict))
            raise conflict
    finally:
        folder.unlock()


def check_settings(config: DictConfig, folder_key: str) -> None:
    """The settings, data folders, model folders, the run (or sweep) folder and the cache folder
    of a composed config: the first bad one as a UserError."""
    # on the command line but missing here: swept, each job has its value
    given = {o.split("=", 1)[0].lstrip("+~") for o in config.hydra.overrides.task}
    check(config, swept=given)
    for key in (*(f"data.{key}" for key in BENCHMARK_DIRS.values()), "task.data_dir"):
        check_data_dir(key, OmegaConf.select(config, key))
    check_model_folders(config)
    check_writable_folder(OmegaConf.select(config, folder_key), folder_key)
    if config.data.get("cache_dir"):
        check_writable_folder(config.data.cache_dir, "data.cache_dir")


# model.<part> instantiated with this target -> loads from its name_or_path: the weights (encoder)
# or the tokenizer's files
LOADERS = {"encoder": ("maxpoolbert.model.encoders.pretrained", "weights"),
           "tokenizer": ("maxpoolbert.model.encoders.tokenizer", "tokenizer")}


def check_model_folders(config: DictConfig) -> None:
    """The files of each local model folder the run loads from (:mod:`maxpoolbert.model.folder`),
    named by the setting the user gives (``model.name_or_path``, which the encoder and tokenizer
    read, or their own ``name_or_path``). A value that is not set yet (swept) is left to each job."""
    needs: dict[str, dict[str, Any]] = {}
    for part, (target, what) in LOADERS.items():
        node = OmegaConf.select(config, f"model.{part}")
        if not isinstance(node, DictConfig) or node.get("_target_") != target:
            continue
        try:
            value = OmegaConf.select(config, f"model.{part}.name_or_path")
        except OmegaConfBaseException:  # interpolates a missing value
            continue
        if not value:
            continue
        key = "model.name_or_path" if value == OmegaConf.select(config, "model.name_or_path", default=None) \
            else f"model.{part}.name_or_path"
        needs.setdefault(str(value), {"key": key, "weights": False, "tokenizer": False})[what] = True
    for value, need in needs.items():
        model_folder.check(value, need["key"], weights=need["weights"], tokenizer=need["tokenizer"])
