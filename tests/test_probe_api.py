"""Checkpoints and the probe API (probes/api.py) against what training actually did.

A checkpoint replays iteration t from the training snapshot at or before t; these tests check that
what it holds is the agent's own iteration (theta_t, theta_t+1, the logged stats, the normalisers
as they were when the agent made its step), and that ProbeAgent's operations (fresh batches, the
algorithm's step, its surrogate and gradient) measure the agent without changing it.

Tiny agents (Hopper-v5, 256 pairs per iteration, one hidden layer of 16) keep each test to seconds.
Every test names, in a comment, what breaking it would look like.
"""
import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch
import xarray as xr

from pgprobe import checkpoint, train
from pgprobe.nets import GaussianPolicy
from pgprobe.pipeline import artifacts, config
from pgprobe.probes import api, landscape
from pgprobe.probes.api import ProbeAgent

ENV = "Hopper-v5"
TINY_TRAIN = {"steps_per_iter": 256, "hidden": [16]}


def _agent(repo_root, algo, iterations, save_every, **algo_cfg):
    cfg = config.load(repo_root / "params.yaml", [repo_root / "config" / "smoke.yaml"])
    agent = config.agent_config(cfg, ENV, algo)
    agent["train"].update(TINY_TRAIN, iterations=iterations, save_every=save_every)
    agent["algo_cfg"].update(algo_cfg)
    return agent


def _snapshot_tree(train_dir, iteration) -> dict:
    path = train.snapshot_path(train_dir, iteration)
    assert path.exists(), f"test setup: no snapshot {path}"
    ds = artifacts.read_nc(path, kind="snapshot")
    return artifacts.dataset_to_tree(ds, prefix="state__")


def _snapshot_policy(tree: dict, agent: dict) -> np.ndarray:
    """The policy in a snapshot as one flat vector, in the parameter order of the policy module."""
    obs_dim, act_dim = len(tree["obs_norm"]["mean"]), len(tree["policy"]["log_std"])
    names = [n for n, _ in GaussianPolicy(obs_dim, act_dim, agent["train"]["hidden"],
                                          agent["algo_cfg"]["init"]).named_parameters()]
    assert set(names) == set(tree["policy"]), "test setup: snapshot policy keys"
    return np.concatenate([np.asarray(tree["policy"][n]).reshape(-1) for n in names])


def _train_nc(train_dir) -> xr.Dataset:
    return artifacts.read_nc(Path(train_dir) / "train.nc", kind="train_log")


# --------------------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def trpo(repo_root, tmp_path_factory):
    """One TRPO agent trained twice: snapshots every 2 (0, 2, 4, 5) and every 1 (0..5).

    Checkpoints: every2 at t=0, 2 (snapshots) and 3 (replayed from snapshot 2); every1 at t=3
    (a snapshot there)."""
    tmp = tmp_path_factory.mktemp("trpo")
    every2 = _agent(repo_root, "trpo", iterations=5, save_every=2)
    every1 = _agent(repo_root, "trpo", iterations=5, save_every=1)
    train.run(every2, 0, tmp / "every2", progress=False)
    train.run(every1, 0, tmp / "every1", progress=False)
    ckpt = {t: checkpoint.make(every2, 0, t, tmp / "every2", tmp / f"every2_t{t}.nc") for t in (0, 2, 3)}
    ckpt["every1_3"] = checkpoint.make(every1, 0, 3, tmp / "every1", tmp / "every1_t3.nc")
    return {"agent": every2, "dir2": tmp / "every2", "dir1": tmp / "every1", "ckpt": ckpt}


@pytest.fixture(scope="module")
def ppo(repo_root, tmp_path_factory):
    """A PPO agent (obs normalisation with clipping, reward scaling, Adam): snapshots at every
    iteration; checkpoints at t=0 and t=1 (Adam state non-empty at t=1)."""
    tmp = tmp_path_factory.mktemp("ppo")
    agent = _agent(repo_root, "ppo", iterations=3, save_every=1)
    assert agent["algo_cfg"]["obs_norm"] and agent["algo_cfg"]["obs_clip"] and agent["algo_cfg"]["reward_scaling"]
    train.run(agent, 1, tmp / "run", progress=False)
    ckpt = {t: checkpoint.make(agent, 1, t, tmp / "run", tmp / f"t{t}.nc") for t in (0, 1)}
    return {"agent": agent, "dir": tmp / "run", "ckpt": ckpt}


# ------------------------------------------------------------------- 1. checkpoint = training
@pytest.mark.parametrize("t", [2, 3])
def test_checkpoint_theta_and_step_are_the_snapshots(trpo, t):
    # Breaks if make() replays from the wrong snapshot or one iteration too many/few (theta_t would be
    # theta_t+-1), or records theta after the update as theta (theta == theta_next).
    ds = artifacts.read_nc(trpo["ckpt"][t], kind="checkpoint")
    agent = trpo["agent"]
    # theta_t: snapshot t of whichever run has one (every2 at t=2; every1 at t=3)
    snap_dir = trpo["dir2"] if t % 2 == 0 else trpo["dir1"]
    np.testing.assert_array_equal(ds["theta"].values, _snapshot_policy(_snapshot_tree(snap_dir, t), agent),
                                  err_msg=f"checkpoint theta != policy of snapshot {t}")
    next_dir = trpo["dir2"] if (t + 1) % 2 == 0 else trpo["dir1"]
    np.testing.assert_array_equal(ds["theta_next"].values,
                                  _snapshot_policy(_snapshot_tree(next_dir, t + 1), agent),
                                  err_msg=f"checkpoint theta_next != policy of snapshot {t + 1}")
    assert not np.array_equal(ds["theta"].values, ds["theta_next"].values)


@pytest.mark.parametrize("t", [0, 2, 3])
def test_checkpoint_log_stats_are_train_nc_row_t(trpo, t):
    # Breaks if the checkpoint logs another iteration's stats (replay off by one), drops a LOG_VAR,
    # or its episode returns are not the batch the agent logged.
    ds = artifacts.read_nc(trpo["ckpt"][t], kind="checkpoint")
    log = _train_nc(trpo["dir2"])
    for name in train.LOG_VARS:
        assert f"log_{name}" in ds, f"checkpoint lacks log_{name}"
        np.testing.assert_array_equal(float(ds[f"log_{name}"]), float(log[name][t]),
                                      err_msg=f"log_{name} != train.nc {name}[{t}]")
    returns = ds["episode_return"].values
    assert len(returns) == int(log["episodes"][t])
    np.testing.assert_allclose(returns.mean(), float(log["return_mean"][t]), rtol=1e-12)
    assert int(ds.coords["iteration"]) == t


def test_replayed_checkpoint_equals_one_made_at_a_snapshot(trpo):
    # Breaks if replaying from an earlier snapshot does not reproduce the iteration exactly (an
    # rng, optimiser or normaliser not restored/advanced the same way as in uninterrupted training).
    a = artifacts.read_nc(trpo["ckpt"][3], kind="checkpoint")          # replayed from snapshot 2
    b = artifacts.read_nc(trpo["ckpt"]["every1_3"], kind="checkpoint")  # snapshot 3 exists
    assert set(a.variables) == set(b.variables)
    for name in a.variables:
        np.testing.assert_array_equal(a[name].values, b[name].values, err_msg=name)
    # and the two trainings are the same numbers (save_every only changes where snapshots are)
    la, lb = _train_nc(trpo["dir2"]), _train_nc(trpo["dir1"])
    for name in train.LOG_VARS:
        np.testing.assert_array_equal(la[name].values, lb[name].values, err_msg=name)


# ------------------------------------------------------- 2. Defect 1: normalisers when it stepped
def _check_normalisers_after_rollout(ckpt_path, train_dir, t):
    ds = artifacts.read_nc(ckpt_path, kind="checkpoint")
    after = _snapshot_tree(train_dir, t + 1)       # state at the start of t+1 = after t's rollout
    np.testing.assert_array_equal(ds["obs_mean"].values, after["obs_norm"]["mean"],
                                  err_msg="obs_mean is not the normaliser after iteration t's rollout")
    np.testing.assert_array_equal(ds["obs_var"].values, after["obs_norm"]["var"],
                                  err_msg="obs_var is not the normaliser after iteration t's rollout")
    assert float(ds["obs_count"]) == float(after["obs_norm"]["count"])
    assert float(ds["reward_var"]) == float(after["reward_scaler"]["var"])
    assert float(ds["reward_count"]) == float(after["reward_scaler"]["count"])
    return ds


@pytest.mark.parametrize("algo_t", [("ppo", 0), ("ppo", 1), ("trpo", 3)])
def test_checkpoint_normalisers_are_those_after_the_rollout(trpo, ppo, algo_t):
    # Breaks if the checkpoint stores the normalisers of snapshot t (before the rollout) or of the
    # trainer after the update, or (TRPO t=3, replayed) if replay does not re-run the rollout's updates.
    algo, t = algo_t
    if algo == "ppo":
        ds = _check_normalisers_after_rollout(ppo["ckpt"][t], ppo["dir"], t)
        before = _snapshot_tree(ppo["dir"], t)
    else:
        ds = _check_normalisers_after_rollout(trpo["ckpt"][t], trpo["dir2"], t)
        before = _snapshot_tree(trpo["dir1"], t)
    assert not np.array_equal(ds["obs_mean"].values, before["obs_norm"]["mean"]), \
        "checkpoint obs_mean equals snapshot t's (before the rollout)"
    assert float(ds["obs_count"]) == pytest.approx(float(before["obs_norm"]["count"]) + 256)
    if algo == "ppo":   # reward scaling on: the rollout moved it too
        assert float(ds["reward_count"]) > float(before["reward_scaler"]["count"])
    if t == 0:
        assert not np.allclose(ds["obs_mean"].values, 0.0), "obs_mean at t=0 is the identity's 0"
        assert not np.allclose(ds["obs_var"].values, 1.0), "obs_var at t=0 is the identity's 1"
        assert float(ds["reward_var"]) != 1.0


def test_probe_agent_loads_the_frozen_normalisers(ppo):
    # Breaks if Checkpoint.trainer() leaves the normalisers fresh (identity) or loads other values.
    ds = artifacts.read_nc(ppo["ckpt"][1], kind="checkpoint")
    agent = ProbeAgent.load(ppo["ckpt"][1])
    rms = agent._trainer.obs_norm.rms
    np.testing.assert_array_equal(rms.mean, ds["obs_mean"].values)
    np.testing.assert_array_equal(rms.var, ds["obs_var"].values)
    assert rms.count == float(ds["obs_count"])
    assert agent._trainer.reward_scaler.rms.var == float(ds["reward_var"])
    mean, std, clip = agent.observation_transform()
    np.testing.assert_array_equal(mean, ds["obs_mean"].values)
    np.testing.assert_allclose(std, np.sqrt(ds["obs_var"].values + 1e-8), rtol=1e-15)
    assert clip == ppo["agent"]["algo_cfg"]["obs_clip"]


# ----------------------------------------------------------- 3. Defect 2: probe rollouts update nothing
class _RecordingVecEnv(api.VecEnv):
    """Records the raw observations the policy is shown: after the reset, then after every step."""

    def __init__(self, *a, **kw):
        super().__init__(*a, **kw)
        self.raw = []
        _RecordingVecEnv.last = self

    def reset(self, rng):
        out = super().reset(rng)
        self.raw.append(self.obs.copy())
        return out

    def step(self, actions, rng):
        out = super().step(actions, rng)
        self.raw.append(out["obs"].copy())
        return out


def _norm_state(agent):
    tr = agent._trainer
    return (tr.obs_norm.rms.state(), tr.reward_scaler.state())


def _assert_same_state(a, b, what):
    for x, y in zip(a, b):
        assert set(x) == set(y)
        for k in x:
            np.testing.assert_array_equal(x[k], y[k], err_msg=f"{what}: {k} changed")


def test_collect_updates_no_normaliser_and_uses_the_frozen_statistics(ppo, monkeypatch):
    # Breaks if ProbeAgent.collect lets the rollout update the observation normaliser or the reward
    # scaler (update_stats=True), or normalises with other statistics than the checkpoint's.
    ds = artifacts.read_nc(ppo["ckpt"][1], kind="checkpoint")
    agent = ProbeAgent.load(ppo["ckpt"][1])
    before = _norm_state(agent)
    monkeypatch.setattr(api, "VecEnv", _RecordingVecEnv)
    n = 300
    data = agent.collect(n, seed=5)
    _assert_same_state(before, _norm_state(agent), "collect changed the agent's normalisers")
    np.testing.assert_array_equal(agent._trainer.obs_norm.rms.mean, ds["obs_mean"].values)
    np.testing.assert_array_equal(agent._trainer.obs_norm.rms.var, ds["obs_var"].values)

    venv = _RecordingVecEnv.last
    assert agent.num_envs == 1 and data.n == n
    raw = np.concatenate(venv.raw[:n])                # the T observations the policy acted on
    clip = ppo["agent"]["algo_cfg"]["obs_clip"]
    expected = np.clip((raw - ds["obs_mean"].values) / np.sqrt(ds["obs_var"].values + 1e-8), -clip, clip)
    np.testing.assert_allclose(data.obs.numpy(), expected, rtol=1e-6, atol=1e-6,
                               err_msg="probe batch not normalised with the frozen statistics")
    # a second collect with the same seed: the same batch (nothing carried over)
    again = agent.collect(n, seed=5)
    for field in ("obs", "actions", "logp_old", "advantages", "raw_advantages", "returns"):
        np.testing.assert_array_equal(getattr(data, field).numpy(), getattr(again, field).numpy(), err_msg=field)
    _assert_same_state(before, _norm_state(agent), "second collect changed the agent's normalisers")


# ---------------------------------------------------------------- 4. surrogate = logged surrogate
@pytest.mark.parametrize("t", [0, 3])
def test_trpo_surrogate_at_x0_and_x1_is_the_logged_one(trpo, t):
    # Breaks if ProbeAgent.surrogate is not TRPO's objective on the agent's batch (e.g. raw instead
    # of normalised advantages, another batch, a clipped ratio) or agent_step is not theta_t+1 - theta_t.
    agent = ProbeAgent.load(trpo["ckpt"][t])
    log = _train_nc(trpo["dir2"])
    s = agent.surrogate(agent.agent_batch, np.stack([agent.theta, agent.theta + agent.agent_step]))
    logged = np.array([float(log["surrogate_before"][t]), float(log["surrogate_after"][t])])
    # surrogate_before is the mean of normalised advantages (~1e-9): an absolute floor of 1e-7 x the
    # advantage scale stands in for the relative tolerance there
    scale = float(agent.agent_batch.advantages.abs().mean())
    np.testing.assert_allclose(s, logged, rtol=1e-5, atol=1e-7 * scale)
    assert abs(s[1] - s[0]) > 1e-3 * scale     # the step moved the surrogate (not a vacuous check)


def test_surrogate_of_one_theta_is_one_value(trpo):
    # surrogate() takes (K, P) and calls np.atleast_2d, so one flat theta (P,) should give one value.
    # Breaks (today) because the output is allocated as np.empty(len(thetas)) BEFORE atleast_2d:
    # a (P,) theta gives P values, the first computed and the rest uninitialised memory.
    agent = ProbeAgent.load(trpo["ckpt"][3])
    one = agent.surrogate(agent.agent_batch, agent.theta)
    assert one.shape == (1,), ("BUG probes/api.py ProbeAgent.surrogate: a single (P,) theta returns an array "
                               f"of shape {one.shape} (len(thetas) taken before np.atleast_2d; the rest is "
                               "uninitialised np.empty memory)")
    np.testing.assert_array_equal(one, agent.surrogate(agent.agent_batch, agent.theta[None]))


# ------------------------------------------------------------------------- 5. algorithm_step
def _opt_state(agent):
    return {id_: {k: v.clone() if torch.is_tensor(v) else v for k, v in st.items()}
            for id_, st in enumerate(agent._trainer.policy_opt.state.values())}


def _assert_agent_unchanged(agent, theta, policy_flat, opt_state, what):
    np.testing.assert_array_equal(agent.theta, theta, err_msg=f"{what} changed ProbeAgent.theta")
    np.testing.assert_array_equal(api.flat_params(agent.policy).numpy(), policy_flat,
                                  err_msg=f"{what} changed the agent's policy")
    now = _opt_state(agent)
    assert now.keys() == opt_state.keys()
    for i in opt_state:
        for k in opt_state[i]:
            np.testing.assert_array_equal(np.asarray(now[i][k]), np.asarray(opt_state[i][k]),
                                          err_msg=f"{what} changed the agent's optimiser state ({k})")


def test_trpo_algorithm_step_respects_the_trust_region_and_follows_the_agents_step(trpo):
    # Breaks if algorithm_step ignores max_kl (no scaling / no line search), steps in another
    # direction (another batch or gradient sign), or changes the agent it is called on.
    # The Fisher matrix is estimated on a random fisher_frac = 0.1 of the 256 pairs (26 states for 246
    # parameters), so two natural steps with different subsamples agree only roughly: measured cosines
    # 0.5-0.8 between the probe's and the agent's step, and as low between two probe steps of other
    # seeds.  Hence cos > 0.3 here; the exact comparison is the fisher_frac = 1 test below.
    agent = ProbeAgent.load(trpo["ckpt"][3])
    theta, policy_flat, opt_state = agent.theta.copy(), api.flat_params(agent.policy).numpy(), _opt_state(agent)
    max_kl = agent.agent["algo_cfg"]["max_kl"]
    step, extra = agent.algorithm_step(agent.agent_batch, seed=4)
    assert extra["step_fraction"] > 0 and agent.step_fraction > 0
    assert np.linalg.norm(step) > 0
    kl = agent.mean_kl(agent.agent_batch, agent.theta + step)
    assert 0 < kl <= max_kl + 1e-6, (kl, max_kl)
    cos = step @ agent.agent_step / (np.linalg.norm(step) * np.linalg.norm(agent.agent_step))
    assert cos > 0.3, cos
    _assert_agent_unchanged(agent, theta, policy_flat, opt_state, "TRPO algorithm_step")
    again, _ = agent.algorithm_step(agent.agent_batch, seed=4)
    np.testing.assert_array_equal(again, step, err_msg="algorithm_step with the same seed gave another step")


def test_trpo_algorithm_step_with_the_full_fisher_is_the_agents_step(repo_root, tmp_path):
    # With fisher_frac = 1 the Fisher subsample is the whole batch whatever the rng, so the probe's
    # step from theta_t on the agent's batch must be the agent's own step (cosine > 0.9 as asked; in
    # fact equal to float32 precision).  Breaks if algorithm_step starts from another theta, uses
    # another batch, other hyperparameters (max_kl, damping) or another line search.
    cfg = _agent(repo_root, "trpo", iterations=2, save_every=2, fisher_frac=1.0)
    train.run(cfg, 0, tmp_path / "run", progress=False)
    agent = ProbeAgent.load(checkpoint.make(cfg, 0, 1, tmp_path / "run", tmp_path / "ckpt.nc"))
    step, extra = agent.algorithm_step(agent.agent_batch, seed=9)
    assert extra["step_fraction"] == agent.step_fraction > 0
    cos = step @ agent.agent_step / (np.linalg.norm(step) * np.linalg.norm(agent.agent_step))
    assert cos > 0.9, cos
    np.testing.assert_allclose(step, agent.agent_step, rtol=1e-4, atol=1e-6 * np.abs(agent.agent_step).max())
    np.testing.assert_allclose(extra["full_step"], agent.proposed_step, rtol=1e-4,
                               atol=1e-6 * np.abs(agent.proposed_step).max())
    kl = agent.mean_kl(agent.agent_batch, agent.theta + step)
    assert kl <= agent.agent["algo_cfg"]["max_kl"] + 1e-6
    np.testing.assert_allclose(kl, float(agent._ckpt.ds["log_kl_mean"]), rtol=1e-4)


def test_ppo_algorithm_step_improves_the_objective_and_changes_nothing(ppo):
    # Breaks if algorithm_step takes no step, a step that lowers PPO's objective (e.g. gradient
    # ascent on the loss), or shares state with the agent: a second call with the same seed must give
    # the same step, and the agent's policy and Adam state (non-empty at t=1) must be untouched.
    agent = ProbeAgent.load(ppo["ckpt"][1])
    assert agent._trainer.policy_opt.state, "test setup: Adam state should be non-empty at t=1"
    theta, policy_flat, opt_state = agent.theta.copy(), api.flat_params(agent.policy).numpy(), _opt_state(agent)
    step, _ = agent.algorithm_step(agent.agent_batch, seed=4)
    assert np.linalg.norm(step) > 0
    s0, s1 = agent.surrogate(agent.agent_batch, np.stack([agent.theta, agent.theta + step]))
    assert s1 > s0, (s0, s1)
    # the step from theta_t on the agent's own batch, same lr and Adam state: close to the agent's step
    cos = step @ agent.agent_step / (np.linalg.norm(step) * np.linalg.norm(agent.agent_step))
    assert cos > 0.5, cos
    _assert_agent_unchanged(agent, theta, policy_flat, opt_state,
                            "BUG (probes/api.py algorithm_step: torch's Optimizer.load_state_dict shares the "
                            "state tensors, so Adam's in-place updates reach the agent's own optimiser): "
                            "PPO algorithm_step")
    again, _ = agent.algorithm_step(agent.agent_batch, seed=4)
    np.testing.assert_allclose(again, step, rtol=0, atol=1e-7,
                               err_msg="BUG: a second algorithm_step with the same seed gives another step "
                                       "(the first one changed the agent's Adam state)")


# ------------------------------------------------------------------------- 6. surrogate_grad
@pytest.mark.parametrize("which", ["trpo", "ppo"])
def test_surrogate_grad_matches_finite_differences(trpo, ppo, which):
    # Breaks if surrogate_grad differentiates something else than surrogate() (another objective,
    # sign, batch), leaves out the log-std, or lays parameters out in another order.
    agent = ProbeAgent.load(trpo["ckpt"][3] if which == "trpo" else ppo["ckpt"][1])
    data = agent.agent_batch
    g = agent.surrogate_grad(data)
    assert g.shape == (agent.params_count,) and g.dtype == np.float64
    names = [(n, p.numel()) for n, p in agent.policy.named_parameters()]
    assert sum(k for _, k in names) == agent.params_count
    log_std = np.zeros(agent.params_count, bool)
    i = 0
    for n, k in names:
        log_std[i:i + k] = n == "log_std"
        i += k
    assert log_std.sum() == 3 and np.any(g[log_std] != 0), "no log-std entries in the gradient"
    rng = np.random.default_rng(0)
    dirs = [d / np.linalg.norm(d) for d in rng.standard_normal((3, agent.params_count))]
    ls = np.where(log_std, 1.0, 0.0)
    dirs.append(ls / np.linalg.norm(ls))                     # the log-std block alone
    eps = 1e-3
    for d in dirs:
        f_plus, f_minus = agent.surrogate(data, np.stack([agent.theta + eps * d, agent.theta - eps * d]))
        fd = (f_plus - f_minus) / (2 * eps)
        assert abs(fd - g @ d) <= 5e-2 * abs(g @ d) + 1e-3 * np.linalg.norm(g), (fd, g @ d)
    # at another theta too
    other = agent.theta + 0.05 * dirs[0]
    g2 = agent.surrogate_grad(data, other)
    d = dirs[1]
    f_plus, f_minus = agent.surrogate(data, np.stack([other + eps * d, other - eps * d]))
    assert abs((f_plus - f_minus) / (2 * eps) - g2 @ d) <= 5e-2 * abs(g2 @ d) + 1e-3 * np.linalg.norm(g2)


# ----------------------------------------------------------------- 7. Defect 8: rejected TRPO step
def test_rejected_trpo_step_is_zero_and_the_proposed_step_is_kept(repo_root, tmp_path):
    # Breaks if a rejected line search leaves the policy at a partial step, if the proposed step is
    # not stored, or if the landscape's "few" regime plots the (zero) accepted step instead.
    agent_cfg = _agent(repo_root, "trpo", iterations=1, save_every=1, accept_ratio=1e9)
    train.run(agent_cfg, 0, tmp_path / "run", progress=False)
    path = checkpoint.make(agent_cfg, 0, 0, tmp_path / "run", tmp_path / "ckpt.nc")
    ds = artifacts.read_nc(path, kind="checkpoint")
    assert float(ds["log_step_fraction"]) == 0.0
    np.testing.assert_array_equal(ds["theta_next"].values, ds["theta"].values)
    assert "proposed_step" in ds and ds["proposed_step"].dims == ("param",)
    assert np.linalg.norm(ds["proposed_step"].values) > 0
    agent = ProbeAgent.load(path)
    assert np.all(agent.agent_step == 0)
    cfg = config.load(repo_root / "params.yaml", [repo_root / "config" / "smoke.yaml"])["probes"]["landscape"]
    step, data, rejected = landscape.regime_step(agent, "few", cfg)
    assert rejected is True or rejected == np.True_
    np.testing.assert_array_equal(step, ds["proposed_step"].values.astype(np.float64))
    assert data is agent.agent_batch


def test_accepted_trpo_step_is_not_flagged_rejected(trpo):
    # Breaks if regime_step flags every TRPO step (it has a proposed_step) as rejected.
    agent = ProbeAgent.load(trpo["ckpt"][3])
    assert agent.proposed_step is not None and agent.step_fraction > 0
    step, _, rejected = landscape.regime_step(agent, "few", {})
    assert not rejected
    np.testing.assert_array_equal(step, agent.agent_step)


# ---------------------------------------------------------------------------- 8. named dims
@pytest.mark.parametrize("which", ["trpo3", "ppo1"])
def test_checkpoint_dims_are_named_and_agent_coords_scalar(trpo, ppo, which):
    # Breaks if a variable is written through tree_to_dataset (dims "<name>_d0"), or the agent
    # coordinates are attrs instead of scalar coords.
    path = trpo["ckpt"][3] if which == "trpo3" else ppo["ckpt"][1]
    ds = artifacts.read_nc(path, kind="checkpoint")
    assert set(ds.dims) == {"param", "value_param", "pair", "obs_dim", "act_dim", "episode"}, dict(ds.sizes)
    assert "obs" in ds.data_vars  # not a dimension coordinate (a variable named like its dimension would be)
    assert not [d for v in ds.variables.values() for d in v.dims if re.search(r"_d\d+$", d)]
    expected = {"theta": ("param",), "theta_next": ("param",), "value_theta": ("value_param",),
                "value_theta_next": ("value_param",), "obs_mean": ("obs_dim",), "obs_var": ("obs_dim",),
                "obs": ("pair", "obs_dim"), "actions": ("pair", "act_dim"), "mean_old": ("pair", "act_dim"),
                "log_std_old": ("pair", "act_dim"), "logp_old": ("pair",), "advantages": ("pair",),
                "episode_return": ("episode",), "policy_opt_exp_avg": ("param",),
                "value_opt_exp_avg": ("value_param",)}
    if which == "trpo3":    # TRPO never steps its policy optimiser: no Adam moments stored
        assert int(ds["policy_opt_step"]) == 0 and "policy_opt_exp_avg" not in ds
        del expected["policy_opt_exp_avg"]
    for name, dims in expected.items():
        assert ds[name].dims == dims, (name, ds[name].dims)
    a = json.loads(ds.attrs["params"])
    t = 3 if which == "trpo3" else 1
    for name, value in (("env", ENV), ("algo", a["algo"]), ("seed", a["seed"]), ("iteration", t)):
        assert name in ds.coords and ds.coords[name].ndim == 0, name
        assert ds.coords[name].values.item() == value, name
    assert ds.sizes["pair"] == 256 and ds.sizes["act_dim"] == 3 and ds.sizes["obs_dim"] == 11


def test_prepare_with_another_baseline_on_the_same_samples(trpo):
    """Fig 4's estimators on one batch: V_t (the agent's), no baseline (V = 0, lambda = 1: the discounted
    return to the batch end), each a probe's choice through the API."""
    agent = ProbeAgent.load(trpo["ckpt"][2])
    batch = agent.collect_batch(256, seed=5)
    own = agent.prepare(batch, norm_adv=False)
    torch.testing.assert_close(own.raw_advantages, agent.collect(256, seed=5, norm_adv=False).raw_advantages)
    none = agent.prepare(batch, norm_adv=False, value=lambda obs: torch.zeros(obs.shape[0]), lam=1.0)
    assert not torch.allclose(none.raw_advantages, own.raw_advantages)
    # with V = 0 and lambda = 1 the advantage is the discounted sum of rewards until the episode ends
    r, ended = batch.train_rewards[:, 0], ~batch.continues[:, 0]
    g, expected = 0.0, np.zeros(len(r))
    for t in reversed(range(len(r))):
        g = r[t] + agent.gamma * (0.0 if ended[t] else g)
        expected[t] = g
    np.testing.assert_allclose(none.raw_advantages.numpy().reshape(len(r), -1)[:, 0], expected, rtol=1e-5, atol=1e-5)
