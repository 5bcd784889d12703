"""End to end: ``train.py`` on every task and every pooling (tiny model, two steps)."""

import csv
import json
import os
import re

import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from omegaconf import OmegaConf
from safetensors.torch import load_file

from maxpoolbert.core import metrics as M
from maxpoolbert.launch.run import build

from . import conftest
from .conftest import ROOT, config_names, run_train, train_each

TASKS = config_names("task")
POOLINGS = config_names("pooling")
# The results.json metric keys of each task (README.md, "What a run records"): a new task YAML needs its line here.
DESIGN_KEYS = {"cola": ["mcc"], "sst2": ["accuracy"], "mrpc": ["f1", "accuracy"], "stsb": ["pearson", "spearman"],
               "qqp": ["f1", "accuracy"], "mnli": ["accuracy_m", "accuracy_mm"], "qnli": ["accuracy"],
               "rte": ["accuracy"], "wnli": ["accuracy"], "boolq": ["accuracy"], "cb": ["accuracy", "macro_f1"]}
SUPERGLUE = ROOT / "tests" / "fixtures" / "superglue"
SMOKE = ["model=tiny", "data.train_size=64", "trainer.max_steps=2", "logger=none", "trainer.enable_progress_bar=false"]


@pytest.mark.parametrize("name", TASKS)
def test_every_task_has_design_keys(name):
    assert name in DESIGN_KEYS, f"add expectations for {name}: its metric keys in DESIGN_KEYS (tests/test_train.py)"


def by_key(root, key):
    out = {}
    for path in root.rglob("results.json"):
        r = json.loads(path.read_text())
        out[r[key]] = (r, path.parent)
    return out


@pytest.fixture(scope="module")
def all_tasks(full_glue, tmp_path_factory, cache_dir):
    tmp = tmp_path_factory.mktemp("tasks")
    smoke = [o for o in SMOKE if not o.startswith("data.train_size=")] + ["data.train_size=24"]  # our fixtures' rows
    train_each(tmp / "sweep", "task", TASKS, *smoke, "pooling=maxpool_mha", f"data.glue_dir={full_glue}",
               f"data.superglue_dir={SUPERGLUE}", f"data.cache_dir={cache_dir}")
    return by_key(tmp / "sweep", "task"), {"glue": str(full_glue), "superglue": str(SUPERGLUE)}


@pytest.mark.slow
@pytest.mark.parametrize("name", TASKS)
def test_every_task_runs_and_reports_design_keys(all_tasks, name):
    runs, folders = all_tasks
    r, run_dir = runs[name]
    assert name in DESIGN_KEYS, f"add expectations for {name} to DESIGN_KEYS"
    assert list(r["metrics"]) == DESIGN_KEYS[name]
    assert r["score"] == pytest.approx(np.mean(list(r["metrics"].values())))
    assert r["params"]["pooling"] == 4 * 32 * 32 + 4 * 32 and r["steps"] == 2
    assert r["n_train"] == 24
    for key, value in r["metrics"].items():
        assert -1 <= value <= 1 if key in ("mcc", "pearson", "spearman") else 0 <= value <= 1

    # every dev row, in file order, with the file's own labels; metrics recomputable from it
    with initialize_config_dir(str(ROOT / "configs"), version_base="1.3"):
        task = instantiate(compose("config", overrides=[f"task={name}"]).task, _convert_="all")
    rows = list(csv.DictReader((run_dir / "dev_predictions.tsv").open(), delimiter="\t"))
    assert list(rows[0]) == ["split", "index", "label", "prediction"]
    recomputed = {}
    for split, spec in task.eval.items():
        cols, _ = task.read_file(task.folder(folders) / spec.file, spec)
        mine = [row for row in rows if row["split"] == split]
        assert [int(row["index"]) for row in mine] == list(range(len(cols["label"])))
        parse = float if task.is_regression else int
        assert np.allclose([parse(row["label"]) for row in mine], cols["label"])
        preds = [parse(row["prediction"]) for row in mine]
        recomputed.update(M.compute(spec.metrics, preds, cols["label"]))
    assert len(rows) == sum(r["n_dev"].values())
    assert recomputed == pytest.approx(r["metrics"], abs=1e-9)


@pytest.fixture(scope="module")
def all_poolings(real_glue, tmp_path_factory, cache_dir):
    tmp = tmp_path_factory.mktemp("poolings")
    train_each(tmp / "sweep", "pooling", POOLINGS, "task=rte", *SMOKE, "save_model=true", f"data.cache_dir={cache_dir}")
    return by_key(tmp / "sweep", "pooling")


@pytest.mark.slow
@pytest.mark.parametrize("name", POOLINGS)
def test_every_pooling_trains_and_its_parameters_move(all_poolings, name):
    r, run_dir = all_poolings[name]
    assert r["task"] == "rte" and r["pooling"] == name and r["steps"] == 2
    cfg = OmegaConf.load(run_dir / ".hydra" / "config.yaml")
    _, _, initial = build(cfg)  # same seed: the weights the run started from
    trained = load_file(str(run_dir / "model.safetensors"))
    assert r["params"]["pooling"] == sum(p.numel() for p in initial.pooling.parameters())
    assert r["params"]["total"] == sum(v.numel() for v in trained.values())
    for pname, p in initial.pooling.named_parameters():  # gradients reached every new parameter
        assert not torch.equal(trained[f"pooling.{pname}"], p.detach()), pname
    assert not torch.equal(trained["classifier.weight"], initial.classifier.weight.detach())


def test_progress_lines_in_the_log_where_no_progress_bar_shows(real_glue, tmp_path, cache_dir):
    """Output to a pipe, not a terminal: a progress line every ``progress_every_s`` seconds (the
    first after the first step) with the step count, samples/s and time left, and the dev rows
    done while evaluating; in the run's log file too."""
    import maxpoolbert

    maxpoolbert.train(["model=tiny", "data.train_size=64", "trainer.max_steps=3", "logger=none",
                       "progress_every_s=0.01", f"data.cache_dir={cache_dir}"], output_dir=tmp_path / "run")
    text = (tmp_path / "run" / "train.log").read_text()  # the console's lines, in the run's log file
    training = [line.split(" - ", 1)[1] for line in text.splitlines() if "[maxpoolbert][INFO] - training: " in line]
    assert re.fullmatch(r"training: epoch 1, step 1/3 \(33%\), [0-9.]+ samples/s, about \d+ s of training left",
                        training[0]), training
    steps = [int(re.search(r"step (\d)/3", line).group(1)) for line in training]
    assert steps == sorted(steps) and steps[-1] == 3
    assert re.search(r"\[maxpoolbert\]\[INFO\] - evaluating: \d+/277 dev rows at step 3", text)


@pytest.mark.slow
def test_a_relative_glue_dir_works_from_another_folder(real_glue, tmp_path, monkeypatch):
    """GLUE_DIR=../shared/data/glue, given relative to the folder pytest starts in (as `make test`
    may pass it): conftest makes it absolute at import, so train.py started by the tests from any
    folder finds the data (here: from this process, moved to that folder)."""
    import maxpoolbert

    monkeypatch.setenv("GLUE_DIR", os.path.relpath(real_glue))
    assert not os.path.isabs(os.environ["GLUE_DIR"])
    conftest.absolute_path_variables()  # what conftest did at import, with this relative value
    assert os.environ["GLUE_DIR"] == os.path.abspath(real_glue)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    maxpoolbert.train([*[o for o in SMOKE if not o.startswith(("data.train_size=", "trainer.max_steps="))],
                       "data.train_size=16", "trainer.max_steps=1", "data.cache_dir=null", "save_model=false"],
                      output_dir=tmp_path / "run")
    assert json.loads((tmp_path / "run" / "results.json").read_text())["n_train"] == 16


@pytest.mark.slow
def test_a_run_shows_our_lines_and_real_warnings_and_one_epoch_numbering(real_glue, tmp_path, cache_dir):
    """No advertisement (Lightning's "💡 Tip"), no W&B "anonymous" notice, no deprecation raised
    inside the libraries; a real warning (too few batches for the logging interval) stays; the
    progress bar and the progress lines count epochs alike, from 1 (Lightning's bar: from 0). A real
    process: what a user's console shows, with the process's own warning filters."""
    proc = run_train("model=tiny", "data.train_size=64", "trainer.max_epochs=2", "logger=wandb", "save_model=false",
                     "progress_every_s=0.001", "speed.threads=1", f"data.cache_dir={cache_dir}",
                     f"hydra.run.dir={tmp_path}/run", cwd=tmp_path, env={"WANDB_MODE": "offline"})
    text = proc.stdout + proc.stderr
    for notice in ("💡 Tip", "litlogger", "anonymous setting", "deprecated"):
        assert notice not in text, text[-3000:]
    assert "smaller than the logging interval" in text  # a real warning is kept
    assert re.search(r"training: epoch 1/2, step 1/4", text) and re.search(r"training: epoch 2/2, step 4/4", text), text
    assert "Epoch 2/2" in text and not re.search(r"Epoch [01]/1\b", text), text[-3000:]


def test_a_run_that_diverges_is_a_failed_run(real_glue, tmp_path, cache_dir):
    """optimizer.lr=1e30: the loss is NaN from step 2 and the weights are non-finite; the run used to
    finish with constant predictions and a record scoring the majority class. Now it stops: one
    line (a UserError; the command line's exit 2), failed.json with the reason, no results.json (the
    report lists it failed)."""
    import maxpoolbert
    from maxpoolbert.core.errors import UserError
    from maxpoolbert.report.collect import collect_runs
    from maxpoolbert.runs.folder import RunFolder

    with pytest.raises(UserError) as refused:
        maxpoolbert.train([*SMOKE, "trainer.max_steps=4", "data.train_size=32", "optimizer.lr=1e30",
                           "speed.threads=1", f"data.cache_dir={cache_dir}"], output_dir=tmp_path / "runs" / "run")
    line = f"error: {refused.value}"
    assert "\n" not in line and line.startswith("error: optimizer.lr=1e+30: training diverged: the training loss became non-finite "
                           "at step "), line
    folder = RunFolder(tmp_path / "runs" / "run")
    assert not folder.results.exists()
    assert "training diverged" in folder.failure()
    assert line in (folder.path / "train.log").read_text()  # the run's log says why too
    assert json.loads(folder.failed_file.read_text())["user_error"] is True
    runs, skipped = collect_runs(tmp_path / "runs")
    assert runs.empty and skipped[0]["reason"].startswith("failed: UserError: optimizer.lr=1e+30: training diverged")


def test_the_record_keeps_a_fingerprint_of_the_data_it_was_scored_on(real_glue, tmp_path, cache_dir):
    """results.json's dev_data: per split, the rows and a hash of the gold labels (STS-B's float32
    labels hash as the file's); the archived predictions read back against it."""
    import maxpoolbert
    from maxpoolbert.runs.folder import RunFolder
    from maxpoolbert.runs.record import fingerprint

    maxpoolbert.train([*SMOKE, "task=stsb", "data.train_size=16", "trainer.max_steps=1", "save_model=false",
                       "speed.threads=1", f"data.cache_dir={cache_dir}"], output_dir=tmp_path / "run")
    folder = RunFolder(tmp_path / "run")
    labels = [float(line.rsplit("\t", 1)[1]) for line in (real_glue / "STS-B" / "dev.tsv").read_text().splitlines()[1:]]
    assert json.loads(folder.results.read_text())["dev_data"] == {"dev": fingerprint(labels)}
    assert folder.record().dev_data["dev"]["rows"] == 1500
    assert folder.archive_predictions() and len(folder.predictions()) == 1500  # labels read back: the same hash


def test_non_finite_weights_stop_the_run_at_an_evaluation():
    """The check behind a diverged run, at an evaluation: any non-finite weight (or loss) is one line
    naming optimizer.lr; finite ones pass."""
    from types import SimpleNamespace

    from maxpoolbert.core.errors import UserError
    from maxpoolbert.training.module import GlueModule
    from maxpoolbert.training.optim import from_config

    with initialize_config_dir(str(ROOT / "configs"), version_base="1.3"):
        cfg = compose("config", overrides=["model=tiny", "pooling=cls", "optimizer.lr=0.5"])
    task, _, model = build(cfg)
    module = GlueModule(model, task, from_config(cfg))
    module._trainer = SimpleNamespace(world_size=1, global_step=7)
    module.check_weights()
    module.check_finite(torch.tensor(0.7), "the training loss")
    with torch.no_grad():
        next(model.parameters())[0, 0] = float("inf")
    with pytest.raises(UserError) as err:
        module.check_weights()
    assert str(err.value) == ("optimizer.lr=0.5: training diverged: the weights became non-finite at step 7; "
                              "a smaller learning rate, or gradient clipping (trainer.gradient_clip_val=1.0)")
    with pytest.raises(UserError, match="the training loss became non-finite at step 7"):
        module.check_finite(torch.tensor(float("nan")), "the training loss")
