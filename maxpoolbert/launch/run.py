"""One fine-tuning run, from a composed Hydra config to ``results.json``.

Read :func:`run` top to bottom: claim the run folder and skip it if finished; build the task,
the model, the data, the trainer and the logger from the config; fit (or resume); collect the
results; write them. The task, encoder, tokenizer, pooling, optimizer, Trainer and logger are
instantiated from their config groups (``hydra.utils.instantiate``); the classifier, data module
and training module take their sections' values as keyword arguments.
Where the rest lives: the run folder, the run record and a run's identity in :mod:`maxpoolbert.runs` (``folder``,
``record``, ``identity``);
the Trainer, devices, threads and the Throughput callback in :mod:`maxpoolbert.training.trainer`; the
optimizer policy in :mod:`maxpoolbert.training.optim`; the logger's life in :mod:`maxpoolbert.training.loggers`;
checkpoint writing and resuming in :mod:`maxpoolbert.training.checkpointing`.
"""

from __future__ import annotations

import logging
import os
import platform
import shlex
import shutil
import signal
import sys
import time
import traceback
import warnings
from dataclasses import dataclass
from typing import Any, NoReturn

import datasets
import lightning as L
import numpy as np
import torch
import transformers
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from maxpoolbert.config import schema
from maxpoolbert.core import metrics as M
from maxpoolbert.core.errors import UserError, WriteFailed, fail, user_error
from maxpoolbert.core.io import set_aside
from maxpoolbert.launch.sweeps import record_in_use
from maxpoolbert.model import encoders
from maxpoolbert.model.classifier import PooledClassifier
from maxpoolbert.model.layers import reinit_top_layers
from maxpoolbert.runs.context import RunContext
from maxpoolbert.runs.folder import (
    REPLACED,
    RERUN_FAILED,
    RunFolder,
    RunFolderBusy,
    RunFolderConflict,
)
from maxpoolbert.runs.identity import neutral_keys, settings, settings_id
from maxpoolbert.runs.record import RunRecord, fingerprint
from maxpoolbert.tasks import task as tasks
from maxpoolbert.tasks.task import HELDOUT, Task
from maxpoolbert.training import loggers, optim
from maxpoolbert.training.checkpointing import ResumeCheckpoint
from maxpoolbert.training.data import TaskDataModule
from maxpoolbert.training.memory import between_runs
from maxpoolbert.training.module import GlueModule
from maxpoolbert.training.trainer import (
    Interruption,
    Throughput,
    build_trainer,
    ddp_worker,
    end_with_parent,
    hardware,
    parent_gone,
    peak_memory_mb,
    process_age,
    set_threads,
)

log = logging.getLogger("maxpoolbert")
COMPILE_BUCKET = 16  # data.pad_to_multiple_of when speed.compile=true and it is null

# Libraries whose deprecation warnings about each other are silenced (:func:`quiet_lightning`).
LIBRARIES = r"(lightning|lightning_fabric|pytorch_lightning|torch|torchmetrics|transformers|datasets|wandb|hydra|omegaconf)(\.|$)"


class NoAdvertisement(logging.Filter):
    """Drops Lightning's "💡 Tip: ... try installing litlogger / litmodels" lines: advertisements of
    its cloud service, printed on every run, telling nothing about the run."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("💡 Tip:")


def quiet_lightning() -> None:
    """Lightning adds its own console handler; Hydra's root handlers already print (and file) its
    logs. Known-harmless notices are silenced here, at their source; real warnings stay:
    Lightning's advertisement lines (:class:`NoAdvertisement`), and deprecation warnings raised
    inside the libraries themselves (e.g. torch's ``LeafSpec`` deprecation, which Lightning's
    pytree helper triggers on every run): neither this project nor its user can act on them; a
    deprecation attributed to this project's own code is still shown."""
    for name in ("lightning", "lightning.pytorch", "lightning.fabric"):
        for handler in list(logging.getLogger(name).handlers):
            logging.getLogger(name).removeHandler(handler)
    for name in ("lightning.pytorch.utilities.rank_zero", "lightning.fabric.utilities.rank_zero"):
        if not any(isinstance(f, NoAdvertisement) for f in logging.getLogger(name).filters):
            logging.getLogger(name).addFilter(NoAdvertisement())
    for category in (DeprecationWarning, FutureWarning):
        warnings.filterwarnings("ignore", category=category, module=LIBRARIES)


def majority_score(task: Task, train_labels, evals) -> float | None:
    """Dev score of always predicting the most frequent training label (None for regression)."""
    if task.is_regression:
        return None
    values, counts = np.unique(np.asarray(train_labels), return_counts=True)
    const = values[np.argmax(counts)]
    scores: dict[str, float] = {}
    for split, spec in task.eval.items():
        labels = evals[split]["label"]
        scores.update(M.compute(spec.metrics, np.full(len(labels), const), labels))
    return M.glue_score(scores)


def compile_options(cfg: DictConfig) -> dict | bool:
    """``torch.compile``'s options from ``speed`` (False: not compiled)."""
    if not cfg.speed.compile:
        return False
    return {"backend": cfg.speed.compile_backend, "dynamic": cfg.speed.compile_dynamic,
            **({"mode": cfg.speed.compile_mode} if cfg.speed.compile_mode else {})}


def compile_stats() -> dict[str, int] | None:
    """How many graphs ``torch.compile`` captured in this process, and how many frames it compiled
    (each recompilation for new input shapes is one more), from torch._dynamo's counters."""
    import sys

    if "torch._dynamo" not in sys.modules:
        return None
    from torch._dynamo.utils import counters

    return {"graphs": int(counters["stats"]["unique_graphs"]), "frames": int(counters["frames"]["total"])}


# ---------------------------------------------------------------------------- the run
def build(cfg: DictConfig, ctx: RunContext | None = None) -> tuple[Task, Any, PooledClassifier]:
    """Task, tokenizer and classifier from the config (seeded: same seed, same initial weights).
    ``ctx``: the run's launch (its task file named in messages, the keys its command line set)."""
    if OmegaConf.is_missing(cfg.model, "name_or_path"):
        raise UserError(f"model.name_or_path=???: model={cfg.model.name} needs a checkpoint; "
                        "model.name_or_path=<hub id or local folder>")
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    task = tasks.from_config(cfg.task, schema.task_file(ctx.hydra_plain() if ctx else None))
    tokenizer = instantiate(cfg.model.tokenizer)
    encoder = instantiate(cfg.model.encoder)
    schema.check_encoder(cfg, encoder.config, tokenizer, explicit=ctx.command_line_keys() if ctx else set())
    # New pooling parameters draw from their own stream, so for one seed the classifier's
    # initial weights are the same whichever pooling is used (paired comparisons).
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed + 7919)
        pooling = instantiate(cfg.pooling.module, _partial_=True)(encoder_config=encoder.config)
    model = PooledClassifier(encoder, pooling, task.num_labels, **cfg.head)
    loaded = encoders.load_pretrained_head(model)
    if loaded:
        log.info("head weights from the checkpoint: %s", ", ".join(loaded))
    reinit = cfg.model.get("reinit_layers") or 0
    if reinit:  # Zhang et al. (2021): the top layers and the pooler start afresh (own RNG stream)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(cfg.seed + 104729)
            reinit_top_layers(model, reinit)
    # from_pretrained returns eval mode and Lightning keeps a module's mode: train mode (dropout
    # on) must be set here, as the Hugging Face Trainer does.
    return task, tokenizer, model.train()


@dataclass
class Launch:
    """This launch of a run: its folder, and the trainer once built (how far training got), for
    :func:`main` to record when the run fails or is interrupted."""

    folder: RunFolder
    trainer: L.Trainer | None = None

    @classmethod
    def of(cls, ctx: RunContext) -> Launch:
        return cls(RunFolder(ctx.output_dir))

    @property
    def steps(self) -> int:
        """Optimizer steps reached (a resumed run counts its checkpoint's once restored)."""
        return int(self.trainer.global_step) if self.trainer is not None else 0


def run(cfg: DictConfig, ctx: RunContext, this: Launch | None = None) -> RunRecord | dict[str, Any]:
    """The run's story: lock and claim the folder, skip it if finished, build, fit (or resume),
    collect the results, write them. What happened is appended to the folder's ``launches.jsonl``.
    ``cfg``: the job's config; ``ctx``: how it was launched (its folder, sweep, command line).
    The folder stays locked until the caller lets it go (:func:`main`, after recording)."""
    started = time.time()
    this = this or Launch.of(ctx)
    hydra_cfg = ctx.hydra_node()
    folder = this.folder
    schema.check(cfg, hydra=ctx.hydra_plain())  # this job's values (a sweep's start checked the values every job shares)

    # 1. The folder: ours (or refused), skipped when finished, a broken results.json set aside.
    broken = finished = None
    if not ddp_worker():  # the folder is the first process's: the others only train
        folder.lock()  # another live process runs it: RunFolderBusy, nothing touched
        folder.claim(cfg, hydra_cfg)  # first start: writes .hydra/; relaunch: same settings, a takeover, or refused
        folder.clean_stale_tmp()
        finished, broken = folder.read()
        if finished is not None and cfg.skip_finished:
            log.info("skipping %s: already finished", folder.path)
            folder.record_launch("skipped")
            if not cfg.checkpoint.keep:  # a kill after the results, before they went
                folder.remove_checkpoints()
            return finished
        if broken:
            moved = folder.set_aside_results()
            log.warning("%s is %s: kept as %s; the run starts again", folder.results, broken, moved.name)
        folder.clear_failure()
        folder.record_data_dirs(cfg)  # machine-local: predict finds the data without GLUE_DIR

    # 2. Build: task, model, data (bad data files are refused here, before the trainer and
    # logger start), training module, trainer, logger.
    set_threads(cfg, ctx)
    task, tokenizer, model = build(cfg, ctx)
    # compiled: batch lengths in multiples of 16 unless set, so a bounded number of graphs is compiled
    bucket = cfg.data.pad_to_multiple_of or (COMPILE_BUCKET if cfg.speed.compile else None)
    dm = TaskDataModule(task, tokenizer, seed=cfg.seed, **{**cfg.data, "pad_to_multiple_of": bucket})
    dm.setup()
    module = GlueModule(model, task, optim.from_config(cfg), cfg.scheduler.warmup_ratio,
                        seed=cfg.seed, compile=compile_options(cfg), heldout=cfg.data.heldout_size is not None)
    checkpoint = ResumeCheckpoint(folder.checkpoints, cfg.checkpoint.every_n_epochs)
    throughput = Throughput()
    logger = loggers.from_config(cfg, ctx)
    trainer = this.trainer = build_trainer(cfg, callbacks=[checkpoint, throughput], logger=logger, ctx=ctx)
    if logger:
        logger.log_hyperparams(OmegaConf.to_container(cfg, resolve=True))

    # 3. Fit, from the last intact checkpoint if there is one (damaged ones are moved aside).
    log.info("run folder: %s", folder.path)  # here, once every check has passed: a refused run keeps to its one line
    last = folder.resume_checkpoint()
    if last is not None:
        log.info("resuming from %s", last)
    try:
        # weights_only: the checkpoint is read as tensors and plain values, never unpickled as code
        trainer.fit(module, datamodule=dm, ckpt_path=str(last) if last is not None else None, weights_only=True)
        if module.last_eval_step != trainer.global_step or len(module.last_eval) != len(module.eval_names):
            trainer.validate(module, datamodule=dm, verbose=False)

        # 4. Collect: the selected evaluation's metrics and predictions, and how the run went.
        evals, chosen = module.selected(cfg.eval.select)
        metrics = module.dev_metrics(evals)
        score = M.glue_score(metrics)
        train_samples = throughput.train_samples(trainer)  # every process takes part
        if not trainer.is_global_zero:
            return {"score": score}
        identity = settings(cfg, neutral_keys(hydra_cfg))
        record = RunRecord(
            task=task.name, pooling=cfg.pooling.name, model=cfg.model.name, seed=int(cfg.seed),
            metrics=metrics, score=score, task_info=task.info(),
            settings=identity, settings_id=settings_id(identity),
            train_size=cfg.data.train_size, n_train=len(dm.splits["train"]), n_train_full=dm.n_train_full,
            n_dev={k: len(evals[k]["index"]) for k in task.eval},
            dev_data={k: fingerprint(evals[k]["label"]) for k in task.eval},
            majority_score=majority_score(task, dm.splits["train"].labels, evals),
            history=module.history,
            selected={"select": cfg.eval.select, "index": chosen,
                      **{k: module.history[chosen][k] for k in ("epoch", "step")}},
            epochs=trainer.current_epoch, steps=trainer.global_step, resumed=last is not None,
            stopped_early=bool(getattr(trainer.early_stopping_callback, "stopped_epoch", 0)),
            world_size=trainer.world_size, train_samples=train_samples,
            train_samples_per_s=throughput.samples_per_s(trainer), train_s=throughput.seconds,
            wall_s=time.time() - started, process_s=process_age(), first_step_s=throughput.first_step_s,
            peak_memory_mb=peak_memory_mb(), params=model.param_counts(),
            versions={"python": platform.python_version(), "torch": torch.__version__,
                      "transformers": transformers.__version__, "lightning": L.__version__},
            device=str(module.device), hardware=hardware(), weights_sha256=encoders.weights_sha256(model.encoder),
            compiled=compile_stats() if cfg.speed.compile else None, heldout=module.heldout_metrics(evals),
        )

        # 5. Write: predictions, then the weights, then results.json: its presence makes the run
        # finished, so a kill before it leaves a run that a relaunch completes. A re-run of a
        # finished run (skip_finished=false) keeps the earlier record until it has its own to write.
        if finished is not None:
            kept = [set_aside(p, REPLACED).name for p in (folder.results, folder.model_file)
                    if p.exists()]
            log.info("the earlier run's files in %s are kept as %s", folder.path, " and ".join(kept))
        folder.write_predictions({split: evals[split] for split in task.eval}, task.is_regression)
        if HELDOUT in evals:
            folder.write_predictions({HELDOUT: evals[HELDOUT]}, task.is_regression, folder.heldout_file)
        missing = write_weights(folder, model) if cfg.save_model else None
        record.weights = "off" if not cfg.save_model else "missing" if missing else "saved"
        folder.write_results(record)
        if missing is not None:
            log.warning("%s; the run's results are written, its weights are not (results.json: weights missing); "
                        "%s, then train again with skip_finished=false to get them", missing.problem, missing.advice)
        loggers.log_final(logger, metrics, score)
        folder.record_launch("rerun" if broken else "finished", resumed=last is not None, steps=record.steps,
                             weights=record.weights)
        if not cfg.checkpoint.keep:
            folder.remove_checkpoints()
        log.info("%s %s %s seed %s: %s (score %.4f) in %.0f s", task.name, cfg.pooling.name, cfg.model.name,
                 cfg.seed, {k: round(v, 4) for k, v in metrics.items()}, score, record.wall_s)
        log.info("run folder: %s (results.json, %s)", folder.path, folder.predictions_file.name)
        return record
    finally:
        loggers.finish(logger)


def write_weights(folder: RunFolder, model: PooledClassifier) -> WriteFailed | None:
    """``model.safetensors``, before the results; a write that fails (full disk, quota, read-only)
    is returned (the run's record then says its weights are missing), not raised."""
    try:
        folder.save_weights(model)
    except WriteFailed as err:
        return err
    return None


def exit_now(code: int = 0) -> None:
    """End a finished run's process without the interpreter's teardown (freeing thousands of
    torch/transformers/lightning objects and modules: about a second on a small CPU). Everything
    the run wrote is closed by then; logs and W&B are flushed and shut down here first."""
    loggers.teardown()
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def main(cfg: DictConfig, ctx: RunContext) -> float | None:
    """Hydra task function (``train.py``): :func:`launch`, its score for the sweeper. In a sweep the
    process goes on to the next job: the finished run's memory is handed back first."""
    result = launch(cfg, ctx)
    if ctx.multirun:
        between_runs()
    if result is None:
        return None
    return result.score if isinstance(result, RunRecord) else result["score"]


def launch(cfg: DictConfig, ctx: RunContext, raises: bool = False) -> RunRecord | dict[str, Any] | None:
    """Runs, and records a failure in the run folder instead of losing it.

    User errors print one line (``raises``: are raised instead, the Python entry). In a multirun a
    failing job is recorded in ``failed.json`` and the sweep goes on (None); a single run exits
    non-zero. A folder that holds another run is left untouched; one that another process runs is
    not touched at all (in a sweep, the refusal is noted in the sweep folder). SIGINT or SIGTERM:
    the launch is recorded as interrupted, with one line saying what relaunching does; a sweep
    stops there.
    """
    this = Launch.of(ctx)
    folder = this.folder
    multirun = ctx.multirun
    key = ctx.folder_key

    def refuse(err: UserError | str | Exception) -> NoReturn:
        if raises:  # a folder in use or holding other settings: one UserError as well
            raise err if isinstance(err, UserError) else UserError(str(err))
        fail(err if isinstance(err, UserError | str) else str(err))
    quiet_lightning()
    datasets.disable_progress_bars()  # tokenising/caching bars would fill every run's log
    interruption = Interruption()
    try:
        with interruption:
            end_with_parent()  # a sweep's worker: its parent's death ends the job (as an interruption)
            return run(cfg, ctx, this)
    except RunFolderBusy:
        if not multirun:
            refuse(folder.in_use(key))
        record_in_use(ctx.sweep_dir, folder, folder.in_use(key))
        # printed, not logged: the job's log file is in the folder, the other process's
        print(f"job refused: {folder.in_use(key)}", file=sys.stderr, flush=True)
        return None
    except RunFolderConflict as err:
        folder.record_launch("refused", error=str(err))
        if multirun:
            log.error("job refused: %s", err)
            return None
        refuse(err)
    except (Exception, KeyboardInterrupt, SystemExit) as err:
        # Lightning's own SIGTERM handling (where another handler keeps SIGTERM): SIGTERMException
        sigterm = this.trainer is not None and this.trainer.received_sigterm
        if ddp_worker() or (isinstance(err, SystemExit) and interruption.signal is None and not sigterm):
            raise
        if interruption.signal is not None or isinstance(err, KeyboardInterrupt) or sigterm:
            sig = interruption.signal or (signal.SIGTERM if sigterm else signal.SIGINT)
            interrupted(this, sig, ctx)
            if interruption.signal is None:
                raise  # as it came: its handler's owner (submitit) decides what follows
            if multirun:
                if parent_gone():  # a worker whose sweep was killed: nothing waits for it (loky's would idle on)
                    exit_now(128 + int(sig))
                raise KeyboardInterrupt from None  # the sweep stops
            raise SystemExit(128 + int(sig)) from None  # as a shell reports a process ended by it
        user = user_error(err)
        if isinstance(user, WriteFailed):  # say what relaunching does, now that the run has stopped
            user = user.relaunch(folder.relaunch_hint(), None if multirun else relaunch_command(folder, ctx))
        err = user or err
        quiet = isinstance(user, WriteFailed)  # bookkeeping on a failing filesystem: the error says it
        written = folder.write_failed(err, user is not None, None if user else traceback.format_exc(), this.steps,
                                      quiet)
        folder.record_launch("failed", quiet, error=f"{type(err).__name__}: {err}", steps=this.steps)
        if written.name == RERUN_FAILED:
            log.warning("this re-run of a finished run failed (recorded in %s); the earlier results in %s stay the "
                        "run's", written, folder.results.name)
        if multirun:
            log.error("job failed (recorded in %s): %s", written, err)
            return None
        if user:
            to_log_file(f"error: {user}")  # the console shows it once (fail); the run's log keeps it too
            if this.steps == 0:  # refused before training: a folder this launch made goes
                folder.unlock()
                folder.remove_if_refused_here()
            refuse(user)
        raise
    finally:
        folder.unlock()


def to_log_file(message: str) -> None:
    """``message`` into the run's log file (Hydra's file handlers) and not on the console."""
    record = log.makeRecord(log.name, logging.ERROR, __file__, 0, message, None, None)
    for handler in logging.getLogger().handlers:
        if isinstance(handler, logging.FileHandler):
            handler.handle(record)


def interrupted(this: Launch, sig: signal.Signals, ctx: RunContext) -> None:
    """Record an interrupted launch (``launches.jsonl``: outcome, signal, step reached) and say in
    one line what relaunching does: a single run names the command that relaunches it in its
    folder (:func:`relaunch_command`); a sweep's job, what the sweep's same command does."""
    folder = this.folder
    folder.record_launch("interrupted", signal=sig.name, steps=this.steps)
    if ctx.multirun:
        log.warning("interrupted (%s) at step %d: relaunching the same command %s", sig.name, this.steps,
                    folder.relaunch_hint())
    else:
        log.warning("interrupted (%s) at step %d: relaunching %s: %s", sig.name, this.steps,
                    folder.relaunch_hint(), relaunch_command(folder, ctx))


def relaunch_command(folder: RunFolder, ctx: RunContext | None = None) -> str:
    """The command that relaunches this single run in its folder: this process's command line
    with ``hydra.run.dir=<the folder>`` added (the default folder is new at each launch: a
    timestamp), unless it names the folder already. ``python`` when that is this interpreter.
    Launched from Python (``ctx.argv`` None): the call of :func:`maxpoolbert.train` that does."""
    if ctx is not None and ctx.argv is None:
        overrides = [o for o in ctx.overrides if not o.lstrip("+~").startswith("hydra.run.dir=")]
        return f"maxpoolbert.train({overrides!r}, output_dir={str(folder.path)!r})"
    argv = ctx.argv if ctx is not None else tuple(sys.argv)
    args = [a for a in argv[1:] if not a.lstrip("+~").startswith("hydra.run.dir=")]
    python = shutil.which("python")
    same = python is not None and os.path.realpath(python) == os.path.realpath(sys.executable)
    return shlex.join(["python" if same else sys.executable, argv[0], *args, f"hydra.run.dir={folder.path}"])
