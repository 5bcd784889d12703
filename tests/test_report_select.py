"""``python -m maxpoolbert.report --select KEY [--select-on half]``: every choice and reported number
recomputed here independently, from fake runs with known per-row predictions."""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from maxpoolbert.report import main

LRS = [1e-5, 2e-5, 3e-5]
SEEDS = [1, 2, 3]
POOLINGS = ["cls", "maxpool_mha"]
N_DEV = 200  # RTE-like: accuracy


def correct_rows(rng, even_acc: float, odd_acc: float) -> np.ndarray:
    """Which of the dev rows are predicted right: exactly even_acc of the even-index rows and
    odd_acc of the odd-index rows (shuffled within each half)."""
    right = np.zeros(N_DEV, bool)
    for parity, acc in ((0, even_acc), (1, odd_acc)):
        idx = np.arange(parity, N_DEV, 2)
        right[rng.permutation(idx)[: round(acc * len(idx))]] = True
    return right


def write_run(folder: Path, pooling, seed, lr, right: np.ndarray) -> None:
    labels = np.arange(N_DEV) % 2
    preds = np.where(right, labels, 1 - labels)
    (folder / ".hydra").mkdir(parents=True)
    (folder / ".hydra" / "config.yaml").write_text(
        "task:\n  name: rte\n  eval:\n    dev: {file: dev.tsv, metrics: {accuracy: accuracy}}\n"
        f"optimizer:\n  lr: {lr}\ndata:\n  batch_size: 32\n")
    pd.DataFrame({"split": "dev", "index": np.arange(N_DEV), "label": labels, "prediction": preds}).to_csv(
        folder / "dev_predictions.tsv", sep="\t", index=False)
    acc = float(right.mean())
    (folder / "results.json").write_text(json.dumps({
        "task": "rte", "pooling": pooling, "model": "m", "seed": seed, "metrics": {"accuracy": acc},
        "score": acc, "train_size": None, "majority_score": 0.3}))  # settings: from the stored config


@pytest.fixture()
def grid(tmp_path):
    """Accuracy per (pooling, lr, seed) on the even and the odd halves, chosen so that the full-dev
    choice and the even-half choice differ for cls."""
    rng = np.random.default_rng(7)
    truth = {}
    plan = {  # (pooling, lr) -> (even, odd) base accuracies
        ("cls", 1e-5): (0.60, 0.60), ("cls", 2e-5): (0.70, 0.50), ("cls", 3e-5): (0.55, 0.70),
        ("maxpool_mha", 1e-5): (0.62, 0.62), ("maxpool_mha", 2e-5): (0.66, 0.64), ("maxpool_mha", 3e-5): (0.58, 0.58),
    }
    for (pooling, lr), (even, odd) in plan.items():
        for seed in SEEDS:
            jitter = 0.02 * (seed - 2)
            right = correct_rows(rng, even + jitter, odd - jitter)
            write_run(tmp_path / "runs" / f"{pooling}-{lr}-s{seed}", pooling, seed, lr, right)
            truth[(pooling, lr, seed)] = (right[0::2].mean(), right[1::2].mean(), right.mean())
    return tmp_path, truth


def expected_choice(truth, pooling, which):
    col = {"even": 0, "odd": 1, "all": 2}[which]
    means = {lr: np.mean([truth[(pooling, lr, s)][col] for s in SEEDS]) for lr in LRS}
    return max(LRS, key=lambda lr: means[lr]), means


@pytest.mark.parametrize("mode", ["all", "half"])
def test_selection_choices_and_reported_numbers(grid, mode):
    tmp, truth = grid
    assert main(["--runs", str(tmp / "runs"), "--out", str(tmp / "out"), "--select", "optimizer.lr",
                 "--select-on", mode]) == 0
    table = pd.read_csv(tmp / "out" / "selection.csv")
    assert list(table.columns) == ["model", "task", "pooling", "train_size", "key", "value", "n_seeds",
                                   "mean_score", "chosen"]
    assert len(table) == len(POOLINGS) * len(LRS)
    summary = pd.read_csv(tmp / "out" / "results.csv")
    reported = {}
    for pooling in POOLINGS:
        chosen, means = expected_choice(truth, pooling, "even" if mode == "half" else "all")
        rows = table[table["pooling"] == pooling].set_index("value")
        for lr in LRS:
            assert rows.loc[lr, "mean_score"] == pytest.approx(means[lr])
            assert rows.loc[lr, "n_seeds"] == 3 and rows.loc[lr, "key"] == "optimizer.lr"
            assert bool(rows.loc[lr, "chosen"]) == (lr == chosen)
        report_col = 1 if mode == "half" else 2
        reported[pooling] = np.array([truth[(pooling, chosen, s)][report_col] for s in SEEDS]) * 100
        cell = summary[(summary["pooling"] == pooling) & (summary["metric"] == "score") & (summary["task"] == "rte")]
        assert cell["mean"].item() == pytest.approx(reported[pooling].mean())
        assert cell["std"].item() == pytest.approx(reported[pooling].std(ddof=1))
        assert cell["n"].item() == 3
    diff = pd.read_csv(tmp / "out" / "differences.csv").iloc[0]
    d = reported["maxpool_mha"] - reported["cls"]
    assert diff["mean_diff"] == pytest.approx(d.mean())
    assert diff["ttest_p"] == pytest.approx(stats.ttest_rel(reported["maxpool_mha"], reported["cls"]).pvalue)
    md = (tmp / "out" / "results.md").read_text()
    assert "## Model selection" in md
    assert ("even index" in md and "odd index only" in md) if mode == "half" else "optimistically biased" in md


def test_full_dev_and_half_choices_differ_here(grid):
    _, truth = grid
    assert expected_choice(truth, "cls", "all")[0] != expected_choice(truth, "cls", "even")[0]


def test_unequal_seed_counts_are_compared_on_shared_seeds_and_said(grid):
    tmp, truth = grid
    for folder in (tmp / "runs").glob("cls-3e-05-s3"):
        for f in folder.rglob("*"):
            if f.is_file():
                f.unlink()
        for d in sorted(folder.rglob("*"), reverse=True):
            d.rmdir()
        folder.rmdir()
    assert main(["--runs", str(tmp / "runs"), "--out", str(tmp / "out"), "--select", "optimizer.lr"]) == 0
    table = pd.read_csv(tmp / "out" / "selection.csv")
    cls = table[table["pooling"] == "cls"].set_index("value")
    for lr in LRS:
        assert cls.loc[lr, "n_seeds"] == 2
        assert cls.loc[lr, "mean_score"] == pytest.approx(np.mean([truth[("cls", lr, s)][2] for s in (1, 2)]))
    md = (tmp / "out" / "results.md").read_text()
    assert "unequal seed counts per value" in md and "compared on the 2 seed(s) they share" in md


@pytest.mark.parametrize(("key", "message"), [
    ("trainer.nope", "--select=trainer.nope: no run has this key"),
    ("data.batch_size", "--select=data.batch_size: every run has the same value (32)"),
])
def test_bad_select_key_is_one_line(grid, capsys, key, message):
    tmp, _ = grid
    assert main(["--runs", str(tmp / "runs"), "--out", str(tmp / "out"), "--select", key]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"error: {message}")


@pytest.mark.parametrize(("change", "text"), [
    ("drop", "has 190 dev rows, the run was scored on 200"),   # truncated: the lr choice can flip
    ("extra", "has 210 dev rows, the run was scored on 200"),  # rows of another file appended
    ("drop_no_count", "accuracy recomputed from its rows is "),  # a record without n_dev: its metric
])
def test_half_selection_refuses_predictions_that_are_not_the_records(grid, capsys, change, text):
    """--select-on half used a dev_predictions.tsv with extra or missing rows (58.6 instead of 50.0;
    truncated rows flipped the lr choice) without comparing it with the record."""
    tmp, _ = grid
    run = tmp / "runs" / "cls-2e-05-s1"
    record = json.loads((run / "results.json").read_text())
    if change != "drop_no_count":
        (run / "results.json").write_text(json.dumps({**record, "n_dev": {"dev": N_DEV}}))
    rows = pd.read_csv(run / "dev_predictions.tsv", sep="\t")
    if change == "extra":
        more = rows.iloc[:10].assign(index=np.arange(N_DEV, N_DEV + 10), prediction=rows["label"].iloc[:10])
        rows = pd.concat([rows, more])
    else:
        rows = rows[(rows["index"] < N_DEV - 20) | (rows["prediction"] == rows["label"])].iloc[:190]
    rows.to_csv(run / "dev_predictions.tsv", sep="\t", index=False)
    assert main(["--runs", str(tmp / "runs"), "--out", str(tmp / "out"), "--select", "optimizer.lr",
                 "--select-on", "half"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"error: {run}: dev_predictions.tsv") and text in err[0], err
