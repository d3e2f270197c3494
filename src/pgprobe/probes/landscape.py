"""Landscape probe (figs 5-7): surrogate objective and true reward on a plane around theta_t.

The plane is theta(x, y) = theta_t + x * step + y * d: `step` is the update the algorithm takes
(x = 1 is one full step, theta_t+1), `d` a random Gaussian direction.  Two regimes: "few", the
agent's own step on its own batch; "many", the same algorithm's step from theta_t on a fresh batch
of `many_samples` pairs (collected as the agent collects, normalisers frozen).

`run` (figs 6 and 7): for each regime, the surrogate (the algorithm's own objective on the batch
that made the step) and the true reward (the mean return of complete episodes, at least
`samples_per_point` pairs per point, with common random numbers across the plane: each
environment slot's episodes and action noise keyed by slot, episode, step).

`concentration` (fig 5): one regime's plane, true reward only, at several budgets of pairs per
point; independent samples per point and per budget unless `crn` (the noise is what it shows).

A TRPO step that the line search rejected is zero; the plane then uses the full step TRPO
proposed (recorded as `step_rejected`), rather than collapsing to a line.
"""
from __future__ import annotations

import numpy as np
import xarray as xr
from tqdm import tqdm

from ..pipeline import shards
from .api import ProbeAgent, ProbeInputs

REGIMES = ("few", "many")
# Fig 5's budgets: the paper's caption (pairs per point) and the talk (trajectories per point)
PAPER_BUDGET_PAIRS = (2_000, 20_000, 1_000_000)
TALK_BUDGET_TRAJECTORIES = (20, 200, 1000)


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


def grid(cfg: dict, shard=None) -> tuple[np.ndarray, np.ndarray]:
    """The plane's x and y values; with `shard` (k, n), only the k-th of n blocks of x rows."""
    xs = np.linspace(cfg["x"]["min"], cfg["x"]["max"], cfg["x"]["points"])
    return (xs if shard is None else xs[shards.block(len(xs), *shard)],
            np.linspace(cfg["y"]["min"], cfg["y"]["max"], cfg["y"]["points"]))


def _first_row(cfg: dict, shard) -> int:
    return 0 if shard is None else shards.block(int(cfg["x"]["points"]), *shard).start


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


def plane(theta: np.ndarray, step: np.ndarray, direction: np.ndarray, xs, ys) -> np.ndarray:
    """(len(xs) * len(ys), P): theta + x * step + y * direction, x-major (point k is x[k // ny], y[k % ny])."""
    return (theta[None, None] + xs[:, None, None] * step + ys[None, :, None] * direction).reshape(-1, theta.size)


def direction_of(agent: ProbeAgent, cfg: dict) -> np.ndarray:
    """The plane's random direction: the same for every probe of this agent and iteration with this seed."""
    return random_direction(agent.policy, agent.rng(cfg["seed"], "direction"), cfg["direction_norm"],
                            cfg["perturb_log_std"])


def slot_steps(pairs: int, envs: int) -> int:
    """Steps each of a point's `envs` slots takes so that the point gets at least `pairs` pairs."""
    return -(-int(pairs) // int(envs))


def step_facts(agent: ProbeAgent, regime: str, cfg: dict, direction: np.ndarray) -> dict:
    """One regime's step, the batch that made it, and the step's and the direction's size in KL."""
    step, data, rejected = regime_step(agent, regime, cfg)
    return {"step": step, "data": data, "rejected": rejected,
            "kl_step": agent.mean_kl(data, agent.theta + step),
            "kl_direction": agent.mean_kl(data, agent.theta + direction),
            "batch_size": agent.agent_batch.n if regime == "few" else cfg["many_samples"]}


def run(inputs: ProbeInputs, cfg: dict, threads: int = 1, progress: bool = True, shard=None) -> xr.Dataset:
    """Figs 6 and 7: surrogate and true reward on each regime's plane, common random numbers.
    `shard` (k, n): only the k-th of n blocks of x rows (pipeline.shards gathers them)."""
    agent = inputs.agent()
    xs, ys = grid(cfg, shard)
    direction = direction_of(agent, cfg)
    regimes = [r for r in REGIMES if r in cfg["regimes"]]
    facts, surrogates, episodes = [], [], []
    for regime in tqdm(regimes, desc="landscape regimes", disable=not progress):
        f = step_facts(agent, regime, cfg, direction)
        thetas = plane(agent.theta, f["step"], direction, xs, ys)
        facts.append(f)
        surrogates.append(agent.surrogate(f["data"], thetas).reshape(len(xs), len(ys)))
        episodes.append(agent.episodes_at(thetas, slot_steps(cfg["samples_per_point"], cfg["envs_per_point"]),
                                          cfg["envs_per_point"], agent.evaluation_seed(cfg["seed"]),
                                          workers=threads, progress=progress))
    ds = xr.Dataset(
        {**episode_vars(episodes, "regime", len(xs), len(ys), agent.gamma),
         **step_vars(facts, ("regime",), direction),
         "surrogate": (("regime", "x", "y"), np.array(surrogates),
                       {"long_name": "the algorithm's surrogate objective on the batch that made the step"})},
        coords=_coords(xs, ys, regime=list(regimes)))
    ds.attrs.update(plane_attrs(agent, cfg))
    ds.attrs.update({"samples_per_point": cfg["samples_per_point"], "envs_per_point": cfg["envs_per_point"],
                     "common_random_numbers": "episodes and action noise keyed by (slot, episode, step), "
                                              "shared by every point of the plane (not by other agents or iterations)",
                     "surrogate_definition": _surrogate_definition(agent.kind)})
    return ds


def concentration(inputs: ProbeInputs, cfg: dict, threads: int = 1, progress: bool = True,
                  shard=None) -> xr.Dataset:
    """Fig 5: the true reward on `cfg["regime"]`'s plane at each of `cfg["budgets"]` (pairs per point, split
    over that budget's `envs` slots).  Without `crn` every point and every budget has its own seed
    (`ProbeAgent.evaluation_seeds`): independent samples, none shared between budgets.  `shard` (k, n):
    only the k-th of n blocks of x rows, each point seeded by its place in the whole plane."""
    agent = inputs.agent()
    xs, ys = grid(cfg, shard)
    first_point = _first_row(cfg, shard) * len(ys)
    direction = direction_of(agent, cfg)
    facts = step_facts(agent, cfg["regime"], cfg, direction)
    thetas = plane(agent.theta, facts["step"], direction, xs, ys)
    seeds, episodes = [], []
    for b, budget in enumerate(tqdm(cfg["budgets"], desc="landscape budgets", disable=not progress)):
        seed = agent.evaluation_seeds(cfg["seed"], first_point + len(thetas), cfg["crn"], index=(b,))
        seed = seed if cfg["crn"] else seed[first_point:]
        seeds.append(np.broadcast_to(seed, len(thetas)).reshape(len(xs), len(ys)))
        episodes.append(agent.episodes_at(thetas, slot_steps(budget["pairs"], budget["envs"]), budget["envs"], seed,
                                          workers=threads, progress=progress))
    pairs = [b["pairs"] for b in cfg["budgets"]]
    ds = xr.Dataset(
        {**episode_vars(episodes, "budget", len(xs), len(ys), agent.gamma),
         **step_vars([facts], (), direction),
         "evaluation_seed": (("budget", "x", "y"), np.array(seeds, np.int64),
                             {"long_name": "seed of the point's episodes and action noise (evaluate.episodes)"}),
         "budget_envs": (("budget",), np.array([b["envs"] for b in cfg["budgets"]]),
                         {"long_name": "env slots per point: each runs complete episodes until it has taken "
                                       "pairs/envs steps"})},
        coords=_coords(xs, ys, budget=("budget", pairs, {"long_name": "state-action pairs per point (at least)"})))
    ds.attrs.update({**plane_attrs(agent, cfg), **_concentration_attrs(cfg)})
    return ds


def _concentration_attrs(cfg: dict) -> dict:
    """Fig 5's sampling, and the choices the paper leaves open."""
    return {
        "regime": cfg["regime"],
        "common_random_numbers": int(cfg["crn"]),
        "sampling": ("common random numbers: one seed per budget, shared by every point" if cfg["crn"] else
                     "independent: every point at every budget has its own seed (from the probe seed, the "
                     "budget's index and the point's flat grid index), so no episode is shared between points "
                     "or between budgets; the small budget is not a prefix of the large one"),
        "paper_budget_pairs": list(PAPER_BUDGET_PAIRS),
        "talk_budget_trajectories": list(TALK_BUDGET_TRAJECTORIES),
        "budget_unit": "state-action pairs per point, as the paper's caption; the talk's trajectory counts are "
                       "recorded beside them, and the realised episodes and pairs per point are stored",
        "open_choices": "not in the paper (nor in the authors' public code, which has no landscape code): the grid; "
                        "the true reward as the undiscounted mean return (discounted returns stored per episode); "
                        "each budget's env slots (a slot finishes its last episode, so a point overshoots its "
                        "budget by under one episode per slot); the plane: with probes.landscape's seed, "
                        "direction settings and many_samples, it is fig 6's 'many' plane",
    }


def _coords(xs, ys, **outer) -> dict:
    return {**outer, "x": ("x", xs, {"units": "full steps"}), "y": ("y", ys, {"units": "random-direction units"})}


def episode_vars(episodes: list[list[dict]], outer: str, nx: int, ny: int, gamma: float) -> dict:
    """Per (outer, x, y) point, from `episodes[i][point]` (point k = x[k // ny], y[k % ny]): the true
    reward (mean return), its standard error, episodes and pairs, and each episode (NaN-padded).
    Each point's statistics come from its own episodes alone, not from the padded array: the same bits
    whatever the other points (a shard holds some of them; a padded sum would round differently)."""
    shape = (len(episodes), nx, ny)
    n_ep = max(len(e["return"]) for per_outer in episodes for e in per_outer)
    per_episode = {k: np.full(shape + (n_ep,), np.nan) for k in ("return", "discounted_return", "length")}
    stats = np.full(shape + (4,), np.nan)  # mean, sem, episodes, pairs
    for i, per_outer in enumerate(episodes):
        for j, e in enumerate(per_outer):
            at = (i, *np.unravel_index(j, shape[1:]))
            for k in per_episode:
                per_episode[k][at][:len(e[k])] = e[k]
            ret = np.asarray(e["return"], np.float64)
            sem = ret.std(ddof=1) / np.sqrt(ret.size) if ret.size > 1 else np.nan
            stats[at] = (ret.mean() if ret.size else np.nan, sem, ret.size, np.sum(e["length"]))
    dims, ep_dims = (outer, "x", "y"), (outer, "x", "y", "episode")
    return {
        "true_reward": (dims, stats[..., 0], {"long_name": "mean undiscounted return of complete episodes"}),
        "true_reward_sem": (dims, stats[..., 1], {"long_name": "standard error of true_reward (over episodes)"}),
        "episodes": (dims, stats[..., 2].astype(np.int64), {"long_name": "complete episodes per point"}),
        "pairs": (dims, stats[..., 3].astype(np.int64),
                  {"long_name": "state-action pairs per point (the steps of its complete episodes)"}),
        "episode_return": (ep_dims, per_episode["return"], {"long_name": "undiscounted return per episode (NaN-padded)"}),
        "episode_discounted_return": (ep_dims, per_episode["discounted_return"],
                                      {"long_name": f"discounted return per episode (gamma = {gamma})"}),
        "episode_length": (ep_dims, per_episode["length"], {"long_name": "episode length (steps)"}),
    }


def step_vars(facts: list[dict], dims: tuple, direction: np.ndarray) -> dict:
    """The step(s) and the direction: vectors, norms, KL sizes; `dims` () for one step, ("regime",) for several."""
    def per(key, dtype=None):
        v = np.array([f[key] for f in facts], dtype)
        return v if dims else v[0]

    steps = per("step")
    return {
        "step": (dims + ("param",), steps, {"long_name": "the update step theta_t+1 - theta_t (x unit)"}),
        "direction": (("param",), direction, {"long_name": "random direction (y unit)"}),
        "step_norm": (dims, np.linalg.norm(steps, axis=-1), {"long_name": "l2 norm of the step"}),
        "direction_norm": ((), np.linalg.norm(direction), {"long_name": "l2 norm of the direction"}),
        "kl_step": (dims, per("kl_step"), {"long_name": "mean KL(pi_t || pi at x=1, y=0) over the batch's states"}),
        "kl_direction": (dims, per("kl_direction"),
                         {"long_name": "mean KL(pi_t || pi at x=0, y=1) over the batch's states"}),
        "step_rejected": (dims, per("rejected", np.int8),
                          {"long_name": "1: the line search rejected the step; x follows the proposed full step"}),
        "batch_size": (dims, per("batch_size"), {"long_name": "pairs in the batch that made the step"}),
    }


def plane_attrs(agent: ProbeAgent, cfg: dict) -> dict:
    """What every landscape artifact says about its plane and its true reward."""
    return {"direction_norm_kind": cfg["direction_norm"], "perturb_log_std": int(cfg["perturb_log_std"]),
            "true_reward_definition": "undiscounted return of complete episodes (each of a point's env slots runs "
                                      "until it has taken its share of the point's pairs, then finishes its "
                                      "episode); observations normalised with the statistics frozen at the end of "
                                      "iteration t's rollout; actions "
                                      + ("clipped to the action space" if agent.clip_actions else "raw"),
            "many_batch_collection": f"the agent's rollout: {agent.num_envs} env(s), fresh resets, "
                                     "normalisers frozen at theta_t",
            "many_step": "the algorithm's update from theta_t on the many-sample batch with its settings "
                         "at t (PPO: its epochs x minibatches and its Adam state and learning rate at t; "
                         "TRPO: CG on a fisher_frac subsample, line search on the whole batch)"}


def _surrogate_definition(kind: str) -> str:
    adv = "GAE advantages with V_t, normalised over the whole batch where the algorithm normalises"
    if kind == "ppo":
        return f"mean of min(r A, clip(r, 1-eps, 1+eps) A) over the batch, no entropy term; {adv}"
    return f"mean of r A over the batch (importance-sampled); {adv}"
