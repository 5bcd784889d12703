"""When two runs are the same experiment: a run's identity.

A run's identity, :func:`settings`: the resolved config, flattened, without the seed (it has its
own key) and without the keys that do not change what a run computes (one declared list:
``hydra.job.config.override_dirname.exclude_keys`` in ``configs/config.yaml``: logger, data and
cache folders, progress bar, ...). Trainer flags at Lightning's own default are left out (so a
Lightning release that adds a flag changes no identity) and a pooling strategy's options are
filled in with the defaults its class declares. :func:`settings_id` is a short hash of it. Runs
of one report cell are the same experiment exactly when their ``settings_id`` is the same. No
allowlist: a setting added next year is part of the identity without an edit.

Imports no torch.
"""

from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import Mapping
from typing import Any

from omegaconf import DictConfig, OmegaConf

from maxpoolbert.config import targets
from maxpoolbert.config.schema import plain
from maxpoolbert.core import signatures
from maxpoolbert.tasks.task import CONFIGS
from maxpoolbert.tasks.task import upgrade as upgrade_task

UNSET = "<unset>"


def _key(key: str) -> str:
    return str(key).replace("/", ".")


def neutral_keys(hydra_cfg: DictConfig | Mapping | None = None) -> tuple[str, ...]:
    """The keys that do not change what a run computes: the running (or a stored) Hydra config's
    ``job.config.override_dirname.exclude_keys``, else the project's ``configs/config.yaml``'s
    (reading records made before they carried their settings). Also left out of job folder names."""
    if hydra_cfg is None:
        return _project_neutral_keys()
    node = OmegaConf.select(OmegaConf.create(hydra_cfg) if not OmegaConf.is_config(hydra_cfg) else hydra_cfg,
                            "job.config.override_dirname.exclude_keys", default=None)
    return tuple(_key(k) for k in (node or []))


@functools.cache
def _project_neutral_keys() -> tuple[str, ...]:
    cfg = OmegaConf.load(CONFIGS / "config.yaml")
    return neutral_keys(cfg.hydra)


def _is_neutral(key: str, neutral: tuple[str, ...] | list[str]) -> bool:
    return any(key == n or key.startswith(n + ".") for n in neutral)


def _flat(obj: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(obj, dict):
        out: dict[str, Any] = {}
        for k, v in obj.items():
            out.update(_flat(v, f"{prefix}{k}."))
        return out or ({prefix[:-1]: {}} if prefix else {})
    return {prefix[:-1]: obj}


def _trainer_flag(key: str) -> str | None:
    """``trainer.<flag>`` -> ``flag`` (a top-level Trainer argument), else None."""
    rest = key.removeprefix("trainer.")
    return rest if key.startswith("trainer.") and "." not in rest else None


@functools.cache
def _trainer_defaults() -> dict[str, Any]:
    from maxpoolbert.config.lightning_flags import trainer_defaults

    return trainer_defaults()


def settings(cfg: DictConfig | Mapping, neutral: tuple[str, ...] | list[str] | None = None) -> dict[str, Any]:
    """A run's identity: its config resolved and flattened (``optimizer.lr``), without ``seed``,
    ``hydra``, the ``neutral`` keys (default :func:`neutral_keys`) and the Trainer flags at
    Lightning's default; the pooling's options completed with its class's defaults; a task config
    of an older version upgraded to today's fields; every ``_target_`` by its canonical name
    (:func:`maxpoolbert.config.targets.canonical`: the identity does not depend on where the code lives).
    Sorted by key; JSON values."""
    neutral = neutral_keys() if neutral is None else tuple(neutral)
    node = plain(cfg) if OmegaConf.is_config(cfg) else json.loads(json.dumps(cfg, default=str))
    node = {k: v for k, v in node.items() if k not in ("seed", "hydra")}
    if isinstance(node.get("task"), dict):
        node["task"] = upgrade_task(node["task"])
    pooling = node.get("pooling")
    module = pooling.get("module") if isinstance(pooling, dict) else None
    if isinstance(module, dict) and isinstance(module.get("_target_"), str):
        node["pooling"]["module"] = signatures.with_defaults(targets.current(module["_target_"]), module)
    defaults = _trainer_defaults()
    out = {}
    for key, value in _flat(node).items():
        flag = _trainer_flag(key)
        if _is_neutral(key, neutral) or (flag is not None and flag in defaults and defaults[flag] == value):
            continue
        out[key] = targets.canonical(value) if targets.is_target(key) and isinstance(value, str) else value
    return dict(sorted(out.items()))


def settings_id(values: Mapping[str, Any]) -> str:
    """A short, stable name of a run's settings: the first 12 hex digits of the SHA-256 of their
    canonical JSON (sorted keys)."""
    text = json.dumps(dict(values), sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def _missing(key: str) -> Any:
    """The value of a key a run's settings lack: Lightning's default for a Trainer flag (left out
    because it was the default); for a setting of the project's own sections (``configs/config.yaml``:
    ``data``, ``eval``, ``speed`` ...) its default there, which is what a run recorded before the
    setting existed computed; else :data:`UNSET`."""
    flag = _trainer_flag(key)
    if flag is not None:
        return _trainer_defaults().get(flag, UNSET)
    return _project_defaults().get(key, UNSET)


@functools.cache
def _project_defaults() -> dict[str, Any]:
    """The flat defaults of the settings ``configs/config.yaml`` itself defines (not its groups)."""
    cfg = OmegaConf.to_container(OmegaConf.load(CONFIGS / "config.yaml"), resolve=False)
    cfg = {k: v for k, v in cfg.items() if k not in ("defaults", "hydra", "seed")}
    return {k: v for k, v in _flat(cfg).items() if not (isinstance(v, str) and "${" in v)}


def completed(values: Mapping[str, Any], keys: Any) -> dict[str, Any]:
    """``values`` with every key of ``keys`` it lacks at its value when missing (:func:`_missing`):
    the settings of runs recorded by different versions, made comparable."""
    out = dict(values)
    for key in keys:
        if key not in out:
            out[key] = _missing(key)
    return dict(sorted(out.items()))


def differences(a: Mapping[str, Any], b: Mapping[str, Any], both_only: bool = False) -> list[tuple[str, Any, Any]]:
    """``(key, value in a, value in b)`` for every key whose values differ (a missing Trainer flag
    is Lightning's default; another missing key is :data:`UNSET`). ``both_only``: keys only one side
    has are not compared, except Trainer flags (a relaunch: a setting the project added or removed
    since the run started cannot have been set differently)."""
    out = []
    for key in sorted(a.keys() | b.keys()):
        if both_only and (key not in a or key not in b) and _trainer_flag(key) is None:
            continue
        old = a[key] if key in a else _missing(key)
        new = b[key] if key in b else _missing(key)
        if _json(old) != _json(new):
            out.append((key, old, new))
    return out


def _json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=str)


def show(value: Any) -> str:
    """A setting's value as it is written on the command line."""
    return value if value == UNSET or isinstance(value, str) else json.dumps(value)
