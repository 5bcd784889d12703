"""A run as a function call: ``maxpoolbert.train(overrides) -> RunRecord`` (maxpoolbert/launch/entry.py)
and the run's launch as a value (maxpoolbert/runs/context.py: RunContext), in this process."""

import contextlib
import io
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import ROOT, run_train

TINY = ["task=rte", "model=tiny", "data.train_size=32", "trainer.max_steps=4", "logger=none", "seed=3"]


def readme_example() -> str:
    """The Python block of the README that follows its ``<!-- example: maxpoolbert.train -->`` marker."""
    text = (ROOT / "README.md").read_text()
    found = re.search(r"<!-- example: maxpoolbert\.train -->\n```python\n(.*?)```", text, re.S)
    assert found, "README.md: no ```python block after <!-- example: maxpoolbert.train -->"
    return found.group(1)


def test_the_readme_example_runs_as_written(real_glue, cache_dir, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # its folder is relative: outputs/notebook/... here
    monkeypatch.setenv("MAXPOOLBERT_CACHE", str(cache_dir))
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(readme_example(), "README.md", "exec"), {"__name__": "__readme__"})  # noqa: S102
    folder = tmp_path / "outputs" / "notebook" / "rte_cls_s3"
    record = json.loads((folder / "results.json").read_text())
    assert (record["task"], record["pooling"], record["seed"], record["steps"]) == ("rte", "cls", 3, 3)
    assert {".hydra", "dev_predictions.tsv", "model.safetensors", "train.log", "launches.jsonl"} <= {
        p.name for p in folder.iterdir()}
    lines = out.getvalue().splitlines()
    assert float(lines[-2]) == pytest.approx(record["metrics"]["accuracy"])  # predictions agree with the record
    assert lines[-1].startswith("seed=abc: not an integer; ")


@pytest.mark.slow
def test_the_entry_and_the_command_line_give_identical_predictions(real_glue, cache_dir, tmp_path, monkeypatch):
    import maxpoolbert

    monkeypatch.setenv("MAXPOOLBERT_CACHE", str(cache_dir))
    run_train(*TINY, "speed.threads=1", f"hydra.run.dir={tmp_path}/cli", cwd=tmp_path)
    record = maxpoolbert.train([*TINY, "speed.threads=1"], output_dir=tmp_path / "py")
    cli, py = tmp_path / "cli", tmp_path / "py"
    assert (py / "dev_predictions.tsv").read_bytes() == (cli / "dev_predictions.tsv").read_bytes()
    stored = json.loads((cli / "results.json").read_text())
    assert record.settings_id == stored["settings_id"] == json.loads((py / "results.json").read_text())["settings_id"]
    assert (py / ".hydra" / "config.yaml").read_text() == (cli / ".hydra" / "config.yaml").read_text()
    assert sorted(p.name for p in py.iterdir()) == sorted(p.name for p in cli.iterdir())
    assert (py / "train.log").read_text().count("run folder:") == 2  # its log file, as the command line's
    again = maxpoolbert.train([*TINY, "speed.threads=1"], output_dir=py)  # finished: skipped, its record back
    assert again.settings_id == record.settings_id and again.score == record.score


@pytest.mark.parametrize(("overrides", "start"), [
    (["seed=abc"], "seed=abc: not an integer; "),
    (["task=rtee"], "task=rtee: no task of that name (did you mean rte?); "),
    (["data.batchsize=8"], "data.batchsize=8: "),
    (["-m", "seed=1,2"], "overrides=-m: "),
])
def test_a_refusal_is_raised_in_one_line(tmp_path, overrides, start):
    import maxpoolbert
    from maxpoolbert.core.errors import UserError

    with pytest.raises(UserError) as refused:
        maxpoolbert.train(overrides, output_dir=tmp_path / "run")
    assert str(refused.value).startswith(start) and "\n" not in str(refused.value)
    assert not (tmp_path / "run").exists()


def test_a_folder_holding_other_settings_is_refused(real_glue, cache_dir, tmp_path, monkeypatch):
    import maxpoolbert
    from maxpoolbert.core.errors import UserError

    monkeypatch.setenv("MAXPOOLBERT_CACHE", str(cache_dir))
    maxpoolbert.train(TINY, output_dir=tmp_path / "run")
    with pytest.raises(UserError, match=r"^hydra.run.dir=.*: the folder holds a run with other settings: "
                                        r"optimizer.lr=0.001 \(stored: 2e-05\)"):
        maxpoolbert.train([*TINY, "optimizer.lr=0.001"], output_dir=tmp_path / "run")


def test_a_run_needs_no_hydra_runtime(real_glue, cache_dir, tmp_path):
    """``run(cfg, ctx)`` with a RunContext made by hand: no Hydra app, no HydraConfig."""
    from hydra import compose, initialize_config_dir
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import open_dict

    from maxpoolbert.launch.run import run
    from maxpoolbert.runs.context import RunContext
    from maxpoolbert.tasks.task import CONFIGS

    with initialize_config_dir(config_dir=str(CONFIGS), version_base="1.3"):
        cfg = compose("config", overrides=[*TINY, f"trainer.default_root_dir={tmp_path}/run",
                                           f"data.cache_dir={cache_dir}"])
    with open_dict(cfg):
        cfg.pop("hydra", None)
    assert not HydraConfig.initialized()
    record = run(cfg, RunContext(output_dir=str(tmp_path / "run"), overrides=tuple(TINY)))
    assert record.steps == 3 and (tmp_path / "run" / "results.json").is_file()
    assert (tmp_path / "run" / ".hydra" / "hydra.yaml").is_file()


def test_the_context_of_a_sweep_job():
    from omegaconf import OmegaConf

    from maxpoolbert.runs.context import RunContext

    node = OmegaConf.create({"mode": "RunMode.MULTIRUN", "runtime": {"output_dir": "/s/3"}, "job": {"num": 3},
                             "sweep": {"dir": "/s"}, "launcher": {"n_jobs": 2},
                             "overrides": {"task": ["seed=1", "+pooling.module.k=2"]}})
    ctx = RunContext.from_hydra(node)
    assert (ctx.multirun, ctx.job_num, ctx.sweep_dir, ctx.parallel_jobs(), ctx.folder_key) == (
        True, 3, "/s", 2, "hydra.sweep.dir")
    assert ctx.command_line_keys() == {"seed", "pooling.module.k"}
    assert RunContext("/r").parallel_jobs() == 1 and RunContext("/r").folder_key == "hydra.run.dir"


def test_importing_the_package_loads_nothing_heavy():
    code = ("import sys, maxpoolbert; maxpoolbert.train; "
            "print(sorted(m for m in ('torch', 'lightning', 'transformers', 'hydra') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True,
                         env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert out.stdout.strip() == "[]"


def test_only_the_context_reads_hydras_runtime():
    """HydraConfig is read in maxpoolbert/runs/context.py alone (the entry and a sweep's launcher set it)."""
    readers = sorted(p.relative_to(ROOT).as_posix() for p in (ROOT / "maxpoolbert").rglob("*.py")
                     if re.search(r"HydraConfig(\.get\(\)|\.initialized\(\)|\(\)\.cfg)", p.read_text()))
    assert readers == ["maxpoolbert/runs/context.py"]
    assert "HydraConfig" not in Path(ROOT / "maxpoolbert" / "launch" / "run.py").read_text()


@pytest.mark.parametrize("mode, key", [("RUN", "hydra.run.dir"), ("MULTIRUN", "hydra.sweep.dir")])
def test_a_stored_or_composed_node_names_the_right_folder_setting(mode, key):
    """``.hydra/hydra.yaml`` (and a composed node) store the mode as ``RUN``; a live Hydra job as
    ``RunMode.RUN``: both name the same folder setting."""
    from hydra.types import RunMode
    from omegaconf import OmegaConf

    from maxpoolbert.runs.context import RunContext
    from maxpoolbert.runs.folder import _differing

    for stored in (mode, RunMode[mode]):
        node = OmegaConf.create({"mode": stored})
        assert _differing([("optimizer.lr", 2e-5, 1e-3)], node)[0] == key
    node = OmegaConf.create({"mode": mode, "runtime": {"output_dir": "/x"}, "sweep": {"dir": "/s"},
                             "job": {"num": 3}, "overrides": {"task": []}})
    assert RunContext.from_hydra(node).multirun == (mode == "MULTIRUN")
