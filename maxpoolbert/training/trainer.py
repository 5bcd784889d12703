"""The Lightning Trainer of a run, and where the run executes.

* :func:`build_trainer`: ``lightning.Trainer`` from ``cfg.trainer`` plus what depends on the
  machine (:func:`placement`), the dev-evaluation schedule and early stopping (``eval.*``); a
  setting the machine cannot satisfy is one line.
* :func:`set_threads`: the thread policy (``speed.threads``, a SLURM job's CPUs, parallel jobs
  splitting the cores) and TF32.
* :class:`Throughput`: the callback that measures training speed and counts trained rows.
* :class:`ProgressLog`: progress lines in the log where no progress bar shows.
* :class:`Interruption`: SIGINT and SIGTERM end a run alike, and the run knows which came.
* :class:`ExactResume`: a run with ``trainer.max_steps`` resumes from its checkpoint exactly.
"""

from __future__ import annotations

import logging
import math
import os
import signal
import sys
import threading
import time
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback
from omegaconf import DictConfig

from maxpoolbert.core.errors import UserError
from maxpoolbert.runs.context import RunContext
from maxpoolbert.training.checkpointing import AtomicCheckpointIO

log = logging.getLogger("maxpoolbert")


# ---------------------------------------------------------------------------- where it runs
def ddp_worker() -> bool:
    """A process that a data-parallel launcher started beside the first one (rank > 0)."""
    return any(int(os.environ.get(k) or 0) > 0 for k in ("RANK", "LOCAL_RANK", "NODE_RANK"))


class Interruption:
    """SIGINT (Ctrl-C) and SIGTERM end a run alike, as a ``KeyboardInterrupt`` (which Lightning's
    ``fit`` turns into its graceful shutdown and ``SystemExit(1)``); :attr:`signal` names the first
    one received, so that the run records an interruption whichever exception carries it. For a
    ``with`` block (in the main thread); the previous handlers come back after it.

    Only a signal at its default is taken over: one that is ignored (a shell's background job) or
    handled by someone else stays so (submitit lets SLURM's SIGTERM pass, to checkpoint and
    requeue on the signal that follows)."""

    DEFAULTS = {signal.SIGINT: signal.default_int_handler, signal.SIGTERM: signal.SIG_DFL}

    def __init__(self) -> None:
        self.signal: signal.Signals | None = None
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> Interruption:
        if threading.current_thread() is threading.main_thread():
            for sig, default in self.DEFAULTS.items():
                if signal.getsignal(sig) is default:
                    self._previous[sig] = default
                    signal.signal(sig, self._received)
        return self

    def _received(self, signum: int, frame: Any) -> None:
        if self.signal is None:
            self.signal = signal.Signals(signum)
        raise KeyboardInterrupt

    def __exit__(self, *exc: Any) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous = {}


PR_SET_PDEATHSIG = 1  # linux/prctl.h


def end_with_parent() -> bool:
    """In a worker process of a sweep (joblib's loky workers: a ``multiprocessing`` child), ask the
    kernel to send this process SIGTERM when its parent dies (``prctl(PR_SET_PDEATHSIG)``), so that
    a sweep killed outright (``kill -9``, the OOM killer) does not leave its jobs training on; the
    SIGTERM ends the job as an interruption (:class:`Interruption`). A parent already gone: SIGTERM
    now. Linux only (elsewhere, and in a process that is no such child, nothing). Returns whether it
    was set. The kernel sends the signal when the thread that started the worker ends: loky starts
    them from the sweep's main thread (a worker it restarts later comes from its manager thread,
    which lives as long as the pool)."""
    import multiprocessing

    parent = multiprocessing.parent_process()
    if parent is None or not sys.platform.startswith("linux"):
        return False
    import ctypes

    try:
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0) != 0:
            return False
    except (OSError, AttributeError):
        return False
    if os.getppid() != parent.pid:  # it died before the signal was asked for
        os.kill(os.getpid(), signal.SIGTERM)
    return True


def parent_gone() -> bool:
    """This process is a ``multiprocessing`` child (a sweep's worker) whose parent has died."""
    import multiprocessing

    parent = multiprocessing.parent_process()
    return parent is not None and os.getppid() != parent.pid


def parallel_jobs(ctx: RunContext | None) -> int:
    """How many jobs of this sweep share this machine: the launcher's ``n_jobs`` (a launcher that
    runs jobs side by side on one machine says how many, as joblib's does; -1: one per core), else 1
    (``ctx`` None: a run outside any sweep)."""
    return ctx.parallel_jobs() if ctx is not None else 1


def threads_per_parallel_job(ctx: RunContext | None) -> int | None:
    """The CPUs a SLURM job was given (``SLURM_CPUS_PER_TASK``); parallel jobs on one machine
    split its cores instead of oversubscribing them."""
    slurm = os.environ.get("SLURM_CPUS_PER_TASK", "")
    if slurm.isdigit() and int(slurm) > 0:
        return int(slurm)
    jobs = parallel_jobs(ctx)
    return max(1, (os.cpu_count() or 1) // jobs) if jobs > 1 else None


def set_threads(cfg: DictConfig, ctx: RunContext | None = None) -> None:
    """``speed.threads``, else this job's share of the machine; TF32 matmuls on a GPU if asked."""
    threads = cfg.speed.threads or threads_per_parallel_job(ctx)
    if threads:
        torch.set_num_threads(int(threads))
    if cfg.speed.tf32 and torch.cuda.is_available():
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True


def placement(cfg: DictConfig, ctx: RunContext | None = None) -> dict[str, Any]:
    """Trainer arguments that depend on where the job runs.

    - Parallel jobs on one multi-GPU machine (joblib never assigns GPUs) each take their own
      GPU, round-robin by job number.
    - Checkpoints are written by :class:`AtomicCheckpointIO` (unless ``trainer.plugins`` is set).
    - Under SLURM, requeueing belongs to submitit (``hydra/launcher=slurm``): Lightning's own
      SLURM auto-requeue is switched off so that the two never both resubmit.
    """
    out: dict[str, Any] = {}
    plugins = cfg.trainer.plugins
    if plugins is None:  # checkpoints written atomically in the run folder
        out["plugins"] = [AtomicCheckpointIO()]
    n_gpus = torch.cuda.device_count()
    if n_gpus > 1 and cfg.trainer.devices == 1 \
            and cfg.trainer.accelerator in ("auto", "gpu", "cuda") and parallel_jobs(ctx) > 1:
        out["devices"] = [ctx.job_num % n_gpus]
    if os.environ.get("SLURM_JOB_ID") and plugins is None:
        from lightning.pytorch.plugins.environments import SLURMEnvironment
        out["plugins"].append(SLURMEnvironment(auto_requeue=False))
    return out


# ---------------------------------------------------------------------------- evaluation schedule
def eval_callbacks(cfg: DictConfig) -> list[Callback]:
    """Early stopping on the dev score (Lightning's callback; patience counted in evaluations)."""
    patience = cfg.eval.get("early_stopping")
    if patience is None:
        return []
    from lightning.pytorch.callbacks import EarlyStopping

    return [EarlyStopping(monitor="val/score", mode="max", patience=int(patience), check_on_train_epoch_end=False,
                          check_finite=False)]


def eval_schedule(cfg: DictConfig) -> dict[str, Any]:
    """``eval.per_epoch`` dev evaluations per epoch (the last at the epoch's end)."""
    per_epoch = int(cfg.eval.get("per_epoch") or 1)
    return {"val_check_interval": 1.0 / per_epoch} if per_epoch > 1 else {}


# ---------------------------------------------------------------------------- the trainer
def build_trainer(cfg: DictConfig, callbacks: list[Callback], logger: Any, ctx: RunContext | None = None) -> L.Trainer:
    """The Lightning Trainer of the config with our placement, evaluation schedule and early
    stopping. A data-parallel run uses its share of the CPU cores per process. ``ctx``: how the
    run was launched (None: a single run)."""
    from hydra.utils import instantiate
    from lightning.fabric.utilities.exceptions import MisconfigurationException
    from lightning.pytorch.accelerators import CPUAccelerator

    try:
        trainer: L.Trainer = instantiate(cfg.trainer, callbacks=[ExactResume(), *callbacks, *eval_callbacks(cfg),
                                                                 *progress_log(cfg), *progress_bar(cfg)],
                                         logger=logger, **eval_schedule(cfg), **placement(cfg, ctx))
    except Exception as err:
        cause = err.__cause__ if isinstance(err.__cause__, MisconfigurationException) else err
        if isinstance(cause, MisconfigurationException):
            raise UserError(f"trainer.devices={cfg.trainer.devices}, "
                            f"trainer.accelerator={cfg.trainer.accelerator}: "
                            f"{str(cause).splitlines()[0]}") from err
        raise
    on_cpu = isinstance(trainer.accelerator, CPUAccelerator)
    if on_cpu and str(cfg.trainer.precision).startswith("bf16") and cpu_bf16() is False:
        raise UserError(f"trainer.precision={cfg.trainer.precision}: this CPU has no bf16 instructions "
                        f"({' or '.join(BF16_FLAGS)}), where bf16 runs slower than fp32; allowed: 32-true")
    world = trainer.world_size
    if world > 1:
        if ctx is not None and ctx.multirun:
            raise UserError(f"trainer.devices={cfg.trainer.devices}: a data-parallel run is a single run "
                            "(python train.py trainer=ddp ...); sweeps run many single-device runs at once "
                            "(hydra/launcher=joblib or slurm)")
        if on_cpu and world > (os.cpu_count() or 1):
            raise UserError(f"trainer.devices={cfg.trainer.devices}: this machine has {os.cpu_count()} CPU "
                            f"core(s) for {world} processes; allowed: 1 to {os.cpu_count()}")
        if on_cpu and not cfg.speed.threads:
            torch.set_num_threads(max(1, (os.cpu_count() or 1) // world))
    return trainer


class ExactResume(Callback):
    """A run with a step limit (``trainer.max_steps``) resumes from its end-of-epoch checkpoint
    exactly, as a run without one does. Lightning (2.6) restores the loops of step-limited training
    differently (``FitLoop._iteration_based_training``) and counts the restored epoch as finished
    twice: the resumed run ends one epoch short, recorded as finished (compare
    Lightning-AI/pytorch-lightning#19617). So the step limit is lifted while the checkpoint's loop
    state is restored (after the optimizer and its schedule were built with it) and put back before
    the first training step; a run that is not resumed is unchanged."""

    def __init__(self) -> None:
        self._limit: int | None = None

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        loop = trainer.fit_loop.epoch_loop
        if trainer.max_epochs not in (None, -1) and loop.max_steps not in (None, -1):
            self._limit, loop.max_steps = loop.max_steps, -1

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self._limit is not None:
            trainer.fit_loop.epoch_loop.max_steps, self._limit = self._limit, None


# ---------------------------------------------------------------------------- speed
def process_age() -> float:
    """Seconds since this process started (imports included)."""
    import psutil

    return time.time() - psutil.Process().create_time()


BF16_FLAGS = ("avx512_bf16", "amx_bf16", "bf16")  # x86 AVX-512 BF16, x86 AMX, Arm BF16 (/proc/cpuinfo)


def cpuinfo() -> list[tuple[str, str]] | None:
    """/proc/cpuinfo as (field, value) pairs (None where there is none: not Linux)."""
    try:
        with open("/proc/cpuinfo") as f:
            return [(k.strip(), v.strip()) for k, _, v in (line.partition(":") for line in f) if _]
    except OSError:
        return None


def cpu_flags() -> set[str] | None:
    """The CPU's feature flags (x86 ``flags``, Arm ``Features``; None where unknown)."""
    info = cpuinfo()
    return None if info is None else {flag for k, v in info if k in ("flags", "Features") for flag in v.split()}


def cpu_bf16() -> bool | None:
    """Whether the CPU computes in bf16 natively (None: unknown, not refused)."""
    flags = cpu_flags()
    return None if flags is None else any(f in flags for f in BF16_FLAGS)


def hardware() -> dict[str, object]:
    """The machine a run ran on: CPU model and cores, GPU name (if one was used) and torch's threads."""
    import platform

    cpu = next((v for k, v in cpuinfo() or [] if k == "model name"), None) or platform.processor() or platform.machine()
    out: dict[str, object] = {"cpu": cpu, "cores": os.cpu_count(), "threads": torch.get_num_threads()}
    if torch.cuda.is_available():
        out["gpu"] = torch.cuda.get_device_name()
    return out


def peak_memory_mb() -> dict[str, float]:
    import resource

    out = {"rss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
    if torch.cuda.is_available():
        out["cuda"] = torch.cuda.max_memory_allocated() / 2**20
    return out


class Throughput(Callback):
    """Training samples and seconds, and when the first step started.

    The seconds are the training loop's wall clock: from each epoch's start to its last batch's
    end, so loading batches and the loop's own overhead count, the dev evaluation (which runs
    after the epoch's last batch) does not."""

    def __init__(self) -> None:
        self.samples, self.seconds, self._t = 0, 0.0, None
        self.first_step_s: float | None = None
        self.rows_trained = 0  # this process's rows since the run began (kept in checkpoints)

    def state_dict(self) -> dict[str, int]:
        return {"rows_trained": self.rows_trained}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.rows_trained = int(state.get("rows_trained", 0))

    def on_train_epoch_start(self, trainer, pl_module):
        self._t = time.perf_counter()

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if self.first_step_s is None:
            self.first_step_s = process_age()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        now = time.perf_counter()
        self.seconds += now - self._t
        rows = int((batch["weight"] > 0).sum()) if "weight" in batch else int(batch["labels"].shape[0])
        self.samples += rows
        self.rows_trained += rows
        self._t = now

    def train_samples(self, trainer: L.Trainer) -> int:
        """Rows trained since the run began, over all processes."""
        if trainer.world_size == 1:
            return self.rows_trained
        return int(trainer.strategy.reduce(torch.tensor(self.rows_trained), reduce_op="sum"))

    def samples_per_s(self, trainer: L.Trainer) -> float | None:
        return self.samples * trainer.world_size / self.seconds if self.seconds else None


# ---------------------------------------------------------------------------- progress bar
def epoch_of(trainer: L.Trainer) -> str:
    """The epoch under way as the log and the progress bar both show it: counted from 1, of the
    epochs the run trains where no step limit ends it first (``2/3``), else alone (``2``)."""
    epochs = trainer.max_epochs
    limited = trainer.max_steps in (None, -1) and epochs not in (None, -1)
    return f"{trainer.current_epoch + 1}" + (f"/{epochs}" if limited else "")


def progress_bar(cfg: DictConfig) -> list[Callback]:
    """Lightning's own progress bar (rich where installed, else tqdm, as Lightning picks), its
    epoch counted as the log counts it (:func:`epoch_of`: ``Epoch 1/3``; Lightning's: ``Epoch
    0/2``). None where the bar is off."""
    if cfg.trainer.get("enable_progress_bar") is False:
        return []
    from lightning.pytorch.callbacks import RichProgressBar, TQDMProgressBar
    from lightning.pytorch.utilities.imports import _RICH_AVAILABLE

    if _RICH_AVAILABLE:
        class Bar(RichProgressBar):
            def _get_train_description(self, current_epoch: int) -> str:
                return f"{'Epoch ' + epoch_of(self.trainer):{len(self.validation_description)}}"
    else:
        class Bar(TQDMProgressBar):
            def on_train_epoch_start(self, trainer: L.Trainer, *args: Any) -> None:
                super().on_train_epoch_start(trainer, *args)
                self.train_progress_bar.set_description(f"Epoch {epoch_of(trainer)}")
    return [Bar()]


# ---------------------------------------------------------------------------- progress in the log
def progress_log(cfg: DictConfig) -> list[Callback]:
    """:class:`ProgressLog` every ``progress_every_s`` seconds, where no terminal shows a progress
    bar: ``trainer.enable_progress_bar=false``, output to a file or a pipe, a SLURM job."""
    every = cfg.get("progress_every_s")
    if not every:
        return []
    bar = cfg.trainer.get("enable_progress_bar") is not False
    terminal = sys.stdout.isatty() and sys.stderr.isatty() and not os.environ.get("SLURM_JOB_ID")
    return [] if bar and terminal else [ProgressLog(every)]


def duration(seconds: float) -> str:
    """``45 s``, ``12 min``, ``2.5 h``."""
    if seconds < 90:
        return f"{seconds:.0f} s"
    return f"{seconds / 60:.0f} min" if seconds < 90 * 60 else f"{seconds / 3600:.1f} h"


class ProgressLog(Callback):
    """A progress line in the log every ``every_s`` seconds: while training (the first line after
    the first batch) the epoch, step / total steps, samples/s and the training time left; while
    evaluating, the dev rows done. Only the first process logs."""

    def __init__(self, every_s: float) -> None:
        self.every_s = float(every_s)
        self._due = 0.0
        self._start, self._start_step, self._rows = 0.0, 0, 0
        self._eval_rows, self._eval_total = 0, 0

    def on_train_start(self, trainer, pl_module):
        self._start, self._start_step, self._rows, self._due = time.monotonic(), trainer.global_step, 0, 0.0

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self._rows += int(batch["labels"].shape[0]) * trainer.world_size
        now = time.monotonic()
        if now >= self._due and trainer.is_global_zero:
            self._due = now + self.every_s
            log.info("training: %s", self.training(trainer, now))

    def training(self, trainer: L.Trainer, now: float) -> str:
        step, total, elapsed = trainer.global_step, trainer.estimated_stepping_batches, now - self._start
        parts = [f"epoch {epoch_of(trainer)}"]
        if math.isfinite(total) and total > 0:
            parts.append(f"step {step}/{int(total)} ({100 * step / total:.0f}%)")
        else:
            parts.append(f"step {step}")
        if elapsed > 0:
            parts.append(f"{self._rows / elapsed:.1f} samples/s")
        done = step - self._start_step
        if math.isfinite(total) and done > 0:
            parts.append(f"about {duration(max(0.0, (total - step) * elapsed / done))} of training left")
        return ", ".join(parts)

    def on_validation_start(self, trainer, pl_module):
        loaders = trainer.val_dataloaders
        loaders = loaders if isinstance(loaders, list | tuple) else [loaders]
        self._eval_total = sum(len(getattr(loader, "dataset", None) or ()) for loader in loaders if loader is not None)
        self._eval_rows, self._eval_due = 0, time.monotonic() + self.every_s

    def on_validation_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0):
        self._eval_rows += int(batch["labels"].shape[0]) * trainer.world_size
        now = time.monotonic()
        if now >= self._eval_due and trainer.is_global_zero and not trainer.sanity_checking:
            self._eval_due = now + self.every_s
            rows = min(self._eval_rows, self._eval_total) if self._eval_total else self._eval_rows
            total = f"/{self._eval_total}" if self._eval_total else ""
            log.info("evaluating: %d%s dev rows at step %d", rows, total, trainer.global_step)
