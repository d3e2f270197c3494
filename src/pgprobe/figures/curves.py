"""Learning curves: mean episode return over env steps, and its spread across seeds.

One panel per environment, one colour per algorithm: the mean over seeds with a 95%
bootstrap band over seeds, and every seed as a thin line.
"""
from __future__ import annotations

import xarray as xr

from .. import stats
from . import add_seed_band, algo_color, algo_label, draw_band, finish, save, summary_attrs

CAPTION = (
    "Learning curves: mean return of the episodes completed in each training iteration, against "
    "env steps, for each algorithm; mean over seeds with a 95% bootstrap band over seeds, and one thin "
    "line per seed (iterations in which no episode completed are skipped). The paper and its talk use "
    "such curves as motivation: the same algorithm and hyperparameters give widely different curves "
    "across seeds, so single runs or a few seeds say little about how an algorithm behaves."
)
COLS = 3


def summarize(combined: xr.Dataset) -> xr.Dataset:
    out = xr.Dataset(coords={"bound": ["lo", "hi"]})
    for var in ("return_mean", "env_steps"):
        out[var] = combined[var].transpose("env", "algo", "seed", "iteration")
    add_seed_band(out, "return_mean", "mean episode return")
    steps, _ = stats.over_seeds(out["env_steps"])
    out["env_steps_mean"] = xr.Variable(*steps, {"long_name": "env steps by the end of the iteration, "
                                                              "mean over seeds"})
    out.attrs = summary_attrs("curves", combined)
    return out


def draw(agg: xr.Dataset):
    from matplotlib.figure import Figure

    envs, algos = list(agg["env"].values), list(agg["algo"].values)
    cols = min(COLS, len(envs))
    rows = -(-len(envs) // cols)
    fig = Figure(figsize=(max(4.2 * cols, 6.5), 3.4 * rows + 0.6))  # wide enough for the title and footer
    axes = fig.subplots(rows, cols, squeeze=False).ravel()
    for ax, env in zip(axes, envs):
        for algo in algos:
            a = agg.sel(env=env, algo=algo)
            draw_band(ax, a["env_steps"].transpose("seed", ...).values,
                      a["return_mean"].transpose("seed", ...).values, a["env_steps_mean"].values,
                      a["return_mean_mean"].values, a["return_mean_ci"].values,
                      algo_color(algo, algos), algo_label(algo))
        ax.set_title(env, fontsize=10)
        ax.set_xlabel("env steps", fontsize=9)
        ax.set_ylabel("mean episode return", fontsize=9)
        ax.ticklabel_format(axis="x", style="sci", scilimits=(0, 3))
        ax.grid(True, alpha=0.3)
        if ax.lines:
            ax.legend(fontsize=8, loc="best")
    for ax in axes[len(envs):]:
        ax.set_axis_off()
    return finish(fig, axes, agg, "Learning curves: mean over seeds, 95% bootstrap band, every seed",
                  "band: 95% bootstrap over seeds", top=0.98)


def render(agg: xr.Dataset, out: str) -> None:
    save(draw(agg), out)
