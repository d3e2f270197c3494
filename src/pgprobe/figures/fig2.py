"""Fig 2: convergence to the true gradient.  Mean over R estimates from n pairs of their cosine
similarity with g* (the same estimator on N* independent pairs), against n (log axis); one line per
agent (algo x seed), panels per iteration, a vertical line at the agent's batch size."""
from __future__ import annotations

import numpy as np
import xarray as xr

from .. import stats
from . import save, vs_n

VARIABLES = ("cosine", "n_star", "agent_batch_size", "params_count")
CAPTION = (
    "Convergence of gradient estimates to the true gradient (paper Fig. 2). For each number n of state-action "
    "pairs, the mean over R independent estimates of their cosine similarity with g*, the same estimator on "
    "N* independent pairs (the paper: 10^7), with a 95% bootstrap band over the estimates. Dashed vertical lines: "
    "each agent's batch size. The paper found the similarity rising with n but far from 1 at the agent's batch "
    "size: the steps the agents take follow the true gradient only loosely."
)


def summarize(combined: xr.Dataset) -> xr.Dataset:
    cos = combined["cosine"].transpose(*vs_n.AGENT_DIMS, "n", "repeat")
    lo, hi = stats.bootstrap_mean_ci(cos.values, axis=-1)
    dims = cos.dims[:-1]
    own = {"similarity_mean": (dims, stats.nanmean(cos.values, axis=-1),
                               {"long_name": "mean over the estimates of cos(estimate, g*)"}),
           "similarity_ci": (dims + ("bound",), np.stack([lo, hi], axis=-1),
                             {"long_name": "95% percentile bootstrap band over the estimates (1000 resamples)"})}
    return vs_n.summary("fig2", combined, own, ("n_star", "agent_batch_size", "params_count"), n=combined["n"])


def draw(agg: xr.Dataset):
    n_star = agg["n_star"].values
    n_star = f"{np.nanmax(n_star):.3g}" if np.isfinite(n_star).any() else "?"
    return vs_n.draw(agg, "similarity", "mean cos(estimate, g*)", "Gradient estimates vs the true gradient g*",
                     f"g* from N* = {n_star} pairs; band: 95% bootstrap over the estimates")


def render(agg: xr.Dataset, out: str) -> None:
    save(draw(agg), out)
