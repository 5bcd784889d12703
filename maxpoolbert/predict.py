"""Test-set predictions of finished runs, in the GLUE leaderboard submission format.

    python -m maxpoolbert.predict RUN_DIR [RUN_DIR ...] [--out DIR] [--glue-dir DIR] [--batch-size N]

A finished run folder (``train.py`` with ``save_model=true``) holds ``.hydra/config.yaml``,
``results.json`` and ``model.safetensors``. The classifier is rebuilt from the config
(:func:`maxpoolbert.launch.run.build`), the trained weights are loaded over it, and each test split of
the task is written to ``<SubmissionName>.tsv`` (``RTE.tsv``, ``MNLI-m.tsv``, ``MNLI-mm.tsv`` ...)
with the header ``index<TAB>prediction`` and one row per test example, in file order:

* label strings for tasks with ``label_values`` (RTE, QNLI, MNLI),
* class ids ``0``/``1`` for CoLA, SST-2, MRPC, QQP and WNLI,
* STS-B scores clipped to [0, 5], with three decimals.

Every test split of the task config with a submission name is predicted: an MNLI run also predicts
the GLUE diagnostic set into ``AX.tsv`` (``configs/task/mnli.yaml`` lists it as an optional split,
skipped with a note where ``diagnostic/diagnostic.tsv`` is missing). The files go to
``RUN_DIR/submission/`` for one run; several runs (e.g. one per task) need ``--out``, and all files
go there. Test data come from ``--glue-dir`` / ``--superglue-dir``, else the run's own setting
(``data.glue_dir``: ``GLUE_DIR`` of this shell when the run took it from the environment), else
the folder the run read on this machine (``data_dirs.local.json`` in the run folder, when that
folder exists), else the folder an older run recorded, else the hub dataset. Every run and test file is checked before
anything is predicted.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from omegaconf import DictConfig, OmegaConf

from maxpoolbert.config import targets
from maxpoolbert.core.errors import UserError, check_writable_folder, fail, user_error
from maxpoolbert.core.io import write_atomic
from maxpoolbert.runs.folder import RunFolder
from maxpoolbert.runs.record import NewerFormat
from maxpoolbert.tasks.benchmarks import BENCHMARK_DIRS, BENCHMARKS
from maxpoolbert.tasks.task import Task, from_config

if TYPE_CHECKING:
    import numpy as np

    from maxpoolbert.model.classifier import PooledClassifier
    from maxpoolbert.training.data import Encoded, TaskDataModule

# Every run and test file is checked (runs.folder, tasks: no torch) before torch, transformers and
# lightning are imported (inside the functions that predict): a wrong path is answered at once.

SUBMISSION_DIR = "submission"
HEADER = "index\tprediction\n"


@dataclass
class Target:
    """One submission file: the test split ``split`` of ``task``, written to ``<name>.tsv``."""

    task: Task
    split: str
    name: str


@dataclass
class Plan:
    """What to predict for one run, checked before any model is built."""

    folder: RunFolder
    cfg: DictConfig
    data_dirs: dict[str, str | None]  # each benchmark's data folder for this run
    targets: list[Target]
    notes: list[str] = field(default_factory=list)

    @property
    def run_dir(self) -> Path:
        return self.folder.path


def load_run(run_dir: Path) -> DictConfig:
    """The run's config, or a UserError saying why ``run_dir`` is not a finished run."""
    if not run_dir.is_dir():
        raise UserError(f"{run_dir} is not a folder")
    folder = RunFolder(run_dir)
    record, broken = folder.read()
    if isinstance(broken, NewerFormat):
        raise UserError(str(broken))
    if broken:
        raise UserError(f"{run_dir} is not a finished run: its {folder.results.name} is {broken}")
    if record is None:
        why = f" (it failed, see {folder.failed_file.name})" if folder.failure() else " (the run has not finished)"
        raise UserError(f"{run_dir} is not a finished run: no {folder.results.name}{why}")
    if not folder.model_file.is_file():
        if record.weights == "missing":
            raise UserError(f"{run_dir} has no {folder.model_file.name}: writing it failed after the results "
                            "(results.json: weights missing); train again with skip_finished=false to get them")
        raise UserError(f"{run_dir} has no {folder.model_file.name}: the trained weights are only kept by runs "
                        "with save_model=true (train again with it)")
    cfg = folder.config()
    if cfg is None:
        raise UserError(f"{run_dir} has no {folder.config_file.relative_to(run_dir)} (not a run folder written by train.py)")
    targets.check(cfg, folder.config_file)  # data: it builds only this project's own classes
    return targets.relocated(cfg)  # a run folder of an older layout names its classes' old paths


def plan_run(run_dir: Path, data_dirs: dict[str, str | None] | None = None) -> Plan:
    """Check a run and its test files; ``data_dirs`` (benchmark -> folder, :data:`~maxpoolbert.tasks.benchmarks.BENCHMARK_DIRS`)
    override the run's own benchmark folders."""
    cfg = load_run(run_dir)
    folder = RunFolder(run_dir)
    task = from_config(cfg.task, str(folder.config_file))
    given = {k: v for k, v in (data_dirs or {}).items() if v}
    record = folder.record()
    own = folder.data_dirs(cfg)  # the config's (the shell's GLUE_DIR), else the folder it read on this machine
    dirs = {name: given.get(name) or own[name] for name in BENCHMARK_DIRS}
    if not dirs["glue"] and record is not None:  # runs of older versions recorded their GLUE folder
        dirs["glue"] = record.recorded_glue_dir
    targets = [Target(task, split, task.submission_names[split]) for split in task.test
               if split in task.submission_names]
    if not targets:
        raise UserError(f"task {task.name} declares no test split with a submission name "
                        "(test: and submission_names: in its task config)")
    plan = Plan(folder, cfg, dirs, targets)
    root = task.root(dirs)
    if root and not Path(root).expanduser().is_dir():
        raise UserError(f"{task.source_key()}={root}: not a folder (--glue-dir/--superglue-dir, the run's "
                        f"{task.source_key()} or the variable it reads)")
    for target in list(plan.targets):
        where = target.task.folder(dirs, target.split)
        if where is None:
            continue
        path = where / target.task.split(target.split).file
        if path.is_file():
            continue
        if not target.task.split(target.split).optional:
            raise UserError(f"missing test file {path} (task {task.name}, split {target.split})")
        plan.targets.remove(target)
        plan.notes.append(f"note: no {path}: {target.name}.tsv skipped")
    return plan


PROGRESS_EVERY_S = 30.0


def predict_split(model: PooledClassifier, dm: TaskDataModule, data: Encoded, name: str = "test",
                  every_s: float | None = PROGRESS_EVERY_S) -> np.ndarray:
    """Raw outputs (logits, or the score for regression) of every row, ``[rows, num_labels]``,
    in file order. Every ``every_s`` seconds a progress line: ``<name>: rows done/total, time left``."""
    import numpy as np
    import torch

    from maxpoolbert.training.trainer import duration

    model.eval()
    device = next(model.parameters()).device
    out = np.zeros((len(data), model.num_labels), dtype=np.float32)
    seen = np.zeros(len(data), dtype=bool)
    start = time.monotonic()
    due = start + every_s if every_s else float("inf")
    with torch.no_grad():
        for batch in dm.eval_loader(data):
            logits = model(*(batch[k].to(device) for k in ("input_ids", "attention_mask", "token_type_ids")))
            idx = batch["idx"].numpy()
            out[idx] = logits.float().cpu().numpy()
            seen[idx] = True
            now = time.monotonic()
            if now >= due:
                due = now + every_s
                done = int(seen.sum())
                left = (len(data) - done) * (now - start) / done
                print(f"{name}: {done}/{len(data)} rows predicted ({100 * done / len(data):.0f}%), "
                      f"about {duration(left)} left", flush=True)
    if not seen.all():
        raise RuntimeError(f"{int((~seen).sum())} test row(s) got no prediction")
    return out


def format_predictions(task: Task, outputs: np.ndarray) -> list[str]:
    """Submission values: clipped 3-decimal scores (regression), label strings, or class ids."""
    import numpy as np

    if task.is_regression:
        return [f"{v:.3f}" for v in np.clip(outputs[:, 0], 0.0, 5.0)]
    ids = outputs.argmax(-1)
    if task.label_values is not None:
        return [task.label_values[i] for i in ids]
    return [str(int(i)) for i in ids]


def write_submission(path: Path, values: list[str]) -> None:
    """``index<TAB>prediction`` rows, written atomically (a full disk: one line, no partial file)."""
    write_atomic(path, HEADER + "".join(f"{i}\t{v}\n" for i, v in enumerate(values)))


def load_trained(run_dir: Path, cfg: DictConfig) -> tuple[Task, object, PooledClassifier]:
    """Task, tokenizer and classifier of a run, with its trained weights, in eval mode."""
    import torch
    from safetensors.torch import load_model

    from maxpoolbert.launch.run import build

    task, tokenizer, model = build(cfg)
    folder = RunFolder(run_dir)
    try:
        load_model(model, str(folder.model_file))
    except RuntimeError as err:
        detail = "; ".join(line.strip() for line in str(err).splitlines()[1:] if line.strip())
        detail = detail if len(detail) <= 300 else detail[:297] + "..."
        raise UserError(f"{folder.model_file} does not fit the model built from "
                        f"{folder.config_file.relative_to(run_dir)}: {detail or err}") from err
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return task, tokenizer, model.to(device).eval()


def predict_run(plan: Plan, out_dir: Path, batch_size: int | None = None,
                every_s: float | None = PROGRESS_EVERY_S) -> list[Path]:
    """Predict every target of one run into ``out_dir``; returns the files written."""
    from maxpoolbert.training.data import TaskDataModule

    _, tokenizer, model = load_trained(plan.run_dir, plan.cfg)
    dirs = plan.data_dirs
    data_args = {**OmegaConf.to_container(plan.cfg.data, resolve=True),
                 **{key: dirs[name] for name, key in BENCHMARK_DIRS.items()}}
    if batch_size:
        data_args["eval_batch_size"] = batch_size
    written = []
    for target in plan.targets:
        dm = TaskDataModule(target.task, tokenizer, seed=plan.cfg.seed, **data_args)
        try:
            data = dm.test_split(target.split)
        except UserError as err:
            if not target.task.split(target.split).optional:
                raise
            print(f"note: {target.name}.tsv skipped: {err}", flush=True)
            continue
        path = out_dir / f"{target.name}.tsv"
        outputs = predict_split(model, dm, data, f"{target.name}.tsv", every_s)
        write_submission(path, format_predictions(target.task, outputs))
        print(f"{path}: {len(data)} predictions ({plan.run_dir})", flush=True)
        written.append(path)
    return written


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m maxpoolbert.predict",
        description="Write GLUE test-set submission files (<Task>.tsv) from finished runs.")
    parser.add_argument("run_dirs", nargs="+", type=Path, metavar="RUN_DIR",
                        help="finished run folder(s) with results.json and model.safetensors")
    parser.add_argument("--out", type=Path, help=f"output folder (default RUN_DIR/{SUBMISSION_DIR}/ for "
                        "one run; required for several)")
    for name, key in BENCHMARK_DIRS.items():  # --glue-dir, --superglue-dir
        parser.add_argument(f"--{key.replace('_', '-')}", help=f"{BENCHMARKS[name]} folder (default: the run's "
                            f"data.{key}, e.g. {name.upper()}_DIR)")
    parser.add_argument("--batch-size", type=int, help="evaluation batch size (default: the run's "
                        "data.eval_batch_size)")
    parser.add_argument("--progress-every", type=float, default=PROGRESS_EVERY_S, metavar="S",
                        help=f"a progress line every S seconds while predicting (default {PROGRESS_EVERY_S:g}; 0: none)")
    args = parser.parse_args(argv)
    if args.out is None and len(args.run_dirs) > 1:
        parser.error("several runs need --out DIR (all submission files go there)")
    if args.batch_size is not None and args.batch_size < 1:
        parser.error("--batch-size must be at least 1")
    return args


def main(argv: list[str] | None = None) -> int:
    """CLI entry point; user errors exit non-zero with one ``error: ...`` line."""
    args = parse_args(argv)
    try:
        given = {name: getattr(args, key) for name, key in BENCHMARK_DIRS.items()}
        plans = [plan_run(d, given) for d in args.run_dirs]
        owner: dict[str, Path] = {}
        for plan in plans:
            for target in plan.targets:
                if target.name in owner:
                    raise UserError(f"{owner[target.name]} and {plan.run_dir} both predict "
                                    f"{target.name}.tsv: predict them into different --out folders")
                owner[target.name] = plan.run_dir
        out_dir = args.out or plans[0].run_dir / SUBMISSION_DIR
        check_writable_folder(out_dir, "--out")
        out_dir.mkdir(parents=True, exist_ok=True)
        written = []
        for plan in plans:
            for note in plan.notes:
                print(note, flush=True)
            written += predict_run(plan, out_dir, args.batch_size, args.progress_every)
    except OSError as err:  # unwritable --out, unreadable files
        fail(str(err))
    except Exception as err:
        user = user_error(err)
        if user is None:
            raise
        fail(user)
    print(f"wrote {len(written)} submission file(s) to {out_dir}")
    return 0


if __name__ == "__main__":
    # the tokenising/caching bars, not library-wide in main(); read when datasets is first imported
    os.environ.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")
    sys.exit(main())
