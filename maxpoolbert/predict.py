"""Test-set predictions of finished runs, in the GLUE leaderboard submission format.

    python -m maxpoolbert.predict RUN_DIR [RUN_DIR ...] [--out DIR] [--glue-dir DIR] [--batch-size N]

A finished run folder (``train.py`` with ``save_model=true``) holds ``.hydra/config.yaml``,
``results.json`` and ``model.safetensors``. The classifier is rebuilt from the config
(:func:`maxpoolbert.run.build`), the trained weights are loaded over it, and each test split of
the task is written to ``<SubmissionName>.tsv`` (``RTE.tsv``, ``MNLI-m.tsv``, ``MNLI-mm.tsv`` ...)
with the header ``index<TAB>prediction`` and one row per test example, in file order:

* label strings for tasks with ``label_values`` (RTE, QNLI, MNLI),
* class ids ``0``/``1`` for CoLA, SST-2, MRPC, QQP and WNLI,
* STS-B scores clipped to [0, 5], with three decimals.

An MNLI run also predicts the GLUE diagnostic set (``diagnostic/diagnostic.tsv`` in the GLUE
folder) into ``AX.tsv`` when that file exists. The files go to ``RUN_DIR/submission/`` for one
run; several runs (e.g. one per task) need ``--out``, and all files go there. Test data come
from ``--glue-dir``, else the run's ``data.glue_dir`` (stored as an absolute path), else the
folder recorded in ``results.json``, else ``GLUE_DIR``, else the hub dataset.
Every run and test file is checked before anything is predicted.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf
from safetensors.torch import load_model

from maxpoolbert import rundir
from maxpoolbert.data import Encoded, TaskDataModule
from maxpoolbert.errors import UserError, check_writable_folder, fail
from maxpoolbert.model import PooledClassifier
from maxpoolbert.run import FAILED, RESULTS, build, user_error
from maxpoolbert.rundir import read_results
from maxpoolbert.tasks import Split, Task, from_config

MODEL_FILE = rundir.MODEL
CONFIG_FILE = Path(rundir.CONFIG)
SUBMISSION_DIR = "submission"
HEADER = "index\tprediction\n"
AX_DIR, AX_FILE, AX_SPLIT, AX_NAME = "diagnostic", "diagnostic.tsv", "diagnostic", "AX"


@dataclass
class Target:
    """One submission file: the test split ``split`` of ``task``, written to ``<name>.tsv``."""

    task: Task
    split: str
    name: str


@dataclass
class Plan:
    """What to predict for one run, checked before any model is built."""

    run_dir: Path
    cfg: DictConfig
    glue_dir: str | None
    targets: list[Target]
    notes: list[str] = field(default_factory=list)

    def data_dirs(self) -> dict[str, str | None]:
        """Each benchmark's data folder for this run (GLUE: as resolved above)."""
        superglue = self.cfg.data.get("superglue_dir") or os.environ.get("SUPERGLUE_DIR") or None
        return {"glue": self.glue_dir, "superglue": superglue}


def diagnostic_task(mnli: Task) -> Task:
    """MNLI pointed at the GLUE diagnostic set (same columns and labels; ``ax`` on the hub)."""
    return dataclasses.replace(
        mnli, dir=AX_DIR, hub_config="ax",
        test={AX_SPLIT: Split(AX_FILE, "test", labelled=False)}, submission_names={AX_SPLIT: AX_NAME},
    )


def load_run(run_dir: Path) -> DictConfig:
    """The run's config, or a UserError saying why ``run_dir`` is not a finished run."""
    if not run_dir.is_dir():
        raise UserError(f"{run_dir} is not a folder")
    results, broken = read_results(run_dir)
    if broken:
        raise UserError(f"{run_dir} is not a finished run: its {RESULTS} is {broken}")
    if results is None:
        why = f" (it failed, see {FAILED})" if (run_dir / FAILED).is_file() else " (the run has not finished)"
        raise UserError(f"{run_dir} is not a finished run: no {RESULTS}{why}")
    if not (run_dir / MODEL_FILE).is_file():
        raise UserError(f"{run_dir} has no {MODEL_FILE}: the trained weights are only kept by runs "
                        "with save_model=true (train again with it)")
    if not (run_dir / CONFIG_FILE).is_file():
        raise UserError(f"{run_dir} has no {CONFIG_FILE} (not a run folder written by train.py)")
    return OmegaConf.load(run_dir / CONFIG_FILE)


def _recorded_glue_dir(run_dir: Path) -> str | None:
    """The GLUE folder the run used, as ``results.json`` recorded it (run folders written before
    configs stored resolved paths keep ``${oc.env:GLUE_DIR}`` in their config)."""
    results, _ = read_results(run_dir)
    return (results or {}).get("glue_dir") or None


def plan_run(run_dir: Path, glue_dir: str | None = None) -> Plan:
    """Check a run and its test files; ``glue_dir`` overrides the run's own ``data.glue_dir``."""
    cfg = load_run(run_dir)
    task = from_config(cfg.task, str(run_dir / CONFIG_FILE))
    glue_dir = glue_dir or cfg.data.get("glue_dir") or _recorded_glue_dir(run_dir) or os.environ.get("GLUE_DIR") or None
    if not task.test:
        raise UserError(f"task {task.name} declares no test split (test: in its task config)")
    targets = []
    for split in task.test:
        if split not in task.submission_names:
            raise UserError(f"task {task.name} has no submission name for test split {split!r} "
                            "(submission_names: in its task config)")
        targets.append(Target(task, split, task.submission_names[split]))
    plan = Plan(run_dir, cfg, glue_dir, targets)
    if task.name == "mnli":
        plan.targets.append(Target(diagnostic_task(task), AX_SPLIT, AX_NAME))
    if task.benchmark == "glue" and glue_dir and not Path(glue_dir).expanduser().is_dir():
        raise UserError(f"GLUE folder {glue_dir} does not exist (--glue-dir, the run's data.glue_dir or GLUE_DIR)")
    for target in list(plan.targets):
        folder = target.task.folder(plan.data_dirs())
        if folder is not None:
            path = folder / target.task.split(target.split).file
            if path.is_file():
                continue
            if target.name != AX_NAME:
                raise UserError(f"missing test file {path} (task {task.name}, split {target.split})")
            plan.targets.remove(target)
            plan.notes.append(f"note: no {AX_DIR}/{AX_FILE} in {folder.parent}: {AX_NAME}.tsv skipped")
    return plan


@torch.no_grad()
def predict_split(model: PooledClassifier, dm: TaskDataModule, data: Encoded) -> np.ndarray:
    """Raw outputs (logits, or the score for regression) of every row, ``[rows, num_labels]``,
    in file order."""
    model.eval()
    device = next(model.parameters()).device
    out = np.zeros((len(data), model.num_labels), dtype=np.float32)
    seen = np.zeros(len(data), dtype=bool)
    for batch in dm.eval_loader(data):
        logits = model(*(batch[k].to(device) for k in ("input_ids", "attention_mask", "token_type_ids")))
        idx = batch["idx"].numpy()
        out[idx] = logits.float().cpu().numpy()
        seen[idx] = True
    if not seen.all():
        raise RuntimeError(f"{int((~seen).sum())} test row(s) got no prediction")
    return out


def format_predictions(task: Task, outputs: np.ndarray) -> list[str]:
    """Submission values: clipped 3-decimal scores (regression), label strings, or class ids."""
    if task.is_regression:
        return [f"{v:.3f}" for v in np.clip(outputs[:, 0], 0.0, 5.0)]
    ids = outputs.argmax(-1)
    if task.label_values is not None:
        return [task.label_values[i] for i in ids]
    return [str(int(i)) for i in ids]


def write_submission(path: Path, values: list[str]) -> None:
    """``index<TAB>prediction`` rows, written atomically."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with tmp.open("w") as f:
        f.write(HEADER)
        f.writelines(f"{i}\t{v}\n" for i, v in enumerate(values))
    os.replace(tmp, path)


def load_trained(run_dir: Path, cfg: DictConfig) -> tuple[Task, object, PooledClassifier]:
    """Task, tokenizer and classifier of a run, with its trained weights, in eval mode."""
    task, tokenizer, model = build(cfg)
    try:
        load_model(model, str(run_dir / MODEL_FILE))
    except RuntimeError as err:
        detail = "; ".join(line.strip() for line in str(err).splitlines()[1:] if line.strip())
        detail = detail if len(detail) <= 300 else detail[:297] + "..."
        raise UserError(f"{run_dir / MODEL_FILE} does not fit the model built from {CONFIG_FILE}: "
                        f"{detail or err}") from err
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return task, tokenizer, model.to(device).eval()


def predict_run(plan: Plan, out_dir: Path, batch_size: int | None = None) -> list[Path]:
    """Predict every target of one run into ``out_dir``; returns the files written."""
    _, tokenizer, model = load_trained(plan.run_dir, plan.cfg)
    dirs = plan.data_dirs()
    data_args = {**OmegaConf.to_container(plan.cfg.data, resolve=True), "glue_dir": dirs["glue"],
                 "superglue_dir": dirs["superglue"]}
    if batch_size:
        data_args["eval_batch_size"] = batch_size
    written = []
    for target in plan.targets:
        dm = TaskDataModule(target.task, tokenizer, seed=plan.cfg.seed, **data_args)
        try:
            data = dm.test_split(target.split)
        except UserError as err:
            if target.name != AX_NAME:
                raise
            print(f"note: {AX_NAME}.tsv skipped: {err}", flush=True)
            continue
        path = out_dir / f"{target.name}.tsv"
        write_submission(path, format_predictions(target.task, predict_split(model, dm, data)))
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
    parser.add_argument("--glue-dir", help="GLUE folder (default: the run's data.glue_dir, then GLUE_DIR)")
    parser.add_argument("--batch-size", type=int, help="evaluation batch size (default: the run's "
                        "data.eval_batch_size)")
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
        plans = [plan_run(d, args.glue_dir) for d in args.run_dirs]
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
            written += predict_run(plan, out_dir, args.batch_size)
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
    import datasets

    datasets.disable_progress_bars()  # the tokenising/caching bars, not library-wide in main()
    sys.exit(main())
