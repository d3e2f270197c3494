"""Fig 6 (and 7): surrogate objective beside true reward on the plane (step, random direction).

Rows: training iterations. Columns: surrogate and true reward, for the step computed
from few samples (the agent's batch) and from many.
"""
from __future__ import annotations

import numpy as np

from . import footer

TITLES = {"few": "step from {n} pairs", "many": "step from {n} pairs"}


def render(ds, out: str, seed_index: int = 0) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    foot = footer(ds, f"true reward: >= {ds.attrs['samples_per_point']} pairs/point (seed shown: "
                      f"{int(ds['seed'].values[seed_index])})")
    ds = ds.isel(seed=seed_index)
    regimes = list(ds["regime"].values)
    iters = list(ds["iteration"].values)
    cols = [(r, v) for r in regimes for v in ("surrogate", "true_reward")]
    fig, axes = plt.subplots(len(iters), len(cols), figsize=(3.2 * len(cols), 2.8 * len(iters) + 0.6),
                             squeeze=False)
    x, y = ds["x"].values, ds["y"].values
    for i, it in enumerate(iters):
        for j, (regime, var) in enumerate(cols):
            ax = axes[i, j]
            z = ds[var].sel(iteration=it, regime=regime).values.T  # rows = y
            mesh = ax.pcolormesh(x, y, z, shading="nearest", cmap="viridis")
            if np.isfinite(z).sum() > 3 and np.nanmax(z) > np.nanmin(z):
                ax.contour(x, y, z, levels=6, colors="white", linewidths=0.5)
            ax.axvline(0, color="w", lw=0.6, ls=":")
            ax.axvline(1, color="r", lw=0.8, ls="--")
            fig.colorbar(mesh, ax=ax, fraction=0.046, pad=0.02)
            n = ds.attrs["agent_batch"] if regime == "few" else ds.attrs["many_samples"]
            name = "surrogate" if var == "surrogate" else "true reward"
            if i == 0:
                ax.set_title(f"{name}\n{TITLES[regime].format(n=n)}", fontsize=9)
            if j == 0:
                ax.set_ylabel(f"iteration {int(it)}\nrandom direction", fontsize=9)
            if i == len(iters) - 1:
                ax.set_xlabel("step direction (1 = full step)", fontsize=9)
    fig.suptitle(f"Surrogate objective vs true reward: {ds.attrs['algo'].upper()} on {ds.attrs['env']}")
    fig.text(0.01, 0.005, foot, fontsize=7)
    fig.tight_layout(rect=(0, 0.02, 1, 0.97))
    fig.savefig(out, metadata={"CreationDate": None, "Creator": "pgprobe"})
    plt.close(fig)
