"""Fig 3: value prediction over training.  Mean relative error of the value network (after each iteration's
fit) on held-out pairs from pi_t, against its own training target V_old + A_GAE, against the realised
discounted returns, and against the returns of complete episodes only.  Rows: envs; columns: targets; one
colour per algorithm: mean over seeds -/+ one standard error, a thin line per seed, dashed: the ratio of sums
sum |V - y| / sum |y| (which needs no floor for targets near zero); log y-axis."""
from __future__ import annotations

import numpy as np
import xarray as xr

from . import add_seed_band, algo_color, algo_label, draw_band, finish, save, summary_attrs

MEASURES = ("mre", "sum_relative_error", "mre_before_fit")
VARIABLES = (*MEASURES, "fraction_near_zero", "pairs", "agent_batch_size")
DEFINITIONS = ("targets", "value_network", "heldout", "pairs_measured", "measure", "near_zero", "min_rel_target")
TITLES = {"gae": "own target $V_{old} + A_{GAE}$", "returns": "realised discounted returns",
          "returns_complete": "returns, complete episodes only"}
CAPTION = (
    "Value prediction over training (paper Fig. 3). At every probed iteration t, held-out state-action pairs "
    "from pi_t (a batch of the agent's size, collected as the agent collects, used for nothing else); the "
    "value network after the iteration's fit is compared with, left: its own training target V_old + A_GAE "
    "(V_old: the network before the fit); middle: the realised discounted return within each episode (cut by "
    "the batch end); right: the same on the pairs of episodes that ended within the batch. Mean relative "
    "error mean |V - y| / |y| over the pairs of the value loss (pairs whose |y| is below a small fraction of "
    "the mean |y| left out: the footer gives the fraction and how many), in the reward units the agent "
    "optimised (PPO's scaled rewards); mean over seeds -/+ one standard error, thin lines per seed; dashed: "
    "sum |V - y| / sum |y| over all the pairs (mean over seeds), which needs no floor and shows how much of "
    "the mean relative error targets near zero make; log y-axis. The paper found the error against the "
    "agent's own target low and stable (the value network solves the supervised problem it is given) and the "
    "error against the returns much higher: the network does not learn the true value function."
)


def summarize(combined: xr.Dataset) -> xr.Dataset:
    out = xr.Dataset(coords={"bound": ["lo", "hi"]})
    for var in MEASURES:
        out[var] = combined[var].transpose("env", "algo", "seed", "iteration", "target")
        add_seed_band(out, var, var, band="se")
    for var in ("fraction_near_zero", "pairs"):
        out[var] = combined[var].transpose("env", "algo", "seed", "iteration", "target")
    out.attrs = {**summary_attrs("fig3", combined), **{k: combined.attrs[k] for k in DEFINITIONS if k in combined.attrs}}
    return out


def draw(agg: xr.Dataset):
    from matplotlib.figure import Figure
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    envs, algos, targets = list(agg["env"].values), list(agg["algo"].values), list(agg["target"].values)
    fig = Figure(figsize=(3.6 * len(targets) + 0.6, 3.0 * len(envs) + 1.0))
    axes = fig.subplots(len(envs), len(targets), squeeze=False, sharey="row")
    it = agg["iteration"].values.astype(np.float64)
    for i, env in enumerate(envs):
        for j, target in enumerate(targets):
            ax = axes[i, j]
            for algo in algos:
                a = agg.sel(env=env, algo=algo, target=target)
                seeds = a["mre"].transpose("seed", "iteration").values
                color = algo_color(algo, algos)
                draw_band(ax, [it] * len(seeds), seeds, it, a["mre_mean"].values, a["mre_ci"].values, color,
                          algo_label(algo))
                ax.plot(it, a["sum_relative_error_mean"].values, ls="--", lw=1.0, color=color,
                        label=f"{algo_label(algo)}: $\\sum|V - y| / \\sum|y|$ (no floor)")
            ax.set_yscale("log")
            ax.yaxis.set_major_locator(LogLocator(subs=(1, 2, 5)))
            ax.yaxis.set_major_formatter(FuncFormatter(lambda y, _: f"{y:g}"))
            ax.yaxis.set_minor_formatter(NullFormatter())
            ax.grid(True, which="major", alpha=0.3)
            ax.tick_params(labelsize=7)
            if i == 0:
                ax.set_title(TITLES.get(str(target), str(target)), fontsize=10)
            if j == 0:
                ax.set_ylabel(f"{env}\nmean relative error", fontsize=9)
            if i == len(envs) - 1:
                ax.set_xlabel("training iteration t", fontsize=9)
    return finish(fig, axes, agg, "Value prediction: mean relative error of the value network on held-out pairs",
                  f"band: -/+ 1 s.e. over seeds; {_near_zero_note(agg)}", legend_cols=8, title_size=11)


def _near_zero_note(agg: xr.Dataset) -> str:
    frac = agg["fraction_near_zero"].values
    worst = f"{100 * np.nanmax(frac):.1f}%" if np.isfinite(frac).any() else "none"
    return f"|y| < {agg.attrs.get('min_rel_target', '?')} mean |y| left out (at most {worst} of a point's pairs)"


def render(agg: xr.Dataset, out: str) -> None:
    save(draw(agg), out)
