"""Figures drawn from training logs (fig8: trust region; curves: learning curves), on synthetic logs."""
import subprocess
import sys
import warnings

import numpy as np
import pytest
import xarray as xr
from matplotlib.colors import to_rgb

from pgprobe import stats
from pgprobe.figures import ALGO_COLORS, curves, fig8

ENVS, ALGOS = ("Hopper-v5", "Humanoid-v5"), ("ppo", "ppo_m", "trpo")
EPS, MAX_KL = 0.2, 0.07
LOG_VARS = ("return_mean", "return_median", "episodes", "kl_mean", "ratio_max", "ratio_mean", "entropy",
            "surrogate_before", "surrogate_after", "value_loss", "explained_variance", "lr",
            "step_fraction", "env_steps")


def agent_log(env, algo, seed, T=20, nan_frac=0.1):
    """One agent's train.nc, shaped as the train stage writes it (+ its scalar coords and bounds)."""
    rng = np.random.default_rng([ENVS.index(env), ALGOS.index(algo), seed])
    t = np.arange(T)
    grow = 1 + 3 * t / T
    noise = rng.lognormal(0.0, 0.3, T)
    v = {name: rng.normal(size=T) for name in LOG_VARS}
    if algo == "trpo":
        v["ratio_max"] = 1 + 0.15 * noise
        v["kl_mean"] = MAX_KL * rng.uniform(0.6, 1.0, T)
    else:
        scale = 2.0 if algo == "ppo_m" else 1.0
        v["ratio_max"] = 1 + 0.4 * scale * grow * noise
        v["kl_mean"] = 0.01 * scale * grow * noise
    ret = np.cumsum(rng.normal(20 + 10 * ALGOS.index(algo) + rng.normal(0, 5), 15, T))  # a slope per seed
    ret[rng.random(T) < nan_frac] = np.nan  # iterations in which no episode completed
    v["return_mean"], v["env_steps"] = ret, 2048.0 * (t + 1)
    ds = xr.Dataset({k: ("iteration", x) for k, x in v.items()}, coords={"iteration": t})
    ds = ds.expand_dims(env=[env], algo=[algo], seed=[seed])
    ds["ratio_bound"] = (("env", "algo", "seed"), [[[np.nan if algo == "trpo" else 1 + EPS]]])
    ds["kl_bound"] = (("env", "algo", "seed"), [[[MAX_KL if algo == "trpo" else np.nan]]])
    return ds


def combined_logs(seeds=(0, 1, 2), missing=(), **kw):
    """What the aggregate stage hands summarize: xr.combine_by_coords over the agents' logs."""
    logs = [agent_log(e, a, s, **kw) for e in ENVS for a in ALGOS for s in seeds if (e, a) not in missing]
    ds = xr.combine_by_coords(logs, join="outer")
    ds.attrs.update(run="test", pgprobe_code="abc123")
    return ds


def hlines(ax):
    """y of each horizontal line drawn with axhline, with its colour."""
    return [(float(l.get_ydata()[0]), l.get_color()) for l in ax.lines
            if list(l.get_xdata()) == [0, 1] and len(set(l.get_ydata())) == 1]


def test_bootstrap_skips_nans_and_is_deterministic():
    x = np.array([1.0, 2.0, 4.0, np.nan])
    assert stats.bootstrap_mean_ci(x) == stats.bootstrap_mean_ci(x[:3])
    assert stats.bootstrap_mean_ci(x, seed=1) == stats.bootstrap_mean_ci(x, seed=1)
    lo, hi = stats.bootstrap_mean_ci(np.array([[np.nan, 3.0], [np.nan, np.nan]]), axis=1)
    assert np.isnan(lo[1]) and np.isnan(hi[1]) and lo[0] == hi[0] == 3.0
    assert np.isnan(stats.nanmean([np.nan, np.nan])) and stats.nanmean(x) == pytest.approx(7 / 3)


@pytest.mark.parametrize("module, var", [(fig8, "ratio_max"), (fig8, "kl_mean"), (curves, "return_mean")])
def test_summarize_mean_and_band(module, var):
    combined = combined_logs()
    agg = module.summarize(combined)
    x = combined[var].transpose("env", "algo", "seed", "iteration").values
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN cells
        expected = np.nanmean(x, axis=2)
    np.testing.assert_allclose(agg[f"{var}_mean"].transpose("env", "algo", "iteration").values, expected)
    band = agg[f"{var}_ci"].transpose("env", "algo", "iteration", "bound")
    assert list(agg["bound"].values) == ["lo", "hi"]
    mean = agg[f"{var}_mean"]
    assert bool((band.sel(bound="lo") <= mean + 1e-12).all()) and bool((mean <= band.sel(bound="hi") + 1e-12).all())
    assert bool((band.sel(bound="hi") > band.sel(bound="lo")).mean() > 0.9)  # a band, not a line
    assert agg[var].dims == ("env", "algo", "seed", "iteration")  # the per-seed data are kept
    assert agg.attrs["figure"] in ("fig8", "curves") and agg.attrs["seeds"] == [0, 1, 2]  # run, code: the aggregate stage


@pytest.mark.parametrize("module, var", [(fig8, "ratio_max"), (curves, "return_mean")])
def test_band_shrinks_with_more_seeds(module, var):
    def width(n):
        band = module.summarize(combined_logs(seeds=tuple(range(n)), nan_frac=0.0))[f"{var}_ci"]
        return float((band.sel(bound="hi") - band.sel(bound="lo")).mean())

    assert width(30) < 0.6 * width(3)


def test_curves_mean_skips_nan_returns():
    combined = combined_logs(nan_frac=0.0)
    combined["return_mean"][0, 0, 0, 5] = np.nan  # seed 0 finished no episode in iteration 5
    agg = curves.summarize(combined)
    cell = dict(env=ENVS[0], algo=ALGOS[0], iteration=5)
    others = combined["return_mean"].sel(**cell).values[1:]
    assert float(agg["return_mean_mean"].sel(**cell)) == pytest.approx(others.mean())
    lo, hi = agg["return_mean_ci"].sel(**cell).values
    assert others.min() <= lo < hi <= others.max()
    assert np.isfinite(agg["return_mean_mean"]).all()


def test_fig8_bound_lines_at_one_plus_eps_and_max_kl():
    fig = fig8.draw(fig8.summarize(combined_logs()))
    axes = np.array(fig.axes[:len(ENVS) * 2]).reshape(len(ENVS), 2)
    for ratio_ax, kl_ax in axes:
        assert sorted(hlines(ratio_ax)) == sorted([(1 + EPS, ALGO_COLORS["ppo"]), (1 + EPS, ALGO_COLORS["ppo_m"])])
        assert hlines(kl_ax) == [(MAX_KL, ALGO_COLORS["trpo"])]
        assert ratio_ax.get_yscale() == kl_ax.get_yscale() == "log"
        labels = ratio_ax.get_legend_handles_labels()[1]
        assert {"PPO", "PPO-M", "TRPO"} <= set(labels) and any("= 1.2" in lab for lab in labels)


def test_fig8_rejects_seeds_disagreeing_on_the_bound():
    combined = combined_logs()
    combined["ratio_bound"][0, 0, 1] = 1.3
    with pytest.raises(ValueError, match="ratio_bound"):
        fig8.summarize(combined)


def test_missing_agents_draw_nothing():
    combined = combined_logs(missing=[("Hopper-v5", "trpo")])
    assert np.isnan(combined["kl_mean"].sel(env="Hopper-v5", algo="trpo")).all()  # NaN-filled
    agg8, aggc = fig8.summarize(combined), curves.summarize(combined)
    assert np.isnan(agg8["kl_mean_ci"].sel(env="Hopper-v5", algo="trpo")).all()
    trpo = ALGO_COLORS["trpo"]
    fig = fig8.draw(agg8)
    hopper, humanoid = fig.axes[0:2], fig.axes[2:4]
    assert not any(l.get_color() == trpo for ax in hopper for l in ax.lines)
    assert not any(np.allclose(c.get_facecolor()[0][:3], to_rgb(trpo)) for ax in hopper for c in ax.collections)
    assert any(l.get_color() == trpo for l in humanoid[1].lines)
    fig = curves.draw(aggc)
    assert not any(l.get_color() == trpo for l in fig.axes[0].lines)
    assert any(l.get_color() == trpo for l in fig.axes[1].lines)
    assert "TRPO" not in fig.axes[0].get_legend_handles_labels()[1]


@pytest.mark.parametrize("module", [fig8, curves])
def test_render_writes_identical_pdfs(module, tmp_path):
    agg = module.summarize(combined_logs(missing=[("Humanoid-v5", "ppo_m")]))
    a, b = tmp_path / "a.pdf", tmp_path / "b.pdf"
    module.render(agg, str(a))
    module.render(agg, str(b))
    assert a.read_bytes()[:5] == b"%PDF-" and a.stat().st_size > 5000
    assert a.read_bytes() == b.read_bytes()
    assert isinstance(module.CAPTION, str) and len(module.CAPTION) > 100


@pytest.mark.parametrize("module", [fig8, curves])
def test_summarize_survives_netcdf(module, tmp_path):
    """The aggregate is written to NetCDF between summarize and render."""
    agg = module.summarize(combined_logs())
    agg.to_netcdf(tmp_path / "agg.nc", engine="netcdf4")
    with xr.open_dataset(tmp_path / "agg.nc", engine="netcdf4") as back:
        module.render(back.load(), str(tmp_path / "fig.pdf"))
    assert (tmp_path / "fig.pdf").stat().st_size > 5000


def test_figure_modules_import_neither_torch_nor_gymnasium():
    """Every declared figure module (fig 6 too); the real figure and aggregate jobs are checked the same way in
    test_pipeline.py::test_code_fingerprint_covers_every_module_a_job_imports."""
    code = ("import importlib, sys; from pgprobe.pipeline.declarations import FIGURES; "
            "mods = [importlib.import_module(d.module) for d in FIGURES.values()]; "
            "assert {'fig6', 'fig8', 'curves'} <= set(FIGURES); "
            "assert 'torch' not in sys.modules, 'torch'; assert 'gymnasium' not in sys.modules, 'gymnasium'")
    subprocess.run([sys.executable, "-c", code], check=True)
