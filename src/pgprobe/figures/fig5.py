"""Fig 5: landscape concentration.  The true reward on fig 6's plane (step, random direction) estimated
with several budgets of state-action pairs per point, independent samples per point: one panel per budget,
one colour scale across them (per iteration), and the true reward along the step (y = 0) at every budget
with its standard errors.  Rows: iterations (the paper shows one, 150)."""
from __future__ import annotations

import numpy as np
import xarray as xr

from . import fig6, finish, save

VARIABLES = ("true_reward", "true_reward_sem", "episodes", "pairs", "budget_envs", "step_norm", "direction_norm",
             "kl_step", "kl_direction", "step_rejected", "batch_size")
CAPTION = ("True reward (mean return of complete episodes) on the plane spanned by the update step (x; 1 = one "
           "full step, computed from many samples) and a random unit direction (y), estimated at each point from "
           "independent samples with three budgets of state-action pairs (paper: 2*10^3, 2*10^4 and 10^6; the talk: "
           "20, 200 and 1000 trajectories), on one colour scale.  The paper (Ilyas et al. 2020, fig. 5): with many "
           "samples the landscape is smooth, in the agent's own sample regime it is jagged and good points cannot "
           "be told from bad ones.")
PLANE = ("x", "y")


def summarize(combined: xr.Dataset) -> xr.Dataset:
    """The first env and algo of the run; per agent, iteration and budget: how noisy the surface is (median
    standard error over the points), how far it lies from the largest budget's surface (rms difference and
    correlation over the points), and the gain along the step with its standard error."""
    ds = combined[list(VARIABLES)].isel(env=0, algo=0)
    largest = ds["true_reward"].isel(budget=-1, drop=True)
    ds["noise_se"] = ds["true_reward_sem"].median(PLANE).assign_attrs(
        long_name="median over the plane's points of the true reward's standard error")
    ds["landscape_sd"] = ds["true_reward"].std(PLANE, ddof=1).assign_attrs(
        long_name="standard deviation of the true reward over the plane's points (landscape and noise)")
    ds["rms_from_largest"] = np.sqrt(((ds["true_reward"] - largest) ** 2).mean(PLANE)).assign_attrs(
        long_name="rms over the points of the difference from the largest budget's surface")
    ds["corr_with_largest"] = xr.corr(ds["true_reward"], largest, dim=list(PLANE)).assign_attrs(
        long_name="correlation over the points with the largest budget's surface")
    ds["true_gain"] = fig6.step_gain(ds["true_reward"]).assign_attrs(long_name="true reward at (1, 0) minus at (0, 0)")
    ds["true_gain_se"] = fig6.step_gain_se(ds["true_reward_sem"]).assign_attrs(
        long_name="standard error of true_gain (the two points are independent samples)")
    ds["episodes_median"] = ds["episodes"].median(PLANE).assign_attrs(long_name="median complete episodes per point")
    ds["pairs_median"] = ds["pairs"].median(PLANE).assign_attrs(long_name="median state-action pairs per point")
    ds.attrs.update({"figure": "fig5", "env": str(combined["env"].values[0]), "algo": str(combined["algo"].values[0])})
    return ds


def draw(ds: xr.Dataset, seed_index: int = 0):
    from matplotlib.figure import Figure

    seed = int(ds["seed"].values[seed_index])
    ds = ds.isel(seed=seed_index)
    budgets, iters = ds["budget"].values, list(ds["iteration"].values)
    x, y = ds["x"].values, ds["y"].values
    fig = Figure(figsize=(3.0 * (len(budgets) + 1), 2.9 * len(iters) + 1.0))
    axes = fig.subplots(len(iters), len(budgets) + 1, squeeze=False)
    for i, it in enumerate(iters):
        row = ds.sel(iteration=it)
        limits = (np.nanmin(row["true_reward"].values), np.nanmax(row["true_reward"].values))  # one scale per row
        for b, budget in enumerate(budgets):
            cell, ax = row.isel(budget=b), axes[i, b]
            fig6.heatmap(fig, ax, x, y, cell["true_reward"].values, limits)
            ax.set_title(f"{int(budget)} pairs/point (~{float(cell['episodes_median']):.0f} episodes)\n"
                         f"s.e. {float(cell['noise_se']):.2g}, corr. with largest {float(cell['corr_with_largest']):.2f}",
                         fontsize=8)
            if i == len(iters) - 1:
                ax.set_xlabel("step direction (1 = full step)", fontsize=8)
        axes[i, 0].set_ylabel(f"iteration {int(it)}\nrandom direction", fontsize=9)
        _slices(axes[i, -1], row, x)
    crn = "common random numbers" if int(ds.attrs.get("common_random_numbers", 0)) else "independent samples per point"
    return finish(fig, axes, ds, f"True reward landscape concentration: {ds.attrs['algo'].upper()} on {ds.attrs['env']}",
                  f"seed shown: {seed}; {crn}; error bars: 1 s.e.")


def _slices(ax, row, x) -> None:  # row: one iteration, every budget
    """The true reward along the step (y = 0) at every budget, 1-s.e. error bars, the gain 0 -> 1 in the legend;
    the step's and the direction's sizes in the title."""
    width = 0.02 * (x.max() - x.min())
    for b, budget in enumerate(row["budget"].values):
        cell = row.isel(budget=b)
        line = cell.sel(y=0.0, method="nearest")
        ax.errorbar(x + (b - 1) * width, line["true_reward"].values, yerr=line["true_reward_sem"].values, fmt="o-",
                    ms=2.5, lw=0.9, capsize=1.5,
                    label=f"{int(budget)}: {float(cell['true_gain']):+.3g} +- {float(cell['true_gain_se']):.2g}")
    ax.axvline(1, color="r", lw=0.8, ls="--")
    ax.legend(fontsize=5.5, title="pairs/point: gain (0->1)", title_fontsize=5.5)
    rejected = " (rejected: proposed)" if int(row["step_rejected"]) else ""
    ax.set_title(f"true reward at y=0\nstep from {int(row['batch_size'])} pairs{rejected}: |step| "
                 f"{float(row['step_norm']):.3g}, KL {float(row['kl_step']):.2g}\n|dir| "
                 f"{float(row['direction_norm']):.3g}, KL(y=1) {float(row['kl_direction']):.2g}", fontsize=7)
    ax.tick_params(labelsize=7)


def render(ds: xr.Dataset, out: str, seed_index: int = 0) -> None:
    save(draw(ds, seed_index), out)
