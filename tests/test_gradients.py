"""Gradient probes (figs 1 and 2) on a case with a known answer.

A linear-Gaussian policy (train.hidden: [], no observation normalisation, no reward scaling) on a
one-step bandit: s ~ N(0, I), a ~ N(M s + b, diag(sigma^2)), r = -||a - W s||^2, then the episode
ends.  J(theta) = E r = -||M - W||_F^2 - ||b||^2 - sum_i sigma_i^2, so
    dJ/dM = -2 (M - W),  dJ/db = -2 b,  dJ/dlog_std_i = -2 sigma_i^2,
the gradient of every policy parameter, log-std included.  With advantages not normalised, the
surrogate's gradient at theta_t is an unbiased estimate of it (V_t is a state-only baseline).

Every test names, in a comment, what breaking it would look like.
"""
from __future__ import annotations

import dataclasses

import gymnasium as gym
import numpy as np
import pytest
import torch
import xarray as xr

from pgprobe import checkpoint, train
from pgprobe.envs import VecEnv
from pgprobe.nets import GaussianPolicy, PolicyWeights, ObsNormalizer, RewardScaler
from pgprobe.pipeline import artifacts, config
from pgprobe.probes import gradients
from pgprobe.probes.api import ProbeAgent, ProbeInputs
from pgprobe.figures import fig1, fig2
from pgprobe.rollout import collect

ENV = "pgprobe/LinearBandit-v0"
W = np.array([[1.0, -0.5, 0.3], [0.2, 0.8, -1.0]])


class LinearBandit(gym.Env):
    """One step: s ~ N(0, I_3) (seeded by reset), reward -||a - W s||^2, terminated."""

    observation_space = gym.spaces.Box(-np.inf, np.inf, (3,), np.float64)
    action_space = gym.spaces.Box(-1.0, 1.0, (2,), np.float64)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.s = self.np_random.standard_normal(3)
        return self.s.copy(), {}

    def step(self, action):
        r = -float(np.sum((np.asarray(action, np.float64) - W @ self.s) ** 2))
        return self.s.copy(), r, True, False, {}


if ENV not in gym.registry:
    gym.register(ENV, entry_point=LinearBandit)


def analytic_gradient(policy, theta: np.ndarray) -> np.ndarray:
    """dJ/dtheta in the policy's flat layout (named_parameters order: log_std, mean.0.weight, mean.0.bias)."""
    named, i = {}, 0
    for name, p in policy.named_parameters():
        named[name] = theta[i:i + p.numel()].reshape(p.shape)
        i += p.numel()
    grads = {"log_std": -2 * np.exp(2 * named["log_std"]), "mean.0.weight": -2 * (named["mean.0.weight"] - W),
             "mean.0.bias": -2 * named["mean.0.bias"]}
    assert set(grads) == set(named)
    return np.concatenate([grads[name].ravel() for name in named])


def cos(a, b) -> float:
    return float(np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b)))


# --------------------------------------------------------------------------------------- fixtures
def bandit_checkpoint(repo_root, tmp):
    """A linear TRPO agent trained 2 iterations on the bandit; its checkpoint at t = 1 (theta_1 != theta_0)."""
    cfg = config.load(repo_root / "params.yaml", [repo_root / "config" / "smoke.yaml"])
    agent = config.agent_config(cfg, ENV, "trpo")
    agent["train"].update(hidden=[], num_envs=64, steps_per_iter=512, iterations=2, save_every=1)
    agent["algo_cfg"].update(obs_norm=False, reward_scaling=False, norm_adv=True)
    train.run(agent, 0, tmp / "agent", progress=False)
    return checkpoint.make(agent, 0, 1, tmp / "agent", tmp / "t1.nc")


@pytest.fixture(scope="module")
def bandit(repo_root, tmp_path_factory):
    """bandit_checkpoint, loaded, with the analytic gradient at theta_1."""
    tmp = tmp_path_factory.mktemp("bandit")
    path = bandit_checkpoint(repo_root, tmp)
    probe_agent = ProbeAgent.load(path)
    assert probe_agent.params_count == 10 and probe_agent.batch_size == 512
    return {"path": path, "agent": probe_agent, "tmp": tmp, "grad": analytic_gradient(probe_agent.policy, probe_agent.theta)}


def _write(ds: xr.Dataset, name: str, inputs: ProbeInputs, path) -> str:
    """What `pgprobe probe` does with a probe's result (agent coordinates, provenance), minus the CLI."""
    ds = artifacts.with_agent_coords(ds, *inputs.agent_coords())
    ds.attrs.update(artifacts.provenance(f"probe_{name}", {}, "probe", ("pgprobe.probes.gradients",)))
    artifacts.write_nc(ds, path)
    return str(path)


@pytest.fixture(scope="module")
def probed(bandit):
    """The four probes on the bandit checkpoint, through files as the pipeline runs them."""
    tmp, ckpt = bandit["tmp"], {"checkpoint": bandit["path"]}
    est_cfg = {"n_grid": [64, 1024, 16384], "repeats": 5, "norm_adv": False, "seed": 0}
    true_cfg = {"n_star": 65536, "chunk": None, "norm_adv": False, "blocks": 16, "seed": 0}
    inputs = ProbeInputs(dict(ckpt))
    inputs._agent = bandit["agent"]
    est = _write(gradients.grad_estimates(inputs, est_cfg, progress=False), "grad_estimates", inputs, tmp / "est.nc")
    true = _write(gradients.true_gradient(inputs, true_cfg, progress=False), "true_gradient", inputs, tmp / "true.nc")
    vin = ProbeInputs.parse([f"probe:grad_estimates={est}"])
    var = _write(gradients.grad_variance(vin, {}), "grad_variance", vin, tmp / "var.nc")
    cin = ProbeInputs.parse([f"probe:grad_estimates={est}", f"probe:true_gradient={true}"])
    conv = _write(gradients.grad_convergence(cin, {}), "grad_convergence", cin, tmp / "conv.nc")
    read = {k: artifacts.read_nc(p) for k, p in dict(est=est, true=true, var=var, conv=conv).items()}
    return {**read, "est_cfg": est_cfg}


# ------------------------------------------------------------------------------ 1. Batch.prefix
def test_prefix_is_the_shorter_rollout(repo_root):
    # Breaks if a prefix keeps the batch-end bootstrap of the long batch (continues True or a stale
    # next_obs at the cut), or differs from a rollout that stopped there.
    venv = VecEnv("Hopper-v5", 2)
    policy = GaussianPolicy(venv.obs_dim, venv.act_dim, [8], "xavier")
    weights = PolicyWeights.from_policy(policy)

    def rollout(steps):
        norm, scaler = ObsNormalizer(venv.obs_dim, True, 10.0), RewardScaler(2, 0.99, True, 10.0)
        rng = np.random.default_rng(3)
        venv.reset(rng)
        return collect(venv, weights, norm, scaler, rng, steps, update_stats=False)

    long = rollout(40)
    for k in (1, 17, 40):
        short, cut = rollout(k), long.prefix(k)
        for name in ("obs", "actions", "rewards", "train_rewards", "terminated", "done", "continues", "next_obs"):
            np.testing.assert_array_equal(getattr(cut, name), getattr(short, name), err_msg=f"{name} at k={k}")
        assert not cut.continues[-1].any()
    venv.close()
    with pytest.raises(ValueError):
        long.prefix(41)


def test_rollout_records_the_observation_each_action_was_taken_at(bandit):
    # Breaks if the recorded observations are not the ones the rewards were earned at: without
    # observation normalisation the rollout once kept a view of the envs' observation buffer, so the
    # first step of each env recorded the observation that followed it.
    batch = bandit["agent"].collect_batch(256, 1)
    pred = -np.sum((batch.actions - batch.obs.astype(np.float64) @ W.T) ** 2, axis=-1)
    np.testing.assert_allclose(pred, batch.rewards, rtol=1e-5, atol=1e-5)


# ---------------------------------------------------------------- 2. estimates -> the analytic gradient
def test_estimates_converge_to_the_analytic_gradient(bandit, probed):
    # Breaks if the probe's gradient is not the surrogate's (a sign, a missing parameter block such as
    # log-std, a normalised advantage where the probe said not), or the prefixes are not fresh pairs.
    est, grad = probed["est"], bandit["grad"]
    assert est.attrs["norm_adv"] == 0
    assert list(est["n"].values) == [64, 512, 1024, 16384]  # the agent's batch size added
    g = est["gradient"].transpose("n", "repeat", "param").values.astype(np.float64)
    per_n = [np.mean([cos(gi, grad) for gi in g[i]]) for i in range(len(g))]
    assert all(a < b for a, b in zip(per_n, per_n[1:])), per_n
    assert per_n[-1] > 0.99, per_n
    assert cos(g[-1].mean(0), grad) > 0.995
    # log-std block on its own (the part a probe skipping log_std would miss): the first two parameters
    assert [n for n, _ in bandit["agent"].policy.named_parameters()][0] == "log_std"
    assert cos(g[-1].mean(0)[:2], grad[:2]) > 0.99


def test_repeats_are_independent_and_prefixes_nested(bandit, probed):
    # Breaks if repeats share a generator (identical estimates: fig 1 would show similarity 1).
    g = probed["est"]["gradient"].values
    for i in range(g.shape[0]):
        assert len({g[i, r].tobytes() for r in range(g.shape[1])}) == g.shape[1]


def test_fig1_and_fig2_measures_rise_with_n(bandit, probed):
    # Breaks if the pairwise cosines or the cosines with g* are computed on the wrong axes, or g* is not
    # the gradient (fig 2 would not approach 1).
    grad = bandit["grad"]
    assert cos(probed["true"]["g_star"].values, grad) > 0.99
    assert int(probed["true"]["n_star"]) == 65536
    var = probed["var"]["cosine"].transpose("n", "repeat", "repeat_b").values
    np.testing.assert_allclose(np.diagonal(var, axis1=1, axis2=2), 1.0, atol=1e-6)
    np.testing.assert_allclose(var, np.swapaxes(var, 1, 2), atol=1e-12)
    combined = {k: probed[k].expand_dims(["env", "algo", "seed", "iteration"]) for k in ("var", "conv")}
    agg1 = fig1.summarize(combined["var"])
    agg2 = fig2.summarize(combined["conv"])
    for agg, top in ((agg1, 0.97), (agg2, 0.99)):
        m = agg["similarity_mean"].values.ravel()
        band = agg["similarity_ci"].values.reshape(-1, 2)
        assert all(a < b for a, b in zip(m, m[1:])), m
        assert m[-1] > top, m
        assert (band[:, 0] <= m + 1e-12).all() and (m <= band[:, 1] + 1e-12).all()
    # fig 1's measure is the mean over i < j: recompute it by hand for the largest n
    c = var[-1]
    r = c.shape[0]
    assert agg1["similarity_mean"].values.ravel()[-1] == pytest.approx(
        np.mean([c[i, j] for i in range(r) for j in range(i + 1, r)]))


def test_figures_render(probed, tmp_path):
    # Breaks if a figure cannot draw its aggregate (the pipeline's figure stage would fail).
    for mod, key in ((fig1, "var"), (fig2, "conv")):
        agg = mod.summarize(probed[key].expand_dims(["env", "algo", "seed", "iteration"]))
        out = tmp_path / f"{mod.__name__.rsplit('.', 1)[1]}.pdf"
        mod.render(agg, str(out))
        assert out.read_bytes()[:5] == b"%PDF-"


# -------------------------------------------------------------- 3. g*: normalised over all pairs
def test_chunked_true_gradient_equals_one_big_batch(bandit):
    # Breaks if the chunks' advantages are normalised per chunk, or chunks are weighted wrongly: the
    # chunked g* must be the gradient of the surrogate on all pairs with advantages normalised over all.
    agent = bandit["agent"]
    g, info = gradients.true_gradient_of(agent, n_star=2048, chunk=512, seed=5, norm_adv=True)
    assert info["chunks"] == 4 and info["pairs"] == 2048
    datas = [agent.prepare(agent.collect_batch(512, 5, stream="true_gradient", index=(c,)), norm_adv=False)
             for c in range(4)]
    big = {f.name: torch.cat([getattr(d, f.name) for d in datas]) for f in dataclasses.fields(datas[0])}
    raw = big["raw_advantages"].double()
    big["advantages"] = ((raw - raw.mean()) / (raw.std() + 1e-8)).float()
    whole = agent.surrogate_grad(type(datas[0])(**big))
    np.testing.assert_allclose(g, whole, rtol=1e-4, atol=1e-5 * np.abs(whole).max())
    per_chunk = np.mean([agent.surrogate_grad(agent.prepare(
        agent.collect_batch(512, 5, stream="true_gradient", index=(c,)), norm_adv=True)) for c in range(4)], axis=0)
    assert np.abs(per_chunk - whole).max() > 20 * np.abs(g - whole).max()  # the test tells the two apart
    # without normalisation: the size-weighted mean of the chunks' gradients
    g_raw, _ = gradients.true_gradient_of(agent, n_star=2048, chunk=512, seed=5, norm_adv=False)
    np.testing.assert_allclose(g_raw, np.mean([agent.surrogate_grad(d) for d in datas], axis=0), rtol=1e-6,
                               atol=1e-9)
