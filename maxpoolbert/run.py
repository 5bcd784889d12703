"""One fine-tuning run, from a composed Hydra config to ``results.json``.

Everything the run builds comes from the config through ``hydra.utils.instantiate``: the task,
the tokenizer and encoder (``model``), the pooling strategy, the optimizer, the Lightning
Trainer and the logger. The run folder receives checkpoints (while running), ``model.safetensors``,
``dev_predictions.tsv`` and, last and atomically, ``results.json``.
"""

from __future__ import annotations

import logging
import math
import os
import sys
import time
import traceback
from pathlib import Path
from typing import Any

import datasets
import lightning as L
import numpy as np
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from hydra.utils import instantiate
from lightning.pytorch.callbacks import Callback
from omegaconf import DictConfig, OmegaConf

from maxpoolbert import encoders, rundir, schema
from maxpoolbert import metrics as M
from maxpoolbert.checkpointing import AtomicCheckpointIO, ResumeCheckpoint
from maxpoolbert.data import GlueDataModule
from maxpoolbert.errors import UserError, fail
from maxpoolbert.layers import check_layer_decay, reinit_top_layers
from maxpoolbert.model import PooledClassifier
from maxpoolbert.module import GlueModule
from maxpoolbert.tasks import GlueTask

log = logging.getLogger("maxpoolbert")
# Lightning adds its own console handler; Hydra's root handlers already print (and file) its logs.
for _name in ("lightning", "lightning.pytorch", "lightning.fabric"):
    for _handler in list(logging.getLogger(_name).handlers):
        logging.getLogger(_name).removeHandler(_handler)

RESULTS, FAILED, PREDICTIONS = rundir.RESULTS, rundir.FAILED, rundir.PREDICTIONS
write_json_atomic = rundir.write_json_atomic


# ---------------------------------------------------------------------------- small helpers


def write_predictions(path: Path, task: GlueTask, evals: dict[str, dict[str, np.ndarray]]) -> None:
    fmt = (lambda x: repr(float(x))) if task.is_regression else (lambda x: str(int(x)))
    lines = ["split\tindex\tlabel\tprediction\n"]
    for split in task.eval:
        rows = evals[split]
        for i, y, p in zip(rows["index"], rows["label"], rows["prediction"], strict=True):
            lines.append(f"{split}\t{int(i)}\t{fmt(y)}\t{fmt(p)}\n")
    rundir.write_atomic(path, "".join(lines))


def majority_score(task: GlueTask, train_labels, evals) -> float:
    """Dev score of always predicting the most frequent training label (NaN for regression)."""
    if task.is_regression:
        return math.nan
    values, counts = np.unique(np.asarray(train_labels), return_counts=True)
    const = values[np.argmax(counts)]
    scores: dict[str, float] = {}
    for split, spec in task.eval.items():
        labels = evals[split]["label"]
        scores.update(M.compute(spec.metrics, np.full(len(labels), const), labels))
    return M.glue_score(scores)


def hparams(cfg: DictConfig) -> dict[str, Any]:
    """The settings that must match for runs to share a table cell (flat, JSON-friendly)."""
    out = {
        "optimizer.lr": cfg.optimizer.get("lr"), "optimizer.weight_decay": cfg.optimizer.get("weight_decay"),
        "data.batch_size": cfg.data.batch_size, "trainer.max_epochs": cfg.trainer.max_epochs,
        "trainer.max_steps": cfg.trainer.max_steps, "data.max_length": cfg.data.max_length,
        "scheduler.warmup_ratio": cfg.scheduler.warmup_ratio, "head.use_pooler": cfg.head.use_pooler,
        "head.dropout": cfg.head.dropout, "trainer.precision": str(cfg.trainer.precision),
        "trainer.accumulate_grad_batches": cfg.trainer.accumulate_grad_batches,
        "eval.select": cfg.eval.select, "eval.per_epoch": cfg.eval.per_epoch,
        "eval.early_stopping": cfg.eval.early_stopping,
    }
    options = OmegaConf.to_container(cfg.pooling.module, resolve=True)
    out.update({f"pooling.{k}": v for k, v in options.items() if k != "_target_"})
    return out


def process_age() -> float:
    """Seconds since this process started (imports included)."""
    import psutil

    return time.time() - psutil.Process().create_time()


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


# ---------------------------------------------------------------------------- the run
def build(cfg: DictConfig) -> tuple[GlueTask, Any, PooledClassifier]:
    """Task, tokenizer and classifier from the config (seeded: same seed, same initial weights)."""
    if OmegaConf.is_missing(cfg.model, "name_or_path"):
        raise UserError(f"model.name_or_path=???: model={cfg.model.name} needs a checkpoint; "
                        "model.name_or_path=<hub id or local folder>")
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    task: GlueTask = instantiate(cfg.task, _convert_="all")
    tokenizer = instantiate(cfg.model.tokenizer)
    encoder = instantiate(cfg.model.encoder)
    schema.check_encoder(cfg, encoder.config, tokenizer, explicit=schema.command_line_keys())
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


def run(cfg: DictConfig) -> dict[str, Any]:
    """The run's story: claim the folder, skip it if finished, build, fit (or resume), collect the
    results, write them. What happened is appended to the folder's ``launches.jsonl``."""
    started = time.time()
    hydra_cfg = HydraConfig.get()
    out_dir = Path(hydra_cfg.runtime.output_dir)
    results_path = out_dir / RESULTS
    schema.check(cfg)  # this job's values (a sweep's start checked the values every job shares)
    broken = None
    if not ddp_worker():  # the folder is the first process's: the others only train
        rundir.claim(out_dir, cfg, hydra_cfg)  # first start: writes .hydra/; relaunch: same settings or refused
        rundir.clean_stale_tmp(out_dir)
        finished, broken = rundir.read_results(out_dir)
        if finished is not None and cfg.skip_finished:
            log.info("skipping %s: %s exists", out_dir, RESULTS)
            rundir.record_launch(out_dir, "skipped")
            return finished
        if broken:
            moved = rundir.set_aside(results_path)
            log.warning("%s is %s: kept as %s; the run starts again", results_path, broken, moved.name)
        (out_dir / FAILED).unlink(missing_ok=True)
    threads = cfg.speed.threads or _threads_per_parallel_job()
    if threads:
        torch.set_num_threads(int(threads))
    if cfg.speed.tf32 and torch.cuda.is_available():
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True

    if cfg.optimizer.get("layer_decay") is not None:
        check_layer_decay(cfg.optimizer.layer_decay)
    task, tokenizer, model = build(cfg)
    dm = GlueDataModule(task, tokenizer, seed=cfg.seed, **cfg.data)
    dm.setup()  # bad data files are refused here, before the trainer and logger start
    module = GlueModule(model, task, instantiate(cfg.optimizer, **_optimizer_overrides(cfg)), cfg.scheduler.warmup_ratio,
                        seed=cfg.seed, compile=cfg.speed.compile)

    ckpt_dir = out_dir / rundir.CHECKPOINTS
    checkpoint = ResumeCheckpoint(ckpt_dir, cfg.checkpoint.every_n_epochs)
    throughput = Throughput()
    logger = instantiate(cfg.logger, **_logger_defaults(cfg))
    trainer = _trainer(cfg, callbacks=[checkpoint, throughput, *_eval_callbacks(cfg)], logger=logger,
                       **_eval_schedule(cfg))
    if logger:
        logger.log_hyperparams(OmegaConf.to_container(cfg, resolve=True))

    last = rundir.resume_checkpoint(out_dir)  # damaged checkpoints are moved aside
    resumed = last is not None
    if resumed:
        log.info("resuming from %s", last)
    try:
        trainer.fit(module, datamodule=dm, ckpt_path=str(last) if resumed else None)
        if module.last_eval_step != trainer.global_step or len(module.last_eval) != len(task.eval):
            trainer.validate(module, datamodule=dm, verbose=False)
        evals, chosen = module.selected(cfg.eval.select)
        metrics = module.dev_metrics(evals)
        score = M.glue_score(metrics)
        world = trainer.world_size
        train_samples = int(trainer.strategy.reduce(torch.tensor(throughput.rows_trained), reduce_op="sum")) \
            if world > 1 else throughput.rows_trained
        samples_per_s = throughput.samples * world / throughput.seconds if throughput.seconds else None
        if not trainer.is_global_zero:
            return {"score": score}
        results = {
            "task": task.name, "pooling": cfg.pooling.name, "model": cfg.model.name, "seed": int(cfg.seed),
            "metrics": metrics, "score": score,
            "train_samples_per_s": samples_per_s, "world_size": world, "train_samples": train_samples,
            "train_s": throughput.seconds, "wall_s": time.time() - started,
            "process_s": process_age(), "first_step_s": throughput.first_step_s,
            "peak_memory_mb": peak_memory_mb(),
            "params": model.param_counts(),
            "train_size": cfg.data.train_size, "n_train": len(dm.splits["train"]),
            "glue_dir": str(Path(cfg.data.glue_dir).expanduser().resolve()) if cfg.data.glue_dir else None,
            "n_dev": {k: len(v["index"]) for k, v in evals.items()},
            "majority_score": majority_score(task, dm.splits["train"].labels, evals),
            "epochs": trainer.current_epoch, "steps": trainer.global_step, "resumed": resumed,
            "history": module.history,
            "selected": {"select": cfg.eval.select, "index": chosen, **{k: module.history[chosen][k]
                                                                          for k in ("epoch", "step")}},
            "stopped_early": bool(getattr(trainer.early_stopping_callback, "stopped_epoch", 0)),
            "hparams": hparams(cfg),
            "versions": {"torch": torch.__version__, "lightning": L.__version__},
            "device": str(module.device),
        }
        write_predictions(out_dir / PREDICTIONS, task, evals)
        if cfg.save_model:
            from safetensors.torch import save_model
            weights = out_dir / rundir.MODEL
            save_model(model, str(rundir.tmp_path(weights)))
            os.replace(rundir.tmp_path(weights), weights)
        if logger:
            logger.log_metrics({f"final/{k}": v for k, v in metrics.items()} | {"final/score": score})
            if hasattr(logger, "experiment") and hasattr(logger.experiment, "summary"):
                logger.experiment.summary.update({"score": score, **{f"metrics/{k}": v for k, v in metrics.items()}})
        write_json_atomic(results_path, results)
        rundir.record_launch(out_dir, "rerun" if broken else "finished", resumed=resumed)
        if not cfg.checkpoint.keep:
            rundir.remove_checkpoints(out_dir)
        log.info("%s %s %s seed %s: %s (score %.4f) in %.0f s", task.name, cfg.pooling.name, cfg.model.name,
                 cfg.seed, {k: round(v, 4) for k, v in metrics.items()}, score, results["wall_s"])
        return results
    finally:
        _finish_logger(logger)


def _eval_callbacks(cfg: DictConfig) -> list:
    """Early stopping on the dev score (Lightning's callback; patience counted in evaluations)."""
    patience = cfg.eval.get("early_stopping")
    if patience is None:
        return []
    from lightning.pytorch.callbacks import EarlyStopping

    return [EarlyStopping(monitor="val/score", mode="max", patience=int(patience), check_on_train_epoch_end=False,
                          check_finite=False)]


def _eval_schedule(cfg: DictConfig) -> dict[str, Any]:
    """``eval.per_epoch`` dev evaluations per epoch (the last at the epoch's end)."""
    per_epoch = int(cfg.eval.get("per_epoch") or 1)
    return {"val_check_interval": 1.0 / per_epoch} if per_epoch > 1 else {}


def ddp_worker() -> bool:
    """A process that a data-parallel launcher started beside the first one (rank > 0)."""
    return any(int(os.environ.get(k) or 0) > 0 for k in ("RANK", "LOCAL_RANK", "NODE_RANK"))


def _trainer(cfg: DictConfig, **kwargs: Any) -> L.Trainer:
    """The Lightning Trainer of the config, with our placement; a setting the machine cannot
    satisfy is one line. A data-parallel run uses its share of the CPU cores per process."""
    from lightning.fabric.utilities.exceptions import MisconfigurationException

    try:
        trainer: L.Trainer = instantiate(cfg.trainer, **kwargs, **_placement(cfg))
    except Exception as err:
        cause = err.__cause__ if isinstance(err.__cause__, MisconfigurationException) else err
        if isinstance(cause, MisconfigurationException):
            raise UserError(f"trainer.devices={cfg.trainer.devices}, trainer.accelerator={cfg.trainer.accelerator}: "
                            f"{str(cause).splitlines()[0]}") from err
        raise
    world = trainer.world_size
    if world > 1:
        if HydraConfig.get().mode == RunMode.MULTIRUN:
            raise UserError(f"trainer.devices={cfg.trainer.devices}: a data-parallel run is a single run "
                            "(python train.py trainer=ddp ...); sweeps run many single-device runs at once "
                            "(hydra/launcher=joblib or slurm)")
        on_cpu = type(trainer.accelerator).__name__ == "CPUAccelerator"
        if on_cpu and world > (os.cpu_count() or 1):
            raise UserError(f"trainer.devices={cfg.trainer.devices}: this machine has {os.cpu_count()} CPU "
                            f"core(s) for {world} processes; allowed: 1 to {os.cpu_count()}")
        if on_cpu and not cfg.speed.threads:
            torch.set_num_threads(max(1, (os.cpu_count() or 1) // world))
    return trainer


def _parallel_jobs() -> int:
    """How many jobs of this sweep share this machine (joblib's n_jobs; 1 otherwise)."""
    hc = HydraConfig.get()
    if hc.mode != RunMode.MULTIRUN or "joblib" not in str(hc.launcher.get("_target_", "")):
        return 1
    n = int(hc.launcher.get("n_jobs") or 1)
    return (os.cpu_count() or 1) if n < 0 else n


def _threads_per_parallel_job() -> int | None:
    """The CPUs a SLURM job was given (``SLURM_CPUS_PER_TASK``); parallel jobs on one machine
    split its cores instead of oversubscribing them."""
    slurm = os.environ.get("SLURM_CPUS_PER_TASK", "")
    if slurm.isdigit() and int(slurm) > 0:
        return int(slurm)
    jobs = _parallel_jobs()
    return max(1, (os.cpu_count() or 1) // jobs) if jobs > 1 else None


def _optimizer_overrides(cfg: DictConfig) -> dict[str, Any]:
    """``fused: null`` means automatic: the fused (single-kernel) optimizer step, except with
    ``*-mixed`` precision and gradient clipping together, which Lightning refuses for an optimizer
    that unscales gradients itself."""
    if "fused" in cfg.optimizer and cfg.optimizer.fused is None:
        mixed = str(cfg.trainer.precision).endswith("-mixed")
        return {"fused": not (mixed and cfg.trainer.gradient_clip_val)}
    return {}


def _placement(cfg: DictConfig) -> dict[str, Any]:
    """Trainer arguments that depend on where the job runs.

    - Parallel jobs on one multi-GPU machine (joblib never assigns GPUs) each take their own
      GPU, round-robin by job number.
    - Checkpoints are written by :class:`AtomicCheckpointIO` (unless ``trainer.plugins`` is set).
    - Under SLURM, requeueing belongs to submitit (``hydra/launcher=slurm``): Lightning's own
      SLURM auto-requeue is switched off so that the two never both resubmit.
    """
    out: dict[str, Any] = {}
    if cfg.trainer.plugins is None:  # checkpoints written atomically in the run folder
        out["plugins"] = [AtomicCheckpointIO()]
    n_gpus = torch.cuda.device_count()
    if n_gpus > 1 and cfg.trainer.devices == 1 and cfg.trainer.accelerator in ("auto", "gpu", "cuda") \
            and _parallel_jobs() > 1:
        out["devices"] = [HydraConfig.get().job.num % n_gpus]
    if os.environ.get("SLURM_JOB_ID") and cfg.trainer.plugins is None:
        from lightning.pytorch.plugins.environments import SLURMEnvironment
        out["plugins"].append(SLURMEnvironment(auto_requeue=False))
    return out


def _logger_defaults(cfg: DictConfig) -> dict[str, Any]:
    """A logger's ``group`` left null (W&B's) becomes the sweep folder's name in multirun."""
    if "group" in cfg.logger and cfg.logger.group is None and HydraConfig.get().mode == RunMode.MULTIRUN:
        return {"group": Path(HydraConfig.get().sweep.dir).name}
    return {}


def _finish_logger(logger) -> None:
    """Each job ends its W&B run, or the next job of a multirun logs into it."""
    from lightning.pytorch.loggers import WandbLogger

    if isinstance(logger, WandbLogger):
        import wandb

        if wandb.run is not None:
            wandb.finish()


def exit_now(code: int = 0) -> None:
    """End a finished run's process without the interpreter's teardown (freeing thousands of
    torch/transformers/lightning objects and modules: about a second on a small CPU). Everything
    the run wrote is closed by then; logs and W&B are flushed and shut down here first."""
    if "wandb" in sys.modules:
        sys.modules["wandb"].teardown()
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def user_error(err: BaseException) -> UserError | None:
    """The UserError behind ``err``, also when Hydra's instantiate wrapped it."""
    while err is not None:
        if isinstance(err, UserError):
            return err
        err = err.__cause__
    return None


def main(cfg: DictConfig) -> float | None:
    """Hydra task function: runs, and records a failure in the run folder instead of losing it.

    User errors print one line. In a multirun a failing job is recorded in ``failed.json`` and the
    sweep goes on; a single run exits non-zero. A folder that holds another run is left untouched.
    """
    out_dir = Path(HydraConfig.get().runtime.output_dir)
    multirun = HydraConfig.get().mode == RunMode.MULTIRUN
    datasets.disable_progress_bars()  # tokenising/caching bars would fill every run's log
    try:
        return run(cfg)["score"]
    except rundir.RunFolderConflict as err:
        rundir.record_launch(out_dir, "refused", error=str(err))
        if multirun:
            log.error("job refused: %s", err)
            return None
        fail(str(err))
    except (Exception, KeyboardInterrupt) as err:
        user = user_error(err)
        err = user or err
        if ddp_worker():
            raise
        try:
            write_json_atomic(out_dir / FAILED, {
                "error": f"{type(err).__name__}: {err}", "user_error": user is not None,
                "traceback": None if user else traceback.format_exc(), "time": time.time(),
            })
        except OSError as write_err:
            log.error("could not write %s: %s", out_dir / FAILED, write_err)
        if isinstance(err, KeyboardInterrupt):
            raise
        rundir.record_launch(out_dir, "failed", error=f"{type(err).__name__}: {err}")
        if multirun:
            log.error("job failed (recorded in %s): %s", out_dir / FAILED, err)
            return None
        if user:
            fail(user)
        raise
