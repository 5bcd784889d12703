"""The benchmarks: their display names, and the one map of a benchmark to its data folder's setting."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from maxpoolbert.core.errors import UserError

# benchmark -> the name tables and averages use; its data folder is the setting data.<benchmark>_dir
BENCHMARKS = {"glue": "GLUE", "superglue": "SuperGLUE", "custom": "Custom"}
# The benchmarks whose tasks sit under one folder of their own: benchmark -> its data folder's key in
# the ``data`` settings (``data.glue_dir``). The one declaration of that map: the data module, the config
# check, the run folder's note of the folders it read, and predict (its --<benchmark>-dir options) use it.
# (A custom task names its own folder: task.data_dir.)
BENCHMARK_DIRS = {"glue": "glue_dir", "superglue": "superglue_dir"}


def benchmark_dirs(data: Any) -> dict[str, str | None]:
    """Each benchmark's data folder, from a run's ``data`` settings (a mapping or a DictConfig:
    ``{"glue": data.glue_dir, "superglue": data.superglue_dir}``; None where unset)."""
    return {name: (data.get(key) if data is not None else None) or None for name, key in BENCHMARK_DIRS.items()}


def check_data_dir(key: str, value: str | None) -> None:
    """A data folder setting (``data.glue_dir``, ``data.superglue_dir``, ``task.data_dir``) is
    null (the hub) or an existing folder."""
    if value and not Path(value).expanduser().is_dir():
        raise UserError("not a folder", key=key, value=value,
                        allowed="a folder holding the task's files in their official layout, or null for the hub")
