"""Baseline probes (fig 4): how much does the agent's value network reduce gradient variance?

Fig 1's measure (mean pairwise cosine of R independent gradient estimates from n pairs) with three
advantage estimators on the same samples:

- `agent`: the agent's own, GAE(gamma, lambda) with its value network V_t;
- `true_value`: GAE(gamma, lambda) with a "true" value function: a fresh value network regressed on
  discounted Monte Carlo returns of many fresh pairs (probe `true_value`);
- `none`: no baseline, the discounted return to go (GAE with lambda = 1 and V = 0).

Advantage normalisation is a baseline too (centring by the batch mean): this probe's `norm_adv`
defaults to False, so that `none` is no baseline at all; it is recorded in every artifact.

Two probes, each its own declaration and params block:

- `true_value` (checkpoint): n_fit fresh pairs from pi_t (its own stream, in chunks of `chunk` pairs),
  the discounted return to go of each pair within its episode (the train rewards the agent optimises,
  its gamma; an episode ends where the agent's value targets end it: termination, and a time-limit
  truncation unless the agent bootstraps there).  Pairs of an episode still open at the end of its
  chunk have a truncated return and are LEFT OUT of the fit (no bootstrap: nothing of V_t enters the
  "true" value).  Leaving them out favours states of episodes that end within a chunk; chunks much
  longer than an episode make that small (the fraction left out is recorded).  A fresh ValueNet (the
  agent's architecture and init, its own seed; the output bias set to the targets' mean, so that
  Adam need not spend its steps on the scale of the returns) is fitted by Adam on the squared error,
  a `holdout` fraction of the pairs kept out for the diagnostics (loss, explained variance, and the
  same for V_t on the same pairs).  Stores the fitted parameters; `value_net` rebuilds the network.
- `baseline_grads` (checkpoint, probe true_value): per repeat one batch of the largest n (stream
  "baselines", not grad_estimates'), its time-prefixes for the smaller n (as grad_estimates), and on
  each prefix the three gradients.  Stores their pairwise cosine matrices per baseline and n (small),
  the gradient norms and, at the largest n, the cosines between the baselines' mean gradients (every
  baseline leaves the expected gradient unchanged: these approach 1), not the gradients.
"""
from __future__ import annotations

import numpy as np
import torch
import xarray as xr
from tqdm import tqdm

from ..errors import ConfigError
from ..nets import flat_params, set_flat_params
from .api import ProbeAgent, ProbeInputs
from .gradients import _agent_vars, estimate_steps, pairwise_cosines, unit_rows
from .returns import mc_returns

BASELINES = ("agent", "true_value", "none")
BASELINE_LABELS = {"agent": "agent's value network V_t, GAE lambda",
                   "true_value": "'true' value function (fit to MC returns), GAE lambda",
                   "none": "no baseline: discounted return to go (lambda = 1, V = 0)"}


# ---------------------------------------------------------------------------------- true_value
def fit_samples(agent: ProbeAgent, n_fit: int, chunk: int, seed: int, progress: bool = False):
    """(obs (M, d) float32, returns (M,) float64, pairs collected): the complete-return pairs of at least
    n_fit fresh pairs, collected in chunks."""
    chunks = -(-int(n_fit) // int(chunk))
    obs, ret, total = [], [], 0
    for c in tqdm(range(chunks), desc="true value: samples", disable=not progress):
        batch = agent.collect_batch(chunk, seed, stream="true_value", index=(c,))
        g, keep = mc_returns(batch, agent.gamma, agent.bootstrap_truncation)
        obs.append(batch.obs[keep])
        ret.append(g[keep])
        total += batch.size
    return np.concatenate(obs), np.concatenate(ret), total


def _predict(net, x: torch.Tensor, size: int = 65536) -> np.ndarray:
    with torch.no_grad():
        return torch.cat([net(x[i:i + size]) for i in range(0, len(x), size)]).double().numpy()


def _ev(pred: np.ndarray, y: np.ndarray) -> float:
    var = y.var()
    return float("nan") if var == 0 else float(1.0 - (y - pred).var() / var)


def fit_value_net(net: torch.nn.Module, obs: np.ndarray, targets: np.ndarray, cfg: dict, rng: np.random.Generator,
                  progress: bool = False) -> dict:
    """Regress `net` on the targets (Adam, cfg: epochs, minibatch, lr, holdout); returns diagnostics on the
    held-out split (and the index of its pairs)."""
    m = len(targets)
    perm = rng.permutation(m)
    n_hold = int(round(cfg["holdout"] * m))
    if m - n_hold < 1 or (cfg["holdout"] > 0 and n_hold < 1):
        raise ConfigError(f"true_value: {m} pairs with complete returns cannot be split with holdout "
                          f"{cfg['holdout']} (more pairs: probes.true_value.n_fit or chunk)")
    hold, train = perm[:n_hold], perm[n_hold:]
    x = torch.as_tensor(obs, dtype=torch.float32)
    y = torch.as_tensor(targets, dtype=torch.float32)
    with torch.no_grad():
        net.net[-1].bias.fill_(float(targets[train].mean()))
    opt = torch.optim.Adam(net.parameters(), lr=cfg["lr"])
    mb = int(cfg["minibatch"])
    loss_sum = count = 0
    for _ in tqdm(range(cfg["epochs"]), desc="true value: fit", disable=not progress):
        order = train[rng.permutation(len(train))]
        loss_sum = count = 0
        for i in range(0, len(order), mb):
            idx = torch.as_tensor(order[i:i + mb])
            loss = (net(x[idx]) - y[idx]).pow(2).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
            loss_sum, count = loss_sum + loss.item() * len(idx), count + len(idx)
    out = {"train_loss": loss_sum / max(count, 1), "pairs_train": len(train), "pairs_holdout": n_hold,
           "holdout_index": hold}
    if n_hold:
        pred, yh = _predict(net, x[hold]), targets[hold]
        out.update(holdout_loss=float(np.mean((pred - yh) ** 2)), explained_variance=_ev(pred, yh))
    else:
        out.update(holdout_loss=np.nan, explained_variance=np.nan)
    return out


def true_value(inputs: ProbeInputs, cfg: dict, threads: int = 1, progress: bool = True) -> xr.Dataset:
    agent = inputs.agent()
    obs, targets, total = fit_samples(agent, cfg["n_fit"], cfg["chunk"], cfg["seed"], progress)
    net = agent.new_value_net(int(agent.rng(cfg["seed"], "value_fit").integers(2**31 - 1)))
    fit = fit_value_net(net, obs, targets, cfg, agent.rng(cfg["seed"], "value_fit", (1,)), progress)
    hold = fit.pop("holdout_index")
    if len(hold):
        agent_pred, yh = _predict(agent.value, torch.as_tensor(obs[hold])), targets[hold]
        agent_loss, agent_ev = float(np.mean((agent_pred - yh) ** 2)), _ev(agent_pred, yh)
    else:
        agent_loss = agent_ev = np.nan
    theta_v = flat_params(net).double().numpy()

    def scalar(v, name, **kw):
        return ((), v, {"long_name": name, **kw})

    ds = xr.Dataset(
        {"value_theta": (("value_param",), theta_v, {"long_name": "parameters of the fitted value network "
                                                                   "(flat, ValueNet.parameters() order)"}),
         "pairs_collected": scalar(total, "fresh pairs collected", units="pairs"),
         "pairs_fit": scalar(len(targets), "pairs with a complete return (the fit's data)", units="pairs"),
         "fraction_dropped": scalar(1 - len(targets) / total, "fraction of pairs left out: their episode was "
                                                              "cut by the end of its chunk"),
         "pairs_train": scalar(fit["pairs_train"], "pairs regressed on", units="pairs"),
         "pairs_holdout": scalar(fit["pairs_holdout"], "held-out pairs", units="pairs"),
         "train_loss": scalar(fit["train_loss"], "mean squared error over the last epoch's minibatches"),
         "holdout_loss": scalar(fit["holdout_loss"], "mean squared error on the held-out pairs"),
         "explained_variance": scalar(fit["explained_variance"], "1 - Var(G - V) / Var(G) on the held-out pairs"),
         "agent_value_holdout_loss": scalar(agent_loss, "the agent's V_t: mean squared error on the held-out pairs"),
         "agent_value_explained_variance": scalar(agent_ev, "the agent's V_t: explained variance, held-out pairs"),
         "return_mean": scalar(float(targets.mean()), "mean discounted return to go of the fit's pairs"),
         "return_std": scalar(float(targets.std()), "std of the discounted return to go of the fit's pairs"),
         "params_count": scalar(agent.params_count, "policy parameters (log-std included)")})
    ds.attrs.update({
        "targets": "discounted return to go of the train rewards within the episode (the agent's gamma)",
        "truncated_returns": "dropped: pairs whose episode was still open at the end of its chunk are left out "
                             "of the fit (no bootstrap)",
        "episode_end": "termination" + ("" if agent.bootstrap_truncation else " or time-limit truncation"),
        "network": "ValueNet: the agent's hidden sizes and init, own seed; output bias set to the targets' mean",
        "optimiser": f"Adam lr {cfg['lr']}, {cfg['epochs']} epochs, minibatches of {cfg['minibatch']} pairs",
        "independence": "its own generator stream: shares no sample with the gradient probes"})
    return ds


def value_net(agent: ProbeAgent, ds: xr.Dataset) -> torch.nn.Module:
    """The fitted "true" value network of a `true_value` artifact, for the agent it was fitted at."""
    net = agent.new_value_net(0)
    theta = ds["value_theta"].values
    if theta.size != sum(p.numel() for p in net.parameters()):
        raise ConfigError(f"true_value artifact has {theta.size} value parameters; the agent's value network "
                          f"{sum(p.numel() for p in net.parameters())}")
    set_flat_params(net, torch.as_tensor(theta, dtype=torch.float32))
    return net.eval()


# ------------------------------------------------------------------------------ baseline_grads
def _zero(obs: torch.Tensor) -> torch.Tensor:
    return torch.zeros(obs.shape[0])


def baseline_estimates(agent: ProbeAgent, true_v, steps: list[int], repeats: int, seed: int, norm_adv: bool,
                       progress: bool = False) -> np.ndarray:
    """(3, len(steps), repeats, P) float64: BASELINES' gradients on the same samples; per repeat one batch of
    max(steps) steps per env and its prefixes."""
    out = np.empty((len(BASELINES), len(steps), repeats, agent.params_count))
    for r in tqdm(range(repeats), desc="baseline gradients", disable=not progress):
        batch = agent.collect_batch(max(steps) * agent.num_envs, seed, stream="baselines", index=(r,))
        for i, k in enumerate(steps):
            part = batch.prefix(k)
            out[0, i, r] = agent.surrogate_grad(agent.prepare(part, norm_adv))
            out[1, i, r] = agent.surrogate_grad(agent.prepare(part, norm_adv, value=true_v))
            out[2, i, r] = agent.surrogate_grad(agent.prepare(part, norm_adv, value=_zero, lam=1.0))
    return out


def baseline_grads(inputs: ProbeInputs, cfg: dict, threads: int = 1, progress: bool = True) -> xr.Dataset:
    agent = inputs.agent()
    tv = inputs.artifact("probe:true_value")
    norm_adv = bool(cfg.get("norm_adv", False))
    steps = estimate_steps(agent, cfg["n_grid"])
    grads = baseline_estimates(agent, value_net(agent, tv), steps, cfg["repeats"], cfg["seed"], norm_adv, progress)
    mean_dirs = unit_rows(grads[:, -1].mean(1))
    n = np.array(steps) * agent.num_envs
    ds = xr.Dataset(
        {"cosine": (("baseline", "n", "repeat", "repeat_b"), pairwise_cosines(grads),
                    {"long_name": "cosine similarity of estimates repeat and repeat_b (same baseline and n)"}),
         "gradient_norm": (("baseline", "n", "repeat"), np.linalg.norm(grads, axis=-1),
                           {"long_name": "l2 norm of the estimate"}),
         "mean_gradient_cosine": (("baseline", "baseline_b"), mean_dirs @ mean_dirs.T,
                                  {"long_name": "cosine of the baselines' mean estimates at the largest n (an "
                                                "unbiased baseline leaves the expected gradient unchanged)"}),
         "steps_per_env": (("n",), np.array(steps), {"long_name": "consecutive steps per env"}),
         "true_value_explained_variance": ((), float(tv["explained_variance"]), tv["explained_variance"].attrs),
         "agent_value_explained_variance": ((), float(tv["agent_value_explained_variance"]),
                                            tv["agent_value_explained_variance"].attrs),
         **_agent_vars(agent)},
        coords={"baseline": list(BASELINES), "baseline_b": list(BASELINES),
                "n": ("n", n, {"long_name": "state-action pairs per estimate", "units": "pairs"}),
                "repeat": np.arange(cfg["repeats"]), "repeat_b": np.arange(cfg["repeats"])})
    ds.attrs.update({"norm_adv": int(norm_adv),
                     "baselines": "; ".join(f"{k}: {v}" for k, v in BASELINE_LABELS.items()),
                     "n_requested": [int(x) for x in cfg["n_grid"]],
                     "sampling": "the three baselines on the same samples; each repeat its own generator "
                                 "(stream 'baselines'); within a repeat the smaller n are time-prefixes",
                     "advantage_normalisation": ("within each estimate's batch (a batch-mean baseline on top of "
                                                 "each)") if norm_adv else "none"})
    return ds
