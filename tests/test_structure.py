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
