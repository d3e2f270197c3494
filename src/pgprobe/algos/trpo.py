"""TRPO: natural gradient by conjugate gradient on Fisher-vector products, scaled to the
KL constraint, then a backtracking line search that checks both improvement and KL."""
from __future__ import annotations

import numpy as np
import torch

from ..nets import flat_params, gaussian_kl, set_flat_params
from .common import TrainData, surrogate


def flat_grad(y: torch.Tensor, params, **kw) -> torch.Tensor:
    return torch.cat([g.reshape(-1) for g in torch.autograd.grad(y, params, **kw)])


def fisher_vector_product(policy, obs: torch.Tensor, damping: float):
    """v -> (F + damping I) v, F the Hessian of the mean KL(pi_theta || pi) at pi = pi_theta."""
    params = list(policy.parameters())
    with torch.no_grad():
        mean0, log_std0 = policy(obs)

    def fvp(v: torch.Tensor) -> torch.Tensor:
        mean, log_std = policy(obs)
        kl = gaussian_kl(mean0, log_std0, mean, log_std).mean()
        g = flat_grad(kl, params, create_graph=True)
        return flat_grad(g @ v, params) + damping * v

    return fvp


def conjugate_gradient(matvec, b: torch.Tensor, iters: int, tol: float = 1e-10) -> torch.Tensor:
    """Solve A x = b for symmetric positive-definite A given only x -> A x."""
    x = torch.zeros_like(b)
    r, p = b.clone(), b.clone()
    rr = r @ r
    for _ in range(iters):
        if rr < tol:
            break
        ap = matvec(p)
        alpha = rr / (p @ ap)
        x += alpha * p
        r -= alpha * ap
        rr_new = r @ r
        p = r + (rr_new / rr) * p
        rr = rr_new
    return x


def natural_step(policy, data: TrainData, cfg: dict, rng: np.random.Generator):
    """(full step s * sqrt(2 max_kl / s^T F s) with s = F^-1 g, surrogate gradient g)."""
    params = list(policy.parameters())
    g = flat_grad(surrogate(policy, data), params)
    k = max(1, int(round(cfg["fisher_frac"] * data.n)))
    idx = torch.as_tensor(np.sort(rng.choice(data.n, size=k, replace=False)))
    fvp = fisher_vector_product(policy, data.obs[idx], cfg["damping"])
    s = conjugate_gradient(fvp, g, cfg["cg_iters"])
    shs = (s @ fvp(s)).clamp_min(1e-12)
    return s * torch.sqrt(2 * cfg["max_kl"] / shs), g


def update_policy(policy, opt, data: TrainData, cfg: dict, rng: np.random.Generator) -> dict:
    """Backtrack from the full step: accept the first fraction within max_kl whose improvement is
    at least `accept_ratio` of the linear prediction g . step (as the authors' code does)."""
    step, g = natural_step(policy, data, cfg, rng)
    step, expected = step.detach(), (g @ step).item()
    theta = flat_params(policy)
    with torch.no_grad():
        surr_old = surrogate(policy, data).item()
        for k in range(cfg["max_backtrack"]):
            frac = cfg["backtrack_coef"] ** k
            set_flat_params(policy, theta + frac * step)
            mean, log_std = policy(data.obs)
            kl = gaussian_kl(data.mean_old, data.log_std_old, mean, log_std).mean().item()
            improvement = surrogate(policy, data).item() - surr_old
            # expected = g . step > 0 (CG on a positive-definite F), so this also demands improvement > 0
            if kl <= cfg["max_kl"] and improvement > cfg["accept_ratio"] * frac * expected:
                return {"step_fraction": frac, "full_step": step.numpy()}
        set_flat_params(policy, theta)
    return {"step_fraction": 0.0, "full_step": step.numpy()}


def objective(policy, data: TrainData, cfg: dict) -> torch.Tensor:
    """TRPO's surrogate: the importance-sampled mean advantage."""
    return surrogate(policy, data)
