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
import multiprocessing as mp
from contextlib import nullcontext
from concurrent.futures import ProcessPoolExecutor, wait

import numpy as np
from tqdm import tqdm

from .envs import VecEnv


REPORT_EVERY = 100  # time steps between progress reports


def episode_returns(env_id: str, weights, obs_mean: np.ndarray, obs_std: np.ndarray, obs_clip,
                    min_steps: int, envs_per_policy: int, seed: int, report=None) -> list[list[float]]:
    """Returns, per policy, the list of complete-episode returns.  `weights` is a PolicyWeights of K.

    `min_steps` is per environment slot: a policy takes at least min_steps * envs_per_policy steps.
    `report`, if given, is called now and then with the number of steps towards that total
    taken since its last call (steps past min_steps, which finish an episode, are not counted).
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
    t, reported = 0, 0
    while active.size:
        x = (venv.obs - obs_mean) / obs_std
        if obs_clip:
            x = np.clip(x, -obs_clip, obs_clip)
        mean = weights.mean(x.reshape(k, m, -1))
        noise = noise_rng.standard_normal((1, m, venv.act_dim))
        actions = venv.clip((mean + std * noise).reshape(n, -1))
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
        t += 1
        if report is not None and (t % REPORT_EVERY == 0 or not active.size):
            counted = int(np.minimum(steps, min_steps).sum())
            report(counted - reported)
            reported = counted
    venv.close()
    return returns


def parallel_episode_returns(env_id: str, weights, obs_mean, obs_std, obs_clip, min_steps: int,
                             envs_per_policy: int, seed: int, workers: int,
                             progress: bool = False) -> list[list[float]]:
    """`episode_returns` with the policies split across worker processes (same numbers as one process).

    `progress`: a tqdm bar (stderr) of env steps towards min_steps per slot, over all workers.
    """
    k = weights.log_std.shape[0]
    total = k * envs_per_policy * min_steps
    with tqdm(total=total, desc="true reward", unit="step", unit_scale=True, disable=not progress,
              mininterval=2.0, smoothing=0.05) as bar:
        if workers <= 1 or k == 1:
            return episode_returns(env_id, weights, obs_mean, obs_std, obs_clip, min_steps, envs_per_policy,
                                   seed, bar.update if progress else None)
        chunk = math.ceil(k / workers)
        parts = [weights.select(slice(i, i + chunk)) for i in range(0, k, chunk)]
        ctx = mp.get_context("spawn")
        with (ctx.Manager() if progress else nullcontext()) as manager, \
                ProcessPoolExecutor(len(parts), mp_context=ctx) as pool:
            queue = manager.Queue() if progress else None
            futures = [pool.submit(episode_returns, env_id, w, obs_mean, obs_std, obs_clip, min_steps,
                                   envs_per_policy, seed, None if queue is None else queue.put) for w in parts]
            running = True
            while running:
                running = bool(wait(futures, timeout=1.0).not_done)
                while queue is not None and not queue.empty():
                    bar.update(queue.get())
            return [r for f in futures for r in f.result()]
