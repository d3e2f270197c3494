"""A policy as NumPy arrays: one or K stacked parameter vectors evaluated for a whole batch of
observations with one matmul per layer.  Rollouts and landscape workers use it: a torch call per
env step costs more than the network itself, and worker processes need not import torch.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class PolicyWeights:
    """NumPy copy of one or K stacked policies: layers[i] = (W (K,out,in), b (K,1,out))."""

    layers: list[tuple[np.ndarray, np.ndarray]]
    log_std: np.ndarray  # (K, act_dim)

    @classmethod
    def from_policy(cls, policy) -> "PolicyWeights":
        flat = np.concatenate([p.detach().numpy().reshape(-1) for p in policy.parameters()])
        return cls.from_flat(policy, flat[None])

    @classmethod
    def from_flat(cls, policy, flats: np.ndarray) -> "PolicyWeights":
        """K flat parameter vectors (K, P) laid out like `policy.parameters()`."""
        flats = np.asarray(flats, dtype=np.float64)
        k, i, named = flats.shape[0], 0, {}
        for name, p in policy.named_parameters():
            n = p.numel()
            named[name] = flats[:, i:i + n].reshape(k, *p.shape)
            i += n
        lin = [v for name, v in named.items() if name.startswith("mean.")]
        layers = [(lin[j], lin[j + 1][:, None, :]) for j in range(0, len(lin), 2)]
        return cls(layers, named["log_std"])

    def select(self, rows) -> "PolicyWeights":
        return PolicyWeights([(w[rows], b[rows]) for w, b in self.layers], self.log_std[rows])

    def mean(self, obs: np.ndarray) -> np.ndarray:
        """obs (K, B, obs_dim) -> action means (K, B, act_dim)."""
        x = obs
        last = len(self.layers) - 1
        for j, (w, b) in enumerate(self.layers):
            x = np.matmul(x, w.transpose(0, 2, 1)) + b
            if j < last:
                np.tanh(x, out=x)
        return x
