"""Collect state-action pairs with a Gaussian policy, and estimate advantages with GAE."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .envs import VecEnv
from .nets import ObsNormalizer, PolicyWeights, RewardScaler


@dataclass
class Batch:
    """One iteration's pairs, time-major (T, N). `obs` is normalised, as the policy saw it.

    `next_obs[t]` is the observation that follows step t within the same episode
    (the true final observation where the episode was truncated); the value of it
    bootstraps the return where `continues` is False but `terminated` is too.
    """

    obs: np.ndarray
    actions: np.ndarray
    rewards: np.ndarray          # raw env rewards
    train_rewards: np.ndarray    # after scaling/clipping: what the algorithm optimises
    terminated: np.ndarray
    done: np.ndarray             # the episode ended here (terminated, or truncated by the time limit)
    continues: np.ndarray        # False where an episode ended or the batch was cut
    next_obs: np.ndarray         # normalised; only read where continues is False
    ep_returns: list = field(default_factory=list)
    ep_lengths: list = field(default_factory=list)

    @property
    def size(self) -> int:
        return self.obs.shape[0] * self.obs.shape[1]

    def flat(self, name: str) -> np.ndarray:
        x = getattr(self, name)
        return x.reshape(self.size, *x.shape[2:])

    def prefix(self, steps_per_env: int) -> "Batch":
        """The first `steps_per_env` steps of each env, as if the rollout had stopped there: the batch
        end's bootstrap moves to the cut (continues False at the last kept step; next_obs there the
        observation that follows, for episodes still open).  Equal to the batch `collect` returns for
        `steps_per_env` steps with the same generator (the rollout draws nothing ahead of time).
        Episode returns and lengths are not split by time: the prefix has none."""
        k = int(steps_per_env)
        if not 1 <= k <= self.obs.shape[0]:
            raise ValueError(f"prefix of {k} steps per env: the batch has {self.obs.shape[0]}")
        if k == self.obs.shape[0]:
            return Batch(self.obs, self.actions, self.rewards, self.train_rewards, self.terminated, self.done,
                         self.continues, self.next_obs)
        cont, next_obs = self.continues[:k].copy(), self.next_obs[:k].copy()
        open_at_cut = cont[-1].copy()
        next_obs[-1, open_at_cut] = self.obs[k, open_at_cut]
        cont[-1] = False
        return Batch(self.obs[:k], self.actions[:k], self.rewards[:k], self.train_rewards[:k],
                     self.terminated[:k], self.done[:k], cont, next_obs)


def collect(venv: VecEnv, weights: PolicyWeights, obs_norm: ObsNormalizer, reward_scaler: RewardScaler,
            rng: np.random.Generator, steps_per_env: int, update_stats: bool = True) -> Batch:
    """Run the policy for `steps_per_env` steps in each env: one batched forward per step.

    The normalisers learn from what they see unless `update_stats` is False (a probe's rollout)."""
    n, t_max = venv.num_envs, steps_per_env
    # observations are kept as float32, what the networks take (halves a probe's 10^6-pair batch)
    obs_b = np.zeros((t_max, n, venv.obs_dim), np.float32)
    act_b = np.zeros((t_max, n, venv.act_dim))
    rew_b, trew_b = np.zeros((t_max, n)), np.zeros((t_max, n))
    term_b, cont_b = np.zeros((t_max, n), bool), np.zeros((t_max, n), bool)
    next_b = np.zeros((t_max, n, venv.obs_dim), np.float32)
    std = np.exp(weights.log_std[0])
    ep_returns, ep_lengths = [], []
    obs = obs_norm(venv.obs, update=update_stats)
    for t in range(t_max):
        mean = weights.mean(obs[None])[0]
        action = mean + std * rng.standard_normal(mean.shape)
        out = venv.step(action, rng)
        done = out["terminated"] | out["truncated"]
        obs_b[t], act_b[t], rew_b[t] = obs, action, out["reward"]
        trew_b[t] = reward_scaler(out["reward"], done, update=update_stats)
        term_b[t], cont_b[t] = out["terminated"], ~done
        ep_returns += out["ep_returns"]
        ep_lengths += out["ep_lengths"]
        if done.any():
            next_b[t, done] = obs_norm(out["final_obs"][done])
        obs = obs_norm(out["obs"], update=update_stats and t < t_max - 1)  # the last one: next iteration
    # the batch is cut mid-episode: bootstrap from the observation that follows
    done_b = ~cont_b
    open_at_end = cont_b[-1].copy()
    next_b[-1, open_at_end] = obs[open_at_end]
    cont_b[-1] = False
    return Batch(obs_b, act_b, rew_b, trew_b, term_b, done_b, cont_b, next_b, ep_returns, ep_lengths)


def gae(rewards: np.ndarray, values: np.ndarray, next_values: np.ndarray, terminated: np.ndarray,
        continues: np.ndarray, gamma: float, lam: float) -> tuple[np.ndarray, np.ndarray]:
    """Generalised advantage estimation over (T, N) arrays.

    values[t] = V(s_t); next_values[t] = V(s_{t+1}) for the same episode (ignored after a
    termination, where the next value is 0).  The recursion is cut where `continues` is
    False; after a truncation or at the end of the batch the value bootstraps the return.
    (At the batch end the authors' code bootstraps from V of the last state itself, not of the
    observation that follows: one pair per env per batch differs.)
    Returns (advantages, value targets = advantages + values).
    """
    boot = np.where(terminated, 0.0, next_values)
    delta = rewards + gamma * boot - values
    adv = np.zeros_like(values)
    running = np.zeros(values.shape[1:])
    for t in reversed(range(values.shape[0])):
        running = delta[t] + gamma * lam * continues[t] * running
        adv[t] = running
    return adv, adv + values
