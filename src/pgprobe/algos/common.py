"""What PPO and TRPO share: the batch as tensors, the surrogate, the value fit, the per-iteration stats.

Probes import `surrogate` and `prepare` from here, so they measure the objective
the agents actually optimise.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..nets import GaussianPolicy, ValueNet, gaussian_kl
from ..rollout import Batch, gae


@dataclass
class TrainData:
    """A batch flattened to (T*N,) tensors, with everything the update needs."""

    obs: torch.Tensor
    actions: torch.Tensor
    logp_old: torch.Tensor
    mean_old: torch.Tensor
    log_std_old: torch.Tensor
    advantages: torch.Tensor      # as the policy loss uses them (normalised if configured)
    raw_advantages: torch.Tensor  # GAE, before normalisation
    returns: torch.Tensor         # value targets: V_old + A_GAE
    values_old: torch.Tensor
    value_mask: torch.Tensor      # bool: the step enters the value loss

    @property
    def n(self) -> int:
        return self.obs.shape[0]


def prepare(batch: Batch, policy: GaussianPolicy, value: ValueNet, gamma: float, lam: float,
            norm_adv: bool, bootstrap_truncation: bool = False, fit_done_steps: bool = False) -> TrainData:
    """Advantages (GAE) and value targets for a batch, as tensors.

    The authors' code treats a time-limit truncation as terminal (next value 0) and leaves the
    last step of every episode out of the value loss; `bootstrap_truncation` and `fit_done_steps`
    switch to the modern choices (bootstrap from the truncated state; fit every step).
    """
    obs = torch.as_tensor(batch.obs, dtype=torch.float32)
    next_obs = torch.as_tensor(batch.next_obs, dtype=torch.float32)
    with torch.no_grad():
        values = value(obs.reshape(-1, obs.shape[-1])).reshape(obs.shape[:2]).double().numpy()
        ended = ~batch.continues
        next_values = np.zeros_like(values)
        next_values[:-1] = values[1:]
        if ended.any():
            next_values[ended] = value(next_obs[torch.as_tensor(ended)]).double().numpy()
    terminal = batch.terminated if bootstrap_truncation else batch.done
    adv, ret = gae(batch.train_rewards, values, next_values, terminal, batch.continues, gamma, lam)
    flat_obs = obs.reshape(-1, obs.shape[-1])
    actions = torch.as_tensor(batch.flat("actions"), dtype=torch.float32)
    with torch.no_grad():
        mean_old, log_std_old = policy(flat_obs)
        logp_old = policy.log_prob(flat_obs, actions)
    raw = torch.as_tensor(adv.reshape(-1), dtype=torch.float32)
    used = (raw - raw.mean()) / (raw.std() + 1e-8) if norm_adv else raw
    return TrainData(flat_obs, actions, logp_old, mean_old, log_std_old, used, raw,
                     torch.as_tensor(ret.reshape(-1), dtype=torch.float32),
                     torch.as_tensor(values.reshape(-1), dtype=torch.float32),
                     torch.as_tensor(fit_done_steps | ~batch.done.reshape(-1)))


def surrogate(policy: GaussianPolicy, data: TrainData, idx=None) -> torch.Tensor:
    """The importance-sampled surrogate mean(pi(a|s)/pi_old(a|s) * A) (unclipped)."""
    sl = slice(None) if idx is None else idx
    ratio = torch.exp(policy.log_prob(data.obs[sl], data.actions[sl]) - data.logp_old[sl])
    return (ratio * data.advantages[sl]).mean()


def minibatches(n: int, count: int, rng: np.random.Generator):
    perm = rng.permutation(n)
    return [torch.as_tensor(mb) for mb in np.array_split(perm, count)]


def fit_value(value: ValueNet, opt: torch.optim.Optimizer, data: TrainData, cfg: dict,
              rng: np.random.Generator) -> float:
    """Regress V on the GAE targets over the steps of `data.value_mask`; optional clipping of the
    change around V_old.  Returns the last epoch's mean loss over the masked steps."""
    loss_sum = 0.0
    for _ in range(cfg["value_epochs"]):
        loss_sum, count = 0.0, 0
        for mb in minibatches(data.n, cfg["minibatches"], rng):
            mb = mb[data.value_mask[mb]]
            if not len(mb):
                continue
            v, target = value(data.obs[mb]), data.returns[mb]
            loss = (v - target).pow(2)
            if cfg["value_clip"]:
                v_old = data.values_old[mb]
                v_clip = v_old + (v - v_old).clamp(-cfg["value_clip_eps"], cfg["value_clip_eps"])
                loss = torch.maximum(loss, (v_clip - target).pow(2))
            loss = loss.mean()
            opt.zero_grad()
            loss.backward()
            clip_grads(value, cfg["max_grad_norm"])
            opt.step()
            loss_sum, count = loss_sum + loss.item() * len(mb), count + len(mb)
    return loss_sum / max(count, 1)


def clip_grads(module: torch.nn.Module, max_norm) -> None:
    if max_norm:
        torch.nn.utils.clip_grad_norm_(module.parameters(), max_norm)


def set_lr(opt: torch.optim.Optimizer, lr: float) -> None:
    for group in opt.param_groups:
        group["lr"] = lr


def step_stats(policy: GaussianPolicy, data: TrainData) -> dict:
    """KL, likelihood ratios, surrogate and entropy after the update, over the whole batch."""
    with torch.no_grad():
        mean, log_std = policy(data.obs)
        kl = gaussian_kl(data.mean_old, data.log_std_old, mean, log_std)
        ratio = torch.exp(policy.log_prob(data.obs, data.actions) - data.logp_old)
        return {
            "kl_mean": kl.mean().item(),
            "kl_max": kl.max().item(),
            "ratio_max": ratio.max().item(),
            "ratio_mean": ratio.mean().item(),
            "surrogate_after": (ratio * data.advantages).mean().item(),
        }


def explained_variance(values: torch.Tensor, returns: torch.Tensor) -> float:
    var = returns.var().item()
    return float("nan") if var == 0 else 1.0 - (returns - values).var().item() / var
