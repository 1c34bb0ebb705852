"""Handlers used directly on user code, and every swappable part of the model."""

import math

import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro import poutine
from pyro.infer import Predictive, Trace_ELBO, TraceMeanField_ELBO

from pyro_pots import LogitMixture, PotsVAE, handlers, pots_mask, sites
from pyro_pots.model import LogitMoGPrior

D, K = 10, 4


def toy_model():
    """A user's model with the site conventions: per-pot latents in the channels plate."""
    with pyro.plate(sites.DATA_PLATE, 6, dim=-1):
        y = pyro.sample(sites.LOGITS, LogitMixture(3.0, 1.0, torch.ones(K, dtype=torch.bool)))
        with pyro.plate(sites.CHANNELS_PLATE, K, dim=-2):
            pyro.sample(sites.Z, dist.Normal(0.0, 1.0).expand([2]).to_event(1))
    return y


def test_active_pots_masks_channel_sites_and_restricts_the_mixture():
    active = pots_mask(K, [1, 2])
    with handlers.active_pots(active=active):
        tr = poutine.trace(toy_model).get_trace()
    tr.compute_log_prob()
    z = tr.nodes[sites.Z]
    assert (z["log_prob"][~active] == 0).all() and (z["log_prob"][active] != 0).all()
    assert torch.equal(tr.nodes[sites.LOGITS]["fn"].active[0], active)
    # the wrapper form is the same handler
    tr2 = poutine.trace(handlers.active_pots(toy_model, active=active)).get_trace()
    assert torch.equal(tr2.nodes[sites.LOGITS]["fn"].active[0], active)


def test_responsibility_scale_weights_channel_sites_by_softmax_of_logits():
    active = pots_mask(K, [0, 1, 3])
    with handlers.responsibility_scale(active=active):
        tr = poutine.trace(toy_model).get_trace()
    y = tr.nodes[sites.LOGITS]["value"]
    expected = torch.softmax(y.masked_fill(~active, -math.inf), -1).T  # (K, N)
    torch.testing.assert_close(tr.nodes[sites.Z]["scale"], expected)
    assert tr.nodes[sites.LOGITS]["scale"] == 1.0


@pytest.mark.parametrize("lam", [0.0, torch.tensor(0.0), 0.5, torch.tensor(0.5)])
def test_logit_prior_scale_zero_switches_the_term_off(lam):
    vae = PotsVAE(D, num_pots=K, hidden_dim=8, decoder_hidden_dim=8)
    x = torch.rand(5, D)
    with handlers.logit_prior_scale(lam=lam):
        tr_g = poutine.trace(vae.guide).get_trace(x)
        tr = poutine.trace(poutine.replay(vae.model, trace=tr_g)).get_trace(x)
    tr.compute_log_prob()
    site = tr.nodes[sites.LOGITS]
    assert torch.isfinite(site["log_prob_sum"])
    if float(lam) == 0:
        assert site["log_prob_sum"] == 0


@pytest.mark.parametrize("bad", [-1.0, float("nan"), float("inf"), torch.tensor([1.0, 2.0])])
def test_logit_prior_scale_rejects_bad_lambda(bad):
    with pytest.raises(ValueError, match="lam must be a finite number >= 0"):
        handlers.logit_prior_scale(lam=bad)


def test_kick_rejects_bad_values_and_positional_misuse():
    with pytest.raises(ValueError, match="temperature"):
        handlers.kick(pot=1, temperature=0.0)
    with pytest.raises(ValueError, match="lam_factor"):
        handlers.kick(pot=1, lam_factor=-0.5)
    with pytest.raises(ValueError, match="not callable"):
        handlers.logit_prior_scale(0.5)
    with pytest.raises(ValueError, match="boolean"):
        handlers.active_pots(active=torch.ones(3))


def test_closed_pots_are_never_computed():
    """NaN weights in closed pots' heads and decoders cannot reach the loss."""
    vae = PotsVAE(D, num_pots=K, hidden_dim=8, decoder_hidden_dim=8)
    active = pots_mask(K, [0, 2])
    with torch.no_grad():
        for layer in (
            vae.decoders.hidden_layer,
            vae.decoders.output_layer,
            vae.encoder.latent_heads,
        ):
            layer.weight[~active] = math.nan
    loss = Trace_ELBO().differentiable_loss(vae.model, vae.guide, torch.rand(7, D), active)
    loss.backward()
    assert torch.isfinite(loss)
    assert all(
        torch.isfinite(p.grad[active]).all()
        for p in (vae.decoders.hidden_layer.weight, vae.encoder.latent_heads.weight)
    )


@pytest.mark.parametrize("prior", ["logit_mog", "none", "categorical_kl"])
@pytest.mark.parametrize("guide", ["delta", "normal"])
@pytest.mark.parametrize("elbo", [Trace_ELBO, TraceMeanField_ELBO])
def test_every_prior_and_logits_guide_trains(prior, guide, elbo):
    vae = PotsVAE(
        D, num_pots=K, hidden_dim=8, decoder_hidden_dim=8, logit_prior=prior, logits_guide=guide
    )
    x = torch.rand(16, D)
    loss = elbo().differentiable_loss(vae.model, vae.guide, x, pots_mask(K, [0, 1, 3]))
    loss.backward()
    assert torch.isfinite(loss)
    assert all(torch.isfinite(p.grad).all() for p in vae.parameters() if p.grad is not None)


def test_categorical_kl_term_is_minus_kl_to_uniform_over_open_pots():
    vae = PotsVAE(D, num_pots=K, hidden_dim=8, decoder_hidden_dim=8, logit_prior="categorical_kl")
    x = torch.rand(12, D)
    active = pots_mask(K, [0, 2, 3])
    tr_g = poutine.trace(vae.guide).get_trace(x, active)
    tr_m = poutine.trace(poutine.replay(vae.model, trace=tr_g)).get_trace(x, active)
    tr_m.compute_log_prob()
    r = torch.softmax(tr_g.nodes[sites.LOGITS]["value"][:, active], -1)
    kl = (r * (r.log() - math.log(1 / 3))).sum(-1)
    torch.testing.assert_close(tr_m.nodes[sites.LOGITS]["log_prob"], -kl)


def test_normal_logits_guide_term_is_lambda_times_log_ratio():
    vae = PotsVAE(D, num_pots=K, hidden_dim=8, decoder_hidden_dim=8, logits_guide="normal")
    x = torch.rand(12, D)
    active = pots_mask(K, [1, 2])
    with handlers.logit_prior_scale(lam=0.4):
        tr_g = poutine.trace(vae.guide).get_trace(x, active)
        tr_m = poutine.trace(poutine.replay(vae.model, trace=tr_g)).get_trace(x, active)
    tr_g.compute_log_prob()
    tr_m.compute_log_prob()
    y = tr_g.nodes[sites.LOGITS]["value"]
    q = tr_g.nodes[sites.LOGITS]["fn"]
    ref = 0.4 * (LogitMixture(5.0, 1.0, active).log_prob(y) - q.log_prob(y))
    got = tr_m.nodes[sites.LOGITS]["log_prob"] - tr_g.nodes[sites.LOGITS]["log_prob"]
    torch.testing.assert_close(got, ref)


def test_prior_object_and_bad_choices():
    vae = PotsVAE(D, num_pots=K, logit_prior=LogitMoGPrior(M=8.0, sigma=0.5))
    d = vae.logit_prior(pots_mask(K, [0, 1]))
    assert float(d.M) == 8.0 and float(d.sigma) == 0.5
    with pytest.raises(ValueError, match="unknown logit prior 'mog'"):
        PotsVAE(D, logit_prior="mog")
    with pytest.raises(ValueError, match="unknown routing"):
        PotsVAE(D, routing="argmax")
    with pytest.raises(ValueError, match="M > 0 and sigma > 0"):
        LogitMoGPrior(M=5.0, sigma=0.0)
    with pytest.raises(ValueError, match="shape"):
        vae.model(torch.rand(3, D), torch.ones(K + 1, dtype=torch.bool))


def test_two_models_in_one_process_do_not_share_weights():
    a = PotsVAE(D, num_pots=K)
    b = PotsVAE(D, num_pots=K)
    x = torch.rand(4, D)
    Trace_ELBO().loss(a.model, a.guide, x)
    Trace_ELBO().loss(b.model, b.guide, x)
    assert not torch.equal(a.encoder.trunk.weight, b.encoder.trunk.weight)


def test_open_pots_sets_the_default_open_set_and_state_dict_round_trips():
    vae = PotsVAE(D, num_pots=K)
    assert vae.active.tolist() == [True, False, False, False]
    vae.open_pots([0, 3])
    clone = PotsVAE(D, num_pots=K)
    clone.load_state_dict(vae.state_dict())
    assert clone.active.tolist() == [True, False, False, True]
    x = torch.rand(6, D)
    pyro.set_rng_seed(1)
    a = Trace_ELBO().loss(vae.model, vae.guide, x)
    pyro.set_rng_seed(1)
    b = Trace_ELBO().loss(clone.model, clone.guide, x)
    assert a == pytest.approx(b, rel=1e-6)


def test_kick_works_under_predictive():
    vae = PotsVAE(D, num_pots=K, routing="straight_through")
    x = torch.rand(50, D)
    active = pots_mask(K, [0, 1])
    with handlers.kick(pot=1, bias=6.0, temperature=1.0):
        pred = Predictive(vae.model, guide=vae.guide, num_samples=2)(x, active)
    route = pred[sites.ROUTE].squeeze(1)
    assert route[..., 1].mean() > 0.9 and (route[..., 2:] == 0).all()


@pytest.mark.parametrize("routing", ["softmax", "gumbel", "straight_through"])
@pytest.mark.parametrize("n_open", [64, 3])
def test_whole_elbo_is_finite_at_temperature_005_with_64_pots(routing, n_open):
    vae = PotsVAE(
        D,
        num_pots=64,
        latent_dim=2,
        hidden_dim=16,
        decoder_hidden_dim=8,
        routing=routing,
        temperature=0.05,
    )
    with torch.no_grad():  # large logits: routing at T=0.05 is then fully saturated
        vae.encoder.logits_head.weight.mul_(50.0)
    active = pots_mask(64, range(n_open))
    for elbo in (Trace_ELBO(), TraceMeanField_ELBO()):
        vae.zero_grad()
        tr_g = poutine.trace(vae.guide).get_trace(torch.rand(32, D), active)
        tr_g.compute_log_prob()
        assert all(
            torch.isfinite(s["log_prob"]).all()
            for s in tr_g.nodes.values()
            if s["type"] == "sample" and "log_prob" in s
        )
        loss = elbo.differentiable_loss(vae.model, vae.guide, torch.rand(32, D), active)
        loss.backward()
        assert torch.isfinite(loss)
        assert all(torch.isfinite(p.grad).all() for p in vae.parameters() if p.grad is not None)


def test_continuous_bernoulli_likelihood_matches_torch():
    vae = PotsVAE(
        D,
        num_pots=K,
        hidden_dim=8,
        decoder_hidden_dim=8,
        likelihood="continuous_bernoulli",
        routing="softmax",
    )
    x = torch.rand(9, D)
    active = pots_mask(K, [0, 1])
    tr_g = poutine.trace(vae.guide).get_trace(x, active)
    tr_m = poutine.trace(poutine.replay(vae.model, trace=tr_g)).get_trace(x, active)
    tr_m.compute_log_prob()
    out = tr_m.nodes["_RETURN"]["value"]
    ref = torch.distributions.ContinuousBernoulli(logits=out).log_prob(x).sum(-1)
    torch.testing.assert_close(tr_m.nodes[sites.OBS]["log_prob"], ref)


def test_a_distribution_or_other_object_as_a_part_is_refused_at_construction():
    mixture = LogitMixture(5.0, 1.0, pots_mask(K, [0, 1]))
    with pytest.raises(ValueError, match=r"logit_prior must be one of .* callable prior\(active"):
        PotsVAE(D, num_pots=K, logit_prior=mixture)
    with pytest.raises(ValueError, match="logit_prior must be one of"):
        PotsVAE(D, num_pots=K, logit_prior=3.0)
    with pytest.raises(ValueError, match="logits_guide must be one of .* params_per_pot"):
        PotsVAE(D, num_pots=K, logits_guide=lambda head: dist.Delta(head, event_dim=1))
    # a plain callable prior is a prior
    vae = PotsVAE(D, num_pots=K, logit_prior=lambda active, dtype: LogitMixture(5.0, 1.0, active))
    assert math.isfinite(Trace_ELBO().loss(vae.model, vae.guide, torch.rand(3, D)))


def test_active_as_a_list_of_bools_is_a_mask_and_anything_else_one_clear_error():
    vae = PotsVAE(D, num_pots=K, hidden_dim=8, decoder_hidden_dim=8)
    x = torch.rand(5, D)
    mask = [True, False, True, False]
    ref = vae.responsibilities(x, torch.tensor(mask))
    assert torch.equal(vae.responsibilities(x, mask), ref)
    assert torch.equal(vae.responsibilities(x, tuple(mask)), ref)
    pyro.set_rng_seed(2)
    a = Trace_ELBO().loss(vae.model, vae.guide, x, mask)
    pyro.set_rng_seed(2)
    assert a == Trace_ELBO().loss(vae.model, vae.guide, x, torch.tensor(mask))
    assert vae.open_ids(mask).tolist() == [0, 2]
    for bad in ([0, 2], [1, 0, 1, 0], [True, False], "all", torch.ones(K)):
        with pytest.raises(ValueError, match=r"active must be a boolean mask of shape \(4,\)"):
            vae.responsibilities(x, bad)


def test_the_public_parts_match_what_model_and_guide_compute():
    vae = PotsVAE(D, num_pots=K, latent_dim=3, hidden_dim=8, decoder_hidden_dim=8)
    x = torch.rand(5, D)
    active = pots_mask(K, [1, 3])
    ids = vae.open_ids(active)
    assert ids.dtype == torch.long and ids.tolist() == [1, 3]
    assert torch.equal(vae.open_ids(), torch.tensor([0]))  # the buffer by default
    tr = poutine.trace(vae.guide).get_trace(x, active)
    torch.testing.assert_close(vae.mean_logits(x), tr.nodes[sites.LOGITS]["value"])
    q = vae.latent_posterior(x, ids)
    z_fn = tr.nodes[sites.Z]["fn"].base_dist
    assert q.loc.shape == (2, 5, 3)
    assert torch.equal(q.loc, z_fn.loc[ids]) and torch.equal(q.scale, z_fn.scale[ids])
    torch.testing.assert_close(vae.latent_posterior(x, 3).scale, q.scale[1:])  # one pot by id
    # decode: each pot's own decoder, mixed by one-hot routing in the model
    z = tr.nodes[sites.Z]["value"]
    route = torch.zeros(5, K)
    route[:, 3] = 1.0
    mixed = poutine.condition(vae.model, data={sites.ROUTE: route, sites.Z: z})(x, active)
    torch.testing.assert_close(vae.decode(z[ids], ids)[1], mixed)
    torch.testing.assert_close(vae.decode(z[3:4], [3])[0], mixed)
