"""The authors' choices that modern PPO code makes differently, each a switch defaulting to theirs
(MadryLab/implementation-matters): raw actions to the env, value targets with truncation terminal
and episode-final steps out of the value loss."""
import copy

import gymnasium as gym
import numpy as np
import pytest
import torch

from pgprobe.algos import common
from pgprobe.envs import VecEnv
from pgprobe.nets import GaussianPolicy, ObsNormalizer, PolicyWeights, RewardScaler, ValueNet
from pgprobe.rollout import collect


def test_env_gets_raw_actions_and_charges_control_cost_on_them():
    """Hopper's control cost is charged on the action the env is given: raw by default."""
    big = np.full((1, 3), 3.0)  # far outside the action space [-1, 1]
    rewards = {}
    for clip in (False, True):
        venv = VecEnv("Hopper-v5", 1, clip_actions=clip)
        venv.reset_one(0, 7)
        rewards[clip] = venv.step(big, np.random.default_rng(0))["reward"][0]
        venv.close()
    ref = gym.make("Hopper-v5")
    ref.reset(seed=7)
    raw_reward = ref.step(big[0].astype(np.float32))[1]
    ref.reset(seed=7)
    clipped_reward = ref.step(np.ones(3, np.float32))[1]
    ref.close()
    assert rewards[False] == raw_reward
    assert rewards[True] == clipped_reward
    # ctrl cost weight 1e-3: 3 * (9 - 1) * 1e-3 lower with raw actions, up to the (clamped, equal) physics
    assert rewards[False] - rewards[True] == pytest.approx(-0.024, abs=1e-9)


@pytest.fixture(scope="module")
def truncated_batch():
    """HalfCheetah never terminates: with a 5-step limit every episode ends by truncation."""
    venv = VecEnv("HalfCheetah-v5", 2)
    venv.max_steps = 5
    rng = np.random.default_rng(0)
    venv.reset(rng)
    torch.manual_seed(0)
    policy = GaussianPolicy(venv.obs_dim, venv.act_dim, [8], "orthogonal")
    value = ValueNet(venv.obs_dim, [8], "orthogonal")
    batch = collect(venv, PolicyWeights.from_policy(policy), ObsNormalizer(venv.obs_dim, False, None),
                    RewardScaler(2, 0.99, False, None), rng, 12)
    venv.close()
    return batch, policy, value


def test_truncation_is_terminal_for_value_targets_by_default(truncated_batch):
    batch, policy, value = truncated_batch
    assert batch.done[4].all() and batch.done[9].all() and not batch.terminated.any()
    auth = common.prepare(batch, policy, value, 0.99, 0.95, norm_adv=False)
    boot = common.prepare(batch, policy, value, 0.99, 0.95, norm_adv=False, bootstrap_truncation=True)
    with torch.no_grad():
        v = value(torch.as_tensor(batch.obs[4], dtype=torch.float32)).double().numpy()
        v_next = value(torch.as_tensor(batch.next_obs[4], dtype=torch.float32)).double().numpy()
    r = batch.train_rewards[4]
    n = batch.obs.shape[1]
    np.testing.assert_allclose(auth.raw_advantages.numpy()[4 * n:5 * n], r - v, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(boot.raw_advantages.numpy()[4 * n:5 * n], r + 0.99 * v_next - v, rtol=1e-5, atol=1e-5)
    # the batch end (t = 11, mid-episode) bootstraps in both
    np.testing.assert_allclose(auth.raw_advantages.numpy()[-n:], boot.raw_advantages.numpy()[-n:])


def test_episode_final_steps_stay_out_of_the_value_loss(truncated_batch):
    batch, policy, value = truncated_batch
    data = common.prepare(batch, policy, value, 0.99, 0.95, norm_adv=False)
    done = batch.done.reshape(-1)
    assert done.sum() == 4 and torch.equal(data.value_mask, torch.as_tensor(~done))
    assert common.prepare(batch, policy, value, 0.99, 0.95, False, fit_done_steps=True).value_mask.all()
    cfg = {"value_epochs": 3, "minibatches": 2, "value_clip": False, "value_clip_eps": 0.2, "max_grad_norm": None}
    poisoned = copy.copy(data)
    poisoned.returns = data.returns.clone()
    poisoned.returns[torch.as_tensor(done)] = 1e6  # targets of the excluded steps cannot matter
    fitted = []
    for d in (data, poisoned):
        v = copy.deepcopy(value)
        opt = torch.optim.Adam(v.parameters(), lr=1e-3)
        common.fit_value(v, opt, d, cfg, np.random.default_rng(3))
        fitted.append(torch.cat([p.detach().reshape(-1) for p in v.parameters()]))
    torch.testing.assert_close(fitted[0], fitted[1], rtol=0, atol=0)
