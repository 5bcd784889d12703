"""Held-out rows (issue 28, ``data.heldout_size``): rows of the task's training file that no training
subset uses, the same for every seed, pooling and training size, predicted at every evaluation beside
the dev set and recorded (``results.json`` ``heldout``, ``heldout_predictions.tsv``); the dev
predictions are those of the same run without them."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from maxpoolbert import encoders
from maxpoolbert.data import HELDOUT, TaskDataModule, fixed_subset, heldout_subset
from maxpoolbert.errors import UserError

from .conftest import run_train
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


def test_runs_record_and_predict_the_heldout_rows_beside_an_unchanged_dev_set(real_glue, tmp_path):
    common = ["model=tiny", "task=rte", "data.train_size=64", "trainer.max_steps=3", "logger=none",
              "speed.threads=1", f"data.glue_dir={real_glue}"]
    run_train("-m", *common, "data.heldout_size=50", "pooling=cls,mha", "seed=1,2", f"hydra.sweep.dir={tmp_path}/h",
              "hydra.sweep.subdir=${pooling.name}_${seed}", cwd=tmp_path)
    run_train(*common, "pooling=mha", "seed=2", f"hydra.run.dir={tmp_path}/plain", cwd=tmp_path)
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
