"""Tests for ``python -m maxpoolbert.report``.

A fake runs tree is built from known numbers; every statistic in the generated CSVs is checked
against values recomputed here independently (plain numpy, a hand-written t statistic and an
exact Wilcoxon null distribution by enumeration).
"""

from __future__ import annotations

import itertools
import json
import math
import os
import re
import sys
import types
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from maxpoolbert import report
from maxpoolbert.report import main

MODEL = "minilm_l6"
POOLINGS = ["cls", "maxpool_mha", "mha"]  # report order: cls, mha, maxpool_mha
TASK_METRICS = {
    "mrpc": ["f1", "accuracy"],
    "stsb": ["pearson", "spearman"],
    "mnli": ["accuracy_m", "accuracy_mm"],
    "rte": ["accuracy"],
}
MAJORITY = {"mrpc": 0.684, "mnli": 0.354, "rte": 0.527}  # stsb: regression, none
SETTINGS = {"optimizer.lr": 2e-05, "data.batch_size": 32, "trainer.max_epochs": 3, "data.max_length": 128,
            "optimizer.weight_decay": 0.01, "scheduler.warmup_ratio": 0.1}
SEEDS = [1, 2, 3, 4]
LOW_SIZES = [100, 1000]
LOW_TASKS = ["rte", "mrpc"]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _results(task, pooling, seed, metrics, train_size=None, majority=True, **extra):
    data = {"task": task, "pooling": pooling, "model": MODEL, "seed": seed,
            "metrics": metrics, "score": float(np.mean(list(metrics.values()))),
            "train_samples_per_s": 40.0, "wall_s": 300.0,
            "params": {"total": 22713986, "pooling": 591360},
            "train_size": train_size, "settings": dict(SETTINGS)}
    if majority and task in MAJORITY:
        data["majority_score"] = MAJORITY[task]
    data.update(extra)
    return data


def _write_run(folder: Path, data=None, raw: str | None = None, mtime: float | None = None):
    (folder / ".hydra").mkdir(parents=True)
    (folder / ".hydra" / "config.yaml").write_text("task: {name: x}\n")
    if data is not None or raw is not None:
        path = folder / "results.json"
        path.write_text(raw if raw is not None else json.dumps(data))
        if mtime is not None:
            os.utime(path, (mtime, mtime))


def build_runs():
    """The good runs (as results.json dicts with their folders) plus the broken ones.

    Returns ``(kept, extra)``: ``kept`` are the runs the report must use; ``extra`` are
    ``(folder, data_or_raw, mtime, expected_reason)`` of runs it must skip.
    """
    rng = np.random.default_rng(20261123)
    kept = []
    offset = {"cls": 0.0, "maxpool_mha": 0.02, "mha": 0.01}
    base = {"mrpc": 0.85, "stsb": 0.86, "mnli": 0.80, "rte": 0.62}
    i = 0
    for task, metrics in TASK_METRICS.items():
        for pooling in POOLINGS:
            for seed in SEEDS:
                if task == "rte" and pooling == "mha" and seed == 4:
                    continue  # missing seed: n=3 and only 3 pairs
                vals = {m: round(float(base[task] + offset[pooling] + rng.normal(0, 0.02)), 4)
                        for m in metrics}
                if task == "rte" and pooling == "cls" and seed == 4:
                    vals = {"accuracy": MAJORITY["rte"]}  # degenerate: majority level
                i += 1
                kept.append((f"2026-11-23/10-31-{i:02d}_000{i}", _results(task, pooling, seed, vals)))
    for task in LOW_TASKS:
        for size in LOW_SIZES:
            for pooling in POOLINGS:
                for seed in SEEDS[:3]:
                    vals = {m: round(float(base[task] - 0.12 + 0.02 * math.log10(size)
                                           + offset[pooling] + rng.normal(0, 0.03)), 4)
                            for m in TASK_METRICS[task]}
                    no_majority = task == "rte" and size == 100 and pooling == "mha" and seed == 3
                    i += 1
                    kept.append((f"multirun/2026-11-24/09-00-00/sweep/{i}",
                                 _results(task, pooling, seed, vals, train_size=size,
                                          majority=not no_majority,
                                          **({"n_train_full": 2490} if task == "rte" else {}))))
    old = _results("stsb", "maxpool_mha", 2, {"pearson": 0.1, "spearman": 0.2})
    extra = [
        ("broken/invalid_json", '{"task": "rte", "pooling": ', None, "corrupt: invalid JSON"),
        ("broken/no_results", None, None, "incomplete: no results.json"),
        ("broken/failed_run", "FAILED", None, "failed: CUDA out of memory"),
        ("broken/error_txt", "ERROR", None, "failed: RuntimeError: boom"),
        ("broken/missing_score", {k: v for k, v in kept[0][1].items() if k != "score"}, None,
         "corrupt: missing key(s) score"),
        ("broken/other_task", {**kept[0][1], "task": "squad"}, None,
         "other configuration: unknown task 'squad'"),
        ("2026-11-22/old_stsb_duplicate", old, 1_000_000.0, "duplicate seed 2"),
    ]
    return kept, extra


def make_tree(root: Path):
    kept, extra = build_runs()
    for folder, data in kept:
        _write_run(root / folder, data)
    for folder, payload, mtime, _ in extra:
        path = root / folder
        if payload == "FAILED":
            _write_run(path)
            (path / "failed.json").write_text(json.dumps({"error": "CUDA out of memory"}))
        elif payload == "ERROR":
            _write_run(path, kept[1][1])
            (path / "error.txt").write_text("Traceback (most recent call last):\n  ...\nRuntimeError: boom\n")
        elif isinstance(payload, str):
            _write_run(path, raw=payload)
        else:
            _write_run(path, payload, mtime=mtime)
    # degenerate status from predictions when majority_score is missing
    for folder, data in kept:
        if data["task"] == "rte" and data["train_size"] == 100 and data["pooling"] == "mha" \
                and data["seed"] == 3:
            (root / folder / "dev_predictions.tsv").write_text(
                "split\tindex\tlabel\tprediction\n" + "".join(f"dev\t{j}\t{j % 2}\t1\n" for j in range(6)))
        if data["task"] == "stsb" and data["pooling"] == "cls" and data["seed"] == 1:
            (root / folder / "dev_predictions.tsv").write_text(
                "split\tindex\tlabel\tprediction\ndev\t0\t1.0\t1.5\ndev\t1\t4.0\t3.2\n")
    return kept, extra


@pytest.fixture(scope="module")
def generated(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs") / "outputs"
    out = tmp_path_factory.mktemp("reports")
    kept, extra = make_tree(root)
    rc = main(["--runs", str(root), "--out", str(out)])
    assert rc == 0
    return kept, extra, out


# --------------------------------------------------------------------------- independent maths


def mean(xs):
    return sum(xs) / len(xs)


def sample_std(xs):
    if len(xs) < 2:
        return math.nan
    m = mean(xs)
    return math.sqrt(sum((x - m) ** 2 for x in xs) / (len(xs) - 1))


def paired_t_p(d):
    n = len(d)
    t = mean(d) / (sample_std(d) / math.sqrt(n))
    return 2 * stats.t.sf(abs(t), n - 1)


def exact_wilcoxon_p(d):
    """Two-sided exact signed-rank p by enumerating all 2^n sign patterns (no ties, no zeros)."""
    absd = [abs(x) for x in d]
    assert len(set(absd)) == len(absd) and 0 not in absd
    ranks = {v: r + 1 for r, v in enumerate(sorted(absd))}
    w_plus = sum(ranks[abs(x)] for x in d if x > 0)
    null = [sum(r for r, s in zip(range(1, len(d) + 1), signs, strict=True) if s)
            for signs in itertools.product([0, 1], repeat=len(d))]
    lower = sum(w <= w_plus for w in null) / len(null)
    upper = sum(w >= w_plus for w in null) / len(null)
    return min(1.0, 2 * min(lower, upper))


def cells(kept, train_size=None):
    """{(pooling, task): [results dicts]} for one train_size."""
    out = {}
    for _, data in kept:
        if data["train_size"] == train_size:
            out.setdefault((data["pooling"], data["task"]), []).append(data)
    return out


def _close(a, b):
    if b is None or (isinstance(b, float) and math.isnan(b)):
        return pd.isna(a)
    return a == pytest.approx(b, rel=1e-6, abs=1e-9)  # the CSVs hold 7 significant digits


# --------------------------------------------------------------------------- tests


def test_results_csv_every_cell(generated):
    kept, _, out = generated
    csv = pd.read_csv(out / "results.csv")
    expected_rows = 0
    task_means = {}
    for (pooling, task), runs in cells(kept).items():
        for metric in [*TASK_METRICS[task], "score"]:
            vals = [r["metrics"][metric] * 100 if metric != "score" else r["score"] * 100
                    for r in runs]
            row = csv[(csv.model == MODEL) & (csv.pooling == pooling) & (csv.task == task)
                      & (csv.metric == metric)]
            assert len(row) == 1, (pooling, task, metric)
            row = row.iloc[0]
            assert _close(row["mean"], mean(vals)), (pooling, task, metric)
            assert _close(row["std"], sample_std(vals)), (pooling, task, metric)
            assert row["n"] == len(vals)
            expected_rows += 1
            if metric == "score":
                task_means.setdefault(pooling, []).append(mean(vals))
    for pooling, means in task_means.items():
        row = csv[(csv.pooling == pooling) & (csv.task == "glue_avg")].iloc[0]
        assert _close(row["mean"], mean(means))
        assert row["n"] == len(TASK_METRICS)
        expected_rows += 1
    assert len(csv) == expected_rows
    # the newer duplicate was kept: its seed-2 value is not the stale 10.0/20.0
    stsb = cells(kept)[("maxpool_mha", "stsb")]
    assert len(stsb) == 4 and all(r["metrics"]["pearson"] > 0.5 for r in stsb)
    # row order: cls first, then mha, then maxpool_mha; GLUE task order
    assert list(dict.fromkeys(csv.pooling)) == ["cls", "mha", "maxpool_mha"]
    assert list(dict.fromkeys(csv.task)) == ["mrpc", "stsb", "mnli", "rte", "glue_avg"]
    assert csv[(csv.pooling == "cls") & (csv.task == "mrpc")].metric.tolist() == [
        "f1", "accuracy", "score"]


def test_differences_every_pair(generated):
    kept, _, out = generated
    diff = pd.read_csv(out / "differences.csv")
    expected_rows = 0
    for size in [None, *LOW_SIZES]:
        by_cell = cells(kept, size)
        for (pooling, task), runs in by_cell.items():
            if pooling == "cls":
                continue
            base = {r["seed"]: r["score"] for r in by_cell[("cls", task)]}
            pairs = sorted((r["seed"], r["score"], base[r["seed"]]) for r in runs if r["seed"] in base)
            d = [p * 100 - c * 100 for _, p, c in pairs]
            sel = diff[(diff.pooling == pooling) & (diff.task == task)
                       & (diff.train_size.isna() if size is None else diff.train_size == size)]
            assert len(sel) == 1, (pooling, task, size)
            row = sel.iloc[0]
            assert row["n_pairs"] == len(d) == (3 if (task, pooling, size) == ("rte", "mha", None)
                                                 else len(runs))
            assert _close(row["mean_diff"], mean(d))
            assert _close(row["std_diff"], sample_std(d))
            assert row["ttest_p"] == pytest.approx(paired_t_p(d), rel=1e-6)
            assert row["ttest_p"] == pytest.approx(
                stats.ttest_rel([p for _, p, _ in pairs], [c for _, _, c in pairs]).pvalue, rel=1e-6)
            assert row["wilcoxon_p"] == pytest.approx(exact_wilcoxon_p(d), rel=1e-9)
            expected_rows += 1
    assert len(diff) == expected_rows == (len(TASK_METRICS) + len(LOW_TASKS) * len(LOW_SIZES)) * 2


def test_low_resource_every_cell(generated):
    kept, _, out = generated
    low = pd.read_csv(out / "low_resource.csv")
    expected_rows = 0
    for size in [None, *LOW_SIZES]:
        for (pooling, task), runs in cells(kept, size).items():
            if task not in LOW_TASKS:
                continue
            vals = [r["score"] * 100 for r in runs]
            sel = low[(low.pooling == pooling) & (low.task == task)
                      & (low.train_size.isna() if size is None else low.train_size == size)]
            assert len(sel) == 1
            assert _close(sel.iloc[0]["mean"], mean(vals))
            assert _close(sel.iloc[0]["std"], sample_std(vals))
            assert sel.iloc[0]["n"] == len(vals)
            expected_rows += 1
    assert len(low) == expected_rows


def test_degenerate_counts(generated):
    kept, _, out = generated
    deg = pd.read_csv(out / "degenerate.csv")
    expected_rows = 0
    for size in [None, *LOW_SIZES]:
        for (pooling, task), runs in cells(kept, size).items():
            with_majority = [r for r in runs if "majority_score" in r]
            constant_predictions = 1 if (pooling, task, size) == ("mha", "rte", 100) else 0
            known = len(with_majority) + constant_predictions + (
                1 if (pooling, task, size) == ("cls", "stsb", None) else 0)
            degenerate = sum(r["score"] <= r["majority_score"] + 1e-9 for r in with_majority)
            sel = deg[(deg.pooling == pooling) & (deg.task == task)
                      & (deg.train_size.isna() if size is None else deg.train_size == size)]
            assert len(sel) == 1
            assert tuple(sel.iloc[0][["n_runs", "n_known", "n_degenerate"]]) == (
                len(runs), known, degenerate + constant_predictions), (pooling, task, size)
            expected_rows += 1
    assert len(deg) == expected_rows

    def get(pooling, task, size):
        sel = deg[(deg.pooling == pooling) & (deg.task == task)
                  & (deg.train_size.isna() if size is None else deg.train_size == size)]
        assert len(sel) == 1
        return tuple(sel.iloc[0][["n_runs", "n_known", "n_degenerate"]])

    assert get("cls", "rte", None) == (4, 4, 1)  # score == majority_score
    assert get("maxpool_mha", "rte", None) == (4, 4, 0)
    assert get("mha", "rte", 100) == (3, 3, 1)  # no majority_score, constant predictions
    assert get("cls", "stsb", None) == (4, 1, 0)  # only the run with varied predictions is known
    assert get("mha", "stsb", None) == (4, 0, 0)
    md = (out / "results.md").read_text()
    assert "1/4" in md and "3 unknown" in md


def test_skipped_runs_listed_with_reasons(generated):
    _, extra, out = generated
    skipped = pd.read_csv(out / "skipped.csv")
    reasons = dict(zip(skipped.path, skipped.reason, strict=True))
    assert len(reasons) == len(extra)
    md = (out / "results.md").read_text()
    section = md.split("## Skipped runs", 1)[1]
    for folder, _, _, reason in extra:
        assert reasons[folder].startswith(reason), (folder, reasons[folder])
        assert f"`{folder}`" in section
    assert "kept newer 2026-11-23/" in reasons["2026-11-22/old_stsb_duplicate"]


def _fmt(x):
    return f"{x:.1f}"


def test_markdown_main_table_cells_and_bold(generated):
    kept, _, out = generated
    md = (out / "results.md").read_text()
    full = cells(kept)
    best = {task: max(POOLINGS, key=lambda p: mean([r["score"] for r in full[(p, task)]]))
            for task in TASK_METRICS}
    avgs = {p: mean([mean([r["score"] * 100 for r in full[(p, t)]]) for t in TASK_METRICS])
            for p in POOLINGS}
    best_avg = max(avgs, key=avgs.get)
    task_order = ["mrpc", "stsb", "mnli", "rte"]
    for pooling in POOLINGS:
        row = [f"`{pooling}`"]
        for task in task_order:
            runs = full[(pooling, task)]
            metrics = TASK_METRICS[task]
            means = "/".join(_fmt(mean([r["metrics"][m] * 100 for r in runs])) for m in metrics)
            stds = "/".join(_fmt(sample_std([r["metrics"][m] * 100 for r in runs])) for m in metrics)
            if best[task] == pooling:
                means = f"**{means}**"
            row.append(f"{means} ± {stds} (n={len(runs)})")
        row.append(f"**{_fmt(avgs[pooling])}**" if pooling == best_avg else _fmt(avgs[pooling]))
        line = "| " + " | ".join(row) + " |"
        assert line in md, f"missing row:\n{line}\n\n{md}"
    header = "| Pooling | MRPC (F1/acc) | STS-B (P/S) | MNLI (m/mm) | RTE (acc) | GLUE avg |"
    assert header in md
    main = md.split("## Main results", 1)[1].split("### Confidence intervals", 1)[0]
    assert main.count("**") == 2 * (len(TASK_METRICS) + 1)
    assert "![Score vs training-set size](low_resource.png)" in md
    assert "![Spread of scores over seeds](stability.png)" in md


def test_markdown_comparison_rows(generated):
    """The comparisons table (issue 20) replaces the old differences table in results.md; every row
    prints comparisons.csv's numbers, and its Δ and pairs are differences.csv's."""
    _, _, out = generated
    md = (out / "results.md").read_text()
    comp = pd.read_csv(out / "comparisons.csv")
    diff = pd.read_csv(out / "differences.csv")
    names = {"mrpc": "MRPC", "stsb": "STS-B", "mnli": "MNLI", "rte": "RTE"}

    def f(x, signed=False):
        if pd.isna(x):
            return "–"
        x = round(float(x), 1) + 0.0
        return f"{x:+.1f}" if signed else f"{x:.1f}"

    def p(x):
        return "–" if pd.isna(x) else ("<0.001" if x < 0.001 else f"{x:.3f}")

    for _, r in comp.iterrows():
        task = names.get(r.task, f"GLUE avg ({r.n_tasks} tasks)")
        needed = "–" if pd.isna(r.seeds_needed) else f"{int(r.seeds_needed):,}"
        line = (f"| `{r.pooling}` | {task} | {r.n_pairs} | {f(r.mean_diff, True)} | "
                f"[{f(r.boot_low, True)}, {f(r.boot_high, True)}] | – | {p(r.perm_p)} | {p(r.holm_p)} | "
                f"{p(r.wilcoxon_p)} | {r.prob_better:.2f} | {r.aso_eps_min:.2f} | {r.aso_eps_min_reverse:.2f} | "
                f"{r.verdict} (seeds) |")
        assert line in md, line
        power = f"| `{r.pooling}` | {task} | {r.n_pairs} | – | {f(r.min_detectable)} | – | – | {needed} | – |"
        assert power in md, power
        if r.task in names:
            same = diff[(diff.task == r.task) & (diff.pooling == r.pooling)
                        & ((diff.train_size == r.train_size) if pd.notna(r.train_size) else diff.train_size.isna())]
            assert len(same) == 1 and same.n_pairs.item() == r.n_pairs
            assert same.mean_diff.item() == pytest.approx(r.mean_diff)
    # main table and both low-resource sizes, each with a GLUE average of its tasks
    assert comp.groupby(comp.train_size.fillna(0)).size().to_dict() == {0: 10, 100: 6, 1000: 6}
    for title in ("### minilm_l6, main results: against `cls`", "### minilm_l6, train size 100: against `cls`",
                  "### minilm_l6, train size 1000: against `cls`"):
        assert title in md


def test_latex_table(generated):
    kept, _, out = generated
    tex = (out / "results.tex").read_text()
    for cmd in ("\\toprule", "\\midrule", "\\bottomrule", "\\begin{tabular}"):
        assert cmd in tex
    assert "maxpool\\_mha" in tex and "maxpool_mha" not in tex.replace("maxpool\\_mha", "")
    full = cells(kept)
    best = max(POOLINGS, key=lambda p: mean([r["score"] for r in full[(p, "rte")]]))
    runs = full[(best, "rte")]
    vals = [r["score"] * 100 for r in runs]
    assert f"\\textbf{{{_fmt(mean(vals))}}} $\\pm$ {_fmt(sample_std(vals))} ($n$={len(vals)})" in tex
    assert tex.isascii()
    assert tex.count("\\begin{table}") == 4  # main, confidence intervals, comparisons, low-resource


def test_plots_are_pngs(generated):
    _, _, out = generated
    for name in ("low_resource.png", "stability.png"):
        data = (out / name).read_bytes()
        assert len(data) > 5000 and data.startswith(PNG_MAGIC), name


def _small_tree(root: Path, lrs=(2e-05, 2e-05), settings=True):
    for seed, lr in enumerate(lrs, start=1):
        data = _results("rte", "cls", seed, {"accuracy": 0.6 + seed / 100})
        if settings:
            data["settings"]["optimizer.lr"] = lr
        else:
            del data["settings"]
        _write_run(root / f"run{seed}", data)


def test_mixed_settings_refused_or_split(tmp_path, capsys):
    _small_tree(tmp_path / "runs", lrs=(2e-05, 3e-05))
    rc = main(["--runs", str(tmp_path / "runs"), "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert rc == 2
    assert "optimizer.lr (2e-05 vs 3e-05)" in err and "task=rte" in err and "pooling=cls" in err
    assert "batch_size" not in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "out" / "results.md").exists()
    assert main(["--runs", str(tmp_path / "runs"), "--out", str(tmp_path / "out"), "--split-settings"]) == 0
    csv = pd.read_csv(tmp_path / "out" / "results.csv")
    rows = csv[(csv.metric == "score") & (csv.task == "rte")].set_index("pooling")
    assert rows.loc["cls [optimizer.lr=2e-05]", "n"] == 1 and rows.loc["cls [optimizer.lr=3e-05]", "n"] == 1
    assert main(["--runs", str(tmp_path / "runs"), "--out", str(tmp_path / "out2"), "--ignore", "optimizer.lr"]) == 0
    assert pd.read_csv(tmp_path / "out2" / "results.csv").query("metric == 'score' and task == 'rte'")["n"].tolist() == [2]


def test_missing_settings_do_not_conflict_and_single_seed(tmp_path):
    _small_tree(tmp_path / "runs", settings=False)
    _write_run(tmp_path / "runs" / "solo", _results("rte", "mha", 1, {"accuracy": 0.7}))
    _write_run(tmp_path / "runs" / "cola", _results("cola", "mha", 1, {"mcc": 0.3}))
    assert main(["--runs", str(tmp_path / "runs"), "--out", str(tmp_path / "out")]) == 0
    md = (tmp_path / "out" / "results.md").read_text()
    # cls lacks CoLA: its average (61.5) is over RTE only, marked with a dagger and never bold
    assert "| `cls` | – | 61.5 ± 0.7 (n=2) | 61.5 † |" in md
    assert "| `mha` | 30.0 ± – (n=1) | **70.0** ± – (n=1) | 50.0 |" in md
    assert "Rows cover different task sets" in md
    assert "No runs with a reduced train_size" in md
    assert not (tmp_path / "out" / "low_resource.png").exists()
    diff = pd.read_csv(tmp_path / "out" / "differences.csv")
    assert diff.n_pairs.tolist() == [1] and diff.ttest_p.isna().all() and diff.wilcoxon_p.isna().all()
    assert diff.mean_diff.iloc[0] == pytest.approx(70.0 - 61.0)


def test_non_finite_score_is_degenerate_not_averaged(tmp_path):
    root = tmp_path / "runs"
    for seed, pearson in ((1, 0.8), (2, 0.9), (3, float("nan"))):
        data = _results("stsb", "cls", seed, {"pearson": pearson, "spearman": pearson})
        _write_run(root / f"s{seed}", data)  # json.dumps writes NaN, as json.dump does
    assert main(["--runs", str(root), "--out", str(tmp_path / "out")]) == 0
    csv = pd.read_csv(tmp_path / "out" / "results.csv")
    score = csv[(csv.task == "stsb") & (csv.metric == "score")].iloc[0]
    assert score["mean"] == pytest.approx(85.0) and score["n"] == 2
    deg = pd.read_csv(tmp_path / "out" / "degenerate.csv").iloc[0]
    assert (deg.n_runs, deg.n_known, deg.n_degenerate) == (3, 1, 1)
    skipped = pd.read_csv(tmp_path / "out" / "skipped.csv")
    assert skipped.path.tolist() == ["s3"] and "non-finite" in skipped.reason[0]


def test_no_runs_exit(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert main(["--runs", str(tmp_path / "empty"), "--out", str(tmp_path / "out")]) != 0
    assert "no usable runs" in capsys.readouterr().err
    assert main(["--runs", str(tmp_path / "missing"), "--out", str(tmp_path / "out")]) != 0
    assert "no runs found" in capsys.readouterr().err
    _write_run(tmp_path / "broken" / "a", raw="not json")
    assert main(["--runs", str(tmp_path / "broken"), "--out", str(tmp_path / "out")]) != 0
    assert "invalid JSON" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_runs_env_var_default(tmp_path, monkeypatch):
    _small_tree(tmp_path / "runs")
    monkeypatch.setenv("RUNS", str(tmp_path / "runs"))
    assert main(["--out", str(tmp_path / "out")]) == 0
    assert (tmp_path / "out" / "results.csv").exists()


# --------------------------------------------------------------------------- W&B


def _fake_wandb_run(run_id="abc", state="finished", nested=True):
    summary = {"score": 0.8, "metrics": {"f1": 0.85, "accuracy": 0.75}, "majority_score": 0.684,
               "params": {"total": 10, "pooling": 2}, "wall_s": 12.0, "_timestamp": 1700000000.0}
    if nested:
        config = {"task": {"name": "mrpc", "max_length": 128}, "pooling": {"name": "maxpool_mha"},
                  "model": {"name": MODEL}, "seed": 3, "data": {"train_size": 1000},
                  "hparams": {"lr": 2e-05}}
    else:
        summary = {"metrics/f1": 0.85, "metrics/accuracy": 0.75, "train_size": None}
        config = {"task": "mrpc", "pooling": "cls", "model": MODEL, "seed": 1}
    return types.SimpleNamespace(id=run_id, state=state, summary=summary, config=config,
                                 created_at="2026-11-23T10:00:00Z")


def test_wandb_run_to_record_nested_config():
    record = report.wandb_run_to_record(_fake_wandb_run())
    assert record == {"task": "mrpc", "pooling": "maxpool_mha", "model": MODEL, "seed": 3,
                      "train_size": 1000, "metrics": {"f1": 0.85, "accuracy": 0.75},
                      "score": 0.8, "params": {"total": 10, "pooling": 2}, "wall_s": 12.0,
                      "majority_score": 0.684}
    parsed = report.parse_record(record)  # the same validation as results.json
    assert parsed["train_size"] == 1000 and parsed["f1"] == 0.85


def test_wandb_run_to_record_flat_keys():
    record = report.wandb_run_to_record(_fake_wandb_run(nested=False))
    assert record["task"] == "mrpc" and record["pooling"] == "cls" and record["seed"] == 1
    assert record["train_size"] is None
    assert record["metrics"] == {"f1": 0.85, "accuracy": 0.75}
    assert record["score"] == pytest.approx(0.8)


def test_from_wandb_end_to_end(tmp_path, monkeypatch):
    runs = [_fake_wandb_run("a"), _fake_wandb_run("b", nested=False),
            _fake_wandb_run("c", state="crashed")]
    api = types.SimpleNamespace(runs=lambda path: runs if path == "me/proj" else [])
    monkeypatch.setitem(sys.modules, "wandb", types.SimpleNamespace(Api=lambda: api))
    assert main(["--from-wandb", "me/proj", "--out", str(tmp_path / "out")]) == 0
    skipped = pd.read_csv(tmp_path / "out" / "skipped.csv")
    assert skipped.to_dict("records") == [{"path": "wandb:me/proj/c",
                                           "reason": "failed: W&B state crashed"}]
    csv = pd.read_csv(tmp_path / "out" / "results.csv")
    assert csv[(csv.pooling == "cls") & (csv.metric == "f1")]["mean"].iloc[0] == pytest.approx(85.0)
    low = pd.read_csv(tmp_path / "out" / "low_resource.csv")
    assert set(low.train_size.dropna()) == {1000}


def test_from_wandb_api_error_is_one_line(tmp_path, monkeypatch, capsys):
    def broken_api():
        raise RuntimeError("No API key configured")

    monkeypatch.setitem(sys.modules, "wandb", types.SimpleNamespace(Api=broken_api))
    assert main(["--from-wandb", "me/proj", "--out", str(tmp_path / "out")]) == 1
    err = capsys.readouterr().err
    assert "No API key configured" in err and "Traceback" not in err


# --------------------------------------------------------------------------- tasks from task_info

SUPERGLUE = {  # results.json task_info of tasks the project may not have configs for
    "boolq": {"name": "boolq", "display_name": "BoolQ", "benchmark": "superglue",
              "benchmark_name": "SuperGLUE", "metrics": ["accuracy"], "order": 1},
    "cb": {"name": "cb", "display_name": "CB", "benchmark": "superglue",
           "benchmark_name": "SuperGLUE", "metrics": ["accuracy", "macro_f1"], "order": 2},
    "mine": {"name": "mine", "display_name": "My task", "benchmark": "custom",
             "benchmark_name": "Custom", "metrics": ["bleu"], "order": 100},
}
RTE_INFO = {"name": "rte", "display_name": "RTE", "benchmark": "glue", "benchmark_name": "GLUE",
            "metrics": ["accuracy"], "order": 8}


def _benchmark_tree(root: Path) -> dict:
    """RTE (with task_info), BoolQ, CB and a custom task, cls and mha, 3 seeds: {(pooling, task):
    [metric dicts]}. Folders are written CB first, so folder order is not column order."""
    rng = np.random.default_rng(11)
    truth = {}
    for task in ("mine", "cb", "boolq", "rte"):
        info = RTE_INFO if task == "rte" else SUPERGLUE[task]
        for pooling in ("cls", "mha"):
            for seed in (1, 2, 3):
                metrics = {m: round(float(rng.uniform(0.5, 0.9)), 4) for m in info["metrics"]}
                truth.setdefault((pooling, task), []).append(metrics)
                _write_run(root / f"{task}-{pooling}-{seed}",
                           _results(task, pooling, seed, metrics, task_info=info, n_train_full=1000))
    return truth


def test_benchmark_averages_from_task_info(tmp_path):
    truth = _benchmark_tree(tmp_path / "runs")
    assert main(["--runs", str(tmp_path / "runs"), "--out", str(tmp_path / "out")]) == 0
    # the score of a run is the mean of its metrics; a task cell's score is the mean over seeds
    task_score = {key: mean([mean(list(m.values())) * 100 for m in runs]) for key, runs in truth.items()}
    expected = {}
    for pooling in ("cls", "mha"):
        expected[(pooling, "glue_avg")] = (task_score[(pooling, "rte")], 1)
        expected[(pooling, "superglue_avg")] = (
            (task_score[(pooling, "boolq")] + task_score[(pooling, "cb")]) / 2, 2)
        expected[(pooling, "custom_avg")] = (task_score[(pooling, "mine")], 1)
    csv = pd.read_csv(tmp_path / "out" / "results.csv")
    for (pooling, avg), (value, n) in expected.items():
        row = csv[(csv.pooling == pooling) & (csv.task == avg)]
        assert len(row) == 1 and row.metric.item() == "score", (pooling, avg)
        assert row["mean"].item() == pytest.approx(value) and row["n"].item() == n
        assert pd.isna(row["std"].item())
    cb = csv[(csv.pooling == "mha") & (csv.task == "cb")]
    assert cb.metric.tolist() == ["accuracy", "macro_f1", "score"]
    assert cb.set_index("metric").at["macro_f1", "mean"] == pytest.approx(
        mean([m["macro_f1"] * 100 for m in truth[("mha", "cb")]]))
    # rows in table order: each benchmark's tasks, then its average
    assert list(dict.fromkeys(csv[csv.pooling == "cls"].task)) == [
        "rte", "glue_avg", "boolq", "cb", "superglue_avg", "mine", "custom_avg"]

    md = (tmp_path / "out" / "results.md").read_text()
    assert md.startswith("# GLUE, SuperGLUE and Custom results")
    header = ("| Pooling | RTE (acc) | GLUE avg | BoolQ (acc) | CB (acc/mF1) | SuperGLUE avg "
              "| My task (bleu) | Custom avg |")
    assert header in md
    columns = ["rte", "glue_avg", "boolq", "cb", "superglue_avg", "mine", "custom_avg"]

    def value(pooling, column):
        return expected[(pooling, column)][0] if column.endswith("_avg") else task_score[(pooling, column)]

    best = {column: max(("cls", "mha"), key=lambda p: value(p, column)) for column in columns}
    for pooling in ("cls", "mha"):
        cells = [f"`{pooling}`"]
        for col in columns:
            if col.endswith("_avg"):
                text = _fmt(expected[(pooling, col)][0])
                cells.append(f"**{text}**" if best[col] == pooling else text)
                continue
            runs = truth[(pooling, col)]
            metrics = list(runs[0])
            means = "/".join(_fmt(mean([r[m] * 100 for r in runs])) for m in metrics)
            stds = "/".join(_fmt(sample_std([r[m] * 100 for r in runs])) for m in metrics)
            cells.append(f"{f'**{means}**' if best[col] == pooling else means} ± {stds} (n=3)")
        line = "| " + " | ".join(cells) + " |"
        assert line in md, f"missing row:\n{line}\n\n{md}"
    assert "CB: acc/mF1" in md and "mF1 = macro_f1" in md
    assert "SuperGLUE avg" in (tmp_path / "out" / "results.tex").read_text()


def test_average_dagger_per_benchmark(tmp_path):
    """mha lacks CB: its SuperGLUE average (BoolQ only) gets a dagger and no bold; its GLUE
    average is complete and compared as usual."""
    root = tmp_path / "runs"
    scores = {("cls", "rte"): 0.60, ("mha", "rte"): 0.70, ("cls", "boolq"): 0.62,
              ("mha", "boolq"): 0.80, ("cls", "cb"): {"accuracy": 0.80, "macro_f1": 0.70}}
    for (pooling, task), value in scores.items():
        metrics = value if isinstance(value, dict) else {"accuracy": value}
        info = RTE_INFO if task == "rte" else SUPERGLUE[task]
        _write_run(root / f"{task}-{pooling}", _results(task, pooling, 1, metrics, task_info=info))
    assert main(["--runs", str(root), "--out", str(tmp_path / "out")]) == 0
    md = (tmp_path / "out" / "results.md").read_text()
    # cls: SuperGLUE avg = (62 + (80 + 70) / 2) / 2 = 68.5 over both tasks; mha: 80.0 over BoolQ only
    assert "| `cls` | 60.0 ± – (n=1) | 60.0 | 62.0 ± – (n=1) | 80.0/70.0 ± – (n=1) | 68.5 |" in md
    assert "| `mha` | **70.0** ± – (n=1) | **70.0** | **80.0** ± – (n=1) | – | 80.0 † |" in md
    assert "Rows cover different task sets" in md


def test_legacy_results_without_task_info_use_the_task_configs(tmp_path):
    """A results.json written before task_info existed is described by configs/task/<name>.yaml;
    it shares its cell with a current run of the same task."""
    root = tmp_path / "runs"
    _write_run(root / "old", _results("mrpc", "cls", 1, {"f1": 0.80, "accuracy": 0.70}))
    info = {"name": "mrpc", "display_name": "MRPC", "benchmark": "glue", "benchmark_name": "GLUE",
            "metrics": ["f1", "accuracy"], "order": 3}
    _write_run(root / "new", _results("mrpc", "cls", 2, {"f1": 0.90, "accuracy": 0.80}, task_info=info))
    _write_run(root / "cola", _results("cola", "cls", 1, {"mcc": 0.40}))
    assert "task_info" not in json.loads((root / "old" / "results.json").read_text())
    assert main(["--runs", str(root), "--out", str(tmp_path / "out")]) == 0
    md = (tmp_path / "out" / "results.md").read_text()
    assert "| Pooling | CoLA (MCC) | MRPC (F1/acc) | GLUE avg |" in md
    # MRPC: F1 (80 + 90) / 2 = 85, acc (70 + 80) / 2 = 75, score 80; GLUE avg (40 + 80) / 2 = 60
    assert "| `cls` | 40.0 ± – (n=1) | 85.0/75.0 ± 7.1/7.1 (n=2) | 60.0 |" in md
    assert pd.read_csv(tmp_path / "out" / "skipped.csv").empty


def test_unknown_task_without_task_info_is_skipped_with_the_reason(tmp_path):
    root = tmp_path / "runs"
    _write_run(root / "rte", _results("rte", "cls", 1, {"accuracy": 0.6}))
    _write_run(root / "squad", _results("squad", "cls", 1, {"f1": 0.8}))
    _write_run(root / "bad_info", _results("boolq", "cls", 1, {"accuracy": 0.7},
                                           task_info={**SUPERGLUE["boolq"], "metrics": "accuracy"}))
    assert main(["--runs", str(root), "--out", str(tmp_path / "out")]) == 0
    skipped = pd.read_csv(tmp_path / "out" / "skipped.csv")
    reasons = dict(zip(skipped.path, skipped.reason, strict=True))
    assert reasons["squad"] == "other configuration: unknown task 'squad'"
    assert reasons["bad_info"].startswith("corrupt: task_info")
    assert set(pd.read_csv(tmp_path / "out" / "results.csv").task) == {"rte", "glue_avg"}
    with pytest.raises(report.RunError, match="unknown task 'squad'"):
        report.parse_record(_results("squad", "cls", 1, {"f1": 0.8}))


def test_full_training_set_size_from_the_runs():
    records = [
        {**report.parse_record(_results("rte", "cls", 1, {"accuracy": 0.6}, n_train_full=2490,
                                        n_train=100, train_size=100)), "path": "a", "mtime": 1.0},
        {**report.parse_record(_results("mrpc", "cls", 1, {"f1": 0.8, "accuracy": 0.7},
                                        n_train=3668)), "path": "b", "mtime": 1.0},
        {**report.parse_record(_results("mrpc", "cls", 2, {"f1": 0.8, "accuracy": 0.7},
                                        n_train=50, train_size=50)), "path": "c", "mtime": 1.0},
        {**report.parse_record(_results("cola", "cls", 1, {"mcc": 0.3}, train_size=50,
                                        n_train=50)), "path": "d", "mtime": 1.0},
    ]
    runs = report.records_to_frame(records)
    # rte: n_train_full; mrpc (legacy): n_train of its full-size run; cola: unknown
    assert report.full_train_sizes(runs) == {"rte": 2490, "mrpc": 3668}
    assert list(report.tasks_of(runs)) == ["cola", "mrpc", "rte"]


def test_wandb_task_info_from_the_run_config():
    run = types.SimpleNamespace(
        id="x", state="finished",
        summary={"score": 0.75, "metrics/accuracy": 0.8, "metrics/macro_f1": 0.7},
        config={"task": {"name": "cb", "display_name": "CB", "benchmark": "superglue", "order": 2,
                         "eval": {"dev": {"metrics": {"accuracy": "accuracy", "macro_f1": "macro_f1"}}}},
                "pooling": {"name": "cls"}, "model": {"name": MODEL}, "seed": 1})
    record = report.wandb_run_to_record(run)
    assert record["metrics"] == {"accuracy": 0.8, "macro_f1": 0.7}
    parsed = report.parse_record(record)
    assert parsed["task_info"] == report.TaskInfo("cb", "CB", "superglue", "SuperGLUE",
                                                  ("accuracy", "macro_f1"), 2)
    assert parsed["task_info"].header == "CB (acc/mF1)"


@pytest.mark.slow
def test_a_hostile_stored_config_never_runs_in_the_report(real_glue, tmp_path):
    """Archived predictions take their gold labels from the task the run's stored config
    describes: the report builds that task directly (a _target_ other than the task class is
    refused in one line naming the file and key), and builds nothing else from the config."""
    import shutil
    import subprocess

    from .conftest import ROOT, SUBPROCESS_TIMEOUT
    from .hostile import payloads, plant_config

    marker = tmp_path / "ran"
    source = ROOT / "docs" / "results" / "runs" / "minilm_l6" / "rte" / "n500" / "cls" / "lr5e-05"
    runs = tmp_path / "runs"
    planted = list(payloads(tmp_path, marker).items())
    sections = [("task", p) for p in planted] + [("model", planted[0]), ("pooling", planted[1])]
    shutil.copytree(source.with_name("lr0.0001"), runs / "lr0.0001")  # a value to choose from
    for i, (section, (_, payload)) in enumerate(sections, start=1):
        shutil.copytree(source / f"seed{i}", runs / source.name / f"seed{i}")
        plant_config(runs / source.name / f"seed{i}" / ".hydra" / "config.yaml", section, payload)
    env = {**os.environ, "GLUE_DIR": str(real_glue)}
    for extra in ([], ["--select", "optimizer.lr", "--select-on", "half"]):
        proc = subprocess.run([sys.executable, "-m", "maxpoolbert.report", "--runs", str(runs), "--out",
                               str(tmp_path / "out"), *extra], cwd=tmp_path, env=env, capture_output=True, text=True,
                              timeout=SUBPROCESS_TIMEOUT)
        assert not marker.exists(), proc.stdout + proc.stderr
        assert "Traceback" not in proc.stderr, proc.stderr
        if extra:
            lines = proc.stderr.strip().splitlines()
            assert proc.returncode == 2 and len(lines) == 1, proc.stderr
            assert re.search(r"task\._target_=(torch\.load|os\.system|builtins\.eval): in \S+/\.hydra/config\.yaml: "
                             r"not the task class", lines[0]), lines[0]


# ---------------------------------------------------------------------------- data and ranges (issue 27)
def test_runs_scored_on_other_data_never_share_a_cell(tmp_path, capsys):
    """Runs of one settings_id evaluated on another GLUE copy (n_dev 200 vs 277) were averaged into
    one cell; with the labels' fingerprints recorded, so are equal counts of other labels. Refused
    in one line, or (--split-settings) each data its own row; settings_id unchanged."""
    from maxpoolbert.report.collect import MixedSettingsError, collect_runs

    def tree(name, runs):
        for seed, data in enumerate(runs, start=1):
            _write_run(tmp_path / name / f"run{seed}", _results("rte", "cls", seed, {"accuracy": 0.6 + seed / 100}, **data))
        return tmp_path / name

    same = tree("same", [{"n_dev": {"dev": 277}}, {"n_dev": {"dev": 277}}, {}])  # {}: an old record, data unknown
    runs, _ = collect_runs(same)
    assert len(runs) == 3 and runs["settings_id"].nunique() == 1
    fp = lambda h: {"dev": {"rows": 277, "labels_sha256": h}}  # noqa: E731
    for name, runs_data, text in [
        ("rows", [{"n_dev": {"dev": 277}}, {"n_dev": {"dev": 200}}], "dev rows dev: 200 vs dev: 277"),
        ("labels", [{"n_dev": {"dev": 277}, "dev_data": fp("a" * 64)}, {"n_dev": {"dev": 277}, "dev_data": fp("b" * 64)}],
         "dev labels dev: aaaaaaaaaaaa vs dev: bbbbbbbbbbbb"),
    ]:
        root = tree(name, runs_data)
        with pytest.raises(MixedSettingsError, match="runs scored on different dev data in one cell") as err:
            collect_runs(root)
        assert text in str(err.value) and "\n" not in str(err.value)
        assert main(["--runs", str(root), "--out", str(tmp_path / f"out-{name}")]) == 2
        assert len(capsys.readouterr().err.strip().splitlines()) == 1
        split, _ = collect_runs(root, split=True)
        assert split["pooling"].nunique() == 2 and split["settings_id"].nunique() == 1


@pytest.mark.parametrize(("metrics", "text"), [
    ({"accuracy": 52.7}, "corrupt: accuracy 52.7 outside its range [0, 1] (a percentage instead of a fraction?)"),
    ({"accuracy": -0.1}, "corrupt: accuracy -0.1 outside its range [0, 1]"),
])
def test_scores_outside_their_range_are_damaged_records(tmp_path, metrics, text):
    """A results.json whose score is in percent (52.7) was used: a cell mean of 1788."""
    from maxpoolbert.report.collect import collect_runs

    _write_run(tmp_path / "runs" / "bad", _results("rte", "cls", 1, metrics))
    _write_run(tmp_path / "runs" / "good", _results("rte", "cls", 2, {"accuracy": 0.6}))
    _write_run(tmp_path / "runs" / "mcc", _results("cola", "cls", 1, {"mcc": -0.2}))  # a correlation may be negative
    runs, skipped = collect_runs(tmp_path / "runs")
    assert sorted(runs["path"]) == ["good", "mcc"]
    assert skipped == [{"path": "bad", "reason": text}]
