"""The keyword options a class (or function) declares, read from its source without importing it.

A pooling strategy declares its options once, as the keyword arguments of its constructor with
their types and defaults (``MHAPooling(encoder_config, k: int = 1, num_heads: int = 4, ...)``);
the config check (:mod:`maxpoolbert.config.schema`), a run's settings (:mod:`maxpoolbert.runs.folder`) and
the export read them from there. The source is parsed with :mod:`ast`, because the config is
checked before torch (which every pooling module imports) loads. The same reader gives
``lightning.Trainer``'s flags (:mod:`maxpoolbert.config.lightning_flags`).

A pooling strategy's options become one torch-free pydantic model (:func:`options_model`, cached):
the config check validates a YAML's options with it, and a run's settings and the export complete
a YAML that leaves an option out from its defaults (:func:`with_defaults`). An annotation is read
by resolving its names against an explicit table (:data:`ANNOTATION_NAMES`: ``int``, ``float``,
``bool``, ``str``, ``None``, the value types of :mod:`maxpoolbert.core.values`; ``Literal``,
``Optional``, ``Union``, ``X | Y``, ``list[X]`` and ``Annotated[X, Range(...)]``), never evaluated;
any other annotation is refused in one line naming the option.
"""

from __future__ import annotations

import ast
import copy
import importlib.machinery
import importlib.util
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Annotated, Any, Literal, Optional, Union

from pydantic import BaseModel, ConfigDict, Field, create_model

from maxpoolbert.core import values
from maxpoolbert.core.errors import UserError

REQUIRED = object()  # an option without a default
POOLING_SKIP = ("self", "encoder_config")  # a pooling constructor's parameters that are not options


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


# ------------------------------------------------------------------------------- options as a model
# the names an option's annotation may use; anything else is refused (:func:`annotation_type`)
ANNOTATION_NAMES: dict[str, Any] = {
    "int": int, "float": float, "bool": bool, "str": values.Text, "None": None,
    **{name: getattr(values, name) for name in ("Text", "PositiveInt", "NonNegativeInt", "PositiveFloat",
                                                "NonNegativeFloat", "Probability", "Fraction")},
}
_GENERICS = ("Literal", "Optional", "Union", "Annotated", "list")
_BOUNDS = ("ge", "gt", "le", "lt")  # Range(...)'s keywords


class AnnotationError(ValueError):
    """An annotation the table of :func:`annotation_type` does not cover."""


def annotation_type(text: str | None) -> Any:
    """The type an option's annotation ``text`` names (``"Annotated[int, Range(ge=1)] | None"``),
    resolved against :data:`ANNOTATION_NAMES` and the generics ``Literal``, ``Optional``, ``Union``,
    ``|``, ``list`` and ``Annotated`` with :func:`maxpoolbert.model.pooling.Range` bounds (pydantic
    ``Field`` bounds); ``Any`` for no annotation. :class:`AnnotationError` for anything else."""
    if not text:
        return Any
    try:
        node = ast.parse(text, mode="eval").body
    except SyntaxError:
        raise AnnotationError(f"{text!r} is not an annotation") from None
    return _resolve(node)


def _resolve(node: ast.expr) -> Any:
    if isinstance(node, ast.Name) and node.id in ANNOTATION_NAMES:
        return ANNOTATION_NAMES[node.id]
    if isinstance(node, ast.Constant) and node.value is None:
        return None
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.BitOr):
        return Union[_resolve(node.left), _resolve(node.right)]  # noqa: UP007 - built from parts
    if isinstance(node, ast.Subscript) and isinstance(node.value, ast.Name) and node.value.id in _GENERICS:
        head = node.value.id
        args = list(node.slice.elts) if isinstance(node.slice, ast.Tuple) else [node.slice]
        if head == "Literal":
            try:
                return Literal[tuple(ast.literal_eval(a) for a in args)]
            except ValueError:
                raise AnnotationError(f"Literal takes plain values, not {ast.unparse(node)}") from None
        if head == "Annotated" and len(args) >= 2:
            return Annotated[(_resolve(args[0]), *(_bound(a) for a in args[1:]))]
        if head == "Optional" and len(args) == 1:
            return Optional[_resolve(args[0])]  # noqa: UP045 - built from parts
        if head == "Union":
            return Union[tuple(_resolve(a) for a in args)]  # noqa: UP007 - built from parts
        if head == "list" and len(args) == 1:
            return list[_resolve(args[0])]
    raise AnnotationError(f"{ast.unparse(node)} is not a type the config check knows")


def _bound(node: ast.expr) -> Any:
    """``Range(ge=1)`` -> ``Field(ge=1)``."""
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "Range" \
            and not node.args and all(k.arg in _BOUNDS for k in node.keywords):
        try:
            return Field(**{k.arg: ast.literal_eval(k.value) for k in node.keywords})
        except ValueError:
            pass
    raise AnnotationError(f"{ast.unparse(node)} is not Range(ge=..., gt=..., le=..., lt=...) with numbers")


class Options(BaseModel):
    """A strategy's options: strict types (``abc`` is not an integer), keys not declared allowed
    here (the config check refuses them with the closest name, :func:`maxpoolbert.config.schema.check_pooling_options`)."""

    model_config = ConfigDict(strict=True, extra="allow", populate_by_name=True)


@cache
def options_model(target: str) -> type[Options] | None:
    """The pydantic model of the options of the pooling strategy ``target``
    (``"maxpoolbert.model.pooling.MHAPooling"``): one field per keyword option of its constructor, typed
    by its annotation (:func:`annotation_type`), with its literal default (none: required). Built
    from the source, without importing it (no torch). ``None`` when the source cannot be found; a
    :class:`~maxpoolbert.core.errors.UserError` naming the option when an annotation cannot be read."""
    declared = options(target, skip=POOLING_SKIP)
    if declared is None:
        return None
    name = target.rpartition(".")[2]
    fields = {}
    for key, option in declared.items():
        try:
            kind = annotation_type(option.annotation)
        except AnnotationError as err:
            raise UserError(f"option {key} of {name} is annotated {option.annotation}: {err}",
                            key="pooling.module._target_", value=target,
                            allowed="option annotations of int, float, bool, str, None, maxpoolbert.core.values' "
                                    "types, Literal, Optional, Union, |, list and Annotated[..., Range(...)]") from None
        fields[key] = (kind, option.default if option.default is not REQUIRED else ...)
    return create_model(name, __base__=Options, **fields)


def with_defaults(target: str, given: dict[str, Any]) -> dict[str, Any]:
    """The options ``given`` for the strategy ``target`` (``_target_`` among them or not), each one
    left out at its declared default (:func:`options_model`), in the order declared-then-given; the
    given values as they are (nothing converted: a run's identity hashes them)."""
    model = options_model(target)
    declared = {} if model is None else {k: f.default for k, f in model.model_fields.items() if not f.is_required()}
    return {**declared, **given}
