"""Fig 6 (and fig 7, figures/fig7.py): surrogate objective beside true reward on the plane (step, random direction).

Rows: training iterations.  For each regime (the step from the agent's own batch, and from many
samples): the surrogate, the true reward (one colour scale per row for each of the two), and the
true reward along the step (y = 0) with its standard errors, so the noise is in view.  Each row
states the step's and the direction's norms and the KL at x = 1 and at y = 1.
"""
from __future__ import annotations

import numpy as np
import xarray as xr

from . import finish, save

VARIABLES = ("surrogate", "true_reward", "true_reward_sem", "episodes", "step_norm", "direction_norm",
             "kl_step", "kl_direction", "step_rejected", "batch_size")
CAPTION = ("Surrogate objective (on the batch that made the step) beside the true reward (mean return of "
           "complete episodes) on the plane spanned by the update step (x; 1 = one full step) and a random "
           "unit direction (y).  The paper (Ilyas et al. 2020, fig. 6): the surrogate promises a steady gain "
           "along the step, while the true reward, past early training, does not rise along it as promised.")


def step_gain(da: xr.DataArray) -> xr.DataArray:
    """da at (x, y) = (1, 0) minus at (0, 0): the gain one full step promises or gives."""
    at = dict(y=0.0, method="nearest")
    return (da.sel(x=1.0, **at) - da.sel(x=0.0, **at)).drop_vars(["x", "y"], errors="ignore")


def step_gain_se(sem: xr.DataArray) -> xr.DataArray:
    """Standard error of `step_gain` of the true reward, the two points taken as independent."""
    at = dict(y=0.0, method="nearest")
    return np.hypot(sem.sel(x=1.0, **at), sem.sel(x=0.0, **at)).drop_vars(["x", "y"], errors="ignore")


def summarize(combined: xr.Dataset, figure: str = "fig6") -> xr.Dataset:
    """The first env and algo of the run; per agent and iteration, the gain along the step (x: 0 -> 1,
    y = 0) of the surrogate and of the true reward, with the latter's standard error."""
    ds = combined[list(VARIABLES)].isel(env=0, algo=0)
    ds["true_gain"] = step_gain(ds["true_reward"]).assign_attrs(long_name="true reward at (1, 0) minus at (0, 0)")
    ds["true_gain_se"] = step_gain_se(ds["true_reward_sem"]).assign_attrs(
        long_name="standard error of true_gain (the two points taken as independent)")
    ds["surrogate_gain"] = step_gain(ds["surrogate"]).assign_attrs(long_name="surrogate at (1, 0) minus at (0, 0)")
    line = ds.sel(y=0.0, method="nearest")
    w = 1.0 / line["true_reward_sem"] ** 2  # weighted least squares along the step
    dx = line["x"] - (w * line["x"]).sum("x") / w.sum("x")
    ds["true_slope"] = ((w * dx * line["true_reward"]).sum("x") / (w * dx**2).sum("x")).assign_attrs(
        long_name="slope of the true reward along the step (y = 0), per full step: least squares weighted by 1/sem^2")
    ds["true_slope_se"] = (1.0 / np.sqrt((w * dx**2).sum("x"))).assign_attrs(long_name="standard error of true_slope")
    sx = line["x"] - line["x"].mean()
    ds["surrogate_slope"] = ((sx * line["surrogate"]).sum("x") / (sx**2).sum("x")).assign_attrs(
        long_name="least-squares slope of the surrogate along the step (y = 0), per full step")
    ds.attrs.update({"figure": figure, "env": str(combined["env"].values[0]), "algo": str(combined["algo"].values[0])})
    return ds.drop_vars(["x_nearest", "y_nearest"], errors="ignore")


def _row_limits(ds, it, var):
    z = ds[var].sel(iteration=it).values
    return np.nanmin(z), np.nanmax(z)


def heatmap(fig, ax, x, y, z, limits) -> None:
    """z (x, y) on the plane, colour scale `limits` (vmin, vmax), with the panel's own contours and the
    lines x = 0 (theta_t) and x = 1 (one full step)."""
    z = np.asarray(z).T
    mesh = ax.pcolormesh(x, y, z, shading="nearest", cmap="viridis", vmin=limits[0], vmax=limits[1])
    if np.isfinite(z).sum() > 3 and np.nanmax(z) > np.nanmin(z):  # the panel's own shape, whatever the row's scale
        ax.contour(x, y, z, levels=6, colors="white", linewidths=0.4, alpha=0.7)
    ax.axvline(0, color="w", lw=0.6, ls=":")
    ax.axvline(1, color="r", lw=0.8, ls="--")
    fig.colorbar(mesh, ax=ax, fraction=0.046, pad=0.02)


def draw(ds: xr.Dataset, seed_index: int = 0):
    from matplotlib.figure import Figure

    seed = int(ds["seed"].values[seed_index])
    ds = ds.isel(seed=seed_index)
    regimes, iters = list(ds["regime"].values), list(ds["iteration"].values)
    x, y = ds["x"].values, ds["y"].values
    ncol = 3 * len(regimes)
    fig = Figure(figsize=(3.0 * ncol, 2.9 * len(iters) + 0.9))
    axes = fig.subplots(len(iters), ncol, squeeze=False)
    for i, it in enumerate(iters):
        limits = {v: _row_limits(ds, it, v) for v in ("surrogate", "true_reward")}
        for r, regime in enumerate(regimes):
            row = ds.sel(iteration=it, regime=regime)
            n = int(row["batch_size"])
            for c, var in enumerate(("surrogate", "true_reward")):
                ax = axes[i, 3 * r + c]
                heatmap(fig, ax, x, y, row[var].values, limits[var])
                if i == 0:
                    ax.set_title(f"{'surrogate' if c == 0 else 'true reward'}\nstep from {n} pairs", fontsize=9)
                if i == len(iters) - 1:
                    ax.set_xlabel("step direction (1 = full step)", fontsize=8)
                if r == 0 and c == 0:
                    ax.set_ylabel(f"iteration {int(it)}\nrandom direction", fontsize=9)
            _slice(axes[i, 3 * r + 2], row, x, i == 0, n, -0.38 if i == len(iters) - 1 else -0.16)
            rejected = " (rejected: proposed step)" if int(row["step_rejected"]) else ""
            axes[i, 3 * r].text(0.0, -0.38 if i == len(iters) - 1 else -0.16,
                                f"|step|={float(row['step_norm']):.3g}{rejected}  |dir|={float(row['direction_norm']):.3g}  "
                                f"KL(x=1)={float(row['kl_step']):.2g}  KL(y=1)={float(row['kl_direction']):.2g}",
                                transform=axes[i, 3 * r].transAxes, fontsize=7)
    return finish(fig, axes, ds, f"Surrogate objective vs true reward: {ds.attrs['algo'].upper()} on {ds.attrs['env']}",
                  f"seed shown: {seed}; true reward >= {ds.attrs.get('samples_per_point', '?')} pairs/point, "
                  "error bars: 1 s.e.")


def _slice(ax, row, x, first: bool, n: int, text_y: float) -> None:  # row: one iteration and regime
    """True reward along the step (y = 0) with 1-s.e. error bars; the surrogate's gain for scale."""
    line = row.sel(y=0.0, method="nearest")
    ax.errorbar(x, line["true_reward"].values, yerr=line["true_reward_sem"].values, fmt="o-", ms=3, lw=1,
                capsize=2, color="k")
    ax.axvline(1, color="r", lw=0.8, ls="--")
    gain, se, sgain = (float(row[v]) for v in ("true_gain", "true_gain_se", "surrogate_gain"))
    ax.set_title(f"true reward at y=0\nstep from {n} pairs" if first else "", fontsize=9)
    ax.text(0.0, text_y, f"true: gain(0->1) {gain:+.3g} +- {se:.2g}, slope {float(row['true_slope']):+.3g} "
                         f"+- {float(row['true_slope_se']):.2g}\nsurrogate: gain(0->1) {sgain:+.3g}",
            transform=ax.transAxes, fontsize=6.5, va="top")
    ax.tick_params(labelsize=7)


def render(ds: xr.Dataset, out: str, seed_index: int = 0) -> None:
    save(draw(ds, seed_index), out)
