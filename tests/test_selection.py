"""Per-evaluation history, best-or-last selection, early stopping, several evaluations an epoch."""

import json

import pandas as pd
import pytest
from scipy import stats

import maxpoolbert

from .conftest import run_train

COMMON = ["model=tiny", "task=stsb", "data.train_size=64", "optimizer.lr=1e-3", "logger=none",
          "trainer.enable_progress_bar=false", "save_model=false"]


def recomputed_score(run_dir) -> float:
    rows = pd.read_csv(run_dir / "dev_predictions.tsv", sep="\t")
    return (stats.pearsonr(rows.prediction, rows.label)[0] + stats.spearmanr(rows.prediction, rows.label)[0]) / 2


@pytest.fixture(scope="module")
def runs(real_glue, tmp_path_factory, cache_dir):
    tmp = tmp_path_factory.mktemp("selection")
    args = [*COMMON, "trainer.max_epochs=3", "eval.per_epoch=2", f"data.cache_dir={cache_dir}"]
    for select in ("last", "best"):
        maxpoolbert.train([*args, f"eval.select={select}"], output_dir=tmp / select)
    maxpoolbert.train([*COMMON, "trainer.max_epochs=3", f"data.cache_dir={cache_dir}"], output_dir=tmp / "default")
    return {name: (tmp / name, json.loads((tmp / name / "results.json").read_text()))
            for name in ("last", "best", "default")}


@pytest.mark.slow
def test_history_has_one_entry_per_evaluation(runs):
    _, r = runs["last"]
    assert [(h["epoch"], h["step"]) for h in r["history"]] == [(0, 1), (0, 2), (1, 3), (1, 4), (2, 5), (2, 6)]
    for h in r["history"]:
        assert h["score"] == pytest.approx((h["metrics"]["pearson"] + h["metrics"]["spearman"]) / 2)
    _, default = runs["default"]
    assert [(h["epoch"], h["step"]) for h in default["history"]] == [(0, 2), (1, 4), (2, 6)]


@pytest.mark.slow
@pytest.mark.parametrize("select", ["last", "best"])
def test_the_selected_evaluation_reports_the_run(runs, select):
    run_dir, r = runs[select]
    scores = [h["score"] for h in r["history"]]
    index = len(scores) - 1 if select == "last" else scores.index(max(scores))
    assert r["selected"] == {"select": select, "index": index, "epoch": r["history"][index]["epoch"],
                             "step": r["history"][index]["step"]}
    assert r["metrics"] == r["history"][index]["metrics"] and r["score"] == r["history"][index]["score"]
    assert recomputed_score(run_dir) == pytest.approx(r["score"], abs=1e-6)  # the predictions kept are that evaluation's


@pytest.mark.slow
def test_best_and_last_differ_here_and_last_is_the_default(runs):
    assert runs["best"][1]["selected"]["index"] != runs["last"][1]["selected"]["index"]  # the test can tell them apart
    _, default = runs["default"]
    assert default["selected"]["select"] == "last"
    assert default["metrics"] == default["history"][-1]["metrics"]


@pytest.mark.slow
def test_early_stopping_counts_patience_in_evaluations(real_glue, tmp_path, cache_dir):
    maxpoolbert.train([*COMMON, "trainer.max_epochs=6", "eval.early_stopping=1", "eval.select=best",
                       f"data.cache_dir={cache_dir}"], output_dir=tmp_path / "run")
    r = json.loads((tmp_path / "run" / "results.json").read_text())
    scores = [h["score"] for h in r["history"]]
    first_drop = next(i for i in range(1, len(scores)) if scores[i] <= max(scores[:i]))
    assert r["stopped_early"] and len(scores) == first_drop + 1 < 6  # stopped after one evaluation without gain
    assert r["score"] == max(scores)


@pytest.mark.slow
def test_optuna_search_names_its_best_trial(real_glue, tmp_path, cache_dir):
    """hparams_search=optuna maximises the dev score; best_trial.yaml names the trial Optuna
    reports as best (same parameters, same score) and its folder. A real sweep (Hydra's Optuna sweeper)."""
    import yaml

    run_train("hparams_search=optuna", "model=tiny", "task=stsb", "data.train_size=64", "trainer.max_steps=3",
              "logger=none", "trainer.enable_progress_bar=false", "hydra.sweeper.n_trials=3",
              f"data.cache_dir={cache_dir}", f"hydra.sweep.dir={tmp_path}/search", cwd=tmp_path)
    optuna = yaml.safe_load((tmp_path / "search" / "optimization_results.yaml").read_text())
    best = yaml.safe_load((tmp_path / "search" / "best_trial.yaml").read_text())
    scores = {p.parent: json.loads(p.read_text())["score"] for p in (tmp_path / "search").rglob("results.json")}
    assert len(scores) == 3 and best["score"] == max(scores.values()) == optuna["best_value"]
    for key, value in optuna["best_params"].items():
        assert f"{key}={value}" in best["overrides"]
    hydra = yaml.safe_load(open(f"{best['run_dir']}/.hydra/hydra.yaml"))["hydra"]
    assert hydra["job"]["num"] == best["number"]
