"""One fine-tuning run, from a composed Hydra config to ``results.json``.

Everything the run builds comes from the config through ``hydra.utils.instantiate``: the task,
the tokenizer and encoder (``model``), the pooling strategy, the optimizer, the Lightning
Trainer and the logger. The run folder receives checkpoints (while running), ``model.safetensors``,
``dev_predictions.tsv`` and, last and atomically, ``results.json``.
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
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
from lightning.pytorch.callbacks import Callback, ModelCheckpoint
from omegaconf import DictConfig, OmegaConf

from maxpoolbert import encoders
from maxpoolbert import metrics as M
from maxpoolbert.data import GlueDataModule
from maxpoolbert.errors import UserError
from maxpoolbert.model import PooledClassifier
from maxpoolbert.module import GlueModule
from maxpoolbert.tasks import GlueTask

log = logging.getLogger("maxpoolbert")
# Lightning adds its own console handler; Hydra's root handlers already print (and file) its logs.
for _name in ("lightning", "lightning.pytorch", "lightning.fabric"):
    for _handler in list(logging.getLogger(_name).handlers):
        logging.getLogger(_name).removeHandler(_handler)

RESULTS = "results.json"
FAILED = "failed.json"
PREDICTIONS = "dev_predictions.tsv"


# ---------------------------------------------------------------------------- small helpers
def write_json_atomic(path: Path, obj: Any) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(_finite(obj), indent=2) + "\n")
    os.replace(tmp, path)


def _finite(obj: Any) -> Any:
    """NaN/inf are not JSON: write them as null."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_finite(v) for v in obj]
    return obj


def write_predictions(path: Path, task: GlueTask, evals: dict[str, dict[str, np.ndarray]]) -> None:
    fmt = (lambda x: repr(float(x))) if task.is_regression else (lambda x: str(int(x)))
    tmp = path.with_name(f".{path.name}.tmp")
    with tmp.open("w") as f:
        f.write("split\tindex\tlabel\tprediction\n")
        for split in task.eval:
            rows = evals[split]
            for i, y, p in zip(rows["index"], rows["label"], rows["prediction"], strict=True):
                f.write(f"{split}\t{int(i)}\t{fmt(y)}\t{fmt(p)}\n")
    os.replace(tmp, path)


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
        "lr": cfg.optimizer.get("lr"), "weight_decay": cfg.optimizer.get("weight_decay"),
        "batch_size": cfg.data.batch_size, "max_epochs": cfg.trainer.max_epochs,
        "max_steps": cfg.trainer.max_steps, "max_length": cfg.data.max_length,
        "warmup_ratio": cfg.scheduler.warmup_ratio, "use_pooler": cfg.head.use_pooler,
        "head_dropout": cfg.head.dropout, "precision": str(cfg.trainer.precision),
        "accumulate_grad_batches": cfg.trainer.accumulate_grad_batches,
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


class ResumeCheckpoint(ModelCheckpoint):
    """One rolling ``checkpoints/last.ckpt``, written at the end of every n-th training epoch
    except the last: after the last epoch only the results are left to write, so a checkpoint
    there (hundreds of MB for BERT-base, with the optimizer state) would be written only to be
    deleted."""

    def __init__(self, dirpath: Path, every_n_epochs: int) -> None:
        super().__init__(dirpath=dirpath, filename="last", save_top_k=1, enable_version_counter=False,
                         every_n_epochs=every_n_epochs, save_on_train_epoch_end=True)

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        last_epoch = trainer.max_epochs not in (None, -1) and trainer.current_epoch + 1 >= trainer.max_epochs
        last_step = trainer.max_steps not in (None, -1) and trainer.global_step >= trainer.max_steps
        if not (last_epoch or last_step or trainer.should_stop):
            super().on_train_epoch_end(trainer, pl_module)


class Throughput(Callback):
    """Training samples and seconds, and when the first step started.

    The seconds are the training loop's wall clock: from each epoch's start to its last batch's
    end, so loading batches and the loop's own overhead count, the dev evaluation (which runs
    after the epoch's last batch) does not."""

    def __init__(self) -> None:
        self.samples, self.seconds, self._t = 0, 0.0, None
        self.first_step_s: float | None = None

    def on_train_epoch_start(self, trainer, pl_module):
        self._t = time.perf_counter()

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if self.first_step_s is None:
            self.first_step_s = process_age()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        now = time.perf_counter()
        self.seconds += now - self._t
        self.samples += int(batch["labels"].shape[0])
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
    # New pooling parameters draw from their own stream, so for one seed the classifier's
    # initial weights are the same whichever pooling is used (paired comparisons).
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed + 7919)
        pooling = instantiate(cfg.pooling.module, _partial_=True)(encoder_config=encoder.config)
    model = PooledClassifier(encoder, pooling, task.num_labels, **cfg.head)
    loaded = encoders.load_pretrained_head(model)
    if loaded:
        log.info("head weights from the checkpoint: %s", ", ".join(loaded))
    # from_pretrained returns eval mode and Lightning keeps a module's mode: train mode (dropout
    # on) must be set here, as the Hugging Face Trainer does.
    return task, tokenizer, model.train()


def run(cfg: DictConfig) -> dict[str, Any]:
    started = time.time()
    out_dir = Path(HydraConfig.get().runtime.output_dir)
    results_path = out_dir / RESULTS
    if cfg.skip_finished and results_path.exists():
        log.info("skipping %s: %s exists", out_dir, RESULTS)
        return json.loads(results_path.read_text())
    (out_dir / FAILED).unlink(missing_ok=True)
    threads = cfg.speed.threads or _threads_per_parallel_job()
    if threads:
        torch.set_num_threads(int(threads))
    if cfg.speed.tf32 and torch.cuda.is_available():
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True

    task, tokenizer, model = build(cfg)
    dm = GlueDataModule(task, tokenizer, seed=cfg.seed, **cfg.data)
    module = GlueModule(model, task, instantiate(cfg.optimizer, **_optimizer_overrides(cfg)), cfg.scheduler.warmup_ratio,
                        seed=cfg.seed, compile=cfg.speed.compile)

    ckpt_dir = out_dir / "checkpoints"
    checkpoint = ResumeCheckpoint(ckpt_dir, cfg.checkpoint.every_n_epochs)
    throughput = Throughput()
    logger = instantiate(cfg.logger, **_logger_defaults(cfg))
    trainer: L.Trainer = instantiate(cfg.trainer, callbacks=[checkpoint, throughput], logger=logger,
                                     **_placement(cfg))
    if logger:
        logger.log_hyperparams(OmegaConf.to_container(cfg, resolve=True))

    last = ckpt_dir / "last.ckpt"
    resumed = last.exists()
    if resumed:
        log.info("resuming from %s", last)
    try:
        trainer.fit(module, datamodule=dm, ckpt_path=str(last) if last.exists() else None)
        if module.last_eval_step != trainer.global_step or len(module.last_eval) != len(task.eval):
            trainer.validate(module, datamodule=dm, verbose=False)
        metrics = module.dev_metrics()
        score = M.glue_score(metrics)
        results = {
            "task": task.name, "pooling": cfg.pooling.name, "model": cfg.model.name, "seed": int(cfg.seed),
            "metrics": metrics, "score": score,
            "train_samples_per_s": throughput.samples / throughput.seconds if throughput.seconds else None,
            "train_s": throughput.seconds, "wall_s": time.time() - started,
            "process_s": process_age(), "first_step_s": throughput.first_step_s,
            "peak_memory_mb": peak_memory_mb(),
            "params": model.param_counts(),
            "train_size": cfg.data.train_size, "n_train": len(dm.splits["train"]),
            "glue_dir": str(Path(cfg.data.glue_dir).expanduser().resolve()) if cfg.data.glue_dir else None,
            "n_dev": {k: len(v["index"]) for k, v in module.last_eval.items()},
            "majority_score": majority_score(task, dm.splits["train"].labels, module.last_eval),
            "epochs": trainer.current_epoch, "steps": trainer.global_step, "resumed": resumed,
            "hparams": hparams(cfg),
            "versions": {"torch": torch.__version__, "lightning": L.__version__},
            "device": str(module.device),
        }
        write_predictions(out_dir / PREDICTIONS, task, module.last_eval)
        if cfg.save_model:
            from safetensors.torch import save_model
            save_model(model, str(out_dir / "model.safetensors"))
        if logger:
            logger.log_metrics({f"final/{k}": v for k, v in metrics.items()} | {"final/score": score})
            if hasattr(logger, "experiment") and hasattr(logger.experiment, "summary"):
                logger.experiment.summary.update({"score": score, **{f"metrics/{k}": v for k, v in metrics.items()}})
        write_json_atomic(results_path, results)
        if not cfg.checkpoint.keep:
            shutil.rmtree(ckpt_dir, ignore_errors=True)
        log.info("%s %s %s seed %s: %s (score %.4f) in %.0f s", task.name, cfg.pooling.name, cfg.model.name,
                 cfg.seed, {k: round(v, 4) for k, v in metrics.items()}, score, results["wall_s"])
        return results
    finally:
        _finish_logger(logger)


def _parallel_jobs() -> int:
    """How many jobs of this sweep share this machine (joblib's n_jobs; 1 otherwise)."""
    hc = HydraConfig.get()
    if hc.mode != RunMode.MULTIRUN or "joblib" not in str(hc.launcher.get("_target_", "")):
        return 1
    n = int(hc.launcher.get("n_jobs") or 1)
    return (os.cpu_count() or 1) if n < 0 else n


def _threads_per_parallel_job() -> int | None:
    """Parallel jobs on one machine split its cores instead of oversubscribing them."""
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
    - Under SLURM, requeueing belongs to submitit (``hydra/launcher=slurm``): Lightning's own
      SLURM auto-requeue is switched off so that the two never both resubmit.
    """
    out: dict[str, Any] = {}
    n_gpus = torch.cuda.device_count()
    if n_gpus > 1 and cfg.trainer.devices == 1 and cfg.trainer.accelerator in ("auto", "gpu", "cuda") \
            and _parallel_jobs() > 1:
        out["devices"] = [HydraConfig.get().job.num % n_gpus]
    if os.environ.get("SLURM_JOB_ID") and cfg.trainer.plugins is None:
        from lightning.pytorch.plugins.environments import SLURMEnvironment
        out["plugins"] = [SLURMEnvironment(auto_requeue=False)]
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
    sweep goes on; a single run exits non-zero.
    """
    out_dir = Path(HydraConfig.get().runtime.output_dir)
    multirun = HydraConfig.get().mode == RunMode.MULTIRUN
    datasets.disable_progress_bars()  # tokenising/caching bars would fill every run's log
    try:
        return run(cfg)["score"]
    except (Exception, KeyboardInterrupt) as err:
        user = user_error(err)
        err = user or err
        write_json_atomic(out_dir / FAILED, {
            "error": f"{type(err).__name__}: {err}", "user_error": user is not None,
            "traceback": None if user else traceback.format_exc(), "time": time.time(),
        })
        if isinstance(err, KeyboardInterrupt):
            raise
        if multirun:
            log.error("job failed (recorded in %s): %s", out_dir / FAILED, err)
            return None
        if user:
            raise SystemExit(f"error: {err}") from None
        raise
