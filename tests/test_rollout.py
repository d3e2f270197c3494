"""GAE against a hand-written recursion; batched collection on real MuJoCo physics."""
import gymnasium as gym
import numpy as np
import pytest
import torch

from pgprobe.envs import VecEnv
from pgprobe.nets import GaussianPolicy, ObsNormalizer, PolicyWeights, RewardScaler
from pgprobe.rollout import collect, gae


# --------------------------------------------------------------------------- GAE
def test_gae_hand_computed():
    """T=4, N=2; gamma 0.9, lambda 0.8 (gamma*lambda = 0.72).

    env 0: terminates at t=1 (next value must be 0, garbage next_values[1] ignored),
           a new episode runs t=2..3 and is cut by the batch end (bootstrap 3.0).
    env 1: truncated at t=2 (bootstrap with the value of the true final obs, 10.0),
           a new episode at t=3 is cut by the batch end (bootstrap -2.0).
    """
    gamma, lam = 0.9, 0.8
    rewards = np.array([[1.0, 0.0], [2.0, -1.0], [3.0, 5.0], [4.0, 1.0]])
    values = np.array([[0.5, 1.0], [1.0, 2.0], [-0.5, 3.0], [2.0, 4.0]])
    next_values = np.array([[1.0, 2.0], [7.0, 3.0], [2.0, 10.0], [3.0, -2.0]])
    terminated = np.array([[False, False], [True, False], [False, False], [False, False]])
    continues = np.array([[True, True], [False, True], [True, False], [False, False]])

    # env 0, by hand:
    #   d0 = 1 + .9*1.0 - .5 = 1.4     d1 = 2 + .9*0 - 1.0 = 1.0 (terminated)
    #   d2 = 3 + .9*2.0 + .5 = 5.3     d3 = 4 + .9*3.0 - 2.0 = 4.7
    #   A3 = 4.7; A2 = 5.3 + .72*4.7 = 8.684; A1 = 1.0 (cut); A0 = 1.4 + .72*1.0 = 2.12
    # env 1, by hand:
    #   d0 = 0 + .9*2 - 1 = 0.8        d1 = -1 + .9*3 - 2 = -0.3
    #   d2 = 5 + .9*10 - 3 = 11.0      d3 = 1 + .9*(-2) - 4 = -4.8
    #   A3 = -4.8; A2 = 11.0 (cut); A1 = -0.3 + .72*11 = 7.62; A0 = 0.8 + .72*7.62 = 6.2864
    expected = np.array([[2.12, 6.2864], [1.0, 7.62], [8.684, 11.0], [4.7, -4.8]])
    adv, ret = gae(rewards, values, next_values, terminated, continues, gamma, lam)
    np.testing.assert_allclose(adv, expected, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(ret, expected + values, rtol=1e-12, atol=1e-12)


def test_gae_lambda_one_is_discounted_return_minus_value():
    """lambda = 1, one terminated episode: A_t = sum_k gamma^k r_{t+k} - V(s_t)."""
    rng = np.random.default_rng(0)
    T, gamma = 6, 0.95
    r, v = rng.standard_normal((T, 1)), rng.standard_normal((T, 1))
    nv = np.vstack([v[1:], [[123.0]]])   # last next value is ignored: the episode terminates
    term = np.zeros((T, 1), bool)
    term[-1] = True
    cont = ~term
    adv, _ = gae(r, v, nv, term, cont, gamma, 1.0)
    for t in range(T):
        disc = sum(gamma ** k * r[t + k, 0] for k in range(T - t))
        assert adv[t, 0] == pytest.approx(disc - v[t, 0], rel=1e-12, abs=1e-12)


def test_gae_lambda_zero_is_td_error():
    rng = np.random.default_rng(1)
    r, v, nv = rng.standard_normal((5, 3)), rng.standard_normal((5, 3)), rng.standard_normal((5, 3))
    term = rng.random((5, 3)) < 0.3
    cont = ~term
    cont[-1] = False
    adv, _ = gae(r, v, nv, term, cont, 0.99, 0.0)
    np.testing.assert_allclose(adv, r + 0.99 * np.where(term, 0.0, nv) - v, rtol=1e-12)


# --------------------------------------------------------------------------- collect
def _policy(obs_dim, act_dim, seed=0, log_std=0.0):
    torch.manual_seed(seed)
    return GaussianPolicy(obs_dim, act_dim, [16, 16], "orthogonal", init_log_std=log_std)


def _replay(env_id, qpos, qvel, actions, max_steps):
    """Step gymnasium's own (wrapped, time-limited) env from a given state with the given raw actions
    (VecEnv's default, as the authors' code: no clipping to the action space)."""
    env = gym.make(env_id, max_episode_steps=max_steps)
    env.reset(seed=0)
    env.unwrapped.set_state(qpos, qvel)
    out = []
    for a in actions:
        obs, r, term, trunc, _ = env.step(a.astype(np.float32))
        out.append((obs.astype(np.float64), r, term, trunc))
        if term or trunc:
            break
    env.close()
    return out


def _episodes(batch, n):
    """Split each env's reward column into episodes at ended steps (t < T-1); in VecEnv order."""
    T = batch.rewards.shape[0]
    found = []   # (end t, env, return, length)
    for i in range(n):
        start = 0
        for t in range(T - 1):
            if not batch.continues[t, i]:
                found.append((t, i, batch.rewards[start:t + 1, i].sum(), t + 1 - start))
                start = t + 1
    found.sort()
    return found


@pytest.fixture(scope="module")
def hopper_batch():
    venv = VecEnv("Hopper-v5", 2)
    rng = np.random.default_rng(0)
    venv.reset(rng)
    start = [(d.qpos.copy(), d.qvel.copy()) for d in venv.stepper.datas]
    pol = _policy(venv.obs_dim, venv.act_dim)
    norm = ObsNormalizer(venv.obs_dim, enabled=False, clip=None)
    scaler = RewardScaler(2, 0.99, enabled=False, clip=None)
    batch = collect(venv, PolicyWeights.from_policy(pol), norm, scaler, rng, 150)
    yield venv, batch, start
    venv.close()


def test_collect_shapes_and_flags(hopper_batch):
    venv, batch, _ = hopper_batch
    T, N = 150, 2
    assert batch.obs.shape == (T, N, 11) and batch.next_obs.shape == (T, N, 11)
    assert batch.actions.shape == (T, N, 3)
    for name in ("rewards", "train_rewards", "terminated", "continues"):
        assert getattr(batch, name).shape == (T, N)
    assert batch.size == T * N
    assert batch.flat("actions").shape == (T * N, 3)
    assert not batch.continues[-1].any()
    # terminated implies not continuing
    assert not (batch.terminated & batch.continues).any()
    # a random policy makes Hopper fall within 150 steps
    assert batch.terminated.any()
    # reward scaling disabled and no clip: train rewards are the raw rewards
    np.testing.assert_array_equal(batch.train_rewards, batch.rewards)


def test_collect_episode_returns_are_sums_of_raw_rewards(hopper_batch):
    _, batch, _ = hopper_batch
    eps = _episodes(batch, 2)
    assert len(eps) >= 2
    k = len(eps)
    np.testing.assert_allclose(batch.ep_returns[:k], [e[2] for e in eps], rtol=1e-12)
    assert batch.ep_lengths[:k] == [e[3] for e in eps]
    # only episodes ending exactly at the last step can be extra
    assert len(batch.ep_returns) - k <= 2


def test_collect_next_obs_at_batch_end_is_following_obs(hopper_batch):
    venv, batch, _ = hopper_batch
    # normalisation is off, so the next observation is the env's current one
    for i in range(2):
        if not batch.terminated[-1, i]:
            np.testing.assert_array_equal(batch.next_obs[-1, i], venv.obs[i].astype(np.float32))
            assert np.any(batch.next_obs[-1, i] != 0)


def test_collect_terminal_obs_is_true_final_observation(hopper_batch):
    _, batch, _ = hopper_batch
    T = batch.rewards.shape[0]
    for t, i in zip(*np.nonzero(batch.terminated)):
        final = batch.next_obs[t, i]
        # Hopper terminates when unhealthy: height <= 0.7, |angle| >= 0.2 or a state entry >= 100
        unhealthy = final[0] <= 0.7 or abs(final[1]) >= 0.2 or np.any(np.abs(final[1:]) >= 100)
        assert unhealthy, final
        if t + 1 < T:
            nxt = batch.obs[t + 1, i]
            # the following step starts a fresh episode: near Hopper's init (height 1.25, noise 5e-3)
            assert abs(nxt[0] - 1.25) < 0.01 and np.all(np.abs(nxt[1:]) < 0.01)


def test_collect_matches_gymnasium_replay(hopper_batch):
    """The first episode of each env, replayed through gymnasium's wrapped env with the same actions."""
    venv, batch, start = hopper_batch
    for i in range(2):
        qpos, qvel = start[i]
        ref = _replay("Hopper-v5", qpos, qvel, batch.actions[:, i], 1000)
        n = len(ref)
        np.testing.assert_allclose(batch.rewards[:n, i], [r for _, r, _, _ in ref], rtol=1e-9, atol=1e-9)
        # observations the policy saw at t = 1..n-1 are the replay's observations
        # observations are stored as float32, as the networks take them
        np.testing.assert_array_equal(batch.obs[1:n, i], np.array([o for o, *_ in ref[:-1]], np.float32))
        if n < batch.rewards.shape[0]:
            obs, _, term, trunc = ref[-1]
            assert term and not trunc
            assert batch.terminated[n - 1, i] and not batch.continues[n - 1, i]
            np.testing.assert_array_equal(batch.next_obs[n - 1, i], obs.astype(np.float32))


def test_collect_truncation_short_time_limit():
    venv = VecEnv("Hopper-v5", 2)
    venv.max_steps = 5
    rng = np.random.default_rng(1)
    venv.reset(rng)
    start = [(d.qpos.copy(), d.qvel.copy()) for d in venv.stepper.datas]
    pol = _policy(venv.obs_dim, venv.act_dim, log_std=-1.0)  # gentle actions: no fall within 5 steps
    norm = ObsNormalizer(venv.obs_dim, enabled=False, clip=None)
    scaler = RewardScaler(2, 0.99, enabled=False, clip=None)
    batch = collect(venv, PolicyWeights.from_policy(pol), norm, scaler, rng, 12)
    assert not batch.terminated.any()
    ended = ~batch.continues
    expected_ends = np.zeros((12, 2), bool)
    expected_ends[[4, 9, 11]] = True  # truncated at steps 5 and 10, cut at the batch end
    np.testing.assert_array_equal(ended, expected_ends)
    assert batch.ep_lengths == [5, 5, 5, 5]
    for t in (4, 9):
        for i in range(2):
            final = batch.next_obs[t, i]
            assert np.any(final != 0)
            # the true final observation, not the reset one that the next step starts from
            assert not np.allclose(final, batch.obs[t + 1, i])
            assert abs(batch.obs[t + 1, i][0] - 1.25) < 0.01
    # the first episode, replayed by gymnasium's TimeLimit wrapper, ends truncated at the same obs
    for i in range(2):
        ref = _replay("Hopper-v5", *start[i], batch.actions[:, i], 5)
        assert len(ref) == 5
        obs, _, term, trunc = ref[-1]
        assert trunc and not term
        np.testing.assert_array_equal(batch.next_obs[4, i], obs.astype(np.float32))
        np.testing.assert_allclose(batch.ep_returns[i], sum(r for _, r, _, _ in ref), rtol=1e-9)
    venv.close()


def test_collect_with_normalisation_and_scaling():
    venv = VecEnv("Hopper-v5", 2)
    rng = np.random.default_rng(2)
    venv.reset(rng)
    pol = _policy(venv.obs_dim, venv.act_dim)
    norm = ObsNormalizer(venv.obs_dim, enabled=True, clip=5.0)
    scaler = RewardScaler(2, 0.99, enabled=True, clip=10.0)
    batch = collect(venv, PolicyWeights.from_policy(pol), norm, scaler, rng, 40)
    # every observation the policy acted on is counted once: T * N rows (the observation after the
    # last step is counted when the next iteration starts from it)
    assert norm.rms.count == pytest.approx(40 * 2, abs=1e-3)
    assert np.abs(batch.obs).max() <= 5.0
    assert np.abs(batch.train_rewards).max() <= 10.0
    assert not np.allclose(batch.train_rewards, batch.rewards)
    # actions: mean + std * noise, with std = exp(log_std) = 1 here: stored unclipped
    w = PolicyWeights.from_policy(pol)
    noise = batch.actions - w.mean(batch.obs.reshape(1, -1, 11))[0].reshape(40, 2, 3)
    assert noise.std() == pytest.approx(1.0, rel=0.15)
    assert abs(noise.mean()) < 0.15
    venv.close()


def test_vecenv_state_roundtrip_is_exact():
    """mj_getState/mj_setState with mjSTATE_INTEGRATION: the restored env steps to identical obs."""
    a, b = VecEnv("Hopper-v5", 2), VecEnv("Hopper-v5", 2)
    rng = np.random.default_rng(3)
    a.reset(rng)
    acts = np.random.default_rng(4).uniform(-1, 1, (30, 2, 3))
    for t in range(10):
        a.step(acts[t], rng)
    b.load(a.state())
    rng_a = np.random.default_rng(5)
    rng_b = np.random.default_rng(5)
    for t in range(10, 30):
        oa, ob = a.step(acts[t], rng_a), b.step(acts[t], rng_b)
        np.testing.assert_array_equal(oa["obs"], ob["obs"])
        np.testing.assert_array_equal(oa["reward"], ob["reward"])
        np.testing.assert_array_equal(oa["terminated"], ob["terminated"])
    a.close()
    b.close()
