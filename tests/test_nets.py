"""Networks and normalisers: checked against torch.distributions, numpy and hand-made cases."""
import math

import numpy as np
import pytest
import torch
from torch.distributions import Independent, Normal, kl_divergence

from pgprobe.nets import (
    GaussianPolicy,
    ObsNormalizer,
    PolicyWeights,
    RewardScaler,
    RunningMeanStd,
    ValueNet,
    flat_params,
    gaussian_kl,
    gaussian_log_prob,
    set_flat_params,
)


def _diag_normal(mean, log_std):
    return Independent(Normal(mean, torch.exp(log_std)), 1)


def _random_gaussians(seed, rows=7, dim=3):
    g = torch.Generator().manual_seed(seed)
    mp, mq = torch.randn(rows, dim, generator=g, dtype=torch.float64), torch.randn(rows, dim, generator=g, dtype=torch.float64)
    lp, lq = 0.5 * torch.randn(rows, dim, generator=g, dtype=torch.float64), 0.5 * torch.randn(rows, dim, generator=g, dtype=torch.float64)
    return mp, lp, mq, lq


@pytest.mark.parametrize("seed", [0, 1])
def test_gaussian_kl_matches_torch_distributions(seed):
    mp, lp, mq, lq = _random_gaussians(seed)
    expected = kl_divergence(_diag_normal(mp, lp), _diag_normal(mq, lq))
    got = gaussian_kl(mp, lp, mq, lq)
    assert got.shape == (7,)
    torch.testing.assert_close(got, expected, rtol=1e-10, atol=1e-12)
    # KL(p || p) = 0, and KL is not symmetric
    torch.testing.assert_close(gaussian_kl(mp, lp, mp, lp), torch.zeros(7, dtype=torch.float64))
    assert not torch.allclose(gaussian_kl(mq, lq, mp, lp), got)


def test_gaussian_kl_monte_carlo():
    """KL(p||q) = E_p[log p(x) - log q(x)], estimated with many samples."""
    g = torch.Generator().manual_seed(3)
    mp, lp = torch.tensor([[0.3, -1.0]], dtype=torch.float64), torch.tensor([[-0.2, 0.4]], dtype=torch.float64)
    mq, lq = torch.tensor([[1.0, 0.0]], dtype=torch.float64), torch.tensor([[0.1, -0.3]], dtype=torch.float64)
    n = 400_000
    x = mp + torch.exp(lp) * torch.randn(n, 2, generator=g, dtype=torch.float64)
    # independent log-density, written out from the formula
    def logpdf(x, m, ls):
        return (-0.5 * ((x - m) / torch.exp(ls)) ** 2 - ls - 0.5 * math.log(2 * math.pi)).sum(-1)
    mc = (logpdf(x, mp, lp) - logpdf(x, mq, lq)).mean().item()
    assert gaussian_kl(mp, lp, mq, lq).item() == pytest.approx(mc, abs=0.01)


def test_gaussian_log_prob_matches_torch_distributions():
    g = torch.Generator().manual_seed(4)
    mean = torch.randn(5, 3, generator=g, dtype=torch.float64)
    log_std = 0.3 * torch.randn(3, generator=g, dtype=torch.float64).expand(5, 3)
    act = torch.randn(5, 3, generator=g, dtype=torch.float64)
    expected = _diag_normal(mean, log_std).log_prob(act)
    torch.testing.assert_close(gaussian_log_prob(mean, log_std, act), expected, rtol=1e-12, atol=1e-12)


def test_policy_log_prob_and_entropy_match_torch_distributions():
    torch.manual_seed(0)
    pol = GaussianPolicy(4, 2, [8], "orthogonal", init_log_std=-0.5)
    with torch.no_grad():
        pol.log_std.copy_(torch.tensor([-0.5, 0.7]))
    obs, act = torch.randn(6, 4), torch.randn(6, 2)
    mean = pol.mean(obs)
    dist = _diag_normal(mean, pol.log_std.expand(6, 2))
    torch.testing.assert_close(pol.log_prob(obs, act), dist.log_prob(act))
    torch.testing.assert_close(pol.entropy(), dist.entropy()[0])


@pytest.mark.parametrize("init", ["orthogonal", "xavier"])
def test_policy_weights_single_matches_torch(init):
    torch.manual_seed(1)
    pol = GaussianPolicy(5, 3, [64, 64], init, init_log_std=-0.3)
    # make the output layer non-trivial (its init gain is 0.01) so a wrong layer order shows
    with torch.no_grad():
        for p in pol.parameters():
            p.add_(0.3 * torch.randn_like(p))
    obs = np.random.default_rng(0).standard_normal((11, 5))
    w = PolicyWeights.from_policy(pol)
    got = w.mean(obs[None])
    assert got.shape == (1, 11, 3)
    with torch.no_grad():
        expected = pol.mean(torch.as_tensor(obs, dtype=torch.float64).to(torch.float32)).double().numpy()
    np.testing.assert_allclose(got[0], expected, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(w.log_std[0], pol.log_std.detach().numpy(), rtol=0, atol=0)


def test_policy_weights_stacked_match_separate_forwards():
    torch.manual_seed(2)
    pol = GaussianPolicy(4, 2, [16, 8], "orthogonal")
    base = flat_params(pol)
    k = 5
    flats = torch.stack([base + 0.5 * torch.randn_like(base) for _ in range(k)])
    w = PolicyWeights.from_flat(pol, flats.numpy())
    obs = np.random.default_rng(1).standard_normal((k, 9, 4))
    got = w.mean(obs)
    assert got.shape == (k, 9, 2)
    other = GaussianPolicy(4, 2, [16, 8], "orthogonal")
    for i in range(k):
        set_flat_params(other, flats[i])
        with torch.no_grad():
            expected = other.mean(torch.as_tensor(obs[i], dtype=torch.float32)).double().numpy()
        np.testing.assert_allclose(got[i], expected, rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(w.log_std[i], other.log_std.detach().numpy())
    # the K policies really differ
    assert not np.allclose(got[0], got[1])


def test_flat_params_roundtrip():
    torch.manual_seed(3)
    a, b = ValueNet(3, [5], "xavier"), ValueNet(3, [5], "xavier")
    assert not torch.equal(flat_params(a), flat_params(b))
    set_flat_params(b, flat_params(a))
    x = torch.randn(4, 3)
    torch.testing.assert_close(a(x), b(x))
    assert flat_params(a).numel() == sum(p.numel() for p in a.parameters()) == 3 * 5 + 5 + 5 + 1


def test_running_mean_std_matches_numpy_concatenation():
    rng = np.random.default_rng(0)
    batches = [rng.normal(loc=3.0, scale=2.0, size=(n, 4)) for n in (1, 7, 50, 3, 200)]
    rms = RunningMeanStd((4,))
    for b in batches:
        rms.update(b)
    allx = np.concatenate(batches)
    # the prior (mean 0, var 1) carries weight 1e-4: negligible at this tolerance
    np.testing.assert_allclose(rms.mean, allx.mean(0), rtol=1e-5)
    np.testing.assert_allclose(rms.var, allx.var(0), rtol=1e-5)
    assert rms.count == pytest.approx(len(allx), abs=1e-3)


def test_running_mean_std_state_roundtrip():
    rng = np.random.default_rng(1)
    a = RunningMeanStd((2,))
    a.update(rng.standard_normal((10, 2)))
    b = RunningMeanStd((2,))
    b.load(a.state())
    x = rng.standard_normal((5, 2))
    a.update(x)
    b.update(x)
    np.testing.assert_array_equal(a.mean, b.mean)
    np.testing.assert_array_equal(a.var, b.var)


def test_obs_normalizer_normalises_and_clips():
    norm = ObsNormalizer(2, enabled=True, clip=2.0)
    rng = np.random.default_rng(2)
    data = rng.normal([10.0, -5.0], [3.0, 0.5], size=(500, 2))
    norm(data, update=True)
    mean, std = data.mean(0), data.std(0)
    probe = np.array([[10.0 + 3.0, -5.0 - 0.25],      # inside the clip range
                      [1000.0, -1000.0]])             # far outside
    out = norm(probe)
    np.testing.assert_allclose(out[0], (probe[0] - mean) / std, rtol=1e-3)
    np.testing.assert_array_equal(out[1], [2.0, -2.0])
    # update=False leaves the statistics alone
    before = norm.rms.mean.copy()
    norm(probe)
    np.testing.assert_array_equal(norm.rms.mean, before)
    # no clip: values pass through unclipped
    free = ObsNormalizer(2, enabled=True, clip=None)
    free.rms.load(norm.rms.state())
    assert abs(free(probe)[1, 0]) > 100
    # disabled: identity
    off = ObsNormalizer(2, enabled=False, clip=2.0)
    np.testing.assert_array_equal(off(probe, update=True), probe)


def test_obs_normalizer_handles_time_major_batches():
    norm = ObsNormalizer(3, enabled=True, clip=None)
    x = np.random.default_rng(3).standard_normal((4, 2, 3)) * 5 + 1
    out = norm(x, update=True)
    assert out.shape == (4, 2, 3)
    flat = x.reshape(-1, 3)
    np.testing.assert_allclose(norm.rms.mean, flat.mean(0), rtol=1e-4)


def test_reward_scaler_by_hand():
    """Two envs, gamma 0.5: rewards divided by the running std of the discounted return."""
    gamma = 0.5
    sc = RewardScaler(2, gamma, enabled=True, clip=None, eps=0.0)
    steps = [(np.array([1.0, 2.0]), np.array([False, False])),
             (np.array([3.0, -1.0]), np.array([False, True])),   # env 1's episode ends here
             (np.array([0.5, 4.0]), np.array([False, False]))]
    # by hand: running returns, then the std of every return seen so far (all of them)
    ret = np.zeros(2)
    seen = []
    for r, done in steps:
        ret = ret * gamma + r
        seen.extend(ret.tolist())
        # RunningMeanStd starts with a tiny prior (var 1, count 1e-4)
        n, prior = len(seen), 1e-4
        m = np.mean(seen)
        var_data = np.var(seen)
        # combine prior (mean 0, var 1, count 1e-4) with the data exactly (Chan)
        total = prior + n
        var = (1.0 * prior + var_data * n + m**2 * prior * n / total) / total
        expected = r / np.sqrt(var)
        got = sc(r, done)
        np.testing.assert_allclose(got, expected, rtol=1e-9)
        ret[done] = 0.0
    np.testing.assert_allclose(sc.ret, ret)
    # after env 1 ended at step 2, its running return restarted: step 3 return is just 4.0
    assert sc.ret[1] == pytest.approx(4.0)
    assert sc.ret[0] == pytest.approx(((1.0 * 0.5) + 3.0) * 0.5 + 0.5)


def test_reward_scaler_resets_on_done_and_clips():
    sc = RewardScaler(1, 0.99, enabled=True, clip=None)
    sc(np.array([5.0]), np.array([False]))
    assert sc.ret[0] == pytest.approx(5.0)
    sc(np.array([1.0]), np.array([True]))
    assert sc.ret[0] == 0.0
    sc(np.array([2.0]), np.array([False]))
    assert sc.ret[0] == pytest.approx(2.0)   # not 0.99 * (5*0.99 + 1) + 2
    clipped = RewardScaler(1, 0.99, enabled=True, clip=0.5)
    for _ in range(3):
        out = clipped(np.array([100.0]), np.array([False]))
        assert abs(out[0]) <= 0.5
    off = RewardScaler(2, 0.99, enabled=False, clip=None)
    r = np.array([3.0, -7.0])
    np.testing.assert_array_equal(off(r, np.array([False, True])), r)


def test_reward_scaler_state_roundtrip():
    a = RewardScaler(2, 0.9, enabled=True, clip=None)
    for r in ([1.0, 2.0], [0.5, -1.0]):
        a(np.array(r), np.array([False, False]))
    b = RewardScaler(2, 0.9, enabled=True, clip=None)
    b.load(a.state())
    r = np.array([2.0, 3.0])
    np.testing.assert_array_equal(a(r, np.array([False, False])), b(r, np.array([False, False])))


def test_orthogonal_init_gains():
    torch.manual_seed(4)
    pol = GaussianPolicy(11, 3, [64, 64], "orthogonal")
    lins = [m for m in pol.mean if isinstance(m, torch.nn.Linear)]
    assert len(lins) == 3
    w = lins[1].weight.detach().double()        # the square 64x64 hidden layer
    torch.testing.assert_close(w @ w.T, 2.0 * torch.eye(64, dtype=torch.float64), atol=1e-5, rtol=0)
    # first layer (64 x 11): orthonormal columns scaled by sqrt(2)
    w0 = lins[0].weight.detach().double()
    torch.testing.assert_close(w0.T @ w0, 2.0 * torch.eye(11, dtype=torch.float64), atol=1e-5, rtol=0)
    # policy output layer (3 x 64): orthonormal rows scaled by 0.01
    w2 = lins[2].weight.detach().double()
    torch.testing.assert_close(w2 @ w2.T, 0.01**2 * torch.eye(3, dtype=torch.float64), atol=1e-9, rtol=0)
    for lin in lins:
        assert torch.count_nonzero(lin.bias) == 0
    # value net output layer has gain 1
    v = ValueNet(11, [64, 64], "orthogonal")
    vl = [m for m in v.net if isinstance(m, torch.nn.Linear)]
    torch.testing.assert_close((vl[2].weight.double() @ vl[2].weight.double().T).detach(),
                               torch.ones(1, 1, dtype=torch.float64), atol=1e-5, rtol=0)


def test_xavier_init_is_not_orthogonal():
    torch.manual_seed(5)
    pol = GaussianPolicy(11, 3, [64, 64], "xavier")
    lins = [m for m in pol.mean if isinstance(m, torch.nn.Linear)]
    w = lins[1].weight.detach().double()
    # xavier uniform, gain 1: U(-a, a) with a = sqrt(6 / (fan_in + fan_out))
    bound = math.sqrt(6.0 / (64 + 64))
    assert w.abs().max() <= bound
    assert w.var().item() == pytest.approx(bound**2 / 3, rel=0.1)
    assert not torch.allclose(w @ w.T, torch.eye(64, dtype=torch.float64) * (w @ w.T).diag().mean(), atol=1e-2)
    # the output layer too has gain 1 (the authors' xavier ignores the 0.01 scale orthogonal uses)
    w2 = lins[2].weight.detach().double()
    bound2 = math.sqrt(6.0 / (64 + 3))
    assert w2.abs().max() <= bound2 + 1e-12
    assert w2.abs().max() > 0.5 * bound2
    assert w2.var().item() == pytest.approx(bound2**2 / 3, rel=0.25)
    orth = GaussianPolicy(11, 3, [64, 64], "orthogonal")
    assert [m for m in orth.mean if isinstance(m, torch.nn.Linear)][2].weight.abs().max() < 0.011
    with pytest.raises(ValueError):
        GaussianPolicy(3, 1, [4], "kaiming")
