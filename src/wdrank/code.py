"""The source files a piece of the package runs: a module and, transitively, every wdrank module it imports (at the
top or inside a function). The workflow gives them to each figure and table rule as inputs, so that editing the code
that draws a figure reruns exactly that figure's job (Snakemake compares modification times), and nothing else.

Torch-free and import-free: modules are read as text (ast), never imported.
"""

from __future__ import annotations

import ast
from functools import cache
from pathlib import Path

PACKAGE = "wdrank"
ROOT = Path(__file__).resolve().parent


def module_file(module: str) -> Path:
    """The source file of a wdrank module (a package's __init__.py for a package)."""
    path = ROOT.joinpath(*module.split(".")[1:])
    return path / "__init__.py" if path.is_dir() else path.with_suffix(".py")


def _imported(module: str) -> set[str]:
    """The wdrank modules that `module` imports anywhere in its text (and their parent packages, which Python runs
    first)."""
    tree = ast.parse(module_file(module).read_text(encoding="utf-8"))
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            base = node.module
            names = [base] + [f"{base}.{alias.name}" for alias in node.names]
        else:
            continue
        for name in names:
            if name.split(".")[0] == PACKAGE and (module_file(name).exists()):
                found.add(name)
    parents = {".".join(name.split(".")[:i]) for name in found | {module} for i in range(1, name.count(".") + 1)}
    return found | parents


@cache
def closure(module: str) -> tuple[str, ...]:
    """`module` and every wdrank module it runs, sorted."""
    seen, todo = set(), [module]
    while todo:
        current = todo.pop()
        if current not in seen:
            seen.add(current)
            todo.extend(_imported(current) - seen)
    return tuple(sorted(seen))


def source_files(module: str) -> list[Path]:
    """The files of `closure(module)`."""
    return [module_file(name) for name in closure(module)]
