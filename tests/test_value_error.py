"""The value-error probe (fig 3) on cases with a known answer, on a real smoke checkpoint, and fig 3.

Known answer: a deterministic four-step task (rewards 1, 2, -gamma, 1 whatever the action, then the
episode terminates), so that the realised discounted return at the third step is exactly 0.  With V_old == 0
the agent's GAE target is the (gamma * lambda)-discounted reward to go, and the realised return the
gamma-discounted one; with V == c after the fit every relative error is |c - y| / |y|.

Every test names, in a comment, what breaking it would look like.
"""
from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch

from pgprobe import checkpoint, train
from pgprobe.figures import fig3
from pgprobe.pipeline import artifacts, config
from pgprobe.probes import value_error
from pgprobe.probes.api import ProbeAgent, ProbeInputs

FOUR = "pgprobe/FourSteps-v0"
GAMMA, LAM = 0.99, 0.95
REWARDS = (1.0, 2.0, -GAMMA, 1.0)  # returns to go: 1 + 2 gamma, 2, 0 (exactly), 1
CFG = {"batches": 2, "min_rel_target": 0.01, "seed": 0}


class FourSteps(gym.Env):
    observation_space = gym.spaces.Box(-np.inf, np.inf, (1,), np.float64)
    action_space = gym.spaces.Box(-1.0, 1.0, (1,), np.float64)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        return np.zeros(1), {}

    def step(self, action):
        r = REWARDS[self.t]
        self.t += 1
        return np.full(1, float(self.t)), r, self.t == len(REWARDS), False, {}


if FOUR not in gym.registry:
    gym.register(FOUR, entry_point=FourSteps)


def _agent(repo_root, env, algo, **train_cfg):
    cfg = config.load(repo_root / "params.yaml", [repo_root / "config" / "smoke.yaml"])
    agent = config.agent_config(cfg, env, algo)
    agent["train"].update(train_cfg)
    return agent


# ------------------------------------------------------------------------------ 1. known answers
def test_relative_error_by_hand_and_near_zero_targets():
    # Breaks if the measure is not mean |v - y| / |y| (e.g. squared error over |y|, as the authors' code has for
    # the GAE target), if a zero target is not left out, or the floor is not relative to the mean |y|.
    v = np.array([1.5, 2.0, 0.1, 4.0])
    y = np.array([1.0, 4.0, 0.0, -2.0])  # mean |y| = 1.75: the floor at 0.01 is 0.0175
    mre, left_out, total = value_error.relative_error(v, y, 0.01)
    assert mre == pytest.approx((0.5 / 1 + 2 / 4 + 6 / 2) / 3) and left_out == 0.25
    assert total == pytest.approx((0.5 + 2 + 0.1 + 6) / 7)
    # a target near zero, not zero: one ratio of ~1e5 would swamp the mean; the floor leaves it out
    y[2] = 1e-6
    assert value_error.relative_error(v, y, 0.01)[0] == pytest.approx(4 / 3)
    assert value_error.relative_error(v, y, 0.0)[0] == pytest.approx((4 + (0.1 - 1e-6) / 1e-6) / 4)
    assert np.isnan(value_error.relative_error(v[:0], y[:0], 0.01)).all()


def _discounted(rewards, g):
    out, run = [], 0.0
    for r in reversed(rewards):
        run = r + g * run
        out.append(run)
    return out[::-1]


@pytest.fixture(scope="module")
def four_steps(repo_root, tmp_path_factory):
    """A TRPO agent on FourSteps, 2 envs x 11 steps (two whole episodes and one cut after 3 steps per env),
    its checkpoint at t = 0 with V_old == 0 and V == 1.5 after the fit."""
    tmp = tmp_path_factory.mktemp("four")
    agent = _agent(repo_root, FOUR, "trpo", hidden=[8], num_envs=2, steps_per_iter=22, iterations=1, save_every=1,
                   gamma=GAMMA, gae_lambda=LAM)
    agent["algo_cfg"].update(obs_norm=False, reward_scaling=False, minibatches=2)
    train.run(agent, 0, tmp / "agent", progress=False)
    ckpt = checkpoint.load(checkpoint.make(agent, 0, 0, tmp / "agent", tmp / "t0.nc"))
    ckpt.ds["value_theta"].values[:] = 0.0
    ckpt.ds["value_theta_next"].values[:] = 0.0
    ckpt.ds["value_theta_next"].values[-1] = 1.5  # the output bias: V(s) = 1.5 everywhere
    return ProbeAgent(ckpt)


def test_value_error_known_answer(four_steps):
    # Breaks if the targets are not the agent's V_old + A_GAE and the realised returns within episodes, if V_old
    # is measured instead of V after the fit, if episode-final steps enter, if cut episodes count as complete,
    # or if the time-major pair layout is mixed up.
    pairs = value_error.heldout_pairs(four_steps, CFG["batches"], CFG["seed"])
    per_env = [(REWARDS, True), (REWARDS, True), (REWARDS[:3], False)]  # each env's 11 steps
    gae = np.concatenate([_discounted(r, GAMMA * LAM) for r, _ in per_env])
    ret = np.concatenate([_discounted(r, GAMMA) for r, _ in per_env])
    complete = np.concatenate([[whole] * len(r) for r, whole in per_env])
    mask = np.array([t not in (3, 7) for t in range(11)])  # the two episode-final steps (the cut one is not final)
    np.testing.assert_allclose(pairs["target_gae"][0].reshape(11, 2), np.stack([gae] * 2, 1), rtol=1e-6)
    np.testing.assert_allclose(pairs["target_return"][0].reshape(11, 2), np.stack([ret] * 2, 1), rtol=1e-12)
    assert (pairs["return_complete"][0].reshape(11, 2) == complete[:, None]).all()
    assert (pairs["value_mask"][0].reshape(11, 2) == mask[:, None]).all()
    assert (pairs["value"] == 1.5).all() and (pairs["value_old"] == 0.0).all()

    m = value_error.measures(pairs, CFG["min_rel_target"])
    for i, (y, on) in enumerate([(gae, mask), (ret, mask), (ret, mask & complete)]):
        y = y[on]
        keep = np.abs(y) >= 0.01 * np.abs(y).mean()
        assert m["mre"][i] == pytest.approx(np.mean(np.abs(1.5 - y[keep]) / np.abs(y[keep])), rel=1e-6)
        assert m["mre_before_fit"][i] == pytest.approx(1.0)  # |0 - y| / |y|
        assert m["pairs"][i] == 2 * 2 * on.sum()  # two batches of two envs
    assert m["fraction_near_zero"].tolist() == [0.0, pytest.approx(2 / 9), pytest.approx(2 / 6)]  # the zero returns


# --------------------------------------------------------------- 2-3. a real smoke checkpoint
@pytest.fixture(scope="module")
def walker(repo_root, tmp_path_factory):
    """A small Walker2d PPO agent (observation normalisation, reward scaling), smoke settings; its
    checkpoint at t = 1, replayed from the snapshot at 0."""
    tmp = tmp_path_factory.mktemp("walker")
    agent = _agent(repo_root, "Walker2d-v5", "ppo", hidden=[16], iterations=3, save_every=2)
    assert agent["algo_cfg"]["reward_scaling"] and agent["algo_cfg"]["obs_norm"]
    train.run(agent, 0, tmp / "agent", progress=False)
    return {"path": checkpoint.make(agent, 0, 1, tmp / "agent", tmp / "t1.nc"), "tmp": tmp}


def _state(agent: ProbeAgent) -> dict:
    tr = agent._trainer
    return {"obs_norm": tr.obs_norm.rms.state(), "reward_scaler": tr.reward_scaler.state(),
            "rng": tr.rng.bit_generator.state, "torch_rng": torch.get_rng_state().numpy().copy(),
            "value": [p.detach().clone() for p in tr.value.parameters()],
            "policy": [p.detach().clone() for p in tr.policy.parameters()]}


def _assert_same(a, b):
    assert a["rng"] == b["rng"], "the agent's generator moved"
    np.testing.assert_array_equal(a["torch_rng"], b["torch_rng"])
    for k in ("obs_norm", "reward_scaler"):
        for name in a[k]:
            np.testing.assert_array_equal(a[k][name], b[k][name], err_msg=f"{k}.{name} changed")
    for k in ("value", "policy"):
        assert all(torch.equal(x, y) for x, y in zip(a[k], b[k])), f"{k} network changed"


def test_heldout_batches_update_nothing(walker):
    # Breaks if the held-out rollout updates a normaliser (or the reward scaler's running return), draws from the
    # agent's generator, changes a network, or reuses the agent's own batch; or if a rerun gives other numbers.
    agent = ProbeAgent.load(walker["path"])
    before = _state(agent)
    first = value_error.heldout_pairs(agent, 2, seed=0)
    _assert_same(before, _state(agent))
    again = value_error.heldout_pairs(agent, 2, seed=0)
    for k in value_error.PAIR_VARS:
        np.testing.assert_array_equal(first[k], again[k], err_msg=k)
    n = agent.batch_size
    assert first["value"].shape == (2, n)
    assert not np.array_equal(first["target_gae"][0], first["target_gae"][1])  # two independent batches
    assert not np.array_equal(first["value_old"][0], agent.agent_batch.values_old.numpy())  # not the agent's batch
    assert not np.allclose(first["value"], first["value_old"])  # V after the fit is not V_old


def test_probe_on_a_smoke_checkpoint_writes_the_documented_artifact(walker, tmp_path):
    # Breaks if the artifact lacks a documented variable, dimension or definition attribute, if its measures
    # are not those of its stored pairs, or if fig 3 cannot aggregate and draw it.
    inputs = ProbeInputs({"checkpoint": walker["path"]})
    ds = value_error.run(inputs, CFG, progress=False)
    ds = artifacts.with_agent_coords(ds, *inputs.agent_coords())
    ds.attrs.update(artifacts.provenance("probe_value_error", {"probe": CFG}, "probe", ("pgprobe.probes.value_error",)))
    ds = artifacts.read_nc(artifacts.write_nc(ds, tmp_path / "ve.nc"), kind="probe_value_error")
    assert set(value_error.MEASURE_LABELS) | set(value_error.PAIR_VARS) | {"agent_batch_size"} <= set(ds)
    assert list(ds["target"].values) == list(value_error.TARGETS) and ds.sizes["batch"] == CFG["batches"]
    for key in ("targets", "value_network", "heldout", "pairs_measured", "measure", "near_zero", "reward_units",
                "episode_end", "gamma", "gae_lambda", "min_rel_target"):
        assert key in ds.attrs, key
    assert "reward scaling" in ds.attrs["reward_units"]  # PPO: the scaled rewards it optimises
    assert np.isfinite(ds["mre"].values).all() and (ds["mre"].values > 0).all()
    again = value_error.measures({k: ds[k].values for k in value_error.PAIR_VARS}, CFG["min_rel_target"])
    np.testing.assert_allclose(ds["mre"].values, again["mre"])
    assert ds["pairs"].sel(target="returns_complete") <= ds["pairs"].sel(target="returns")

    agg = fig3.summarize(ds[list(fig3.VARIABLES)].expand_dims(["env", "algo", "seed", "iteration"]))
    assert agg.attrs["measure"] == ds.attrs["measure"] and agg["mre_ci"].dims[-1] == "bound"
    out = tmp_path / "fig3.pdf"
    fig3.render(agg, str(out))
    assert out.read_bytes()[:5] == b"%PDF-"


def test_fig3_band_is_one_standard_error_over_seeds(tmp_path):
    # Breaks if fig 3's band is not mean -/+ one standard error over seeds, or a missing seed is averaged in.
    import xarray as xr
    mre = np.array([[0.2, 0.6], [0.4, np.nan], [0.9, 0.7]])  # (seed, iteration)
    ds = xr.Dataset({v: (("seed", "iteration", "target"), np.repeat(mre[..., None], 3, -1))
                     for v in ("mre", "sum_relative_error", "mre_before_fit", "fraction_near_zero", "pairs")},
                    coords={"seed": [0, 1, 2], "iteration": [0, 10], "target": list(value_error.TARGETS)})
    agg = fig3.summarize(ds.expand_dims(env=["Walker2d-v5"], algo=["ppo"]).assign_attrs(min_rel_target=0.01))
    band = agg["mre_ci"].sel(target="gae").squeeze().values
    se0 = np.std([0.2, 0.4, 0.9], ddof=1) / np.sqrt(3)
    se1 = np.std([0.6, 0.7], ddof=1) / np.sqrt(2)
    np.testing.assert_allclose(band, [[0.5 - se0, 0.5 + se0], [0.65 - se1, 0.65 + se1]])
    fig3.render(agg, str(tmp_path / "f.pdf"))
