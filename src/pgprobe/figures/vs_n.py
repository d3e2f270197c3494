"""What figs 1 and 2 share: a measure against the number of pairs n, per agent, panels per iteration
(rows: envs), a vertical line at each agent's own batch size.  No torch, no gymnasium."""
from __future__ import annotations

import numpy as np
import xarray as xr

from . import algo_color, algo_label, finish, summary_attrs

SEED_STYLES = ("-", "--", ":", "-.")
AGENT_DIMS = ("env", "algo", "seed", "iteration")


def per_agent(combined: xr.Dataset, var: str) -> xr.DataArray:
    """A per-agent-and-iteration scalar (batch size, parameter count); NaN where an agent was not run."""
    return combined[var].transpose(*AGENT_DIMS).astype(np.float64)


def summary(fig: str, combined: xr.Dataset, data_vars: dict, scalars=("agent_batch_size", "params_count"),
            **coords) -> xr.Dataset:
    """A gradient figure's aggregate: its own variables, the per-agent scalars it draws with, the `bound`
    coordinate of its bands, and the estimator's advantage normalisation from its inputs."""
    out = xr.Dataset({**data_vars, **{v: per_agent(combined, v) for v in scalars}},
                     coords={"bound": ["lo", "hi"], **coords})
    out.attrs = summary_attrs(fig, combined)
    if "norm_adv" in combined.attrs:
        out.attrs["norm_adv"] = combined.attrs["norm_adv"]
    return out


LINE_COLORS = ("tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple", "tab:brown")


def draw(agg: xr.Dataset, var: str, ylabel: str, title: str, note: str, reference=None, lines: str | None = None,
         line_labels: dict | None = None):
    """`var`_mean (env, algo, seed, iteration, n) with `var`_ci (..., bound); `reference(sel) -> (y, label)`
    draws a horizontal line per env (e.g. random directions).  `lines`: a further dimension of `var`_mean
    drawn as lines of their own colours (e.g. fig 4's baselines; labels from `line_labels`), the agents then
    told apart by line style only."""
    from matplotlib.figure import Figure
    from matplotlib.ticker import FuncFormatter, NullFormatter

    envs, algos, seeds = list(agg["env"].values), list(agg["algo"].values), list(agg["seed"].values)
    iters = list(agg["iteration"].values)
    fig = Figure(figsize=(3.3 * len(iters) + 0.6, 2.9 * len(envs) + 1.1))
    axes = fig.subplots(len(envs), len(iters), squeeze=False, sharey="row")
    n = agg["n"].values.astype(np.float64)
    for i, env in enumerate(envs):
        for j, it in enumerate(iters):
            ax = axes[i, j]
            for a_i, algo in enumerate(algos):
                color = algo_color(algo, algos)
                for k, seed in enumerate(seeds):
                    a = agg.sel(env=env, algo=algo, seed=seed, iteration=it)
                    agent = f"{algo_label(algo)} seed {int(seed)}"
                    drawn = False
                    for l_i, line in enumerate(agg[lines].values if lines else [None]):
                        sel = a.sel({lines: line}) if lines else a
                        mean, band = sel[f"{var}_mean"].values, sel[f"{var}_ci"].values
                        ok = np.isfinite(mean)
                        if not ok.any():
                            continue
                        drawn = True
                        c = LINE_COLORS[l_i % len(LINE_COLORS)] if lines else color
                        style = SEED_STYLES[(a_i * len(seeds) + k if lines else k) % len(SEED_STYLES)]
                        label = agent if not lines else (
                            (line_labels or {}).get(str(line), str(line))
                            + (f" ({agent})" if len(algos) * len(seeds) > 1 else ""))
                        ax.fill_between(n[ok], band[ok, 0], band[ok, 1], color=c, alpha=0.18, lw=0)
                        ax.plot(n[ok], mean[ok], style, color=c, marker="o", ms=3, lw=1.4, label=label)
                    if not drawn:
                        continue
                    b = float(a["agent_batch_size"])
                    if np.isfinite(b):
                        ax.axvline(b, color=color if not lines else "0.3", lw=0.9, ls=(0, (2, 2)), alpha=0.8,
                                   label=f"{algo_label(algo)} batch size")
            if reference is not None:
                y, label = reference(agg.sel(env=env, iteration=it))
                if np.isfinite(y):
                    ax.axhline(y, color="0.4", lw=0.9, ls=":", label=label)
            ax.set_xscale("log")
            ax.set_xticks(agg["n"].values)  # the sample sizes measured, not log-decade clutter
            ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:,.0f}"))
            ax.xaxis.set_minor_formatter(NullFormatter())
            ax.grid(True, which="major", alpha=0.3)
            ax.tick_params(labelsize=7)
            if i == 0:
                ax.set_title(f"iteration {int(it)}", fontsize=10)
            if j == 0:
                ax.set_ylabel(f"{env}\n{ylabel}", fontsize=9)
            if i == len(envs) - 1:
                ax.set_xlabel("state-action pairs n", fontsize=9)
    return finish(fig, axes, agg, title, note, legend_cols=4, legend_size=7, title_size=11)
