import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ROOT / "configs"
FIXTURES = Path(__file__).resolve().parent / "fixtures" / "glue"
TIMINGS: list[tuple[float, str]] = []  # (seconds, command): printed at the end, never asserted
REAL_TASK_DIRS = ["CoLA", "SST-2", "MRPC", "STS-B", "RTE", "WNLI"]

# One thread per test process: every pytest-xdist worker, and every process a test starts (train.py,
# predict, a sweep's jobs: they inherit this environment), computes on one thread, so N workers
# never oversubscribe the cores (two workers on two cores with torch's one thread per core did).
# torch in this process too (the in-process runs of maxpoolbert.train). A value already set is kept.
for _name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_name, "1")
os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("WANDB_SILENT", "true")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

# Folders taken from the environment (GLUE_DIR, SUPERGLUE_DIR, MAXPOOLBERT_CACHE: train.py's
# PATH_VARIABLES) may be given relative to the folder pytest starts in (GLUE_DIR=../shared/data/glue);
# the tests run train.py from other folders, so they are made absolute here, once, as train.py does.
_spec = importlib.util.spec_from_file_location("_maxpoolbert_train_py", ROOT / "train.py")
train_py = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(train_py)
absolute_path_variables = train_py.absolute_path_variables
absolute_path_variables()


def config_names(group: str) -> list[str]:
    """The options of a config group, from the files in ``configs/<group>/`` (``"pooling"``,
    ``"hydra/launcher"``): a new YAML is tested without editing a list."""
    names = sorted(p.stem for p in (CONFIGS / group).glob("*.yaml"))
    assert names, f"no configs/{group}/*.yaml"
    return names


def config_groups() -> list[str]:
    """Every config group: each folder under ``configs/`` that holds YAML files."""
    return sorted({p.parent.relative_to(CONFIGS).as_posix() for p in CONFIGS.glob("*/**/*.yaml")})


def glue_dir() -> Path | None:
    value = os.environ.get("GLUE_DIR")
    return Path(value) if value and Path(value, "RTE", "dev.tsv").exists() else None


@pytest.fixture(scope="session")
def real_glue() -> Path:
    path = glue_dir()
    if path is None:
        pytest.skip("GLUE_DIR is not set to a GLUE folder (CI sets it to ../shared/data/glue)")
    return path


@pytest.fixture(scope="session")
def full_glue(real_glue, tmp_path_factory) -> Path:
    """A GLUE folder in the official layout with all nine tasks: the real files where they exist
    offline, our fixtures for MNLI, QQP and QNLI."""
    root = tmp_path_factory.mktemp("glue")
    for name in REAL_TASK_DIRS:
        (root / name).symlink_to(real_glue / name)
    for name in ["MNLI", "QQP", "QNLI"]:
        shutil.copytree(FIXTURES / name, root / name)
    return root


# Subprocess limits sized for a slow, shared 2-core machine: they only stop a hung process.
SUBPROCESS_TIMEOUT = 1800


def run_train(*overrides: str, cwd: Path, env: dict | None = None, check: bool = True,
              timeout: int = SUBPROCESS_TIMEOUT):
    """Run ``train.py`` in a subprocess (as a user would), outputs under ``cwd``."""
    full_env = {**os.environ, "HYDRA_FULL_ERROR": "0", **(env or {})}
    proc = subprocess.run(
        [sys.executable, str(ROOT / "train.py"), *overrides],
        cwd=cwd, env=full_env, capture_output=True, text=True, timeout=timeout,
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"train.py failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}")
    return proc


def train_each(root: Path, key: str, values, *overrides: str) -> dict:
    """``maxpoolbert.train`` in this process once per value of the setting ``key``, each run in
    ``root/<value>`` (what ``train.py -m key=a,b ...`` runs, one job after the other, without a
    process): ``{value: RunRecord}``."""
    import maxpoolbert

    return {value: maxpoolbert.train([*overrides, f"{key}={value}"], output_dir=root / str(value).replace("/", "_"))
            for value in values}


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("tokcache")


# Modules whose tests are independent of each other (no costly module fixture shared by most of
# them): spread over the test processes one test at a time. Every other module runs whole in one
# process (pytest-xdist's --dist loadgroup), so its module-scoped fixtures are built once.
SPREAD = {"test_rundir", "test_results_page"}
# Modules whose cases are the suite's longest (a whole study's page, ~2 min): handed out first, so that
# they do not start last and leave one test process working alone at the end.
FIRST = ("test_results_page",)


@pytest.hookimpl(tryfirst=True)  # before pytest-xdist's worker reads the groups (it ran first: modules were split)
def pytest_collection_modifyitems(config, items):
    items.sort(key=lambda item: item.path.stem not in FIRST)  # stable: the order is kept otherwise
    for item in items:
        module = item.path.stem
        if module not in SPREAD:
            item.add_marker(pytest.mark.xdist_group(module))


def pytest_terminal_summary(terminalreporter):
    if TIMINGS:
        terminalreporter.section("wall time of refused commands (not asserted; the machine may be shared)")
        for seconds, command in sorted(TIMINGS, reverse=True):
            terminalreporter.write_line(f"{seconds:6.2f} s  {command}")


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory):
    """``tiny_checkpoint(family)``: a folder holding a tiny random checkpoint of that encoder
    family with the embedded tokenizer (tests/tiny_families.py), made once per session."""
    from .tiny_families import save_checkpoint

    root = tmp_path_factory.mktemp("tiny_checkpoints")
    made: dict[str, Path] = {}

    def get(family: str) -> Path:
        if family not in made:
            made[family] = save_checkpoint(family, root / family)
        return made[family]

    return get


@pytest.fixture
def small_disk(tmp_path):
    """A 3 MB filesystem (tmpfs): too small for a tiny model's checkpoint, room for one report."""
    mount = tmp_path / "small"
    mount.mkdir()
    try:
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(mount)], capture_output=True,
                              text=True)
    except FileNotFoundError:
        pytest.skip("no mount command here")
    if done.returncode != 0:
        pytest.skip(f"mounting a small tmpfs is not allowed here: {done.stderr.strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)
