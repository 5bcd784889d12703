"""Fixed-seed predictions of this checkout against an earlier commit's: a change made for speed or
memory must not change one byte of them.

    python scripts/prediction_hashes.py --before GIT_REF [--rows 256] [--out docs/bench]

Each setting below runs twice, one process after another: with this checkout and with a worktree of
``GIT_REF`` (same command, same seed, same threads, each its own fresh tokenisation cache), and the
sha256 of each run's ``dev_predictions.tsv`` (and ``results.json``'s metrics) are compared. The
settings cover the default fp32 path: classification and regression (STS-B writes floats, so any
change in the last bit shows), the paper's poolings, one thread and two, and 3-epoch runs (an
evaluation and a memory hand-back between epochs). Results: ``<out>/prediction_hashes.md`` and
``.json``; the exit status is 1 if any pair differs.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench  # noqa: E402  (scripts/bench.py: the worktree and environment helpers)

REPO = bench.REPO
SETTINGS = (
    ("rte", "cls", ("trainer.max_epochs=3",)),
    ("rte", "maxpool_mha", ()),
    ("rte", "max_cls", ("speed.threads=1", "trainer.max_epochs=3")),
    ("rte", "mha", ("trainer.max_epochs=3",)),
    ("stsb", "cls", ()),
    ("stsb", "maxpool_mha", ("speed.threads=1",)),
)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--before", metavar="GIT_REF", required=True, help="the earlier commit to compare with")
    p.add_argument("--rows", type=int, default=256, help="training rows per run (default 256)")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--glue-dir", default=os.environ.get("GLUE_DIR"),
                   help="GLUE folder, original TSV layout (default: $GLUE_DIR)")
    p.add_argument("--out", type=Path, default=REPO / "reports", help="folder for prediction_hashes.md and .json")
    args = p.parse_args(argv)
    if not args.glue_dir or not Path(args.glue_dir).is_dir():
        p.error("set GLUE_DIR or --glue-dir to the GLUE data folder (original TSV layout)")
    return args


def one_run(repo: Path, task: str, pooling: str, extra: tuple[str, ...], args: argparse.Namespace,
            work: Path, name: str) -> dict:
    run_dir = work / name
    cmd = [sys.executable, "train.py", f"task={task}", f"pooling={pooling}", "model=minilm_l6", f"seed={args.seed}",
           f"data.train_size={args.rows}", *([] if any(e.startswith("trainer.max_epochs=") for e in extra)
                                             else ["trainer.max_epochs=1"]),
           f"data.cache_dir={work / ('cache_' + name)}",
           "logger=none", "save_model=false", "skip_finished=false", "trainer.enable_progress_bar=false",
           f"hydra.run.dir={run_dir}", *extra]
    env = bench.child_env(args.glue_dir, repo)
    log = work / f"{name}.log"
    with log.open("w") as f:
        code = subprocess.run(cmd, cwd=repo, env=env, stdout=f, stderr=subprocess.STDOUT).returncode
    if code != 0:
        raise RuntimeError(f"exit {code}: {shlex.join(cmd)} (see {log})")
    record = json.loads((run_dir / "results.json").read_text())
    tsv = (run_dir / "dev_predictions.tsv").read_bytes()
    # a classifier that predicts one class for every row cannot show a change: such a row checks little
    distinct = len({line.rsplit(b"\t", 1)[-1] for line in tsv.splitlines()[1:]})
    return {"predictions_sha256": hashlib.sha256(tsv).hexdigest(), "distinct_predictions": distinct,
            "metrics": record["metrics"], "settings_id": record.get("settings_id"), "command": shlex.join(cmd[1:])}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="prediction_hashes_"))
    before = bench.checkout(args.before, work / "before_checkout")
    commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True).stdout.strip()
    before_commit = subprocess.run(["git", "rev-parse", args.before], cwd=REPO, capture_output=True,
                                   text=True).stdout.strip()
    rows = []
    try:
        for i, (task, pooling, extra) in enumerate(SETTINGS):
            now = one_run(REPO, task, pooling, extra, args, work, f"now_{i}")
            then = one_run(before, task, pooling, extra, args, work, f"before_{i}")
            same = now["predictions_sha256"] == then["predictions_sha256"] and now["metrics"] == then["metrics"]
            rows.append({"task": task, "pooling": pooling, "extra": list(extra), "identical": same,
                         "now": now, "before": then})
            print(f"{task} {pooling} {' '.join(extra)}: {now['predictions_sha256'][:16]} / "
                  f"{then['predictions_sha256'][:16]} {'identical' if same else 'DIFFERENT'}", flush=True)
    finally:
        bench.remove_checkout(before)
        shutil.rmtree(work, ignore_errors=True)
    result = {"commit": commit, "before": args.before, "before_commit": before_commit, "rows": args.rows,
              "seed": args.seed, "machine": bench.machine_info(), "runs": rows}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "prediction_hashes.json").write_text(json.dumps(result, indent=2) + "\n")
    lines = [f"# Fixed-seed dev predictions: {commit[:12]} against {args.before} ({before_commit[:12]})", "",
             f"`python scripts/prediction_hashes.py --before {args.before} --rows {args.rows}`; MiniLM-L6, "
             f"{args.rows} training rows, seed {args.seed}, 1 epoch unless set, fp32; machine: "
             f"{result['machine']['cpu']}.", "",
             "| task | pooling | settings | dev_predictions.tsv sha256 (now) | before | distinct predictions | identical |",
             "|---|---|---|---|---|---:|---|"]
    for r in rows:
        lines.append(f"| {r['task']} | {r['pooling']} | {' '.join(r['extra']) or '(defaults)'} | "
                     f"`{r['now']['predictions_sha256'][:16]}` | `{r['before']['predictions_sha256'][:16]}` | "
                     f"{r['now']['distinct_predictions']} | {'yes' if r['identical'] else 'NO'} |")
    lines += ["", "*distinct predictions*: different predicted values among the dev rows (1: the classifier "
              "predicts one class everywhere, and the row checks little)."]
    (args.out / "prediction_hashes.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0 if all(r["identical"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
