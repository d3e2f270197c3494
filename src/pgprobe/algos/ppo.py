"""PPO (clipped objective) and PPO-M: the same update, the code-level optimisations are switches in cfg."""
from __future__ import annotations

import numpy as np
import torch

from .common import TrainData, clip_grads, minibatches


def policy_loss(policy, data: TrainData, mb, clip_eps: float, entropy_coef: float,
                norm_adv: bool) -> torch.Tensor:
    """The clipped objective; advantages normalised per minibatch (as the authors' PPO does)."""
    ratio = torch.exp(policy.log_prob(data.obs[mb], data.actions[mb]) - data.logp_old[mb])
    adv = data.raw_advantages[mb]
    if norm_adv:
        adv = (adv - adv.mean()) / (adv.std() + 1e-8)
    clipped = ratio.clamp(1.0 - clip_eps, 1.0 + clip_eps) * adv
    return -torch.minimum(ratio * adv, clipped).mean() - entropy_coef * policy.entropy()


def update_policy(policy, opt: torch.optim.Optimizer, data: TrainData, cfg: dict,
                  rng: np.random.Generator) -> dict:
    for _ in range(cfg["epochs"]):
        for mb in minibatches(data.n, cfg["minibatches"], rng):
            loss = policy_loss(policy, data, mb, cfg["clip_eps"], cfg["entropy_coef"], cfg["norm_adv"])
            opt.zero_grad()
            loss.backward()
            clip_grads(policy, cfg["max_grad_norm"])
            opt.step()
    return {}


def objective(policy, data: TrainData, cfg: dict) -> torch.Tensor:
    """PPO's clipped surrogate over the whole batch (batch-normalised advantages): what landscapes plot."""
    ratio = torch.exp(policy.log_prob(data.obs, data.actions) - data.logp_old)
    clipped = ratio.clamp(1.0 - cfg["clip_eps"], 1.0 + cfg["clip_eps"]) * data.advantages
    return torch.minimum(ratio * data.advantages, clipped).mean()
