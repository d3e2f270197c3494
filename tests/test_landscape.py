"""Unit tests of the landscape probe's pieces: random directions and the batched true-reward evaluation."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import xarray as xr

from pgprobe import evaluate
from pgprobe.envs import VecEnv
from pgprobe.nets import GaussianPolicy, PolicyWeights, flat_params
from pgprobe.probes.landscape import random_direction

OBS, ACT, HIDDEN = 11, 3, [64, 32]  # Hopper's sizes; rectangular hidden layers so rows != columns


def make_policy(log_std: float = -0.3, seed: int = 0) -> GaussianPolicy:
    torch.manual_seed(seed)
    return GaussianPolicy(OBS, ACT, HIDDEN, "xavier", init_log_std=log_std)


def split(policy: GaussianPolicy, flat: np.ndarray) -> dict[str, np.ndarray]:
    """A flat vector laid out like policy.parameters(), cut into named arrays."""
    out, i = {}, 0
    for name, p in policy.named_parameters():
        out[name] = flat[i:i + p.numel()].reshape(p.shape)
        i += p.numel()
    assert i == flat.size
    return out


def weights_of(policy: GaussianPolicy) -> dict[str, np.ndarray]:
    return {n: p.detach().numpy().astype(np.float64) for n, p in policy.named_parameters()}


# -- random_direction ---------------------------------------------------------------------------
def test_unit_direction_has_norm_one_and_respects_perturb_log_std():
    policy = make_policy()
    size = flat_params(policy).numel()
    d = random_direction(policy, np.random.default_rng(0), "unit", perturb_log_std=False)
    assert d.shape == (size,) and d.dtype == np.float64
    assert np.linalg.norm(d) == pytest.approx(1.0, abs=1e-12)
    assert np.all(split(policy, d)["log_std"] == 0)
    assert np.count_nonzero(d) == size - ACT

    d = random_direction(policy, np.random.default_rng(0), "unit", perturb_log_std=True)
    assert np.linalg.norm(d) == pytest.approx(1.0, abs=1e-12)
    assert np.all(split(policy, d)["log_std"] != 0)


@pytest.mark.parametrize("perturb_log_std", [False, True])
def test_filter_direction_matches_each_output_neurons_row(perturb_log_std):
    policy = make_policy()
    w = weights_of(policy)
    d = split(policy, random_direction(policy, np.random.default_rng(1), "filter", perturb_log_std))
    matrices = [n for n in w if n.startswith("mean.") and n.endswith(".weight")]
    assert len(matrices) == len(HIDDEN) + 1
    for name in matrices:
        assert d[name].shape == w[name].shape  # torch Linear: (out, in); a row is one output neuron
        np.testing.assert_allclose(np.linalg.norm(d[name], axis=1), np.linalg.norm(w[name], axis=1), rtol=1e-10)
        # and not the columns (the public code's mistake)
        assert not np.allclose(np.linalg.norm(d[name], axis=0), np.linalg.norm(w[name], axis=0), rtol=1e-3)
    for name in w:
        if name.startswith("mean.") and name.endswith(".bias"):
            assert np.all(d[name] == 0), name
    if perturb_log_std:
        assert np.all(d["log_std"] != 0)
        # scaled to the norm of the std vector exp(log_std): non-zero even where log_std = 0
        assert np.linalg.norm(d["log_std"]) == pytest.approx(np.linalg.norm(np.exp(w["log_std"])), rel=1e-10)
    else:
        assert np.all(d["log_std"] == 0)


@pytest.mark.parametrize("norm", ["unit", "filter"])
def test_direction_is_determined_by_the_rng(norm):
    policy = make_policy()
    a = random_direction(policy, np.random.default_rng([3, 0, 2]), norm, True)
    b = random_direction(policy, np.random.default_rng([3, 0, 2]), norm, True)
    c = random_direction(policy, np.random.default_rng([3, 0, 4]), norm, True)
    assert np.array_equal(a, b)
    assert not np.allclose(a, c)
    # the direction depends on the policy's shapes (and, for filter, its weights), not on torch's RNG
    torch.manual_seed(123)
    assert np.array_equal(random_direction(policy, np.random.default_rng([3, 0, 2]), norm, True), a)


def test_unknown_normalisation_is_refused():
    with pytest.raises(ValueError, match="normalisation"):
        random_direction(make_policy(), np.random.default_rng(0), "layer", False)


# -- evaluate.episode_returns -------------------------------------------------------------------
ENV = "Hopper-v5"


def stacked(policy: GaussianPolicy, k: int, jitter: float = 0.0, seed: int = 0) -> PolicyWeights:
    theta = flat_params(policy).numpy().astype(np.float64)
    rng = np.random.default_rng(seed)
    flats = np.stack([theta + (jitter * rng.standard_normal(theta.size) if i else 0.0) for i in range(k)])
    return PolicyWeights.from_flat(policy, flats)


class _Recorder:
    """Wraps an unwrapped env: records every episode's length, return and how it ended."""

    def __init__(self, env, max_steps: int):
        self._env, self._max = env, max_steps
        self.episodes: list[dict] = []

    def reset(self, seed=None, **kw):
        self.episodes.append({"seed": seed, "steps": 0, "ret": 0.0, "done": False})
        return self._env.reset(seed=seed, **kw)

    def step(self, action):
        o, r, term, trunc, info = self._env.step(action)
        ep = self.episodes[-1]
        assert not ep["done"], "stepped an episode that had already ended"
        ep["steps"] += 1
        ep["ret"] += float(r)
        ep["done"] = bool(term or trunc or ep["steps"] >= self._max)
        return o, r, term, trunc, info

    def __getattr__(self, name):
        return getattr(self._env, name)


@pytest.fixture
def recorded(monkeypatch):
    made: list[VecEnv] = []

    class RecordingVecEnv(VecEnv):
        def __init__(self, env_id, num_envs, **kw):
            super().__init__(env_id, num_envs, backend="gymnasium", **kw)  # gymnasium envs, so they can be wrapped
            self.envs = self.stepper.envs = [_Recorder(e, self.max_steps) for e in self.stepper.envs]
            made.append(self)

    monkeypatch.setattr(evaluate, "VecEnv", RecordingVecEnv)
    return made


def _returns(weights, seed, min_steps=150, m=2):
    return evaluate.episode_returns(ENV, weights, np.zeros(OBS), np.ones(OBS), None, min_steps, m, seed, clip_actions=False)


def test_identical_policies_get_identical_returns_common_random_numbers():
    w = stacked(make_policy(), 2)
    r = _returns(w, seed=0)
    assert len(r) == 2 and len(r[0]) >= 2
    assert r[0] == r[1]
    assert _returns(w, seed=0) == r  # and the same call twice gives the same numbers
    other = _returns(w, seed=1)
    assert other[0] == other[1]
    assert other[0] != r[0]


def test_returns_are_of_complete_episodes_and_cover_min_steps(recorded):
    k, m, min_steps = 2, 2, 150
    w = stacked(make_policy(), k, jitter=0.05)
    r = _returns(w, seed=5, min_steps=min_steps, m=m)
    (venv,) = recorded
    assert len(venv.envs) == k * m
    for policy in range(k):
        envs = [venv.envs[e] for e in range(k * m) if e // m == policy]
        episodes = [ep for env in envs for ep in env.episodes]
        assert all(ep["done"] for ep in episodes), "a return of an unfinished episode was counted"
        assert sorted(r[policy]) == pytest.approx(sorted(ep["ret"] for ep in episodes), rel=1e-12)
        assert len(r[policy]) >= m
        for env in envs:  # each slot runs until min_steps, then finishes its episode and stops
            steps = [ep["steps"] for ep in env.episodes]
            assert sum(steps) >= min_steps
            assert sum(steps[:-1]) < min_steps
    # common random numbers: slot j resets its episodes with the same seeds for every policy
    # (as long as their episodes line up; the first episode always does)
    for j in range(m):
        assert len({venv.envs[p * m + j].episodes[0]["seed"] for p in range(k)}) == 1


def test_parallel_workers_give_the_same_returns():
    w = stacked(make_policy(), 3, jitter=0.05)
    args = (ENV, w, np.zeros(OBS), np.ones(OBS), None, 60, 2, 7)
    assert evaluate.parallel_episode_returns(*args, workers=2, clip_actions=False) == evaluate.parallel_episode_returns(*args, workers=1, clip_actions=False)


def test_direct_mujoco_stepping_gives_gymnasiums_returns(monkeypatch):
    w = stacked(make_policy(), 3, jitter=0.05)
    fast = _returns(w, seed=2, min_steps=120, m=2)

    class GymnasiumVecEnv(VecEnv):
        def __init__(self, env_id, num_envs, **kw):
            super().__init__(env_id, num_envs, backend="gymnasium", **kw)

    monkeypatch.setattr(evaluate, "VecEnv", GymnasiumVecEnv)
    assert _returns(w, seed=2, min_steps=120, m=2) == fast


# -- known failure modes of public landscape code ------------------------------------------------
def test_filter_direction_perturbs_log_std_even_at_its_initial_value_zero():
    """perturb_log_std=True must move the log-std also at init (log_std = 0, the paper's init).

    Scaling the log-std part to the norm of the log-std itself gives a zero direction
    there, so the probe would silently leave the log-std unperturbed (while the
    artifact says perturb_log_std=1) at iteration 0 of every agent.
    """
    policy = make_policy(log_std=0.0)
    d = split(policy, random_direction(policy, np.random.default_rng(0), "filter", perturb_log_std=True))
    assert np.linalg.norm(d["log_std"]) > 0


def test_progress_reports_count_every_step_towards_min_steps():
    w = stacked(make_policy(), 2, jitter=0.05)
    reports: list[int] = []
    evaluate.episode_returns(ENV, w, np.zeros(OBS), np.ones(OBS), None, 250, 2, 0, reports.append, clip_actions=False)
    assert len(reports) >= 2 and all(r >= 0 for r in reports)
    assert sum(reports) == 2 * 2 * 250


def test_parallel_progress_bar_gives_the_same_returns(capsys):
    w = stacked(make_policy(), 2, jitter=0.05)
    args = (ENV, w, np.zeros(OBS), np.ones(OBS), None, 150, 2, 3)
    quiet = evaluate.parallel_episode_returns(*args, workers=2, clip_actions=False)
    assert evaluate.parallel_episode_returns(*args, workers=2, progress=True, clip_actions=False) == quiet
    assert "true reward" in capsys.readouterr().err


# -- the landscape on a task with a closed-form return --------------------------------------------
# The one-step bandit of test_gradients with a linear-Gaussian policy: s ~ N(0, I), a ~ N(M s + b, diag sigma^2),
# r = -||a - W s||^2.  z = a - W s ~ N(b, S), S = (M - W)(M - W)^T + diag(sigma^2), so
#     J(theta) = E r = -(tr S + ||b||^2),   Var r = 2 tr(S^2) + 4 b^T S b,
# a closed form at every point of the plane, log-std included.  Episodes last one step: a budget of n pairs is
# exactly n episodes.
from test_gradients import W, bandit_checkpoint  # noqa: E402  (registers the bandit)

from pgprobe.figures import fig5  # noqa: E402
from pgprobe.probes import landscape  # noqa: E402
from pgprobe.probes.api import ProbeAgent, ProbeInputs  # noqa: E402


def closed_form(policy, theta: np.ndarray) -> tuple[float, float]:
    """(J, Var r) at theta for the linear policy on the bandit."""
    p = split(policy, theta)
    d, b = p["mean.0.weight"] - W, p["mean.0.bias"]
    s = d @ d.T + np.diag(np.exp(2 * p["log_std"]))
    return -(np.trace(s) + b @ b), 2 * np.trace(s @ s) + 4 * b @ s @ b


@pytest.fixture(scope="module")
def bandit_inputs(repo_root, tmp_path_factory):
    """A linear TRPO agent trained 2 iterations on the bandit; its checkpoint at t = 1, as a probe's inputs."""
    inputs = ProbeInputs({"checkpoint": bandit_checkpoint(repo_root, tmp_path_factory.mktemp("landscape_bandit"))})
    assert inputs.agent().params_count == 10 and np.linalg.norm(inputs.agent().agent_step) > 0
    return inputs


def bandit_cfg(points: int = 5, budgets=((2048, 8),), crn: bool = False, **kw) -> dict:
    return {"regime": "few", "x": {"min": -0.5, "max": 1.5, "points": points},
            "y": {"min": -1.0, "max": 1.0, "points": points}, "direction_norm": "unit", "perturb_log_std": True,
            "budgets": [{"pairs": p, "envs": e} for p, e in budgets], "crn": crn, "many_samples": 1024, "seed": 0,
            **kw}


def surface(ds: xr.Dataset, agent: ProbeAgent, step: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """J and Var r at every (x, y) of ds, from the plane the artifact records."""
    xs, ys = ds["x"].values, ds["y"].values
    thetas = landscape.plane(agent.theta, step, ds["direction"].values, xs, ys)
    j, var = np.array([closed_form(agent.policy, t) for t in thetas]).T
    return j.reshape(len(xs), len(ys)), var.reshape(len(xs), len(ys))


def test_concentration_surface_matches_the_closed_form_point_by_point(bandit_inputs):
    # Breaks if a point is evaluated at the wrong parameters (plane, direction, step, the log-std left out),
    # if the true reward is not the mean return, or if its standard error is misstated.
    agent = bandit_inputs.agent()
    ds = landscape.concentration(bandit_inputs, bandit_cfg(), progress=False)
    np.testing.assert_array_equal(ds["step"].values, agent.agent_step)  # "few": x = 1 is theta_t+1
    assert np.linalg.norm(ds["direction"].values) == pytest.approx(1.0)
    assert np.all(ds["episodes"].values == 2048) and np.all(ds["pairs"].values == 2048)
    j, var = surface(ds, agent, agent.agent_step)
    assert np.ptp(j) > 20 * np.sqrt(var.max() / 2048)  # the plane is far from flat at this budget
    est, sem = ds["true_reward"].isel(budget=0).values, ds["true_reward_sem"].isel(budget=0).values
    np.testing.assert_allclose(sem, np.sqrt(var / 2048), rtol=0.15)
    z = (est - j) / np.sqrt(var / 2048)
    assert np.abs(z).max() < 4.0, z
    assert 0.4 < np.mean(z**2) < 1.8, z  # independent N(0, 1) over 25 points


def test_fig6_surface_matches_the_closed_form_with_common_random_numbers(bandit_inputs):
    # Breaks if fig 6's plane and true reward disagree with the closed form (common random numbers make the
    # points' errors alike, not biased).
    agent = bandit_inputs.agent()
    cfg = {**bandit_cfg(), "regimes": ["few"], "samples_per_point": 2048, "envs_per_point": 8}
    ds = landscape.run(bandit_inputs, cfg, progress=False)
    j, var = surface(ds, agent, ds["step"].sel(regime="few").values)
    z = (ds["true_reward"].sel(regime="few").values - j) / np.sqrt(var / 2048)
    assert np.abs(z).max() < 4.0, z
    assert np.isfinite(ds["surrogate"].values).all()


def test_noise_shrinks_as_one_over_sqrt_budget(bandit_inputs):
    # Breaks if the budgets share samples or are not the stated size, or if points share samples (fig 5's
    # noise would then not be independent per point): the rms error of the plane against the closed form
    # is sqrt(mean Var / n) at every budget n.  81 points: each rms within ~8% (1 s.d.) of its expectation, their
    # ratios within ~11%; the bounds are about 3 s.d. (probe seeds 0-7: rms/expected 0.81-1.13, ratios 0.79-1.12).
    agent = bandit_inputs.agent()
    budgets = ((16, 1), (128, 4), (1024, 16))
    ds = landscape.concentration(bandit_inputs, bandit_cfg(points=9, budgets=budgets), progress=False)
    j, var = surface(ds, agent, agent.agent_step)
    rms = np.sqrt(((ds["true_reward"] - j) ** 2).mean(["x", "y"]).values)
    expected = np.sqrt(var.mean() / np.array([n for n, _ in budgets]))
    assert np.all((0.7 < rms / expected) & (rms / expected < 1.35)), rms / expected
    ratios = rms[:-1] / rms[1:] / np.sqrt(8)  # budgets 8x apart
    assert np.all((0.65 < ratios) & (ratios < 1.5)), ratios
    # the figure's own summary says the same: its noise measure falls with the budget
    agg = fig5.summarize(ds.expand_dims(["env", "algo", "seed", "iteration"]))
    se = agg["noise_se"].values.ravel() * np.sqrt([n for n, _ in budgets])
    assert np.all((0.7 < se[:-1] / se[1:]) & (se[:-1] / se[1:] < 1.15)), se  # 16 skewed returns' s.d. runs low
    corr = agg["corr_with_largest"].values.ravel()
    assert corr[0] < corr[1] < corr[2] == pytest.approx(1.0)


def test_common_random_numbers_are_a_real_option(bandit_inputs):
    # Breaks if CRN off still shares seeds (fig 5 would hide its noise) or CRN on does not (fig 6 noisier), or if
    # two budgets share samples.
    agent = bandit_inputs.agent()
    same = np.stack([agent.theta, agent.theta])
    on = agent.episodes_at(same, 64, 2, agent.evaluation_seeds(0, 2, crn=True))
    off = agent.episodes_at(same, 64, 2, agent.evaluation_seeds(0, 2, crn=False))
    assert np.array_equal(on[0]["return"], on[1]["return"])
    assert not np.array_equal(off[0]["return"], off[1]["return"])
    budgets = ((32, 1), (64, 2))
    for crn in (False, True):
        seeds = landscape.concentration(bandit_inputs, bandit_cfg(points=3, budgets=budgets, crn=crn),
                                        progress=False)["evaluation_seed"].values.reshape(2, -1)
        assert len(set(seeds[0]) & set(seeds[1])) == 0  # budgets never share a seed
        assert [len(set(s)) for s in seeds] == ([1, 1] if crn else [9, 9])


def test_fig5_renders(bandit_inputs, tmp_path):
    ds = landscape.concentration(bandit_inputs, bandit_cfg(points=3, budgets=((16, 1), (64, 2), (256, 4))),
                                 progress=False)
    combined = xr.concat([ds.expand_dims(["env", "algo", "seed", "iteration"]).assign_coords(iteration=[i])
                          for i in (0, 3)], "iteration")  # two rows
    agg = fig5.summarize(combined.assign_coords(env=["bandit"], algo=["trpo"], seed=[0]))
    fig5.render(agg, str(tmp_path / "fig5.pdf"))
    assert (tmp_path / "fig5.pdf").stat().st_size > 5000
    assert agg.attrs["common_random_numbers"] == 0 and agg.attrs["figure"] == "fig5"
