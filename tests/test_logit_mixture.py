import numpy as np
import pytest
import torch
from scipy.special import logsumexp
from scipy.stats import multivariate_normal

from pyro_pots import LogitMixture


def scipy_log_prob(y, M, sigma, active):
    """Independent reference: uniform mixture of scipy MVN densities over the open pots."""
    K = y.shape[-1]
    comps = [
        multivariate_normal(mean=M * np.eye(K)[k], cov=sigma**2 * np.eye(K))
        for k in np.flatnonzero(active)
    ]
    return logsumexp([c.logpdf(y) for c in comps], axis=0) - np.log(len(comps))


@pytest.mark.parametrize("seed", range(6))
def test_log_prob_matches_scipy(seed):
    rng = np.random.default_rng(seed)
    K = int(rng.integers(1, 9))
    M, sigma = float(rng.uniform(0.5, 8)), float(rng.uniform(0.3, 3))
    active = rng.random(K) < 0.6
    active[rng.integers(K)] = True
    y = rng.normal(0, 4, size=(7, K))
    d = LogitMixture(M, sigma, torch.tensor(active))
    got = d.log_prob(torch.tensor(y)).numpy()
    np.testing.assert_allclose(got, scipy_log_prob(y, M, sigma, active), rtol=1e-6, atol=1e-6)


def test_batched_masks_match_per_row_masks():
    rng = np.random.default_rng(1)
    active = torch.tensor([[1, 0, 1, 0], [0, 1, 1, 1], [1, 1, 1, 1]], dtype=torch.bool)
    y = torch.tensor(rng.normal(0, 3, size=(3, 4)))
    d = LogitMixture(4.0, 1.5, active)
    assert d.batch_shape == (3,) and d.event_shape == (4,)
    for i in range(3):
        ref = scipy_log_prob(y[i].numpy(), 4.0, 1.5, active[i].numpy())
        assert d.log_prob(y)[i].item() == pytest.approx(ref, rel=1e-6)


def test_sample_moments():
    active = torch.tensor([True, False, True, True, False])
    d = LogitMixture(torch.tensor(5.0), torch.tensor(0.7), active)
    s = d.sample((200_000,))
    assert s.shape == (200_000, 5)
    # analytic: coordinate k holds the corner with probability 1/|A| on open pots
    p = active.double() / 3
    np.testing.assert_allclose(s.mean(0), 5.0 * p, atol=0.03)
    np.testing.assert_allclose(s.var(0), 0.49 + 25 * p * (1 - p), rtol=0.03)
    np.testing.assert_allclose(d.mean, 5.0 * p, rtol=1e-6)
    np.testing.assert_allclose(d.variance, 0.49 + 25 * p * (1 - p), rtol=1e-6)
    # every draw sits near one open corner, never a closed one
    assert (s.argmax(-1).unsqueeze(-1) == active.nonzero().T).any(-1).float().mean() > 0.999


def test_rsample_is_reparameterized_in_M_and_sigma():
    M = torch.tensor(3.0, requires_grad=True)
    sigma = torch.tensor(0.5, requires_grad=True)
    s = LogitMixture(M, sigma, torch.ones(4, dtype=torch.bool)).rsample((1000,))
    s.max(-1).values.sum().backward()
    assert M.grad is not None and sigma.grad is not None
    assert M.grad.item() > 0  # moving the corners out moves the winning coordinate out


@pytest.mark.parametrize("scale", [1e3, -1e3])
def test_finite_gradients_at_extreme_logits(scale):
    y = (scale * torch.randn(16, 10)).requires_grad_()
    active = torch.tensor([True] * 3 + [False] * 7)
    lp = LogitMixture(5.0, 1.0, active).log_prob(y)
    lp.sum().backward()
    assert torch.isfinite(lp).all() and torch.isfinite(y.grad).all()
    # the gradient is that of the closest open corner: -(y - M e_k*) / sigma^2
    k = (5.0 * y.detach()[:, :3]).argmax(-1)
    ref = -(y.detach() - 5.0 * torch.nn.functional.one_hot(k, 10))
    torch.testing.assert_close(y.grad, ref, rtol=1e-5, atol=1e-2)


def test_rejects_empty_active_set():
    with pytest.raises(ValueError, match="active set is empty"):
        LogitMixture(5.0, 1.0, torch.zeros(4, dtype=torch.bool))
    with pytest.raises(ValueError, match="active set is empty"):
        LogitMixture(5.0, 1.0, torch.tensor([[True, False], [False, False]]))
    with pytest.raises(ValueError, match="active set is empty"):
        LogitMixture(5.0, 1.0, torch.tensor([True, False])).mask_pots(torch.tensor([False, True]))


@pytest.mark.parametrize("M, sigma", [(0.0, 1.0), (-1.0, 1.0), (5.0, 0.0), (5.0, -2.0)])
def test_rejects_nonpositive_parameters(M, sigma):
    with pytest.raises(ValueError, match="constraint"):
        LogitMixture(M, sigma, torch.ones(3, dtype=torch.bool))


def test_rejects_non_boolean_mask():
    with pytest.raises(ValueError, match="boolean"):
        LogitMixture(5.0, 1.0, torch.ones(3))


def test_expand_and_mask_pots():
    d = LogitMixture(5.0, 1.0, torch.ones(4, dtype=torch.bool)).expand((6,))
    assert d.batch_shape == (6,) and d.event_shape == (4,)
    y = torch.randn(6, 4)
    masked = d.mask_pots(torch.tensor([True, False, False, True]))
    ref = scipy_log_prob(y.numpy(), 5.0, 1.0, np.array([1, 0, 0, 1], bool))
    np.testing.assert_allclose(masked.log_prob(y).numpy(), ref, rtol=1e-5)
    assert d.support.check(y).all()
