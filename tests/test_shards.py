"""Sharded probes: a plane split into jobs by blocks of x rows, gathered into what one job makes."""
from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

from pgprobe.errors import ArtifactError, ConfigError
from pgprobe.pipeline import artifacts, config, shards
from pgprobe.probes import gradients, landscape
from test_landscape import bandit_cfg, bandit_inputs  # noqa: F401  (the fixture)


@pytest.mark.parametrize("size,n", [(9, 1), (9, 2), (9, 4), (9, 9), (5, 3), (7, 7)])
def test_blocks_cover_the_axis_once_in_order_with_sizes_within_one(size, n):
    blocks = [shards.block(size, k, n) for k in range(n)]
    assert [i for b in blocks for i in range(size)[b]] == list(range(size))
    lengths = [b.stop - b.start for b in blocks]
    assert min(lengths) >= 1 and max(lengths) - min(lengths) <= 1


def test_more_shards_than_rows_is_refused_naming_the_key(repo_root):
    cfg = config.load(repo_root / "params.yaml", [repo_root / "config" / "smoke.yaml"], check_envs=False)
    config.validate({**cfg, "shards": {"landscape": 2, "true_gradient": 4}}, check_envs=False)  # at most one each
    cfg["shards"] = {"landscape": 3}
    with pytest.raises(ConfigError, match=r"shards\.landscape: 3 shards, but its x axis has 2"):
        config.validate(cfg, check_envs=False)
    cfg["shards"] = {"true_gradient": 5}  # smoke: 1024 pairs in chunks of the agent's 256: four blocks
    with pytest.raises(ConfigError, match=r"shards\.true_gradient: 5 shards, but its block axis has 4"):
        config.validate(cfg, check_envs=False)
    cfg["shards"] = {"true_value": 2}
    with pytest.raises(ConfigError, match=r"shards\.true_value: not a probe that splits"):
        config.validate(cfg, check_envs=False)


def _through_files(ds: xr.Dataset, path, module: str) -> xr.Dataset:
    """As the pipeline hands it on: agent coordinates, provenance, a NetCDF file, read back."""
    ds = artifacts.with_agent_coords(ds, "Bandit", "trpo", 0, 1)
    ds.attrs.update(artifacts.provenance("probe_x", {"probe": {}}, "probe", (module,)))
    artifacts.write_nc(ds, path)
    return artifacts.read_nc(path, kind="probe_x")


def _sharded(case, inputs, n, tmp_path):
    entry, cfg, dim, _, module = CASES[case]
    parts = []
    for k in range(n):
        ds = shards.mark(entry(inputs, cfg, progress=False, shard=(k, n)), k, n)
        parts.append(_through_files(ds, tmp_path / f"shard{k}of{n}.nc", module))
    return parts


CASES = {  # entry, its params, shard_dim, finish, module
    # fig 6: both regimes (the "many" step is recomputed by every shard and must agree), common random numbers
    "run": (landscape.run, dict(bandit_cfg(points=5), regimes=["few", "many"], samples_per_point=512,
                                envs_per_point=4), "x", None, "pgprobe.probes.landscape"),
    # fig 5: independent samples, each point seeded by its place in the whole plane
    "concentration": (landscape.concentration, bandit_cfg(points=5, budgets=((256, 2), (1024, 4))), "x", None,
                      "pgprobe.probes.landscape"),
    # g*: 8 chunks in 5 blocks
    "true_gradient": (gradients.true_gradient, {"n_star": 2048, "chunk": 256, "norm_adv": None, "blocks": 5,
                                                "seed": 0}, "block", gradients.true_gradient_finish,
                      "pgprobe.probes.gradients"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_gathered_shards_are_identical_to_one_job_for_any_count(case, bandit_inputs, tmp_path):  # noqa: F811
    # Breaks if a shard computes other rows (blocks) than its own, if a point's samples depend on which shard
    # holds it (seeds by block position), if the step or direction differ between shards, if the gather loses
    # or reorders rows, pads episodes differently or changes an attr, or if g*'s sums depend on the job split.
    entry, cfg, dim, finish, module = CASES[case]
    whole = _through_files(entry(bandit_inputs, cfg, progress=False), tmp_path / "whole.nc", module)
    for n in (2, 3, 5):
        parts = _sharded(case, bandit_inputs, n, tmp_path)
        assert [p.sizes[dim] for p in parts] == [shards.block(5, k, n).stop - shards.block(5, k, n).start
                                                 for k in range(n)]
        gathered = shards.gather(parts[::-1], dim)  # any order
        xr.testing.assert_identical(finish(gathered) if finish else gathered, whole)
    if finish:  # blocks are only the summation's grouping: g* agrees with one sum over all chunks
        g, _ = gradients.true_gradient_of(bandit_inputs.agent(), 2048, 256, 0, bandit_inputs.agent().norm_adv)
        np.testing.assert_allclose(whole["g_star"].values, g, rtol=1e-9, atol=1e-12)


def test_gather_refuses_missing_duplicate_or_foreign_shards(bandit_inputs, tmp_path):  # noqa: F811
    parts = _sharded("run", bandit_inputs, 3, tmp_path)
    with pytest.raises(ArtifactError, match="expected shards 0..1 of 2"):
        shards.gather(parts[:2], "x")
    with pytest.raises(ArtifactError, match="each once"):
        shards.gather([parts[0], parts[0], parts[2]], "x")
    other = parts[1].copy()
    other["direction"] = other["direction"] * 2
    with pytest.raises(ArtifactError, match="'direction'.*differs between shard 0 and shard 1"):
        shards.gather([parts[0], other, parts[2]], "x")


def test_a_points_statistics_do_not_depend_on_the_other_points():
    # Breaks if a point's mean or s.e. is summed over the NaN-padded episode array: its padding length is set
    # by the point with the most episodes, so a shard (fewer points) would round the sums differently (seen on
    # Humanoid, where episode counts differ between points; the bandit's do not).
    rng = np.random.default_rng(0)
    eps = [{"return": rng.normal(100, 30, n), "discounted_return": rng.normal(50, 10, n), "length": rng.integers(10, 90, n)}
           for n in (3, 41, 7, 19, 2, 30)]
    whole = landscape.episode_vars([eps], "regime", 6, 1, 0.99)
    part = landscape.episode_vars([eps[2:4]], "regime", 2, 1, 0.99)
    assert part["episode_return"][1].shape[-1] == 19 < whole["episode_return"][1].shape[-1] == 41
    for var in ("true_reward", "true_reward_sem", "episodes", "pairs"):
        assert np.array_equal(part[var][1][0, :, 0], whole[var][1][0, 2:4, 0]), var
