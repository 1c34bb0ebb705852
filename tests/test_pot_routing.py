import pytest
import torch
from torch.distributions import RelaxedOneHotCategorical

from pyro_pots import PotRouting
from pyro_pots.distributions import ROUTING_MODES

ACTIVE = torch.tensor([True, False, True, True, False, False])


@pytest.mark.parametrize("routing", ROUTING_MODES)
def test_closed_pots_get_exactly_zero_weight(routing):
    y = torch.randn(500, 6) * 3
    y[:, 1] = 50.0  # a closed pot with by far the largest logit still gets nothing
    w = PotRouting(y, 0.3, routing, ACTIVE).rsample()
    assert (w[:, ~ACTIVE] == 0).all()
    torch.testing.assert_close(w.sum(-1), torch.ones(500))


def test_gumbel_log_prob_matches_torch_concrete_on_open_pots():
    y = torch.randn(40, 6, dtype=torch.float64)
    T = 0.7
    w = PotRouting(y, T, "gumbel", ACTIVE).rsample()
    ref = RelaxedOneHotCategorical(
        torch.tensor(T, dtype=torch.float64), logits=y[:, ACTIVE]
    ).log_prob(w[:, ACTIVE])
    torch.testing.assert_close(PotRouting(y, T, "gumbel", ACTIVE).log_prob(w), ref)
    # all pots open: the same as torch's density on the full simplex
    w_all = PotRouting(y, T, "gumbel").rsample()
    ref_all = RelaxedOneHotCategorical(torch.tensor(T, dtype=torch.float64), logits=y).log_prob(
        w_all
    )
    torch.testing.assert_close(PotRouting(y, T, "gumbel").log_prob(w_all), ref_all)


def test_gumbel_samples_follow_the_categorical_at_low_temperature():
    y = torch.tensor([1.0, 0.0, 2.0, 0.5, 0.0, 0.0])
    w = PotRouting(y, 0.05, "gumbel", ACTIVE).sample((40_000,))
    freq = torch.bincount(w.argmax(-1), minlength=6).float() / 40_000
    expected = torch.softmax(y.masked_fill(~ACTIVE, -float("inf")), -1)
    torch.testing.assert_close(freq, expected, atol=0.01, rtol=0)


def test_straight_through_is_one_hot_with_soft_gradient():
    y = torch.randn(8, 6, requires_grad=True)
    torch.manual_seed(3)
    hard = PotRouting(y, 0.5, "straight_through", ACTIVE).rsample()
    torch.manual_seed(3)
    soft = PotRouting(y, 0.5, "gumbel", ACTIVE).rsample()
    assert ((hard == 0) | (hard == 1)).all() and (hard.sum(-1) == 1).all()
    assert (hard.argmax(-1) == soft.argmax(-1)).all()
    (g_hard,) = torch.autograd.grad((hard * torch.arange(6.0)).sum(), y)
    (g_soft,) = torch.autograd.grad((soft * torch.arange(6.0)).sum(), y)
    torch.testing.assert_close(g_hard, g_soft)
    # scored by the soft draw it came from
    d = PotRouting(y, 0.5, "straight_through", ACTIVE)
    torch.testing.assert_close(
        d.log_prob(hard), PotRouting(y, 0.5, "gumbel", ACTIVE).log_prob(soft)
    )


def test_softmax_routing_is_a_point_mass():
    y = torch.randn(5, 6)
    d = PotRouting(y, 0.5, "softmax", ACTIVE)
    w = d.rsample()
    assert (d.log_prob(w) == 0).all()
    assert (d.log_prob(torch.roll(w, 1, -1)) == -float("inf")).all()


@pytest.mark.parametrize("routing", ROUTING_MODES)
@pytest.mark.parametrize("n_open", [64, 5])
def test_low_temperature_many_pots_is_finite(routing, n_open):
    K = 64
    active = torch.zeros(K, dtype=torch.bool)
    active[:n_open] = True
    y = (10 * torch.randn(256, K)).requires_grad_()
    d = PotRouting(y, 0.05, routing, active)
    w = d.rsample()
    lp = d.log_prob(w)
    assert torch.isfinite(w).all() and torch.isfinite(lp).all()
    (lp.sum() + (w * torch.randn(K)).sum()).backward()
    assert torch.isfinite(y.grad).all()


def test_kick_biases_toward_pot_and_turns_straight_through_off():
    y = torch.zeros(2000, 6)
    d = PotRouting(y, 0.5, "straight_through", ACTIVE).kick(pot=3, bias=3.0, temperature=2.0)
    assert d.routing == "gumbel" and float(d.temperature) == 2.0
    w = d.rsample()
    assert (w[:, ~ACTIVE] == 0).all()
    assert w[:, 3].mean() > 0.5
    # a kick toward a closed pot cannot open it
    w_closed = (
        PotRouting(y, 0.5, "gumbel", ACTIVE).kick(pot=1, bias=10.0, temperature=1.0).rsample()
    )
    assert (w_closed[:, 1] == 0).all()


def test_rejects_unknown_routing():
    with pytest.raises(ValueError, match="unknown routing"):
        PotRouting(torch.zeros(3), 1.0, "hardmax")
