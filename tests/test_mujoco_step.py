"""mujoco_step's Tasks against gymnasium's own step: the same observations, rewards and ends, bit for bit."""
import numpy as np
import pytest

from pgprobe.envs import GymStepper, VecEnv
from pgprobe.mujoco_step import MujocoStepper

TASKS = ["Hopper-v5", "Walker2d-v5", "HalfCheetah-v5", "Humanoid-v5"]


def _drive(venv: VecEnv, steps: int, seed: int, scale: float) -> list:
    """Random actions (wide, so episodes end and restart) with seeded resets; everything VecEnv reports."""
    rng, act_rng = np.random.default_rng(seed), np.random.default_rng([seed, 1])
    out = [venv.reset(rng)]
    for _ in range(steps):
        actions = scale * act_rng.standard_normal((venv.num_envs, venv.act_dim))
        res = venv.step(actions, rng)
        out.append(res)
    return out


def _assert_same(a: list, b: list) -> None:
    np.testing.assert_array_equal(a[0], b[0])
    ended = 0
    for t, (x, y) in enumerate(zip(a[1:], b[1:])):
        for key in ("obs", "reward", "terminated", "truncated", "final_obs"):
            np.testing.assert_array_equal(x[key], y[key], err_msg=f"{key} at step {t}")
        assert x["ep_returns"] == y["ep_returns"] and x["ep_lengths"] == y["ep_lengths"]
        ended += len(x["ep_returns"])
    assert ended > 0, "no episode ended: resets were not compared"


@pytest.mark.parametrize("env_id", TASKS)
def test_task_steps_exactly_as_gymnasium(env_id):
    fast, gym = VecEnv(env_id, 3), VecEnv(env_id, 3, backend="gymnasium")
    assert isinstance(fast.stepper, MujocoStepper) and isinstance(gym.stepper, GymStepper)
    fast.max_steps = gym.max_steps = 120  # HalfCheetah never terminates: end its episodes by time
    steps = 150 if env_id == "Humanoid-v5" else 400
    _assert_same(_drive(fast, steps, seed=3, scale=1.5), _drive(gym, steps, seed=3, scale=1.5))
    fast.close(), gym.close()


def test_time_limit_truncates_and_bootstraps():
    venv = VecEnv("HalfCheetah-v5", 2)  # never terminates: every episode ends at the time limit
    venv.max_steps = 50
    out = _drive(venv, 120, seed=0, scale=1.0)
    trunc = [t for t, res in enumerate(out[1:]) if res["truncated"].any()]
    assert trunc == [49, 99]
    assert all(length == 50 for res in out[1:] for length in res["ep_lengths"])
    assert not any(res["terminated"].any() for res in out[1:])


@pytest.mark.parametrize("env_id", ["Humanoid-v5", "Hopper-v5"])
def test_state_and_load_resume_exactly(env_id):
    """Mid-episode snapshot, restored into fresh envs: the same numbers as going on (Humanoid's
    reward starts from a mass centre the task carries: it is part of the state)."""
    a = VecEnv(env_id, 2)
    rng = np.random.default_rng(0)
    a.reset(rng)
    act_rng = np.random.default_rng(1)
    for _ in range(5):
        a.step(0.3 * act_rng.standard_normal((2, a.act_dim)), rng)
    saved, rng_state = a.state(), rng.bit_generator.state
    actions = 0.3 * act_rng.standard_normal((20, 2, a.act_dim))
    first = [a.step(x, rng) for x in actions]
    b = VecEnv(env_id, 2)
    b.load(saved)
    rng.bit_generator.state = rng_state
    second = [b.step(x, rng) for x in actions]
    for x, y in zip(first, second):
        np.testing.assert_array_equal(x["obs"], y["obs"])
        np.testing.assert_array_equal(x["reward"], y["reward"])


def test_other_envs_go_through_gymnasium():
    venv = VecEnv("InvertedPendulum-v5", 2)
    assert isinstance(venv.stepper, GymStepper)
    venv.reset(np.random.default_rng(0))
    res = venv.step(np.zeros((2, 1)), np.random.default_rng(1))
    assert res["obs"].shape == (2, 4) and (res["reward"] == 1.0).all()


def test_only_gymnasiums_own_v5_classes_get_a_task():
    import gymnasium as gym
    from gymnasium.envs.mujoco.hopper_v5 import HopperEnv

    from pgprobe.mujoco_step import task_for

    assert task_for(gym.make("Hopper-v5").unwrapped) is not None

    variant = type("HopperEnv", (HopperEnv,), {})  # a user's variant, same name, may step differently
    assert variant.__module__ == __name__
    assert task_for(variant()) is None
    assert task_for(gym.make("Hopper-v4").unwrapped) is None
    assert task_for(gym.make("Hopper-v5", exclude_current_positions_from_observation=False).unwrapped) is None
