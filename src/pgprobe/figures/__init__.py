"""Figures: each module renders from its aggregate only (no torch, no gymnasium)."""
from __future__ import annotations

import numpy as np
import xarray as xr

from .. import stats

ALGO_COLORS = {"ppo": "tab:blue", "ppo_m": "tab:orange", "trpo": "tab:green"}
ALGO_LABELS = {"ppo": "PPO", "ppo_m": "PPO-M", "trpo": "TRPO"}
OTHER_COLORS = ("tab:red", "tab:purple", "tab:brown", "tab:pink", "tab:olive", "tab:cyan")


def algo_color(algo: str, algos=()) -> str:
    """Fixed colour per algo name; other algos take a free colour by their place in `algos`."""
    if algo in ALGO_COLORS:
        return ALGO_COLORS[algo]
    others = [a for a in algos if a not in ALGO_COLORS]
    return OTHER_COLORS[(others.index(algo) if algo in others else 0) % len(OTHER_COLORS)]


def algo_label(algo: str) -> str:
    return ALGO_LABELS.get(algo, algo.upper())


def _listed(ds, key: str) -> str:
    """attrs[key] (a string or a list) or else the values of coord `key`, comma-separated."""
    v = ds.attrs.get(key)
    if v is None and key in ds.coords:
        v = ds[key].values
    if v is None or isinstance(v, str):
        return str(v)
    return ", ".join(str(x) for x in v)


def footer(ds, extra: str = "") -> str:
    a = ds.attrs
    seeds = ", ".join(str(int(s)) for s in np.atleast_1d(ds["seed"].values)) if "seed" in ds.coords else "?"
    return (f"run: {a.get('run', '?')}   env: {_listed(ds, 'env')}   algo: {_listed(ds, 'algo')}   "
            f"seeds: {seeds}   {extra}   pgprobe {a.get('pgprobe_code', '')}")


def finish(fig, axes, agg, title: str, note: str, legend_cols: int | None = None, legend_size: float = 8,
           title_size: float | None = None, order=None, top: float = 0.97):
    """The tail every multi-panel figure shares: one legend for the figure (each label once, from every
    panel, sorted by `order` if given; none if `legend_cols` is None), the title, the footer (run, agents,
    code version, `note`) and the layout around them."""
    bottom = 0.02
    if legend_cols is not None:
        legend = {}
        for ax in np.ravel(axes):
            legend.update(zip(*ax.get_legend_handles_labels()[::-1]))
        labels = sorted(legend, key=order) if order else list(legend)
        fig.legend([legend[lab] for lab in labels], labels, loc="lower center", fontsize=legend_size,
                   ncol=max(1, min(len(labels), legend_cols)), bbox_to_anchor=(0.5, 0.22 / fig.get_figheight()),
                   frameon=False)
        bottom = 0.72 / fig.get_figheight()
    fig.suptitle(title, fontsize=title_size)
    fig.text(0.01, 0.005, footer(agg, note), fontsize=7)
    fig.tight_layout(rect=(0, bottom, 1, top))
    return fig


def save(fig, out: str) -> None:
    """PDF without a creation date: the same aggregate gives the same bytes."""
    fig.savefig(out, metadata={"CreationDate": None, "Creator": "pgprobe"})


def draw_band(ax, x_seeds, y_seeds, x, mean, band, color: str, label: str) -> bool:
    """Thin line per seed, the mean over seeds and its band; NaN points are skipped. False if no data."""
    if not np.isfinite(mean).any():
        return False
    for xs, ys in zip(x_seeds, y_seeds):
        ok = np.isfinite(xs) & np.isfinite(ys)
        ax.plot(xs[ok], ys[ok], color=color, lw=0.5, alpha=0.35)
    ok = np.isfinite(x) & np.isfinite(mean)
    ax.fill_between(x[ok], band[ok, 0], band[ok, 1], color=color, alpha=0.2, lw=0)
    ax.plot(x[ok], mean[ok], color=color, lw=1.6, label=label)
    return True


def add_seed_band(out: xr.Dataset, var: str, what: str, band: str = "bootstrap") -> None:
    """out[var] (..., seed, ...) -> out[var_mean] (mean over seeds, NaN skipped) and out[var_ci] (dim `bound`):
    the 95% bootstrap band of that mean over seeds, or (band "se") the mean -/+ one standard error."""
    mean, bounds = stats.over_seeds(out[var], band)
    desc = ("mean -/+ one standard error over seeds (NaN with fewer than two)" if band == "se" else
            "95% percentile bootstrap CI of the mean over seeds (1000 resamples)")
    out[f"{var}_mean"] = xr.Variable(*mean, {"long_name": f"{what}: mean over seeds (NaN skipped)"})
    out[f"{var}_ci"] = xr.Variable(*bounds, {"long_name": f"{what}: {desc}"})


def summary_attrs(fig: str, combined: xr.Dataset) -> dict:
    return {"figure": fig, "seeds": [int(s) for s in combined["seed"].values]}
