"""The report along any factor (issue 26): ``--compare KEY`` / ``--baseline KEY=VALUE``, the three
verdicts (``--rope``), failed runs on the reported rows, power with the rows' noise, ``--ignore``
refusing instead of dropping, ``--split-settings`` keeping comparisons, and a page that float noise
cannot change.

Run folders with KNOWN per-row correctness: every arm's predictions are right on the first k rows of
one fixed permutation of the dev rows, so arms differ on known rows. Every number checked is
recomputed here (bootstrap loops with the same B and seed, Holm by hand, the rows' standard error by
its own loop)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from maxpoolbert.report import main, render
from maxpoolbert.runs.folder import RunFolder
from maxpoolbert.runs.record import RunRecord

from .test_report_stats import (
    close,
    holm_by_hand,
    paired_bootstrap_by_loop,
    rowwise,
    two_level_by_loop,
)

MODEL = "minilm_l6"
SEEDS = [1, 2, 3, 4, 5]
ROWS = 200
B = 1000
TASKS = {"rte": ("accuracy",), "mrpc": ("f1", "accuracy")}
BASE = np.array([120, 122, 118, 121, 119])          # cls, layer decay off: correct rows per seed
NOISE = np.array([-6, 8, -4, 6, -3])
CORRECT = {("cls", None): BASE, ("maxpool_mha", None): BASE + 30,   # pooling at default: better
           ("cls", 0.9): BASE,                                       # layer decay for cls: equivalent (identical)
           ("maxpool_mha", 0.9): BASE + NOISE}                       # pooling at 0.9: undecided; ld for maxpool_mha: worse


def labels_of(task: str) -> np.ndarray:
    rng = np.random.default_rng(7 if task == "rte" else 8)
    return rng.permutation(np.r_[np.ones(110, int), np.zeros(ROWS - 110, int)])


ORDER = np.random.default_rng(99).permutation(ROWS)   # the rows an arm gets right first


def predictions(labels: np.ndarray, k: int) -> np.ndarray:
    right = np.zeros(ROWS, bool)
    right[ORDER[:k]] = True
    return np.where(right, labels, 1 - labels)


def score(task: str, preds, labels) -> dict[str, float]:
    out = {}
    for m in TASKS[task]:
        out[m] = float(rowwise(m, np.asarray(preds)[None, :], np.asarray(labels)[None, :])[0])
    return out


def write(folder: Path, task: str, pooling: str, seed: int, preds, labels, settings: dict,
          majority: float | None = None) -> float:
    folder.mkdir(parents=True)
    run = RunFolder(folder)
    run.write_predictions({"dev": {"index": np.arange(labels.size), "label": labels, "prediction": preds}},
                          regression=False)
    metrics = score(task, preds, labels)
    if majority is None:
        majority = float(np.mean(list(score(task, np.ones(labels.size, int), labels).values())))
    record = RunRecord(task=task, pooling=pooling, model=MODEL, seed=seed, metrics=metrics,
                       score=float(np.mean(list(metrics.values()))), majority_score=majority,
                       settings={"optimizer.lr": 5e-5, "data.batch_size": 16, **settings,
                                 **{f"task.eval.dev.metrics.{m}": m for m in TASKS[task]}})
    run.write_results(record)
    return record.score


def settings_of(pooling: str, decay) -> dict:
    out = {"optimizer.layer_decay": decay, "pooling.name": pooling}
    if pooling == "maxpool_mha":
        out["pooling.module.k"] = 3
    return out


@pytest.fixture(scope="module")
def grid(tmp_path_factory):
    """rte and mrpc x {cls, maxpool_mha} x layer decay {off, 0.9} x 5 seeds."""
    root = tmp_path_factory.mktemp("grid") / "runs"
    truth = {}
    for task in TASKS:
        labels = labels_of(task)
        for (pooling, decay), ks in CORRECT.items():
            for seed, k in zip(SEEDS, ks, strict=True):
                preds = predictions(labels, int(k))
                folder = root / task / pooling / f"ld{decay}" / f"seed{seed}"
                truth[(task, pooling, decay, seed)] = (write(folder, task, pooling, seed, preds, labels,
                                                             settings_of(pooling, decay)), preds)
    out = tmp_path_factory.mktemp("grid_report")
    assert main(["--runs", str(root), "--out", str(out), "--compare", "optimizer.layer_decay"]) == 0
    return root, truth, out


def label(pooling: str, decay) -> str:
    return f"{pooling} [optimizer.layer_decay={'default' if decay is None else decay}]"


def arms(comp: pd.DataFrame, factor: str, arm: str, base: str, task: str) -> pd.Series:
    rows = comp[(comp.factor == factor) & (comp.pooling == arm) & (comp.baseline == base) & (comp.task == task)]
    assert len(rows) == 1, (factor, arm, base, task, comp[["factor", "pooling", "baseline", "task"]])
    return rows.iloc[0]


PAIRS = {  # (factor, arm, baseline) -> the verdict the designed correctness gives
    ("pooling", ("maxpool_mha", None), ("cls", None)): "better",
    ("pooling", ("maxpool_mha", 0.9), ("cls", 0.9)): "undecided",
    ("optimizer.layer_decay", ("cls", 0.9), ("cls", None)): "equivalent",
    ("optimizer.layer_decay", ("maxpool_mha", 0.9), ("maxpool_mha", None)): "worse",
}


def test_a_pooling_by_layer_decay_grid_is_compared_along_each_factor(grid):
    root, truth, out = grid
    comp = pd.read_csv(out / "comparisons.csv")
    assert {"factor", "value", "baseline_value", "verdict"} <= set(comp.columns)
    assert list(dict.fromkeys(comp.factor)) == ["pooling", "optimizer.layer_decay"]
    assert set(comp[comp.factor == "optimizer.layer_decay"].value) == {"0.9"}
    assert set(comp[comp.factor == "optimizer.layer_decay"].baseline_value) == {"default"}
    assert set(comp[comp.factor == "pooling"].value) == {"maxpool_mha"}
    assert len(comp) == 4 * 3  # four comparisons, each on two tasks and their GLUE average
    for (factor, (pa, da), (pb, db)), verdict in PAIRS.items():
        family = []
        for task in TASKS:
            row = arms(comp, factor, label(pa, da), label(pb, db), task)
            a = np.array([truth[(task, pa, da, s)][0] for s in SEEDS]) * 100
            b = np.array([truth[(task, pb, db, s)][0] for s in SEEDS]) * 100
            d = a - b
            assert close(row.mean_diff, d.mean()) and row.n_pairs == 5
            if np.any(d != 0):
                low, high = paired_bootstrap_by_loop(d, B)
                assert close(row.boot_low, low) and close(row.boot_high, high)
            labels = labels_of(task)
            pa_ = np.stack([truth[(task, pa, da, s)][1] for s in SEEDS])
            pb_ = np.stack([truth[(task, pb, db, s)][1] for s in SEEDS])
            low, high = two_level_by_loop(labels, pa_, pb_, TASKS[task], B)
            assert close(row.two_level_low / 100, low) and close(row.two_level_high / 100, high)
            assert row.verdict == verdict and row.verdict_basis == "seeds × rows", (factor, pa, da, task)
            family.append(row)
        perms = [r.perm_p for r in family]
        if not any(math.isnan(p) for p in perms):
            for row, p in zip(family, holm_by_hand(perms), strict=True):
                assert close(row.holm_p, p)
    md = (out / "results.md").read_text()
    assert "## Comparisons along `pooling` (baseline `cls`)" in md
    assert "## Comparisons along `optimizer.layer_decay` (baseline `default`)" in md
    assert " nan" not in md and "=nan" not in md
    tex = (out / "results.tex").read_text()
    assert "tab:glue-diff-2" in tex and "optimizer.layer\\_decay=default" in tex


def test_each_verdict_is_stated_in_words(grid):
    _, _, out = grid
    md = (out / "results.md").read_text()
    for (_factor, (pa, da), (pb, db)), verdict in PAIRS.items():
        line = f"`{label(pa, da)}` vs `{label(pb, db)}` on RTE ({MODEL}): **{verdict}**"
        assert line in md, line


def test_the_baseline_can_be_named_and_a_bad_one_is_refused(grid, tmp_path, capsys):
    root, _, _ = grid
    assert main(["--runs", str(root), "--out", str(tmp_path / "a"), "--compare", "optimizer.layer_decay",
                 "--baseline", "optimizer.layer_decay=0.9", "--baseline", "pooling=maxpool_mha"]) == 0
    comp = pd.read_csv(tmp_path / "a" / "comparisons.csv")
    assert set(comp[comp.factor == "optimizer.layer_decay"].baseline_value) == {"0.9"}
    assert set(comp[comp.factor == "pooling"].value) == {"cls"}
    capsys.readouterr()
    assert main(["--runs", str(root), "--out", str(tmp_path / "b"), "--compare", "optimizer.layer_decay",
                 "--baseline", "optimizer.layer_decay=0.5"]) == 2
    [line] = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("error: --baseline=optimizer.layer_decay=0.5: no run has this value") and "0.9" in line
    assert main(["--runs", str(root), "--out", str(tmp_path / "c"), "--compare", "optimizer.layer_dacay"]) == 2
    [line] = capsys.readouterr().err.strip().splitlines()
    assert "no run has this key" in line and "did you mean optimizer.layer_decay" in line


def test_split_settings_keeps_each_settings_group_comparisons(grid, tmp_path):
    root, _, _ = grid
    assert main(["--runs", str(root), "--out", str(tmp_path), "--split-settings"]) == 0
    comp = pd.read_csv(tmp_path / "comparisons.csv")
    assert set(comp.factor) == {"pooling"}
    assert set(zip(comp.pooling, comp.baseline, strict=True)) == {(label("maxpool_mha", None), label("cls", None)),
                                                      (label("maxpool_mha", 0.9), label("cls", 0.9))}
    assert "No pair of cells" not in (tmp_path / "results.md").read_text()


def test_ignore_refuses_to_make_different_settings_duplicates(grid, tmp_path, capsys):
    root, _, _ = grid
    assert main(["--runs", str(root), "--out", str(tmp_path), "--ignore", "optimizer.layer_decay"]) == 2
    [line] = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("error: --ignore optimizer.layer_decay would make runs of different settings "
                           "duplicates of seed")
    assert "ld0.9" in line and "ldNone" in line and "--compare optimizer.layer_decay" in line
    assert not (tmp_path / "results.md").exists()


def test_select_shows_the_unset_value_as_default(grid, tmp_path):
    root, _, _ = grid
    assert main(["--runs", str(root), "--out", str(tmp_path), "--select", "optimizer.layer_decay"]) == 0
    table = pd.read_csv(tmp_path / "selection.csv", keep_default_na=False)
    assert set(table.value) == {"default", "0.9"}
    assert "nan" not in (tmp_path / "results.md").read_text().split("## Main results")[0]
    # a second report into the same folder without --select leaves no selection.csv behind
    assert main(["--runs", str(root), "--out", str(tmp_path), "--compare", "optimizer.layer_decay"]) == 0
    assert not (tmp_path / "selection.csv").exists() and not (tmp_path / "budget.csv").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".report-")]


def test_the_power_floor_counts_the_rows(grid):
    _, truth, out = grid
    comp = pd.read_csv(out / "comparisons.csv")
    row = arms(comp, "pooling", label("maxpool_mha", 0.9), label("cls", 0.9), "rte")
    labels = labels_of("rte")
    pa = np.stack([truth[("rte", "maxpool_mha", 0.9, s)][1] for s in SEEDS])
    pb = np.stack([truth[("rte", "cls", 0.9, s)][1] for s in SEEDS])
    # the rows' standard error, by its own loop: seeds kept, one row sample per replicate for all
    row_rng = np.random.default_rng(0).spawn(2)[1]
    reps = []
    for idx in row_rng.integers(0, ROWS, size=(B, ROWS)):
        reps.append(np.mean(rowwise("accuracy", pa[:, idx], labels[idx][None, :])
                            - rowwise("accuracy", pb[:, idx], labels[idx][None, :])) * 100)
    sd_rows = float(np.std(reps, ddof=1))
    assert close(row.row_sd, sd_rows)
    z = stats.norm.ppf(0.975) + stats.norm.ppf(0.8)
    assert close(row.detectable_floor, z * sd_rows) and row.n_rows == ROWS
    assert row.detectable_rows > row.detectable_floor and row.detectable_rows >= row.min_detectable
    assert pd.isna(row.seeds_needed_rows)  # 1 point is below the floor: never
    md = (out / "results.md").read_text()
    assert (f"with these {ROWS} rows, no number of seeds detects less than {round(row.detectable_floor, 1):.1f} "
            "points, so 1 point cannot be detected on them") in md


def test_a_constant_predictor_is_failed_even_above_its_recorded_majority(tmp_path):
    """The training set's majority label was 0 (recorded majority score 0.45 on dev), the run predicts 1
    on every row and scores 0.55: above the majority score, but a constant classifier."""
    labels = labels_of("rte")
    root = tmp_path / "runs"
    for seed in SEEDS:
        write(root / "cls" / f"s{seed}", "rte", "cls", seed, predictions(labels, int(BASE[seed - 1])), labels,
              settings_of("cls", None))
        write(root / "mha" / f"s{seed}", "rte", "mha", seed, np.ones(ROWS, int), labels,
              settings_of("mha", None), majority=float(np.mean(labels == 0)))
    assert main(["--runs", str(root), "--out", str(tmp_path / "out")]) == 0
    cells = pd.read_csv(tmp_path / "out" / "cells.csv")
    mha = cells[cells.pooling == "mha"].iloc[0]
    assert mha["mean"] == pytest.approx(55.0) and mha["n_failed"] == 5
    cls = cells[cells.pooling == "cls"].iloc[0]
    assert cls["n_failed"] == 0 and not cls["at_chance"]
    md = (tmp_path / "out" / "results.md").read_text()
    assert "55.0 [55.0, 55.0] (5 failed)" in md


def test_float_noise_of_1e13_does_not_change_a_byte(grid, tmp_path, monkeypatch):
    root, _, out = grid
    original = render.rounded
    rng = np.random.default_rng(0)

    def noisy(frame):
        frame = frame.copy()
        for column in frame.columns:
            if frame[column].dtype.kind == "f":
                values = frame[column].to_numpy()
                frame[column] = values * (1 + 1e-13 * rng.choice([-1.0, 1.0], size=values.size))
        return original(frame)

    monkeypatch.setattr(render, "rounded", noisy)
    assert main(["--runs", str(root), "--out", str(tmp_path), "--compare", "optimizer.layer_decay"]) == 0
    for name in ("results.md", "results.tex", "results.csv", "cells.csv", "comparisons.csv", "differences.csv"):
        assert (tmp_path / name).read_bytes() == (out / name).read_bytes(), name


def test_the_bayesian_signed_rank_probabilities_point_the_way_of_the_verdicts(grid):
    _, _, out = grid
    comp = pd.read_csv(out / "comparisons.csv")
    probs = {}
    for (factor, (pa, da), (pb, db)), verdict in PAIRS.items():
        row = arms(comp, factor, label(pa, da), label(pb, db), "rte")
        total = row.bayes_worse + row.bayes_equivalent + row.bayes_better
        assert total == pytest.approx(1.0, abs=1e-6)
        probs[verdict] = row
    assert probs["better"].bayes_better > 0.9 and probs["worse"].bayes_worse > 0.9
    assert probs["equivalent"].bayes_equivalent == pytest.approx(1.0)   # identical arms: every difference 0
    md = (out / "results.md").read_text()
    assert "Bayesian signed-rank P(worse, equivalent, better) = (" in md


def test_the_note_names_the_run_whose_predictions_are_damaged(grid, tmp_path):
    import shutil

    root, _, _ = grid
    runs = tmp_path / "runs"
    shutil.copytree(root, runs)
    damaged = runs / "rte" / "cls" / "ldNone" / "seed3" / "dev_predictions.tsv"   # a baseline run's
    damaged.write_text("not a predictions file\n")
    assert main(["--runs", str(runs), "--out", str(tmp_path / "out"), "--compare", "optimizer.layer_decay"]) == 0
    md = (tmp_path / "out" / "results.md").read_text()
    note = next(line for line in md.splitlines() if line.startswith("Note: Two-level bootstrap left empty"))
    assert "rte/cls/ldNone/seed3" in note, note


def test_a_full_disk_leaves_the_previous_report_whole(grid, small_disk, capsys):
    root, _, _ = grid
    out = small_disk / "reports"
    assert main(["--runs", str(root), "--out", str(out), "--split-settings"]) == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    free = __import__("shutil").disk_usage(small_disk).free
    (small_disk / "filler").write_bytes(b"\0" * (free - 20_000))   # 20 kB left: not enough for a report
    capsys.readouterr()
    assert main(["--runs", str(root), "--out", str(out), "--compare", "optimizer.layer_decay"]) == 2
    [line] = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("error: cannot write ") and "No space left on device" in line
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before   # no staging folder, nothing half-written


def test_a_key_a_pooling_lacks_makes_it_every_values_baseline(grid, tmp_path):
    """cls has no pooling.module.k: its rows carry no k label and pair with maxpool_mha at any k."""
    root, _, _ = grid
    assert main(["--runs", str(root), "--out", str(tmp_path), "--compare", "optimizer.layer_decay",
                 "--compare", "pooling.module.k"]) == 0
    comp = pd.read_csv(tmp_path / "comparisons.csv")
    pooling = comp[comp.factor == "pooling"]
    assert set(pooling.baseline) == {label("cls", None), label("cls", 0.9)}
    assert set(pooling.pooling) == {"maxpool_mha [optimizer.layer_decay=default, pooling.module.k=3]",
                                    "maxpool_mha [optimizer.layer_decay=0.9, pooling.module.k=3]"}
    assert "<unset>" not in (tmp_path / "results.md").read_text()


def test_the_verdicts_step_down_as_holm_does_and_power_with_rows_reduces_to_the_t_test():
    from maxpoolbert.report import statistics as S

    assert list(S.holm_levels([0.04, 0.001, float("nan"), 0.5])) == [2.0, 3.0, 3.0, 1.0]
    assert S.verdicts([(0.5, 2.0), (-3.0, -0.2), (-0.5, 0.5)], [3, 2, 1], rope=1.0) == \
        ["better", "worse", "equivalent"]
    # the most significant comparison is not decided: Holm stops, a later interval excluding 0 decides nothing
    assert S.verdicts([(-0.1, 2.0), (0.2, 3.0)], [2, 1], rope=1.0) == ["undecided", "undecided"]
    assert S.verdicts([(float("nan"), 1.0)], [1], rope=1.0) == ["undecided"]
    for sd, n in ((2.0, 5), (0.7, 20)):
        assert S.detectable_with_rows(sd, 0.0, n) == pytest.approx(S.min_detectable(sd, n))
    z = stats.norm.ppf(0.975) + stats.norm.ppf(0.8)
    assert S.detectable_with_rows(3.0, 1.5, math.inf) == pytest.approx(z * 1.5)
    assert S.seeds_needed_with_rows(3.0, 1.5, delta=z * 1.5 * 0.99) is None   # below the floor: never
    n = S.seeds_needed_with_rows(3.0, 1.5, delta=6.0)
    assert S.detectable_with_rows(3.0, 1.5, n) <= 6.0 < S.detectable_with_rows(3.0, 1.5, n - 1)
