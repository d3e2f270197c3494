"""Fig 1: gradient variance.  Mean pairwise cosine similarity of R independent gradient estimates
from n pairs, against n (log axis); one line per agent (algo x seed), panels per iteration, a
vertical line at the agent's batch size, a dotted line at the typical cosine of random directions."""
from __future__ import annotations

import numpy as np
import xarray as xr

from . import save, vs_n

VARIABLES = ("cosine", "agent_batch_size", "params_count")
CAPTION = (
    "Gradient variance (paper Fig. 1). For each number n of state-action pairs, R independent estimates of "
    "the gradient of the agent's surrogate at theta_t (its own advantage estimator); the mean cosine "
    "similarity over the R(R-1)/2 pairs of estimates, with a 95% bootstrap band over the estimates (pairs of "
    "an estimate with its own resample left out). Dashed vertical lines: each agent's batch size; dotted: "
    "1/sqrt(P), the root-mean-square cosine of two random directions among P parameters. The paper found the "
    "estimates at the agent's batch size barely correlated, and less so as training proceeds."
)
N_BOOT = 1000


def pair_mean(c: np.ndarray) -> float:
    """Mean of c[i, j] over i < j, NaN pairs skipped."""
    iu = np.triu_indices(c.shape[-1], k=1)
    v = c[iu]
    return float(np.nanmean(v)) if np.isfinite(v).any() else np.nan


def pair_bootstrap(c: np.ndarray, n_boot: int = N_BOOT, level: float = 0.95, seed: int = 0) -> tuple[float, float]:
    """Percentile band of the mean pairwise similarity, resampling the estimates with replacement.

    A resample of R estimates is a list of indices I; its measure is the mean of c[I_a, I_b] over a < b
    with I_a != I_b: an estimate is never paired with a copy of itself (which would add cosines of 1).
    Estimates whose row is all NaN (missing) are left out first.  Deterministic: the generator is
    seeded by (seed, R)."""
    keep = np.flatnonzero(np.isfinite(c).any(axis=1) & np.isfinite(np.diag(c)))
    c = c[np.ix_(keep, keep)]
    r = len(keep)
    if r < 2:
        return np.nan, np.nan
    idx = np.random.default_rng([seed, r]).integers(r, size=(n_boot, r))
    cb = c[idx[:, :, None], idx[:, None, :]]
    mask = np.triu(np.ones((r, r), bool), k=1)[None] & (idx[:, :, None] != idx[:, None, :]) & np.isfinite(cb)
    with np.errstate(invalid="ignore"):
        means = np.where(mask, cb, 0.0).sum((1, 2)) / mask.sum((1, 2))
    means = means[np.isfinite(means)]
    if not len(means):
        return np.nan, np.nan
    lo, hi = np.quantile(means, [(1 - level) / 2, (1 + level) / 2])
    return float(lo), float(hi)


def pairwise_summary(cos: xr.DataArray) -> dict:
    """(..., repeat, repeat_b) pairwise cosines -> similarity_mean, similarity_ci (..., bound), repeats."""
    c = cos.values
    shape = c.shape[:-2]
    mean, band = np.full(shape, np.nan), np.full(shape + (2,), np.nan)
    for ix in np.ndindex(shape):
        mean[ix] = pair_mean(c[ix])
        band[ix] = pair_bootstrap(c[ix])
    dims = cos.dims[:-2]
    coords = {d: cos[d] for d in dims if d in cos.coords}
    return {"similarity_mean": xr.DataArray(mean, coords, dims).assign_attrs(long_name=
                                            "mean pairwise cosine similarity of the R estimates"),
            "similarity_ci": (dims + ("bound",), band,
                              {"long_name": f"95% percentile bootstrap band over the estimates ({N_BOOT} "
                                            "resamples; no estimate paired with its own resample)"}),
            "repeats": (dims, np.isfinite(np.diagonal(c, axis1=-2, axis2=-1)).sum(-1), {"long_name": "estimates R"})}


def summarize(combined: xr.Dataset) -> xr.Dataset:
    cos = combined["cosine"].transpose(*vs_n.AGENT_DIMS, "n", "repeat", "repeat_b")
    return vs_n.summary("fig1", combined, pairwise_summary(cos))


def _random_directions(sel: xr.Dataset):
    p = float(np.nanmax(sel["params_count"].values)) if np.isfinite(sel["params_count"].values).any() else np.nan
    return 1.0 / np.sqrt(p), f"random directions: 1/sqrt(P), P = {p:.0f}"


def draw(agg: xr.Dataset):
    return vs_n.draw(agg, "similarity", "mean pairwise cosine", "Gradient estimates: mean pairwise cosine similarity",
                     "band: 95% bootstrap over the estimates", _random_directions)


def render(agg: xr.Dataset, out: str) -> None:
    save(draw(agg), out)
