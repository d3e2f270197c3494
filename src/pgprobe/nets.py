"""What a checkpoint holds: the Gaussian MLP policy, the value MLP, running normalisers.

The torch modules are the source of truth for training.  Rollouts use
`PolicyWeights` (policy_np.py), a NumPy snapshot of the policy.
"""
from __future__ import annotations

import math
import numpy as np
import torch
from torch import nn

from .policy_np import PolicyWeights  # noqa: F401  (re-exported: the NumPy view of a policy)

LOG_2PI = math.log(2 * math.pi)


def _init_linear(layer: nn.Linear, init: str, gain: float) -> None:
    if init == "orthogonal":
        nn.init.orthogonal_(layer.weight, gain=gain)
    elif init == "xavier":
        nn.init.xavier_uniform_(layer.weight, gain=gain)
    else:
        raise ValueError(f"unknown init {init!r} (expected 'orthogonal' or 'xavier')")
    nn.init.zeros_(layer.bias)


def mlp(sizes: list[int], init: str, out_gain: float) -> nn.Sequential:
    """tanh MLP.  orthogonal: hidden layers gain sqrt(2), the output layer `out_gain`; xavier: gain 1
    everywhere, the output layer included (the authors' Xavier init ignores the scale it is given)."""
    hidden_gain = math.sqrt(2) if init == "orthogonal" else 1.0
    out_gain = out_gain if init == "orthogonal" else 1.0
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        lin = nn.Linear(a, b)
        last = i == len(sizes) - 2
        _init_linear(lin, init, out_gain if last else hidden_gain)
        layers.append(lin)
        if not last:
            layers.append(nn.Tanh())
    return nn.Sequential(*layers)


class GaussianPolicy(nn.Module):
    """pi(a|s) = N(mean(s), diag(exp(log_std))^2), with a state-independent log-std."""

    def __init__(self, obs_dim: int, act_dim: int, hidden: list[int], init: str, init_log_std: float = 0.0):
        super().__init__()
        self.mean = mlp([obs_dim, *hidden, act_dim], init, out_gain=0.01)
        self.log_std = nn.Parameter(torch.full((act_dim,), float(init_log_std)))

    def forward(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.mean(obs), self.log_std.expand(obs.shape[0], -1)

    def log_prob(self, obs: torch.Tensor, act: torch.Tensor) -> torch.Tensor:
        mean, log_std = self(obs)
        return gaussian_log_prob(mean, log_std, act)

    def entropy(self) -> torch.Tensor:
        return (self.log_std + 0.5 * (1.0 + LOG_2PI)).sum()


class ValueNet(nn.Module):
    def __init__(self, obs_dim: int, hidden: list[int], init: str):
        super().__init__()
        self.net = mlp([obs_dim, *hidden, 1], init, out_gain=1.0)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return self.net(obs).squeeze(-1)


def gaussian_log_prob(mean: torch.Tensor, log_std: torch.Tensor, act: torch.Tensor) -> torch.Tensor:
    z = (act - mean) * torch.exp(-log_std)
    return (-0.5 * z.pow(2) - log_std - 0.5 * LOG_2PI).sum(-1)


def gaussian_kl(mean_p, log_std_p, mean_q, log_std_q) -> torch.Tensor:
    """KL(p || q) between diagonal Gaussians, summed over action dims (one value per row)."""
    var_p, var_q = torch.exp(2 * log_std_p), torch.exp(2 * log_std_q)
    kl = log_std_q - log_std_p + (var_p + (mean_p - mean_q).pow(2)) / (2 * var_q) - 0.5
    return kl.sum(-1)


def flat_params(module: nn.Module) -> torch.Tensor:
    return torch.cat([p.detach().reshape(-1) for p in module.parameters()])


def set_flat_params(module: nn.Module, flat: torch.Tensor) -> None:
    i = 0
    with torch.no_grad():
        for p in module.parameters():
            n = p.numel()
            p.copy_(flat[i:i + n].view_as(p))
            i += n


class RunningMeanStd:
    """Running mean/variance over a stream of batches (Chan et al. parallel update), float64."""

    def __init__(self, shape=()):
        self.mean = np.zeros(shape, np.float64)
        self.var = np.ones(shape, np.float64)
        self.count = 1e-4

    def update(self, x: np.ndarray) -> None:
        x = np.asarray(x, np.float64)
        b_mean, b_var, b_count = x.mean(0), x.var(0), x.shape[0]
        delta = b_mean - self.mean
        total = self.count + b_count
        self.mean = self.mean + delta * b_count / total
        m2 = self.var * self.count + b_var * b_count + delta**2 * self.count * b_count / total
        self.var = m2 / total
        self.count = total

    def state(self) -> dict:
        return {"mean": self.mean.copy(), "var": self.var.copy(), "count": np.float64(self.count)}

    def load(self, state: dict) -> None:
        self.mean = np.array(state["mean"], np.float64)
        self.var = np.array(state["var"], np.float64)
        self.count = float(state["count"])


class ObsNormalizer:
    """(obs - mean) / std, clipped; statistics updated from every observation seen in rollouts."""

    def __init__(self, obs_dim: int, enabled: bool, clip: float | None, eps: float = 1e-8):
        self.rms = RunningMeanStd((obs_dim,))
        self.enabled, self.clip, self.eps = enabled, clip, eps

    def __call__(self, obs: np.ndarray, update: bool = False) -> np.ndarray:
        if not self.enabled:  # a copy: the caller's array (the envs' observation buffer) changes as they step
            return np.array(obs, np.float64)
        if update:
            self.rms.update(obs.reshape(-1, obs.shape[-1]))
        out = (obs - self.rms.mean) / np.sqrt(self.rms.var + self.eps)
        return np.clip(out, -self.clip, self.clip) if self.clip else out


class RewardScaler:
    """Divide rewards by the running std of the discounted return (OpenAI baselines' VecNormalize)."""

    def __init__(self, num_envs: int, gamma: float, enabled: bool, clip: float | None, eps: float = 1e-8):
        self.rms = RunningMeanStd(())
        self.ret = np.zeros(num_envs, np.float64)
        self.gamma, self.enabled, self.clip, self.eps = gamma, enabled, clip, eps

    def __call__(self, reward: np.ndarray, done: np.ndarray, update: bool = True) -> np.ndarray:
        r = np.asarray(reward, np.float64)
        if self.enabled:
            if update:
                self.ret = self.ret * self.gamma + r
                self.rms.update(self.ret)
                self.ret[done] = 0.0
            r = r / np.sqrt(self.rms.var + self.eps)
        return np.clip(r, -self.clip, self.clip) if self.clip else r

    def state(self) -> dict:
        return {**self.rms.state(), "ret": self.ret.copy()}

    def load(self, state: dict) -> None:
        self.rms.load(state)
        self.ret = np.array(state["ret"], np.float64)
