"""NetCDF artifacts: atomic, deterministic writes; checked reads; provenance attrs; state trees.

Every artifact carries `pgprobe_kind` (what it is) and `pgprobe_code` (package
version plus a hash of the source), and never a timestamp or host name, so that
the same inputs give the same bytes.
"""
from __future__ import annotations

import json
import os
from importlib import metadata
from pathlib import Path

import numpy as np
import xarray as xr

from .. import __version__
from ..errors import ArtifactError

SEP = "__"
_PACKAGES = ("torch", "numpy", "gymnasium", "mujoco", "xarray", "netCDF4")
AGENT_COORDS = ("env", "algo", "seed", "iteration")


def code_version(command: str, modules: tuple[str, ...] = ()) -> str:
    """Package version + hash of the source files a job of `pgprobe <command>` runs (codedeps)."""
    from .codedeps import files_hash, stage_files

    return f"{__version__}+{files_hash(stage_files(command, modules))}"


def provenance(kind: str, params: dict, command: str, modules: tuple[str, ...] = ()) -> dict:
    """Attrs for an artifact: its kind, the code version of its stage, package versions, its params."""
    versions = {}
    for name in _PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "absent"
    return {
        "pgprobe_kind": kind,
        "pgprobe_code": code_version(command, modules),
        "packages": json.dumps(versions, sort_keys=True),
        "params": json.dumps(params, sort_keys=True),
    }


def with_agent_coords(ds: xr.Dataset, env: str, algo: str, seed: int, iteration: int | None = None) -> xr.Dataset:
    """Scalar coordinates naming the agent (and iteration), so aggregates combine files by coordinates."""
    coords = {"env": env, "algo": algo, "seed": np.int64(seed)}
    if iteration is not None:
        coords["iteration"] = np.int64(iteration)
    return ds.assign_coords(coords)


def write_nc(ds: xr.Dataset, path: str | os.PathLike) -> Path:
    """Write atomically: a temporary file in the same directory, then os.replace."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        ds.to_netcdf(tmp, engine="netcdf4", format="NETCDF4")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def read_nc(path: str | os.PathLike, kind: str | None = None) -> xr.Dataset:
    """Load a whole artifact into memory (the file is closed again), checking its kind."""
    path = Path(path)
    if not path.exists():
        raise ArtifactError(f"missing artifact: {path}")
    try:
        with xr.open_dataset(path, engine="netcdf4") as ds:
            ds = ds.load()
    except Exception as exc:
        raise ArtifactError(f"corrupt or unreadable artifact {path}: {exc}") from None
    if kind is not None and ds.attrs.get("pgprobe_kind") != kind:
        raise ArtifactError(f"{path} is a {ds.attrs.get('pgprobe_kind')!r} artifact, expected {kind!r}")
    return ds


def tree_to_dataset(tree: dict, prefix: str = "") -> xr.Dataset:
    """Nested dict of arrays/numbers/strings -> Dataset; strings become attrs."""
    data_vars, attrs = {}, {}
    for name, value in _flatten(tree, prefix):
        if isinstance(value, str):
            attrs[name] = value
            continue
        arr = np.asarray(value)
        data_vars[name] = ([f"{name}_d{i}" for i in range(arr.ndim)], arr)
    return xr.Dataset(data_vars, attrs=attrs)


def dataset_to_tree(ds: xr.Dataset, prefix: str = "") -> dict:
    tree: dict = {}
    items = [(k, ds[k].values) for k in ds.data_vars] + list(ds.attrs.items())
    for name, value in items:
        if not name.startswith(prefix):
            continue
        node = tree
        *parents, leaf = name[len(prefix):].split(SEP)
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = value
    return tree


def _flatten(tree: dict, prefix: str):
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            yield from _flatten(value, name + SEP)
        else:
            yield name, value


def describe(ds: xr.Dataset, path: str = "") -> str:
    """What made an artifact, for a person: kind, agent, code, packages, params, then its contents."""
    a = ds.attrs
    lines = [f"{path}: a {a.get('pgprobe_kind', 'foreign (no pgprobe_kind)')} artifact"]
    agent = [f"{c}={ds.coords[c].values.item()}" for c in AGENT_COORDS if c in ds.coords and ds.coords[c].ndim == 0]
    if agent:
        lines.append("  agent:    " + "  ".join(agent))
    lines.append(f"  code:     pgprobe {a.get('pgprobe_code', '?')}")
    if "packages" in a:
        pk = json.loads(a["packages"])
        lines.append("  packages: " + "  ".join(f"{k} {v}" for k, v in sorted(pk.items())))
    if "params" in a:
        lines.append("  params (this stage and upstream):")
        lines += ["    " + ln for ln in _yaml(json.loads(a["params"])).splitlines()]
    lines.append("  dimensions: " + ", ".join(f"{d}={n}" for d, n in ds.sizes.items()))
    lines.append("  variables:")
    for name, var in ds.data_vars.items():
        desc = var.attrs.get("long_name", "")
        units = f" [{var.attrs['units']}]" if "units" in var.attrs else ""
        lines.append(f"    {name}({', '.join(var.dims)}){units}  {desc}")
    other = {k: v for k, v in a.items() if k not in ("pgprobe_kind", "pgprobe_code", "packages", "params")}
    if other:
        lines.append("  attributes:")
        lines += [f"    {k}: {v}" for k, v in sorted(other.items())]
    return "\n".join(lines)


def _yaml(obj) -> str:
    import yaml

    return yaml.safe_dump(obj, sort_keys=True, default_flow_style=None, width=100)
