"""One Hugging Face ``Trainer`` fine-tuning run, as ``run_glue.py`` would do it (a helper of
``scripts/bench.py``, which starts it as its own process so that imports count in its time).

    python scripts/bench_hf.py SPEC.json

``SPEC.json`` (written by bench.py) holds the model folder, the task's GLUE text columns, the
training rows (the same fixed subset our run uses, already read from the GLUE TSV files by
bench.py with the project's parser), the full dev set, the padding mode and the hyper-parameters.
The result JSON (``spec["result"]``) holds ``train_runtime`` (Trainer's own training-loop time),
the dev metric (scikit-learn), the process age at the first training step and this process's
peak RSS.

Padding modes: ``max_length`` (run_glue's default: every row padded to 128,
``default_data_collator``), ``dynamic`` (``DataCollatorWithPadding``) and ``grouped`` (dynamic +
``train_sampling_strategy="group_by_length"``, transformers 5.x's name for ``group_by_length``).
Everything else is left at the TrainingArguments defaults (eval batch 8, ``adamw_torch_fused``,
``max_grad_norm=1.0``, linear schedule, dataloader defaults). ``spec["bf16"]`` (the GPU benchmark,
scripts/bench_gpu.py): ``bf16=True`` and ``tf32=True``; the result then also holds the peak GPU memory.
"""

from __future__ import annotations

import json
import resource
import sys
import tempfile
import time

import datasets
import numpy as np
import psutil
from sklearn.metrics import accuracy_score, matthews_corrcoef
from transformers import (
    AutoModelForSequenceClassification,
    AutoTokenizer,
    DataCollatorWithPadding,
    Trainer,
    TrainerCallback,
    TrainingArguments,
    default_data_collator,
    set_seed,
)

PADDING_MODES = ("max_length", "dynamic", "grouped")
METRICS = {"accuracy": accuracy_score, "mcc": matthews_corrcoef}


def process_age() -> float:
    return time.time() - psutil.Process().create_time()


class FirstStep(TrainerCallback):
    """Records the process age when the first training step begins."""

    first_step_s: float | None = None

    def on_step_begin(self, args, state, control, **kwargs):
        if self.first_step_s is None:
            self.first_step_s = process_age()


def peak_gpu_mb() -> float | None:
    import torch

    return torch.cuda.max_memory_allocated() / 2**20 if torch.cuda.is_available() else None


def tokenize(rows: dict, tokenizer, max_length: int, pad_to_max: bool) -> datasets.Dataset:
    """run_glue's ``preprocess_function``: one or two text columns, truncation to max_length."""
    ds = datasets.Dataset.from_dict(rows)
    pair = "text_b" in rows

    def encode(batch):
        texts = (batch["text_a"], batch["text_b"]) if pair else (batch["text_a"],)
        return tokenizer(*texts, padding="max_length" if pad_to_max else False,
                         max_length=max_length, truncation=True)

    return ds.map(encode, batched=True)


def run(spec: dict) -> dict:
    mode = spec["padding"]
    if mode not in PADDING_MODES:
        raise SystemExit(f"padding must be one of {PADDING_MODES}, not {mode!r}")
    hp = spec["hparams"]
    set_seed(hp["seed"])  # before the model, as run_glue does: the head's init depends on it
    tokenizer = AutoTokenizer.from_pretrained(spec["model"])
    model = AutoModelForSequenceClassification.from_pretrained(spec["model"], num_labels=spec["num_labels"])
    pad_to_max = mode == "max_length"
    train = tokenize(spec["train"], tokenizer, hp["max_length"], pad_to_max)
    dev = tokenize(spec["dev"], tokenizer, hp["max_length"], pad_to_max)

    metric_name = spec["metric"]

    def compute_metrics(pred):
        return {metric_name: float(METRICS[metric_name](pred.label_ids, np.argmax(pred.predictions, -1)))}

    with tempfile.TemporaryDirectory(prefix="bench_hf_") as out_dir:
        args = TrainingArguments(
            output_dir=out_dir,
            learning_rate=hp["lr"],
            per_device_train_batch_size=hp["batch_size"],
            num_train_epochs=hp["epochs"],
            seed=hp["seed"],
            warmup_steps=hp["warmup_ratio"],  # a float < 1 is a ratio in 5.x (warmup_ratio is gone)
            weight_decay=hp["weight_decay"],
            train_sampling_strategy="group_by_length" if mode == "grouped" else "random",
            eval_strategy="no",  # one evaluation of the full dev set after training
            save_strategy="no",
            report_to="none",
            disable_tqdm=True,
            **({"bf16": True, "tf32": True} if spec.get("bf16") else {}),
        )
        first = FirstStep()
        trainer = Trainer(
            model=model, args=args, train_dataset=train, eval_dataset=dev,
            processing_class=tokenizer, compute_metrics=compute_metrics, callbacks=[first],
            data_collator=default_data_collator if pad_to_max else DataCollatorWithPadding(tokenizer),
        )
        train_metrics = trainer.train().metrics
        eval_metrics = trainer.evaluate()
    return {
        "padding": mode,
        "train_s": train_metrics["train_runtime"],
        "steps": trainer.state.global_step,
        "n_train": len(train),
        "n_dev": len(dev),
        "metric": metric_name,
        "dev_metric": eval_metrics[f"eval_{metric_name}"],
        "first_step_s": first.first_step_s,
        "process_s": process_age(),
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "peak_gpu_mb": peak_gpu_mb(),
        "settings": {k: getattr(args, k) for k in (
            "learning_rate", "per_device_train_batch_size", "per_device_eval_batch_size",
            "num_train_epochs", "seed", "warmup_steps", "weight_decay", "max_grad_norm",
            "train_sampling_strategy", "dataloader_num_workers")}
        | {k: str(getattr(getattr(args, k), "value", getattr(args, k))) for k in ("optim", "lr_scheduler_type")},
    }


def main() -> None:
    with open(sys.argv[1]) as f:
        spec = json.load(f)
    result = run(spec)
    with open(spec["result"], "w") as f:
        json.dump(result, f, indent=2)


if __name__ == "__main__":
    main()
