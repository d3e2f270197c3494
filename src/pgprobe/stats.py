"""Statistics helpers (numpy only): NaN-aware means and seeded bootstrap bands.

NaN marks a missing sample (an agent that was not run, an iteration in which no
episode completed): it is skipped, never averaged in. A cell with no sample is NaN.
"""
from __future__ import annotations

import numpy as np


def nanmean(samples, axis: int = 0) -> np.ndarray:
    """Mean along `axis` over the non-NaN samples; NaN (and no warning) where there are none."""
    x = np.asarray(samples, np.float64)
    n = (~np.isnan(x)).sum(axis=axis)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(n > 0, np.nansum(x, axis=axis) / np.maximum(n, 1), np.nan)


def bootstrap_mean_ci(samples, axis: int = 0, n_boot: int = 1000, level: float = 0.95, seed: int = 0):
    """Percentile bootstrap CI (lo, hi) of the mean along `axis`, skipping NaNs.

    Each cell resamples (with replacement) its own n non-NaN samples; cells with the same n
    share the same resampling counts, drawn from a generator seeded by (seed, n), so the
    result is deterministic and does not depend on the other cells. One sample gives
    lo = hi = that sample; none gives NaN.
    """
    x = np.moveaxis(np.asarray(samples, np.float64), axis, 0)
    shape = x.shape[1:]
    x = np.sort(x.reshape(x.shape[0], -1), axis=0)  # NaNs sort last
    k = (~np.isnan(x)).sum(axis=0)
    lo, hi = np.full(x.shape[1], np.nan), np.full(x.shape[1], np.nan)
    for n in np.unique(k[k > 0]):
        cells = k == n
        counts = np.random.default_rng([seed, int(n)]).multinomial(n, np.full(n, 1.0 / n), size=n_boot)
        vals = x[:n, cells]
        means = sum(counts[:, [j]] * vals[j] for j in range(n)) / n  # (n_boot, cells), fixed order
        lo[cells], hi[cells] = np.quantile(means, [(1 - level) / 2, (1 + level) / 2], axis=0)
    return lo.reshape(shape), hi.reshape(shape)


def standard_error(samples, axis: int = 0) -> np.ndarray:
    """Standard error of the mean along `axis` over the non-NaN samples (std with ddof 1 / sqrt(n));
    NaN where fewer than two."""
    x = np.asarray(samples, np.float64)
    n = (~np.isnan(x)).sum(axis=axis)
    ss = np.nansum((x - np.expand_dims(nanmean(x, axis), axis)) ** 2, axis=axis)
    return np.where(n > 1, np.sqrt(ss / np.maximum(n - 1, 1) / np.maximum(n, 1)), np.nan)


def over_seeds(da, band: str = "bootstrap", **boot):
    """Mean and band of an xarray DataArray over its `seed` dim; band "bootstrap" (95% percentile CI of
    the mean, `boot` passed on) or "se" (mean -/+ one standard error).

    Returns two (dims, values) tuples, ready for xr.Dataset: the mean, and the band with a
    trailing `bound` dim (lo, hi).
    """
    da = da.transpose("seed", ...)
    mean = nanmean(da.values, axis=0)
    if band == "se":
        se = standard_error(da.values, axis=0)
        lo, hi = mean - se, mean + se
    else:
        lo, hi = bootstrap_mean_ci(da.values, axis=0, **boot)
    dims = tuple(da.dims[1:])
    return (dims, mean), (dims + ("bound",), np.stack([lo, hi], axis=-1))
