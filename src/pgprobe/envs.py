"""Gymnasium environments stepped as one batch, with explicit seeds and exact save/restore.

We step the unwrapped environments ourselves: no autoreset (every episode is reset
with a seed drawn from the caller's generator, so runs are reproducible and grid
points can share seeds), our own time limit (so `truncated` is ours to report and
its counter is part of the saved state), and no per-step wrapper overhead.
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


class VecEnv:
    """N copies of one environment, stepped in lock-step."""

    def __init__(self, env_id: str, num_envs: int):
        made = [make_unwrapped(env_id) for _ in range(num_envs)]
        self.envs = [e for e, _ in made]
        self.max_steps = made[0][1] or np.iinfo(np.int64).max
        self.env_id, self.num_envs = env_id, num_envs
        space = self.envs[0].action_space
        self.act_low, self.act_high = space.low.astype(np.float64), space.high.astype(np.float64)
        self.obs_dim = int(np.prod(self.envs[0].observation_space.shape))
        self.act_dim = int(np.prod(space.shape))
        self.obs = np.zeros((num_envs, self.obs_dim))
        self.elapsed = [0] * num_envs      # Python scalars: this is the per-step hot loop
        self.ep_return = [0.0] * num_envs

    def reset(self, rng: np.random.Generator) -> np.ndarray:
        for i in range(self.num_envs):
            self._reset_one(i, rng)
        return self.obs.copy()

    def _reset_one(self, i: int, rng: np.random.Generator) -> None:
        self.reset_one(i, int(rng.integers(2**31 - 1)))

    def reset_one(self, i: int, seed: int) -> None:
        self.obs[i], _ = self.envs[i].reset(seed=seed)
        self.elapsed[i] = 0
        self.ep_return[i] = 0.0

    def step(self, actions: np.ndarray, rng: np.random.Generator) -> dict:
        """Step every env; finished episodes are reset at once with seeds from `rng`.

        Returns next `obs` (already reset where an episode ended), `reward`,
        `terminated`, `truncated`, `final_obs` (the true last observation, where
        an episode ended) and the returns/lengths of the episodes that ended.
        """
        n = self.num_envs
        reward = np.zeros(n)
        terminated = np.zeros(n, bool)
        truncated = np.zeros(n, bool)
        final_obs = np.zeros((n, self.obs_dim))
        ep_returns, ep_lengths = [], []
        clipped = np.clip(actions, self.act_low, self.act_high).astype(np.float32)
        for i in range(n):
            r, term, ended = self.step_one(i, clipped[i])
            reward[i], terminated[i], truncated[i] = r, term, ended and not term
            if ended:
                final_obs[i] = self.obs[i]
                ep_returns.append(self.ep_return[i])
                ep_lengths.append(self.elapsed[i])
                self._reset_one(i, rng)
        return {"obs": self.obs.copy(), "reward": reward, "terminated": terminated,
                "truncated": truncated, "final_obs": final_obs,
                "ep_returns": ep_returns, "ep_lengths": ep_lengths}

    def step_one(self, i: int, action: np.ndarray) -> tuple[float, bool, bool]:
        """Step env i with an already clipped float32 action: (reward, terminated, episode ended).

        Updates self.obs[i], the step counter and the running return; does not reset.
        """
        obs, r, term, trunc, _ = self.envs[i].step(action)
        self.elapsed[i] += 1
        self.ep_return[i] += r
        self.obs[i] = obs
        return r, term, term or trunc or self.elapsed[i] >= self.max_steps

    # -- exact save/restore (MuJoCo tasks): mjSTATE_INTEGRATION, not just qpos/qvel --
    def state(self) -> dict:
        import mujoco

        sim = []
        for env in self.envs:
            if not hasattr(env, "data"):
                raise ConfigError(f"{self.env_id!r} is not a MuJoCo task: its state cannot be snapshotted exactly")
            size = mujoco.mj_stateSize(env.model, mujoco.mjtState.mjSTATE_INTEGRATION)
            buf = np.empty(size)
            mujoco.mj_getState(env.model, env.data, buf, mujoco.mjtState.mjSTATE_INTEGRATION)
            sim.append(buf)
        return {"sim": np.stack(sim), "obs": self.obs.copy(), "elapsed": np.array(self.elapsed, np.int64),
                "ep_return": np.array(self.ep_return, np.float64)}

    def load(self, state: dict) -> None:
        import mujoco

        for env, buf in zip(self.envs, np.asarray(state["sim"])):
            mujoco.mj_setState(env.model, env.data, np.ascontiguousarray(buf), mujoco.mjtState.mjSTATE_INTEGRATION)
            mujoco.mj_forward(env.model, env.data)
        self.obs = np.array(state["obs"], np.float64)
        self.elapsed = [int(v) for v in state["elapsed"]]
        self.ep_return = [float(v) for v in state["ep_return"]]

    def close(self) -> None:
        for env in self.envs:
            env.close()
