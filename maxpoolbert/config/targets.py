"""What a stored config may build: the allowlist of ``_target_`` names.

A run folder is data. Its ``.hydra/config.yaml`` is read back by ``predict``, ``export`` and the
report (the task, for the gold labels of archived predictions), which rebuild the task, tokenizer,
encoder and pooling from it; Hydra's ``instantiate`` would call whatever ``_target_`` the file
names (``torch.load`` of a pickle, ``builtins.eval``). So before anything is built from a stored
config, every ``_target_`` in it must be one of this project's own (:func:`allowed`):

* every ``_target_`` of the project's ``configs/`` folder (its YAML files: encoders, tokenizers,
  poolings, the task class, the optimizer, loggers, the Trainer ...) — a pooling a user adds with
  its own YAML file there is allowed with it;
* every class defined in :mod:`maxpoolbert.model.pooling`;
* the task class :class:`maxpoolbert.tasks.task.Task` (``GlueTask``: its name in older run folders).

Anything else is refused in one line naming the file and the key (:func:`check`). Read without
importing anything (YAML and :mod:`ast`): the check runs before torch loads.

A ``_target_`` is also part of a run's identity (:func:`maxpoolbert.runs.identity.settings`), which must
not depend on where the code lives: the identity holds a class's *canonical* name (:func:`canonical`),
the import path it had when it first entered a run's settings, frozen. A class that moves or is
renamed adds ``new path -> canonical name`` to :data:`MOVED`, so every run recorded before (the 160
committed ones included) keeps its ``settings_id`` and its folder accepts its relaunch; a stored
config that names the old path is read at the new one (:func:`current`).
"""

from __future__ import annotations

import ast
import functools
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from maxpoolbert.core.errors import UserError
from maxpoolbert.tasks.task import CONFIGS, TASK_CLASSES

POOLING_MODULE = "maxpoolbert.model.pooling"
TARGET = "_target_"

# A moved or renamed class: its import path now -> its canonical name (the path it had when runs first
# recorded it; never edited afterwards). Moving a class = moving it and adding its line here (a test
# checks that every canonical name of today's configs is still found, here or at its own path).
MOVED: dict[str, str] = {
    # issue 29: the flat modules became the layers' sub-packages (maxpoolbert/pooling.py -> model/pooling.py ...)
    "maxpoolbert.tasks.task.Task": "maxpoolbert.tasks.Task",
    "maxpoolbert.model.encoders.pretrained": "maxpoolbert.encoders.pretrained",
    "maxpoolbert.model.encoders.random_bert": "maxpoolbert.encoders.random_bert",
    "maxpoolbert.model.encoders.tokenizer": "maxpoolbert.encoders.tokenizer",
    "maxpoolbert.model.pooling.Pooling": "maxpoolbert.pooling.Pooling",
    "maxpoolbert.model.pooling.CLSPooling": "maxpoolbert.pooling.CLSPooling",
    "maxpoolbert.model.pooling.MaxCLSPooling": "maxpoolbert.pooling.MaxCLSPooling",
    "maxpoolbert.model.pooling.MHAPooling": "maxpoolbert.pooling.MHAPooling",
    "maxpoolbert.model.pooling.MeanPooling": "maxpoolbert.pooling.MeanPooling",
    "maxpoolbert.model.pooling.MaxPooling": "maxpoolbert.pooling.MaxPooling",
    "maxpoolbert.model.pooling.MeanMaxPooling": "maxpoolbert.pooling.MeanMaxPooling",
    "maxpoolbert.model.pooling.ConcatCLSPooling": "maxpoolbert.pooling.ConcatCLSPooling",
    "maxpoolbert.model.pooling.LayerMixPooling": "maxpoolbert.pooling.LayerMixPooling",
    "maxpoolbert.model.pooling.WeightedAveragePooling": "maxpoolbert.pooling.WeightedAveragePooling",
    "maxpoolbert.model.pooling.AttentionWeightedPooling": "maxpoolbert.pooling.AttentionWeightedPooling",
    "maxpoolbert.model.pooling.LearnedWeightedPooling": "maxpoolbert.pooling.LearnedWeightedPooling",
    "maxpoolbert.model.pooling.PositionalWeightedPooling": "maxpoolbert.pooling.PositionalWeightedPooling",
    "maxpoolbert.training.optim.adamw": "maxpoolbert.optim.adamw",
    "maxpoolbert.training.loggers.none": "maxpoolbert.loggers.none",
    "maxpoolbert.training.loggers.wandb": "maxpoolbert.loggers.wandb",
    "maxpoolbert.launch.callbacks.CheckConfig": "maxpoolbert.callbacks.CheckConfig",
    "maxpoolbert.launch.callbacks.SweepSummary": "maxpoolbert.callbacks.SweepSummary",
    "maxpoolbert.launch.callbacks.BestTrial": "maxpoolbert.callbacks.BestTrial",
}


def canonical(name: str) -> str:
    """The name a run's identity holds for the ``_target_`` ``name``: its canonical name (:data:`MOVED`)."""
    return MOVED.get(name, name)


def current(name: str) -> str:
    """Where the class a ``_target_`` names lives now: a canonical name of a moved class -> its path
    (:data:`MOVED`); any other name as it is."""
    for path, old in MOVED.items():
        if old == name:
            return path
    return name


def is_target(key: str) -> bool:
    """Whether a flattened config key names a ``_target_`` (``model.encoder._target_``)."""
    return key == TARGET or key.endswith("." + TARGET)


@functools.cache
def allowed() -> frozenset[str]:
    """The ``_target_`` names a stored config may use (see the module's docstring)."""
    names = set(TASK_CLASSES)
    for path in sorted(CONFIGS.rglob("*.yaml")):
        try:
            node = OmegaConf.to_container(OmegaConf.load(path), resolve=False)
        except Exception:  # noqa: BLE001 - a file that does not parse names nothing
            continue
        names.update(value for _, value in _targets(node) if isinstance(value, str))
    source = Path(__file__).resolve().parents[1] / "model" / "pooling.py"  # maxpoolbert/config/ -> maxpoolbert/model/
    tree = ast.parse(source.read_text(encoding="utf-8"))
    names.update(f"{POOLING_MODULE}.{n.name}" for n in tree.body if isinstance(n, ast.ClassDef))
    names.update(old for path, old in MOVED.items() if path in names)  # a stored config's old name of a class
    return frozenset(names)


def _targets(node: Any, prefix: str = "") -> Iterator[tuple[str, Any]]:
    """``(key, value)`` of every ``_target_`` in a plain config (``model.encoder``: its key)."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key == TARGET:
                yield prefix.rstrip("."), value
            else:
                yield from _targets(value, f"{prefix}{key}.")
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from _targets(value, f"{prefix}{i}.")


def check(cfg: Any, source: str | Path) -> None:
    """Refuse a stored config (``source``: its file) that names a ``_target_`` outside
    :func:`allowed`, anywhere in it but Hydra's own node: one line naming the file and the key."""
    node = OmegaConf.to_container(cfg, resolve=False) if OmegaConf.is_config(cfg) else cfg
    if isinstance(node, dict):
        node = {k: v for k, v in node.items() if k != "hydra"}
    for key, value in _targets(node):
        if not isinstance(value, str) or value not in allowed():
            where = f"{key}.{TARGET}" if key else TARGET
            raise UserError(f"in {source}: not one of this project's classes (a run folder's config is data)",
                            key=where, value=value, allowed="the _target_s of configs/ and maxpoolbert.model.pooling")


def relocated(cfg: Any) -> Any:
    """A stored config (checked, :func:`check`) with every ``_target_`` at the path its class has now
    (:func:`current`): a run folder written before a class moved builds from it (predict, export).
    ``cfg`` itself is not changed; Hydra's own node is left as it is."""
    node = OmegaConf.to_container(cfg, resolve=False) if OmegaConf.is_config(cfg) else cfg

    def move(value: Any, key: str | None = None) -> Any:
        if isinstance(value, dict):
            return {k: (v if k == "hydra" and key is None else move(v, k)) for k, v in value.items()}
        if isinstance(value, list):
            return [move(v) for v in value]
        return current(value) if key == TARGET and isinstance(value, str) else value

    moved = move(node)
    return OmegaConf.create(moved) if OmegaConf.is_config(cfg) else moved
