"""Each stage's declared source files (stages.CODE) cover every pgprobe module it can import.

A module missing from CODE would let an edit to it go unnoticed: Snakemake and DVC would
not rerun the stage.  Imports are followed statically (function-level ones included).
"""
import ast
from pathlib import Path

import pytest

from pgprobe import stages

SRC = Path(stages.__file__).resolve().parent
# no behaviour of their own (stages.py is the DAG; artifacts.py reads only its code hash)
NOT_CODE = {"__init__.py", "errors.py", "probes/__init__.py", "stages.py"}


def _module_file(parts: list[str]) -> str | None:
    for f in ("/".join(parts) + ".py", "/".join(parts) + "/__init__.py"):
        if parts and (SRC / f).is_file():
            return f
    return None


def _imports(rel: str) -> set[str]:
    """pgprobe modules (paths relative to the package) that file `rel` imports, anywhere in it."""
    package = list(Path(rel).parent.parts)
    found = set()
    for node in ast.walk(ast.parse((SRC / rel).read_text())):
        if isinstance(node, ast.ImportFrom):
            module = (node.module or "").split(".") if node.module else []
            if node.level:  # relative: from .x import y / from .. import y
                parts = package[:len(package) - node.level + 1] + module
            elif module[:1] == ["pgprobe"]:
                parts = module[1:]
            else:
                continue
            for alias in node.names:  # `y` may be a module or a name in one
                f = _module_file(parts + [alias.name]) or _module_file(parts)
                if f:
                    found.add(f)
        elif isinstance(node, ast.Import):
            found |= {f for alias in node.names if alias.name.startswith("pgprobe.")
                      for f in [_module_file(alias.name.split(".")[1:])] if f}
    return found


def _closure(files: list[str]) -> set[str]:
    seen, todo = set(), list(files)
    while todo:
        f = todo.pop()
        if f not in seen:
            seen.add(f)
            todo += _imports(f)
    return seen


@pytest.mark.parametrize("stage", sorted(stages.CODE))
def test_stage_code_lists_every_module_it_imports(stage):
    declared = set(stages.CODE[stage])
    missing = _closure(list(declared)) - declared - NOT_CODE
    assert not missing, f"stage {stage!r} imports {sorted(missing)} but stages.CODE does not list them"


def test_import_scan_sees_function_level_imports():
    assert "mujoco_step.py" in _imports("envs.py")
    assert "evaluate.py" in _imports("probes/landscape.py")
