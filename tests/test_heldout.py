"""Held-out rows (issue 28, ``data.heldout_size``): rows of the task's training file that no training
subset uses, the same for every seed, pooling and training size, predicted at every evaluation beside
the dev set and recorded (``results.json`` ``heldout``, ``heldout_predictions.tsv``); the dev
predictions are those of the same run without them."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from maxpoolbert.core.errors import UserError
from maxpoolbert.model import encoders
from maxpoolbert.training.data import HELDOUT, TaskDataModule, fixed_subset, heldout_subset

from .test_data import EMBEDDED
from .test_tasks import task


@pytest.mark.parametrize("n_rows", [10, 37, 2490])
def test_heldout_rows_never_overlap_any_training_subset_and_are_nested(n_rows):
    for subset_seed in (0, 1, 7):
        for heldout in sorted({1, n_rows // 3, n_rows // 2}):
            rows = heldout_subset(n_rows, heldout, subset_seed)
            assert len(rows) == heldout == len(set(rows.tolist())) and list(rows) == sorted(rows)
            for size in range(1, n_rows - heldout + 1, max(1, n_rows // 25)):
                train = fixed_subset(n_rows, size, subset_seed)
                assert not set(train.tolist()) & set(rows.tolist()), (n_rows, subset_seed, heldout, size)
            smaller = heldout_subset(n_rows, max(1, heldout // 2), subset_seed)
            assert set(smaller.tolist()) <= set(rows.tolist())


def test_the_data_module_holds_out_the_same_rows_for_every_size_and_seed(real_glue, tmp_path):
    tok = encoders.tokenizer(EMBEDDED)
    seen = []
    for size, seed in ((100, 1), (500, 2), (2000, 3)):
        dm = TaskDataModule(task("rte"), tok, glue_dir=str(real_glue), cache_dir=str(tmp_path), train_size=size,
                            heldout_size=400, seed=seed)
        dm.setup()
        assert dm.eval_names() == ["dev", HELDOUT]
        train, held = set(dm.splits["train"].idx.tolist()), dm.splits[HELDOUT].idx.tolist()
        assert len(train) == size and len(held) == 400 and not train & set(held)
        seen.append(held)
    assert seen[0] == seen[1] == seen[2]


def test_heldout_rows_that_do_not_fit_are_refused(real_glue, tmp_path):
    tok = encoders.tokenizer(EMBEDDED)
    make = lambda **kw: TaskDataModule(task("rte"), tok, glue_dir=str(real_glue), cache_dir=str(tmp_path), **kw)  # noqa: E731
    with pytest.raises(UserError, match=r"data.heldout_size=400: .*null, or set data.train_size"):
        make(heldout_size=400).setup()
    with pytest.raises(UserError, match=r"data.heldout_size=2000: .*an integer from 1 to 1990 \(the 2490 training rows"):
        make(train_size=500, heldout_size=2000).setup()


@pytest.mark.slow
def test_runs_record_and_predict_the_heldout_rows_beside_an_unchanged_dev_set(real_glue, tmp_path):
    common = ["model=tiny", "task=rte", "data.train_size=64", "trainer.max_steps=3", "logger=none",
              "speed.threads=1", f"data.glue_dir={real_glue}"]
    import maxpoolbert

    for pooling in ("cls", "mha"):
        for seed in (1, 2):
            maxpoolbert.train([*common, "data.heldout_size=50", f"pooling={pooling}", f"seed={seed}"],
                              output_dir=tmp_path / "h" / f"{pooling}_{seed}")
    maxpoolbert.train([*common, "pooling=mha", "seed=2"], output_dir=tmp_path / "plain")
    train_rows = fixed_subset(2490, 64, 0).tolist()
    indices = []
    for name in ("cls_1", "cls_2", "mha_1", "mha_2"):
        folder = tmp_path / "h" / name
        record = json.loads((folder / "results.json").read_text())
        rows = pd.read_csv(folder / "heldout_predictions.tsv", sep="\t")
        assert list(rows.columns) == ["split", "index", "label", "prediction"] and set(rows.split) == {HELDOUT}
        assert record["heldout"]["n"] == 50 == len(rows) and record["n_dev"] == {"dev": 277}
        assert record["heldout"]["metrics"]["accuracy"] == pytest.approx(np.mean(rows.label == rows.prediction))
        assert all(HELDOUT in entry for entry in record["history"])
        assert not set(rows["index"]) & set(train_rows)
        indices.append(rows["index"].tolist())
    assert indices[0] == indices[1] == indices[2] == indices[3]
    # the held-out rows are the training file's: their labels are the file's labels at those rows
    labels = pd.read_csv(real_glue / "RTE" / "train.tsv", sep="\t", quoting=3)["label"]
    held = pd.read_csv(tmp_path / "h" / "cls_1" / "heldout_predictions.tsv", sep="\t")
    assert held.label.tolist() == [int(labels[i] == "not_entailment") for i in held["index"]]
    # evaluating the held-out rows changes nothing of the run: same dev predictions as without them
    assert (tmp_path / "h" / "mha_2" / "dev_predictions.tsv").read_bytes() == \
        (tmp_path / "plain" / "dev_predictions.tsv").read_bytes()
    assert not (tmp_path / "plain" / "heldout_predictions.tsv").exists()
    # a study commits them without labels; the labels come back from the training file, and the rows
    # are checked against the record (count and recomputed metrics)
    from maxpoolbert.runs.folder import HELDOUT_ARCHIVE, RunFolder

    run = RunFolder(tmp_path / "h" / "cls_1")
    assert run.archive_predictions() and not list(run.path.glob("*.tsv"))
    assert (run.path / HELDOUT_ARCHIVE).read_text().splitlines()[0] == "split,index,prediction"
    assert run.predictions(heldout=True).equals(held)
    archive = (run.path / HELDOUT_ARCHIVE).read_text().splitlines()
    flipped = archive[1].rsplit(",", 1)[0] + "," + str(1 - int(archive[1].rsplit(",", 1)[1]))
    (run.path / HELDOUT_ARCHIVE).write_text("\n".join([archive[0], flipped, *archive[2:]]) + "\n")
    with pytest.raises(ValueError, match="heldout_predictions.csv .*accuracy recomputed from its rows"):
        run.predictions(heldout=True)
    (run.path / HELDOUT_ARCHIVE).write_text("\n".join(archive[:-1]) + "\n")
    with pytest.raises(ValueError, match="has 49 heldout rows, the run was scored on 50"):
        run.predictions(heldout=True)


# --------------------------------------------------------------------------- the report on held-out rows

def _write_run(folder, pooling: str, seed: int, dev_correct: int, held_correct: int, held: bool = True):
    from maxpoolbert.runs.folder import RunFolder
    from maxpoolbert.runs.record import RunRecord

    rng = np.random.default_rng(0)  # the same rows (and labels) for every run
    dev_labels, held_labels = rng.integers(0, 2, 60), rng.integers(0, 2, 80)
    dev_preds = np.where(np.arange(60) < dev_correct, dev_labels, 1 - dev_labels)
    held_preds = np.where(np.arange(80) < held_correct, held_labels, 1 - held_labels)
    folder.mkdir(parents=True)
    run = RunFolder(folder)
    run.write_predictions({"dev": {"index": np.arange(60), "label": dev_labels, "prediction": dev_preds}}, False)
    if held:
        run.write_predictions({HELDOUT: {"index": np.arange(1000, 1080), "label": held_labels,
                                         "prediction": held_preds}}, False, run.heldout_file)
    dev_acc = float(np.mean(dev_preds == dev_labels))
    record = RunRecord(task="rte", pooling=pooling, model="minilm_l6", seed=seed, metrics={"accuracy": dev_acc},
                       score=dev_acc, majority_score=0.3, train_size=500,
                       settings={"task.eval.dev.metrics.accuracy": "accuracy", "pooling.name": pooling},
                       heldout={"n": 80, "metrics": {}, "score": 0.0} if held else None)
    run.write_results(record)
    return dev_acc, float(np.mean(held_preds == held_labels)), held_preds == held_labels


def test_the_report_scores_every_number_on_the_heldout_rows_with_dev_beside(tmp_path):
    from maxpoolbert.report import main

    root, truth = tmp_path / "runs", {}
    for pooling, (dev_k, held_k) in {"cls": (40, 50), "maxpool_mha": (35, 60)}.items():
        for seed in (1, 2, 3):
            truth[(pooling, seed)] = _write_run(root / pooling / f"s{seed}", pooling, seed, dev_k + seed, held_k + seed)
    _write_run(root / "mha" / "s1", "mha", 1, 40, 50, held=False)  # trained without held-out rows
    assert main(["--runs", str(root), "--out", str(tmp_path / "out"), "--rows", "heldout"]) == 0
    cells = pd.read_csv(tmp_path / "out" / "cells.csv")
    for pooling in ("cls", "maxpool_mha"):
        cell = cells[cells.pooling == pooling].iloc[0]
        assert cell["mean"] == pytest.approx(np.mean([truth[(pooling, s)][1] for s in (1, 2, 3)]) * 100)
    skipped = pd.read_csv(tmp_path / "out" / "skipped.csv")
    assert skipped.path.tolist() == ["mha/s1"] and "no held-out predictions" in skipped.reason.iloc[0]
    md = (tmp_path / "out" / "results.md").read_text()
    assert "Every score is on the held-out rows of each task's training file" in md
    dev_cls = np.array([truth[("cls", s)][0] for s in (1, 2, 3)]) * 100
    assert "### The official dev set, beside" in md
    assert f"{dev_cls.mean():.1f} ± {dev_cls.std(ddof=1):.1f} (n=3)" in md
    comp = pd.read_csv(tmp_path / "out" / "comparisons.csv")
    row = comp[comp.task == "rte"].iloc[0]
    diffs = [(truth[("maxpool_mha", s)][1] - truth[("cls", s)][1]) * 100 for s in (1, 2, 3)]
    assert row.mean_diff == pytest.approx(np.mean(diffs)) and row.n_rows == 80
    # the same comparison on the official dev set, beside (its Δ from the dev scores, its rows the dev rows)
    dev = pd.read_csv(tmp_path / "out" / "comparisons_dev.csv")
    dev_row = dev[dev.task == "rte"].iloc[0]
    dev_diffs = [(truth[("maxpool_mha", s)][0] - truth[("cls", s)][0]) * 100 for s in (1, 2, 3)]
    assert dev_row.mean_diff == pytest.approx(np.mean(dev_diffs)) and dev_row.n_rows == 60
    assert "### Every comparison on both sets of rows" in md
    both = md.split("### Every comparison on both sets of rows")[1].split("###")[0]
    [line] = [ln for ln in both.splitlines() if ln.startswith("| `maxpool_mha` | `cls` | RTE |")]
    assert f"| {row.mean_diff:+.1f} |" in line and f"| {dev_row.mean_diff:+.1f} |" in line, line
    # on the odd-index held-out rows, chosen on the even ones (here: one value, chosen trivially)
    assert row.two_level_low < row.mean_diff < row.two_level_high
