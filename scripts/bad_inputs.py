"""A table of bad inputs, the one-line message each gets and its wall time (whole process).

    python scripts/bad_inputs.py > bad_inputs.md

Runs each command one after another (so the times are not from a machine busy with the others),
in a temporary folder with small GLUE-style data files made for the data cases. The data cases
use the tiny random model, so their time is the imports (torch, transformers, lightning) plus
reading a few rows; the config cases end before those imports.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
HEADER = "index\tsentence1\tsentence2\tlabel\n"
ROWS = [f"{i}\tA man walks {i}.\tSomeone walks.\t{'entailment' if i % 2 else 'not_entailment'}\n" for i in range(6)]
GOOD = HEADER + "".join(ROWS)
FOLDERS = {"good": GOOD.encode(), "header_only": HEADER.encode(),
           "latin1": (HEADER + ROWS[0] + ROWS[1] + "2\tUn caf\xe9.\tx\tentailment\n").encode("latin-1")}
TINY = "model=tiny pooling=cls logger=none data.cache_dir=null data.glue_dir={glue}/good "

CASES = [  # train.py arguments (or "-m module ..." for the other commands)
    "seed=abc", "seed=-1", "data.train_size=0", "data.train_size=-5", "data.batch_size=0", "optimizer.lr=-1",
    "optimizer.lr=abc", "pooling.module.k=0", "trainer.max_epochs=0", "data.max_length=0",
    "head.dropout=1.5", "scheduler.warmup_ratio=2", "optimizer.betas=[0.9]", "trainer.precision=17",
    "trainer.devices=0", "trainer.max_epochs=-1",
    "pooling=positional_weighted pooling.module.max_positions=64", "data.glue_dir=/nonexistent",
    "hydra.run.dir={file}/run", "data.cache_dir=/proc/cache", "+data.batchsize=8", "model=auto",
    "model=auto model.name_or_path={tmp}", "task=qqp data.glue_dir={glue}/good",
    "-m seed=1,2 data.batch_size=0 hydra.sweep.dir={tmp}/sweep",
    TINY + "pooling=mha pooling.module.num_heads=5",
    TINY + "pooling=max_cls pooling.module.k=3",
    TINY + "data.max_length=1000",
    TINY + "data.train_size=7",
    TINY + "data.glue_dir={glue}/header_only",
    TINY + "data.glue_dir={glue}/latin1",
    "-m maxpoolbert.report --runs {tmp} --out {file}/reports",
    "-m maxpoolbert.predict {tmp}/nowhere", "-m maxpoolbert.export {tmp}/nowhere {tmp}/out",
]


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        (tmp / "a_file").write_text("")
        for name, train in FOLDERS.items():
            (tmp / "glue" / name / "RTE").mkdir(parents=True)
            (tmp / "glue" / name / "RTE" / "train.tsv").write_bytes(train)
            (tmp / "glue" / name / "RTE" / "dev.tsv").write_text(GOOD)
        env = {**os.environ, "HYDRA_FULL_ERROR": "0", "WANDB_MODE": "offline"}
        print("| # | command | message (exit code) | wall s |\n|---:|---|---|---:|")
        for i, case in enumerate(CASES, 1):
            args = case.format(glue=tmp / "glue", file=tmp / "a_file", tmp=tmp).split()
            module = args[1] if args[0] == "-m" and args[1].startswith("maxpoolbert.") else None
            cmd = [sys.executable, "-m", module, *args[2:]] if module else \
                [sys.executable, str(ROOT / "train.py"), *args, f"hydra.run.dir={tmp}/run{i}"] \
                if not any(a.startswith(("hydra.run.dir=", "-m")) for a in args) else [sys.executable, str(ROOT / "train.py"), *args]
            start = time.perf_counter()
            proc = subprocess.run(cmd, cwd=ROOT if module else tmp, env=env, capture_output=True, text=True)
            seconds = time.perf_counter() - start
            lines = [line for line in (proc.stdout + proc.stderr).splitlines() if line.strip()]
            message = lines[-1] if lines else ""
            if len(lines) != 1:
                message += f" ({len(lines)} lines of output)"
            shown = (f"python -m {module} " + " ".join(args[2:]) if module else "train.py " + case.replace(TINY, "TINY "))
            shown = shown.replace(str(tmp), "TMP").replace("{glue}", "GLUE").replace("{file}", "FILE").replace("{tmp}", "TMP")
            message = message.replace(str(tmp), "TMP").replace("|", "\\|")
            print(f"| {i} | `{shown}` | `{message}` ({proc.returncode}) | {seconds:.2f} |", flush=True)
        print(f"\nTINY = `{TINY.strip().format(glue='GLUE')}`; GLUE/good/RTE/train.tsv has 6 rows; "
              "FILE is a regular file (a folder cannot be made under it).")


if __name__ == "__main__":
    main()
