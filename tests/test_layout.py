"""The package's layout keeps the product readable (issue #30): a small root, layers that import
only downwards (the trainer never needs the lab, reading data never needs dataset making), and no
function longer than a screenful or two. Read from the source as text (ast), nothing is run."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "ampl_jax"


def _modules() -> dict[str, ast.Module]:
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        name = ".".join(("ampl_jax",) + path.relative_to(PACKAGE).with_suffix("").parts).removesuffix(".__init__")
        out[name] = ast.parse(path.read_text(), str(path))
    return out


def _imports(tree: ast.Module) -> set[str]:
    """Every ampl_jax module a file imports, at its top or inside a function."""
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{a.name}" for a in node.names)
    return {n for n in names if n.startswith("ampl_jax")}


def test_the_package_root_holds_at_most_16_modules():
    root = sorted(p.name for p in PACKAGE.glob("*.py"))
    assert len(root) <= 16, root


@pytest.mark.parametrize("below,above", [
    ("ampl_jax", "ampl_jax.lab"),  # nothing a run needs imports a research tool
    ("ampl_jax.data", "ampl_jax.datagen"),  # reading data never makes it (datagen.source is the door)
    ("ampl_jax.world_model", "ampl_jax.methods"),
    ("ampl_jax.config", "ampl_jax.methods"),
])
def test_no_import_runs_back_up_a_layer(below, above):
    bad = {name: sorted(i for i in _imports(tree) if i == above or i.startswith(above + "."))
           for name, tree in _modules().items()
           if (name == below or name.startswith(below + ".")) and not (name == above or name.startswith(above + "."))}
    assert not {k: v for k, v in bad.items() if v}


def test_no_function_in_the_package_is_over_100_lines():
    long = {f"{name}.{node.name}": node.end_lineno - node.lineno + 1
            for name, tree in _modules().items() for node in ast.walk(tree)
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.end_lineno - node.lineno + 1 > 100}
    assert not long, long


def test_no_private_name_is_imported_from_another_module():
    bad = [f"{name}: from {node.module} import {a.name}"
           for name, tree in _modules().items() for node in ast.walk(tree)
           if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("ampl_jax")
           for a in node.names if a.name.startswith("_")]
    assert not bad, bad
