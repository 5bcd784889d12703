"""What a stored config may build: the allowlist of ``_target_`` names.

A run folder is data. Its ``.hydra/config.yaml`` is read back by ``predict``, ``export`` and the
report (the task, for the gold labels of archived predictions), which rebuild the task, tokenizer,
encoder and pooling from it; Hydra's ``instantiate`` would call whatever ``_target_`` the file
names (``torch.load`` of a pickle, ``builtins.eval``). So before anything is built from a stored
config, every ``_target_`` in it must be one of this project's own (:func:`allowed`):

* every ``_target_`` of the project's ``configs/`` folder (its YAML files: encoders, tokenizers,
  poolings, the task class, the optimizer, loggers, the Trainer ...) — a pooling a user adds with
  its own YAML file there is allowed with it;
* every class defined in :mod:`maxpoolbert.pooling`;
* the task class :class:`maxpoolbert.tasks.Task` (``GlueTask``: its name in older run folders).

Anything else is refused in one line naming the file and the key (:func:`check`). Read without
importing anything (YAML and :mod:`ast`): the check runs before torch loads.
"""

from __future__ import annotations

import ast
import functools
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from maxpoolbert.errors import UserError
from maxpoolbert.tasks import CONFIGS, TASK_CLASSES

POOLING_MODULE = "maxpoolbert.pooling"
TARGET = "_target_"


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
    source = Path(__file__).resolve().with_name("pooling.py")
    tree = ast.parse(source.read_text(encoding="utf-8"))
    names.update(f"{POOLING_MODULE}.{n.name}" for n in tree.body if isinstance(n, ast.ClassDef))
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
                            key=where, value=value, allowed="the _target_s of configs/ and maxpoolbert.pooling")
