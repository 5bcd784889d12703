"""Run folders that can be trusted: experiment presets that apply, kills at any moment that a
relaunch recovers from, broken files that are set aside and counted, one run per folder."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from maxpoolbert import rundir

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


def lookup(cfg: dict, path: tuple):
    for part in path:
        assert isinstance(cfg, dict) and part in cfg, f"{'.'.join(path)} is missing from the composed config"
        cfg = cfg[part]
    return cfg


# ---------------------------------------------------------------------------- experiment presets
@pytest.mark.parametrize(("group", "name"), PRESETS)
def test_experiment_preset_wins_for_every_key_it_sets(group, name, tmp_path):
    """Compose through the real command line (``--cfg job`` and ``--cfg hydra``) and find every
    value the preset sets, unchanged, and every group it overrides chosen."""
    preset = OmegaConf.to_container(OmegaConf.load(ROOT / "configs" / group / f"{name}.yaml"))
    defaults = preset.pop("defaults", [])
    job = yaml.safe_load(run_train(f"{group}={name}", "--cfg", "job", cwd=tmp_path).stdout)
    hydra = yaml.safe_load(run_train(f"{group}={name}", "--cfg", "hydra", cwd=tmp_path).stdout)
    composed = {**job, **hydra}
    keys = flat(preset)
    assert keys, f"experiment {name} sets nothing"
    for key, value in keys.items():
        assert lookup(composed, key) == value, f"experiment={name}: {'.'.join(key)} is not the preset's value"
    for entry in defaults:
        for group, choice in (entry.items() if isinstance(entry, dict) else []):
            group = group.removeprefix("override ").strip("/")
            assert hydra["hydra"]["runtime"]["choices"][group] == choice, f"experiment={name}: {group}"


def test_glue_grid_writes_its_folders_and_a_relaunch_skips_every_finished_job(real_glue, tmp_path, cache_dir):
    args = ["experiment=glue_grid", "model=tiny", "task=rte,mrpc", "pooling=cls,max_cls", "seed=1",
            "data.train_size=32", "trainer.max_steps=2", "logger=none", "trainer.enable_progress_bar=false",
            f"data.cache_dir={cache_dir}"]
    first = run_train(*args, cwd=tmp_path)
    found = sorted(p.parent.relative_to(tmp_path) for p in tmp_path.rglob(rundir.RESULTS))
    assert [str(p) for p in found] == [f"outputs/glue_grid/tiny/{t}/{p}/seed1"
                                       for t in ("mrpc", "rte") for p in ("cls", "max_cls")]
    assert "4 finished, 0 failed" in out(first)
    for folder in found:
        results = json.loads((tmp_path / folder / rundir.RESULTS).read_text())
        assert results["n_train"] == 32 and results["steps"] == 2
        assert not (tmp_path / folder / rundir.MODEL).exists()  # the preset's save_model: false
    stamps = {p: p.stat().st_mtime_ns for p in tmp_path.rglob(rundir.RESULTS)}
    again = run_train(*args, cwd=tmp_path)
    assert {p: p.stat().st_mtime_ns for p in tmp_path.rglob(rundir.RESULTS)} == stamps
    assert "0 finished, 4 skipped (already finished), 0 failed" in out(again)
    assert not (tmp_path / "outputs" / "multirun").exists()
    # The same folders with a setting that changes the runs: every job refuses, nothing is touched.
    configs = {p: p.read_bytes() for p in tmp_path.rglob("config.yaml")}
    changed = run_train(*args, "optimizer.lr=1e-3", cwd=tmp_path, check=False)
    assert changed.returncode != 0
    assert "0 finished, 0 failed, 4 refused (folder holds other settings)" in out(changed)
    assert "optimizer.lr=0.001 (stored: 2e-05)" in out(changed)
    assert {p: p.stat().st_mtime_ns for p in tmp_path.rglob(rundir.RESULTS)} == stamps
    assert {p: p.read_bytes() for p in tmp_path.rglob("config.yaml")} == configs


def test_smoke_trains_on_64_rows_and_writes_no_weights(real_glue, tmp_path, cache_dir):
    run_train("experiment=smoke", f"data.cache_dir={cache_dir}", f"hydra.run.dir={tmp_path}/run", cwd=tmp_path)
    results = json.loads((tmp_path / "run" / rundir.RESULTS).read_text())
    assert results["n_train"] == 64 and results["model"] == "tiny" and results["steps"] == 2
    assert not (tmp_path / "run" / rundir.MODEL).exists()


# ---------------------------------------------------------------------------- kills and damage
@pytest.fixture(scope="module")
def straight(real_glue, tmp_path_factory, cache_dir) -> Path:
    """The uninterrupted run every recovered run must equal (its checkpoint kept)."""
    tmp = tmp_path_factory.mktemp("straight")
    run_train(*RESUMABLE, "checkpoint.keep=true", f"data.cache_dir={cache_dir}", f"hydra.run.dir={tmp}/run",
              cwd=tmp)
    return tmp / "run"


def same_run(a: Path, b: Path) -> None:
    ra, rb = (json.loads((d / rundir.RESULTS).read_text()) for d in (a, b))
    assert ra["steps"] == rb["steps"] == 3 * STEPS_PER_EPOCH
    assert ra["train_samples"] == rb["train_samples"] == 3 * 256  # counted across the resume too
    assert ra["metrics"] == rb["metrics"]
    assert len(ra["history"]) == 3 and ra["history"] == rb["history"] and ra["selected"] == rb["selected"]
    assert (a / rundir.PREDICTIONS).read_text() == (b / rundir.PREDICTIONS).read_text()


def leftovers(run_dir: Path) -> list[Path]:
    return [p for p in run_dir.rglob("*") if p.name.endswith(".tmp")]


def test_the_kept_checkpoint_is_from_the_end_of_the_second_of_three_epochs(straight):
    """A rolling checkpoint after every epoch but the last (nothing is left to resume after it)."""
    kept = torch.load(straight / rundir.CHECKPOINTS / rundir.LAST_CKPT, map_location="cpu", weights_only=False)
    assert (kept["epoch"], kept["global_step"]) == (1, 2 * STEPS_PER_EPOCH)
    assert rundir.checkpoint_problem(straight / rundir.CHECKPOINTS / rundir.LAST_CKPT) is None


def kill_after_first_checkpoint(run_dir: Path, overrides: list[str], env: dict | None = None) -> None:
    proc = subprocess.Popen([sys.executable, str(ROOT / "train.py"), *overrides, f"hydra.run.dir={run_dir}"],
                            cwd=run_dir.parent, env={**os.environ, "HYDRA_FULL_ERROR": "0", **(env or {})},
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    ckpt = run_dir / rundir.CHECKPOINTS / rundir.LAST_CKPT
    deadline = time.time() + SUBPROCESS_TIMEOUT
    while not ckpt.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)  # the checkpoint appears whole (renamed into place)
    proc.wait()
    assert ckpt.exists(), "no checkpoint was written before the run ended"
    assert not (run_dir / rundir.RESULTS).exists(), "the run finished before it could be killed"


def test_killed_run_resumes_from_checkpoint_and_matches_uninterrupted(straight, tmp_path, cache_dir):
    run_dir = tmp_path / "killed"
    kill_after_first_checkpoint(run_dir, [*RESUMABLE, f"data.cache_dir={cache_dir}"])
    resumed = run_train(*RESUMABLE, f"data.cache_dir={cache_dir}", f"hydra.run.dir={run_dir}", cwd=tmp_path)
    assert "resuming from" in out(resumed)
    assert json.loads((run_dir / rundir.RESULTS).read_text())["resumed"]
    same_run(run_dir, straight)
    assert not (run_dir / rundir.CHECKPOINTS).exists()  # deleted after success (checkpoint.keep=false)


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
        assert not (run_dir / rundir.RESULTS).exists()
        ckpt = run_dir / rundir.CHECKPOINTS / rundir.LAST_CKPT
        intact = ckpt.exists() and rundir.checkpoint_problem(ckpt) is None
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
    (dest / rundir.CHECKPOINTS).mkdir(parents=True)
    shutil.copytree(straight / rundir.CONFIG_DIR, dest / rundir.CONFIG_DIR)
    shutil.copy(straight / rundir.CHECKPOINTS / rundir.LAST_CKPT, dest / rundir.CHECKPOINTS / rundir.LAST_CKPT)
    return dest / rundir.CHECKPOINTS / rundir.LAST_CKPT


@pytest.mark.parametrize("damage", ["empty", "truncated"])
def test_damaged_checkpoint_is_set_aside_and_the_run_restarts(straight, tmp_path, cache_dir, damage):
    ckpt = copy_unfinished(straight, tmp_path / "run")
    data = ckpt.read_bytes()
    ckpt.write_bytes(b"" if damage == "empty" else data[: len(data) // 2])
    proc = run_train(*RESUMABLE, f"data.cache_dir={cache_dir}", f"hydra.run.dir={tmp_path}/run", cwd=tmp_path)
    warnings = [line for line in out(proc).splitlines() if "cannot be loaded" in line]
    assert len(warnings) == 1 and "moved to last.ckpt.corrupt" in warnings[0]
    assert "resuming from" not in out(proc)
    corrupt = ckpt.with_name("last.ckpt.corrupt")
    assert corrupt.read_bytes() == (b"" if damage == "empty" else data[: len(data) // 2])
    assert not json.loads((tmp_path / "run" / rundir.RESULTS).read_text())["resumed"]
    same_run(tmp_path / "run", straight)


def test_damaged_last_checkpoint_falls_back_to_an_older_intact_one(straight, tmp_path, cache_dir):
    ckpt = copy_unfinished(straight, tmp_path / "run")
    shutil.copy(ckpt, ckpt.with_name("epoch1.ckpt"))
    ckpt.write_bytes(ckpt.read_bytes()[:1000])
    proc = run_train(*RESUMABLE, f"data.cache_dir={cache_dir}", f"hydra.run.dir={tmp_path}/run", cwd=tmp_path)
    assert "resuming from" in out(proc) and "epoch1.ckpt" in out(proc)
    assert json.loads((tmp_path / "run" / rundir.RESULTS).read_text())["resumed"]
    same_run(tmp_path / "run", straight)


# ---------------------------------------------------------------------------- finished, or not
def test_sweep_with_a_corrupt_results_json_reruns_that_job_and_says_so(real_glue, tmp_path, cache_dir):
    args = ["-m", "pooling=cls,max_cls", "model=tiny", "data.train_size=32", "trainer.max_steps=2", "logger=none",
            "trainer.enable_progress_bar=false", f"data.cache_dir={cache_dir}", f"hydra.sweep.dir={tmp_path}/sweep"]
    run_train(*args, cwd=tmp_path)
    broken = next((tmp_path / "sweep").glob("*max_cls*")) / rundir.RESULTS
    good = json.loads(broken.read_text())
    broken.write_text('{"task": "rte", "metr')  # cut off by a full disk, say
    (broken.parent / f".{rundir.RESULTS}.12345.tmp").write_text("{")  # a killed writer's leftover
    again = run_train(*args, cwd=tmp_path)
    assert "0 finished, 1 re-run (broken results.json), 1 skipped (already finished), 0 failed" in out(again)
    assert "is invalid JSON" in out(again)
    assert broken.with_name("results.json.corrupt").read_text() == '{"task": "rte", "metr'
    rerun = json.loads(broken.read_text())
    assert rerun["metrics"] == good["metrics"]  # same seed, same run
    assert not leftovers(broken.parent)
    assert [e["outcome"] for e in rundir.RunFolder(broken.parent).launches()] == ["finished", "rerun"]


@pytest.mark.parametrize("content,problem", [
    ("", "invalid JSON"), ("[1, 2]", "not a JSON object"), ('{"task": "rte"}', "missing key(s) pooling"),
    (b"\xff\xfe", "invalid JSON"),
])
def test_results_json_that_cannot_be_used_is_not_finished(tmp_path, content, problem):
    folder = rundir.RunFolder(tmp_path)
    folder.results.write_bytes(content if isinstance(content, bytes) else content.encode())
    record, why = folder.read()
    assert record is None and problem in str(why)
    assert not folder.is_finished()


def test_relaunch_with_other_settings_is_refused_and_the_config_kept(real_glue, tmp_path, cache_dir):
    common = ["model=tiny", "data.train_size=32", "trainer.max_steps=2", "logger=none", f"data.cache_dir={cache_dir}",
              f"hydra.run.dir={tmp_path}/run", "trainer.enable_progress_bar=false"]
    run_train(*common, cwd=tmp_path)
    config = tmp_path / "run" / rundir.CONFIG
    before = config.read_bytes()
    refused = run_train(*common, "optimizer.lr=1e-3", "seed=7", cwd=tmp_path, check=False)
    assert refused.returncode != 0 and "Traceback" not in out(refused)
    lines = [line for line in out(refused).splitlines() if line.startswith("error:")]
    assert len(lines) == 1
    assert "optimizer.lr=0.001 (stored: 2e-05)" in lines[0] and "seed=7 (stored: 1)" in lines[0]
    assert config.read_bytes() == before
    # Keys that do not change the run are free: another logger, no progress bar, another GLUE path.
    fine = run_train(*common, "logger=csv", "trainer.enable_progress_bar=true", cwd=tmp_path,
                     env={"GLUE_DIR": str(real_glue) + "/"})
    assert "skipping" in out(fine) and config.read_bytes() == before
    assert [e["outcome"] for e in rundir.RunFolder(tmp_path / "run").launches()] == ["finished", "refused", "skipped"]


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
        return rundir.differences(rundir.settings(a), rundir.settings(b), both_only=both_only)

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
                                                                                       cache_dir):
    """A relative GLUE_DIR is taken against the folder the run started in; the stored config keeps
    the setting's own value (``${oc.env:GLUE_DIR,null}``), so `predict` from another folder reads
    that shell's GLUE_DIR (or --glue-dir)."""
    run_train("model=tiny", "data.train_size=32", "trainer.max_steps=2", "logger=none", f"data.cache_dir={cache_dir}",
              f"hydra.run.dir={tmp_path}/run", cwd=tmp_path, env={"GLUE_DIR": os.path.relpath(real_glue, tmp_path)})
    saved = (tmp_path / "run" / rundir.CONFIG).read_text()
    assert "${oc.env:GLUE_DIR,null}" in saved
    record = json.loads((tmp_path / "run" / rundir.RESULTS).read_text())
    for text in (saved, json.dumps(record)):
        assert str(real_glue.resolve()) not in text and str(tmp_path) not in text
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {**os.environ, "GLUE_DIR": os.path.relpath(real_glue, elsewhere)}
    proc = subprocess.run([sys.executable, "-m", "maxpoolbert.predict", str(tmp_path / "run")], cwd=elsewhere, env=env,
                          capture_output=True, text=True, timeout=SUBPROCESS_TIMEOUT)
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = (tmp_path / "run" / "submission" / "RTE.tsv").read_text().splitlines()
    assert len(rows) == 1 + 3000  # header + every RTE test row


# ---------------------------------------------------------------------------- pieces
def test_atomic_checkpoint_write_keeps_the_old_file_when_the_write_fails(tmp_path, monkeypatch):
    from maxpoolbert.checkpointing import AtomicCheckpointIO

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
    folder = tmp_path / rundir.CHECKPOINTS
    folder.mkdir()
    good = {"state_dict": {}, "global_step": 3}
    torch.save(good, folder / "old.ckpt")
    run = rundir.RunFolder(tmp_path)
    assert run.resume_checkpoint() == folder / "old.ckpt"
    torch.save(good, folder / rundir.LAST_CKPT)
    assert run.resume_checkpoint() == folder / rundir.LAST_CKPT
    (folder / rundir.LAST_CKPT).write_bytes(b"")
    (folder / "old.ckpt").write_bytes((folder / "old.ckpt").read_bytes()[:-40])
    assert run.resume_checkpoint() is None
    assert sorted(p.name for p in folder.iterdir()) == ["last.ckpt.corrupt", "old.ckpt.corrupt"]
    torch.save({"not": "lightning"}, folder / rundir.LAST_CKPT)
    assert run.resume_checkpoint() is None
    assert (folder / "last.ckpt.corrupt.1").exists()
