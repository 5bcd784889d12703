"""A run's identity is its whole config: runs that differ in any setting that changes what they
compute are never averaged together nor taken for duplicate seeds of each other; runs that differ
only in settings that do not (logger, save_model, progress bar ...) are the same experiment."""

import json

import pandas as pd
import pytest

from maxpoolbert import rundir
from maxpoolbert.report import main as report

from .conftest import run_train

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
    that change nothing (another logger, weights saved): each in its own sweep folder."""
    root = tmp_path_factory.mktemp("identity")
    sweep = ["seed=1,2", f"data.cache_dir={cache_dir}"]
    run_train("-m", *BASE, *sweep, f"hydra.sweep.dir={root}/base", cwd=root)
    run_train("-m", *BASE, *sweep, "logger=csv", "save_model=true", f"hydra.sweep.dir={root}/again", cwd=root)
    for key, value in VARIANTS.items():
        run_train("-m", *BASE, *sweep, f"{key}={value}", f"hydra.sweep.dir={root}/{key}", cwd=root)
    return root


def _read(path):
    return json.loads((path / rundir.RESULTS).read_text())


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
    base = [_read(p.parent) for p in sorted((runs / "base").rglob(rundir.RESULTS))]
    variant = [_read(p.parent) for p in sorted((runs / key).rglob(rundir.RESULTS))]
    assert len(base) == len(variant) == 2
    assert base[0]["settings_id"] == base[1]["settings_id"]  # the seed is not part of the identity
    assert variant[0]["settings_id"] != base[0]["settings_id"]
    differing = [k for k, _, _ in rundir.differences(base[0]["settings"], variant[0]["settings"])]
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
    base = _read(next((runs / "base").rglob(rundir.RESULTS)).parent)
    again = _read(next((runs / "again").rglob(rundir.RESULTS)).parent)
    assert again["settings_id"] == base["settings_id"]
    folder = _only(runs, "base", "again")
    assert report(["--runs", str(folder), "--out", str(tmp_path / "out")]) == 0
    rows = _rte_scores(tmp_path / "out")
    assert rows["n"].tolist() == [2]  # one cell, seeds 1 and 2
    skipped = pd.read_csv(tmp_path / "out" / "skipped.csv")
    assert skipped["reason"].str.startswith("duplicate seed").sum() == 2
