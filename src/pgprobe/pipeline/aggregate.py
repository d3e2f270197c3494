"""Aggregate stage, generic: read a figure's inputs (probe results or training logs), check what
they are, and combine them by their coordinates (env, algo, seed, iteration); the figure's own
`summarize` then reduces the result (means, bootstrap bands) to what it draws."""
from __future__ import annotations

from pathlib import Path

import xarray as xr

from ..errors import ArtifactError
from . import artifacts


def input_kind(decl) -> str:
    """The pgprobe_kind of a figure's inputs: 'train_log' or 'probe_<name>'."""
    return "train_log" if decl.reads == "train_log" else f"probe_{decl.reads.split(':', 1)[1]}"


def combine(paths: list[Path], kind: str, variables=None) -> xr.Dataset:
    """Every input, its scalar agent coordinates made dimensions, combined by coordinates.

    Agents missing from the grid of coordinates (e.g. an algorithm shown for one env only) are
    NaN-filled; per-input attrs other than the shared ones are dropped.
    """
    if not paths:
        raise ArtifactError(f"no {kind} files to aggregate")
    pieces = []
    for p in paths:
        ds = artifacts.read_nc(p, kind=kind)
        if variables is not None:
            missing = [v for v in variables if v not in ds]
            if missing:
                raise ArtifactError(f"{p} lacks {', '.join(missing)}: made by another pgprobe version; rerun its stage")
            ds = ds[list(variables)]
        dims = [c for c in artifacts.AGENT_COORDS if c in ds.coords and ds.coords[c].ndim == 0]
        if not {"env", "algo", "seed"} <= set(dims):
            raise ArtifactError(f"{p} has no agent coordinates (env, algo, seed); rerun the stage that made it")
        pieces.append(ds.expand_dims(dims))
    # drop_encoding: each file's string width would otherwise truncate the combined labels on write
    return xr.combine_by_coords(pieces, join="outer", combine_attrs="drop_conflicts").drop_encoding()


def run_of(paths: list[str]) -> str:
    """The run name from data/<run>/... paths."""
    parts = Path(paths[0]).parts
    return parts[1] if len(parts) > 2 and parts[0] == "data" else ""
