"""The source files a stage's job runs: the import closure of its entry point, found statically.

Snakemake does not track code imported from a package, so each job's params slice carries a
hash of these files and each DVC stage lists them as deps: an edit to any of them reruns the
stage, an edit elsewhere does not.  The entry point is `cli.py` (its module-level imports and
the imports of the sub-command's handler) plus the module a probe or figure declares; from
there every pgprobe import is followed, function-level ones included.
"""
from __future__ import annotations

import ast
import functools
import hashlib
from pathlib import Path

SRC = Path(__file__).resolve().parents[1]  # src/pgprobe
# reach the jobs only through inputs, params and the modules they name (see declarations.py)
NOT_CODE = {"pipeline/declarations.py"}


def module_file(dotted: str) -> str | None:
    """'pgprobe.probes.landscape' -> 'probes/landscape.py' (relative to the package)."""
    parts = dotted.split(".")
    if parts[0] != "pgprobe":
        return None
    return _file(parts[1:])


def _file(parts: list[str]) -> str | None:
    for f in ("/".join(parts) + ".py", "/".join(parts) + "/__init__.py"):
        if (SRC / f).is_file():
            return f
    return None


def _imported(node: ast.AST, rel: str) -> set[str]:
    """pgprobe files imported by the import statements inside `node` of file `rel`."""
    package = list(Path(rel).parent.parts)
    found = set()
    for sub in ast.walk(node):
        if isinstance(sub, ast.ImportFrom):
            module = sub.module.split(".") if sub.module else []
            if sub.level:
                parts = package[:len(package) - sub.level + 1] + module
            elif module[:1] == ["pgprobe"]:
                parts = module[1:]
            else:
                continue
            for alias in sub.names:  # `y` in `from x import y` may be a module or a name in x
                f = _file(parts + [alias.name]) or _file(parts)
                if f:
                    found.add(f)
            if parts and _file(parts) and _file(parts).endswith("__init__.py"):
                found.add(_file(parts))
        elif isinstance(sub, ast.Import):
            found |= {f for a in sub.names for f in [module_file(a.name)] if f}
    return found


@functools.lru_cache(maxsize=None)
def imports(rel: str) -> frozenset[str]:
    """Every pgprobe file that file `rel` imports, anywhere in it."""
    return frozenset(_imported(ast.parse((SRC / rel).read_text()), rel))


def entry_imports(command: str) -> set[str]:
    """What `pgprobe <command>` imports: cli.py's module-level imports, its handler's and those of
    the cli.py functions the handler calls."""
    tree = ast.parse((SRC / "cli.py").read_text())
    funcs = {n.name: n for n in tree.body if isinstance(n, ast.FunctionDef)}
    handler = f"cmd_{command.replace('-', '_')}"
    if handler not in funcs:
        raise KeyError(f"cli.py has no handler {handler}")
    nodes = [n for n in tree.body if isinstance(n, (ast.Import, ast.ImportFrom))]
    todo, seen = [handler], set()
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        nodes.append(funcs[name])
        todo += [c.func.id for c in ast.walk(funcs[name]) if isinstance(c, ast.Call)
                 and isinstance(c.func, ast.Name) and c.func.id in funcs]
    found = set()
    for node in nodes:
        found |= _imported(node, "cli.py")
    return found


def closure(roots: set[str]) -> list[str]:
    """The files `roots` import, transitively, with the __init__.py of every package on the way (Python
    runs a package's __init__ before any module in it)."""
    seen, todo = set(), list(roots)
    while todo:
        f = todo.pop()
        if f not in seen:
            seen.add(f)
            todo += imports(f)
            todo += [f"{'/'.join(Path(f).parts[:i])}/__init__.py".lstrip("/") for i in range(len(Path(f).parts))
                     if (SRC / Path(*Path(f).parts[:i]) / "__init__.py").is_file()]
    return sorted(seen - NOT_CODE)


def stage_files(command: str, modules: tuple[str, ...] = ()) -> list[str]:
    """Source files (relative to the package) of a job of `pgprobe <command>` running `modules`."""
    return list(_stage_files(command, tuple(modules)))


@functools.lru_cache(maxsize=None)  # a DAG asks once per job; the sources do not change within a process
def _stage_files(command: str, modules: tuple[str, ...]) -> tuple[str, ...]:
    roots = entry_imports(command) | {module_file(m) for m in modules}
    return tuple(sorted(set(closure(roots)) | {"cli.py"}))


def files_hash(files: list[str]) -> str:
    return _files_hash(tuple(files))


@functools.lru_cache(maxsize=None)
def _files_hash(files: tuple[str, ...]) -> str:
    h = hashlib.sha256()
    for f in files:
        h.update(f.encode())
        h.update((SRC / f).read_bytes())
    return h.hexdigest()[:16]
