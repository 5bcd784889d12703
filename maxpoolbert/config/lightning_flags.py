"""Every ``lightning.Trainer`` argument as a config node, so that any of them is reachable as
``trainer.<flag>=...`` on the command line, whichever Lightning release is installed.

``configs/trainer/*.yaml`` list only the flags this project sets. Below them, in each trainer
config's defaults list, lies ``lightning/trainer_flags``: every keyword argument of the installed
``lightning.Trainer.__init__`` with Lightning's own default, read from its signature. A new
Lightning argument thus appears by itself (nothing to edit, no test to break), and Hydra accepts
an override of any real flag while it still refuses a misspelt one.

The signature is read from Lightning's source with :mod:`ast`, without importing Lightning
(which takes seconds): this runs when Hydra starts, before any bad setting is refused.
:func:`register` is called by the project's Hydra plugin module
(``hydra_plugins/maxpoolbert_plugins``), which Hydra imports before it composes a config.
"""

from __future__ import annotations

import ast
import importlib.util
from functools import cache
from pathlib import Path
from typing import Any

GROUP, NAME = "lightning", "trainer_flags"
SKIP = {"logger", "callbacks"}  # given by the run code (maxpoolbert.training.trainer.build_trainer)


@cache
def _signature() -> list[tuple[ast.arg, ast.expr | None]]:
    """``(argument, default)`` of every keyword argument of ``lightning.Trainer.__init__``, from
    its source; empty when Lightning is not installed."""
    spec = importlib.util.find_spec("lightning")
    if spec is None or not spec.submodule_search_locations:
        return []
    source = Path(next(iter(spec.submodule_search_locations))) / "pytorch" / "trainer" / "trainer.py"
    tree = ast.parse(source.read_text())
    cls = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "Trainer")
    init = next(n for n in cls.body if isinstance(n, ast.FunctionDef) and n.name == "__init__")
    args = init.args
    pairs = list(zip(args.kwonlyargs, args.kw_defaults, strict=True))
    positional = args.args[1:]  # after self; defaults align to the end
    pairs += list(zip(positional[len(positional) - len(args.defaults):], args.defaults, strict=True))
    return pairs


def trainer_flags() -> list[str]:
    """The name of every keyword argument of the installed ``lightning.Trainer`` (empty when
    Lightning is not installed): what ``trainer.<flag>=`` may name."""
    return [arg.arg for arg, _ in _signature()]


@cache
def trainer_defaults() -> dict[str, Any]:
    """``{flag: default}`` for every keyword argument of ``lightning.Trainer.__init__`` whose
    default is a literal (all of them in Lightning 2.x); empty when Lightning is not installed."""
    out = {}
    for arg, default in _signature():
        if default is None or arg.arg in SKIP:
            continue
        try:
            out[arg.arg] = ast.literal_eval(default)
        except ValueError:  # not a literal: reachable with +trainer.<flag>= only
            continue
    return out


def register() -> None:
    """Store the flags as the config ``lightning/trainer_flags`` in Hydra's ConfigStore."""
    from hydra.core.config_store import ConfigStore

    ConfigStore.instance().store(group=GROUP, name=NAME, node=trainer_defaults())
