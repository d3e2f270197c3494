"""A probe's work split into jobs (shards) and gathered back into the one artifact it would have made.

A probe declared with `shard_dim` (declarations.py) computes its result in independent blocks along
that dimension: a landscape plane by rows of its grid (x), each point's episodes seeded by the point
alone.  `shards: {<probe>: n}` in params splits each of its jobs into n shard jobs, shard k computing
the k-th of n contiguous blocks; the probe's own job then gathers them.  The gathered artifact is the
one a single job makes, whatever n: the same values, coordinates and attrs, and the same job record
(the count is not among the probe's params keys: it is a scheduling choice, so an artifact gathered
from 9 shards on a cluster stands for a colleague who runs unsplit).  A run whose count differs from
the one that made its shards computes its own shards (their file names carry the count) and gathers
them into the same artifact.  Everything outside the blocks (a landscape's step and direction) is
computed by every shard and must agree exactly; `gather` checks that.
"""
from __future__ import annotations

import json
from typing import TYPE_CHECKING

import numpy as np

from ..errors import ArtifactError, ConfigError
from .records import RECORD_ATTR

SHARD_ATTR = "pgprobe_shard"  # "k/n" on a shard's artifact; absent on a gathered one
_OWN = {SHARD_ATTR, RECORD_ATTR}  # a shard's own attrs: not the gathered artifact's

if TYPE_CHECKING:  # xarray only where shards are gathered: the Snakefile imports this module
    import xarray as xr


def count(cfg: dict, probe: str) -> int:
    """Shards per job of `probe` (1: not split)."""
    return int(cfg.get("shards", {}).get(probe, 1))


def block(size: int, k: int, n: int) -> slice:
    """The k-th of n contiguous blocks of range(size), sizes differing by at most one."""
    if not 0 <= k < n <= size:
        raise ConfigError(f"shard {k} of {n}: needs 0 <= k < n <= {size} (the length split)")
    return slice(k * size // n, (k + 1) * size // n)


def mark(ds: xr.Dataset, k: int, n: int) -> xr.Dataset:
    ds.attrs[SHARD_ATTR] = f"{k}/{n}"
    return ds


def gather(shards: list[xr.Dataset], dim: str) -> xr.Dataset:
    """The shards of one job, in any order, as the artifact a single job makes: variables along `dim`
    concatenated in shard order; every other variable, coordinate and attr identical in all shards."""
    import xarray as xr

    if not shards:
        raise ArtifactError("gather: no shards")
    index = {}
    for ds in shards:
        k, n = map(int, ds.attrs.get(SHARD_ATTR, "-1/-1").split("/"))
        if k in index or n != len(shards) or not 0 <= k < n:
            raise ArtifactError(f"gather: expected shards 0..{len(shards) - 1} of {len(shards)}, each once; "
                                f"got {[d.attrs.get(SHARD_ATTR) for d in shards]}")
        index[k] = ds
    ordered = [index[k] for k in range(len(shards))]
    first = ordered[0]
    for k, ds in enumerate(ordered[1:], 1):
        _check_shared(first, ds, dim, k)
    along = [v for v in first.data_vars if dim in first[v].dims]
    blocks = [_pad(ds[along], ordered, dim) for ds in ordered]
    for b in blocks:
        b.attrs = {}  # the dataset's attrs: the first shard's, set below
    stacked = xr.concat(blocks, dim=dim, coords="minimal", compat="identical")
    out = xr.merge([first.drop_vars([*along, dim]), stacked], compat="identical", combine_attrs="override")
    out = out[list(first.data_vars)]
    out.attrs = {k: v for k, v in first.attrs.items() if k not in _OWN}
    return out


def _pad(ds: xr.Dataset, shards: list[xr.Dataset], dim: str) -> xr.Dataset:
    """NaN-pad the other dimensions without coordinates whose length is the block's own (a landscape's
    episodes per point: an unsharded job pads every point to the longest, the same length)."""
    pad = {d: (0, max(s.sizes[d] for s in shards) - ds.sizes[d]) for d in ds.dims
           if d != dim and d not in ds.indexes}
    pad = {d: w for d, w in pad.items() if w[1]}
    if not pad:
        return ds
    for v in ds.data_vars:
        if set(pad) & set(ds[v].dims) and not np.issubdtype(ds[v].dtype, np.floating):
            raise ArtifactError(f"gather: variable {v!r} would need NaN padding along {sorted(pad)} "
                                f"but is {ds[v].dtype}")
    return ds.pad(pad)


def _check_shared(a: xr.Dataset, b: xr.Dataset, dim: str, k: int) -> None:
    if set(a.data_vars) != set(b.data_vars):
        raise ArtifactError(f"gather: shard {k} has variables {sorted(b.data_vars)}, shard 0 {sorted(a.data_vars)}")
    for v in a.data_vars:
        if dim not in a[v].dims and not a[v].identical(b[v]):
            raise ArtifactError(f"gather: variable {v!r} (not along {dim}) differs between shard 0 and shard {k}: "
                                "the shards were not made by the same job")
    diff = sorted(key for key in (set(a.attrs) | set(b.attrs)) - _OWN
                  if json.dumps(a.attrs.get(key), default=str) != json.dumps(b.attrs.get(key), default=str))
    if diff:
        raise ArtifactError(f"gather: attrs {diff} differ between shard 0 and shard {k}")
