"""Data-parallel training with the semantics of one process (CPU, gloo)."""

import json
import os

import numpy as np
import pandas as pd
import pytest

from maxpoolbert.training.data import LengthGroupedBatchSampler, ShardedBatchSampler, _sort_batches

from .conftest import run_train


@pytest.mark.parametrize("world", [2, 3, 5])
def test_sharded_batches_are_the_global_batches_split(world):
    lengths = np.random.default_rng(0).integers(5, 128, 203)  # 203 = 6 x 32 + 11: a short last batch
    for epoch in (0, 1):
        whole = LengthGroupedBatchSampler(lengths, 32, seed=3)
        whole.set_epoch(epoch)
        shards = [ShardedBatchSampler(LengthGroupedBatchSampler(lengths, 32, seed=3), r, world) for r in range(world)]
        for s in shards:
            s.set_epoch(epoch)
        assert all(len(s) == len(whole) for s in shards)
        for batch, *parts in zip(whole, *shards, strict=True):
            real = [i for part in parts for i, w in part if w > 0]
            assert real == batch  # every row of the global batch once, in order, nothing else
            assert sum(w for part in parts for _, w in part) == pytest.approx(world)  # mean over the batch
            assert all(part for part in parts)  # every process takes every step


def test_a_batch_smaller_than_the_world_gives_weightless_rows():
    lengths = np.arange(33)  # batches of 32 and 1
    parts = [list(ShardedBatchSampler(LengthGroupedBatchSampler(lengths, 32, seed=0), r, 2))[-1] for r in range(2)]
    small = sorted(parts, key=len)
    assert [w for _, w in small[0] + small[1]] == [2.0, 0.0] or [w for _, w in small[1] + small[0]] == [2.0, 0.0]


def test_evaluation_rows_are_split_without_duplicates():
    lengths = np.random.default_rng(1).integers(5, 128, 277)
    rows = [i for r in range(3) for b in _sort_batches(lengths, 16, r, 3) for i in b]
    assert sorted(rows) == list(range(277))


@pytest.mark.slow
def test_two_processes_train_like_one(real_glue, tmp_path, cache_dir):
    """STS-B with dropout off: 2 processes (gloo) and 1 process end with the same predictions up
    to float noise; the same rows are trained on; only the first process writes the folder."""
    common = ["task=stsb", "model=tiny", "data.train_size=100", "trainer.max_epochs=2", "optimizer.lr=1e-3",
              "head.dropout=0", "+model.encoder.hidden_dropout_prob=0", "+model.encoder.attention_probs_dropout_prob=0",
              "logger=none", "save_model=false", "trainer.enable_progress_bar=false", f"data.cache_dir={cache_dir}"]
    run_train(*common, f"hydra.run.dir={tmp_path}/one", cwd=tmp_path)
    run_train(*common, "trainer=ddp", f"hydra.run.dir={tmp_path}/two", cwd=tmp_path)
    one, two = (json.loads((tmp_path / d / "results.json").read_text()) for d in ("one", "two"))
    assert (one["world_size"], two["world_size"]) == (1, 2)
    assert one["train_samples"] == two["train_samples"] == 2 * 100
    assert one["steps"] == two["steps"] == 2 * 4
    a, b = (pd.read_csv(tmp_path / d / "dev_predictions.tsv", sep="\t") for d in ("one", "two"))
    assert len(a) == len(b) == 1500 and (a["index"] == b["index"]).all() and (a["label"] == b["label"]).all()
    diff = float((a["prediction"] - b["prediction"]).abs().max())
    print(f"max |prediction difference| 1 vs 2 processes: {diff:.3g}")
    assert diff < 1e-4
    assert a["prediction"].std() > 1e-3  # the model learned something to compare
    assert [e["outcome"] for e in map(json.loads, (tmp_path / "two" / "launches.jsonl").read_text().splitlines())] \
        == ["finished"]


@pytest.mark.slow
def test_more_processes_than_cores_is_one_line(real_glue, tmp_path):
    proc = run_train("model=tiny", "logger=none", f"trainer.devices={(os.cpu_count() or 1) + 1}", "trainer.strategy=ddp",
                     f"hydra.run.dir={tmp_path}/run", cwd=tmp_path, check=False)
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    assert f"error: trainer.devices={(os.cpu_count() or 1) + 1}: this machine has" in proc.stderr


@pytest.mark.slow
def test_data_parallel_in_a_multirun_is_refused(real_glue, tmp_path):
    proc = run_train("-m", "seed=1", "model=tiny", "logger=none", "trainer=ddp", f"hydra.sweep.dir={tmp_path}/sweep",
                     cwd=tmp_path, check=False)
    assert proc.returncode != 0
    assert "a data-parallel run is a single run" in proc.stdout + proc.stderr
