"""Fig 8: does the trust region hold? Max likelihood ratio and mean KL per training iteration.

Rows: environments. Columns: max_t ratio pi_t+1/pi_t and mean KL(pi_t || pi_t+1), both over the
iteration's training batch. One colour per algorithm: mean over seeds, 95% bootstrap band over
seeds, one thin line per seed; dashed lines at each PPO variant's 1+eps and at TRPO's max_kl.
"""
from __future__ import annotations

import numpy as np
import xarray as xr

from . import add_seed_band, algo_color, algo_label, draw_band, finish, save, summary_attrs

CAPTION = (
    "Trust region over training (paper Fig. 8). For each iteration t, over that iteration's training "
    "batch: the maximum likelihood ratio pi_t+1(a|s)/pi_t(a|s) (left) and the mean KL(pi_t || pi_t+1) "
    "(right), for PPO, PPO-M (PPO without its code-level optimisations) and TRPO; mean over seeds with "
    "a 95% bootstrap band over seeds, thin lines per seed; log y-axis. Dashed lines: the clipping bound "
    "1+eps of each PPO variant, and TRPO's max KL. The paper found that PPO and PPO-M do not keep the "
    "ratio within 1+eps: their maximum ratios lie far above the bound and grow over training, and "
    "PPO's mean KL is not controlled, while TRPO's mean KL stays at or below max_kl."
)
MEASURES = {"ratio_max": "max likelihood ratio $\\pi_{t+1}/\\pi_t$",
            "kl_mean": "mean KL$(\\pi_t \\,\\|\\, \\pi_{t+1})$"}
BOUNDS = {"ratio_max": ("ratio_bound", "1+$\\epsilon$"), "kl_mean": ("kl_bound", "max KL")}


def _per_agent(bound: xr.DataArray) -> xr.DataArray:
    """A per-seed hyperparameter reduced to (env, algo); seeds of one agent must agree."""
    spread = bound.max("seed") - bound.min("seed")
    if (spread > 1e-12).any():
        raise ValueError(f"fig8: seeds disagree on {bound.name}: {bound.to_dataframe().dropna()}")
    return bound.max("seed")


def summarize(combined: xr.Dataset) -> xr.Dataset:
    out = xr.Dataset(coords={"bound": ["lo", "hi"]})
    for var in MEASURES:
        out[var] = combined[var].transpose("env", "algo", "seed", "iteration")
        add_seed_band(out, var, var)
    for bound, _ in BOUNDS.values():
        out[bound] = _per_agent(combined[bound])
    out["ratio_bound"].attrs["long_name"] = "1 + PPO clip epsilon (NaN: not a PPO variant)"
    out["kl_bound"].attrs["long_name"] = "TRPO max_kl (NaN: not TRPO)"
    out.attrs = summary_attrs("fig8", combined)
    return out


def draw(agg: xr.Dataset):
    from matplotlib.figure import Figure
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    envs, algos = list(agg["env"].values), list(agg["algo"].values)
    fig = Figure(figsize=(10, 3.2 * len(envs) + 0.9))
    axes = fig.subplots(len(envs), len(MEASURES), squeeze=False)
    it = agg["iteration"].values.astype(np.float64)
    for i, env in enumerate(envs):
        for j, var in enumerate(MEASURES):
            ax = axes[i, j]
            bound_var, bound_name = BOUNDS[var]
            for k, algo in enumerate(algos):
                a = agg.sel(env=env, algo=algo)
                color = algo_color(algo, algos)
                seeds = a[var].transpose("seed", "iteration").values
                if not draw_band(ax, [it] * len(seeds), seeds, it, a[f"{var}_mean"].values,
                                 a[f"{var}_ci"].values, color, algo_label(algo)):
                    continue
                b = float(a[bound_var])
                if np.isfinite(b):  # offset dashes so that equal bounds show both colours
                    ax.axhline(b, color=color, lw=1.1, ls=(4 * k % 8, (4, 4)),
                               label=f"{algo_label(algo)} {bound_name} = {b:g}")
            ax.set_yscale("log")
            ax.grid(True, which="major", alpha=0.3)
            if i == 0:
                ax.set_title(MEASURES[var], fontsize=10)
            if j == 0:
                ax.set_ylabel(env, fontsize=10)
            if i == len(envs) - 1:
                ax.set_xlabel("training iteration t", fontsize=9)
            ax.yaxis.set_major_locator(LogLocator(subs=(1, 2, 5)))
            ax.yaxis.set_major_formatter(FuncFormatter(lambda y, _: f"{y:g}"))
            ax.yaxis.set_minor_formatter(NullFormatter())
    return finish(fig, axes, agg, "Trust region: max likelihood ratio and mean KL between successive policies",
                  "band: 95% bootstrap over seeds", legend_cols=6, order=lambda lab: "=" in lab, top=0.98)  # algos, then bounds


def render(agg: xr.Dataset, out: str) -> None:
    save(draw(agg), out)
