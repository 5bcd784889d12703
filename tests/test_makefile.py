"""The Makefile's set-up, read with ``make -n`` (nothing is run or installed): which interpreter
it uses, and settings given to make without ARGS's quotes."""

import os
import shutil
import subprocess

import pytest

from .conftest import ROOT

pytestmark = pytest.mark.skipif(shutil.which("make") is None, reason="no make on this machine")


def dry_run(*args: str, folder=ROOT, **env: str) -> list[str]:
    """``make -n`` in ``folder``, as from a plain shell: no active environment, and none of an outer
    make's variables (``make test`` runs this test)."""
    outer = ("VIRTUAL_ENV", "PYTHON", "MAKEFLAGS", "MAKELEVEL", "MFLAGS")
    base = {k: v for k, v in os.environ.items() if k not in outer}
    proc = subprocess.run(["make", "-n", "-C", str(folder), *args], env={**base, **env}, capture_output=True,
                          text=True, check=True, timeout=60)
    return proc.stdout.splitlines()


@pytest.mark.slow
def test_the_project_venv_unless_one_is_active(tmp_path):
    # a fresh checkout's Makefile (this one may already have its .venv)
    for name in ("Makefile", "pyproject.toml"):
        shutil.copy(ROOT / name, tmp_path / name)
    lines = dry_run("install", folder=tmp_path)
    assert any(line.startswith("python3 -m venv .venv") for line in lines), lines
    assert f'echo "python: {tmp_path}/.venv/bin/python' in "\n".join(lines)
    active = dry_run("install", folder=tmp_path, VIRTUAL_ENV="/opt/theirs")
    assert not any("-m venv" in line for line in active)
    assert 'echo "python: /opt/theirs/bin/python' in "\n".join(active)


@pytest.mark.slow
def test_settings_without_the_quotes_reach_train_py():
    """``make train ARGS=task=mrpc pooling=cls``: make takes pooling=cls for a variable of its own."""
    [line] = [line for line in dry_run("train", "ARGS=task=mrpc", "pooling=cls", "data.train_size=32",
                                       "TEST_JOBS=3", "PYTHON=python3") if " train.py " in line]
    assert line.startswith("python3 train.py task=mrpc ")
    assert sorted(line.split()[3:]) == ["'data.train_size=32'", "'pooling=cls'"]
