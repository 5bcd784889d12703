"""The keyword options a class (or function) declares, read from its source without importing it.

A pooling strategy declares its options once, as the keyword arguments of its constructor with
their types and defaults (``MHAPooling(encoder_config, k: int = 1, num_heads: int = 4, ...)``);
the config check (:mod:`maxpoolbert.config.schema`), a run's settings (:mod:`maxpoolbert.runs.folder`) and
the export read them from there. The source is parsed with :mod:`ast`, because the config is
checked before torch (which every pooling module imports) loads. The same reader gives
``lightning.Trainer``'s flags (:mod:`maxpoolbert.config.lightning_flags`).
"""

from __future__ import annotations

import ast
import copy
import importlib.machinery
import importlib.util
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

REQUIRED = object()  # an option without a default


@dataclass(frozen=True)
class Option:
    name: str
    annotation: str | None  # the annotation as written (``"int"``, ``"float | None"``), or None
    default: Any = REQUIRED  # a literal default; REQUIRED when there is none or it is not a literal


def module_source(module: str) -> Path | None:
    """The source file of ``module`` (a dotted name), found without importing it or its parent
    packages (``importlib.util.find_spec`` of ``a.b`` would import ``a``: a stored config naming a
    package would run its ``__init__``)."""
    parts = module.split(".")
    try:
        spec = importlib.util.find_spec(parts[0])  # a top-level name: looked up, nothing imported
        for i in range(1, len(parts)):
            if spec is None or not spec.submodule_search_locations:
                return None
            spec = importlib.machinery.PathFinder.find_spec(".".join(parts[:i + 1]),
                                                            list(spec.submodule_search_locations))
    except (ImportError, ValueError):  # a name that is no module's
        return None
    if spec is None or not spec.origin or not spec.origin.endswith(".py"):
        return None
    return Path(spec.origin)


@cache
def _tree(path: Path) -> ast.Module:
    return ast.parse(path.read_text(encoding="utf-8"))


def options(target: str, skip: tuple[str, ...] = ("self",)) -> dict[str, Option] | None:
    """``{name: Option}`` of the keyword parameters of ``target`` (``"package.module.Name"``): a
    function's parameters, or a class's ``__init__`` parameters (inherited from a base class in
    the same module when it has none of its own). Parameters in ``skip`` and ``*args``/``**kwargs``
    are left out. ``None`` when the source or the name cannot be found."""
    module, _, name = target.rpartition(".")
    path = module_source(module) if module else None
    if path is None:
        return None
    node = _find(_tree(path), name)
    if node is None:
        return None
    if isinstance(node, ast.ClassDef):
        node = _init_of(_tree(path), node)
        if node is None:
            return {}
    return {o.name: o for o in _parameters(node, _aliases(_tree(path))) if o.name not in skip}


def _find(tree: ast.Module, name: str) -> ast.ClassDef | ast.FunctionDef | None:
    for node in tree.body:
        if isinstance(node, ast.ClassDef | ast.FunctionDef) and node.name == name:
            return node
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == name for t in node.targets) \
                and isinstance(node.value, ast.Name):  # an alias: ``GlueTask = Task``
            return _find(tree, node.value.id)
    return None


def _init_of(tree: ast.Module, cls: ast.ClassDef) -> ast.FunctionDef | None:
    for node in cls.body:
        if isinstance(node, ast.FunctionDef) and node.name == "__init__":
            return node
    for base in cls.bases:  # the first base defined in this module that has one
        if isinstance(base, ast.Name):
            parent = _find(tree, base.id)
            if isinstance(parent, ast.ClassDef):
                found = _init_of(tree, parent)
                if found is not None:
                    return found
    return None


def _aliases(tree: ast.Module) -> dict[str, ast.expr]:
    """Module-level type aliases: ``Layers = Annotated[int, Range(ge=1)]``."""
    return {node.targets[0].id: node.value for node in tree.body
            if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name)
            and isinstance(node.value, ast.Subscript)}


class _Expand(ast.NodeTransformer):
    def __init__(self, aliases: dict[str, ast.expr]) -> None:
        self.aliases = aliases

    def visit_Name(self, node: ast.Name) -> ast.expr:  # noqa: N802 - ast's visitor naming
        return self.visit(self.aliases[node.id]) if node.id in self.aliases else node


def _parameters(fn: ast.FunctionDef, aliases: dict[str, ast.expr]) -> list[Option]:
    args = fn.args
    positional = args.posonlyargs + args.args
    padded = [None] * (len(positional) - len(args.defaults)) + list(args.defaults)
    pairs = list(zip(positional, padded, strict=True)) + list(zip(args.kwonlyargs, args.kw_defaults, strict=True))
    out = []
    for arg, default in pairs:
        annotation = None
        if arg.annotation is not None:  # aliases written out: the annotation reads on its own
            annotation = ast.unparse(_Expand(aliases).visit(copy.deepcopy(arg.annotation)))
        out.append(Option(arg.arg, annotation, _literal(default)))
    return out


def _literal(node: ast.expr | None) -> Any:
    if node is None:
        return REQUIRED
    try:
        return ast.literal_eval(node)
    except ValueError:  # not a literal
        return REQUIRED


def defaults(target: str, skip: tuple[str, ...] = ("self",)) -> dict[str, Any]:
    """``{name: default}`` of the options of ``target`` that have a literal default."""
    found = options(target, skip) or {}
    return {name: o.default for name, o in found.items() if o.default is not REQUIRED}
