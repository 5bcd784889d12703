"""``speed.compile=true``: batch lengths rounded up to multiples of 16, so a statically compiled run
compiles one graph per bucket instead of one per batch length; results within float noise of the
uncompiled run. On the CPU with torch.compile's ``eager`` backend: Dynamo traces and guards exactly
as with inductor (the graphs and recompilations counted here), without generating code."""

import json

import numpy as np
import pandas as pd
import pytest

from maxpoolbert.runs.folder import PREDICTIONS
from maxpoolbert.runs.record import RESULTS
from maxpoolbert.training.data import Collator, Encoded

from .conftest import run_train

COMMON = ["model=tiny", "logger=none", "save_model=false", "speed.threads=1", "trainer.enable_progress_bar=false",
          "seed=3"]
STATIC = ["speed.compile=true", "speed.compile_backend=eager", "speed.compile_dynamic=false"]


def test_collator_rounds_batch_lengths_up_to_the_bucket():
    data = Encoded(input_ids=[[1] * n for n in (5, 17, 33)], token_type_ids=[[0] * n for n in (5, 17, 33)],
                   labels=[0, 1, 0], idx=[0, 1, 2], n_tokens=[5, 17, 33])
    for rows, width in (([0], 16), ([0, 1], 32), ([2], 48)):
        batch = Collator(data, pad_id=0, regression=False, multiple=16)(rows)
        assert batch["input_ids"].shape == (len(rows), width)
        assert batch["attention_mask"].sum(1).tolist() == [data.n_tokens[r] for r in rows]  # pads are masked
    assert Collator(data, pad_id=0, regression=False)([0, 1])["input_ids"].shape == (2, 17)


@pytest.fixture(scope="module")
def runs(real_glue, tmp_path_factory, cache_dir):
    root = tmp_path_factory.mktemp("compile")
    rte = ["task=rte", "data.train_size=256", "trainer.max_epochs=1", f"data.cache_dir={cache_dir}"]
    run_train(*COMMON, *rte, *STATIC, f"hydra.run.dir={root}/buckets", cwd=root)  # the default bucket: 16
    run_train(*COMMON, *rte, *STATIC, "data.pad_to_multiple_of=1", f"hydra.run.dir={root}/lengths", cwd=root)
    stsb = ["task=stsb", "data.train_size=64", "trainer.max_steps=4", f"data.cache_dir={cache_dir}"]
    run_train(*COMMON, *stsb, f"hydra.run.dir={root}/stsb_eager", cwd=root)
    run_train(*COMMON, *stsb, "speed.compile=true", "speed.compile_backend=eager", f"hydra.run.dir={root}/stsb_compiled",
              cwd=root)
    return root


def _record(folder):
    return json.loads((folder / RESULTS).read_text())


@pytest.mark.slow
def test_buckets_bound_the_compiled_graphs(runs):
    buckets, lengths = _record(runs / "buckets"), _record(runs / "lengths")
    assert buckets["compiled"]["graphs"] < lengths["compiled"]["graphs"]
    # at most one graph per bucket (128 / 16 = 8) for each batch size a run feeds (train 32 and its
    # last partial batch, dev 128 and its last partial one), and a few around graph breaks
    assert buckets["compiled"]["graphs"] <= 8 * 4 + 4
    assert _record(runs / "stsb_eager")["compiled"] is None


@pytest.mark.slow
def test_compiled_predictions_are_the_uncompiled_ones_within_float_noise(runs):
    eager = pd.read_csv(runs / "stsb_eager" / PREDICTIONS, sep="\t")
    compiled = pd.read_csv(runs / "stsb_compiled" / PREDICTIONS, sep="\t")
    assert (eager["index"] == compiled["index"]).all()
    np.testing.assert_allclose(compiled["prediction"], eager["prediction"], atol=1e-4)
