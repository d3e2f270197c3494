"""Baseline probes (fig 4) on a case with a known answer.

The one-step bandit of test_gradients (s ~ N(0, I), r = -||a - W s||^2, then the episode ends), with a
tanh policy of one hidden layer, so that the value network (the same architecture) can represent the
true value.  With one-step episodes the Monte Carlo return is the reward, and for
a ~ N(mu(s), diag(sigma^2)):
    V*(s) = E[r | s] = -||mu(s) - W s||^2 - sum_i sigma_i^2,
    J(theta) = E_s V*(s),
whose gradient (log-std included) is a pathwise expectation over states only: computed here by autograd
on 2^18 states, no action noise, independently of the score-function estimators under test.

Every test names, in a comment, what breaking it would look like.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

from pgprobe import checkpoint, train
from pgprobe.figures import fig4
from pgprobe.pipeline import artifacts, config
from pgprobe.probes import baselines, returns
from pgprobe.probes.api import ProbeAgent, ProbeInputs

from test_gradients import ENV, W, cos  # noqa: F401  (registers the bandit)


def v_star(agent: ProbeAgent, s: np.ndarray) -> np.ndarray:
    policy = agent.policy
    with torch.no_grad():
        mean, log_std = policy(torch.as_tensor(s, dtype=torch.float32))
        return (-((mean.double() - torch.as_tensor(s @ W.T)) ** 2).sum(-1)
                - torch.exp(2 * log_std.double()).sum(-1)).numpy()


def pathwise_gradient(agent: ProbeAgent, states: int = 2**18) -> np.ndarray:
    policy = agent.policy
    s = torch.as_tensor(np.random.default_rng(123).standard_normal((states, 3)), dtype=torch.float32)
    mean, log_std = policy(s)
    j = -((mean - s @ torch.as_tensor(W.T, dtype=torch.float32)) ** 2).sum(-1).mean() - torch.exp(2 * log_std[0]).sum()
    grads = torch.autograd.grad(j, list(policy.parameters()))
    return torch.cat([g.reshape(-1) for g in grads]).double().numpy()


@pytest.fixture(scope="module")
def mlp_bandit(repo_root, tmp_path_factory):
    """A TRPO agent with one hidden layer of 16 on the bandit, its checkpoint at t = 1: V_t fitted on one
    small batch only (a poor baseline)."""
    tmp = tmp_path_factory.mktemp("mlp_bandit")
    cfg = config.load(repo_root / "params.yaml", [repo_root / "config" / "smoke.yaml"])
    agent = config.agent_config(cfg, ENV, "trpo")
    agent["train"].update(hidden=[16], num_envs=64, steps_per_iter=512, iterations=2, save_every=1, fit_done_steps=True)
    # V_t: a short fit (120 Adam steps on one 512-pair batch of pi_0's returns): better than nothing, far from V*
    agent["algo_cfg"].update(obs_norm=False, reward_scaling=False, norm_adv=True, value_lr=1e-2, value_epochs=30)
    train.run(agent, 0, tmp / "agent", progress=False)
    path = checkpoint.make(agent, 0, 1, tmp / "agent", tmp / "t1.nc")
    probe_agent = ProbeAgent.load(path)
    return {"path": path, "agent": probe_agent, "tmp": tmp, "grad": pathwise_gradient(probe_agent)}


def _write(ds, name, inputs, path) -> str:
    ds = artifacts.with_agent_coords(ds, *inputs.agent_coords())
    ds.attrs.update(artifacts.provenance(f"probe_{name}", {}, "probe", ("pgprobe.probes.baselines",)))
    artifacts.write_nc(ds, path)
    return str(path)


TV_CFG = {"n_fit": 65536, "chunk": 8192, "epochs": 30, "minibatch": 256, "lr": 3e-3, "holdout": 0.1, "seed": 0}
BG_CFG = {"n_grid": [64, 1024, 16384], "repeats": 6, "norm_adv": False, "seed": 0}


@pytest.fixture(scope="module")
def probed(mlp_bandit):
    tmp = mlp_bandit["tmp"]
    inputs = ProbeInputs({"checkpoint": mlp_bandit["path"]})
    inputs._agent = mlp_bandit["agent"]
    tv = _write(baselines.true_value(inputs, TV_CFG, progress=False), "true_value", inputs, tmp / "tv.nc")
    bin_ = ProbeInputs({"checkpoint": mlp_bandit["path"], "probe:true_value": tv})
    bin_._agent = mlp_bandit["agent"]
    bg = _write(baselines.baseline_grads(bin_, BG_CFG, progress=False), "baseline_grads", bin_, tmp / "bg.nc")
    return {"tv": artifacts.read_nc(tv), "bg": artifacts.read_nc(bg), "tv_path": tv}


def test_pathwise_gradient_is_the_gradient(mlp_bandit):
    # Breaks if the reference gradient is not dJ/dtheta (layout, sign): the estimators of test_gradients'
    # probe agree with it on the agent's own advantage estimator.
    agent = mlp_bandit["agent"]
    data = agent.prepare(agent.collect_batch(65536, 9), norm_adv=False)
    assert cos(agent.surrogate_grad(data), mlp_bandit["grad"]) > 0.98


def test_mc_returns_drop_episodes_cut_by_the_batch():
    # Breaks if a return crosses an episode boundary, is not discounted, or a cut episode is kept.
    from pgprobe.rollout import Batch
    T = 5
    r = np.arange(1.0, T + 1)[:, None]
    done = np.array([False, True, False, False, False])[:, None]
    cont = ~done
    cont[-1] = False
    b = Batch(np.zeros((T, 1, 1)), np.zeros((T, 1, 1)), r, r, done.copy(), done, cont, np.zeros((T, 1, 1)))
    ret, keep = returns.mc_returns(b, 0.5)
    np.testing.assert_allclose(ret[:, 0], [1 + 0.5 * 2, 2, 3 + 0.5 * 4 + 0.25 * 5, 4 + 0.5 * 5, 5])
    assert keep[:, 0].tolist() == [True, True, False, False, False]
    # a time-limit truncation (done, not terminated) ends an episode unless the agent bootstraps there
    b.terminated[:] = False
    assert returns.mc_returns(b, 0.5, bootstrap_truncation=True)[1][:, 0].tolist() == [False] * 5


def test_true_value_net_is_close_to_the_closed_form(mlp_bandit, probed):
    # Breaks if the fit regresses on the wrong targets (not the return of the pair's own state), the stored
    # parameters do not rebuild the fitted net, or the fit does not fit.
    agent, tv = mlp_bandit["agent"], probed["tv"]
    net = baselines.value_net(agent, tv)
    s = np.random.default_rng(7).standard_normal((20000, 3))
    with torch.no_grad():
        v = net(torch.as_tensor(s, dtype=torch.float32)).double().numpy()
    vs = v_star(agent, s)
    rel = np.mean((v - vs) ** 2) / vs.var()
    assert rel < 0.05, rel
    assert float(tv["explained_variance"]) > 0.3  # of the noisy returns: V* explains part of them
    assert float(tv["fraction_dropped"]) == 0.0  # one-step episodes: none cut
    assert float(tv["holdout_loss"]) < float(tv["agent_value_holdout_loss"])


def test_three_baselines_same_expected_gradient_ordered_variance(mlp_bandit, probed):
    # Breaks if a baseline changes the expected gradient (a value depending on the action, a wrong lambda),
    # the three are not on the same samples, or the variance order is lost (e.g. the true value not used).
    bg, grad = probed["bg"], mlp_bandit["grad"]
    assert bg.attrs["norm_adv"] == 0 and list(bg["baseline"].values) == ["agent", "true_value", "none"]
    assert np.all(bg["mean_gradient_cosine"].values > 0.98), bg["mean_gradient_cosine"].values
    agg = fig4.summarize(bg.expand_dims(["env", "algo", "seed", "iteration"]))
    m = agg["similarity_mean"].squeeze(["env", "algo", "seed", "iteration"])
    mid = m.sel(n=1024)
    assert float(mid.sel(baseline="true_value")) > float(mid.sel(baseline="agent")) > float(mid.sel(baseline="none"))
    assert float(m.sel(baseline="true_value", n=16384)) > 0.95


def test_each_estimator_is_unbiased(mlp_bandit, probed):
    # Breaks if a baseline biases the gradient: every estimator's mean must point along dJ/dtheta.
    agent = mlp_bandit["agent"]
    g = baselines.baseline_estimates(agent, baselines.value_net(agent, probed["tv"]), [2048], 4, 3, False)
    for b, name in enumerate(baselines.BASELINES):
        assert cos(g[b, 0].mean(0), mlp_bandit["grad"]) > 0.99, name


def test_fig4_renders(probed, tmp_path):
    # Breaks if fig 4 cannot draw its aggregate (the pipeline's figure stage would fail).
    agg = fig4.summarize(probed["bg"].expand_dims(["env", "algo", "seed", "iteration"]))
    assert list(agg["n"].values) == [64, 512, 1024, 16384]
    out = tmp_path / "fig4.pdf"
    fig4.render(agg, str(out))
    assert out.read_bytes()[:5] == b"%PDF-"
