"""Gymnasium environments stepped as one batch, with explicit seeds and exact save/restore.

We step the unwrapped environments ourselves: no autoreset (every episode is reset
with a seed drawn from the caller's generator, so runs are reproducible and grid
points can share seeds), our own time limit (so `truncated` is ours to report and
its counter is part of the saved state), and no per-step wrapper overhead.  The
locomotion tasks that mujoco_step.py reproduces are stepped as bare MjData, the rest
through gymnasium's own `step`; both give the same numbers.
"""
from __future__ import annotations

import numpy as np

from .errors import ConfigError


def check_env_id(env_id: str) -> "gymnasium.envs.registration.EnvSpec":
    import gymnasium as gym

    try:
        spec = gym.spec(env_id)
    except Exception as exc:  # gymnasium raises several kinds, all meaning "no such env"
        raise ConfigError(f"unknown environment id {env_id!r}: {exc}") from None
    return spec


def make_unwrapped(env_id: str):
    import gymnasium as gym
    from gymnasium.spaces import Box

    spec = check_env_id(env_id)
    try:
        env = gym.make(env_id, disable_env_checker=True)
    except Exception as exc:
        raise ConfigError(f"environment {env_id!r} could not be created: {exc}") from None
    if not isinstance(env.action_space, Box):
        raise ConfigError(
            f"environment {env_id!r} has a {type(env.action_space).__name__} action space; "
            "pgprobe's Gaussian policies need a continuous (Box) action space")
    return env.unwrapped, spec.max_episode_steps


def check_exact_resume(env_id: str) -> None:
    """Training that carries episodes across iterations (train.reset_every_iter: false) snapshots the
    environments' state; only MuJoCo tasks have one that restores exactly."""
    env = make_unwrapped(env_id)[0]
    try:
        if not hasattr(env, "data"):
            raise ConfigError(f"{env_id!r} is not a MuJoCo task: its state cannot be snapshotted exactly, so "
                              "training cannot carry episodes across iterations; set train.reset_every_iter: true")
    finally:
        env.close()


class GymStepper:
    """Environments stepped through gymnasium's own `step` (any Box-action env)."""

    def __init__(self, envs: list):
        self.envs, self.template = envs, envs[0]
        self.carry = np.zeros((len(envs), 0))

    @property
    def datas(self) -> list:
        if not all(hasattr(env, "data") for env in self.envs):
            raise ConfigError(f"{self.envs[0].spec.id!r} is not a MuJoCo task: its state cannot be snapshotted exactly")
        return [env.data for env in self.envs]

    def reset(self, i: int, seed: int) -> np.ndarray:
        return self.envs[i].reset(seed=seed)[0]

    def step(self, idx, actions: np.ndarray):
        n = len(idx)
        obs, reward = [None] * n, np.empty(n)
        terminated, truncated = np.empty(n, bool), np.empty(n, bool)
        for r, i in enumerate(idx):
            obs[r], reward[r], terminated[r], truncated[r], _ = self.envs[i].step(actions[r])
        return np.array(obs), reward, terminated, truncated

    def close(self) -> None:
        for env in self.envs:
            env.close()


def make_stepper(env_id: str, num_envs: int, backend: str = "auto"):
    """`backend`: "auto" (a mujoco_step Task where there is one for the env, else gymnasium) or "gymnasium"."""
    from .mujoco_step import MujocoStepper, task_for

    template, max_steps = make_unwrapped(env_id)
    task = task_for(template) if backend == "auto" else None
    if task is not None:
        return MujocoStepper(template, task, num_envs), max_steps
    return GymStepper([template] + [make_unwrapped(env_id)[0] for _ in range(num_envs - 1)]), max_steps


class VecEnv:
    """N copies of one environment, stepped in lock-step."""

    def __init__(self, env_id: str, num_envs: int, backend: str = "auto", clip_actions: bool = False):
        self.stepper, max_steps = make_stepper(env_id, num_envs, backend)
        self.clip_actions = clip_actions
        self.max_steps = max_steps or np.iinfo(np.int64).max
        self.env_id, self.num_envs = env_id, num_envs
        space, obs_space = self.stepper.template.action_space, self.stepper.template.observation_space
        self.act_low, self.act_high = space.low.astype(np.float64), space.high.astype(np.float64)
        self.obs_dim = int(np.prod(obs_space.shape))
        self.act_dim = int(np.prod(space.shape))
        self.obs = np.zeros((num_envs, self.obs_dim))
        self.elapsed = np.zeros(num_envs, np.int64)
        self.ep_return = np.zeros(num_envs)
        self.all = np.arange(num_envs)

    def reset(self, rng: np.random.Generator) -> np.ndarray:
        for i in range(self.num_envs):
            self._reset_one(i, rng)
        return self.obs.copy()

    def _reset_one(self, i: int, rng: np.random.Generator) -> None:
        self.reset_one(i, int(rng.integers(2**31 - 1)))

    def reset_one(self, i: int, seed: int) -> None:
        self.obs[i] = self.stepper.reset(i, seed)
        self.elapsed[i] = 0
        self.ep_return[i] = 0.0

    def step(self, actions: np.ndarray, rng: np.random.Generator) -> dict:
        """Step every env; finished episodes are reset at once with seeds from `rng`.

        Returns next `obs` (already reset where an episode ended), `reward`,
        `terminated`, `truncated`, `final_obs` (the true last observation, where
        an episode ended) and the returns/lengths of the episodes that ended.
        """
        reward, terminated, ended = self.step_many(self.all, self.prepare_actions(actions))
        final_obs = np.zeros((self.num_envs, self.obs_dim))
        final_obs[ended] = self.obs[ended]
        ep_returns, ep_lengths = [], []
        for i in np.flatnonzero(ended):
            ep_returns.append(float(self.ep_return[i]))
            ep_lengths.append(int(self.elapsed[i]))
            self._reset_one(i, rng)
        return {"obs": self.obs.copy(), "reward": reward, "terminated": terminated,
                "truncated": ended & ~terminated, "final_obs": final_obs,
                "ep_returns": ep_returns, "ep_lengths": ep_lengths}

    def prepare_actions(self, actions: np.ndarray) -> np.ndarray:
        """Actions as the env receives them, float32: raw by default (the authors' code; MuJoCo clamps
        ctrl to its range, and gymnasium's v5 tasks charge the control cost on the raw action), or
        clipped to the action space with `clip_actions` (modern PPO code)."""
        if self.clip_actions:
            actions = np.clip(actions, self.act_low, self.act_high)
        return np.asarray(actions, np.float32)

    def step_many(self, idx: np.ndarray, actions: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Step envs `idx` with float32 actions from `prepare_actions`: (reward, terminated, episode ended).

        Updates their observations, step counters and running returns; does not reset.
        """
        obs, reward, terminated, truncated = self.stepper.step(idx, actions)
        self.obs[idx] = obs
        self.elapsed[idx] += 1
        self.ep_return[idx] += reward
        return reward, terminated, terminated | truncated | (self.elapsed[idx] >= self.max_steps)

    # -- exact save/restore (MuJoCo tasks): mjSTATE_INTEGRATION, not just qpos/qvel --
    def state(self) -> dict:
        import mujoco

        spec = mujoco.mjtState.mjSTATE_INTEGRATION
        sim = []
        for data in self.stepper.datas:
            buf = np.empty(mujoco.mj_stateSize(data.model, spec))
            mujoco.mj_getState(data.model, data, buf, spec)
            sim.append(buf)
        state = {"sim": np.stack(sim), "obs": self.obs.copy(), "elapsed": self.elapsed.copy(),
                 "ep_return": self.ep_return.copy()}
        if self.stepper.carry.size:
            state["carry"] = self.stepper.carry.copy()
        return state

    def load(self, state: dict) -> None:
        """Restores `state()`.  What a task carries between steps (e.g. Humanoid's mass centre) is
        restored from the snapshot, not recomputed: after mj_step MuJoCo's derived quantities lag
        the state by one substep, so recomputing them would not give the uninterrupted numbers."""
        import mujoco

        spec = mujoco.mjtState.mjSTATE_INTEGRATION
        for data, buf in zip(self.stepper.datas, np.asarray(state["sim"])):
            mujoco.mj_setState(data.model, data, np.ascontiguousarray(buf), spec)
            mujoco.mj_forward(data.model, data)
        self.obs = np.array(state["obs"], np.float64)
        self.elapsed = np.array(state["elapsed"], np.int64)
        self.ep_return = np.array(state["ep_return"], np.float64)
        if self.stepper.carry.size:
            self.stepper.carry[:] = np.asarray(state["carry"])

    def close(self) -> None:
        self.stepper.close()
