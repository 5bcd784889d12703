"""Sweep benchmark: a seed sweep as users run it, ours against the Hugging Face ``Trainer``.

    python scripts/bench_sweep.py [--task rte] [--rows 256] [--seeds 5] [--reps 3] [--modes ...] [--before GIT_REF] [--quick] [--out reports]

The sweep: one task (default RTE), the same fixed subset of training rows for every run
(``data.train_size``), 2 poolings (``cls``, ``maxpool_mha``) x ``--seeds`` seeds, one epoch and the
hyper-parameters of ``scripts/bench.py`` (batch 32, lr 2e-5, max_length 128, one evaluation of the
full dev set at the end). Each mode runs the whole sweep, one mode after another (never two timed
things at once), ``--reps`` times in rotation (so drift of the machine spreads over every mode):

* ``ours_joblib_2x1``: ``python train.py -m ... hydra/launcher=joblib hydra.launcher.n_jobs=2
  speed.threads=1``: two runs at once, one thread each (what ``make study`` does).
* ``ours_basic_1x2``: the same sweep with Hydra's basic launcher: one run after another in one
  process, two threads each.
* ``hf_2x1``, ``hf_1x2``: the HF Trainer (``scripts/bench_hf.py``, dynamic padding and length
  grouping: the strongest tuned peer of ``scripts/bench.py``), one process per run, two at once with
  one thread each, or one after another with two threads. The Trainer has no pooling but ``cls``:
  its sweep is the same number of runs, each pooling arm a ``cls`` run with that seed.
* ``before_joblib_2x1`` (with ``--before GIT_REF``): ``ours_joblib_2x1`` from a worktree of that
  commit: before and after a change, timed in one rotation on one machine.
* ``ours_joblib_2x1_bf16`` (on request): ``ours_joblib_2x1`` with ``trainer.precision=bf16-mixed``,
  the opt-in fast mode (CPUs with bf16 instructions; ``docs/fast_modes``).

Per sweep: wall seconds from the first process's start to the last one's end, runs per hour, the
peak resident memory of the whole process tree (every process of the sweep, sampled every 0.1 s
with psutil: what the machine must hold), CPU-seconds, and the mean dev score (a check that every
mode trained). Per mode over the repetitions: min, median and max. Results: ``<out>/bench_sweep.md``
and ``bench_sweep.json``, with the CPU model and its flags. Timings are never asserted anywhere.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench  # noqa: E402  (scripts/bench.py: machine, data and Trainer helpers)

REPO = bench.REPO
MODES = {
    "ours_joblib_2x1": "ours, joblib launcher, 2 runs at once x 1 thread",
    "ours_basic_1x2": "ours, basic launcher, 1 run at a time x 2 threads",
    "before_joblib_2x1": "ours before (--before), joblib launcher, 2 x 1",
    "ours_joblib_2x1_bf16": "ours, joblib 2 x 1, trainer.precision=bf16-mixed (opt-in fast mode)",
    "hf_2x1": "HF Trainer (dynamic + grouped), 2 processes at once x 1 thread",
    "hf_1x2": "HF Trainer (dynamic + grouped), 1 process at a time x 2 threads",
}
POOLINGS = ("cls", "maxpool_mha")
CPU_FLAGS = ("avx2", "avx512f", "avx512_bf16", "amx_tile", "amx_bf16")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--task", default="rte", choices=bench.config_names("task"), metavar="NAME")
    p.add_argument("--rows", type=int, default=None, help="training rows per run (default 256; 32 with --quick)")
    p.add_argument("--seeds", type=int, default=None, help="seeds per pooling (default 5; 1 with --quick)")
    p.add_argument("--reps", type=int, default=None, help="repetitions of every mode (default 3; 1 with --quick)")
    p.add_argument("--modes", nargs="+", default=None, choices=list(MODES), metavar="NAME",
                   help="sweeps to time (default: ours_joblib_2x1 ours_basic_1x2 hf_2x1 hf_1x2, and "
                        "before_joblib_2x1 with --before). Choices: " + "; ".join(f"{k} = {v}" for k, v in MODES.items()))
    p.add_argument("--quick", action="store_true", help="smoke test: 32 rows, 1 seed, 1 repetition")
    p.add_argument("--before", metavar="GIT_REF", default=None,
                   help="also time this commit of ours (a worktree of it): the mode before_joblib_2x1")
    p.add_argument("--render", type=Path, metavar="JSON", default=None,
                   help="time nothing: write bench_sweep.md again from this bench_sweep.json (beside it)")
    p.add_argument("--glue-dir", default=os.environ.get("GLUE_DIR"),
                   help="GLUE folder, original TSV layout (default: $GLUE_DIR)")
    p.add_argument("--out", type=Path, default=REPO / "reports", help="folder for bench_sweep.md and .json")
    args = p.parse_args(argv)
    args.rows = args.rows or (32 if args.quick else 256)
    args.seeds = args.seeds or (1 if args.quick else 5)
    args.reps = args.reps or (1 if args.quick else 3)
    if args.modes is None:
        args.modes = ["ours_joblib_2x1", "ours_basic_1x2", *(["before_joblib_2x1"] if args.before else []),
                      "hf_2x1", "hf_1x2"]
    if "before_joblib_2x1" in args.modes and not args.before:
        p.error("before_joblib_2x1 needs --before GIT_REF")
    if not args.render and (not args.glue_dir or not Path(args.glue_dir).is_dir()):
        p.error("set GLUE_DIR or --glue-dir to the GLUE data folder (original TSV layout)")
    return args


def cpu_flags() -> dict[str, bool]:
    """The SIMD and matrix flags that decide the CPU fast modes (bf16: avx512_bf16 or AMX)."""
    try:
        line = next(x for x in Path("/proc/cpuinfo").read_text().splitlines() if x.startswith("flags"))
    except (OSError, StopIteration):
        return {}
    have = set(line.split(":", 1)[1].split())
    return {flag: flag in have for flag in CPU_FLAGS}


# ---------------------------------------------------------------------------- one timed sweep
def tree_rss_mb(procs: list[subprocess.Popen]) -> float:
    """The resident memory of every process of ``procs`` and of all their children, summed."""
    import psutil

    rss = 0
    for p in procs:
        try:
            root = psutil.Process(p.pid)
            tree = [root, *root.children(recursive=True)]
        except psutil.Error:
            continue
        for proc in tree:
            try:
                rss += proc.memory_info().rss
            except psutil.Error:
                continue
    return rss / 2**20


def ours_command(mode: str, args: argparse.Namespace, work: Path) -> list[str]:
    """Our sweep as one ``train.py -m`` command, into ``work/sweep``."""
    jobs = ["hydra/launcher=basic", "speed.threads=2"] if mode == "ours_basic_1x2" \
        else ["hydra/launcher=joblib", "hydra.launcher.n_jobs=2", "speed.threads=1"]
    if mode.endswith("_bf16"):
        jobs.append("trainer.precision=bf16-mixed")
    hp = bench.HPARAMS
    return [sys.executable, "train.py", "-m", f"task={args.task}", f"pooling={','.join(POOLINGS)}",
            f"seed={','.join(str(s) for s in range(1, args.seeds + 1))}", "model=minilm_l6",
            f"data.train_size={args.rows}", f"trainer.max_epochs={hp['epochs']}", f"data.batch_size={hp['batch_size']}",
            f"data.max_length={hp['max_length']}", f"optimizer.lr={hp['lr']}",
            f"optimizer.weight_decay={hp['weight_decay']}", f"scheduler.warmup_ratio={hp['warmup_ratio']}",
            f"data.cache_dir={work / 'cache'}", "logger=none", "save_model=false", "trainer.enable_progress_bar=false",
            f"hydra.sweep.dir={work / 'sweep'}", *jobs]


def hf_commands(args: argparse.Namespace, work: Path) -> tuple[list[list[str]], list[Path]]:
    """One Trainer process per run of the sweep (each pooling arm a cls run with its seed), with the
    result file each writes."""
    task = bench.load_task(args.task)
    train = bench.read_rows(task, "train", args.glue_dir, args.rows)
    dev = bench.read_rows(task, next(iter(task.eval)), args.glue_dir)
    commands, results = [], []
    for pooling in POOLINGS:
        for seed in range(1, args.seeds + 1):
            spec, result = bench.hf_spec(task, "grouped", train, dev, seed, work, f"{pooling}_s{seed}")
            commands.append([sys.executable, str(REPO / "scripts" / "bench_hf.py"), str(spec)])
            results.append(result)
    return commands, results


def run_sweep(mode: str, args: argparse.Namespace, work: Path) -> dict[str, Any]:
    """Time one whole sweep of ``mode`` in a fresh folder (and a fresh, cold tokenisation cache): its
    processes run ``parallel`` at a time, the memory of all of them sampled every 0.1 s."""
    import psutil

    shutil.rmtree(work, ignore_errors=True)
    (work / "logs").mkdir(parents=True)
    cwd = args.before_repo if mode.startswith("before") else REPO
    if not mode.startswith("hf"):
        commands, results, parallel = [ours_command(mode, args, work)], [], 1
    else:
        (commands, results), parallel = hf_commands(args, work), (2 if mode == "hf_2x1" else 1)
    threads = 2 if mode.endswith("1x2") else 1
    env = {**bench.child_env(args.glue_dir, cwd), "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    def children_cpu() -> float:  # CPU-seconds of this process's reaped children, cumulative
        times = psutil.Process().cpu_times()
        return times.children_user + times.children_system

    pending, running, codes, peak, cpu0 = list(commands), [], [], 0.0, children_cpu()
    with (work / "logs" / f"{mode}.log").open("w") as log:
        started = time.perf_counter()
        while pending or running:
            while pending and len(running) < parallel:
                running.append(subprocess.Popen(pending.pop(0), cwd=cwd, env=env, stdout=log,
                                                stderr=subprocess.STDOUT))
            peak = max(peak, tree_rss_mb(running))
            for p in [p for p in running if p.poll() is not None]:
                codes.append(p.returncode)
                running.remove(p)
            time.sleep(0.1)
        wall = time.perf_counter() - started
    cpu = children_cpu() - cpu0  # every process of the sweep, reaped
    if not mode.startswith("hf"):
        from maxpoolbert.runs.folder import find_run_folders

        folders = [f for f in find_run_folders(work / "sweep") if f.record() is not None]
        scores = [f.record().score for f in folders]
        # each run's dev predictions (sha256): two versions of ours must agree byte for byte
        predictions = {f.path.name: hashlib.sha256(f.predictions_file.read_bytes()).hexdigest() for f in folders}
    else:
        scores = [json.loads(r.read_text())["dev_metric"] for r in results if r.is_file()]
        predictions = {}
    n_runs = len(POOLINGS) * args.seeds
    if any(codes) or len(scores) != n_runs:
        tail = "\n".join((work / "logs" / f"{mode}.log").read_text().splitlines()[-30:])
        raise RuntimeError(f"{mode}: exit codes {codes}, {len(scores)} of {n_runs} runs scored\n{tail}")
    return {"wall_s": wall, "peak_tree_rss_mb": peak, "cpu_s": cpu, "runs": n_runs,
            "runs_per_hour": n_runs / wall * 3600, "mean_dev_score": statistics.fmean(scores),
            "predictions": predictions}


# ---------------------------------------------------------------------------- tables
def summarise(samples: list[dict[str, Any]]) -> dict[str, Any]:
    out = {}
    for key in ("wall_s", "runs_per_hour", "peak_tree_rss_mb", "cpu_s", "mean_dev_score"):
        values = sorted(s[key] for s in samples)
        out[key] = {"min": values[0], "median": statistics.median(values), "max": values[-1]}
    return out


def identical_predictions(samples: dict[str, list]) -> dict[str, str]:
    """``before_joblib_2x1`` (the same runs, seeds and threads from the earlier commit): how many of
    its runs' dev predictions are byte-identical to ``ours_joblib_2x1``'s in the same repetition (all
    must be: a change for speed changes no prediction). Other modes differ in threads or precision."""
    before, now = samples.get("before_joblib_2x1", []), samples.get("ours_joblib_2x1", [])
    pairs = [(b.get("predictions", {}), n.get("predictions", {})) for b, n in zip(before, now, strict=False)]
    total = sum(len(n) for _, n in pairs)
    if not total:
        return {}
    equal = sum(b.get(name) == digest for b, n in pairs for name, digest in n.items())
    return {"before_joblib_2x1": f"{equal} of {total} identical"}


def markdown(result: dict[str, Any]) -> str:
    m, a = result["machine"], result["args"]
    lines = [f"# Sweep benchmark: {a['task']}, {2 * a['seeds']} runs ({' and '.join(POOLINGS)} x {a['seeds']} seeds), "
             f"{a['rows']} training rows, 1 epoch", "",
             f"Machine: {m['cpu']}, {m['cores']} cores; flags: "
             + ", ".join(f"{k} {'yes' if v else 'no'}" for k, v in result["cpu_flags"].items())
             + f"; torch {m['torch']}, transformers {m['transformers']}, lightning {m['lightning']}.",
             f"Command: `{result['command']}`; {a['reps']} repetition(s) per mode, modes in rotation; "
             f"load average {result['load_before']:.2f} before, {result['load_after']:.2f} after.", "",
             "| Mode | Runs/hour (min / median / max) | Sweep wall s (median) | Peak memory MB, whole tree (median) "
             "| CPU s (median) | Mean dev score |",
             "|:---|---:|---:|---:|---:|---:|"]
    best_hf = max((s["runs_per_hour"]["median"] for k, s in result["summary"].items() if k.startswith("hf")),
                  default=None)
    for mode, s in result["summary"].items():
        r = s["runs_per_hour"]
        lines.append(f"| {MODES[mode]} | {r['min']:.0f} / {r['median']:.0f} / {r['max']:.0f} | "
                     f"{s['wall_s']['median']:.0f} | {s['peak_tree_rss_mb']['median']:,.0f} | {s['cpu_s']['median']:.0f} "
                     f"| {100 * s['mean_dev_score']['median']:.1f} |")
    same = identical_predictions(result["samples"])
    if same:
        lines += ["", "Dev predictions of the earlier commit against ours_joblib_2x1's, run by run (sha256 of each run's "
                  "dev_predictions.tsv): " + "; ".join(f"{k} {v}" for k, v in same.items()) + "."]
    if best_hf:
        lines += ["", "Runs per hour over the best HF Trainer mode (medians): " + ", ".join(
            f"{k} {s['runs_per_hour']['median'] / best_hf:.2f}x" for k, s in result["summary"].items()
            if not k.startswith("hf")) + "."]
        summary = result["summary"]
        same_split = {k: "hf_1x2" if k.endswith("1x2") else "hf_2x1" for k in summary if not k.startswith("hf")}
        pairs = {k: v for k, v in same_split.items() if v in summary}
        if pairs:
            lines += ["", "Peak memory over the HF Trainer's with the same split of the cores (medians; half of "
                      "our runs are maxpool_mha, all of the Trainer's cls): " + ", ".join(
                          f"{k} {summary[k]['peak_tree_rss_mb']['median'] / summary[v]['peak_tree_rss_mb']['median']:.2f}x"
                          f" ({v})" for k, v in pairs.items()) + "."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.render:  # the tables again from the raw numbers, beside them
        (args.render.parent / "bench_sweep.md").write_text(markdown(json.loads(args.render.read_text())))
        return 0
    args.out.mkdir(parents=True, exist_ok=True)
    root = Path(tempfile.mkdtemp(prefix="bench_sweep_"))
    args.before_repo = bench.checkout(args.before, root / "before_checkout") if args.before else None
    load_before = os.getloadavg()[0]
    samples: dict[str, list] = {mode: [] for mode in args.modes}
    try:
        for rep in range(args.reps):
            order = args.modes[rep % len(args.modes):] + args.modes[:rep % len(args.modes)]
            for mode in order:
                sample = run_sweep(mode, args, root / mode)
                samples[mode].append(sample)
                print(f"rep {rep + 1}/{args.reps} {mode}: {sample['wall_s']:.0f} s, "
                      f"{sample['runs_per_hour']:.0f} runs/h, peak {sample['peak_tree_rss_mb']:,.0f} MB", flush=True)
    finally:
        if args.before_repo:
            bench.remove_checkout(args.before_repo)
        shutil.rmtree(root, ignore_errors=True)
    result = {"machine": bench.machine_info(), "cpu_flags": cpu_flags(), "args": {
        "task": args.task, "rows": args.rows, "seeds": args.seeds, "reps": args.reps, "before": args.before},
        "command": shlex.join(["python", "scripts/bench_sweep.py", *(argv if argv is not None else sys.argv[1:])]),
        "load_before": load_before, "load_after": os.getloadavg()[0], "samples": samples,
        "summary": {mode: summarise(s) for mode, s in samples.items()}}
    (args.out / "bench_sweep.json").write_text(json.dumps(result, indent=2))
    text = markdown(result)
    (args.out / "bench_sweep.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
