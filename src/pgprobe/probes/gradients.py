"""Gradient probes (figs 1 and 2): how good are the agent's gradient estimates?

A gradient estimate from n pairs at theta_t is the gradient of the agent's own surrogate (its
algorithm's objective, through ProbeAgent.surrogate_grad) on n fresh pairs collected the way the
agent collects (its envs, fresh resets, n / num_envs consecutive steps per env, the bootstrap at
the batch end, normalisers frozen), advantages by the agent's GAE with V_t.  Advantages are
normalised within the batch if `norm_adv` says so (default: as the agent does); that centring acts
as an extra baseline, so it is recorded in every artifact.  All policy parameters, log-std included.

Four probes, each its own declaration and params block:

- `grad_estimates` (checkpoint): R independent estimates for each n of a grid (plus the agent's own
  batch size).  No redundant rollouts: each repeat collects its largest n once, and every smaller n
  is a time-prefix of that batch (`Batch.prefix`: the same numbers a rollout stopped there would give,
  with the batch-end bootstrap at the cut), advantages recomputed on the prefix.  Repeats use
  independent generators (one key per repeat), so the R estimates share no random numbers; the
  estimates of different n within a repeat do share their first steps (nested samples).
- `true_gradient` (checkpoint): g*, the same estimator on N* pairs from another stream, collected in
  chunks of the agent's batch size to bound memory.  Where advantages are normalised they are
  normalised over all N* pairs, not per chunk.  Rather than keeping the chunks for a second pass (or
  collecting them twice), this uses that the surrogate is affine in the advantages: with
  g(A) = g(0) + L(A), L linear, the gradient at the globally normalised advantages
  (A - mu) / (sigma + 1e-8) is g(0) + (L(A) - mu L(1)) / (sigma + 1e-8).  Each chunk contributes
  g(A_raw), g(1) and g(0) (three backward passes on data already in memory) and the sums of its raw
  advantages and their squares; mu and sigma (unbiased, as the trainer's normalisation) come from all
  N* pairs at the end.  One pass, the same number as one big batch (tests/test_gradients.py).
- `grad_variance` (probe grad_estimates): pairwise cosine matrices of the R estimates per n (a small
  file: fig 1's aggregate reads this, not the gradients).
- `grad_convergence` (probes grad_estimates and true_gradient): cos(g_hat_i, g*) per n and repeat.
"""
from __future__ import annotations

import dataclasses

import numpy as np
import torch
import xarray as xr
from tqdm import tqdm

from ..errors import ConfigError
from ..pipeline import shards
from .api import ProbeAgent, ProbeInputs

ESTIMATOR = ("gradient at theta_t of the algorithm's surrogate on n fresh pairs from pi_t, collected as the "
             "agent collects (its envs, fresh resets, n/num_envs consecutive steps each, bootstrap at the batch "
             "end, normalisers frozen); advantages by GAE(gamma, lambda) with V_t")


def _norm_adv(agent: ProbeAgent, cfg: dict) -> bool:
    return agent.norm_adv if cfg.get("norm_adv") is None else bool(cfg["norm_adv"])


def _agent_vars(agent: ProbeAgent) -> dict:
    return {"agent_batch_size": ((), agent.batch_size, {"long_name": "pairs in the agent's own batch"}),
            "params_count": ((), agent.params_count, {"long_name": "policy parameters (log-std included)"})}


# ------------------------------------------------------------------------------- grad_estimates
def estimate_steps(agent: ProbeAgent, n_grid) -> list[int]:
    """Steps per env of each estimate: the grid's n and the agent's batch size, in the agent's units."""
    return sorted({agent.steps_per_env(n) for n in n_grid} | {agent.steps_per_env(agent.batch_size)})


def estimates(agent: ProbeAgent, steps: list[int], repeats: int, seed: int, norm_adv: bool,
              progress: bool = False) -> np.ndarray:
    """(len(steps), repeats, P) float64: per repeat, one batch of max(steps) steps per env and its prefixes."""
    out = np.empty((len(steps), repeats, agent.params_count))
    for r in tqdm(range(repeats), desc="gradient estimates", disable=not progress):
        batch = agent.collect_batch(max(steps) * agent.num_envs, seed, stream="estimates", index=(r,))
        for i, k in enumerate(steps):
            out[i, r] = agent.surrogate_grad(agent.prepare(batch.prefix(k), norm_adv))
    return out


def grad_estimates(inputs: ProbeInputs, cfg: dict, threads: int = 1, progress: bool = True) -> xr.Dataset:
    agent = inputs.agent()
    norm_adv = _norm_adv(agent, cfg)
    steps = estimate_steps(agent, cfg["n_grid"])
    grads = estimates(agent, steps, cfg["repeats"], cfg["seed"], norm_adv, progress)
    n = np.array(steps) * agent.num_envs
    ds = xr.Dataset(
        {"gradient": (("n", "repeat", "param"), grads.astype(np.float32),
                      {"long_name": "gradient estimate of the surrogate at theta_t (float32)"}),
         "gradient_norm": (("n", "repeat"), np.linalg.norm(grads, axis=-1),
                           {"long_name": "l2 norm of the estimate (from the float64 gradient)"}),
         "steps_per_env": (("n",), np.array(steps), {"long_name": "consecutive steps per env"}),
         **_agent_vars(agent)},
        coords={"n": ("n", n, {"long_name": "state-action pairs per estimate", "units": "pairs"}),
                "repeat": np.arange(cfg["repeats"])})
    ds.attrs.update({"norm_adv": int(norm_adv), "estimator": ESTIMATOR,
                     "n_requested": [int(x) for x in cfg["n_grid"]],
                     "sampling": "each repeat its own generator (independent estimates); within a repeat the "
                                 "smaller n are time-prefixes of the largest batch (nested samples)",
                     "advantage_normalisation": "within each estimate's batch" if norm_adv else "none"})
    return ds


# -------------------------------------------------------------------------------- true_gradient
def _grad_with(agent: ProbeAgent, data, adv: torch.Tensor) -> np.ndarray:
    return agent.surrogate_grad(dataclasses.replace(data, advantages=adv))


TERMS = ("raw", "one", "zero")  # the chunk gradients summed: g(A_raw), g(1), g(0) (module docstring)


def true_gradient_blocks(agent: ProbeAgent, n_star: int, chunk: int, seed: int, norm_adv: bool, blocks: int,
                         shard: tuple[int, int] | None = None, progress: bool = False) -> xr.Dataset:
    """The sums g* is made of, per block of consecutive chunks: ceil(n_star / chunk) chunks in
    min(blocks, chunks) contiguous blocks (`shard` (k, n): only the k-th of n runs of blocks).  Each block sums its
    chunks' pair-weighted gradients of the three terms in chunk order and its raw advantages' sums, so
    g* (`true_gradient_finish`) depends on the blocks, not on which job computed them.  Without
    `norm_adv` the terms g(1) and g(0) are not needed and stay 0."""
    chunks = -(-int(n_star) // int(chunk))
    blocks = min(int(blocks), chunks)
    ids = range(blocks)[shards.block(blocks, *shard) if shard else slice(None)]
    grad = np.zeros((len(ids), len(TERMS), agent.params_count))
    adv = np.zeros((len(ids), 2))
    pairs = np.zeros(len(ids), np.int64)
    todo = [(i, c) for i, b in enumerate(ids) for c in range(chunks)[shards.block(chunks, b, blocks)]]
    for i, c in tqdm(todo, desc="true gradient chunks", disable=not progress):
        data = agent.prepare(agent.collect_batch(chunk, seed, stream="true_gradient", index=(c,)), norm_adv=False)
        raw = data.raw_advantages
        for t, a in enumerate((raw, torch.ones_like(raw), torch.zeros_like(raw))[:3 if norm_adv else 1]):
            grad[i, t] += data.n * _grad_with(agent, data, a)
        r64 = raw.double()
        adv[i] += (float(r64.sum()), float((r64 * r64).sum()))
        pairs[i] += data.n
    return xr.Dataset(
        {"block_grad_sum": (("block", "term", "param"), grad,
                            {"long_name": "sum over the block's pairs of the surrogate gradient with advantages "
                                          "A_raw, 1 and 0 (each chunk's gradient times its pairs)"}),
         "block_adv_sum": (("block",), adv[:, 0], {"long_name": "sum of the block's raw GAE advantages"}),
         "block_adv_sq_sum": (("block",), adv[:, 1], {"long_name": "sum of their squares"}),
         "block_pairs": (("block",), pairs, {"long_name": "pairs in the block"}),
         **_agent_vars(agent)},
        coords={"block": np.array(list(ids), np.int64), "term": list(TERMS)},
        attrs={"chunks": chunks, "blocks": blocks, "norm_adv": int(norm_adv),
               "chunk_pairs": agent.steps_per_env(chunk) * agent.num_envs})


def true_gradient_finish(ds: xr.Dataset) -> xr.Dataset:
    """g* from all blocks' sums (one job's, or its shards' gathered): the advantages normalised over all
    pairs where `norm_adv` says so (attr), else raw."""
    norm_adv = bool(ds.attrs["norm_adv"])
    total = int(ds["block_pairs"].values.sum())
    raw, one, zero = ds["block_grad_sum"].values.sum(axis=0) / total
    mean = float(ds["block_adv_sum"].values.sum()) / total
    std = float(np.sqrt(max(float(ds["block_adv_sq_sum"].values.sum()) - total * mean**2, 0.0) / max(total - 1, 1)))
    g = zero + ((raw - zero) - mean * (one - zero)) / (std + 1e-8) if norm_adv else raw
    out = xr.Dataset(
        {"g_star": (("param",), g, {"long_name": "the 'true' gradient g*: the estimator on n_star pairs"}),
         "g_star_norm": ((), np.linalg.norm(g), {"long_name": "l2 norm of g*"}),
         "n_star": ((), total, {"long_name": "pairs g* was estimated from", "units": "pairs"}),
         "adv_mean": ((), mean, {"long_name": "mean of the raw GAE advantages over all pairs"}),
         "adv_std": ((), std, {"long_name": "std (ddof=1) of the raw GAE advantages over all pairs"}),
         "block_pairs": ds["block_pairs"], "agent_batch_size": ds["agent_batch_size"],
         "params_count": ds["params_count"]},
        coords={k: v for k, v in ds.coords.items() if "block" not in v.dims and "term" not in v.dims})
    out.attrs.update(ds.attrs)
    return out


def true_gradient_of(agent: ProbeAgent, n_star: int, chunk: int, seed: int, norm_adv: bool,
                     progress: bool = False, blocks: int = 1) -> tuple[np.ndarray, dict]:
    """g* from at least n_star pairs in chunks of `chunk` pairs (module docstring: the advantages
    normalised over all pairs in one pass).  Returns (g*, what it was made of)."""
    g = true_gradient_finish(true_gradient_blocks(agent, n_star, chunk, seed, norm_adv, blocks, progress=progress))
    return g["g_star"].values, {"pairs": int(g["n_star"]), "chunks": g.attrs["chunks"],
                                "chunk_pairs": g.attrs["chunk_pairs"], "adv_mean": float(g["adv_mean"]),
                                "adv_std": float(g["adv_std"])}


def true_gradient(inputs: ProbeInputs, cfg: dict, threads: int = 1, progress: bool = True,
                  shard=None) -> xr.Dataset:
    """g* (fig 2); `shard` (k, n): only the sums of the k-th of n contiguous runs of blocks, for
    pipeline.shards to gather and `true_gradient_finish` to finish."""
    agent = inputs.agent()
    norm_adv = _norm_adv(agent, cfg)
    chunk = cfg.get("chunk") or agent.batch_size
    ds = true_gradient_blocks(agent, cfg["n_star"], chunk, cfg["seed"], norm_adv, cfg["blocks"], shard, progress)
    ds.attrs.update({"estimator": ESTIMATOR,
                     "advantage_normalisation": ("over all n_star pairs (not per chunk): one pass, the surrogate "
                                                 "being affine in the advantages") if norm_adv else "none",
                     "summation": "each block of consecutive chunks summed in chunk order, then the blocks in "
                                  "block order: the same numbers whether one job or several (shards) made them",
                     "independence": "its own generator stream: shares no sample with grad_estimates"})
    return ds if shard else true_gradient_finish(ds)


# --------------------------------------------------------------------------- derived: cosines
def unit_rows(g: np.ndarray) -> np.ndarray:
    """Rows scaled to unit l2 norm (float64); a zero row becomes NaN (its cosine is undefined)."""
    g = np.asarray(g, np.float64)
    norm = np.linalg.norm(g, axis=-1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(norm > 0, g / norm, np.nan)


def pairwise_cosines(grads: np.ndarray) -> np.ndarray:
    """(..., R, P) -> (..., R, R) cosine similarities."""
    u = unit_rows(grads)
    return np.einsum("...ip,...jp->...ij", u, u)


def _carry(ds: xr.Dataset) -> dict:
    return {k: ds[k] for k in ("agent_batch_size", "params_count")}


def grad_variance(inputs: ProbeInputs, cfg: dict, threads: int = 1, progress: bool = True) -> xr.Dataset:
    est = inputs.artifact("probe:grad_estimates")
    cos = pairwise_cosines(est["gradient"].transpose("n", "repeat", "param").values)
    out = xr.Dataset({"cosine": (("n", "repeat", "repeat_b"), cos,
                                 {"long_name": "cosine similarity of estimates repeat and repeat_b"}),
                      **_carry(est)},
                     coords={"n": est["n"], "repeat": est["repeat"].values, "repeat_b": est["repeat"].values})
    out.attrs.update({"norm_adv": int(est.attrs["norm_adv"]), "estimator": est.attrs["estimator"]})
    return out


def grad_convergence(inputs: ProbeInputs, cfg: dict, threads: int = 1, progress: bool = True) -> xr.Dataset:
    est, true = inputs.artifact("probe:grad_estimates"), inputs.artifact("probe:true_gradient")
    if int(est.attrs["norm_adv"]) != int(true.attrs["norm_adv"]):
        raise ConfigError("probes.grad_estimates.norm_adv and probes.true_gradient.norm_adv disagree "
                          f"({bool(est.attrs['norm_adv'])} vs {bool(true.attrs['norm_adv'])}): g* must be the "
                          "same estimator as the estimates")
    g = est["gradient"].transpose("n", "repeat", "param").values
    g_star = true["g_star"].values
    if g.shape[-1] != g_star.shape[0]:
        raise ConfigError(f"grad_convergence: estimates have {g.shape[-1]} parameters, g* {g_star.shape[0]}")
    cos = unit_rows(g) @ unit_rows(g_star[None])[0]
    out = xr.Dataset({"cosine": (("n", "repeat"), cos, {"long_name": "cosine similarity of the estimate and g*"}),
                      "n_star": true["n_star"], **_carry(est)},
                     coords={"n": est["n"], "repeat": est["repeat"].values})
    out.attrs.update({"norm_adv": int(est.attrs["norm_adv"]), "estimator": est.attrs["estimator"]})
    return out
