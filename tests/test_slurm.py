"""Sweeps on a real single-node SLURM cluster (scripts/slurm_cluster.sh starts munged,
slurmctld and slurmd on this machine, and stops them by PID). ``make test-slurm`` runs these;
they skip, with the reason, where no cluster can be started (not root, no apt-get)."""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from .conftest import ROOT, SUBPROCESS_TIMEOUT, run_train

pytestmark = pytest.mark.slurm
SCRIPT = ROOT / "scripts" / "slurm_cluster.sh"
SMALL = ["task=rte", "model=tiny", "data.train_size=64", "trainer.max_steps=3", "save_model=false", "logger=none",
         "trainer.enable_progress_bar=false", "speed.threads=1"]
RESUMABLE = ["task=rte", "model=tiny", "data.train_size=256", "trainer.max_epochs=3", "optimizer.lr=1e-4",
             "logger=none", "save_model=false", "trainer.enable_progress_bar=false", "seed=5", "speed.threads=1"]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    state = tmp_path_factory.mktemp("slurm")
    env = {**os.environ, "SLURM_STATE": str(state)}
    start = subprocess.run(["bash", str(SCRIPT), "start"], env=env, capture_output=True, text=True, timeout=900)
    if start.returncode != 0:
        subprocess.run(["bash", str(SCRIPT), "stop"], env=env, capture_output=True, timeout=120)
        pytest.skip(f"no SLURM cluster could be started here: {start.stderr.strip().splitlines()[-1:]}")
    try:
        yield {"SLURM_CONF": str(state / "slurm.conf")}
    finally:
        subprocess.run(["bash", str(SCRIPT), "stop"], env=env, capture_output=True, timeout=120)
        for name in ("slurmctld", "slurmd", "munged"):
            pid = state / f"{name}.pid"
            assert not pid.exists(), f"{name} was not stopped"


def squeue(cluster, *args) -> str:
    return subprocess.run(["squeue", "-h", *args], env={**os.environ, **cluster}, capture_output=True, text=True,
                          timeout=60).stdout


def wait_for_an_empty_queue(cluster, limit_s: float = 180) -> str:
    """Wait until the jobs of the tests before have left the queue (a requeued job may still be
    completing): a job submitted while they hold the node is pending for Resources, not for the
    reason a test is about. Returns what is still queued (empty when the queue emptied)."""
    deadline = time.time() + limit_s
    while (left := squeue(cluster, "-o", "%i %P %T %r").strip()) and time.time() < deadline:
        time.sleep(2)
    return left


def results(root: Path) -> dict:
    out = {}
    for path in root.rglob("results.json"):
        r = json.loads(path.read_text())
        out[(r["pooling"], r["seed"])] = (r, (path.parent / "dev_predictions.tsv").read_bytes())
    return out


@pytest.fixture(scope="module")
def slurm_sweep(cluster, real_glue, tmp_path_factory, cache_dir):
    tmp = tmp_path_factory.mktemp("slurm_sweep")
    args = ["-m", "seed=1,2", "pooling=cls,max_cls", *SMALL, f"data.cache_dir={cache_dir}"]
    started = time.time()
    run_train(*args, "hydra/launcher=slurm_cpu", f"hydra.sweep.dir={tmp}/slurm", cwd=tmp, env=cluster)
    print(f"2x2 sweep on SLURM: {time.time() - started:.0f} s")
    run_train(*args, f"hydra.sweep.dir={tmp}/basic", cwd=tmp)
    return tmp, args


@pytest.mark.slow
def test_slurm_sweep_equals_the_basic_launcher_byte_for_byte(slurm_sweep):
    tmp, _ = slurm_sweep
    on_slurm, local = results(tmp / "slurm"), results(tmp / "basic")
    assert set(on_slurm) == set(local) == {("cls", 1), ("cls", 2), ("max_cls", 1), ("max_cls", 2)}
    for key, (r, predictions) in on_slurm.items():
        assert r["metrics"] == local[key][0]["metrics"] and r["steps"] == 3
        assert predictions == local[key][1]
    assert list((tmp / "slurm" / ".submitit").iterdir())  # really went through SLURM


@pytest.mark.slow
def test_relaunched_finished_sweep_submits_nothing(slurm_sweep, cluster):
    tmp, args = slurm_sweep
    jobs_before = sorted(p.name for p in (tmp / "slurm" / ".submitit").iterdir())
    again = run_train(*args, "hydra/launcher=slurm_cpu", f"hydra.sweep.dir={tmp}/slurm", cwd=tmp, env=cluster)
    out = again.stdout + again.stderr
    assert "4 of 4 job(s) already finished: not launched (nothing to do)" in out
    assert "0 finished, 4 skipped (already finished), 0 failed" in out
    assert sorted(p.name for p in (tmp / "slurm" / ".submitit").iterdir()) == jobs_before  # no submission


@pytest.mark.slow
def test_requeued_job_resumes_to_the_uninterrupted_result(cluster, real_glue, tmp_path, cache_dir):
    args = ["-m", *RESUMABLE, f"data.cache_dir={cache_dir}"]
    env = {**os.environ, "HYDRA_FULL_ERROR": "0", **cluster}
    sweep = subprocess.Popen([sys.executable, str(ROOT / "train.py"), *args, "hydra/launcher=slurm_cpu",
                              f"hydra.sweep.dir={tmp_path}/slurm"], cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True)
    deadline = time.time() + SUBPROCESS_TIMEOUT
    ckpts: list = []
    while not ckpts and sweep.poll() is None and time.time() < deadline:
        ckpts = list((tmp_path / "slurm").glob("*/checkpoints/last.ckpt"))
        time.sleep(0.05)
    assert ckpts, "no checkpoint before the job ended"
    job_id = squeue(cluster, "-o", "%i").split()[0]
    subprocess.run(["scontrol", "requeue", job_id], env=env, check=True, timeout=60)
    out, _ = sweep.communicate(timeout=SUBPROCESS_TIMEOUT)
    assert sweep.returncode == 0, out[-3000:]
    run_dir = ckpts[0].parent.parent
    requeued = json.loads((run_dir / "results.json").read_text())
    assert requeued["resumed"], "the requeued job did not resume from its checkpoint"
    run_train(*RESUMABLE, f"data.cache_dir={cache_dir}", f"hydra.run.dir={tmp_path}/straight", cwd=tmp_path)
    straight = json.loads((tmp_path / "straight" / "results.json").read_text())
    assert requeued["metrics"] == straight["metrics"] and requeued["steps"] == straight["steps"] == 24
    assert requeued["train_samples"] == straight["train_samples"] == 3 * 256
    assert (run_dir / "dev_predictions.tsv").read_bytes() == (tmp_path / "straight" / "dev_predictions.tsv").read_bytes()


@pytest.mark.slow
def test_a_job_that_can_never_start_ends_the_sweep_in_one_line(cluster, real_glue, tmp_path):
    """Partition ``tiny`` allows 1 minute; asking for 10 leaves the job pending for
    PartitionTimeLimit forever: the sweep cancels it and names the reason and what to change."""
    assert wait_for_an_empty_queue(cluster) == ""
    started = time.time()
    try:
        proc = run_train("-m", *SMALL, "hydra/launcher=slurm_cpu", "hydra.launcher.partition=tiny",
                         "hydra.launcher.timeout_min=10", f"hydra.sweep.dir={tmp_path}/sweep", cwd=tmp_path,
                         env=cluster, check=False, timeout=300)
    except subprocess.TimeoutExpired as err:  # say what the queue held: the reason the watcher saw
        raise AssertionError(f"the sweep did not end; queue: {squeue(cluster, '-o', '%i %P %T %r')!r}; "
                             f"stderr: {(err.stderr or b'')[-2000:]!r}") from None
    print(f"never-starting job: sweep ended after {time.time() - started:.0f} s")
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "can never start: pending for PartitionTimeLimit" in lines[0]
    assert "hydra.launcher.partition=" in lines[0]
    time.sleep(2)
    assert squeue(cluster, "-o", "%i %T").strip() == ""  # cancelled, nothing left queued


@pytest.mark.slow
def test_a_partition_that_does_not_exist_is_one_line(cluster, real_glue, tmp_path):
    proc = run_train("-m", *SMALL, "hydra/launcher=slurm_cpu", "hydra.launcher.partition=nope",
                     f"hydra.sweep.dir={tmp_path}/sweep", cwd=tmp_path, env=cluster, check=False, timeout=300)
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "SLURM refused the submission" in lines[0] and "invalid partition" in lines[0]
