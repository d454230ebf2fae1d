"""Imports point one way: from the entry points (``cli/``) down to the bottom layer (``core/``).

Read from the source folders, so a new module is checked the day it is added.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# Each folder and the layer it sits on; a module may import its own layer or any below.
LAYERS = {"core": 0, "rating": 1, "schemas": 1, "store": 2, "pipeline": 3, "billing": 3, "api": 4, "cli": 5}
_SUBPACKAGES = {name for name in LAYERS if name != "core"}


def _folder_of(module: str) -> str | None:
    """The repository folder an ``abaxus…`` module comes from (``abaxus.errors`` → ``core``)."""
    parts = module.split(".")
    if parts[0] != "abaxus":
        return None
    return parts[1] if len(parts) > 1 and parts[1] in _SUBPACKAGES else "core"


def _imports(tree: ast.AST) -> list[tuple[ast.Import | ast.ImportFrom, bool]]:
    """Every import statement, and whether it sits inside a function."""
    found: list[tuple[ast.Import | ast.ImportFrom, bool]] = []

    def visit(node: ast.AST, in_function: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.Import, ast.ImportFrom)):
                found.append((child, in_function))
            visit(child, in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)))

    visit(tree, False)
    return found


def _cross_folder_imports() -> list[tuple[str, int, str, str, bool]]:
    """(file, line, importing folder, imported folder, inside a function) for imports between folders."""
    out = []
    for folder in LAYERS:
        for path in sorted((ROOT / folder).rglob("*.py")):
            for node, in_function in _imports(ast.parse(path.read_text(), str(path))):
                names = [node.module or ""] if isinstance(node, ast.ImportFrom) else [a.name for a in node.names]
                for name in names:
                    target = _folder_of(name)
                    if target is not None and target != folder:
                        out.append((str(path.relative_to(ROOT)), node.lineno, folder, target, in_function))
    return out


def test_every_import_points_to_the_same_layer_or_below():
    upward = [f"{file}:{line}: {src} imports {dst}" for file, line, src, dst, _ in _cross_folder_imports()
              if LAYERS[dst] > LAYERS[src]]
    assert upward == []


def test_no_import_of_another_part_hides_inside_a_function():
    hidden = [f"{file}:{line}: imports {dst} inside a function" for file, line, _, dst, inside in _cross_folder_imports()
              if inside]
    assert hidden == []


def test_the_entry_points_are_on_top_and_nothing_imports_them():
    importers = {src for _, _, src, dst, _ in _cross_folder_imports() if dst == "cli"}
    assert importers == set()
    assert {dst for _, _, src, dst, _ in _cross_folder_imports() if src == "cli"} >= {"api", "core"}
