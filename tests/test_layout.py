"""The package's shape (docs/architecture.md): no import circles, no import from a lower floor
back up, few flat modules, every subpackage installed, and backend-name branches kept in the
folders whose job is the backends."""

from __future__ import annotations

import ast
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "ppl_vae"

FLOORS = [
    ("ppl_vae.io", "ppl_vae.threads", "ppl_vae.networks", "ppl_vae.estimators"),
    ("ppl_vae.families",),
    ("ppl_vae.spec",),
    ("ppl_vae.data",),
    ("ppl_vae.models",),
    ("ppl_vae.runs",),
    ("ppl_vae.training",),
    ("ppl_vae.evaluation",),
    ("ppl_vae.diagnostics",),
    ("ppl_vae.reports",),
    ("ppl_vae.variance",),
    ("ppl_vae.compare",),
    ("ppl_vae.bench", "ppl_vae.commands"),
    ("ppl_vae.cli", "ppl_vae"),
]
"""Lowest first: a module may import its own floor's and lower floors' modules only."""

BACKEND_FOLDERS = ("ppl_vae/models/", "ppl_vae/training/", "ppl_vae/bench/")


def _modules() -> dict[str, Path]:
    mods = {}
    for path in PACKAGE.rglob("*.py"):
        name = ".".join(path.relative_to(ROOT).with_suffix("").parts)
        mods[name.removesuffix(".__init__")] = path
    return mods


MODULES = _modules()


def _imports(name: str, path: Path) -> set[str]:
    """Package modules ``name`` imports, at module level or inside functions; a package's
    ``__init__`` counts as imported by ``from pkg import x`` (but not by its own modules)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(parts + ([base] if base else []))
            found.add(base)
            found |= {f"{base}.{alias.name}" for alias in node.names}
    return {d for d in found if d in MODULES and d != name and not name.startswith(d + ".")}


GRAPH = {name: _imports(name, path) for name, path in MODULES.items()}


def _floor(module: str) -> int:
    best = None
    for level, roots in enumerate(FLOORS):
        for root in roots:
            if module == root or module.startswith(root + "."):
                if best is None or len(root) > best[1]:
                    best = (level, len(root))
    assert best is not None, f"{module} has no floor in FLOORS: add it"
    return best[0]


def test_no_import_circles():
    state: dict[str, int] = {}
    circles = []

    def visit(node: str, stack: list[str]) -> None:
        state[node] = 1
        for dep in sorted(GRAPH[node]):
            if state.get(dep) == 1:
                circles.append(" -> ".join(stack[stack.index(dep):] + [node, dep]))
            elif dep not in state:
                visit(dep, stack + [node])
        state[node] = 2

    for name in sorted(GRAPH):
        if name not in state:
            visit(name, [])
    assert circles == []


def test_no_import_from_a_lower_floor_back_up():
    upward = sorted(f"{name} (floor {_floor(name)}) imports {dep} (floor {_floor(dep)})"
                    for name, deps in GRAPH.items() for dep in deps
                    if _floor(dep) > _floor(name))
    assert upward == []


def test_few_flat_modules():
    flat = sorted(p.name for p in PACKAGE.glob("*.py"))
    assert len(flat) <= 8, flat


def test_every_subpackage_is_installed():
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    listed = set(config["tool"]["setuptools"]["packages"])
    folders = {".".join(p.parent.relative_to(ROOT).parts) for p in PACKAGE.rglob("__init__.py")}
    assert folders - listed == set()


def _backend_branches(path: Path) -> int:
    """Comparisons (==, !=, in) of something with the literal "pyro" or "numpyro"."""
    count = 0
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Compare):
            operands = [node.left, *node.comparators]
            literals = [n for n in operands if isinstance(n, ast.Constant)]
            literals += [e for n in operands if isinstance(n, ast.Tuple | ast.List | ast.Set)
                         for e in n.elts if isinstance(e, ast.Constant)]
            count += any(n.value in ("pyro", "numpyro") for n in literals)
    return count


def test_backend_names_branch_only_where_the_backends_live():
    # one module elsewhere may: the closed-form toy of the variance study, written as a Pyro
    # and a NumPyro program
    elsewhere = sorted(str(p.relative_to(ROOT)) for p in PACKAGE.rglob("*.py")
                       if not str(p.relative_to(ROOT)).startswith(BACKEND_FOLDERS)
                       and _backend_branches(p))
    assert len(elsewhere) <= 1, elsewhere
