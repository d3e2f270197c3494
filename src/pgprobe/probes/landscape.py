"""Landscape probe (figs 5-7): surrogate objective and true reward on a plane around theta_t.

The plane is theta(x, y) = theta_t + x * step + y * d: `step` is the update the
algorithm takes (x = 1 is one full step), `d` a random Gaussian direction.  Two
regimes: "few", the agent's own step on its own batch; "many", the same algorithm's
step from theta_t on a fresh batch of `many_samples` pairs.  The surrogate is the
algorithm's own objective on the batch that made the step; the true reward is the
mean return of complete episodes, `samples_per_point` pairs (at least) per point,
with common random numbers across the plane.
"""
from __future__ import annotations

import copy

import numpy as np
import torch
import xarray as xr
from tqdm import tqdm

from .. import artifacts
from ..algos import KINDS, common
from ..checkpoint import Checkpoint
from ..envs import VecEnv
from ..evaluate import parallel_episode_returns
from ..nets import PolicyWeights, flat_params, set_flat_params
from ..rollout import collect

REGIMES = ("few", "many")


def random_direction(policy, rng: np.random.Generator, norm: str, perturb_log_std: bool) -> np.ndarray:
    """A Gaussian direction over the flat policy parameters.

    norm="unit": the whole vector has l2 norm 1 (the paper).  norm="filter": each
    row of each weight matrix (one output neuron) is rescaled to the norm of the same
    row of the weights, biases get 0 (Li et al. 2018).  The log-std part is zero
    unless `perturb_log_std`; under "filter" it is scaled to the norm of the std vector
    exp(log_std) (the log-std's own norm is 0 at initialisation, which would leave it unperturbed).
    """
    parts = []
    for name, p in policy.named_parameters():
        d = rng.standard_normal(p.shape)
        w = p.detach().numpy().astype(np.float64)
        if name == "log_std":
            d = d * (np.linalg.norm(np.exp(w)) / np.linalg.norm(d)) if norm == "filter" else d
            d = d if perturb_log_std else np.zeros_like(d)
        elif norm == "filter":
            if d.ndim == 2:
                d = d / np.linalg.norm(d, axis=1, keepdims=True) * np.linalg.norm(w, axis=1, keepdims=True)
            else:
                d = np.zeros_like(d)
        parts.append(d.reshape(-1))
    flat = np.concatenate(parts)
    if norm == "unit":
        flat = flat / np.linalg.norm(flat)
    elif norm != "filter":
        raise ValueError(f"unknown direction normalisation {norm!r} (expected 'unit' or 'filter')")
    return flat


def many_sample_step(ckpt: Checkpoint, n_pairs: int, envs: int, seed: int):
    """The algorithm's update from theta_t on a fresh batch of n_pairs: (step, TrainData)."""
    tr = ckpt.trainer
    a, t = tr.a, tr.t
    venv = VecEnv(tr.agent["env"], envs)
    rng = np.random.default_rng([seed, 7])
    venv.reset(rng)
    obs_norm, scaler = copy.deepcopy(tr.obs_norm), copy.deepcopy(tr.reward_scaler)
    scaler.ret = np.zeros(envs)
    batch = collect(venv, PolicyWeights.from_policy(tr.policy), obs_norm, scaler, rng, -(-n_pairs // envs))
    venv.close()
    data = common.prepare(batch, tr.policy, tr.value, t["gamma"], t["gae_lambda"], a["norm_adv"])
    policy = copy.deepcopy(tr.policy)
    opt = torch.optim.Adam(policy.parameters(), eps=1e-5)
    opt.load_state_dict(tr.policy_opt.state_dict())
    common.set_lr(opt, a.get("lr", 0.0) * tr.lr_fraction())
    KINDS[a["kind"]].update_policy(policy, opt, data, a, rng)
    return (flat_params(policy) - flat_params(tr.policy)).numpy().astype(np.float64), data


def surrogate_grid(ckpt: Checkpoint, data, thetas: np.ndarray) -> np.ndarray:
    policy = copy.deepcopy(ckpt.trainer.policy)
    objective = KINDS[ckpt.trainer.a["kind"]].objective
    out = np.empty(len(thetas))
    with torch.no_grad():
        for i, theta in enumerate(thetas):
            set_flat_params(policy, torch.as_tensor(theta, dtype=torch.float32))
            out[i] = objective(policy, data, ckpt.trainer.a).item()
    return out


def run(ckpt: Checkpoint, cfg: dict, threads: int = 1, progress: bool = True) -> xr.Dataset:
    tr = ckpt.trainer
    theta = ckpt.theta_before.numpy().astype(np.float64)
    xs = np.linspace(cfg["x"]["min"], cfg["x"]["max"], cfg["x"]["points"])
    ys = np.linspace(cfg["y"]["min"], cfg["y"]["max"], cfg["y"]["points"])
    rng = np.random.default_rng([cfg["seed"], ckpt.seed, ckpt.iteration])
    direction = random_direction(tr.policy, rng, cfg["direction_norm"], cfg["perturb_log_std"])
    obs_std = np.sqrt(tr.obs_norm.rms.var + tr.obs_norm.eps) if tr.obs_norm.enabled else 1.0
    obs_mean = tr.obs_norm.rms.mean if tr.obs_norm.enabled else 0.0
    regimes = [r for r in REGIMES if r in cfg["regimes"]]
    steps, surr, rewards, episodes = [], [], [], []
    for regime in tqdm(regimes, desc="landscape regimes", disable=not progress):
        if regime == "few":
            step, data = ckpt.step.numpy().astype(np.float64), ckpt.data
        else:
            step, data = many_sample_step(ckpt, cfg["many_samples"], cfg["envs_per_point"], cfg["seed"])
        thetas = (theta[None, None] + xs[:, None, None] * step + ys[None, :, None] * direction)
        thetas = thetas.reshape(-1, theta.size)
        surr.append(surrogate_grid(ckpt, data, thetas).reshape(len(xs), len(ys)))
        weights = PolicyWeights.from_flat(tr.policy, thetas)
        per_slot = -(-cfg["samples_per_point"] // cfg["envs_per_point"])
        rets = parallel_episode_returns(tr.agent["env"], weights, obs_mean, obs_std, tr.obs_norm.clip
                                        if tr.obs_norm.enabled else None, per_slot,
                                        cfg["envs_per_point"], cfg["seed"], threads, progress=progress)
        rewards.append(rets)
        steps.append(step)
    return _dataset(ckpt, cfg, regimes, xs, ys, np.array(steps), direction, np.array(surr), rewards)


def _dataset(ckpt, cfg, regimes, xs, ys, steps, direction, surr, rewards) -> xr.Dataset:
    n_ep = max(len(r) for per_regime in rewards for r in per_regime)
    ep = np.full((len(regimes), len(xs) * len(ys), n_ep), np.nan)
    for i, per_regime in enumerate(rewards):
        for j, r in enumerate(per_regime):
            ep[i, j, :len(r)] = r
    ep = ep.reshape(len(regimes), len(xs), len(ys), n_ep)
    count = np.sum(~np.isnan(ep), axis=-1)
    mean = np.nanmean(ep, axis=-1)
    sem = np.nanstd(ep, axis=-1, ddof=1) / np.sqrt(np.maximum(count, 1)) if n_ep > 1 else np.full(mean.shape, np.nan)
    dims = ("regime", "x", "y")
    ds = xr.Dataset(
        {
            "surrogate": (dims, surr, {"long_name": "surrogate objective on the batch that made the step"}),
            "true_reward": (dims, mean, {"long_name": "mean return of complete episodes"}),
            "true_reward_sem": (dims, sem, {"long_name": "standard error of true_reward"}),
            "episodes": (dims, count, {"long_name": "complete episodes per point"}),
            "episode_returns": (dims + ("episode",), ep, {"long_name": "per-episode returns (NaN-padded)"}),
            "step": (("regime", "param"), steps, {"long_name": "the update step theta_t+1 - theta_t (x unit)"}),
            "direction": (("param",), direction, {"long_name": "random direction (y unit)"}),
            "step_norm": (("regime",), np.linalg.norm(steps, axis=1)),
        },
        coords={"regime": list(regimes), "x": ("x", xs, {"units": "full steps"}),
                "y": ("y", ys, {"units": "random-direction units"})},
    )
    ds.attrs.update(artifacts.provenance("probe_landscape", {"probe": cfg, "agent": ckpt.agent, "seed": ckpt.seed},
                                         "probe_landscape"))
    ds.attrs.update({"env": ckpt.agent["env"], "algo": ckpt.agent["algo"], "seed": ckpt.seed,
                     "iteration": ckpt.iteration, "direction_norm": cfg["direction_norm"],
                     "perturb_log_std": int(cfg["perturb_log_std"]), "samples_per_point": cfg["samples_per_point"],
                     "agent_batch": int(ckpt.data.n), "many_samples": cfg["many_samples"]})
    return ds
