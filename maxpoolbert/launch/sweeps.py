"""What the sweep machinery adds to Hydra's (the plugin classes are in
``hydra_plugins/maxpoolbert_plugins``, where Hydra looks for plugins):

* :class:`SkipFinishedLaunches` (any launcher): a relaunched sweep launches only the jobs whose
  run folder is not finished, so a finished 180-run grid relaunched on SLURM submits nothing;
* :class:`WatchedSlurmLaunch` (SLURM): refuses, in one line, a submission that cannot work (no
  ``sbatch``, a partition that does not exist, resources no node has) and a job that can never
  start (pending for ``PartitionConfig``, ``PartitionTimeLimit`` ...), instead of waiting forever.

No torch here: Hydra imports plugins on every command.
"""

from __future__ import annotations

import _thread
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hydra.core.hydra_config import HydraConfig
from hydra.core.utils import JobReturn, JobStatus
from omegaconf import OmegaConf, open_dict

from maxpoolbert.core.errors import UserError, check_path_names, fail
from maxpoolbert.runs.folder import LAUNCH_ENV, RunFolder

log = logging.getLogger("maxpoolbert")


# ---------------------------------------------------------------------------- skip finished jobs
class _SkipFinished:
    """A launcher in front of the real one: finished jobs are answered from their
    ``results.json`` (and recorded as skipped); the others go to the real launcher."""

    def __init__(self, launcher, hydra_context, config) -> None:
        self.launcher, self.hydra_context, self.config = launcher, hydra_context, config
        self.composed: dict[tuple[str, ...], Any] = {}  # the sweeper's validation composed these already

    def __getattr__(self, name: str) -> Any:
        return getattr(self.launcher, name)

    def compose(self, overrides: Sequence[str]):
        """A job's whole config (what ``hydra.sweep.subdir`` names its folder from)."""
        return self.hydra_context.config_loader.load_sweep_config(self.config, list(overrides))

    def _job(self, overrides: Sequence[str], num: int):
        cfg = self.composed.pop(tuple(overrides), None) or self.compose(overrides)
        with open_dict(cfg.hydra.job):
            cfg.hydra.job.num = num
        HydraConfig.instance().set_config(cfg)
        return cfg, RunFolder(Path(str(cfg.hydra.sweep.dir)) / str(cfg.hydra.sweep.subdir))

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        if "hydra.job.num" in str(OmegaConf.to_container(self.config.hydra.sweep)["subdir"]):
            self.composed.clear()
            return self.launcher.launch(job_overrides, initial_job_idx=initial_job_idx)  # folders named by number
        returns: list[JobReturn | None] = [None] * len(job_overrides)
        for i, overrides in enumerate(job_overrides):
            cfg, folder = self._job(overrides, initial_job_idx + i)
            try:  # before any job runs: Hydra's mkdir of the job folder would fail with a traceback
                check_path_names(folder.path, "hydra.sweep.subdir", folder.path.name,
                                 "shorter job folder names: fewer or shorter swept values, or "
                                 "hydra.sweep.subdir=${hydra.job.num}")
            except UserError as err:
                fail(err)
            record = folder.record() if cfg.get("skip_finished", True) else None
            if record is None or folder.stored_differences(_job_config(cfg), cfg.hydra):
                continue  # to be run; or refused by the job itself, which names the differing keys
            folder.record_launch("skipped")
            returns[i] = JobReturn(overrides=list(overrides), cfg=cfg, hydra_cfg=cfg.hydra, working_dir=str(folder.path),
                                   task_name=cfg.hydra.job.name, status=JobStatus.COMPLETED,
                                   _return_value=record.score)
        todo = [i for i, r in enumerate(returns) if r is None]
        if len(todo) < len(job_overrides):
            log.info("%d of %d job(s) already finished: not launched%s", len(job_overrides) - len(todo),
                     len(job_overrides), "" if todo else " (nothing to do)")
        if todo:
            # Jobs keep their numbers only when they stay contiguous; names do not depend on them.
            launched = self.launcher.launch([job_overrides[i] for i in todo], initial_job_idx=initial_job_idx + todo[0])
            for i, ret in zip(todo, launched, strict=True):
                returns[i] = ret
        return returns  # type: ignore[return-value]


def _job_config(cfg):
    """The job's own config (what the task function gets): without the ``hydra`` node."""
    job = cfg.copy()
    with open_dict(job):
        del job["hydra"]
    return job


class SkipFinishedLaunches:
    """Mixin for a Hydra sweeper: its launcher launches only unfinished jobs."""

    def setup(self, *, hydra_context, task_function, config) -> None:
        super().setup(hydra_context=hydra_context, task_function=task_function, config=config)  # type: ignore[misc]
        self.launcher = _SkipFinished(self.launcher, hydra_context, config)

    def validate_batch_is_legal(self, batch: Sequence[Sequence[str]]) -> None:
        """Hydra's check that every job composes, keeping what it composed for the launcher, which
        needs each job's config too (its folder): once per job instead of twice (about 0.13 s a job,
        in the sweep's process before any job starts)."""
        for overrides in batch:
            self.launcher.composed[tuple(overrides)] = self.launcher.compose(overrides)


# ---------------------------------------------------------------------------- SLURM
# Pending reasons that waiting does not cure (the job asks for more than the partition allows).
NEVER_STARTS = ("PartitionConfig", "PartitionTimeLimit", "PartitionNodeLimit", "BadConstraints", "InvalidAccount",
                "InvalidQOS", "QOSMaxWallDurationPerJobLimit", "QOSMaxCpuPerJobLimit", "QOSMaxMemoryPerJob",
                "QOSMaxGRESPerJob", "QOSMaxNodePerJobLimit", "AssocMaxWallDurationPerJobLimit")
FIX = ("hydra.launcher.partition=, timeout_min=, cpus_per_task=, mem_gb=, gpus_per_node= "
       "(hydra/launcher=slurm_cpu for CPU-only partitions)")
GIVE_UP_AFTER_S = 20.0  # a never-start reason must persist this long (the scheduler settles first)
POLL_S = 5.0


class SlurmError(SystemExit):
    """One line, no traceback: the sweep cannot run on this cluster as configured."""

    def __init__(self, message: str) -> None:
        super().__init__(f"error: {message}")


def _first_line(err: BaseException) -> str:
    text = str(getattr(err, "output", None) or err)
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    errors = [line for line in lines if "error" in line.lower()]
    return (errors or lines or [type(err).__name__])[0]


def pending_reasons(job_ids: Sequence[str]) -> dict[str, str]:
    """``{job id: reason}`` of the pending jobs among ``job_ids`` (array tasks one by one)."""
    if not job_ids:
        return {}
    parents = sorted({j.split("_")[0] for j in job_ids})
    proc = subprocess.run(["squeue", "-h", "-r", "-t", "PENDING", "-o", "%i|%r", "-j", ",".join(parents)],
                          capture_output=True, text=True, timeout=60)
    out = {}
    for line in proc.stdout.splitlines():
        job, _, reason = line.partition("|")
        if job.strip() in job_ids:
            out[job.strip()] = reason.strip()
    return out


class WatchedSlurmLaunch:
    """Mixin for submitit's SLURM launcher: submission errors are one line, and a job pending for
    a reason that waiting does not cure cancels the sweep's jobs and ends it with one line."""

    def launch(self, job_overrides, initial_job_idx):
        if shutil.which("sbatch") is None:
            raise SlurmError("hydra/launcher=slurm submits to a SLURM cluster, but sbatch is not on the PATH; "
                             "run on a login node, or choose hydra/launcher=basic, joblib or submitit_local")
        import submitit

        submitted: list = []
        real_map_array = submitit.AutoExecutor.map_array

        def map_array(executor, fn, *iterables):  # keeps the jobs for the watcher
            try:
                jobs = real_map_array(executor, fn, *iterables)
            except (submitit.core.utils.FailedSubmissionError, submitit.core.utils.UncompletedJobError,
                    subprocess.CalledProcessError, OSError) as err:
                raise SlurmError(f"SLURM refused the submission: {_first_line(err)}; change {FIX}") from None
            submitted.extend(jobs)
            return jobs

        stop = threading.Event()
        verdict: list[str] = []
        watcher = threading.Thread(target=self._watch, args=(submitted, stop, verdict), daemon=True)
        submitit.AutoExecutor.map_array = map_array
        # The watcher ends the wait with _thread.interrupt_main(), which does nothing while SIGINT is
        # ignored (a background job of a non-interactive shell, nohup, CI): Python's handler meanwhile.
        sigint = signal.getsignal(signal.SIGINT)
        if sigint in (signal.SIG_IGN, signal.SIG_DFL, None):
            signal.signal(signal.SIGINT, signal.default_int_handler)
        watcher.start()
        try:
            return super().launch(job_overrides, initial_job_idx)  # type: ignore[misc]
        except BaseException:  # the watcher interrupts the wait for results (KeyboardInterrupt)
            if verdict:
                raise SlurmError(verdict[0]) from None
            raise
        finally:
            stop.set()
            submitit.AutoExecutor.map_array = real_map_array
            if sigint in (signal.SIG_IGN, signal.SIG_DFL):
                signal.signal(signal.SIGINT, sigint)

    @staticmethod
    def _watch(jobs: list, stop: threading.Event, verdict: list[str]) -> None:
        since: dict[str, float] = {}
        while not stop.wait(POLL_S):
            try:  # a query that fails (a loaded or restarting controller) is asked again at the next poll
                ids = [j.job_id for j in list(jobs) if not j.done()]
                reasons = pending_reasons(ids)
            except Exception:
                continue
            now = time.time()
            for job_id, reason in reasons.items():
                if not reason.startswith(NEVER_STARTS):
                    since.pop(job_id, None)
                    continue
                if now - since.setdefault(job_id, now) >= GIVE_UP_AFTER_S:
                    verdict.append(f"SLURM job {job_id} can never start: pending for {reason} (it asks for more "
                                   f"than the partition allows); cancelled the sweep's jobs; change {FIX}")
                    for job in jobs:
                        job.cancel(check=False)
                    _thread.interrupt_main()  # submitit would wait for the cancelled jobs' results
                    return


# ---------------------------------------------------------------------------- a sweep's folder
IN_USE = "refused_in_use.jsonl"  # in a sweep folder: jobs refused because another process ran their folder


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
