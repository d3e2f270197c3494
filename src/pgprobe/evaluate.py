"""True reward of many policies at once: complete episodes, common random numbers, batched forward.

Every policy (a row of `flats`) runs `envs_per_policy` environments.  Environment
slot m uses the same episode seeds and the same action-noise stream for every
policy (common random numbers), so differences between policies are not swamped
by sampling noise.  Each slot starts episodes until it has taken `min_steps`
steps and then finishes the episode it is in: every return is of a complete
episode, and the mean is not biased towards short episodes by a cut-off.
"""
from __future__ import annotations

import math
from concurrent.futures import ProcessPoolExecutor

import numpy as np

from .envs import VecEnv


def episode_returns(env_id: str, weights, obs_mean: np.ndarray, obs_std: np.ndarray, obs_clip,
                    min_steps: int, envs_per_policy: int, seed: int) -> list[list[float]]:
    """Returns, per policy, the list of complete-episode returns.  `weights` is a PolicyWeights of K.

    `min_steps` is per environment slot: a policy takes at least min_steps * envs_per_policy steps.
    """
    k, m = weights.log_std.shape[0], envs_per_policy
    venv = VecEnv(env_id, k * m)
    slot_rngs = [np.random.default_rng([seed, j]) for j in range(m)]
    episode_seeds = [[] for _ in range(m)]  # episode i of slot j -> the same seed for every policy

    def seed_for(j: int, i: int) -> int:
        while len(episode_seeds[j]) <= i:
            episode_seeds[j].append(int(slot_rngs[j].integers(2**31 - 1)))
        return episode_seeds[j][i]

    noise_rng = np.random.default_rng([seed, m, 1])
    n = k * m
    episode_idx, steps = np.zeros(n, np.int64), np.zeros(n, np.int64)
    active = np.arange(n)
    returns: list[list[float]] = [[] for _ in range(k)]
    for e in range(n):
        venv.reset_one(e, seed_for(e % m, 0))
    std = np.exp(weights.log_std)[:, None, :]
    while active.size:
        x = (venv.obs - obs_mean) / obs_std
        if obs_clip:
            x = np.clip(x, -obs_clip, obs_clip)
        mean = weights.mean(x.reshape(k, m, -1))
        noise = noise_rng.standard_normal((1, m, venv.act_dim))
        actions = np.clip((mean + std * noise).reshape(n, -1), venv.act_low, venv.act_high).astype(np.float32)
        ended = venv.step_many(active, actions[active])[2]
        steps[active] += 1
        finished = []
        for e in active[ended]:
            returns[e // m].append(float(venv.ep_return[e]))
            if steps[e] >= min_steps:
                finished.append(e)
                continue
            episode_idx[e] += 1
            venv.reset_one(e, seed_for(e % m, int(episode_idx[e])))
        if finished:
            active = np.setdiff1d(active, finished)
    venv.close()
    return returns


def parallel_episode_returns(env_id: str, weights, obs_mean, obs_std, obs_clip, min_steps: int,
                             envs_per_policy: int, seed: int, workers: int) -> list[list[float]]:
    """`episode_returns` with the policies split across worker processes (same numbers as one process)."""
    k = weights.log_std.shape[0]
    if workers <= 1 or k == 1:
        return episode_returns(env_id, weights, obs_mean, obs_std, obs_clip, min_steps, envs_per_policy, seed)
    chunk = math.ceil(k / workers)
    parts = [weights.select(slice(i, i + chunk)) for i in range(0, k, chunk)]
    import multiprocessing as mp

    with ProcessPoolExecutor(len(parts), mp_context=mp.get_context("spawn")) as pool:
        futures = [pool.submit(episode_returns, env_id, w, obs_mean, obs_std, obs_clip, min_steps,
                               envs_per_policy, seed) for w in parts]
        return [r for f in futures for r in f.result()]
