"""The Makefile's set-up, read with ``make -n`` (nothing is run or installed): which interpreter
it uses, and settings given to make without ARGS's quotes."""

import os
import shutil
import subprocess

import pytest

from .conftest import ROOT

pytestmark = pytest.mark.skipif(shutil.which("make") is None, reason="no make on this machine")


def dry_run(*args: str, **env: str) -> list[str]:
    base = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHON")}
    proc = subprocess.run(["make", "-n", "-C", str(ROOT), *args], env={**base, **env}, capture_output=True,
                          text=True, check=True, timeout=60)
    return proc.stdout.splitlines()


def test_the_project_venv_unless_one_is_active():
    lines = dry_run("install")
    assert any(line.startswith("python3 -m venv .venv") for line in lines), lines
    assert f'echo "python: {ROOT}/.venv/bin/python' in "\n".join(lines)
    active = dry_run("install", VIRTUAL_ENV="/opt/theirs")
    assert not any("-m venv" in line for line in active)
    assert 'echo "python: /opt/theirs/bin/python' in "\n".join(active)


def test_settings_without_the_quotes_reach_train_py():
    """``make train ARGS=task=mrpc pooling=cls``: make takes pooling=cls for a variable of its own."""
    [line] = [line for line in dry_run("train", "ARGS=task=mrpc", "pooling=cls", "data.train_size=32",
                                       "TEST_JOBS=3", "PYTHON=python3") if " train.py " in line]
    assert line.startswith("python3 train.py task=mrpc ")
    assert sorted(line.split()[3:]) == ["'data.train_size=32'", "'pooling=cls'"]
