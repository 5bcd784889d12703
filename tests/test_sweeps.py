"""Seed sweeps, launchers, W&B offline logging, skip-finished, resume after SIGKILL,
failure isolation and determinism (tiny model, a few steps)."""

import json
import os
import sys
from pathlib import Path

import pytest

from .conftest import run_train
from .wandb_records import read_run

SMALL = ["task=rte", "model=tiny", "data.train_size=64", "trainer.max_steps=3", "trainer.log_every_n_steps=1",
         "save_model=false", "trainer.enable_progress_bar=false"]


def results(root: Path) -> dict[tuple, dict]:
    out = {}
    for path in root.rglob("results.json"):
        r = json.loads(path.read_text())
        out[(r["pooling"], r["seed"])] = r | {"_dir": path.parent}
    return out


@pytest.fixture(scope="module")
def wandb_sweep(real_glue, tmp_path_factory, cache_dir):
    tmp = tmp_path_factory.mktemp("sweep")
    env = {"WANDB_MODE": "", "WANDB_API_KEY": "", "NETRC": str(tmp / "no-netrc")}  # no key: offline
    args = ["-m", "seed=1,2", "pooling=cls,maxpool_mha", "logger=wandb", *SMALL,
            f"data.cache_dir={cache_dir}", f"hydra.sweep.dir={tmp}/sweep"]
    first = run_train(*args, cwd=tmp, env=env)
    return tmp / "sweep", args, env, first


@pytest.mark.slow
def test_multirun_basic_launcher_writes_every_job(wandb_sweep):
    root, *_ = wandb_sweep
    found = results(root)
    assert set(found) == {("cls", 1), ("cls", 2), ("maxpool_mha", 1), ("maxpool_mha", 2)}
    for (pooling, seed), r in found.items():
        assert r["task"] == "rte" and r["model"] == "tiny" and r["steps"] == 3
        assert (r["_dir"] / "dev_predictions.tsv").exists() and (r["_dir"] / ".hydra" / "config.yaml").exists()
        assert f"pooling={pooling}" in r["_dir"].name and f"seed={seed}" in r["_dir"].name


@pytest.mark.slow
def test_wandb_offline_run_per_job_with_config_and_metrics(wandb_sweep):
    root, *_ = wandb_sweep
    ids = set()
    for (pooling, seed), r in results(root).items():
        run = read_run(r["_dir"])
        ids.add(run["run"].run_id)
        assert run["run"].display_name == f"rte-{pooling}-tiny-s{seed}"
        assert run["run"].run_group == "sweep" and run["run"].project == "maxpoolbert"
        assert f"pooling:{pooling}" in run["run"].tags
        assert run["config"]["seed"] == seed and run["config"]["pooling"]["name"] == pooling
        assert run["config"]["optimizer"]["lr"] == 2e-5
        steps = [h for h in run["history"] if "train/loss" in h]
        assert len(steps) == 3 and all("train/lr" in h for h in steps)  # per-step loss and lr
        assert any("val/accuracy" in h for h in run["history"])  # per-epoch dev metric
        assert run["summary"]["score"] == pytest.approx(r["score"])
    assert len(ids) == 4  # every job finished its own run: nothing logged into the first one


@pytest.mark.slow
def test_single_run_ends_fast_with_its_wandb_run_complete(real_glue, tmp_path, cache_dir):
    """A single run leaves through ``exit_now`` (no interpreter teardown): the W&B run must be
    complete anyway (per-step history and the summary written before the process ends)."""
    env = {"WANDB_MODE": "", "WANDB_API_KEY": "", "NETRC": str(tmp_path / "no-netrc")}
    run_train("pooling=cls", "logger=wandb", *SMALL, f"data.cache_dir={cache_dir}",
              f"hydra.run.dir={tmp_path}/run", cwd=tmp_path, env=env)
    r = json.loads((tmp_path / "run" / "results.json").read_text())
    run = read_run(tmp_path / "run")
    assert run["run"].display_name == "rte-cls-tiny-s1"
    assert len([h for h in run["history"] if "train/loss" in h]) == 3
    assert run["summary"]["score"] == pytest.approx(r["score"])
    assert "rte cls tiny seed 1" in (tmp_path / "run" / "train.log").read_text()  # log file flushed


@pytest.mark.slow
def test_relaunched_sweep_skips_finished_jobs(wandb_sweep):
    root, args, env, _ = wandb_sweep
    before = {k: r["_dir"].joinpath("results.json").stat().st_mtime_ns for k, r in results(root).items()}
    again = run_train(*args, cwd=root.parent, env=env)
    after = {k: r["_dir"].joinpath("results.json").stat().st_mtime_ns for k, r in results(root).items()}
    assert before == after
    out = again.stdout + again.stderr
    assert "4 of 4 job(s) already finished: not launched (nothing to do)" in out  # no job started
    assert "0 finished, 4 skipped (already finished), 0 failed" in out and "Launching" not in out


@pytest.mark.slow
def test_submitit_local_launcher(real_glue, tmp_path, cache_dir):
    run_train("-m", "seed=1,2", "pooling=cls,max_cls", "hydra/launcher=submitit_local", "logger=none",
              "hydra.launcher.timeout_min=10", *SMALL, f"data.cache_dir={cache_dir}",
              f"hydra.sweep.dir={tmp_path}/sweep", cwd=tmp_path)
    found = results(tmp_path / "sweep")
    assert set(found) == {("cls", 1), ("cls", 2), ("max_cls", 1), ("max_cls", 2)}
    assert list((tmp_path / "sweep" / ".submitit").iterdir())  # really went through submitit


@pytest.mark.slow
def test_failed_job_is_recorded_and_the_sweep_goes_on(real_glue, tmp_path, cache_dir):
    proc = run_train("-m", "pooling=max_cls", "pooling.module.k=0,1", "logger=none", *SMALL,
                     f"data.cache_dir={cache_dir}", f"hydra.sweep.dir={tmp_path}/sweep", cwd=tmp_path, check=False)
    assert proc.returncode != 0
    assert "error: 1 job(s) failed: re-run the same command to retry them" in proc.stderr
    failed = list((tmp_path / "sweep").rglob("failed.json"))
    assert len(failed) == 1 and "k=0" in failed[0].parent.name
    assert "at least 1" in json.loads(failed[0].read_text())["error"]
    done = list((tmp_path / "sweep").rglob("results.json"))
    assert len(done) == 1 and "k=1" in done[0].parent.name


@pytest.mark.slow
def test_same_seed_same_metrics_different_seed_differs(real_glue, tmp_path, cache_dir):
    common = ["task=stsb", "model=tiny", "data.train_size=128", "trainer.max_steps=6", "optimizer.lr=1e-3",
              "logger=none", "save_model=false", f"data.cache_dir={cache_dir}"]
    run_train("-m", "seed=3,4", *common, f"hydra.sweep.dir={tmp_path}/a", cwd=tmp_path)
    run_train("-m", "seed=3", *common, f"hydra.sweep.dir={tmp_path}/b", cwd=tmp_path)
    a, b = results(tmp_path / "a"), results(tmp_path / "b")
    assert a[("maxpool_mha", 3)]["metrics"] == b[("maxpool_mha", 3)]["metrics"]
    pa = (a[("maxpool_mha", 3)]["_dir"] / "dev_predictions.tsv").read_text()
    assert pa == (b[("maxpool_mha", 3)]["_dir"] / "dev_predictions.tsv").read_text()
    assert a[("maxpool_mha", 3)]["metrics"] != a[("maxpool_mha", 4)]["metrics"]


@pytest.mark.parametrize(("env", "threads"), [({"SLURM_CPUS_PER_TASK": "1"}, 1), ({"SLURM_CPUS_PER_TASK": "3"}, 3),
                                              ({"SLURM_CPUS_PER_TASK": ""}, None)])
def test_a_slurm_job_uses_the_cpus_it_was_given(monkeypatch, env, threads):
    from maxpoolbert.training import trainer

    for key, value in env.items():
        monkeypatch.setenv(key, value)
    assert trainer.threads_per_parallel_job(None) == threads  # no sweep: one job on the machine


@pytest.mark.slow
def test_slurm_launcher_without_sbatch_is_one_line(tmp_path):
    path = os.path.dirname(sys.executable)  # python, and no sbatch
    proc = run_train("-m", "hydra/launcher=slurm", "model=tiny", "logger=none", f"hydra.sweep.dir={tmp_path}/sweep",
                     cwd=tmp_path, check=False, env={"PATH": path})
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "sbatch is not on the PATH" in lines[0]


def _ended(pid: int) -> bool:
    """The process is gone (or a zombie: it ran to its end, nobody has reaped it yet)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return True
    return fields[0] in ("Z", "X")


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="a parent-death signal is Linux's (prctl)")
def test_a_joblib_sweeps_workers_end_when_its_process_is_killed(real_glue, tmp_path, cache_dir):
    """kill -9 of a joblib sweep's process: its loky workers, each running a job, end with it (the
    kernel's parent-death signal, SIGTERM) and record the job as interrupted, instead of training on."""
    import signal
    import subprocess
    import time

    from maxpoolbert.runs.folder import LOCK, RunFolder

    from .conftest import ROOT, SUBPROCESS_TIMEOUT

    sweep = tmp_path / "sweep"
    args = ["-m", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2", "seed=1,2", "task=rte", "model=tiny",
            "data.train_size=64", "trainer.max_steps=100000", "trainer.max_epochs=-1", "save_model=false",
            "trainer.enable_progress_bar=false", "logger=none", "speed.threads=1", f"data.cache_dir={cache_dir}",
            f"hydra.sweep.dir={sweep}"]
    proc = subprocess.Popen([sys.executable, str(ROOT / "train.py"), *args], cwd=tmp_path,
                            env={**os.environ, "HYDRA_FULL_ERROR": "0"}, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    workers: dict[Path, int] = {}
    deadline = time.time() + SUBPROCESS_TIMEOUT
    try:
        while len(workers) < 2 and time.time() < deadline and proc.poll() is None:
            for folder in {p.parent for p in sweep.rglob(LOCK)} - set(workers):
                try:
                    pid = json.loads((folder / LOCK).read_text())["pid"]
                except (OSError, ValueError, KeyError):
                    continue
                if list(folder.glob("checkpoints")) or (folder / "train.log").exists():
                    workers[folder] = pid
            time.sleep(0.2)
        assert len(workers) == 2 and proc.poll() is None, "the sweep's jobs did not start"
        time.sleep(3)  # into training
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        stop = time.time() + 180  # only a limit for workers that would train on: they stop within seconds
        while not all(_ended(pid) for pid in workers.values()) and time.time() < stop:
            time.sleep(0.2)
    finally:
        for pid in workers.values():
            if not _ended(pid):
                os.kill(pid, signal.SIGKILL)
    assert all(_ended(pid) for pid in workers.values())
    for folder in workers:
        assert [e["outcome"] for e in RunFolder(folder).launches()] == ["interrupted"]
        assert RunFolder(folder).launches()[0]["signal"] == "SIGTERM"


@pytest.mark.slow
def test_a_job_folder_name_too_long_is_refused_before_any_job(real_glue, tmp_path):
    """A swept value that makes a job's folder name longer than 255 bytes: Hydra's mkdir (or our
    stat) of the job folder failed with a traceback."""
    long = "y" * 250
    proc = run_train("-m", *SMALL, f"+note={long}", f"hydra.sweep.dir={tmp_path}/sweep", cwd=tmp_path, check=False)
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
    [line] = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert line.startswith(f"error: hydra.sweep.subdir=+note={long}") and "more than the 255 its filesystem takes" \
        in line and line.endswith("or hydra.sweep.subdir=${hydra.job.num}"), line
    assert [p.name for p in (tmp_path / "sweep").iterdir()] == ["multirun.yaml"]  # no job started


def test_a_sweep_composes_each_job_once(tmp_path, monkeypatch):
    """Hydra's check that every job composes and the skip-finished launcher (which needs each job's
    folder) share one composition per job: composing is the sweep's own start, before any job runs."""
    from types import SimpleNamespace

    from hydra.conf import HydraConf
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import OmegaConf

    from maxpoolbert.launch.sweeps import SkipFinishedLaunches, _SkipFinished

    monkeypatch.setattr(HydraConfig.instance(), "cfg", HydraConfig.instance().cfg)  # restored after the test
    composed = []

    def load_sweep_config(config, overrides):
        composed.append(tuple(overrides))
        cfg = OmegaConf.create({"hydra": OmegaConf.structured(HydraConf), "skip_finished": True})
        cfg.hydra.sweep.dir, cfg.hydra.sweep.subdir = str(tmp_path), "_".join(overrides)
        return cfg

    context = SimpleNamespace(config_loader=SimpleNamespace(load_sweep_config=load_sweep_config))
    config = OmegaConf.create({"hydra": {"sweep": {"dir": str(tmp_path), "subdir": "${hydra.job.override_dirname}"}}})
    real = SimpleNamespace(launch=lambda jobs, initial_job_idx: [f"ran {' '.join(job)}" for job in jobs])
    sweeper = SimpleNamespace(launcher=_SkipFinished(real, context, config))
    batch = [["seed=1"], ["seed=2"]]
    SkipFinishedLaunches.validate_batch_is_legal(sweeper, batch)
    assert sweeper.launcher.launch(batch, initial_job_idx=0) == ["ran seed=1", "ran seed=2"]
    assert composed == [("seed=1",), ("seed=2",)]
