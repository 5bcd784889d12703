"""The run folder: what a run leaves behind, and the rules that make it one run.

A run folder (Hydra's run or multirun job directory) holds

* ``.hydra/config.yaml``, ``hydra.yaml``, ``overrides.yaml``: written once, when the run first
  starts (Hydra's own saving is switched off by ``hydra.output_subdir: null``). Paths that come
  from the environment (``data.glue_dir``, ``data.superglue_dir``, ``data.cache_dir``, a custom
  task's ``task.data_dir``) are stored resolved, so the folder
  can be used from any shell. A relaunch whose settings differ is refused (:func:`claim`).
* ``checkpoints/last.ckpt`` while the run is under way, written atomically in the folder itself
  (:class:`AtomicCheckpointIO`); one that cannot be loaded is moved aside (:func:`resume_checkpoint`).
* ``results.json`` (written last and atomically): the run is finished when it can be read and has
  the keys of :data:`RESULT_KEYS` (:func:`read_results`); one that cannot is moved aside.
* ``failed.json`` when the run failed, ``launches.jsonl`` with one line per launch (what happened
  to it: finished, skipped, rerun, failed, refused), for the sweep summary.

This module imports no torch at import time, so the sweep callback can use it cheaply.
"""

from __future__ import annotations

import functools
import json
import logging
import math
import os
import socket
import time
import zipfile
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, ListConfig, OmegaConf

log = logging.getLogger("maxpoolbert")

RESULTS = "results.json"
FAILED = "failed.json"
PREDICTIONS = "dev_predictions.tsv"
MODEL = "model.safetensors"
CONFIG_DIR = ".hydra"
CONFIG = f"{CONFIG_DIR}/config.yaml"
CHECKPOINTS = "checkpoints"
LAST_CKPT = "last.ckpt"
LAUNCHES = "launches.jsonl"
CORRUPT = ".corrupt"
RESULT_KEYS = ("task", "pooling", "model", "seed", "metrics", "score")
# results.json: RESULT_KEYS make a finished run; the rest, written by every run since, is read
# with .get() by report/predict (older runs lack some):
#   task_info       {name, display_name, benchmark, benchmark_name, metrics, order} (Task.info())
#   train_size, n_train, n_train_full, n_dev, majority_score, hparams, history, selected,
#   epochs, steps, resumed, stopped_early, world_size, train_samples, train_samples_per_s,
#   train_s, wall_s, process_s, first_step_s, peak_memory_mb, params, data_dir, glue_dir,
#   versions, device
TASK_INFO_KEYS = ("name", "display_name", "benchmark", "benchmark_name", "metrics", "order")
LAUNCH_ENV = "MAXPOOLBERT_LAUNCH"  # set by the sweep callback: which launch a job belongs to
RESOLVED_KEYS = ("data.glue_dir", "data.superglue_dir", "data.cache_dir", "task.data_dir")  # stored as absolute paths


# ---------------------------------------------------------------------------- atomic files
def tmp_path(path: Path) -> Path:
    """The temporary file beside ``path`` that an atomic write goes through."""
    return path.with_name(f".{path.name}.{os.getpid()}.tmp")


def write_atomic(path: Path, text: str) -> None:
    tmp = tmp_path(path)
    try:
        with tmp.open("w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_json_atomic(path: Path, obj: Any) -> None:
    write_atomic(path, json.dumps(_finite(obj), indent=2) + "\n")


def _finite(obj: Any) -> Any:
    """NaN/inf are not JSON: write them as null."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_finite(v) for v in obj]
    return obj


def clean_stale_tmp(run_dir: Path) -> list[Path]:
    """Remove temporary files that a killed process left in the folder (and its checkpoints)."""
    removed = []
    for folder in (run_dir, run_dir / CHECKPOINTS):
        if folder.is_dir():
            for path in folder.glob(".*.tmp"):
                path.unlink(missing_ok=True)
                removed.append(path)
    if removed:
        log.info("removed %d stale temporary file(s) in %s", len(removed), run_dir)
    return removed


def set_aside(path: Path, suffix: str = CORRUPT) -> Path:
    """Rename ``path`` to ``<path><suffix>`` (``.1``, ``.2`` ... when taken); returns the new name."""
    target = path.with_name(path.name + suffix)
    n = 0
    while target.exists():
        n += 1
        target = path.with_name(f"{path.name}{suffix}.{n}")
    os.replace(path, target)
    return target


# ---------------------------------------------------------------------------- finished?
def read_results(run_dir: Path) -> tuple[dict | None, str | None]:
    """``(results, None)`` for a finished run, ``(None, why)`` when ``results.json`` exists but
    cannot be used, ``(None, None)`` when there is none."""
    path = run_dir / RESULTS
    if not path.exists():
        return None, None
    try:
        results = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        return None, f"unreadable ({type(err).__name__}: {err})"
    if not isinstance(results, dict):
        return None, "not a JSON object"
    missing = [k for k in RESULT_KEYS if k not in results]
    if missing:
        return None, f"missing key(s) {', '.join(missing)}"
    return results, None


def is_finished(run_dir: Path) -> bool:
    return read_results(run_dir)[0] is not None


def task_info(results: dict) -> dict | None:
    """What a table needs to know about a run's task (:data:`TASK_INFO_KEYS`): from
    ``results.json``, or, for a run written before it carried it, from the project's task config."""
    info = results.get("task_info")
    if isinstance(info, dict) and all(k in info for k in TASK_INFO_KEYS):
        return info
    from maxpoolbert.tasks import task_info as from_configs

    return from_configs(str(results.get("task")))


# ---------------------------------------------------------------------------- writing a run's outputs
def write_results(run_dir: Path, results: dict) -> None:
    """``results.json``, last and atomically: its presence makes the run finished."""
    missing = [k for k in RESULT_KEYS if k not in results]
    if missing:
        raise ValueError(f"results without {', '.join(missing)}")
    write_json_atomic(run_dir / RESULTS, results)


def write_failed(run_dir: Path, err: BaseException, user_error: bool, traceback: str | None) -> None:
    """``failed.json``: why the run failed (a user error has no traceback)."""
    try:
        write_json_atomic(run_dir / FAILED, {"error": f"{type(err).__name__}: {err}", "user_error": user_error,
                                             "traceback": traceback, "time": time.time()})
    except OSError as write_err:
        log.error("could not write %s: %s", run_dir / FAILED, write_err)


def write_predictions(run_dir: Path, evals: dict[str, dict], regression: bool) -> None:
    """``dev_predictions.tsv``: ``split index label prediction``, every dev row in file order."""
    fmt = (lambda x: repr(float(x))) if regression else (lambda x: str(int(x)))
    lines = ["split\tindex\tlabel\tprediction\n"]
    for split, rows in evals.items():
        for i, y, p in zip(rows["index"], rows["label"], rows["prediction"], strict=True):
            lines.append(f"{split}\t{int(i)}\t{fmt(y)}\t{fmt(p)}\n")
    write_atomic(run_dir / PREDICTIONS, "".join(lines))


def save_weights(run_dir: Path, model: Any) -> None:
    """``model.safetensors`` (weights only), atomically."""
    from safetensors.torch import save_model

    path = run_dir / MODEL
    save_model(model, str(tmp_path(path)))
    os.replace(tmp_path(path), path)


# ---------------------------------------------------------------------------- launches
def record_launch(run_dir: Path, outcome: str, **extra: Any) -> None:
    """Append what this launch did to the run (``launches.jsonl``; one short line, appended)."""
    entry = {"launch": os.environ.get(LAUNCH_ENV), "outcome": outcome, "time": time.time(),
             "host": socket.gethostname(), "pid": os.getpid(), **extra}
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        with (run_dir / LAUNCHES).open("a") as f:
            f.write(json.dumps(entry) + "\n")
    except OSError as err:  # never let bookkeeping hide the run's own outcome
        log.warning("could not record the launch in %s: %s", run_dir / LAUNCHES, err)


def launches(run_dir: Path) -> list[dict]:
    path = run_dir / LAUNCHES
    out = []
    if path.is_file():
        for line in path.read_text().splitlines():
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:
                continue  # a line cut by a kill
    return out


# ---------------------------------------------------------------------------- config, once
def _flat(obj: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(obj, dict):
        out: dict[str, Any] = {}
        for k, v in obj.items():
            out.update(_flat(v, f"{prefix}{k}."))
        return out or {prefix[:-1]: {}}
    return {prefix[:-1]: obj}


def _container(cfg: DictConfig) -> dict:
    return OmegaConf.to_container(cfg, resolve=False, throw_on_missing=False)


def neutral_keys(hydra_cfg: DictConfig) -> list[str]:
    """Keys that do not change what a run computes: the ones left out of the job folder names
    (``hydra.job.config.override_dirname.exclude_keys``: logger, data paths, progress bar ...)."""
    keys = hydra_cfg.job.config.override_dirname.get("exclude_keys") or []
    return [str(k).replace("/", ".") for k in keys]


def _is_neutral(key: str, neutral: list[str]) -> bool:
    return any(key == n or key.startswith(n + ".") for n in neutral)


def config_to_save(cfg: DictConfig) -> DictConfig:
    """The job config as stored: unresolved (as Hydra saves it), except the environment-derived
    paths, which are stored as the absolute folders this run used."""
    saved = OmegaConf.create(_container(cfg))
    for key in RESOLVED_KEYS:
        value = OmegaConf.select(cfg, key, throw_on_resolution_failure=False)
        if value is not None and str(value).strip():
            OmegaConf.update(saved, key, str(Path(os.path.expanduser(str(value))).resolve()), merge=False)
        elif OmegaConf.select(saved, key) is not None:
            OmegaConf.update(saved, key, None, merge=False)
    return saved


def differing_keys(saved: DictConfig, current: DictConfig, neutral: list[str]) -> list[tuple[str, Any, Any]]:
    """Keys whose values differ between the stored and the current config, neutral keys left out.
    Keys only one of them has (a setting added to, renamed in or removed from the project since
    the run started) are not compared: nobody can have set them differently; except Trainer
    flags, which any command line can give (``+trainer.<flag>=``): one that a config leaves out
    has Lightning's default. Two ``_target_`` names of the same class (a class renamed, its old
    name kept) are the same setting."""
    a, b = _flat(_container(saved)), _flat(_container(current))
    out = []
    for key in sorted(a.keys() & b.keys() | {k for k in a.keys() ^ b.keys() if _trainer_flag(k)}):
        if _is_neutral(key, neutral) or any(key == r for r in RESOLVED_KEYS):
            continue
        old = a[key] if key in a else _left_out(key)
        new = b[key] if key in b else _left_out(key)
        if old != new and not (key.endswith("_target_") and _same_target(old, new)):
            out.append((key, old, new))
    return out


def _same_target(a: Any, b: Any) -> bool:
    from hydra.utils import get_object

    try:
        return get_object(str(a)) is get_object(str(b))
    except Exception:  # noqa: BLE001 - a name that no longer imports is simply different
        return False


def _trainer_flag(key: str) -> bool:
    return key.startswith("trainer.") and "." not in key.removeprefix("trainer.")


def _left_out(key: str) -> Any:
    """The value of a key a config does not have: Lightning's default for a Trainer flag
    (configs/trainer lists only the flags this project sets), else unset."""
    if not _trainer_flag(key):
        return "<unset>"
    return _trainer_defaults().get(key.removeprefix("trainer."), "<unset>")


@functools.cache
def _trainer_defaults() -> dict[str, Any]:
    """``lightning.Trainer``'s arguments and their defaults (imported only when needed)."""
    import inspect

    import lightning

    params = inspect.signature(lightning.Trainer.__init__).parameters.values()
    return {p.name: p.default for p in params if p.default is not inspect.Parameter.empty}


class RunFolderConflict(Exception):
    """The folder already holds a run with other settings."""


def stored_differences(run_dir: Path, cfg: DictConfig, hydra_cfg: DictConfig) -> list[tuple[str, Any, Any]]:
    """How the job config ``cfg`` differs from the one stored in ``run_dir`` (none stored: none)."""
    config = run_dir / CONFIG
    if not config.is_file():
        return []
    return differing_keys(OmegaConf.load(config), cfg, neutral_keys(hydra_cfg))


def claim(run_dir: Path, cfg: DictConfig, hydra_cfg: DictConfig) -> bool:
    """Make ``run_dir`` this run's folder: write its config on the first start; on a relaunch,
    refuse settings that differ from the stored ones (:class:`RunFolderConflict`, naming the
    keys). Returns True on the first start."""
    config = run_dir / CONFIG
    if config.is_file():
        diff = stored_differences(run_dir, cfg, hydra_cfg)
        if diff:
            shown = ", ".join(f"{k}={_show(new)} (stored: {_show(old)})" for k, old, new in diff[:6])
            more = f" and {len(diff) - 6} more" if len(diff) > 6 else ""
            key = "hydra.run.dir" if str(hydra_cfg.mode) == "RunMode.RUN" else "hydra.sweep.dir"
            raise RunFolderConflict(
                f"{key}={run_dir}: the folder holds a run with other settings: {shown}{more}; the folder's own "
                f"settings, or another folder ({key}=)")
        return False
    (run_dir / CONFIG_DIR).mkdir(parents=True, exist_ok=True)
    write_atomic(run_dir / CONFIG_DIR / "hydra.yaml", OmegaConf.to_yaml(OmegaConf.create({"hydra": hydra_cfg})))
    overrides = list(hydra_cfg.overrides.task) if isinstance(hydra_cfg.overrides.task, ListConfig) else []
    write_atomic(run_dir / CONFIG_DIR / "overrides.yaml", OmegaConf.to_yaml(OmegaConf.create(overrides)))
    write_atomic(config, OmegaConf.to_yaml(config_to_save(cfg)))  # last: its presence marks a started run
    return True


def _show(value: Any) -> str:
    return "<unset>" if value == "<unset>" else json.dumps(value) if not isinstance(value, str) else value


# ---------------------------------------------------------------------------- checkpoints
def checkpoint_problem(path: Path) -> str | None:
    """Why ``path`` cannot be a resume checkpoint (empty, truncated, damaged), or None.

    Checks the zip container that ``torch.save`` writes (every member's CRC) and unpickles it
    memory-mapped (the tensors' bytes are not read twice)."""
    try:
        if path.stat().st_size == 0:
            return "empty file"
        with zipfile.ZipFile(path) as archive:
            bad = archive.testzip()
        if bad is not None:
            return f"damaged member {bad}"
        import torch

        state = torch.load(path, map_location="cpu", weights_only=False, mmap=True)
        if not isinstance(state, dict) or "state_dict" not in state or "global_step" not in state:
            return "not a Lightning checkpoint"
    except Exception as err:  # noqa: BLE001 - any failure to read means: not usable
        return f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}".rstrip(": ")
    return None


def resume_checkpoint(run_dir: Path) -> Path | None:
    """The checkpoint to resume from: ``last.ckpt`` if it loads, else the newest other intact
    ``*.ckpt`` in ``checkpoints/``. Checkpoints that cannot be loaded are moved aside
    (``<name>.corrupt``) with one warning each, so a relaunch always makes progress."""
    folder = run_dir / CHECKPOINTS
    if not folder.is_dir():
        return None
    last = folder / LAST_CKPT
    others = sorted((p for p in folder.glob("*.ckpt") if p.name != LAST_CKPT),
                    key=lambda p: p.stat().st_mtime, reverse=True)
    for path in ([last] if last.exists() else []) + others:
        problem = checkpoint_problem(path)
        if problem is None:
            return path
        moved = set_aside(path)
        log.warning("checkpoint %s cannot be loaded (%s): moved to %s", path, problem, moved.name)
    return None


def remove_checkpoints(run_dir: Path) -> None:
    """After success: the resume checkpoints go; damaged ones set aside (``*.corrupt``) stay for
    inspection."""
    folder = run_dir / CHECKPOINTS
    for path in folder.glob("*.ckpt"):
        path.unlink(missing_ok=True)
    if folder.is_dir() and not any(folder.iterdir()):
        folder.rmdir()
