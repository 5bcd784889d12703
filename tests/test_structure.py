"""The package's import direction: the layers are the sub-packages of ``maxpoolbert`` (``core/``,
``tasks/``, ``model/`` ...), lowest first; every module sits in one of them (or is one of the public
faces at the top), and imports only from its own sub-package or the ones below it (lazy imports
inside functions included), so that no module reaches up into one that builds on it; and no
modules import each other in a cycle of any length, inside a sub-package too."""

import ast
from pathlib import Path

import pytest

from .conftest import ROOT

PACKAGE = ROOT / "maxpoolbert"

# The layers, lowest first: each a sub-package (a folder of maxpoolbert/ with its __init__.py) but
# the last, the public faces (``python -m maxpoolbert.predict|export|report``). A new module goes
# into one of the folders; a new folder or face must be placed here (the tests say so).
LAYERS = [
    ["core"],      # errors, value types, signatures, metrics, atomic file IO
    ["tasks"],     # what a task is: the task class and its configs, readers, benchmarks
    ["model"],     # pooling, encoder families and folders, the classifier, its Hugging Face form
    ["config"],    # the config check, Lightning's flags, the _target_ allowlist and canonical names
    ["runs"],      # a run folder, the record, a run's identity, W&B conversion, the run context
    ["training"],  # data, the LightningModule, optimizers, the Trainer, checkpoints, loggers
    ["launch"],    # one run, the Python entry, Hydra callbacks, sweeps
    ["predict", "export", "report"],  # the public faces over finished runs
]
LAYER = {name: i for i, names in enumerate(LAYERS) for name in names}
FACES = {"predict", "export"}  # the modules at the top of the package (report/ is a folder)


def unit(path: Path) -> str:
    """The layer unit of a module: its sub-package under maxpoolbert, or a top-level face's name."""
    return path.relative_to(PACKAGE).parts[0].removesuffix(".py")


def placement_problem(path: Path) -> str | None:
    """Why ``path`` (a module under maxpoolbert) sits outside the layers, or None."""
    parts = path.relative_to(PACKAGE).parts
    if len(parts) == 1:
        if unit(path) in FACES:
            return None
        return (f"maxpoolbert/{parts[0]} sits outside the layers' folders: move it into one of "
                f"{', '.join(f'{n}/' for names in LAYERS[:-1] for n in names)} (the one whose modules it "
                "builds on), or make it a public face in tests/test_structure.py FACES")
    if parts[0] not in LAYER:
        return f"maxpoolbert/{parts[0]}/ is not a layer: place it in tests/test_structure.py LAYERS"
    if not (PACKAGE / parts[0] / "__init__.py").is_file():
        return f"maxpoolbert/{parts[0]}/ has no __init__.py (a layer is a package)"
    return None


def project_imports(path: Path) -> set[str]:
    """The units of maxpoolbert that ``path`` imports, anywhere in it."""
    tree = ast.parse(path.read_text())
    package = path.relative_to(ROOT).with_suffix("").parts[:-1]
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: from .families import ..., from . import x
                base = package[: len(package) - node.level + 1]
                module = ".".join((*base, node.module)) if node.module else ".".join(base)
                names = [module] if node.module else [f"{module}.{a.name}" for a in node.names]
            else:
                names = [node.module or ""]
                if node.module == "maxpoolbert":
                    names = [f"maxpoolbert.{a.name}" for a in node.names]
        else:
            continue
        for name in names:
            parts = name.split(".")
            if parts[0] == "maxpoolbert" and len(parts) > 1:
                found.add(parts[1])
    return found


MODULES = sorted(p for p in PACKAGE.rglob("*.py") if p.name != "__init__.py" or p.parent != PACKAGE)


def test_every_module_sits_in_a_layer_folder():
    problems = [msg for p in MODULES if (msg := placement_problem(p))]
    assert not problems, "\n".join(problems)


def test_the_folders_are_the_layers():
    """Each layer's folder exists as a package, and maxpoolbert/ holds nothing but the layers'
    folders and the faces."""
    folders = {p.name for p in PACKAGE.iterdir() if p.is_dir() and p.name != "__pycache__"}
    top = {p.stem for p in PACKAGE.glob("*.py")} - {"__init__"}
    assert folders == set(LAYER) - FACES, "maxpoolbert/'s folders are not LAYERS' (tests/test_structure.py)"
    assert top == FACES
    assert all((PACKAGE / f / "__init__.py").is_file() for f in folders)


def test_a_module_outside_the_folders_is_named():
    """The placement check can fail, with a message that says where to put the module."""
    assert "outside the layers' folders: move it into one of core/, tasks/" in placement_problem(PACKAGE / "helpers.py")
    assert "not a layer" in placement_problem(PACKAGE / "utils" / "misc.py")
    assert placement_problem(PACKAGE / "runs" / "folder.py") is None
    assert placement_problem(PACKAGE / "predict.py") is None


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_imports_point_down(path):
    assert placement_problem(path) is None, placement_problem(path)
    here = unit(path)
    upward = sorted(u for u in project_imports(path) - {here} if LAYER.get(u, -1) > LAYER[here])
    assert not upward, f"{path.relative_to(ROOT)} (layer {LAYER[here]}) imports from above it: " + ", ".join(
        f"{u} (layer {LAYER[u]})" for u in upward)


def test_no_two_units_import_each_other():
    imports = {unit(p): set() for p in MODULES}
    for p in MODULES:
        imports[unit(p)] |= project_imports(p) - {unit(p)}
    pairs = sorted((a, b) for a in imports for b in imports[a] if a < b and a in imports.get(b, set()))
    assert not pairs, f"units that import each other: {pairs}"


def test_the_checker_sees_lazy_and_relative_imports():
    """The check can fail: a lazy import inside a function and a relative one are both found."""
    probe = PACKAGE / "core" / "_probe_structure.py"  # inside a folder: the folder check never sees it
    probe.write_text("def f():\n    from maxpoolbert.launch.run import run\n    from ..report import collect\n"
                     "    import maxpoolbert.tasks.task\n")
    try:
        assert project_imports(probe) == {"launch", "report", "tasks"}
    finally:
        probe.unlink()


def module_imports(path: Path) -> set[str]:
    """The modules of maxpoolbert (dotted, below the package: ``report.stats``; a package's
    ``__init__``: ``report``) that ``path`` imports, anywhere in it."""
    tree = ast.parse(path.read_text())
    package = path.relative_to(ROOT).with_suffix("").parts[:-1]
    found = set()

    def resolve(dotted: str) -> str | None:
        parts = dotted.split(".")
        if parts[0] != "maxpoolbert" or len(parts) < 2:
            return None
        for n in range(len(parts), 1, -1):  # the longest prefix that is a module file or a package
            rel = Path(*parts[1:n])
            if (PACKAGE / rel).with_suffix(".py").is_file() or (PACKAGE / rel / "__init__.py").is_file():
                return ".".join(parts[1:n])
        return None

    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = ".".join(package[: len(package) - node.level + 1])
                module = f"{base}.{node.module}" if node.module else base
            else:
                module = node.module or ""
            names = [f"{module}.{a.name}" for a in node.names]  # a submodule, else the module itself
        else:
            continue
        found |= {m for m in map(resolve, names) if m}
    return found


def module_name(path: Path) -> str:
    rel = path.relative_to(PACKAGE).with_suffix("")
    return ".".join(rel.parts[:-1] if rel.name == "__init__" else rel.parts)


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan), each sorted."""
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_no_import_cycle_between_modules_of_any_length():
    """Module by module, inside the sub-packages too (a package's ``__init__`` that re-exports its
    modules is one of them): no import cycle, however long."""
    modules = sorted(PACKAGE.rglob("*.py"))
    graph = {module_name(p): module_imports(p) - {module_name(p)} for p in modules if module_name(p)}
    assert cycles(graph) == []
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]  # the check can fail
