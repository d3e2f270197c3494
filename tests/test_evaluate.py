"""evaluate.episode_returns: common random numbers keyed by (slot, episode, step), and clip_actions."""
from __future__ import annotations

import inspect

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium import spaces

from pgprobe import evaluate
from pgprobe.envs import VecEnv
from pgprobe.nets import GaussianPolicy, PolicyWeights, flat_params


# -- a tiny env whose returns reveal the action noise ---------------------------------------------
class NoiseProbeEnv(gym.Env):
    """reward = action[0], so a return is the sum of the action noise over the episode (mean 0).

    The first episode after construction lasts 1 step if action[1] < 0 and 3 steps otherwise;
    every later episode lasts `later` steps (4 by default).  A policy with mean[1] = -1 and one with mean[1] = +1
    (and a tiny std on that axis) therefore fall out of step after their first episode, and
    behave the same in every later one.
    """

    observation_space = spaces.Box(-1.0, 1.0, (1,), np.float64)
    action_space = spaces.Box(-1.0, 1.0, (2,), np.float32)

    def __init__(self, later: int = 4):
        self.later, self.episodes, self.t = later, 0, 0

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.episodes, self.t = self.episodes + 1, 0
        return np.zeros(1), {}

    def step(self, action):
        self.t += 1
        length = (1 if action[1] < 0 else 3) if self.episodes == 1 else self.later
        return np.zeros(1), float(action[0]), self.t >= length, False, {}


PROBE, PROBE_LONG = "PgprobeTestNoiseProbe-v0", "PgprobeTestNoiseProbeLong-v0"
for _id, _later in ((PROBE, 4), (PROBE_LONG, 45)):
    if _id not in gym.registry:
        gym.register(_id, entry_point=NoiseProbeEnv, max_episode_steps=50, kwargs={"later": _later})


def probe_weights(means: list[list[float]], log_std=(0.0, -20.0)) -> PolicyWeights:
    """Policies whose action mean is `means[p]` whatever the observation (all weights zero but the last bias)."""
    torch.manual_seed(0)
    policy = GaussianPolicy(1, 2, [4], "xavier")
    names = [(name, p.numel()) for name, p in policy.named_parameters()]
    last_bias = [name for name, _ in names if name.startswith("mean.") and name.endswith(".bias")][-1]
    flats = []
    for mean in means:
        parts = {name: np.zeros(size) for name, size in names}
        parts[last_bias], parts["log_std"] = np.asarray(mean, float), np.asarray(log_std, float)
        flats.append(np.concatenate([parts[name] for name, _ in names]))
    return PolicyWeights.from_flat(policy, np.stack(flats))


def probe_returns(weights, min_steps, m, seed=0, env_id=PROBE, **kw):
    return evaluate.episode_returns(env_id, weights, np.zeros(1), np.ones(1), None, min_steps, m, seed,
                                    clip_actions=False, **kw)


def test_noise_is_keyed_by_episode_and_step_not_by_the_global_time_step():
    w = probe_weights([[0.0, -1.0], [0.0, 1.0]])
    short, long_ = probe_returns(w, min_steps=9, m=1)
    # episode lengths 1, 4, 4 (9 steps) and 3, 4, 4 (11 steps): out of step after episode 1
    assert len(short) == len(long_) == 3
    assert short[0] != long_[0]  # different first episodes
    # episodes 2 and 3 behave alike in both policies, so they must see the same noise, although
    # the short policy's episode 2 starts at time step 1 and the long policy's at time step 3
    assert short[1:] == long_[1:]
    assert short[1] != short[2]  # and each episode has its own noise


def test_noise_is_common_across_policies_but_not_across_slots_or_seeds():
    w = probe_weights([[0.0, -1.0], [0.0, 1.0], [0.0, -1.0]])
    r = probe_returns(w, min_steps=9, m=2)  # env e: policy e // 2, slot e % 2
    assert r[0] == r[2]  # identical policies: identical returns, slot by slot
    assert r[0][0::2] != r[0][1::2]  # slots 0 and 1 draw different noise (returns in order of ending)
    assert probe_returns(w, min_steps=9, m=2, seed=1)[0] != r[0]


def test_common_random_numbers_are_an_option():
    """One seed: identical policies get identical episodes.  One seed per policy (fig 5): independent
    samples, so the same policy at two points gets different episodes; a policy's numbers depend only on
    its own seed, not on which other policies run beside it."""
    w = probe_weights([[0.0, 1.0], [0.0, 1.0], [0.0, 1.0]])
    crn = probe_returns(w, min_steps=9, m=2, seed=5)
    assert crn[0] == crn[1] == crn[2]
    own = probe_returns(w, min_steps=9, m=2, seed=[5, 6, 7])
    assert own[0] != own[1] and own[1] != own[2] and own[0] != own[2]
    assert own[0] == crn[0]  # seed 5 gives the same numbers whether shared or a policy's own
    assert probe_returns(w, min_steps=9, m=2, seed=[7, 6, 5])[2] == own[0]
    assert probe_returns(w, min_steps=9, m=2, seed=[5, 5, 5]) == crn
    with pytest.raises(ValueError, match="one per policy"):
        probe_returns(w, min_steps=9, m=2, seed=[5, 6])


def test_per_policy_seeds_give_the_same_numbers_whatever_the_workers():
    w = hopper_weights(3)
    args = (HOPPER, w, np.zeros(OBS), np.ones(OBS), 10.0, 40, 2, [3, 1, 4])
    one = evaluate.parallel_episode_returns(*args, workers=1, clip_actions=False)
    assert evaluate.parallel_episode_returns(*args, workers=2, clip_actions=False) == one
    assert one[0] != one[1]


@pytest.mark.parametrize("block", [1, 3, 16, 17, 40])
def test_returns_do_not_depend_on_the_noise_block_size(block):
    w = probe_weights([[0.0, -1.0], [0.0, 1.0]])
    # episodes of 45 steps cross several blocks of every size (and the first, shorter, draw ahead)
    r = probe_returns(w, 100, 2, env_id=PROBE_LONG, noise_block=block)
    assert r == probe_returns(w, 100, 2, env_id=PROBE_LONG)
    assert [len(x) for x in r] == [8, 8] and r[0][2:] == r[1][2:]


def test_a_block_of_noise_is_the_same_stream_as_step_by_step_draws():
    """What the block-size independence rests on: numpy's Generator fills (r, d) as r draws of (d,)."""
    key = [5, 1, 2, evaluate.NOISE_TAG]
    one_by_one = np.stack([g.standard_normal(3) for g in [np.random.default_rng(key)] for _ in range(300)])
    g = np.random.default_rng(key)
    blocks = np.concatenate([g.standard_normal((r, 3)) for r in (16, 32, 64, 128, 60)])
    assert np.array_equal(one_by_one, blocks)


def test_noise_keys_do_not_collide_with_the_episode_seed_keys():
    """SeedSequence ignores trailing zeros of a short key: [s, 1, 0, 0] is [s, 1], a slot's seed key."""
    assert np.array_equal(np.random.SeedSequence([5, 1]).generate_state(4),
                          np.random.SeedSequence([5, 1, 0, 0]).generate_state(4))
    slot_keys = {tuple(np.random.SeedSequence([5, j]).generate_state(4)) for j in range(8)}
    noise_keys = {tuple(np.random.SeedSequence([5, j, i, evaluate.NOISE_TAG]).generate_state(4))
                  for j in range(8) for i in range(8)}
    assert len(noise_keys) == 64 and not slot_keys & noise_keys


# -- Hopper: workers, block size, clip_actions ---------------------------------------------------
HOPPER, OBS, ACT = "Hopper-v5", 11, 3


def hopper_weights(k: int, log_std: float = -0.3, jitter: float = 0.05) -> PolicyWeights:
    torch.manual_seed(0)
    policy = GaussianPolicy(OBS, ACT, [16, 16], "xavier", init_log_std=log_std)
    theta = flat_params(policy).numpy().astype(np.float64)
    rng = np.random.default_rng(0)
    return PolicyWeights.from_flat(policy, np.stack([theta + jitter * i * rng.standard_normal(theta.size)
                                                     for i in range(k)]))


def hopper_args(w, min_steps=60, m=2, seed=7):
    return (HOPPER, w, np.zeros(OBS), np.ones(OBS), 10.0, min_steps, m, seed)


def test_same_numbers_whatever_the_workers_and_the_block_size():
    w = hopper_weights(3)
    args = hopper_args(w)
    one = evaluate.parallel_episode_returns(*args, workers=1, clip_actions=False)
    assert evaluate.parallel_episode_returns(*args, workers=2, clip_actions=False) == one
    assert evaluate.episode_returns(*args, clip_actions=False, noise_block=5) == one


@pytest.mark.parametrize("fn", [evaluate.episodes, evaluate.parallel_episodes])
def test_clip_actions_is_a_required_keyword(fn):
    param = inspect.signature(fn).parameters["clip_actions"]
    assert param.kind is inspect.Parameter.KEYWORD_ONLY and param.default is inspect.Parameter.empty


@pytest.fixture
def first_steps(monkeypatch):
    """Records, per VecEnv that evaluate makes: clip_actions, reset seeds, and each step's actions and rewards."""
    made: list = []

    class RecordingVecEnv(VecEnv):
        def __init__(self, *a, **kw):
            super().__init__(*a, **kw)
            self.seeds, self.steps = {}, []
            made.append(self)

        def reset_one(self, i, seed):
            self.seeds.setdefault(i, seed)  # the first episode's seed
            super().reset_one(i, seed)

        def step_many(self, idx, actions):
            out = super().step_many(idx, actions)
            self.steps.append((np.array(idx), np.array(actions), np.array(out[0])))
            return out

    monkeypatch.setattr(evaluate, "VecEnv", RecordingVecEnv)
    return made


def gym_first_reward(seed: int, action: np.ndarray) -> float:
    env = gym.make(HOPPER, disable_env_checker=True)
    env.reset(seed=seed)
    reward = env.step(action)[1]
    env.close()
    return float(reward)


def test_clip_actions_reaches_the_env_and_raw_actions_pay_their_control_cost(first_steps):
    w = hopper_weights(2, log_std=1.0)  # std e: most actions fall outside [-1, 1]
    args = hopper_args(w, min_steps=20)
    raw = evaluate.episode_returns(*args, clip_actions=False)
    clipped = evaluate.episode_returns(*args, clip_actions=True)
    assert raw != clipped
    venv_raw, venv_clip = first_steps
    assert (venv_raw.clip_actions, venv_clip.clip_actions) == (False, True)

    (idx, a_raw, r_raw), (_, a_clip, r_clip) = venv_raw.steps[0], venv_clip.steps[0]
    assert a_raw.dtype == a_clip.dtype == np.float32
    assert np.abs(a_raw).max() > 1.5 and np.abs(a_clip).max() <= 1.0
    # the same noise either way: the clipped actions are the raw ones clipped
    np.testing.assert_array_equal(a_clip, np.clip(a_raw, -1.0, 1.0))
    e = 0
    assert idx[e] == e and venv_raw.seeds[e] == venv_clip.seeds[e]
    out_of_range = a_raw[e]
    assert np.abs(out_of_range).max() > 1.0
    # one env step's reward is gymnasium's own Hopper-v5 reward for that action: with raw actions the
    # control cost is charged on the raw action (MuJoCo clamps the ctrl, so only the cost differs)
    assert r_raw[e] == pytest.approx(gym_first_reward(venv_raw.seeds[e], out_of_range), rel=1e-12, abs=1e-12)
    assert r_clip[e] == pytest.approx(gym_first_reward(venv_raw.seeds[e], a_clip[e]), rel=1e-12, abs=1e-12)
    ctrl_cost_weight = 1e-3  # Hopper-v5's default
    extra = ctrl_cost_weight * (np.sum(np.square(out_of_range, dtype=np.float64))
                                - np.sum(np.square(a_clip[e], dtype=np.float64)))
    assert r_clip[e] - r_raw[e] == pytest.approx(extra, rel=1e-6)
