"""True reward of many policies at once: complete episodes, common random numbers, batched forward.

Every policy (a row of `flats`) runs `envs_per_policy` environments.  Environment
slot j gives every policy the same random numbers, keyed by episode and step, not by
the loop's global time step (common random numbers): episode i of slot j is reset with
the same seed for every policy, and step s of that episode takes the same action noise,
row s of the stream of `np.random.default_rng([seed, j, i, NOISE_TAG])`.  So two policies
that behave alike in an episode see the same noise there, even when their earlier
episodes had different lengths and their episodes no longer start at the same time step;
differences between policies are not swamped by sampling noise.  Each slot starts
episodes until it has taken `min_steps` steps and then finishes the episode it is in:
every return is of a complete episode, and the mean is not biased towards short
episodes by a cut-off.

Common random numbers are an option: `seed` may instead give each policy its own seed, and
then policy p's slot j draws from `[seed[p], j]` and
`[seed[p], j, i, NOISE_TAG]`: independent samples per policy (fig 5 shows the noise they
leave).  A single seed is the same as every policy having it.
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
NOISE_BLOCK = 256  # most steps of action noise drawn at once per env (the numbers do not depend on it)
FIRST_FILL = 16  # steps drawn at an episode's start; then twice as many each time, up to NOISE_BLOCK
# Last word of a noise key.  SeedSequence ignores trailing zeros of a key of up to four words
# ([s, 1] == [s, 1, 0, 0]), so a key ending in an episode index 0 could equal a slot's seed key [seed, j].
NOISE_TAG = 1


class EpisodeNoise:
    """Action noise keyed by (slot, episode, step) for N envs.

    An env in episode i of slot j takes, at step s of that episode, row s of the stream of
    `np.random.default_rng([seed, j, i, NOISE_TAG])` (act_dim standard normals per row; `seed`: one
    for every env, or each env's own).  Each env
    draws its episode's stream ahead into its own buffer, FIRST_FILL rows at the start and then up
    to `block` rows at a time, so the per-step work is one gather for all envs.  A Generator fills
    an (r, d) array with the same numbers as r draws of (d,), so the rows do not depend on the block
    size; envs of different policies in the same (slot, episode) draw identical streams.
    Memory: num_envs x block x act_dim floats (Humanoid, 1296 envs in one process: 45 MB).
    """

    def __init__(self, seed, num_envs: int, act_dim: int, block: int = NOISE_BLOCK):
        if block < 1:
            raise ValueError(f"noise block must be at least 1 step, got {block}")
        self.seeds = np.broadcast_to(np.asarray(seed, np.int64), (num_envs,))  # one seed, or one per env
        self.block = block
        self.buf = np.empty((num_envs, block, act_dim))
        self.pos = np.zeros(num_envs, np.int64)  # next row of buf[e] to use
        self.fill = np.zeros(num_envs, np.int64)  # rows of buf[e] drawn
        self.gens: list = [None] * num_envs

    def start(self, e: int, slot: int, episode: int) -> None:
        """Env `e` starts episode `episode` of slot `slot`: its noise restarts at that episode's step 0."""
        self.gens[e] = np.random.default_rng([int(self.seeds[e]), int(slot), int(episode), NOISE_TAG])
        self._draw_ahead(e, min(FIRST_FILL, self.block))

    def _draw_ahead(self, e: int, rows: int) -> None:
        self.gens[e].standard_normal(out=self.buf[e, :rows])
        self.pos[e], self.fill[e] = 0, rows

    def next(self, idx: np.ndarray) -> np.ndarray:
        """The noise of envs `idx` for their current step, (len(idx), act_dim); each moves on one step."""
        pos = self.pos[idx]
        used_up = pos == self.fill[idx]
        if used_up.any():
            for e in idx[used_up]:
                self._draw_ahead(e, min(2 * int(self.fill[e]), self.block))
            pos[used_up] = 0
        self.pos[idx] = pos + 1
        return self.buf[idx, pos]


def policy_seeds(seed, k: int) -> np.ndarray:
    """(k,) seeds: one seed shared by every policy (common random numbers), or one per policy."""
    seeds = np.asarray(seed, np.int64)
    if seeds.ndim == 0:
        return np.full(k, int(seeds))
    if seeds.shape != (k,):
        raise ValueError(f"expected one seed or one per policy ({k}), got shape {seeds.shape}")
    return seeds


class EpisodeSeeds:
    """The reset seed of episode i of slot j under `seed`: the i-th draw of `default_rng([seed, j])`, so
    every policy with that seed resets its slot's episodes alike."""

    def __init__(self):
        self.rngs: dict = {}
        self.drawn: dict = {}

    def __call__(self, seed, slot: int, episode: int) -> int:
        key = (int(seed), int(slot))
        if key not in self.rngs:
            self.rngs[key], self.drawn[key] = np.random.default_rng(list(key)), []
        while len(self.drawn[key]) <= episode:
            self.drawn[key].append(int(self.rngs[key].integers(2**31 - 1)))
        return self.drawn[key][episode]


def episodes(env_id: str, weights, obs_mean: np.ndarray, obs_std: np.ndarray, obs_clip,
             min_steps: int, envs_per_policy: int, seed, report=None, *, clip_actions: bool,
             gamma: float = 1.0, noise_block: int = NOISE_BLOCK) -> list[dict]:
    """Per policy, its complete episodes: {"return", "discounted_return" (by `gamma`), "length"},
    arrays in the order the episodes ended.  `weights` is a PolicyWeights of K policies; `seed` one int
    (common random numbers across them) or K ints (each policy its own samples).

    `min_steps` is per environment slot: a policy takes at least min_steps * envs_per_policy steps.
    `report`, if given, is called now and then with the number of steps towards that total
    taken since its last call (steps past min_steps, which finish an episode, are not counted).
    `clip_actions`: clip actions to the action space before the env sees them (VecEnv's switch;
    False sends the raw actions, whose control cost the env then charges).  `noise_block`: steps of
    action noise drawn at once per env (speed only; the numbers do not depend on it).
    """
    k, m = weights.log_std.shape[0], envs_per_policy
    venv = VecEnv(env_id, k * m, clip_actions=clip_actions)
    n = k * m  # env e runs policy e // m in slot e % m
    env_seeds = np.repeat(policy_seeds(seed, k), m)
    seed_for = EpisodeSeeds()
    noise = EpisodeNoise(env_seeds, n, venv.act_dim, noise_block)
    episode_idx, steps = np.zeros(n, np.int64), np.zeros(n, np.int64)
    discounted, discount = np.zeros(n), np.ones(n)
    active = np.arange(n)
    found: list[list[tuple]] = [[] for _ in range(k)]
    for e in range(n):
        venv.reset_one(e, seed_for(env_seeds[e], e % m, 0))
        noise.start(e, e % m, 0)
    std = np.repeat(np.exp(weights.log_std), m, axis=0)  # (n, act_dim)
    t, reported = 0, 0
    while active.size:
        x = (venv.obs - obs_mean) / obs_std
        if obs_clip:
            x = np.clip(x, -obs_clip, obs_clip)
        mean = weights.mean(x.reshape(k, m, -1)).reshape(n, -1)
        actions = venv.prepare_actions(mean[active] + std[active] * noise.next(active))
        reward, _, ended = venv.step_many(active, actions)
        discounted[active] += discount[active] * reward
        discount[active] *= gamma
        steps[active] += 1
        finished = []
        for e in active[ended]:
            found[e // m].append((float(venv.ep_return[e]), float(discounted[e]), int(venv.elapsed[e])))
            discounted[e], discount[e] = 0.0, 1.0
            if steps[e] >= min_steps:
                finished.append(e)
                continue
            episode_idx[e] += 1
            venv.reset_one(e, seed_for(env_seeds[e], e % m, int(episode_idx[e])))
            noise.start(e, e % m, int(episode_idx[e]))
        if finished:
            active = np.setdiff1d(active, finished)
        t += 1
        if report is not None and (t % REPORT_EVERY == 0 or not active.size):
            counted = int(np.minimum(steps, min_steps).sum())
            report(counted - reported)
            reported = counted
    venv.close()
    return [{"return": np.array([f[0] for f in eps], np.float64),
             "discounted_return": np.array([f[1] for f in eps], np.float64),
             "length": np.array([f[2] for f in eps], np.int64)} for eps in found]


def episode_returns(*args, **kw) -> list[list[float]]:
    """`episodes`, undiscounted returns only."""
    return [e["return"].tolist() for e in episodes(*args, **kw)]


def parallel_episodes(env_id: str, weights, obs_mean, obs_std, obs_clip, min_steps: int,
                      envs_per_policy: int, seed, workers: int, progress: bool = False, *,
                      clip_actions: bool, gamma: float = 1.0) -> list[dict]:
    """`episodes` with the policies split across worker processes (same numbers as one process).

    `seed`: as in `episodes` (one, or one per policy).
    `progress`: a tqdm bar (stderr) of env steps towards min_steps per slot, over all workers.
    `clip_actions`: as in `episodes` (required: the caller states the agent's setting).
    """
    k = weights.log_std.shape[0]
    total = k * envs_per_policy * min_steps
    kw = dict(clip_actions=clip_actions, gamma=gamma)
    with tqdm(total=total, desc="true reward", unit="step", unit_scale=True, disable=not progress,
              mininterval=2.0, smoothing=0.05) as bar:
        if workers <= 1 or k == 1:
            return episodes(env_id, weights, obs_mean, obs_std, obs_clip, min_steps, envs_per_policy,
                            seed, bar.update if progress else None, **kw)
        chunk = math.ceil(k / workers)
        seeds = policy_seeds(seed, k)
        parts = [(weights.select(slice(i, i + chunk)), seeds[i:i + chunk]) for i in range(0, k, chunk)]
        ctx = mp.get_context("spawn")
        with (ctx.Manager() if progress else nullcontext()) as manager, \
                ProcessPoolExecutor(len(parts), mp_context=ctx) as pool:
            queue = manager.Queue() if progress else None
            futures = [pool.submit(episodes, env_id, w, obs_mean, obs_std, obs_clip, min_steps,
                                   envs_per_policy, s, None if queue is None else queue.put, **kw)
                       for w, s in parts]
            running = True
            while running:
                running = bool(wait(futures, timeout=1.0).not_done)
                while queue is not None and not queue.empty():
                    bar.update(queue.get())
            return [r for f in futures for r in f.result()]


def parallel_episode_returns(*args, **kw) -> list[list[float]]:
    """`parallel_episodes`, undiscounted returns only."""
    return [e["return"].tolist() for e in parallel_episodes(*args, **kw)]
