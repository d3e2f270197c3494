"""Aggregate stage: combine per-checkpoint probe files into one dataset per figure."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import xarray as xr

from . import artifacts
from .errors import ArtifactError


def bootstrap_ci(samples: np.ndarray, axis: int = 0, n_boot: int = 1000, level: float = 0.95, seed: int = 0):
    """Percentile bootstrap CI of the mean along `axis` (deterministic: seeded)."""
    samples = np.moveaxis(np.asarray(samples, np.float64), axis, 0)
    n = samples.shape[0]
    idx = np.random.default_rng(seed).integers(0, n, size=(n_boot, n))
    means = samples[idx].mean(axis=1)
    lo, hi = np.quantile(means, [(1 - level) / 2, (1 + level) / 2], axis=0)
    return lo, hi


def landscapes(probe_files: list[Path], fig: str) -> xr.Dataset:
    """Stack landscape probes on (seed, iteration)."""
    if not probe_files:
        raise ArtifactError(f"{fig}: no landscape probe files given")
    pieces = []
    for path in probe_files:
        ds = artifacts.read_nc(path, kind="probe_landscape")
        keep = ds[["surrogate", "true_reward", "true_reward_sem", "episodes", "step_norm"]]
        pieces.append(keep.expand_dims(seed=[ds.attrs["seed"]], iteration=[ds.attrs["iteration"]]))
        first = ds
    out = xr.combine_by_coords(pieces, combine_attrs="drop")
    out = out.sortby(["seed", "iteration"])
    keep_attrs = ("env", "algo", "direction_norm", "perturb_log_std", "samples_per_point", "agent_batch",
                  "many_samples")
    out.attrs.update({k: first.attrs[k] for k in keep_attrs})
    out.attrs.update(artifacts.provenance(f"aggregate_{fig}", {"inputs": [str(p) for p in probe_files]},
                                         f"aggregate_{fig}"))
    out.attrs["run"] = Path(probe_files[0]).parts[1] if len(Path(probe_files[0]).parts) > 1 else ""
    return out


AGGREGATORS = {"fig6": landscapes}
