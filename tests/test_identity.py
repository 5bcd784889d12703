"""A run's identity is its whole config: runs that differ in any setting that changes what they
compute are never averaged together nor taken for duplicate seeds of each other; runs that differ
only in settings that do not (logger, save_model, progress bar ...) are the same experiment."""

import json
import shutil

import pandas as pd
import pytest
from omegaconf import OmegaConf

from maxpoolbert.report import main as report
from maxpoolbert.runs import identity
from maxpoolbert.runs.folder import CONFIG, RunFolder
from maxpoolbert.runs.identity import differences, neutral_keys
from maxpoolbert.runs.record import RESULTS

from .conftest import ROOT, train_each

BASE = ["model=tiny", "task=rte", "pooling=maxpool_mha", "data.train_size=32", "trainer.max_steps=2",
        "logger=none", "save_model=false", "trainer.enable_progress_bar=false"]
# Settings the old hand-written allowlist missed; each changes what a run computes.
VARIANTS = {
    "optimizer.layer_decay": "0.5",
    "model.reinit_layers": "1",
    "trainer.gradient_clip_val": "0.5",
    "data.pad_to_max_length": "true",
    "pooling.module.num_heads": "2",  # a pooling option
}


@pytest.fixture(scope="module")
def runs(real_glue, tmp_path_factory, cache_dir):
    """Seeds 1 and 2 of the base settings, of each variant, and of the base again with settings
    that change nothing (another logger, weights saved): each in its own folder, in this process."""
    root = tmp_path_factory.mktemp("identity")
    common = [*BASE, f"data.cache_dir={cache_dir}"]
    train_each(root / "base", "seed", (1, 2), *common)
    train_each(root / "again", "seed", (1, 2), *common, "logger=csv", "save_model=true")
    for key, value in VARIANTS.items():
        train_each(root / key, "seed", (1, 2), *common, f"{key}={value}")
    return root


def _read(path):
    return json.loads((path / RESULTS).read_text())


def _only(root, *names):
    """A runs folder holding just the named sweeps (symlinked)."""
    folder = root / ("only-" + "-".join(names))
    if not folder.exists():
        folder.mkdir()
        for name in names:
            (folder / name).symlink_to(root / name)
    return folder


def _rte_scores(out):
    """The main table's RTE score rows (every run trained on the same 32 rows: one size, the main table)."""
    return pd.read_csv(out / "results.csv").query("task == 'rte' and metric == 'score'")


@pytest.mark.slow
@pytest.mark.parametrize("key", VARIANTS)
def test_a_setting_outside_the_old_allowlist_changes_the_identity(runs, key):
    base = [_read(p.parent) for p in sorted((runs / "base").rglob(RESULTS))]
    variant = [_read(p.parent) for p in sorted((runs / key).rglob(RESULTS))]
    assert len(base) == len(variant) == 2
    assert base[0]["settings_id"] == base[1]["settings_id"]  # the seed is not part of the identity
    assert variant[0]["settings_id"] != base[0]["settings_id"]
    differing = [k for k, _, _ in differences(base[0]["settings"], variant[0]["settings"])]
    assert differing == [key]


@pytest.mark.slow
@pytest.mark.parametrize("key", VARIANTS)
def test_the_report_refuses_the_mix_naming_the_key_or_splits_it(runs, key, tmp_path, capsys):
    folder = _only(runs, "base", key)
    assert report(["--runs", str(folder), "--out", str(tmp_path / "refused")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"{key} (" in err[0] and "pooling=maxpool_mha" in err[0]
    assert not (tmp_path / "refused" / "results.md").exists()

    assert report(["--runs", str(folder), "--out", str(tmp_path / "split"), "--split-settings"]) == 0
    rows = _rte_scores(tmp_path / "split")
    assert sorted(rows["n"]) == [2, 2] and all(f"[{key}=" in p for p in rows["pooling"])
    skipped = pd.read_csv(tmp_path / "split" / "skipped.csv")
    assert not skipped["reason"].str.contains("duplicate").any()


@pytest.mark.slow
def test_settings_that_change_nothing_are_the_same_experiment(runs, tmp_path):
    base = _read(next((runs / "base").rglob(RESULTS)).parent)
    again = _read(next((runs / "again").rglob(RESULTS)).parent)
    assert again["settings_id"] == base["settings_id"]
    folder = _only(runs, "base", "again")
    assert report(["--runs", str(folder), "--out", str(tmp_path / "out")]) == 0
    rows = _rte_scores(tmp_path / "out")
    assert rows["n"].tolist() == [2]  # one cell, seeds 1 and 2
    skipped = pd.read_csv(tmp_path / "out" / "skipped.csv")
    assert skipped["reason"].str.startswith("duplicate seed").sum() == 2


# ---------------------------------------------------------------------------- identity and code layout
COMMITTED_RUNS = ROOT / "docs" / "results" / "runs"
committed = pytest.mark.skipif(not COMMITTED_RUNS.is_dir(), reason="no committed study in docs/results/runs")


def _committed_runs():
    return sorted(p.parent for p in COMMITTED_RUNS.rglob(RESULTS))


def _with_targets(node, rename):
    """A plain config with every ``_target_`` renamed by ``rename``."""
    if isinstance(node, dict):
        return {k: rename(v) if k == "_target_" else _with_targets(v, rename) for k, v in node.items()}
    if isinstance(node, list):
        return [_with_targets(v, rename) for v in node]
    return node


@committed
def test_every_committed_runs_settings_id_is_reproduced_from_its_stored_config():
    runs = _committed_runs()
    assert len(runs) == 160
    for run in runs:
        stored = _read(run)
        cfg = OmegaConf.load(run / CONFIG)
        assert identity.settings(cfg) == stored["settings"], run
        assert identity.settings_id(identity.settings(cfg)) == stored["settings_id"], run


@committed
def test_moving_the_code_changes_no_settings_id(tmp_path, monkeypatch):
    """A simulated restructure: the pooling module's source moved into a sub-package (a copy at
    ``mpb_moved/model/pooling.py``, importable), every project ``_target_`` of the committed runs'
    configs pointing at its new path, each move declared in ``targets.MOVED``: every stored
    settings_id is reproduced from the moved configs, and a relaunch of a stored run with the moved
    config finds the same settings. Without the declarations the identities would change."""
    from hydra.utils import get_class

    from maxpoolbert.config import targets

    package = tmp_path / "mpb_moved" / "model"
    package.mkdir(parents=True)
    for folder in (package.parent, package):
        (folder / "__init__.py").write_text("")
    shutil.copy(ROOT / "maxpoolbert" / "model" / "pooling.py", package / "pooling.py")
    monkeypatch.syspath_prepend(str(tmp_path))

    def moved(path):  # maxpoolbert.pooling.MHAPooling -> mpb_moved.model.pooling.MHAPooling
        module, _, name = path.rpartition(".")
        return f"mpb_moved.model.{module.rpartition('.')[2]}.{name}" if module.startswith("maxpoolbert.") else path

    runs = _committed_runs()
    configs = [OmegaConf.to_container(OmegaConf.load(run / CONFIG), resolve=False) for run in runs]
    moved_configs = [OmegaConf.create(_with_targets(c, moved)) for c in configs]
    names = {v for c in configs for k, v in identity._flat(c).items() if k.endswith("_target_")}
    assert "maxpoolbert.pooling.MHAPooling" in names and moved("maxpoolbert.pooling.MHAPooling") != \
        "maxpoolbert.pooling.MHAPooling"  # the committed configs: the names before issue 29's move
    assert get_class(moved("maxpoolbert.pooling.MHAPooling")).__module__ == "mpb_moved.model.pooling"  # it moved

    monkeypatch.setattr(targets, "MOVED", {})  # the simulated move only (not the real one of issue 29)
    before = [identity.settings_id(identity.settings(c)) for c in moved_configs]
    for name in names:
        if moved(name) != name:
            monkeypatch.setitem(targets.MOVED, moved(name), name)
    assert targets.current("maxpoolbert.pooling.CLSPooling") == "mpb_moved.model.pooling.CLSPooling"
    hydra = OmegaConf.create({"mode": "RunMode.RUN", "job": {"config": {"override_dirname": {
        "exclude_keys": list(neutral_keys())}}}})
    for run, cfg, was in zip(runs, moved_configs, before, strict=True):
        stored = _read(run)
        assert identity.settings(cfg) == stored["settings"], run  # the canonical names, as stored
        assert identity.settings_id(identity.settings(cfg)) == stored["settings_id"] != was, run
        assert RunFolder(run).stored_differences(cfg, hydra) == []  # its relaunch: same


def test_every_canonical_target_is_still_found():
    """Every ``_target_`` a committed run's identity holds names a class that exists: at its own
    path, or (moved) at the path :data:`maxpoolbert.config.targets.MOVED` gives. A class moved without its
    line there fails here (and every folder of its runs would refuse its relaunch)."""
    from maxpoolbert.config import targets

    names = {v for run in _committed_runs() for k, v in _read(run)["settings"].items() if k.endswith("_target_")}
    assert len(names) >= 6
    lost = sorted(n for n in names if targets.current(n) not in targets.allowed())
    assert not lost, f"moved without a line in maxpoolbert/config/targets.py MOVED: {lost}"


def test_a_run_folder_of_the_flat_layout_still_builds(real_glue, cache_dir, tmp_path, monkeypatch):
    """A run folder written before issue 29 moved the modules into the layers' sub-packages stores the
    old ``_target_`` paths (``maxpoolbert.pooling.MaxPooling``, ``maxpoolbert.encoders.random_bert``,
    ``maxpoolbert.tasks.Task`` ...), which no module has any more. Such a folder keeps its identity;
    ``predict`` (and ``export``, through the same loading) builds from it the same task and classifier:
    its weights load and it gives the outputs of the one built from today's paths; the report reads
    its task; a relaunch with today's configs finds its own settings and skips it."""
    import torch

    import maxpoolbert
    from maxpoolbert import predict
    from maxpoolbert.config import targets
    from maxpoolbert.tasks.task import from_config

    monkeypatch.setenv("MAXPOOLBERT_CACHE", str(cache_dir))
    overrides = ["task=rte", "model=tiny", "pooling=max", "data.train_size=32", "trainer.max_steps=2", "logger=none",
                 "speed.threads=1"]
    run = tmp_path / "run"
    record = maxpoolbert.train(overrides, output_dir=run)
    today = OmegaConf.load(run / CONFIG)
    flat = OmegaConf.create(_with_targets(OmegaConf.to_container(today, resolve=False),
                                          lambda name: targets.canonical(name)))  # as the flat layout wrote it
    names = {v for k, v in identity._flat(OmegaConf.to_container(flat, resolve=False)).items() if k.endswith("_target_")}
    assert {"maxpoolbert.pooling.MaxPooling", "maxpoolbert.encoders.random_bert", "maxpoolbert.encoders.tokenizer",
            "maxpoolbert.tasks.Task", "maxpoolbert.optim.adamw"} <= names
    (run / CONFIG).write_text(OmegaConf.to_yaml(flat))

    assert identity.settings_id(identity.settings(flat)) == record.settings_id
    cfg = predict.load_run(run)  # checked (the old names are allowed) and at today's paths
    task, _, model = predict.load_trained(run, cfg)
    _, _, want = predict.load_trained(run, today)
    assert type(model.pooling).__module__ == "maxpoolbert.model.pooling"
    ids = torch.tensor([[101, 7592, 2088, 102, 2129, 102]])
    with torch.no_grad():
        assert torch.equal(model(ids, torch.ones_like(ids), torch.zeros_like(ids)),
                           want(ids, torch.ones_like(ids), torch.zeros_like(ids)))
    assert from_config(flat.task) == task == from_config(today.task)
    assert RunFolder(run).read()[0].settings_id == record.settings_id  # its record, read with the old config
    again = maxpoolbert.train(overrides, output_dir=run)  # a relaunch: finished, same settings, skipped
    assert again.settings_id == record.settings_id and again.score == record.score
