"""Gymnasium's MuJoCo locomotion tasks stepped directly: gymnasium's numbers, less of its Python.

`env.step` in gymnasium costs 25-35 µs of Python per env step (info dicts, properties,
one small NumPy op at a time) beside 50-300 µs of physics.  A Task here reproduces one
family's `step` (observation, reward, termination) from the env's own parameters, with
the arithmetic done once for all the environments of a VecEnv; the per-env Python is: set
ctrl, mj_step, copy the fields the observation reads.  Resets still go through
gymnasium (`reset_model` of a template env), and `mj_rnePostConstraint` is run only where
the task reads the contact forces it computes (it changes no state).

tests/test_mujoco_step.py checks every task here against gymnasium step by step, bit for bit.
Environments without a Task are stepped through gymnasium (envs.GymStepper).
"""
from __future__ import annotations

import mujoco
import numpy as np


class Planar:
    """Hopper, Walker2d, HalfCheetah (v5): obs = qpos[1:], qvel; reward = forward velocity (+ healthy) - ctrl cost."""

    carry_dim = 1  # x position before the step

    def __init__(self, env, name: str):
        self.model, self.frame_skip, self.dt = env.model, int(env.frame_skip), float(env.dt)
        if not env._exclude_current_positions_from_observation:
            raise NotImplementedError("x position in the observation")
        self.clip_vel = name in ("Hopper", "Walker2d")
        self.forward_w, self.ctrl_w = env._forward_reward_weight, env._ctrl_cost_weight
        self.healthy = name in ("Hopper", "Walker2d")
        if self.healthy:
            self.healthy_reward, self.terminate = env._healthy_reward, env._terminate_when_unhealthy
            self.z_range, self.angle_range = env._healthy_z_range, env._healthy_angle_range
            self.state_range = getattr(env, "_healthy_state_range", None) if name == "Hopper" else None

    def begin(self, data) -> np.ndarray:
        return np.array([data.qpos[0]])

    def step(self, datas: list, idx, actions: np.ndarray, carry: np.ndarray):
        m, fs, n = self.model, self.frame_skip, len(idx)
        qpos, qvel = np.empty((n, m.nq)), np.empty((n, m.nv))
        for r, i in enumerate(idx):
            d = datas[i]
            d.ctrl[:] = actions[r]
            mujoco.mj_step(m, d, fs)
            qpos[r] = d.qpos
            qvel[r] = d.qvel
        x_velocity = (qpos[:, 0] - carry[idx, 0]) / self.dt
        carry[idx, 0] = qpos[:, 0]
        velocity = np.clip(qvel, -10, 10) if self.clip_vel else qvel
        obs = np.concatenate((qpos[:, 1:], velocity), axis=1)
        reward = self.forward_w * x_velocity
        terminated = np.zeros(n, bool)
        if self.healthy:
            ok = self._is_healthy(qpos, qvel)
            reward = reward + ok * self.healthy_reward
            terminated = ~ok & self.terminate
        return obs, reward - self.ctrl_w * np.sum(np.square(actions), axis=1), terminated

    def _is_healthy(self, qpos, qvel) -> np.ndarray:
        (zlo, zhi), (alo, ahi) = self.z_range, self.angle_range
        z, angle = qpos[:, 1], qpos[:, 2]
        ok = (zlo < z) & (z < zhi) & (alo < angle) & (angle < ahi)
        if self.state_range is not None:
            lo, hi = self.state_range
            state = np.concatenate((qpos, qvel), axis=1)[:, 2:]
            ok &= np.all((lo < state) & (state < hi), axis=1)
        return ok


class Humanoid:
    """Humanoid (v5): obs = qpos[2:], qvel, cinert, cvel, qfrc_actuator, cfrc_ext; reward from the mass centre."""

    carry_dim = 2  # x, y of the mass centre before the step

    def __init__(self, env, name: str):
        self.model, self.frame_skip, self.dt = env.model, int(env.frame_skip), float(env.dt)
        if not env._exclude_current_positions_from_observation:
            raise NotImplementedError("x, y position in the observation")
        self.include = {"cinert": env._include_cinert_in_observation, "cvel": env._include_cvel_in_observation,
                        "qfrc_actuator": env._include_qfrc_actuator_in_observation,
                        "cfrc_ext": env._include_cfrc_ext_in_observation}
        self.forward_w, self.ctrl_w = env._forward_reward_weight, env._ctrl_cost_weight
        self.contact_w, self.contact_range = env._contact_cost_weight, env._contact_cost_range
        self.healthy_reward, self.terminate = env._healthy_reward, env._terminate_when_unhealthy
        self.z_range = env._healthy_z_range
        self.mass = np.asarray(self.model.body_mass)

    def _mass_centres(self, xipos: np.ndarray) -> np.ndarray:
        """(n, nbody, 3) -> (n, 2): gymnasium's mass_center, the same sums in the same order."""
        return (np.einsum("b,nbj->nj", self.mass, xipos) / self.mass.sum())[:, 0:2]

    def begin(self, data) -> np.ndarray:
        return self._mass_centres(data.xipos[None])[0]

    def step(self, datas: list, idx, actions: np.ndarray, carry: np.ndarray):
        m, fs, n, nb = self.model, self.frame_skip, len(idx), self.model.nbody
        qpos, qvel, qfrc = np.empty((n, m.nq)), np.empty((n, m.nv)), np.empty((n, m.nv))
        cinert, cvel, cfrc = np.empty((n, nb, 10)), np.empty((n, nb, 6)), np.empty((n, nb, 6))
        xipos = np.empty((n, nb, 3))
        for r, i in enumerate(idx):
            d = datas[i]
            d.ctrl[:] = actions[r]
            mujoco.mj_step(m, d, fs)
            mujoco.mj_rnePostConstraint(m, d)
            qpos[r], qvel[r], qfrc[r], xipos[r] = d.qpos, d.qvel, d.qfrc_actuator, d.xipos
            cinert[r], cvel[r], cfrc[r] = d.cinert, d.cvel, d.cfrc_ext
        ctrl = actions.astype(np.float64)  # what d.ctrl holds
        centre = self._mass_centres(xipos)
        x_velocity = (centre[:, 0] - carry[idx, 0]) / self.dt
        carry[idx] = centre
        parts = [qpos[:, 2:], qvel]
        for name, arr in (("cinert", cinert), ("cvel", cvel), ("qfrc_actuator", qfrc[:, 6:, None]),
                          ("cfrc_ext", cfrc)):
            if self.include[name]:
                parts.append((arr if name == "qfrc_actuator" else arr[:, 1:]).reshape(n, -1))
        obs = np.concatenate(parts, axis=1)
        zlo, zhi = self.z_range
        ok = (zlo < qpos[:, 2]) & (qpos[:, 2] < zhi)
        ctrl_cost = self.ctrl_w * np.sum(np.square(ctrl), axis=1)
        contact_cost = np.clip(self.contact_w * np.sum(np.square(cfrc).reshape(n, -1), axis=1), *self.contact_range)
        reward = (self.forward_w * x_velocity + ok * self.healthy_reward) - (ctrl_cost + contact_cost)
        return obs, reward, ~ok & self.terminate


TASKS = {"Hopper": Planar, "Walker2d": Planar, "HalfCheetah": Planar, "Humanoid": Humanoid}


def task_for(env):
    """The Task that reproduces `env` (an unwrapped gymnasium v5 MuJoCo env), or None."""
    cls = type(env)
    family = cls.__name__.removesuffix("Env")
    if family not in TASKS or not (cls.__module__.startswith("gymnasium.envs.mujoco.")
                                   and cls.__module__.endswith("_v5")):
        return None  # another version, or a subclass that may step differently
    try:
        return TASKS[family](env, family)
    except (AttributeError, NotImplementedError):  # a configuration this Task does not reproduce
        return None


class MujocoStepper:
    """The environments of a VecEnv as bare MjData stepped by a Task; resets through a template gymnasium env."""

    def __init__(self, template, task, num_envs: int):
        self.template, self.task, self.model = template, task, template.model
        self.datas = [mujoco.MjData(self.model) for _ in range(num_envs)]
        self.carry = np.zeros((num_envs, task.carry_dim))
        self._spec = mujoco.mjtState.mjSTATE_INTEGRATION
        self._buf = np.empty(mujoco.mj_stateSize(self.model, self._spec))

    def reset(self, i: int, seed: int) -> np.ndarray:
        obs, _ = self.template.reset(seed=seed)
        d = self.datas[i]
        mujoco.mj_resetData(self.model, d)
        mujoco.mj_getState(self.model, self.template.data, self._buf, self._spec)
        mujoco.mj_setState(self.model, d, self._buf, self._spec)
        mujoco.mj_forward(self.model, d)
        self.carry[i] = self.task.begin(d)
        return obs

    def step(self, idx, actions: np.ndarray):
        """Steps envs `idx` with clipped float32 `actions`: (obs, reward, terminated, truncated)."""
        obs, reward, terminated = self.task.step(self.datas, idx, actions, self.carry)
        return obs, reward, terminated, np.zeros(len(idx), bool)

    def close(self) -> None:
        self.template.close()
