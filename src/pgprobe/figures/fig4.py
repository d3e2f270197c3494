"""Fig 4: baselines and gradient variance.  Fig 1's measure (mean pairwise cosine similarity of R
independent gradient estimates from n pairs, against n on a log axis) for three advantage estimators
on the same samples: the agent's value network, a "true" value function fitted to Monte Carlo
returns, and no baseline.  Panels per env (rows) and iteration, one line per baseline, a vertical line
at the agent's batch size."""
from __future__ import annotations

import xarray as xr

from . import save, vs_n
from .fig1 import pairwise_summary

VARIABLES = ("cosine", "agent_batch_size", "params_count", "mean_gradient_cosine",
             "true_value_explained_variance", "agent_value_explained_variance")
LABELS = {"agent": "agent's value network V_t", "true_value": "'true' value function (MC fit)",
          "none": "no baseline (return to go)"}
CAPTION = (
    "Baselines and gradient variance (paper Fig. 4). For each number n of state-action pairs, R independent "
    "estimates of the gradient of the agent's surrogate at theta_t with three advantage estimators on the same "
    "samples: GAE with the agent's value network V_t; GAE with a 'true' value function, a fresh value network "
    "regressed on discounted Monte Carlo returns of many independent pairs (the paper: 5*10^6); and no baseline "
    "(the discounted return to go). Mean pairwise cosine similarity over the R(R-1)/2 pairs of estimates with a "
    "95% bootstrap band over the estimates; advantages not normalised (normalisation would add a batch-mean "
    "baseline to all three). Dashed vertical lines: the agent's batch size. Every baseline leaves the expected "
    "gradient unchanged. The paper found the agent's value network reducing the variance only slightly "
    "compared with no baseline, and far less than the true value function would: the learned value network "
    "is a poor approximation of the true value."
)


def summarize(combined: xr.Dataset) -> xr.Dataset:
    cos = combined["cosine"].transpose(*vs_n.AGENT_DIMS, "baseline", "n", "repeat", "repeat_b")
    mean_cos = combined["mean_gradient_cosine"].transpose(*vs_n.AGENT_DIMS, "baseline", "baseline_b")
    return vs_n.summary("fig4", combined, {**pairwise_summary(cos), "mean_gradient_cosine": mean_cos},
                        ("agent_batch_size", "params_count", "true_value_explained_variance",
                         "agent_value_explained_variance"))


def draw(agg: xr.Dataset):
    note = "band: 95% bootstrap over the estimates; advantages " + (
        "normalised" if int(agg.attrs.get("norm_adv", 0)) else "not normalised")
    return vs_n.draw(agg, "similarity", "mean pairwise cosine", "Baselines: mean pairwise cosine of gradient estimates",
                     note, lines="baseline", line_labels=LABELS)


def render(agg: xr.Dataset, out: str) -> None:
    save(draw(agg), out)
