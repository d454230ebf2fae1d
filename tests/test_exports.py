"""Each module's ``__all__`` is its real public surface (STYLE.md "A small public surface").

Every module of the installed ``abaxus`` states ``__all__``; every name in it exists; and every
``from abaxus.x import name`` anywhere in the repository (the product, its tests and
benchmarks; ``sdk/`` is a package of its own) names a submodule or a name in ``abaxus.x``'s
``__all__``, so what other modules rely on is declared, and nothing private is borrowed.
"""

from __future__ import annotations

import ast
import importlib
import pkgutil
import tomllib
from pathlib import Path
from types import ModuleType

import pytest

REPO = Path(__file__).resolve().parent.parent
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())
# Alembic's folder holds scripts Alembic loads (env.py runs a migration when imported), not an
# API; ``__main__`` modules are what ``python -m`` runs.
NOT_IMPORTED = ("abaxus.store.migrations",)
SOURCE_DIRS = ("api", "benchmarks", "billing", "cli", "core", "pipeline", "rating", "schemas", "store", "tests")


def _module_names() -> list[str]:
    """Every module of the distribution: its packages as pyproject.toml lists them, walked.

    (An editable install maps each package to its own folder, so walking ``abaxus`` alone
    would find only ``core/``.)
    """
    names: set[str] = set()
    for package in PYPROJECT["tool"]["setuptools"]["packages"]:
        names.add(package)
        path = importlib.import_module(package).__path__
        names.update(info.name for info in pkgutil.iter_modules(path, package + "."))
    return sorted(names)


MODULE_NAMES = _module_names()
IMPORTABLE = [n for n in MODULE_NAMES if not n.startswith(NOT_IMPORTED) and not n.endswith(".__main__")]


def _module(name: str) -> ModuleType:
    return importlib.import_module(name)


def _imports_from_abaxus() -> list[tuple[str, str, str]]:
    """(module, name, where) for each ``from abaxus… import name`` in the repository's sources."""
    found = []
    for folder in SOURCE_DIRS:
        for path in sorted((REPO / folder).rglob("*.py")):
            tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
            for node in ast.walk(tree):
                if (isinstance(node, ast.ImportFrom) and node.level == 0 and node.module
                        and (node.module == "abaxus" or node.module.startswith("abaxus."))):
                    where = f"{path.relative_to(REPO)}:{node.lineno}"
                    found.extend((node.module, alias.name, where) for alias in node.names)
    return found


def test_every_package_in_pyproject_is_walked():
    assert {"abaxus", "abaxus.api", "abaxus.api.routes", "abaxus.billing", "abaxus.pipeline", "abaxus.rating",
            "abaxus.schemas", "abaxus.store"} <= set(MODULE_NAMES)
    assert {"abaxus.ids", "abaxus.settings", "abaxus.api.app", "abaxus.billing.idempotency", "abaxus.pipeline.intake",
            "abaxus.store.usage"} <= set(IMPORTABLE)


@pytest.mark.parametrize("name", IMPORTABLE)
def test_a_module_states_all_and_everything_in_it_exists(name: str):
    module = _module(name)
    declared = getattr(module, "__all__", None)
    assert isinstance(declared, list), f"{name} states no __all__ list"
    assert [n for n in declared if not isinstance(n, str)] == [], f"{name}.__all__ holds more than names"
    assert len(declared) == len(set(declared)), f"{name}.__all__ repeats a name"
    assert [n for n in declared if not hasattr(module, n)] == [], f"{name}.__all__ names what {name} does not define"
    assert [n for n in declared if n.startswith("_") and not n.startswith("__")] == [], f"{name}.__all__ exports a private name"


def test_every_name_imported_from_an_abaxus_module_is_in_its_all():
    missing = []
    for module_name, name, where in _imports_from_abaxus():
        if f"{module_name}.{name}" in MODULE_NAMES:  # a submodule
            continue
        if name == "*" or name not in getattr(_module(module_name), "__all__", ()):
            missing.append(f"{module_name}: {name} (imported at {where})")
    assert missing == []


def _package_of(path: Path) -> str | None:
    """The package a source file belongs to (None for tests and benchmarks)."""
    folders = {folder: package for package, folder in PYPROJECT["tool"]["setuptools"]["package-dir"].items()}
    rel = path.relative_to(REPO)
    if rel.parts[0] not in folders:
        return None
    return ".".join([folders[rel.parts[0]], *rel.parts[1:-1]])


def test_nothing_private_is_imported_from_outside_its_package():
    """``from abaxus.billing import _validate`` is for ``abaxus.billing``'s own modules only."""
    borrowed = []
    for folder in SOURCE_DIRS:
        for path in sorted((REPO / folder).rglob("*.py")):
            importer = _package_of(path)
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
                if not (isinstance(node, ast.ImportFrom) and node.level == 0 and node.module
                        and (node.module == "abaxus" or node.module.startswith("abaxus."))):
                    continue
                for alias in node.names:
                    target = f"{node.module}.{alias.name}"
                    parts = target.split(".")
                    private = [i for i, part in enumerate(parts) if part.startswith("_") and not part.startswith("__")]
                    if not private:
                        continue
                    owner = ".".join(parts[:private[0]])  # the package the private part belongs to
                    if importer is None or not (importer == owner or importer.startswith(owner + ".")):
                        borrowed.append(f"{target} (imported at {path.relative_to(REPO)}:{node.lineno})")
    assert borrowed == []


def test_the_scan_sees_the_imports():
    """A guard for the test above: it must find imports it knows are there."""
    seen = {(module, name) for module, name, _ in _imports_from_abaxus()}
    assert {("abaxus.ids", "new_id"), ("abaxus.settings", "Settings"), ("abaxus.timefmt", "zoned_ms"),
            ("abaxus.billing.idempotency", "STALE_CLAIM_MS")} <= seen
