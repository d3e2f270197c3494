"""Landscape probe (figs 5-7): surrogate objective and true reward on a plane around theta_t.

The plane is theta(x, y) = theta_t + x * step + y * d: `step` is the update the algorithm takes
(x = 1 is one full step, theta_t+1), `d` a random Gaussian direction.  Two regimes: "few", the
agent's own step on its own batch; "many", the same algorithm's step from theta_t on a fresh batch
of `many_samples` pairs (collected as the agent collects, normalisers frozen).  The surrogate is
the algorithm's own objective on the batch that made the step; the true reward is the mean return
of complete episodes, at least `samples_per_point` pairs per point, with common random numbers
across the plane (each environment slot's episodes and action noise keyed by slot, episode, step).

A TRPO step that the line search rejected is zero; the plane then uses the full step TRPO
proposed (recorded as `step_rejected`), rather than collapsing to a line.
"""
from __future__ import annotations

import numpy as np
import xarray as xr
from tqdm import tqdm

from .api import ProbeAgent, ProbeInputs

REGIMES = ("few", "many")


def random_direction(policy, rng: np.random.Generator, norm: str, perturb_log_std: bool) -> np.ndarray:
    """A Gaussian direction over the flat policy parameters.

    norm="unit": the whole vector has l2 norm 1 (the paper).  norm="filter": each row of each
    weight matrix (one output neuron) is rescaled to the norm of the same row of the weights,
    biases get 0 (Li et al. 2018).  The log-std part is zero unless `perturb_log_std`; under
    "filter" it is scaled to the norm of the std vector exp(log_std) (the log-std's own norm is 0
    at initialisation, which would leave it unperturbed).
    """
    if norm not in ("unit", "filter"):
        raise ValueError(f"unknown direction normalisation {norm!r} (expected 'unit' or 'filter')")
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
    return flat / np.linalg.norm(flat) if norm == "unit" else flat


def grid(cfg: dict) -> tuple[np.ndarray, np.ndarray]:
    return (np.linspace(cfg["x"]["min"], cfg["x"]["max"], cfg["x"]["points"]),
            np.linspace(cfg["y"]["min"], cfg["y"]["max"], cfg["y"]["points"]))


def regime_step(agent: ProbeAgent, regime: str, cfg: dict):
    """(step, the batch that made it, step rejected by the line search?) for one regime."""
    if regime == "few":
        data, step, fraction, proposed = agent.agent_batch, agent.agent_step, agent.step_fraction, agent.proposed_step
    else:
        data = agent.collect(cfg["many_samples"], seed=cfg["seed"])
        step, extra = agent.algorithm_step(data, seed=cfg["seed"])
        fraction, proposed = extra.get("step_fraction", np.nan), extra.get("full_step")
    rejected = fraction == 0.0 and proposed is not None
    return (np.asarray(proposed, np.float64) if rejected else step), data, rejected


def run(inputs: ProbeInputs, cfg: dict, threads: int = 1, progress: bool = True) -> xr.Dataset:
    agent = inputs.agent()
    xs, ys = grid(cfg)
    direction = random_direction(agent.policy, agent.rng(cfg["seed"], "direction"), cfg["direction_norm"],
                                 cfg["perturb_log_std"])
    regimes = [r for r in REGIMES if r in cfg["regimes"]]
    per_slot = -(-cfg["samples_per_point"] // cfg["envs_per_point"])
    out = {k: [] for k in ("step", "rejected", "surrogate", "kl_step", "kl_direction", "episodes")}
    for regime in tqdm(regimes, desc="landscape regimes", disable=not progress):
        step, data, rejected = regime_step(agent, regime, cfg)
        thetas = (agent.theta[None, None] + xs[:, None, None] * step + ys[None, :, None] * direction)
        thetas = thetas.reshape(-1, agent.theta.size)
        out["step"].append(step)
        out["rejected"].append(rejected)
        out["surrogate"].append(agent.surrogate(data, thetas).reshape(len(xs), len(ys)))
        out["kl_step"].append(agent.mean_kl(data, agent.theta + step))
        out["kl_direction"].append(agent.mean_kl(data, agent.theta + direction))
        out["episodes"].append(agent.episodes_at(thetas, per_slot, cfg["envs_per_point"],
                                                 agent.evaluation_seed(cfg["seed"]), workers=threads,
                                                 progress=progress))
    return _dataset(agent, cfg, regimes, xs, ys, direction, out)


def _dataset(agent: ProbeAgent, cfg: dict, regimes, xs, ys, direction, out) -> xr.Dataset:
    shape = (len(regimes), len(xs), len(ys))
    n_ep = max(len(e["return"]) for per_regime in out["episodes"] for e in per_regime)
    per_episode = {k: np.full(shape + (n_ep,), np.nan) for k in ("return", "discounted_return", "length")}
    for i, per_regime in enumerate(out["episodes"]):
        for j, e in enumerate(per_regime):
            for k in per_episode:
                per_episode[k][(i, *np.unravel_index(j, shape[1:]))][:len(e[k])] = e[k]
    ret = per_episode["return"]
    count = np.sum(~np.isnan(ret), axis=-1)
    mean = np.nanmean(ret, axis=-1)
    sem = np.nanstd(ret, axis=-1, ddof=1) / np.sqrt(count) if n_ep > 1 else np.full(shape, np.nan)
    steps = np.array(out["step"])
    dims = ("regime", "x", "y")
    ep_dims = dims + ("episode",)
    ds = xr.Dataset(
        {
            "surrogate": (dims, np.array(out["surrogate"]),
                          {"long_name": "the algorithm's surrogate objective on the batch that made the step"}),
            "true_reward": (dims, mean, {"long_name": "mean undiscounted return of complete episodes"}),
            "true_reward_sem": (dims, sem, {"long_name": "standard error of true_reward (over episodes)"}),
            "episodes": (dims, count, {"long_name": "complete episodes per point"}),
            "episode_return": (ep_dims, ret, {"long_name": "undiscounted return per episode (NaN-padded)"}),
            "episode_discounted_return": (ep_dims, per_episode["discounted_return"],
                                          {"long_name": f"discounted return per episode (gamma = {agent.gamma})"}),
            "episode_length": (ep_dims, per_episode["length"], {"long_name": "episode length (steps)"}),
            "step": (("regime", "param"), steps, {"long_name": "the update step theta_t+1 - theta_t (x unit)"}),
            "direction": (("param",), direction, {"long_name": "random direction (y unit)"}),
            "step_norm": (("regime",), np.linalg.norm(steps, axis=1), {"long_name": "l2 norm of the step"}),
            "direction_norm": ((), np.linalg.norm(direction), {"long_name": "l2 norm of the direction"}),
            "kl_step": (("regime",), np.array(out["kl_step"]),
                        {"long_name": "mean KL(pi_t || pi at x=1, y=0) over the batch's states"}),
            "kl_direction": (("regime",), np.array(out["kl_direction"]),
                             {"long_name": "mean KL(pi_t || pi at x=0, y=1) over the batch's states"}),
            "step_rejected": (("regime",), np.array(out["rejected"], np.int8),
                              {"long_name": "1: the line search rejected the step; x follows the proposed full step"}),
            "batch_size": (("regime",), np.array([agent.agent_batch.n if r == "few" else cfg["many_samples"]
                                                  for r in regimes]),
                           {"long_name": "pairs in the batch that made the step"}),
        },
        coords={"regime": list(regimes), "x": ("x", xs, {"units": "full steps"}),
                "y": ("y", ys, {"units": "random-direction units"})},
    )
    ds.attrs.update({"direction_norm_kind": cfg["direction_norm"], "perturb_log_std": int(cfg["perturb_log_std"]),
                     "samples_per_point": cfg["samples_per_point"], "envs_per_point": cfg["envs_per_point"],
                     "common_random_numbers": "episodes and action noise keyed by (slot, episode, step), "
                                              "shared by every point of the plane (not by other agents or iterations)",
                     "true_reward_definition": "undiscounted return of complete episodes (each env slot runs until "
                                               "it has taken samples_per_point/envs_per_point steps, then finishes "
                                               "its episode); observations normalised with the statistics frozen at "
                                               "the end of iteration t's rollout; actions "
                                               + ("clipped to the action space" if agent.clip_actions else "raw"),
                     "surrogate_definition": _surrogate_definition(agent.kind),
                     "many_batch_collection": f"the agent's rollout: {agent.num_envs} env(s), fresh resets, "
                                              "normalisers frozen at theta_t",
                     "many_step": "the algorithm's update from theta_t on the many-sample batch with its settings "
                                  "at t (PPO: its epochs x minibatches and its Adam state and learning rate at t; "
                                  "TRPO: CG on a fisher_frac subsample, line search on the whole batch)"})
    return ds


def _surrogate_definition(kind: str) -> str:
    adv = "GAE advantages with V_t, normalised over the whole batch where the algorithm normalises"
    if kind == "ppo":
        return f"mean of min(r A, clip(r, 1-eps, 1+eps) A) over the batch, no entropy term; {adv}"
    return f"mean of r A over the batch (importance-sampled); {adv}"
