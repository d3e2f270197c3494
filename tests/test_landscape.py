"""Unit tests of the landscape probe's pieces: random directions and the batched true-reward evaluation."""
from __future__ import annotations

import numpy as np
import pytest
import torch

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
