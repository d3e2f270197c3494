"""PPO's clipped objective, TRPO's conjugate gradient / Fisher-vector products / line search."""
import copy

import numpy as np
import pytest
import torch
from torch.func import functional_call

from pgprobe.pipeline import config
from pgprobe.algos import common, ppo, trpo
from pgprobe.envs import VecEnv
from pgprobe.nets import (GaussianPolicy, ObsNormalizer, PolicyWeights, RewardScaler, ValueNet, flat_params,
                          gaussian_kl, set_flat_params)
from pgprobe.rollout import collect


def _data_with_ratios(policy, obs, actions, ratios, adv):
    """TrainData whose old log-probs make pi/pi_old equal `ratios` at the current policy."""
    with torch.no_grad():
        logp = policy.log_prob(obs, actions)
        mean, log_std = policy(obs)
    adv = torch.as_tensor(adv, dtype=obs.dtype)
    zeros = torch.zeros(len(obs), dtype=obs.dtype)
    return common.TrainData(obs, actions, logp - torch.log(torch.as_tensor(ratios, dtype=obs.dtype)),
                            mean, log_std, adv, adv, zeros, zeros, torch.ones(len(obs), dtype=torch.bool))


@pytest.fixture
def tiny_policy():
    torch.manual_seed(0)
    return GaussianPolicy(3, 2, [5], "orthogonal").double()


def test_ppo_policy_loss_by_hand(tiny_policy):
    g = torch.Generator().manual_seed(1)
    obs, act = torch.randn(6, 3, generator=g, dtype=torch.float64), torch.randn(6, 2, generator=g, dtype=torch.float64)
    ratios = [1.1, 1.5, 0.5, 0.5, 1.5, 0.9]
    adv = [1.0, 2.0, 1.0, -1.0, -1.0, -2.0]
    # min(r A, clip(r, 0.8, 1.2) A), by hand:
    #   1.1*1 = 1.1 (inside)       min(3.0, 2.4) = 2.4 (clipped)   min(0.5, 0.8) = 0.5 (not clipped: A > 0, r < 1-eps)
    #   min(-0.5, -0.8) = -0.8 (clipped)   min(-1.5, -1.2) = -1.5 (not clipped: A < 0, r > 1+eps)   0.9*-2 = -1.8
    per_sample = np.array([1.1, 2.4, 0.5, -0.8, -1.5, -1.8])
    clipped = [False, True, False, True, False, False]
    data = _data_with_ratios(tiny_policy, obs, act, ratios, adv)
    all_idx = torch.arange(6)
    loss = ppo.policy_loss(tiny_policy, data, all_idx, clip_eps=0.2, entropy_coef=0.0, norm_adv=False)
    assert loss.item() == pytest.approx(-per_sample.mean(), rel=1e-12)
    # the entropy bonus enters with a minus sign
    loss_e = ppo.policy_loss(tiny_policy, data, all_idx, clip_eps=0.2, entropy_coef=0.3, norm_adv=False)
    assert loss_e.item() == pytest.approx(-per_sample.mean() - 0.3 * tiny_policy.entropy().item(), rel=1e-12)
    # per sample: value and gradient (zero exactly where the clipped term is the minimum)
    for i in range(6):
        tiny_policy.zero_grad()
        li = ppo.policy_loss(tiny_policy, data, torch.tensor([i]), 0.2, 0.0, False)
        assert li.item() == pytest.approx(-per_sample[i], rel=1e-12)
        li.backward()
        gnorm = torch.cat([p.grad.reshape(-1) for p in tiny_policy.parameters()]).norm().item()
        if clipped[i]:
            assert gnorm == 0.0
        else:
            assert gnorm > 1e-6


def test_ppo_unclipped_gradient_is_surrogate_gradient(tiny_policy):
    """At ratio 1 the clipped loss is minus the importance-sampled surrogate of common.surrogate."""
    g = torch.Generator().manual_seed(2)
    obs, act = torch.randn(8, 3, generator=g, dtype=torch.float64), torch.randn(8, 2, generator=g, dtype=torch.float64)
    adv = torch.randn(8, generator=g, dtype=torch.float64)
    data = _data_with_ratios(tiny_policy, obs, act, torch.ones(8), adv)
    params = list(tiny_policy.parameters())
    g_loss = torch.autograd.grad(ppo.policy_loss(tiny_policy, data, torch.arange(8), 0.2, 0.0, False), params)
    g_surr = torch.autograd.grad(common.surrogate(tiny_policy, data), params)
    for a, b in zip(g_loss, g_surr):
        torch.testing.assert_close(a, -b)
    # policy gradient theorem form: grad mean(A * log pi)
    g_pg = torch.autograd.grad((adv * tiny_policy.log_prob(obs, act)).mean(), params)
    for a, b in zip(g_pg, g_surr):
        torch.testing.assert_close(a, b)


def test_ppo_norm_adv_is_invariant_to_affine_advantages(tiny_policy):
    g = torch.Generator().manual_seed(3)
    obs, act = torch.randn(10, 3, generator=g, dtype=torch.float64), torch.randn(10, 2, generator=g, dtype=torch.float64)
    ratios = torch.exp(0.3 * torch.randn(10, generator=g, dtype=torch.float64))
    adv = torch.randn(10, generator=g, dtype=torch.float64)
    idx = torch.arange(10)
    a = ppo.policy_loss(tiny_policy, _data_with_ratios(tiny_policy, obs, act, ratios, adv), idx, 0.2, 0.0, True)
    b = ppo.policy_loss(tiny_policy, _data_with_ratios(tiny_policy, obs, act, ratios, 5.0 * adv + 3.0), idx, 0.2, 0.0, True)
    c = ppo.policy_loss(tiny_policy, _data_with_ratios(tiny_policy, obs, act, ratios, 5.0 * adv + 3.0), idx, 0.2, 0.0, False)
    assert a.item() == pytest.approx(b.item(), rel=1e-6)
    assert abs(a.item() - c.item()) > 1e-3


def test_conjugate_gradient_solves_spd_system():
    g = torch.Generator().manual_seed(4)
    m = torch.randn(20, 20, generator=g, dtype=torch.float64)
    a = m @ m.T / 20 + 0.5 * torch.eye(20, dtype=torch.float64)
    b = torch.randn(20, generator=g, dtype=torch.float64)
    x = trpo.conjugate_gradient(lambda v: a @ v, b, iters=60)
    # CG stops once the squared residual is below its tolerance (1e-10)
    assert (a @ x - b).norm().item() < 1e-5 * 1.01
    torch.testing.assert_close(x, torch.linalg.solve(a, b), rtol=0, atol=1e-4)
    # a few iterations only: a worse, but still descending, approximation
    x2 = trpo.conjugate_gradient(lambda v: a @ v, b, iters=2)
    assert 1e-5 < (a @ x2 - b).norm().item() < b.norm().item()
    # with exact arithmetic CG converges in at most n steps on n distinct eigenvalues: 3 here
    d = torch.diag(torch.tensor([1.0, 2.0, 5.0] * 4, dtype=torch.float64))
    q, _ = torch.linalg.qr(torch.randn(12, 12, generator=g, dtype=torch.float64))
    a3 = q @ d @ q.T
    b3 = torch.randn(12, generator=g, dtype=torch.float64)
    torch.testing.assert_close(trpo.conjugate_gradient(lambda v: a3 @ v, b3, iters=3),
                               torch.linalg.solve(a3, b3), rtol=1e-8, atol=1e-8)


def _kl_hessian(policy, obs):
    """Full Hessian over the flat parameter vector of mean KL(pi_theta0 || pi_theta) at theta0."""
    names = [n for n, _ in policy.named_parameters()]
    shapes = [p.shape for p in policy.parameters()]
    theta0 = flat_params(policy).clone()
    with torch.no_grad():
        mean0, log_std0 = policy(obs)

    def unflatten(flat):
        out, i = {}, 0
        for n, s in zip(names, shapes):
            k = int(np.prod(s))
            out[n] = flat[i:i + k].reshape(s)
            i += k
        return out

    def kl(flat):
        mean, log_std = functional_call(policy, unflatten(flat), (obs,))
        # closed form written out independently of nets.gaussian_kl
        var0, var = torch.exp(2 * log_std0), torch.exp(2 * log_std)
        per = log_std - log_std0 + (var0 + (mean0 - mean) ** 2) / (2 * var) - 0.5
        return per.sum(-1).mean()

    return torch.autograd.functional.hessian(kl, theta0), unflatten


def test_fisher_vector_product_equals_kl_hessian():
    torch.manual_seed(5)
    pol = GaussianPolicy(2, 1, [3], "xavier").double()
    with torch.no_grad():
        for p in pol.parameters():
            p.add_(0.5 * torch.randn_like(p))   # a generic point, not the init
    obs = torch.randn(7, 2, dtype=torch.float64)
    h, _ = _kl_hessian(pol, obs)
    P = flat_params(pol).numel()
    assert h.shape == (P, P) and P == 2 * 3 + 3 + 3 + 1 + 1
    # symmetric positive semi-definite
    torch.testing.assert_close(h, h.T)
    assert torch.linalg.eigvalsh(h).min() > -1e-10
    damping = 0.1
    fvp = trpo.fisher_vector_product(pol, obs, damping)
    for s in range(3):
        v = torch.randn(P, generator=torch.Generator().manual_seed(s), dtype=torch.float64)
        torch.testing.assert_close(fvp(v), h @ v + damping * v, rtol=1e-8, atol=1e-10)


def test_kl_hessian_is_fisher_information():
    """For a Gaussian policy, Hess KL at theta0 = E[grad log pi grad log pi^T] (Monte Carlo, loose)."""
    torch.manual_seed(6)
    pol = GaussianPolicy(2, 1, [3], "xavier").double()
    with torch.no_grad():
        for p in pol.parameters():
            p.add_(0.5 * torch.randn_like(p))
    obs = torch.randn(4, 2, dtype=torch.float64)
    h, unflatten = _kl_hessian(pol, obs)
    theta0 = flat_params(pol).clone()
    per_obs = 50_000
    g = torch.Generator().manual_seed(7)
    with torch.no_grad():
        mean, log_std = pol(obs)
        acts = mean[:, None, :] + torch.exp(log_std)[:, None, :] * torch.randn(4, per_obs, 1, generator=g,
                                                                                dtype=torch.float64)
    obs_rep = obs[:, None, :].expand(4, per_obs, 2).reshape(-1, 2)
    acts = acts.reshape(-1, 1)

    def logp(flat, o, a):
        m, ls = functional_call(pol, unflatten(flat), (o[None],))
        return (-0.5 * ((a - m[0]) / torch.exp(ls[0])) ** 2 - ls[0]).sum()

    scores = torch.func.vmap(torch.func.grad(logp), in_dims=(None, 0, 0))(theta0, obs_rep, acts)
    fisher = scores.T @ scores / scores.shape[0]
    # pgprobe's Fisher-vector product (no damping), applied to every basis vector: the KL Hessian ...
    fvp = trpo.fisher_vector_product(pol, obs, damping=0.0)
    ours = torch.stack([fvp(e) for e in torch.eye(h.shape[0], dtype=torch.float64)])
    torch.testing.assert_close(ours, h, rtol=1e-6, atol=1e-9)
    # ... which is the Fisher information E[score score^T] (Monte Carlo, loose)
    rel = (torch.linalg.norm(fisher - ours) / torch.linalg.norm(ours)).item()
    assert rel < 0.05, rel
    # the score has mean zero
    assert scores.mean(0).abs().max().item() < 0.05 * scores.std(0).max().item()


# ------------------------------------------------------------------------- updates on a real batch
@pytest.fixture(scope="module")
def hopper_setup(repo_root):
    cfg = config.load(repo_root / "params.yaml")
    venv = VecEnv("Hopper-v5", 2)
    rng = np.random.default_rng(0)
    venv.reset(rng)
    torch.manual_seed(0)
    pol = GaussianPolicy(venv.obs_dim, venv.act_dim, [16, 16], "orthogonal")
    val = ValueNet(venv.obs_dim, [16, 16], "xavier")
    norm = ObsNormalizer(venv.obs_dim, True, None)
    scaler = RewardScaler(2, 0.99, False, None)
    batch = collect(venv, PolicyWeights.from_policy(pol), norm, scaler, rng, 256)
    data = common.prepare(batch, pol, val, 0.99, 0.95, norm_adv=True)
    venv.close()
    return cfg, pol, data


def test_prepare_consistent_with_policy(hopper_setup):
    _, pol, data = hopper_setup
    assert data.n == 512
    torch.testing.assert_close(data.logp_old, pol.log_prob(data.obs, data.actions).detach())
    assert data.advantages.mean().abs().item() < 1e-5
    assert data.advantages.std().item() == pytest.approx(1.0, rel=1e-4)
    torch.testing.assert_close(data.returns, data.raw_advantages + data.values_old)


def test_trpo_update_respects_kl_and_improves_surrogate(hopper_setup):
    cfg, pol0, data = hopper_setup
    pol = copy.deepcopy(pol0)
    acfg = {**cfg["algos"]["trpo"], "max_kl": 0.01}
    surr_before = common.surrogate(pol, data).item()
    out = trpo.update_policy(pol, None, data, acfg, np.random.default_rng(1))
    stats = common.step_stats(pol, data)
    assert 0.0 < out["step_fraction"] <= 1.0   # a step was accepted
    assert stats["kl_mean"] <= acfg["max_kl"]
    assert stats["surrogate_after"] > surr_before
    assert not torch.equal(flat_params(pol), flat_params(pol0))


def test_trpo_full_step_has_quadratic_kl_equal_to_max_kl(hopper_setup):
    cfg, pol0, data = hopper_setup
    pol = copy.deepcopy(pol0)
    acfg = {**cfg["algos"]["trpo"], "max_kl": 0.02, "fisher_frac": 1.0, "cg_iters": 30}
    step = trpo.natural_step(pol, data, acfg, np.random.default_rng(2))[0].detach()
    fvp = trpo.fisher_vector_product(pol, data.obs, acfg["damping"])
    assert (0.5 * step @ fvp(step)).item() == pytest.approx(acfg["max_kl"], rel=1e-3)
    # the step points along the natural gradient: (F + damping) step is parallel to the surrogate gradient
    g = trpo.flat_grad(common.surrogate(pol, data), list(pol.parameters()))
    cos = torch.nn.functional.cosine_similarity(fvp(step), g, dim=0).item()
    assert cos > 0.95
    # and it ascends the surrogate
    assert (g @ step).item() > 0


def test_trpo_line_search_backtracks_to_the_kl_limit(hopper_setup):
    """A large max_kl makes the full step overshoot the KL limit: the search halves it until it fits."""
    cfg, pol0, data = hopper_setup
    acfg = {**cfg["algos"]["trpo"], "max_kl": 5.0, "max_backtrack": 20, "backtrack_coef": 0.5}
    probe = copy.deepcopy(pol0)
    theta = flat_params(probe).clone()
    # update_policy draws its Fisher subsample first, so the same generator seed gives the same step
    step = trpo.natural_step(probe, data, acfg, np.random.default_rng(3))[0].detach()

    def kl_and_surr(frac):
        set_flat_params(probe, theta + frac * step)
        with torch.no_grad():
            mean, log_std = probe(data.obs)
            kl = gaussian_kl(data.mean_old, data.log_std_old, mean, log_std).mean().item()
            return kl, common.surrogate(probe, data).item()

    surr0 = kl_and_surr(0.0)[1]
    kl_full, _ = kl_and_surr(1.0)
    assert kl_full > acfg["max_kl"]     # precondition: the full step must be rejected
    pol = copy.deepcopy(pol0)
    out = trpo.update_policy(pol, None, data, acfg, np.random.default_rng(3))
    frac = out["step_fraction"]
    assert 0 < frac < 1
    k = round(np.log(frac) / np.log(0.5))
    assert frac == pytest.approx(0.5 ** k, rel=1e-12)
    torch.testing.assert_close(flat_params(pol), theta + frac * step)
    kl, surr = kl_and_surr(frac)
    assert kl <= acfg["max_kl"] and surr > surr0
    # every larger candidate was rejected
    for j in range(k):
        kl_j, surr_j = kl_and_surr(0.5 ** j)
        assert kl_j > acfg["max_kl"] or surr_j <= surr0


def test_trpo_rejects_step_without_improvement(hopper_setup):
    """A full step far outside any sensible trust region (max_kl huge, three backtracks): every fraction
    tried still makes the surrogate worse, so the line search takes no step, though the proposed step
    is not zero.  With the agent's max_kl the same batch gives a step."""
    cfg, pol0, data = hopper_setup
    theta = flat_params(pol0).clone()
    for max_kl, accepted in ((1e6, False), (cfg["algos"]["trpo"]["max_kl"], True)):
        pol = copy.deepcopy(pol0)
        acfg = {**cfg["algos"]["trpo"], "max_kl": max_kl, "max_backtrack": 3 if max_kl > 1 else 10}
        out = trpo.update_policy(pol, None, data, acfg, np.random.default_rng(4))
        assert np.linalg.norm(out["full_step"]) > 0.5
        if accepted:
            assert out["step_fraction"] > 0 and not torch.equal(flat_params(pol), theta)
        else:
            assert out["step_fraction"] == 0.0
            torch.testing.assert_close(flat_params(pol), theta, rtol=0, atol=0)
            # every fraction tried was within max_kl; none improved by accept_ratio of the linear prediction
            step = torch.as_tensor(out["full_step"])
            g = trpo.flat_grad(common.surrogate(pol0, data), list(pol0.parameters()))
            for k in range(acfg["max_backtrack"]):
                frac = acfg["backtrack_coef"] ** k
                set_flat_params(pol, theta + frac * step)
                with torch.no_grad():
                    gain = common.surrogate(pol, data).item() - common.surrogate(pol0, data).item()
                assert gain <= acfg["accept_ratio"] * frac * (g @ step).item()


def test_ppo_update_small_lr_keeps_ratios_near_clip_range(hopper_setup):
    cfg, pol0, data = hopper_setup
    pol = copy.deepcopy(pol0)
    acfg = {**cfg["algos"]["ppo"], "lr": 3e-4, "epochs": 10, "minibatches": 4}
    opt = torch.optim.Adam(pol.parameters(), lr=acfg["lr"], eps=1e-5)
    idx = torch.arange(data.n)
    loss_before = ppo.policy_loss(pol, data, idx, acfg["clip_eps"], 0.0, True).item()
    ppo.update_policy(pol, opt, data, acfg, np.random.default_rng(4))
    stats = common.step_stats(pol, data)
    with torch.no_grad():
        ratio = torch.exp(pol.log_prob(data.obs, data.actions) - data.logp_old)
    eps = acfg["clip_eps"]
    assert ratio.max().item() == pytest.approx(stats["ratio_max"])
    assert 1.0 - eps - 0.15 < ratio.min().item() and ratio.max().item() < 1.0 + eps + 0.15
    assert not torch.allclose(ratio, torch.ones_like(ratio))   # it did move
    assert 0 < stats["kl_mean"] < 0.05
    loss_after = ppo.policy_loss(pol, data, idx, acfg["clip_eps"], 0.0, True).item()
    assert loss_after < loss_before


def test_fit_value_reduces_loss(hopper_setup):
    cfg, _, data = hopper_setup
    torch.manual_seed(1)
    val = ValueNet(data.obs.shape[1], [16, 16], "xavier")
    acfg = {**cfg["algos"]["ppo"], "value_epochs": 5, "minibatches": 4, "value_lr": 1e-3}
    opt = torch.optim.Adam(val.parameters(), lr=acfg["value_lr"])
    with torch.no_grad():
        before = (val(data.obs) - data.returns).pow(2).mean().item()
    common.fit_value(val, opt, data, acfg, np.random.default_rng(5))
    with torch.no_grad():
        after = (val(data.obs) - data.returns).pow(2).mean().item()
    assert after < before


def test_trpo_line_search_requires_a_fraction_of_the_predicted_improvement(hopper_setup):
    """accept_ratio: a step is taken only if it realises that fraction of g . step; none can realise 10^6x."""
    cfg, pol0, data = hopper_setup
    pol = copy.deepcopy(pol0)
    out = trpo.update_policy(pol, None, data, {**cfg["algos"]["trpo"], "accept_ratio": 1e6}, np.random.default_rng(4))
    assert out["step_fraction"] == 0.0
    torch.testing.assert_close(flat_params(pol), flat_params(pol0))
    pol = copy.deepcopy(pol0)
    out = trpo.update_policy(pol, None, data, {**cfg["algos"]["trpo"], "accept_ratio": 0.1}, np.random.default_rng(4))
    assert out["step_fraction"] > 0.0
