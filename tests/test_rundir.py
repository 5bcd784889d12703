"""Run folders that can be trusted: experiment presets that apply, kills at any moment that a
relaunch recovers from, broken files that are set aside and counted, one run per folder."""

import json
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf, open_dict

from maxpoolbert.core.io import CORRUPT, write_atomic, write_json_atomic
from maxpoolbert.runs import identity
from maxpoolbert.runs import record as run_record
from maxpoolbert.runs.folder import (
    CHECKPOINTS,
    CONFIG,
    CONFIG_DIR,
    FAILED,
    LAST_CKPT,
    LAUNCHES,
    LOCAL_DATA,
    LOCK,
    MODEL,
    PREDICTIONS,
    RERUN_FAILED,
    RunFolder,
    RunFolderBusy,
    RunFolderConflict,
    checkpoint_position,
    checkpoint_problem,
)
from maxpoolbert.runs.record import FORMAT, RESULTS, RunRecord, upgrade

from .conftest import ROOT, SUBPROCESS_TIMEOUT, run_train

PRESETS = sorted((p.parent.name, p.stem) for group in ("experiment", "hparams_search")
                 for p in (ROOT / "configs" / group).glob("*.yaml"))
# The smallest run that still has two resume checkpoints: 256 rows / batch 32 = 8 steps an epoch,
# checkpoints after epochs 1 and 2, none after the last one.
STEPS_PER_EPOCH = 8
RESUMABLE = ["task=rte", "model=tiny", "data.train_size=256", "trainer.max_epochs=3", "optimizer.lr=1e-4",
             "logger=none", "save_model=false", "trainer.enable_progress_bar=false", "seed=5", "eval.select=best"]


def out(proc) -> str:
    return proc.stdout + proc.stderr


def flat(obj, path=()):
    """Every leaf of a nested dict, keyed by its path (keys may contain dots: data.train_size)."""
    if isinstance(obj, dict) and obj:
        leaves = {}
        for k, v in obj.items():
            leaves.update(flat(v, (*path, k)))
        return leaves
    return {path: obj}


def train_here(*overrides: str):
    """``maxpoolbert.train(overrides)`` in this process (the run's log lines: its folder's train.log)."""
    import maxpoolbert

    return maxpoolbert.train(list(overrides))


def composed(*overrides: str) -> dict:
    """The job's config and its ``hydra`` node as ``python train.py --cfg all`` prints them (unresolved)."""
    from hydra.core.global_hydra import GlobalHydra

    GlobalHydra.instance().clear()
    with initialize_config_dir(str(ROOT / "configs"), job_name="train", version_base="1.3"):
        cfg = compose("config", overrides=list(overrides), return_hydra_config=True)
    return OmegaConf.to_container(cfg, resolve=False, enum_to_str=True)


def lookup(cfg: dict, path: tuple):
    for part in path:
        assert isinstance(cfg, dict) and part in cfg, f"{'.'.join(path)} is missing from the composed config"
        cfg = cfg[part]
    return cfg


# ---------------------------------------------------------------------------- experiment presets
@pytest.mark.parametrize(("group", "name"), PRESETS)
def test_experiment_preset_wins_for_every_key_it_sets(group, name):
    """Compose as the command line does (Hydra's compose of the project's configs: what ``--cfg job``
    and ``--cfg hydra`` print) and find every value the preset sets, unchanged, and every group it
    overrides chosen."""
    preset = OmegaConf.to_container(OmegaConf.load(ROOT / "configs" / group / f"{name}.yaml"))
    defaults = preset.pop("defaults", [])
    composed_ = composed(f"{group}={name}")
    hydra = {"hydra": composed_["hydra"]}
    keys = flat(preset)
    assert keys, f"experiment {name} sets nothing"
    for key, value in keys.items():
        assert lookup(composed_, key) == value, f"experiment={name}: {'.'.join(key)} is not the preset's value"
    for entry in defaults:
        for group, choice in (entry.items() if isinstance(entry, dict) else []):
            group = group.removeprefix("override ").strip("/")
            assert hydra["hydra"]["runtime"]["choices"][group] == choice, f"experiment={name}: {group}"


@pytest.mark.slow
def test_glue_grid_writes_its_folders_and_a_relaunch_skips_every_finished_job(real_glue, tmp_path, cache_dir):
    args = ["experiment=glue_grid", "model=tiny", "task=rte,mrpc", "pooling=cls,max_cls", "seed=1",
            "data.train_size=32", "trainer.max_steps=2", "logger=none", "trainer.enable_progress_bar=false",
            f"data.cache_dir={cache_dir}"]
    first = run_train(*args, cwd=tmp_path)
    found = sorted(p.parent.relative_to(tmp_path) for p in tmp_path.rglob(RESULTS))
    assert [str(p) for p in found] == [f"outputs/glue_grid/tiny/{t}/{p}/seed1"
                                       for t in ("mrpc", "rte") for p in ("cls", "max_cls")]
    assert "4 finished, 0 failed" in out(first)
    for folder in found:
        results = json.loads((tmp_path / folder / RESULTS).read_text())
        assert results["n_train"] == 32 and results["steps"] == 2
        assert not (tmp_path / folder / MODEL).exists()  # the preset's save_model: false
    stamps = {p: p.stat().st_mtime_ns for p in tmp_path.rglob(RESULTS)}
    again = run_train(*args, cwd=tmp_path)
    assert {p: p.stat().st_mtime_ns for p in tmp_path.rglob(RESULTS)} == stamps
    assert "0 finished, 4 skipped (already finished), 0 failed" in out(again)
    assert not (tmp_path / "outputs" / "multirun").exists()
    # The same folders with a setting that changes the runs: every job refuses, nothing is touched.
    configs = {p: p.read_bytes() for p in tmp_path.rglob("config.yaml")}
    changed = run_train(*args, "optimizer.lr=1e-3", cwd=tmp_path, check=False)
    assert changed.returncode != 0
    assert "0 finished, 0 failed, 4 refused (folder holds other settings)" in out(changed)
    assert "optimizer.lr=0.001 (stored: 2e-05)" in out(changed)
    assert {p: p.stat().st_mtime_ns for p in tmp_path.rglob(RESULTS)} == stamps
    assert {p: p.read_bytes() for p in tmp_path.rglob("config.yaml")} == configs


def test_smoke_trains_on_64_rows_and_writes_no_weights(real_glue, tmp_path, cache_dir):
    train_here("experiment=smoke", f"data.cache_dir={cache_dir}", f"hydra.run.dir={tmp_path}/run")
    results = json.loads((tmp_path / "run" / RESULTS).read_text())
    assert results["n_train"] == 64 and results["model"] == "tiny" and results["steps"] == 2
    assert not (tmp_path / "run" / MODEL).exists()


# ---------------------------------------------------------------------------- kills and damage
@pytest.fixture(scope="module")
def straight(real_glue, tmp_path_factory, cache_dir) -> Path:
    """The uninterrupted run every recovered run must equal (its checkpoint kept)."""
    tmp = tmp_path_factory.mktemp("straight")
    train_here(*RESUMABLE, "checkpoint.keep=true", f"data.cache_dir={cache_dir}", f"hydra.run.dir={tmp}/run")
    return tmp / "run"


def same_run(a: Path, b: Path) -> None:
    ra, rb = (json.loads((d / RESULTS).read_text()) for d in (a, b))
    assert ra["steps"] == rb["steps"] == 3 * STEPS_PER_EPOCH
    assert ra["train_samples"] == rb["train_samples"] == 3 * 256  # counted across the resume too
    assert ra["metrics"] == rb["metrics"]
    assert len(ra["history"]) == 3 and ra["history"] == rb["history"] and ra["selected"] == rb["selected"]
    assert (a / PREDICTIONS).read_text() == (b / PREDICTIONS).read_text()


def leftovers(run_dir: Path) -> list[Path]:
    return [p for p in run_dir.rglob("*") if p.name.endswith(".tmp")]


@pytest.mark.slow
def test_the_kept_checkpoint_is_from_the_end_of_the_second_of_three_epochs(straight):
    """A rolling checkpoint after every epoch but the last (nothing is left to resume after it)."""
    kept = torch.load(straight / CHECKPOINTS / LAST_CKPT, map_location="cpu", weights_only=True)
    assert (kept["epoch"], kept["global_step"]) == (1, 2 * STEPS_PER_EPOCH)
    assert checkpoint_problem(straight / CHECKPOINTS / LAST_CKPT) is None


def kill_after_first_checkpoint(run_dir: Path, overrides: list[str], env: dict | None = None) -> None:
    proc = subprocess.Popen([sys.executable, str(ROOT / "train.py"), *overrides, f"hydra.run.dir={run_dir}"],
                            cwd=run_dir.parent, env={**os.environ, "HYDRA_FULL_ERROR": "0", **(env or {})},
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    ckpt = run_dir / CHECKPOINTS / LAST_CKPT
    deadline = time.time() + SUBPROCESS_TIMEOUT
    while not ckpt.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)  # the checkpoint appears whole (renamed into place)
    proc.wait()
    assert ckpt.exists(), "no checkpoint was written before the run ended"
    assert not (run_dir / RESULTS).exists(), "the run finished before it could be killed"


@pytest.mark.slow
def test_killed_run_resumes_from_checkpoint_and_matches_uninterrupted(straight, tmp_path, cache_dir):
    run_dir = tmp_path / "killed"
    kill_after_first_checkpoint(run_dir, [*RESUMABLE, f"data.cache_dir={cache_dir}"])
    train_here(*RESUMABLE, f"data.cache_dir={cache_dir}", f"hydra.run.dir={run_dir}")  # the relaunch: in this process
    assert "resuming from" in (run_dir / "train.log").read_text()
    assert json.loads((run_dir / RESULTS).read_text())["resumed"]
    same_run(run_dir, straight)
    assert not (run_dir / CHECKPOINTS).exists()  # deleted after success (checkpoint.keep=false)


@pytest.mark.slow
def test_a_step_limited_run_resumes_exactly(real_glue, tmp_path, cache_dir):
    """``trainer.max_steps=20`` of the 24 steps of 3 epochs: killed after the first checkpoint, the
    relaunch ends where the uninterrupted run ends (Lightning alone resumes step-limited training
    one epoch short: 16 steps, 2 evaluations, recorded as finished)."""
    overrides = [*RESUMABLE, "trainer.max_steps=20", f"data.cache_dir={cache_dir}"]
    train_here(*overrides, f"hydra.run.dir={tmp_path}/straight")
    kill_after_first_checkpoint(tmp_path / "killed", overrides)
    train_here(*overrides, f"hydra.run.dir={tmp_path}/killed")
    assert "resuming from" in (tmp_path / "killed" / "train.log").read_text()
    a, b = (json.loads((tmp_path / d / RESULTS).read_text()) for d in ("straight", "killed"))
    assert (a["steps"], a["train_samples"], len(a["history"])) == (20, 20 * 32, 3)
    assert (b["steps"], b["train_samples"], b["history"], b["metrics"]) == (a["steps"], a["train_samples"],
                                                                            a["history"], a["metrics"])
    assert (tmp_path / "killed" / PREDICTIONS).read_bytes() == (tmp_path / "straight" / PREDICTIONS).read_bytes()


@pytest.mark.slow
def test_resumed_run_continues_its_own_wandb_run(real_glue, tmp_path, cache_dir):
    env = {"WANDB_MODE": "", "WANDB_API_KEY": "", "NETRC": str(tmp_path / "no-netrc")}  # no key: offline
    overrides = [*RESUMABLE, "logger=wandb", f"data.cache_dir={cache_dir}"]
    run_dir = tmp_path / "run"
    kill_after_first_checkpoint(run_dir, overrides, env)
    run_train(*overrides, f"hydra.run.dir={run_dir}", cwd=tmp_path, env=env)
    parts = sorted((run_dir / "wandb").glob("offline-run-*"))
    assert len(parts) == 2  # one folder per process, as W&B writes them offline
    ids = {p.name.rsplit("-", 1)[1] for p in parts}
    assert ids == {(run_dir / "wandb_id").read_text().strip()}


@pytest.mark.slow
@pytest.mark.parametrize("nth", [1, 2])
def test_killed_while_writing_a_checkpoint_with_tmpdir_elsewhere(straight, tmp_path, cache_dir, nth):
    """SIGKILL half-way through the n-th checkpoint write, ``$TMPDIR`` on another filesystem
    (/dev/shm): the relaunch finishes, equal to the uninterrupted run (resumed from the intact
    first checkpoint when the second write was killed), and nothing temporary is left anywhere."""
    shm = Path("/dev/shm")
    tmpdir = Path(os.environ.get("TEST_OTHER_FS_TMPDIR", shm if shm.is_dir() else tmp_path)) / f"mpb-{os.getpid()}-{nth}"
    tmpdir.mkdir(parents=True, exist_ok=True)
    try:
        run_dir = tmp_path / "run"
        env = {**os.environ, "HYDRA_FULL_ERROR": "0", "TMPDIR": str(tmpdir)}
        overrides = [*RESUMABLE, f"data.cache_dir={cache_dir}", f"hydra.run.dir={run_dir}"]
        killed = subprocess.run([sys.executable, str(ROOT / "tests" / "kill_during_checkpoint.py"), str(nth),
                                 str(ROOT / "train.py"), *overrides], cwd=tmp_path, env=env, capture_output=True,
                                text=True, timeout=SUBPROCESS_TIMEOUT)
        # only the hook's SIGKILL, in the middle of the write, ends a process so
        assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
        assert not (run_dir / RESULTS).exists()
        ckpt = run_dir / CHECKPOINTS / LAST_CKPT
        intact = ckpt.exists() and checkpoint_problem(ckpt) is None
        assert ckpt.exists() == intact == (nth == 2)  # only ever a whole checkpoint under the real name

        resumed = subprocess.run([sys.executable, str(ROOT / "train.py"), *overrides], cwd=tmp_path, env=env,
                                 capture_output=True, text=True, timeout=SUBPROCESS_TIMEOUT)
        assert resumed.returncode == 0, resumed.stderr[-3000:]
        assert ("resuming from" in out(resumed)) == (nth == 2)
        same_run(run_dir, straight)
        assert not leftovers(run_dir)
        # (torch makes its compiler cache folder there on import: not a leftover of the kill)
        left = [p for p in tmpdir.iterdir() if not p.name.startswith("torchinductor")]
        assert not left, f"left in TMPDIR: {left}"
    finally:
        shutil.rmtree(tmpdir, ignore_errors=True)


def copy_unfinished(straight: Path, dest: Path) -> Path:
    """The straight run as it was after its second epoch: config and checkpoint, no results."""
    (dest / CHECKPOINTS).mkdir(parents=True)
    shutil.copytree(straight / CONFIG_DIR, dest / CONFIG_DIR)
    shutil.copy(straight / CHECKPOINTS / LAST_CKPT, dest / CHECKPOINTS / LAST_CKPT)
    return dest / CHECKPOINTS / LAST_CKPT


@pytest.mark.slow
@pytest.mark.parametrize("damage", ["empty", "truncated"])
def test_damaged_checkpoint_is_set_aside_and_the_run_restarts(straight, tmp_path, cache_dir, damage):
    ckpt = copy_unfinished(straight, tmp_path / "run")
    data = ckpt.read_bytes()
    ckpt.write_bytes(b"" if damage == "empty" else data[: len(data) // 2])
    train_here(*RESUMABLE, f"data.cache_dir={cache_dir}", f"hydra.run.dir={tmp_path}/run")
    log = (tmp_path / "run" / "train.log").read_text()
    warnings = [line for line in log.splitlines() if "cannot be loaded" in line]
    assert len(warnings) == 1 and "moved to last.ckpt.corrupt" in warnings[0]
    assert "resuming from" not in log
    corrupt = ckpt.with_name("last.ckpt.corrupt")
    assert corrupt.read_bytes() == (b"" if damage == "empty" else data[: len(data) // 2])
    assert not json.loads((tmp_path / "run" / RESULTS).read_text())["resumed"]
    same_run(tmp_path / "run", straight)


@pytest.mark.slow
def test_damaged_last_checkpoint_falls_back_to_an_older_intact_one(straight, tmp_path, cache_dir):
    ckpt = copy_unfinished(straight, tmp_path / "run")
    shutil.copy(ckpt, ckpt.with_name("epoch1.ckpt"))
    ckpt.write_bytes(ckpt.read_bytes()[:1000])
    train_here(*RESUMABLE, f"data.cache_dir={cache_dir}", f"hydra.run.dir={tmp_path}/run")
    log = (tmp_path / "run" / "train.log").read_text()
    assert "resuming from" in log and "epoch1.ckpt" in log
    assert json.loads((tmp_path / "run" / RESULTS).read_text())["resumed"]
    same_run(tmp_path / "run", straight)


# ---------------------------------------------------------------------------- finished, or not
@pytest.mark.slow
def test_sweep_with_a_corrupt_results_json_reruns_that_job_and_says_so(real_glue, tmp_path, cache_dir):
    args = ["-m", "pooling=cls,max_cls", "model=tiny", "data.train_size=32", "trainer.max_steps=2", "logger=none",
            "trainer.enable_progress_bar=false", f"data.cache_dir={cache_dir}", f"hydra.sweep.dir={tmp_path}/sweep"]
    run_train(*args, cwd=tmp_path)
    broken = next((tmp_path / "sweep").glob("*max_cls*")) / RESULTS
    good = json.loads(broken.read_text())
    broken.write_text('{"task": "rte", "metr')  # cut off by a full disk, say
    (broken.parent / f".{RESULTS}.12345.tmp").write_text("{")  # a killed writer's leftover
    again = run_train(*args, cwd=tmp_path)
    assert "0 finished, 1 re-run (broken results.json), 1 skipped (already finished), 0 failed" in out(again)
    assert "is invalid JSON" in out(again)
    assert broken.with_name("results.json.corrupt").read_text() == '{"task": "rte", "metr'
    rerun = json.loads(broken.read_text())
    assert rerun["metrics"] == good["metrics"]  # same seed, same run
    assert not leftovers(broken.parent)
    assert [e["outcome"] for e in RunFolder(broken.parent).launches()] == ["finished", "rerun"]


@pytest.mark.parametrize("content,problem", [
    ("", "invalid JSON"), ("[1, 2]", "not a JSON object"), ('{"task": "rte"}', "missing key(s) pooling"),
    (b"\xff\xfe", "invalid JSON"),
])
def test_results_json_that_cannot_be_used_is_not_finished(tmp_path, content, problem):
    folder = RunFolder(tmp_path)
    folder.results.write_bytes(content if isinstance(content, bytes) else content.encode())
    record, why = folder.read()
    assert record is None and problem in str(why)
    assert not folder.is_finished()


def test_relaunch_with_other_settings_is_refused_and_the_config_kept(real_glue, tmp_path, cache_dir, monkeypatch):
    from maxpoolbert.core.errors import UserError

    common = ["model=tiny", "data.train_size=32", "trainer.max_steps=2", "logger=none", f"data.cache_dir={cache_dir}",
              f"hydra.run.dir={tmp_path}/run", "trainer.enable_progress_bar=false"]
    train_here(*common)
    config = tmp_path / "run" / CONFIG
    before = config.read_bytes()
    with pytest.raises(UserError) as refused:
        train_here(*common, "optimizer.lr=1e-3", "seed=7")
    line = str(refused.value)
    assert "\n" not in line and "optimizer.lr=0.001 (stored: 2e-05)" in line and "seed=7 (stored: 1)" in line
    assert config.read_bytes() == before
    # Keys that do not change the run are free: another logger, no progress bar, another GLUE path.
    monkeypatch.setenv("GLUE_DIR", str(real_glue) + "/")
    train_here(*common, "logger=csv", "trainer.enable_progress_bar=true")
    assert "skipping" in (tmp_path / "run" / "train.log").read_text() and config.read_bytes() == before
    assert [e["outcome"] for e in RunFolder(tmp_path / "run").launches()] == ["finished", "refused", "skipped"]


# configs/trainer/default.yaml once listed every Trainer flag; the ones it no longer lists, at the
# values run folders of that time stored (Lightning's defaults, every one).
DROPPED_TRAINER_FLAGS = {
    "num_nodes": 1, "fast_dev_run": False, "min_epochs": None, "min_steps": None, "max_time": None,
    "limit_train_batches": None, "limit_val_batches": None, "limit_test_batches": None,
    "limit_predict_batches": None, "overfit_batches": 0.0, "val_check_interval": None, "check_val_every_n_epoch": 1,
    "gradient_clip_algorithm": None, "benchmark": None, "inference_mode": True, "profiler": None,
    "detect_anomaly": False, "barebones": False, "sync_batchnorm": False, "reload_dataloaders_every_n_epochs": 0,
    "enable_autolog_hparams": True, "model_registry": None}


def test_trainer_flags_left_out_have_lightning_defaults_when_a_run_folder_is_compared():
    """A run folder stored with another Lightning release (fewer Trainer flags) compares a flag it
    lacks as Lightning's default: equal when left alone, different when set."""
    def job(*overrides):
        with initialize_config_dir(str(ROOT / "configs"), version_base="1.3"):
            return compose("config", overrides=list(overrides))

    current = job()
    assert set(DROPPED_TRAINER_FLAGS) <= set(current.trainer)  # every flag, from lightning/trainer_flags
    stored_then = OmegaConf.create(OmegaConf.to_container(current))
    for flag in DROPPED_TRAINER_FLAGS:
        del stored_then.trainer[flag]
    def differences(a, b, both_only=True):
        return identity.differences(identity.settings(a), identity.settings(b), both_only=both_only)

    assert differences(stored_then, current) == []
    changed = job("trainer.limit_train_batches=0.5")
    assert differences(stored_then, changed) == [("trainer.limit_train_batches", None, 0.5)]
    assert differences(changed, current) == [("trainer.limit_train_batches", 0.5, None)]
    assert differences(current, job("+trainer.nope=1")) == [("trainer.nope", "<unset>", 1)]
    # a key the project added since (not a Trainer flag): not compared on a relaunch, a difference
    # of identity in a report
    added = OmegaConf.create(OmegaConf.to_container(current))
    added.data.new_option = True
    assert differences(current, added) == []
    assert differences(current, added, both_only=False) == [("data.new_option", "<unset>", True)]


def test_run_folder_holds_no_path_of_the_machine_and_predict_reads_the_shells_glue_dir(real_glue, tmp_path,
                                                                                       cache_dir, monkeypatch):
    """A relative GLUE_DIR is taken against the folder the run started in; the stored config keeps
    the setting's own value (``${oc.env:GLUE_DIR,null}``), so `predict` from another folder reads
    that shell's GLUE_DIR (or --glue-dir). (The shells: this process, in one folder then another.)"""
    from maxpoolbert.predict import main as predict

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("GLUE_DIR", os.path.relpath(real_glue, tmp_path))
    train_here("model=tiny", "data.train_size=32", "trainer.max_steps=2", "logger=none", f"data.cache_dir={cache_dir}",
               "hydra.run.dir=run")
    saved = (tmp_path / "run" / CONFIG).read_text()
    assert "${oc.env:GLUE_DIR,null}" in saved
    record = json.loads((tmp_path / "run" / RESULTS).read_text())
    for text in (saved, json.dumps(record)):
        assert str(real_glue.resolve()) not in text and str(tmp_path) not in text
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    monkeypatch.setenv("GLUE_DIR", os.path.relpath(real_glue, elsewhere))
    assert predict([str(tmp_path / "run")]) == 0
    rows = (tmp_path / "run" / "submission" / "RTE.tsv").read_text().splitlines()
    assert len(rows) == 1 + 3000  # header + every RTE test row


def test_predict_without_glue_dir_reads_the_folder_the_run_read_on_this_machine(real_glue, tmp_path, cache_dir,
                                                                                 monkeypatch, capsys):
    """The committed files hold no machine path; a machine-local note (never committed) lets
    `predict` of a run work where it was trained from a shell without GLUE_DIR, while the folder
    exists."""
    from maxpoolbert.predict import main as predict

    run_dir = tmp_path / "run"
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("GLUE_DIR", os.path.relpath(real_glue, tmp_path))
    train_here("model=tiny", "data.train_size=32", "trainer.max_steps=2", "logger=none", f"data.cache_dir={cache_dir}",
               f"hydra.run.dir={run_dir}")
    for name in (CONFIG, RESULTS):
        assert str(real_glue) not in (run_dir / name).read_text() and str(tmp_path) not in (run_dir / name).read_text()
    noted = json.loads((run_dir / LOCAL_DATA).read_text())
    assert noted["glue"] == os.path.abspath(real_glue)
    monkeypatch.delenv("GLUE_DIR")
    assert predict([str(run_dir)]) == 0
    assert len((run_dir / "submission" / "RTE.tsv").read_text().splitlines()) == 1 + 3000
    (run_dir / LOCAL_DATA).write_text(json.dumps({**noted, "glue": str(tmp_path / "moved")}))
    shutil.rmtree(run_dir / "submission")
    capsys.readouterr()
    with pytest.raises(SystemExit) as ended:  # the noted folder is gone: no fallback, the hub (offline here) as before
        predict([str(run_dir)])
    err = capsys.readouterr().err
    assert ended.value.code == 2 and "error: data.glue_dir=null: no data for task rte" in err, err[-2000:]


# ---------------------------------------------------------------------------- pieces
def test_atomic_checkpoint_write_keeps_the_old_file_when_the_write_fails(tmp_path, monkeypatch):
    from maxpoolbert.training.checkpointing import AtomicCheckpointIO

    path = tmp_path / "last.ckpt"
    io = AtomicCheckpointIO()
    io.save_checkpoint({"state_dict": {"w": torch.ones(3)}, "global_step": 1}, path)
    before = path.read_bytes()

    def broken_save(obj, f, *a, **k):
        f.write(b"PK partial")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", broken_save)
    with pytest.raises(OSError, match="disk full"):
        io.save_checkpoint({"state_dict": {"w": torch.zeros(3)}, "global_step": 2}, path)
    assert path.read_bytes() == before and sorted(p.name for p in tmp_path.iterdir()) == ["last.ckpt"]


def test_resume_checkpoint_prefers_last_then_newest_intact(tmp_path):
    folder = tmp_path / CHECKPOINTS
    folder.mkdir()
    good = {"state_dict": {}, "global_step": 3}
    torch.save(good, folder / "old.ckpt")
    run = RunFolder(tmp_path)
    assert run.resume_checkpoint() == folder / "old.ckpt"
    torch.save(good, folder / LAST_CKPT)
    assert run.resume_checkpoint() == folder / LAST_CKPT
    (folder / LAST_CKPT).write_bytes(b"")
    (folder / "old.ckpt").write_bytes((folder / "old.ckpt").read_bytes()[:-40])
    assert run.resume_checkpoint() is None
    assert sorted(p.name for p in folder.iterdir()) == ["last.ckpt.corrupt", "old.ckpt.corrupt"]
    torch.save({"not": "lightning"}, folder / LAST_CKPT)
    assert run.resume_checkpoint() is None
    assert (folder / "last.ckpt.corrupt.1").exists()


# ---------------------------------------------------------------------------- nothing is lost (issue 21)
# 64 rows / batch 32 = 2 steps an epoch: a checkpoint after epoch 1 (step 2), none after the last.
SHORT = ["task=rte", "model=tiny", "data.train_size=64", "trainer.max_epochs=2", "logger=none", "save_model=false",
         "trainer.enable_progress_bar=false", "seed=5"]


def error_lines(proc) -> list[str]:
    return [line for line in out(proc).splitlines() if line.startswith("error:")]


def _default_signals() -> None:
    """In the child: SIGINT and SIGTERM at their defaults, as in a user's shell (a test process of
    pytest-xdist ignores SIGINT, and a child would inherit that)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


def start(overrides: list[str], cwd: Path, log: Path) -> subprocess.Popen:
    """``train.py`` in the background, its output into ``log``."""
    with log.open("w") as f:
        return subprocess.Popen([sys.executable, str(ROOT / "train.py"), *overrides], cwd=cwd, stdout=f,
                                stderr=subprocess.STDOUT, env={**os.environ, "HYDRA_FULL_ERROR": "0"},
                                preexec_fn=_default_signals)


def wait_for(condition, proc: subprocess.Popen, what: str) -> None:
    deadline = time.time() + SUBPROCESS_TIMEOUT
    while not condition():
        assert proc.poll() is None, f"the run ended before {what}"
        assert time.time() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def holds_lock(run_dir: Path, pid: int) -> bool:
    try:
        return json.loads((run_dir / LOCK).read_text())["pid"] == pid
    except (OSError, ValueError, KeyError):
        return False


def snapshot(run_dir: Path) -> dict[str, bytes]:
    """Every file of a run folder but the ones the running process itself keeps writing."""
    return {str(p.relative_to(run_dir)): p.read_bytes() for p in run_dir.rglob("*")
            if p.is_file() and p.name != "train.log" and CHECKPOINTS not in p.parts}


@pytest.mark.slow
def test_a_folder_in_use_is_refused_in_one_line_naming_the_holder_and_nothing_is_touched(real_glue, tmp_path,
                                                                                            cache_dir):
    """The first run is made too long to end on its own (1000 epochs) and is stopped by the test
    once the second launch has been refused, so the check does not race the first run's end."""
    args = [*SHORT, "data.train_size=64", "trainer.max_epochs=1000", f"data.cache_dir={cache_dir}",
            f"hydra.run.dir={tmp_path}/run"]
    first = start(args, tmp_path, tmp_path / "first.log")
    try:
        wait_for(lambda: holds_lock(tmp_path / "run", first.pid) and (tmp_path / "run" / CONFIG).exists(),
                 first, "the first run held and claimed its folder")
        before = snapshot(tmp_path / "run")
        second = run_train(*args, cwd=tmp_path, check=False)
        assert first.poll() is None, (tmp_path / "first.log").read_text()[-3000:]
        assert second.returncode == 2 and "Traceback" not in out(second), out(second)
        [line] = error_lines(second)
        assert line.startswith(f"error: hydra.run.dir={tmp_path}/run: the folder is in use by process {first.pid} "
                               f"on {socket.gethostname()} (since "), line
        assert snapshot(tmp_path / "run") == before  # no launch line, no config, no failure written
        assert not (tmp_path / "run" / LAUNCHES).exists()
        first.send_signal(signal.SIGTERM)
        assert first.wait(timeout=SUBPROCESS_TIMEOUT) == 128 + signal.SIGTERM, \
            (tmp_path / "first.log").read_text()[-3000:]
    finally:
        first.kill()
    launches = RunFolder(tmp_path / "run").launches()
    assert [(e["outcome"], e["pid"]) for e in launches] == [("interrupted", first.pid)]  # only the holder's
    folder = RunFolder(tmp_path / "run")
    folder.lock()  # the lock died with its holder: the next launch gets it
    folder.unlock()


@pytest.mark.slow
def test_a_sweep_goes_on_past_refused_jobs_and_says_what_to_do_for_each_kind(real_glue, tmp_path, cache_dir):
    """Four jobs: one folder in use by another process (here: the test itself holds its lock), one
    holding a trained run with other settings, one failing, one that runs; the summary names each
    refusal and ends with what to do about the failed and the refused jobs."""
    sweep = tmp_path / "sweep"
    common = ["-m", *SHORT, "trainer.max_steps=2", f"data.cache_dir={cache_dir}", f"hydra.sweep.dir={sweep}",
              "hydra.sweep.subdir=s${seed}"]
    run_train(*common, "seed=2", "optimizer.lr=1e-3", cwd=tmp_path)  # s2: finished, other settings
    busy = RunFolder(sweep / "s1")
    busy.lock()
    try:
        proc = run_train(*common, "seed=1,2,-1,4", cwd=tmp_path, check=False)
    finally:
        busy.unlock()
    text = out(proc)
    assert proc.returncode != 0 and "Traceback" not in text, text
    assert ("1 finished, 1 failed, 1 refused (folder holds other settings), 1 refused (folder in use)") in text
    assert (f"refused: {sweep}/s1: hydra.sweep.dir={sweep}/s1: the folder is in use by process {os.getpid()} "
            f"on {socket.gethostname()}") in text
    assert "the folder holds a run with other settings: optimizer.lr=2e-05 (stored: 0.001)" in text
    assert f"mv {sweep}/s2 {sweep}/s2.old" in text
    [last] = error_lines(proc)
    assert last == ("error: 1 job(s) failed: re-run the same command to retry them; 2 job(s) refused: their folders "
                    "hold other settings or are in use (listed above): run them with their folders' own settings, "
                    "in another folder (hydra.sweep.dir=), after the process using a folder has ended, or move a "
                    "folder aside (mv <folder> <folder>.old)")
    assert sorted(p.name for p in (sweep / "s1").iterdir()) in ([LOCK], [LOCK, "train.log"])
    assert RunFolder(sweep / "s4").is_finished()
    assert json.loads((sweep / "s-1" / FAILED).read_text())["steps"] == 0


def test_a_run_that_stopped_before_training_gives_its_folder_to_the_next_settings(real_glue, tmp_path, cache_dir):
    """``trainer.accelerator=gpu`` on a machine without one fails before the first step; the same
    command with the right setting takes the folder over (its old .hydra/ kept aside)."""
    args = [*SHORT, "trainer.max_steps=2", f"data.cache_dir={cache_dir}", f"hydra.run.dir={tmp_path}/run"]
    run_dir = tmp_path / "run"
    run_dir.mkdir()  # there before the launch: kept (a folder the refused launch made itself is removed)
    from maxpoolbert.core.errors import UserError

    with pytest.raises(UserError) as failed:
        train_here(*args, "trainer.accelerator=gpu")
    assert "\n" not in str(failed.value)
    assert json.loads((run_dir / FAILED).read_text())["steps"] == 0
    assert [(e["outcome"], e["steps"]) for e in RunFolder(run_dir).launches()] == [("failed", 0)]
    train_here(*args)
    [line] = [line for line in (run_dir / "train.log").read_text().splitlines() if "take the folder over" in line]
    assert (f"hydra.run.dir={run_dir}: the run there stopped before its first training step; this launch's settings "
            "take the folder over: trainer.accelerator=auto (stored: gpu) (old settings kept in .hydra.replaced)") in line
    assert OmegaConf.load(run_dir / ".hydra.replaced" / "config.yaml").trainer.accelerator == "gpu"
    assert OmegaConf.load(run_dir / CONFIG).trainer.accelerator == "auto"
    assert [e["outcome"] for e in RunFolder(run_dir).launches()] == ["failed", "finished"]
    assert RunFolder(run_dir).is_finished() and not (run_dir / FAILED).exists()


@pytest.mark.parametrize(("overrides", "env", "error"), [
    ([], {"GLUE_DIR": ""}, "error: data.glue_dir=null: no data for task rte"),
    (["data.train_size=100000"], {}, "error: data.train_size=100000: more than the 2490 training rows of task rte"),
    (["pooling.module.k=5"], {}, "error: pooling.module.k=5: more than the encoder's 2 layers"),
], ids=["no_glue_dir", "train_size", "k"])
def test_a_run_refused_before_training_leaves_no_folder_but_keeps_one_with_earlier_work(real_glue, tmp_path,
                                                                                         cache_dir, overrides, env, error,
                                                                                         monkeypatch):
    from maxpoolbert.core.errors import UserError

    monkeypatch.chdir(tmp_path)  # the default folder: outputs/runs/<day>/... here
    for name, value in {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", **env}.items():
        monkeypatch.setenv(name, value)
    args = ["model=tiny", "logger=none", "speed.threads=1", f"data.cache_dir={cache_dir}", *overrides]
    with pytest.raises(UserError) as fresh:
        train_here(*args)
    assert f"error: {fresh.value}".startswith(error) and "\n" not in str(fresh.value)
    assert not (tmp_path / "outputs").exists()  # nor outputs/runs/<day>/, made by this launch too
    earlier = tmp_path / "earlier"
    earlier.mkdir()
    (earlier / "notes.txt").write_text("mine\n")
    with pytest.raises(UserError) as kept:
        train_here(*args, f"hydra.run.dir={earlier}")
    assert f"error: {kept.value}".startswith(error)
    assert (earlier / "notes.txt").read_text() == "mine\n" and (earlier / FAILED).is_file()


def compose_job(*overrides: str):
    """A job config and its Hydra config, as a single run gets them."""
    from hydra.core.global_hydra import GlobalHydra

    GlobalHydra.instance().clear()
    with initialize_config_dir(str(ROOT / "configs"), version_base="1.3"):
        cfg = compose("config", overrides=["model=tiny", *overrides], return_hydra_config=True)
    cfg.hydra.mode = "RUN"
    job = cfg.copy()
    with open_dict(job):
        del job["hydra"]
    return job, cfg.hydra


@pytest.mark.parametrize(("launches", "checkpoint", "taken_over"), [
    ([{"outcome": "failed", "steps": 0}], False, True),
    ([{"outcome": "interrupted", "steps": 0}, {"outcome": "refused"}], False, True),
    ([{"outcome": "failed", "error": "UserError: trainer.devices=1, ..."}], False, True),  # an older version's line
    ([{"outcome": "failed", "steps": 3}], False, False),
    ([{"outcome": "failed", "steps": 0}, {"outcome": "interrupted", "steps": 5}], False, False),
    ([{"outcome": "failed", "error": "RuntimeError: out of memory"}], False, False),  # older: may have trained
    ([], False, False),  # started, then killed: nothing says how far it got
    ([{"outcome": "failed", "steps": 0}], True, False),
], ids=["failed-at-0", "interrupted-at-0", "old-user-error", "failed-at-3", "trained-later", "old-other-error",
        "no-launch-recorded", "holds-a-checkpoint"])
def test_only_a_folder_that_never_trained_is_taken_over(tmp_path, launches, checkpoint, taken_over):
    folder = RunFolder(tmp_path / "run")
    old, hydra_cfg = compose_job("optimizer.lr=1e-3")
    folder.claim(old, hydra_cfg)
    for entry in launches:
        folder.record_launch(**entry)
    if checkpoint:
        folder.checkpoints.mkdir()
        (folder.checkpoints / LAST_CKPT).write_bytes(b"x")
    new, _ = compose_job()
    if taken_over:
        assert folder.claim(new, hydra_cfg) is True
        assert OmegaConf.load(folder.config_file).optimizer.lr == new.optimizer.lr
        assert OmegaConf.load(tmp_path / "run" / ".hydra.replaced" / "config.yaml").optimizer.lr == 1e-3
    else:
        stored = folder.config_file.read_bytes()
        with pytest.raises(RunFolderConflict) as info:
            folder.claim(new, hydra_cfg)
        assert str(info.value).endswith(f"relaunch with the folder's own settings, choose another folder "
                                        f"(hydra.run.dir=), or move the old run aside: mv {folder.path} {folder.path}.old")
        assert folder.config_file.read_bytes() == stored and not (tmp_path / "run" / ".hydra.replaced").exists()
    assert [e["outcome"] for e in folder.launches()] == [e["outcome"] for e in launches]  # the record stays


def test_the_lock_is_the_processes_and_dies_with_its_holder(tmp_path):
    folder = RunFolder(tmp_path / "run")
    holder = subprocess.Popen([sys.executable, "-c", (
        "import sys, time; from maxpoolbert.runs.folder import RunFolder; RunFolder(sys.argv[1]).lock(); "
        "print('locked', flush=True); time.sleep(600)"), str(folder.path)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(RunFolderBusy):
            folder.lock()
        assert folder.in_use("hydra.run.dir").startswith(
            f"hydra.run.dir={folder.path}: the folder is in use by process {holder.pid} on {socket.gethostname()}")
    finally:
        holder.send_signal(signal.SIGKILL)  # no chance to clean up: the kernel lets the lock go
        holder.wait()
    folder.lock()
    assert json.loads(folder.lock_file.read_text())["pid"] == os.getpid()
    other = RunFolder(tmp_path / "run")
    with pytest.raises(RunFolderBusy):  # a second open file in this process is another holder
        other.lock()
    folder.unlock()
    other.lock()
    other.unlock()


# ---------------------------------------------------------------------------- writes that fail
def run_failing(kind: str, overrides: list[str], cwd: Path):
    return subprocess.run([sys.executable, str(ROOT / "tests" / "fail_writes.py"), kind, str(ROOT / "train.py"),
                           *overrides], cwd=cwd, env={**os.environ, "HYDRA_FULL_ERROR": "0"}, capture_output=True,
                          text=True, timeout=SUBPROCESS_TIMEOUT)


WRITE_ERROR = re.compile(r"error: cannot write (\S+): No space left on device \(ENOSPC\); [0-9.]+ [kMGT]?B free on "
                         r"its filesystem; free some space, then relaunch: it (.+?): (\S+ \S+train\.py .+)$")


@pytest.mark.slow
@pytest.mark.parametrize(("kind", "file", "then"), [
    ("checkpoint", f"{CHECKPOINTS}/{LAST_CKPT}", "starts the run again (no checkpoint)"),
    ("results", RESULTS, f"resumes from {CHECKPOINTS}/{LAST_CKPT} (saved after epoch 1, step 2)"),
])
def test_a_write_that_fails_for_want_of_space_is_one_line_and_a_relaunch_goes_on(real_glue, tmp_path, cache_dir, kind,
                                                                                file, then):
    run_dir = tmp_path / "run"
    args = [*SHORT, f"data.cache_dir={cache_dir}", f"hydra.run.dir={run_dir}"]
    proc = run_failing(kind, args, tmp_path)
    assert proc.returncode == 2 and "Traceback" not in out(proc), out(proc)[-3000:]
    [line] = error_lines(proc)
    match = WRITE_ERROR.match(line)
    assert match, line
    assert match.groups() == (str(run_dir / file), then, shlex.join([python_named(), str(ROOT / "train.py"), *args]))
    assert not (run_dir / file).exists() and not leftovers(run_dir)  # no part under the final name, no temporary
    failure = json.loads((run_dir / FAILED).read_text())
    assert failure["steps"] == (2 if kind == "checkpoint" else 4) and failure["user_error"]
    relaunched = run_train(*args, cwd=tmp_path)
    assert ("resuming from" in out(relaunched)) == (kind == "results")
    assert RunFolder(run_dir).is_finished()
    assert [e["outcome"] for e in RunFolder(run_dir).launches()] == ["failed", "finished"]


@pytest.mark.slow
def test_failed_weights_leave_a_finished_run_whose_record_says_so(real_glue, tmp_path, cache_dir):
    run_dir = tmp_path / "run"
    args = [*SHORT, "trainer.max_steps=2", "save_model=true", f"data.cache_dir={cache_dir}", f"hydra.run.dir={run_dir}"]
    proc = run_failing("weights", args, tmp_path)
    assert proc.returncode == 0 and not error_lines(proc), out(proc)[-3000:]
    [warning] = [line for line in out(proc).splitlines() if "[maxpoolbert][WARNING]" in line]
    assert (f"cannot write {run_dir}/{MODEL}: No space left on device (ENOSPC);") in warning
    assert ("the run's results are written, its weights are not (results.json: weights missing); free some space, "
            "then train again with skip_finished=false to get them") in warning
    record = RunFolder(run_dir).record()
    assert record is not None and record.weights == "missing" and record.steps == 2
    assert not (run_dir / MODEL).exists() and not leftovers(run_dir)
    assert (run_dir / PREDICTIONS).exists()
    assert RunFolder(run_dir).launches()[-1]["weights"] == "missing"
    predict = subprocess.run([sys.executable, "-m", "maxpoolbert.predict", str(run_dir)], cwd=tmp_path,
                             capture_output=True, text=True, timeout=SUBPROCESS_TIMEOUT)
    assert predict.returncode == 2
    assert error_lines(predict) == [f"error: {run_dir} has no {MODEL}: writing it failed after the results "
                                    "(results.json: weights missing); train again with skip_finished=false to get them"]


@pytest.mark.slow
def test_a_full_disk_stops_the_run_in_one_line_through_lightning_and_a_relaunch_finishes(real_glue, small_disk,
                                                                                       tmp_path, cache_dir):
    run_dir = small_disk / "run"
    args = [*SHORT, f"data.cache_dir={cache_dir}", f"hydra.run.dir={run_dir}"]
    proc = run_train(*args, cwd=tmp_path, check=False)
    assert proc.returncode == 2 and "Traceback" not in out(proc), out(proc)[-3000:]
    [line] = error_lines(proc)
    match = WRITE_ERROR.match(line)
    assert match and match.groups()[:2] == (f"{run_dir}/{CHECKPOINTS}/{LAST_CKPT}",
                                            "starts the run again (no checkpoint)"), line
    assert match.group(3).endswith(f"hydra.run.dir={run_dir}"), line
    assert not leftovers(run_dir) and not (run_dir / CHECKPOINTS / LAST_CKPT).exists()
    subprocess.run(["mount", "-o", "remount,size=64m", str(small_disk)], check=True)  # space freed
    run_train(*args, cwd=tmp_path)
    assert RunFolder(run_dir).is_finished()


def test_write_failures_name_the_file_and_remove_the_temporary(tmp_path, monkeypatch):
    """The writers, each failing as it does on a full disk: one WriteFailed, nothing left."""
    import errno

    from maxpoolbert.core.errors import WriteFailed
    from maxpoolbert.training.checkpointing import AtomicCheckpointIO

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    folder = RunFolder(tmp_path)
    with monkeypatch.context() as m:
        m.setattr(os, "fsync", full)
        with pytest.raises(WriteFailed, match=rf"^cannot write {tmp_path}/results.json: No space left on device "
                                              r"\(ENOSPC\); [0-9.]+ [kMGT]?B free on its filesystem; free some space$"):
            write_json_atomic(folder.results, {"a": 1})
    assert list(tmp_path.iterdir()) == []

    def torch_save(obj, f, *args, **kwargs):
        f.write(b"PK partial")
        try:
            full()
        except OSError:
            raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 704 vs 598")  # noqa: B904
    with monkeypatch.context() as m:
        m.setattr(torch, "save", torch_save)
        with pytest.raises(WriteFailed, match="last.ckpt: No space left on device"):
            AtomicCheckpointIO().save_checkpoint({}, tmp_path / "checkpoints" / LAST_CKPT)
    assert list((tmp_path / "checkpoints").iterdir()) == []

    import safetensors.torch

    def save_model(model, filename, *args, **kwargs):
        Path(filename).write_bytes(b"part")
        raise RuntimeError("Error while serializing: I/O error: Disk quota exceeded (os error 122)")
    monkeypatch.setattr(safetensors.torch, "save_model", save_model)
    with pytest.raises(WriteFailed, match=r"model.safetensors: Disk quota exceeded \(EDQUOT\)"):
        folder.save_weights(torch.nn.Linear(2, 2))
    assert [p.name for p in tmp_path.iterdir()] == ["checkpoints"]


# ---------------------------------------------------------------------------- interruptions
@pytest.mark.slow
@pytest.mark.parametrize(("sig", "when", "then"), [
    (signal.SIGINT, "checkpoint", f"resumes from {CHECKPOINTS}/{LAST_CKPT} (saved after epoch 1, step 2)"),
    (signal.SIGTERM, "lock", "starts the run again (no checkpoint)"),
])
def test_an_interrupted_launch_is_recorded_and_says_what_a_relaunch_does(real_glue, tmp_path, cache_dir, sig, when,
                                                                         then):
    run_dir = tmp_path / "run"
    args = [*SHORT, "trainer.max_epochs=3", f"data.cache_dir={cache_dir}", f"hydra.run.dir={run_dir}"]
    proc = start(args, tmp_path, tmp_path / "run.log")
    try:
        if when == "checkpoint":
            wait_for(lambda: (run_dir / CHECKPOINTS / LAST_CKPT).exists(), proc, "the first checkpoint")
        else:
            wait_for(lambda: holds_lock(run_dir, proc.pid), proc, "the run held its folder")
        proc.send_signal(sig)
        assert proc.wait(timeout=SUBPROCESS_TIMEOUT) == 128 + sig
    finally:
        proc.kill()
    text = (tmp_path / "run.log").read_text()
    assert "Traceback" not in text, text[-3000:]
    [line] = [line for line in text.splitlines() if "interrupted (" in line]
    steps = RunFolder(run_dir).launches()[-1]["steps"]
    command = shlex.join([python_named(), str(ROOT / "train.py"), *args])
    assert line.endswith(f"interrupted ({sig.name}) at step {steps}: relaunching {then}: {command}"), line
    assert (steps >= 2) == (when == "checkpoint")
    assert [e["outcome"] for e in RunFolder(run_dir).launches()] == ["interrupted"]
    assert not (run_dir / FAILED).exists() and not leftovers(run_dir)
    relaunched = run_train(*args, cwd=tmp_path)
    assert ("resuming from" in out(relaunched)) == (when == "checkpoint")
    assert [e["outcome"] for e in RunFolder(run_dir).launches()] == ["interrupted", "finished"]


def python_named() -> str:
    """How a relaunch command names this interpreter: ``python`` when that is it on the PATH."""
    found = shutil.which("python")
    return "python" if found and os.path.realpath(found) == os.path.realpath(sys.executable) else sys.executable


@pytest.mark.slow
def test_ctrl_c_names_the_exact_command_that_resumes_to_the_uninterrupted_predictions(straight, tmp_path, cache_dir):
    """No hydra.run.dir: the folder is new at each launch (a timestamp), so the same command would
    start again; the message names the command with the folder, and that command resumes."""
    args = [*RESUMABLE, f"data.cache_dir={cache_dir}"]
    proc = start(args, tmp_path, tmp_path / "run.log")
    try:
        wait_for(lambda: any(tmp_path.glob(f"outputs/runs/*/*/{CHECKPOINTS}/{LAST_CKPT}")), proc,
                 "the first checkpoint")
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=SUBPROCESS_TIMEOUT) == 128 + signal.SIGINT
    finally:
        proc.kill()
    [run_dir] = tmp_path.glob("outputs/runs/*/*")
    text = (tmp_path / "run.log").read_text()
    assert text.index(f"run folder: {run_dir}") < text.index("interrupted ("), text[-3000:]
    [line] = [line for line in text.splitlines() if "interrupted (" in line]
    hint = f"resumes from {CHECKPOINTS}/{LAST_CKPT} (saved after epoch 1, step {STEPS_PER_EPOCH})"
    command = shlex.join([python_named(), str(ROOT / "train.py"), *args, f"hydra.run.dir={run_dir}"])
    assert line.endswith(f"interrupted (SIGINT) at step {STEPS_PER_EPOCH}: relaunching {hint}: {command}"), line
    relaunched = subprocess.run(shlex.split(line.rpartition(f"{hint}: ")[2]), cwd=tmp_path, capture_output=True,
                                text=True, timeout=SUBPROCESS_TIMEOUT, env={**os.environ, "HYDRA_FULL_ERROR": "0"})
    assert relaunched.returncode == 0 and "resuming from" in out(relaunched), out(relaunched)[-3000:]
    assert f"run folder: {run_dir} (results.json, {PREDICTIONS})" in out(relaunched)
    assert list(tmp_path.glob("outputs/runs/*/*")) == [run_dir]
    same_run(run_dir, straight)  # dev predictions byte-identical to the uninterrupted run's


def test_interruption_takes_over_only_signals_at_their_default():
    """Ctrl-C and SIGTERM at their defaults become a recorded interruption; a SIGTERM someone else
    handles (submitit lets it pass, to requeue on the next signal) or ignores is left alone."""
    from maxpoolbert.training.trainer import Interruption

    def theirs(signum, frame):
        pass

    saved = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        signal.signal(signal.SIGINT, signal.default_int_handler)
        for other in (theirs, signal.SIG_IGN):
            signal.signal(signal.SIGTERM, other)
            with Interruption() as interruption:
                assert signal.getsignal(signal.SIGTERM) is other
                with pytest.raises(KeyboardInterrupt):
                    signal.raise_signal(signal.SIGINT)
            assert interruption.signal == signal.SIGINT
            assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        with Interruption() as interruption:
            with pytest.raises(KeyboardInterrupt):
                signal.raise_signal(signal.SIGTERM)
        assert interruption.signal == signal.SIGTERM and signal.getsignal(signal.SIGTERM) is signal.SIG_DFL
    finally:
        for sig, handler in saved.items():
            signal.signal(sig, handler)


# ---------------------------------------------------------------------------- finished means complete
@pytest.mark.slow
def test_a_kill_while_the_weights_are_written_leaves_a_run_that_the_relaunch_completes(real_glue, tmp_path,
                                                                                         cache_dir):
    """results.json comes after the weights: a run killed while writing them is not finished, and
    the relaunch completes it (weights saved, checkpoints gone), never a finished run without
    weights for good."""
    run_dir = tmp_path / "run"
    args = [*SHORT, "save_model=true", f"data.cache_dir={cache_dir}", f"hydra.run.dir={run_dir}"]
    proc = run_failing("kill-weights", args, tmp_path)
    assert proc.returncode == -signal.SIGKILL, out(proc)[-3000:]
    folder = RunFolder(run_dir)
    assert not folder.is_finished() and not (run_dir / RESULTS).exists()
    run_train(*args, cwd=tmp_path)
    record = folder.record()
    assert record is not None and record.weights == "saved" and (run_dir / MODEL).stat().st_size > 1000
    assert not folder.checkpoints.exists() and not leftovers(run_dir)


def test_a_skipped_relaunch_removes_the_checkpoints_a_finished_run_left(real_glue, tmp_path, cache_dir):
    """A run killed after its results, before its checkpoints went (here: kept by the first
    launch), loses them at the next launch that finds it finished, unless checkpoint.keep=true."""
    run_dir = tmp_path / "run"
    args = [*SHORT, f"data.cache_dir={cache_dir}", f"hydra.run.dir={run_dir}"]
    train_here(*args, "checkpoint.keep=true")
    assert (run_dir / CHECKPOINTS / LAST_CKPT).exists()
    train_here(*args, "checkpoint.keep=true")
    assert (run_dir / CHECKPOINTS / LAST_CKPT).exists()
    train_here(*args)
    assert [e["outcome"] for e in RunFolder(run_dir).launches()] == ["finished", "skipped", "skipped"]
    assert not (run_dir / CHECKPOINTS).exists()


@pytest.mark.slow
def test_a_failed_rerun_of_a_finished_run_keeps_its_results_and_the_run_finished(real_glue, tmp_path, cache_dir):
    """skip_finished=false on a finished run that then fails: the earlier results stay the run's
    (the report shows them, later launches skip it); the failure is recorded apart."""
    from maxpoolbert.report.collect import collect_runs

    run_dir = tmp_path / "run"
    args = [*SHORT, f"data.cache_dir={cache_dir}", f"hydra.run.dir={run_dir}"]
    run_train(*args, cwd=tmp_path)
    before = (run_dir / RESULTS).read_bytes()
    proc = run_failing("checkpoint", [*args, "skip_finished=false"], tmp_path)
    assert proc.returncode == 2, out(proc)[-3000:]
    assert "the earlier results in results.json stay the run's" in out(proc)
    folder = RunFolder(run_dir)
    assert (run_dir / RESULTS).read_bytes() == before and folder.failure() is None
    assert not (run_dir / FAILED).exists() and (run_dir / RERUN_FAILED).exists()
    runs, skipped = collect_runs(tmp_path)
    assert len(runs) == 1 and not skipped
    run_train(*args, cwd=tmp_path)
    assert [e["outcome"] for e in folder.launches()] == ["finished", "failed", "skipped"]


def test_a_failed_json_beside_usable_results_is_a_failed_rerun_of_a_finished_run(tmp_path):
    """Folders older versions left after a failed re-run: the run is finished, not failed."""
    folder = RunFolder(tmp_path / "run")
    folder.path.mkdir()
    (folder.path / RESULTS).write_text(json.dumps(
        {"task": "rte", "pooling": "cls", "model": "tiny", "seed": 1, "metrics": {"accuracy": 0.6}, "score": 0.6,
         "settings": {}, "settings_id": "x"}))
    (folder.path / FAILED).write_text(json.dumps({"error": "RuntimeError: boom"}))
    assert folder.is_finished() and folder.failure() is None
    (folder.path / RESULTS).unlink()
    assert folder.failure() == "RuntimeError: boom"


def test_a_pickled_payload_in_a_checkpoint_is_refused_and_never_run(tmp_path):
    """Checkpoints load with weights_only=True: an object pickled into last.ckpt is refused in one
    line naming the file (set aside at a relaunch), never run, by the relaunch and its hint."""
    from .hostile import plant_checkpoint

    marker = tmp_path / "ran"
    folder = RunFolder(tmp_path / "run")
    ckpt = plant_checkpoint(folder.checkpoints / LAST_CKPT, marker)
    problem = checkpoint_problem(ckpt)
    assert problem == "it holds objects other than tensors and plain values, which are never unpickled"
    assert checkpoint_position(ckpt) is None
    assert folder.relaunch_hint() == "starts the run again (no checkpoint)"
    assert folder.resume_checkpoint() is None
    assert (folder.checkpoints / (LAST_CKPT + CORRUPT)).exists() and not ckpt.exists()
    assert not marker.exists()


@pytest.mark.parametrize("umask", [0o022, 0o027])
def test_the_weights_have_the_permissions_of_new_files(umask, tmp_path):
    """model.safetensors as every other file of the run: the permissions the umask gives new files
    (safetensors writes 0600)."""
    folder = RunFolder(tmp_path)
    before = os.umask(umask)
    try:
        folder.save_weights(torch.nn.Linear(2, 2))
        write_atomic(tmp_path / "other.txt", "x")
    finally:
        os.umask(before)
    assert (folder.model_file.stat().st_mode & 0o777) == (tmp_path / "other.txt").stat().st_mode & 0o777 \
        == 0o666 & ~umask


def test_a_stored_pooling_target_is_read_without_importing_its_package(tmp_path, monkeypatch):
    """A run's settings complete its pooling's options from the class's source, read without
    importing anything: a stored config naming a package never runs its ``__init__``."""
    marker = tmp_path / "ran"
    package = tmp_path / "lib" / "hostile_pkg"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text(f"open({str(marker)!r}, 'w')\n")
    (package / "pooling.py").write_text("class P:\n    def __init__(self, encoder_config, k: int = 3):\n        pass\n")
    monkeypatch.syspath_prepend(str(tmp_path / "lib"))
    values = identity.settings({"pooling": {"name": "p", "module": {"_target_": "hostile_pkg.pooling.P"}}}, neutral=())
    assert values["pooling.module.k"] == 3 and not marker.exists()
    assert identity.settings({"pooling": {"module": {"_target_": "maxpoolbert.model.pooling.MHAPooling"}}},
                           neutral=())["pooling.module.num_heads"] == 4


# ---------------------------------------------------------------------------- predictions bound to their data (issue 27)
COMMITTED_RTE = ROOT / "docs" / "results" / "runs" / "minilm_l6" / "rte" / "n500" / "maxpool_mha" / "lr5e-05" / "seed1"


def _other_copy(real_glue: Path, root: Path, edit) -> Path:
    """A GLUE folder whose RTE dev.tsv is ``edit(lines)`` of the real one (header kept)."""
    glue = root / "glue"
    (glue / "RTE").mkdir(parents=True)
    (glue / "RTE" / "train.tsv").symlink_to(real_glue / "RTE" / "train.tsv")
    lines = (real_glue / "RTE" / "dev.tsv").read_text().splitlines(keepends=True)
    (glue / "RTE" / "dev.tsv").write_text(lines[0] + "".join(edit(lines[1:])))
    return glue


def _flip_labels(lines: list[str], every: int = 3) -> list[str]:
    flip = {"entailment": "not_entailment", "not_entailment": "entailment"}
    out = []
    for i, line in enumerate(lines):
        head, _, label = line.rstrip("\n").rpartition("\t")
        out.append(f"{head}\t{flip[label] if i % every == 0 else label}\n")
    return out


@pytest.mark.skipif(not COMMITTED_RTE.is_dir(), reason="no committed study in docs/results/runs")
@pytest.mark.parametrize(("edit", "fingerprinted", "text"), [
    (lambda lines: lines[:200], False, "has a dev row 200, the rte dev file of the data folder has only 200 rows"),
    (_flip_labels, False, "accuracy recomputed from its rows is "),
    (_flip_labels, True, "the dev gold labels differ from those the run was scored on"),
    (lambda lines: lines[1:] + lines[:1], True, "the dev gold labels differ from those the run was scored on"),
])
def test_archived_predictions_are_checked_against_the_labels_read_back(real_glue, tmp_path, monkeypatch, edit,
                                                                       fingerprinted, text):
    """Another copy of the data under GLUE_DIR (shorter: an IndexError traceback; relabelled or
    reordered: a silently different score) is refused in one line naming the run: by the record's
    fingerprint of the labels when it keeps one, else by the metric recomputed from the rows."""
    run = tmp_path / "run"
    shutil.copytree(COMMITTED_RTE, run)
    folder = RunFolder(run)
    if fingerprinted:
        data = json.loads(folder.results.read_text())
        data["dev_data"] = {"dev": run_record.fingerprint(folder.predictions()["label"].tolist())}
        folder.results.write_text(json.dumps(data))
    assert len(folder.predictions()) == 277  # the real data: fine
    monkeypatch.setenv("GLUE_DIR", str(_other_copy(real_glue, tmp_path, edit)))
    with pytest.raises(ValueError) as err:
        folder.predictions()
    message = str(err.value)
    assert message.startswith(f"{run}: ") and text in message and "\n" not in message, message


def test_predictions_with_other_rows_than_the_record_are_refused(tmp_path):
    """A dev_predictions.tsv with extra or missing rows is not what the record was scored on."""
    folder = RunFolder(tmp_path)
    rows = [("dev", i, i % 2, (i // 2) % 2) for i in range(8)]
    write = lambda rs: folder.predictions_file.write_text(  # noqa: E731
        "split\tindex\tlabel\tprediction\n" + "".join(f"{s}\t{i}\t{y}\t{p}\n" for s, i, y, p in rs))
    accuracy = sum(y == p for _, _, y, p in rows) / len(rows)
    folder.results.write_text(json.dumps({"task": "rte", "pooling": "cls", "model": "m", "seed": 1,
                                          "metrics": {"accuracy": accuracy}, "score": accuracy, "settings": {},
                                          "n_dev": {"dev": 8}, "dev_data": {"dev": run_record.fingerprint([r[2] for r in rows])}}))
    write(rows)
    assert len(folder.predictions()) == 8
    for changed, text in [(rows + [("dev", 8, 1, 1)], "has 9 dev rows, the run was scored on 8"),
                          (rows[:6], "has 6 dev rows, the run was scored on 8"),
                          ([(s, i, 1 - y, p) for s, i, y, p in rows], "the dev gold labels differ")]:
        write(changed)
        with pytest.raises(ValueError, match=re.escape(text)):
            folder.predictions()
        assert folder.predictions(check=False) is not None


def test_the_fingerprint_of_labels_does_not_depend_on_float_noise():
    import numpy as np

    assert run_record.fingerprint([3.8, 1.0]) == run_record.fingerprint(np.array([3.8, 1.0], dtype=np.float32))
    assert run_record.fingerprint([1, 0]) == run_record.fingerprint([1.0, 0.0])
    assert run_record.fingerprint([1, 0]) != run_record.fingerprint([0, 1])
    assert run_record.fingerprint([1, 0])["rows"] == 2


@pytest.mark.slow
def test_a_full_disk_when_the_run_folder_is_claimed_is_one_line(real_glue, tmp_path):
    """The disk is full from the start: claiming the folder fails, and so does writing failed.json;
    that second WriteFailed escaped as a chained traceback."""
    proc = run_failing("full", ["model=tiny", "logger=none", "data.cache_dir=null", "speed.threads=1",
                                f"hydra.run.dir={tmp_path}/run"], tmp_path)
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
    [line] = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    found = WRITE_ERROR.fullmatch(line)
    assert found and found.group(1) == f"{tmp_path}/run/.hydra/hydra.yaml", line
    assert not (tmp_path / "run" / FAILED).exists() and not (tmp_path / "run" / CONFIG).exists()


# ---------------------------------------------------------------------------- the record's format
COMMITTED_RUNS = ROOT / "docs" / "results" / "runs"


def _record(**more) -> dict:
    return {"task": "rte", "pooling": "cls", "model": "tiny", "seed": 1, "metrics": {"accuracy": 0.6},
            "score": 0.6, **more}


def test_every_record_written_carries_the_format_version():
    record = RunRecord.from_json(_record(settings={"optimizer.lr": 2e-5}, settings_id="x"))
    assert record.to_json()["format"] == FORMAT == 2
    again = RunRecord.from_json(json.loads(json.dumps(record.to_json())))
    assert again.to_json() == record.to_json()  # a record of this format reads back as it was written


@pytest.mark.skipif(not COMMITTED_RUNS.is_dir(), reason="no committed study in docs/results/runs")
def test_records_without_a_format_are_upgraded_by_one_path_keeping_their_identity(tmp_path):
    """The committed runs (format 1: settings, no ``format``) read as format 2 with their stored
    identity; a format-0 record (no settings) gets them from its stored config, else its hparams."""
    paths = sorted(COMMITTED_RUNS.rglob(RESULTS))
    assert len(paths) == 160
    for path in paths:
        stored = json.loads(path.read_text())
        assert "format" not in stored
        upgraded = upgrade(stored)
        assert upgraded["format"] == 2 and upgraded["settings_id"] == stored["settings_id"]
        assert upgraded["settings"] == stored["settings"] and "format" not in stored  # the payload is not changed
    # format 0: the first committed run without its settings, its task_info and settings_id
    source = paths[0].parent
    old = {k: v for k, v in json.loads(paths[0].read_text()).items() if k not in ("settings", "settings_id",
                                                                                  "task_info")}
    shutil.copytree(source, tmp_path / "run")
    (tmp_path / "run" / RESULTS).write_text(json.dumps(old))
    record = RunFolder(tmp_path / "run").record()
    assert record.format == 2 and record.settings_id == json.loads(paths[0].read_text())["settings_id"]
    assert record.task_info == RunRecord.from_json(json.loads(paths[0].read_text())).task_info
    bare = RunRecord.from_json(_record(hparams={"lr": 1e-4, "pooling.k": 2}))
    assert bare.settings == {"optimizer.lr": 1e-4, "pooling.module.k": 2}
    assert bare.settings_id == identity.settings_id(bare.settings) and bare.task_info.metrics == ("accuracy",)


@pytest.mark.parametrize("version", [True, "2", 1.5, -1])
def test_a_format_that_is_no_version_number_is_a_corrupt_record(tmp_path, version):
    folder = RunFolder(tmp_path)
    folder.results.write_text(json.dumps(_record(format=version, settings={}, settings_id="x")))
    record, why = folder.read()
    assert record is None and why.kind == "corrupt" and "not a version number" in str(why)


def test_a_newer_format_is_refused_in_one_line_naming_the_file_and_the_version(real_glue, tmp_path, cache_dir,
                                                                               capsys):
    """A record a newer version wrote is never guessed at: the report lists it (file, version), a
    relaunch in its folder is refused in one line and changes nothing there, predict refuses it."""
    from maxpoolbert.core.errors import UserError
    from maxpoolbert.predict import main as predict
    from maxpoolbert.report.collect import collect_runs

    args = [*SHORT, f"data.cache_dir={cache_dir}", f"hydra.run.dir={tmp_path}/runs/run"]
    train_here(*args)
    folder = RunFolder(tmp_path / "runs" / "run")
    stored = json.loads(folder.results.read_text())
    assert stored["format"] == FORMAT
    folder.results.write_text(json.dumps({**stored, "format": 3, "new_key": [1]}))
    before = {p.name: p.read_bytes() for p in folder.path.iterdir() if p.is_file() and p.name not in (LAUNCHES, LOCK)}

    record, why = folder.read()
    line = f"{folder.results}: format 3: written by a newer version of maxpoolbert (this one reads formats up to 2)"
    assert record is None and str(why).startswith(line) and folder.is_finished() and folder.failure() is None
    runs, skipped = collect_runs(tmp_path / "runs")
    assert runs.empty and skipped == [{"path": "run", "reason": f"newer format: {why}"}]
    with pytest.raises(UserError) as refused:
        train_here(*args)
    assert "\n" not in str(refused.value)
    assert str(refused.value).startswith(f"hydra.run.dir={folder.path}: its results.json is format 3, written by a "
                                         "newer version of maxpoolbert (this one reads formats up to 2)")
    with pytest.raises(RunFolderConflict, match="format 3"):  # a sweep's job: its claim, the same refusal
        folder.claim(folder.config(), folder.job())
    assert before == {p.name: p.read_bytes() for p in folder.path.iterdir()
                      if p.is_file() and p.name not in (LAUNCHES, LOCK)}
    assert [e["outcome"] for e in folder.launches()] == ["finished", "refused"]
    capsys.readouterr()
    with pytest.raises(SystemExit) as ended:
        predict([str(folder.path), "--out", str(tmp_path / "sub")])
    assert ended.value.code == 2 and capsys.readouterr().err.strip().splitlines() == [f"error: {why}"]
