"""The package's import direction: every module sits in one layer and imports only from its own
layer or the layers below it (lazy imports inside functions included), so that no module reaches
up into one that builds on it and no two modules import each other."""

import ast
from pathlib import Path

import pytest

from .conftest import ROOT

PACKAGE = ROOT / "maxpoolbert"

# Lowest first. A new module must be placed here (the test says so).
LAYERS = [
    # foundations: no project imports but these
    ["errors", "values", "signatures", "lightning_flags", "metrics", "live_metrics", "pooling", "readers",
     "model_folder", "memory"],
    # what a task and an encoder family are
    ["tasks", "families", "layers", "targets"],
    # the pieces a run is built from, and the config check
    ["schema", "encoders", "model", "optim", "data", "module", "modeling_maxpoolbert"],
    # the run record: a run folder, what a run records, a run's identity; how a run was launched
    ["rundir", "checkpointing", "context"],
    # around a run: the Trainer, loggers, Hydra callbacks and sweeps
    ["trainer", "loggers", "callbacks", "sweeps"],
    # one run
    ["run"],
    # one run from Python (maxpoolbert.train)
    ["entry"],
    # tools over finished runs
    ["predict", "export", "report"],
]
LAYER = {name: i for i, names in enumerate(LAYERS) for name in names}


def unit(path: Path) -> str:
    """The layer unit of a module: its name under maxpoolbert (a subpackage is one unit)."""
    return path.relative_to(PACKAGE).parts[0].removesuffix(".py")


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


def test_every_module_has_a_layer():
    missing = sorted({unit(p) for p in MODULES} - set(LAYER))
    assert not missing, f"place {missing} in tests/test_structure.py LAYERS"


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_imports_point_down(path):
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
    probe = PACKAGE / "_probe_structure.py"
    probe.write_text("def f():\n    from maxpoolbert.run import run\n    from .report import collect\n"
                     "    import maxpoolbert.tasks\n")
    try:
        assert project_imports(probe) == {"run", "report", "tasks"}
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
