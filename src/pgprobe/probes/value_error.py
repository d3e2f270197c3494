"""Value prediction probe (fig 3): how well does the agent's value network predict, on pairs it never saw?

At iteration t, `batches` held-out batches, each of the agent's batch size, collected from pi_t the way the
agent collects (its rollout code and num_envs, fresh resets; its own generator stream, so neither the agent's
samples nor its generator), updating nothing (normalisers frozen as when the agent made its step).  Targets,
from the agent's own code and in the reward units the agent optimised (its train rewards: scaled, and
clipped, where the algorithm scales rewards, as PPO does), with V_old, the value network before the
iteration's fit:

- `gae`: the agent's own training target V_old + A_GAE (gamma, lambda and the truncation rules it trains with);
- `returns`: the realised discounted return to go within each episode, cut by the batch end without a
  bootstrap (as the authors' code computes it);
- `returns_complete`: the same on the pairs whose episode ended within the batch (the batch end cuts the
  others short, which inflates their error).

The network measured is V after the iteration's fit, on the pairs its loss would use (`value_mask`: the last
step of each episode left out unless train.fit_done_steps).  The measure, for every target alike:

    MRE = mean_i |V(s_i) - y_i| / |y_i|,

over the pairs with |y_i| >= min_rel_target * mean_j |y_j| (a target near zero would make one ratio
dominate the mean; the fraction left out is stored).  Also stored: sum_i |V - y| / sum_i |y|, which needs
no floor, the MRE of V_old (before the fit), and every pair's values and targets.
"""
from __future__ import annotations

import numpy as np
import torch
import xarray as xr
from tqdm import tqdm

from .api import ProbeAgent, ProbeInputs
from .returns import mc_returns

TARGET_LABELS = {"gae": "the agent's training target V_old + A_GAE",
                 "returns": "realised discounted return to go within the episode (cut by the batch end, "
                            "no bootstrap)",
                 "returns_complete": "the same, pairs of episodes that ended within the batch only"}
TARGETS = tuple(TARGET_LABELS)
PAIR_VARS = {"value": "V(s) after the iteration's fit",
             "value_old": "V_old(s): before the fit",
             "target_gae": "V_old(s) + A_GAE",
             "target_return": "discounted return to go within the episode (train rewards)",
             "return_complete": "1 where the pair's episode ended within its batch",
             "value_mask": "1 where the pair enters the agent's value loss"}
MEASURE_LABELS = {
    "mre": "mean relative error mean |V - y| / |y| of V after the fit (pairs with |y| below the floor left out)",
    "fraction_near_zero": "fraction of the target's pairs left out of mre: |y| < min_rel_target * mean |y|",
    "sum_relative_error": "sum |V - y| / sum |y| over all the target's pairs (no floor needed)",
    "mre_before_fit": "mre of V_old, the value network before the iteration's fit",
    "pairs": "pairs the target is measured on",
    "target_abs_mean": "mean |y| over those pairs (reward units: see attrs)",
}


def relative_error(v: np.ndarray, y: np.ndarray, min_rel: float) -> tuple[float, float, float]:
    """(mean |v - y| / |y| over the pairs with |y| >= min_rel * mean |y| and |y| > 0, the fraction of pairs
    left out by that floor, sum |v - y| / sum |y|); NaN where nothing is left."""
    if not len(y):
        return np.nan, np.nan, np.nan
    abs_y, err = np.abs(y), np.abs(v - y)
    kept = (abs_y >= min_rel * abs_y.mean()) & (abs_y > 0)
    mre = float(np.mean(err[kept] / abs_y[kept])) if kept.any() else np.nan
    total = float(err.sum() / abs_y.sum()) if abs_y.sum() > 0 else np.nan
    return mre, float(1.0 - kept.mean()), total


def heldout_pairs(agent: ProbeAgent, batches: int, seed: int, progress: bool = False) -> dict:
    """PAIR_VARS as (batches, pairs) arrays: each batch the agent's size from pi_t, its targets with V_old."""
    v_new = agent.value_after_fit
    rows = []
    for b in tqdm(range(batches), desc="value error: held-out batches", disable=not progress):
        batch = agent.collect_batch(agent.batch_size, seed, stream="value_error", index=(b,))
        data = agent.prepare(batch)  # the agent's GAE with its V_t = V_old
        ret, complete = mc_returns(batch, agent.gamma, agent.bootstrap_truncation)
        with torch.no_grad():
            value = v_new(data.obs).numpy()
        rows.append({"value": value, "value_old": data.values_old.numpy(), "target_gae": data.returns.numpy(),
                     "target_return": ret.reshape(-1), "return_complete": complete.reshape(-1).astype(np.int8),
                     "value_mask": data.value_mask.numpy().astype(np.int8)})
    return {k: np.stack([r[k] for r in rows]) for k in PAIR_VARS}


def target_pairs(pairs: dict) -> dict:
    """Per target: (its values y, the pairs it is measured on) over the flattened batches."""
    mask = pairs["value_mask"].reshape(-1).astype(bool)
    complete = pairs["return_complete"].reshape(-1).astype(bool)
    gae, ret = pairs["target_gae"].reshape(-1), pairs["target_return"].reshape(-1)
    return {"gae": (gae, mask), "returns": (ret, mask), "returns_complete": (ret, mask & complete)}


def measures(pairs: dict, min_rel: float) -> dict:
    """MEASURE_LABELS as (target,) arrays: V after the fit (and the MRE of V_old) against each target."""
    v, v_old = pairs["value"].reshape(-1), pairs["value_old"].reshape(-1)
    rows = []
    for y, on in target_pairs(pairs).values():
        mre, near_zero, total = relative_error(v[on], y[on], min_rel)
        rows.append({"mre": mre, "fraction_near_zero": near_zero, "sum_relative_error": total,
                     "mre_before_fit": relative_error(v_old[on], y[on], min_rel)[0], "pairs": int(on.sum()),
                     "target_abs_mean": float(np.abs(y[on]).mean()) if on.any() else np.nan})
    return {k: np.array([r[k] for r in rows]) for k in MEASURE_LABELS}


def reward_units(agent: ProbeAgent) -> str:
    a = agent.agent["algo_cfg"]
    unit = ("env reward / sqrt(running variance of the discounted return, frozen at t): the agent's reward scaling"
            if a["reward_scaling"] else "env reward (the agent does not scale rewards)")
    return unit + (f", clipped at +-{a['reward_clip']}" if a["reward_clip"] else "")


def run(inputs: ProbeInputs, cfg: dict, threads: int = 1, progress: bool = True) -> xr.Dataset:
    agent = inputs.agent()
    pairs = heldout_pairs(agent, cfg["batches"], cfg["seed"], progress)
    per_target = measures(pairs, cfg["min_rel_target"])
    ds = xr.Dataset(
        {**{k: (("target",), x, {"long_name": MEASURE_LABELS[k]}) for k, x in per_target.items()},
         **{k: (("batch", "pair"), x, {"long_name": PAIR_VARS[k]}) for k, x in pairs.items()},
         "agent_batch_size": ((), agent.batch_size, {"long_name": "pairs in the agent's own batch (= per held-out "
                                                                  "batch)"})},
        coords={"target": list(TARGETS), "batch": np.arange(cfg["batches"]),
                "pair": ("pair", np.arange(pairs["value"].shape[1]), {"long_name": "time-major: t * num_envs + env"})})
    ds.attrs.update({
        "targets": "; ".join(f"{k}: {v}" for k, v in TARGET_LABELS.items()),
        "value_network": "V after the iteration's fit (checkpoint value_theta_next) is measured; V_old (value_theta, "
                         "before the fit) makes the GAE targets and mre_before_fit",
        "heldout": f"{cfg['batches']} batch(es) of the agent's batch size from pi_t: its rollout and num_envs, fresh "
                   "resets, normalisers frozen, generator stream 'value_error'; used for nothing else",
        "pairs_measured": "the value loss's pairs (value_mask: episode-final steps out unless train.fit_done_steps), "
                          "for returns_complete only those of episodes that ended within their batch",
        "measure": "absolute error over absolute target, |V - y| / |y|, for every target (the authors' code divides "
                   "the squared error by |y| for the GAE target and the absolute error for the returns)",
        "near_zero": f"pairs with |y| < min_rel_target * mean |y| = {cfg['min_rel_target']} * mean |y| (over the "
                     "target's pairs) are left out of mre and mre_before_fit; their fraction: fraction_near_zero",
        "reward_units": reward_units(agent) + "; a relative error does not depend on a common scale of rewards",
        "episode_end": "termination" + ("" if agent.bootstrap_truncation else " or time-limit truncation"),
        "gamma": agent.gamma, "gae_lambda": agent.agent["train"]["gae_lambda"],
        "min_rel_target": cfg["min_rel_target"]})
    return ds
