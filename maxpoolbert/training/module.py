"""The LightningModule: training step, per-epoch dev evaluation, AdamW + linear warm-up/decay."""

from __future__ import annotations

import math
from collections.abc import Callable

import lightning as L
import numpy as np
import torch
from torch import nn
from transformers import get_linear_schedule_with_warmup

from maxpoolbert.core import metrics as M
from maxpoolbert.core.errors import UserError
from maxpoolbert.model.classifier import PooledClassifier
from maxpoolbert.model.layers import layer_decay_groups
from maxpoolbert.tasks.task import HELDOUT, Task
from maxpoolbert.training.live_metrics import LIVE
from maxpoolbert.training.memory import release as release_memory

STATIC_SHAPES = 64  # compiled graphs a statically compiled run may hold (speed.compile_dynamic=false)


def param_groups(model: nn.Module) -> list[dict]:
    """Weight decay (the optimizer's setting) on matrices only: biases, LayerNorm weights and
    scalar/positional pooling scores (all parameters with fewer than two dimensions) get none,
    as in BERT."""
    decay, no_decay = [], []
    for p in model.parameters():
        if p.requires_grad:
            (decay if p.ndim >= 2 else no_decay).append(p)
    return [{"params": decay}, {"params": no_decay, "weight_decay": 0.0}]


class GlueModule(L.LightningModule):
    def __init__(
        self, model: PooledClassifier, task: Task, optimizer: Callable, warmup_ratio: float = 0.1,
        seed: int = 0, compile: bool | dict = False, heldout: bool = False,
    ) -> None:
        super().__init__()
        self.model, self.task = model, task
        self.optimizer_factory, self.warmup_ratio, self.seed = optimizer, warmup_ratio, seed
        self._steps_before = 0  # the optimizer steps before this batch (on_train_batch_end)
        # the splits every evaluation predicts: the dev splits, then (data.heldout_size) the held-out
        # training rows, scored with the first dev split's metrics but never part of the dev score
        self.eval_specs = {split: dict(spec.metrics) for split, spec in task.eval.items()}
        if heldout:
            self.eval_specs[HELDOUT] = dict(next(iter(task.eval.values())).metrics)
        self.eval_names = list(self.eval_specs)
        self.live = nn.ModuleDict({
            split: nn.ModuleDict({k: LIVE[name](max(task.num_labels, 2)) for k, name in metrics.items()})
            for split, metrics in self.eval_specs.items()
        })
        self._gathered: dict[str, list] = {}
        self.last_eval: dict[str, dict[str, np.ndarray]] = {}
        self.last_eval_step = -1
        # One entry per complete dev evaluation (epoch, step, metrics, score), and the rows of the
        # best one so far (highest score; the first of equals): both kept in checkpoints.
        self.history: list[dict] = []
        self.best_eval: dict[str, dict[str, np.ndarray]] = {}
        self.best_index = -1
        # Not a submodule: the compiled wrapper shares the model's parameters. ``compile``: False, or
        # torch.compile's options (backend, dynamic, mode).
        options = compile if isinstance(compile, dict) else {}
        if compile and options.get("dynamic") is False:
            # one graph per input shape: room for every bucketed (batch, length) shape of a run, not
            # torch's default of 8 after which it silently falls back to eager
            torch._dynamo.config.recompile_limit = max(torch._dynamo.config.recompile_limit, STATIC_SHAPES)
        object.__setattr__(self, "forward_fn", torch.compile(model, **options) if compile else model)

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.forward_fn(batch["input_ids"], batch["attention_mask"], batch["token_type_ids"])

    # ------------------------------------------------------------------ training
    def on_train_epoch_start(self) -> None:
        release_memory()  # evaluation's freed blocks go back before training's come (memory.py)

    def on_train_batch_start(self, batch, batch_idx) -> None:
        # Each step's randomness (dropout) depends only on (seed, step), so a run resumed from a
        # checkpoint continues exactly as the uninterrupted run would (with the sampler's
        # (seed, epoch) batch order).
        torch.manual_seed(self.seed * 1_000_003 + self.global_step)
        self._steps_before = self.global_step

    def on_train_batch_end(self, outputs, batch, batch_idx) -> None:
        # The optimizer has stepped: its gradients are spent. Lightning sets them to None only after
        # the next batch's forward, so the next forward's activations would share the peak with them
        # (one model's worth: 87 MB for MiniLM); the Hugging Face Trainer frees them here too.
        # With gradient accumulation, a batch that did not step keeps them.
        if self.global_step != self._steps_before:
            self.model.zero_grad(set_to_none=True)

    def training_step(self, batch, batch_idx):
        if "weight" in batch:  # one part of a global batch (data-parallel): see ShardedBatchSampler
            loss = (self.model.loss(self(batch), batch["labels"], reduction="none") * batch["weight"]).sum()
        else:
            loss = self.model.loss(self(batch), batch["labels"])
        if getattr(self.trainer.precision_plugin, "scaler", None) is None:  # fp16's scaler skips an overflowed step
            self.check_finite(loss.detach(), "the training loss")
        self.log("train/loss", loss, prog_bar=True, batch_size=batch["labels"].shape[0])
        self.log("train/lr", self.lr_schedulers().get_last_lr()[0], batch_size=batch["labels"].shape[0])
        return loss

    def check_finite(self, value: torch.Tensor, what: str) -> None:
        """Stop a run that diverged (``value``: the loss): a non-finite loss or weight trains on to
        constant predictions that would pass for a finished run (a :class:`UserError` naming
        ``optimizer.lr``, recorded in ``failed.json``). With several processes they stop together
        (one process alone would hang the others)."""
        self._stop_if(not bool(torch.isfinite(value).all()), what)

    def check_weights(self) -> None:
        """Stop a run whose weights are no longer all finite (at each evaluation: one sync)."""
        finite = torch.stack([torch.isfinite(p).all() for p in self.model.parameters()]).all()
        self._stop_if(not bool(finite), "the weights")

    def _stop_if(self, bad: bool, what: str) -> None:
        if self.trainer.world_size > 1:
            bad = self.trainer.strategy.reduce_boolean_decision(bad, all=False)
        if bad:
            lr = getattr(self.optimizer_factory, "keywords", {}).get("lr")
            raise UserError(f"training diverged: {what} became non-finite at step {self.global_step}",
                            key="optimizer.lr", value=lr,
                            allowed="a smaller learning rate, or gradient clipping (trainer.gradient_clip_val=1.0)")

    # ------------------------------------------------------------------ evaluation
    def on_validation_epoch_start(self) -> None:
        release_memory()  # training's freed activations go back before evaluation's come (memory.py)
        self._gathered = {name: [] for name in self.eval_names}

    def validation_step(self, batch, batch_idx, dataloader_idx: int = 0):
        split = self.eval_names[dataloader_idx]
        preds = self.model.predictions(self(batch))
        labels = batch["labels"]
        for metric in self.live[split].values():
            metric.update(preds, labels.to(preds.dtype) if preds.is_floating_point() else labels)
        self._gathered[split].append((batch["idx"].cpu(), preds.detach().cpu(), labels.cpu()))

    def on_validation_epoch_end(self) -> None:
        for split, live in self.live.items():
            for key, metric in live.items():
                name = f"val/{HELDOUT}_{key}" if split == HELDOUT else f"val/{key}"
                self.log(name, metric.compute(), add_dataloader_idx=False)
                metric.reset()
        gathered = self._gathered
        if self.trainer.world_size > 1:  # each process evaluated its share of the rows: gather them all
            import torch.distributed as dist

            shares: list = [None] * self.trainer.world_size
            dist.all_gather_object(shares, gathered)
            gathered = {name: [part for share in shares for part in share[name]] for name in self.eval_names}
        self.last_eval = {split: _in_file_order(parts) for split, parts in gathered.items() if parts}
        self.last_eval_step = self.global_step
        if not self.trainer.sanity_checking and len(self.last_eval) == len(self.eval_names):
            self.check_weights()
            metrics = self.dev_metrics()
            score = M.glue_score(metrics)
            self.log("val/score", score, add_dataloader_idx=False, prog_bar=True)
            entry = {"epoch": int(self.current_epoch), "step": int(self.global_step),
                     "metrics": {k: float(v) for k, v in metrics.items()}, "score": float(score)}
            if HELDOUT in self.eval_specs:
                entry[HELDOUT] = self.heldout_metrics()
            self.history.append(entry)
            best = self.history[self.best_index]["score"] if self.best_index >= 0 else None
            if best is None or (math.isfinite(score) and not (math.isfinite(best) and score <= best)):
                self.best_eval, self.best_index = self.last_eval, len(self.history) - 1

    def dev_metrics(self, evals: dict[str, dict[str, np.ndarray]] | None = None) -> dict[str, float]:
        """GLUE metrics of an evaluation (default: the last), from all its rows (scikit-learn / scipy)."""
        evals = self.last_eval if evals is None else evals
        out: dict[str, float] = {}
        for split, spec in self.task.eval.items():
            rows = evals[split]
            out.update(M.compute(spec.metrics, rows["prediction"], rows["label"]))
        return out

    def heldout_metrics(self, evals: dict[str, dict[str, np.ndarray]] | None = None) -> dict | None:
        """``{"n", "metrics", "score"}`` of the held-out rows in an evaluation (default: the last);
        None without them. Live metrics log them as ``val/heldout_<metric>``; the dev score never
        includes them."""
        evals = self.last_eval if evals is None else evals
        if HELDOUT not in self.eval_specs or HELDOUT not in evals:
            return None
        rows = evals[HELDOUT]
        metrics = M.compute(self.eval_specs[HELDOUT], rows["prediction"], rows["label"])
        return {"n": int(len(rows["index"])), "metrics": {k: float(v) for k, v in metrics.items()},
                "score": float(M.glue_score(metrics))}

    def selected(self, select: str) -> tuple[dict[str, dict[str, np.ndarray]], int]:
        """The evaluation that reports the run (``last`` or ``best``) and its history index."""
        if select == "best" and self.best_index >= 0:
            return self.best_eval, self.best_index
        return self.last_eval, len(self.history) - 1

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        # tensors, not NumPy arrays: checkpoints load with torch.load(weights_only=True)
        best = {split: {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in rows.items()}
                for split, rows in self.best_eval.items()}
        checkpoint["maxpoolbert"] = {"history": self.history, "best_eval": best, "best_index": self.best_index}

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        state = checkpoint.get("maxpoolbert", {})
        self.history = list(state.get("history", []))
        self.best_eval = {split: {k: v.numpy() for k, v in rows.items()}
                          for split, rows in state.get("best_eval", {}).items()}
        self.best_index = state.get("best_index", -1)

    # ------------------------------------------------------------------ optimisation
    def configure_optimizers(self):
        options = getattr(self.optimizer_factory, "keywords", {})  # the optimizer config's settings
        if options.get("layer_decay") is None:
            groups = param_groups(self.model)
        else:  # layer-wise learning-rate decay: each group's lr from the optimizer's own lr
            groups = layer_decay_groups(self.model, options["lr"], options["layer_decay"])
        optimizer = self.optimizer_factory(params=groups)
        total = int(self.trainer.estimated_stepping_batches)
        warmup = math.ceil(self.warmup_ratio * total)
        scheduler = get_linear_schedule_with_warmup(optimizer, warmup, total)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}


def _in_file_order(parts: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]) -> dict[str, np.ndarray]:
    idx = torch.cat([p[0] for p in parts]).numpy()
    order = np.argsort(idx, kind="stable")
    return {
        "index": idx[order],
        "prediction": torch.cat([p[1] for p in parts]).numpy()[order],
        "label": torch.cat([p[2] for p in parts]).numpy()[order],
    }
