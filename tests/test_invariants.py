"""The six invariants of the foundation issue, each a test that can fail."""

import math

import numpy as np
import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro import poutine
from pyro.infer import JitTrace_ELBO, Predictive, Trace_ELBO, TraceMeanField_ELBO
from scipy.stats import multivariate_normal
from torch import nn
from twin import twin_loss

from pyro_pots import PotsVAE, handlers, pots_mask, sites
from pyro_pots.distributions import ROUTING_MODES

D, K, d = 12, 5, 3


def make_vae(**kw):
    kw = {"num_pots": K, "latent_dim": d, "hidden_dim": 16, "decoder_hidden_dim": 16, **kw}
    return PotsVAE(D, **kw)


def elbo_from_traces(model, guide, *args):
    """One-particle ELBO, as Trace_ELBO computes it, and the two traces."""
    tr_g = poutine.trace(guide).get_trace(*args)
    tr_m = poutine.trace(poutine.replay(model, trace=tr_g)).get_trace(*args)
    return tr_m.log_prob_sum() - tr_g.log_prob_sum(), tr_m, tr_g


# 1. closed pots: routing weight exactly 0, gradient exactly 0 --------------------------
@pytest.mark.parametrize("routing", ROUTING_MODES)
@pytest.mark.parametrize("lam", [0.0, 1.0])
def test_closed_pots_get_no_weight_and_no_gradient(routing, lam):
    vae = make_vae(routing=routing)
    x = torch.rand(20, D)
    active = pots_mask(K, [1, 3])
    closed = ~active
    with handlers.logit_prior_scale(lam=lam):
        loss = Trace_ELBO().differentiable_loss(vae.model, vae.guide, x, active)
        tr = poutine.trace(vae.guide).get_trace(x, active)
    assert (tr.nodes[sites.ROUTE]["value"][:, closed] == 0).all()
    loss.backward()
    for module in (vae.decoders.hidden_layer, vae.decoders.output_layer, vae.encoder.latent_heads):
        for p in (module.weight, module.bias):
            assert (p.grad[closed] == 0).all() and (p.grad[active] != 0).any()
    closed_rows = vae.encoder.logits_head.weight.grad[closed]
    if lam == 0:
        assert (closed_rows == 0).all()
    else:  # the logit prior pulls closed logits toward 0 (every component has mean 0 there)
        assert (closed_rows != 0).any()


# 2. one pot open == a plain single-latent VAE ----------------------------------------
class PlainVAE(nn.Module):
    """A single-latent Bernoulli VAE in the style of Pyro's examples/vae/vae.py."""

    def __init__(self, vae, pot):
        super().__init__()
        enc, dec = vae.encoder, vae.decoders
        self.trunk = nn.Linear(D, enc.trunk.out_features)
        self.trunk.load_state_dict(enc.trunk.state_dict())
        self.head_w = nn.Parameter(enc.latent_heads.weight[pot].detach().clone())
        self.head_b = nn.Parameter(enc.latent_heads.bias[pot].detach().clone())
        self.dec = [
            (layer.weight[pot].detach(), layer.bias[pot].detach())
            for layer in (dec.hidden_layer, dec.output_layer)
        ]

    def model(self, x):
        with pyro.plate("rows", x.shape[0]):
            z = pyro.sample("z", dist.Normal(torch.zeros(d), 1.0).to_event(1))
            (w1, b1), (w2, b2) = self.dec
            logits = nn.functional.softplus(z @ w1 + b1) @ w2 + b2
            pyro.sample("x", dist.Bernoulli(logits=logits, validate_args=False).to_event(1), obs=x)

    def guide(self, x):
        h = nn.functional.softplus(self.trunk(x))
        out = h @ self.head_w + self.head_b
        loc, scale = out[:, :d], nn.functional.softplus(out[:, d:]) + 1e-4
        with pyro.plate("rows", x.shape[0]):
            pyro.sample("z", dist.Normal(loc, scale).to_event(1))


@pytest.mark.parametrize("routing", ROUTING_MODES)
def test_one_open_pot_is_a_plain_vae(routing):
    vae = make_vae(routing=routing)
    x = torch.rand(30, D)
    pot = 2
    with handlers.logit_prior_scale(lam=0.0):
        ours, _, tr_g = elbo_from_traces(vae.model, vae.guide, x, pots_mask(K, pot))
    z = tr_g.nodes[sites.Z]["value"][pot]
    plain = PlainVAE(vae, pot)
    tr_pg = poutine.trace(poutine.condition(plain.guide, {"z": z})).get_trace(x)
    tr_pm = poutine.trace(poutine.condition(plain.model, {"z": z})).get_trace(x)
    reference = tr_pm.log_prob_sum() - tr_pg.log_prob_sum()
    assert ours.item() == pytest.approx(reference.item(), rel=1e-5)


# 3. the logits site contributes lambda * log p_mix(y) over open pots ---------------------
@pytest.mark.parametrize("lam", [0.0, 0.3, 1.0, 2.5])
def test_logits_site_is_lambda_times_logit_mixture(lam):
    vae = make_vae()
    x = torch.rand(25, D)
    active = pots_mask(K, [0, 2, 4])
    with handlers.logit_prior_scale(lam=lam):
        _, tr_m, tr_g = elbo_from_traces(vae.model, vae.guide, x, active)
    term = tr_m.nodes[sites.LOGITS]["log_prob_sum"] - tr_g.nodes[sites.LOGITS]["log_prob_sum"]
    y = tr_g.nodes[sites.LOGITS]["value"].detach().double().numpy()
    comps = [multivariate_normal(5.0 * np.eye(K)[k], np.eye(K)).logpdf(y) for k in (0, 2, 4)]
    ref = lam * (np.logaddexp.reduce(comps, axis=0) - math.log(3)).sum()
    assert term.item() == pytest.approx(ref, rel=1e-5, abs=1e-4)


def test_kick_relaxes_lambda_and_biases_routing():
    vae = make_vae(routing="straight_through")
    x = torch.rand(25, D)
    active = pots_mask(K, [0, 1])
    with handlers.logit_prior_scale(lam=1.0):
        _, tr_m, _ = elbo_from_traces(vae.model, vae.guide, x, active)
        with handlers.kick(pot=1, temperature=2.0, bias=4.0, lam_factor=0.25):
            _, tr_mk, tr_gk = elbo_from_traces(vae.model, vae.guide, x, active)
    full = tr_m.nodes[sites.LOGITS]["log_prob_sum"]
    assert tr_mk.nodes[sites.LOGITS]["log_prob_sum"].item() == pytest.approx(
        0.25 * full.item(), rel=1e-5
    )
    route = tr_gk.nodes[sites.ROUTE]
    assert route["fn"].routing == "gumbel" and float(route["fn"].temperature) == 2.0
    assert route["value"][:, 1].mean() > 0.8 and (route["value"][:, 2:] == 0).all()


# 4. changing the open set between steps: JitTrace_ELBO == Trace_ELBO ------------------
def test_jit_follows_the_open_set(monkeypatch):
    # Traced and eager graphs draw random numbers differently (torch.normal vs .normal_,
    # and the compile call consumes draws), so noise is switched off: z = loc exactly and
    # routing is softmax. What is left is deterministic and must agree to rounding.
    monkeypatch.setattr(
        torch.distributions.normal,
        "_standard_normal",
        lambda shape, dtype, device: torch.zeros(shape, dtype=dtype, device=device),
    )
    vae = make_vae(routing="softmax")
    x = torch.rand(16, D)
    # JitTrace_ELBO caches on id(model): a bound method is a new object at each access.
    model, guide = vae.model, vae.guide
    jit_elbo = JitTrace_ELBO()
    jit_elbo.differentiable_loss(model, guide, x, pots_mask(K, [4]))  # compile once
    params = list(vae.parameters())
    for pots in [[0], [0, 3], [0, 1, 3], [2]]:
        active = pots_mask(K, pots)
        grads = []
        for elbo in (Trace_ELBO(), jit_elbo):  # the training path: loss and .grad
            vae.zero_grad(set_to_none=False)
            loss = elbo.loss_and_grads(model, guide, x, active)
            grads.append([p.grad.clone() for p in params])
        assert loss == pytest.approx(Trace_ELBO().loss(vae.model, vae.guide, x, active), rel=1e-6)
        for a, b in zip(*grads):
            torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
    assert len(jit_elbo._loss_and_surrogate_loss.compiled) == 1
    # handlers around the step compose with a fresh compiled ELBO (their values are
    # constants of it: a FrozenValueWarning says so)
    with handlers.logit_prior_scale(lam=0.3), handlers.kick(pot=1, lam_factor=0.5):
        ref = Trace_ELBO().loss(model, guide, x, pots_mask(K, [0, 1]))
        got = JitTrace_ELBO().loss_and_grads(model, guide, x, pots_mask(K, [0, 1]))
    assert got == pytest.approx(ref, rel=1e-6)


def test_jit_refuses_an_implicit_open_set():
    vae = make_vae()
    with pytest.raises(ValueError, match="pass `active`"):
        JitTrace_ELBO().differentiable_loss(vae.model, vae.guide, torch.rand(4, D))


def test_trace_mean_field_uses_responsibility_weighted_analytic_kl():
    vae = make_vae()
    x = torch.rand(16, D)
    active = pots_mask(K, [0, 1, 4])
    pyro.set_rng_seed(0)
    loss = TraceMeanField_ELBO().loss(vae.model, vae.guide, x, active)
    assert math.isfinite(loss)
    # the analytic KL of pot k, weighted by r_k, replaces the sampled latent term
    pyro.set_rng_seed(0)
    _, tr_m, tr_g = elbo_from_traces(vae.model, vae.guide, x, active)
    q, r = tr_g.nodes[sites.Z]["fn"], vae.responsibilities(x, active)
    kl = torch.distributions.kl_divergence(q, tr_m.nodes[sites.Z]["fn"])  # (K, N)
    ref = -(
        tr_m.nodes[sites.OBS]["log_prob_sum"]
        + tr_m.nodes[sites.LOGITS]["log_prob_sum"]
        - (r.T[active] * kl[active]).sum()
    )
    assert loss == pytest.approx(ref.item(), rel=1e-5)


# 5. Predictive -----------------------------------------------------------------------
def test_posterior_predictive_replicates_obs():
    vae = make_vae()
    x = torch.rand(9, D)
    active = pots_mask(K, [0, 1])
    S = 4
    pred = Predictive(poutine.uncondition(vae.model), guide=vae.guide, num_samples=S)(x, active)
    # Pyro pads per-row sites to the plate nesting (rows at -1, pots at -2): (S, 1, N, D)
    obs = pred[sites.OBS].squeeze(1)
    assert obs.shape == (S, 9, D)
    assert set(obs.unique().tolist()) <= {0.0, 1.0} and not torch.equal(obs[0], obs[1])
    assert pred[sites.Z].shape == (S, K, 9, d)
    plain = Predictive(vae.model, guide=vae.guide, num_samples=S)(x, active)
    assert plain[sites.OBS].squeeze(1).shape == (S, 9, D)


def test_prior_predictive_for_one_named_pot():
    vae = make_vae()
    pot = 3
    pred = Predictive(vae.model, num_samples=6)(None, pots_mask(K, pot), num_rows=10)
    route = pred[sites.ROUTE].squeeze(1)
    assert (route[..., pot] == 1).all() and route.sum() == 60
    assert (pred[sites.LOGITS].squeeze(1).argmax(-1) == pot).float().mean() > 0.9
    assert pred[sites.OBS].squeeze(1).shape == (6, 10, D)


# 6. the Pyro loss equals a pure-PyTorch twin -----------------------------------------
def _assert_same_gradients(vae, loss_a, loss_b, rtol, atol):
    """Both losses give the same gradient for every parameter either one reaches."""
    g_a = torch.autograd.grad(loss_a, list(vae.parameters()), allow_unused=True)
    g_b = torch.autograd.grad(loss_b, list(vae.parameters()), allow_unused=True)
    for a, b in zip(g_a, g_b):
        if a is not None and b is not None:
            torch.testing.assert_close(a, b, rtol=rtol, atol=atol)


@pytest.mark.parametrize("routing", ROUTING_MODES)
@pytest.mark.parametrize("likelihood", ["bernoulli", "normal"])
@pytest.mark.parametrize("lam", [0.0, 0.7])
def test_trace_elbo_equals_pytorch_twin(routing, likelihood, lam, float64):
    vae = make_vae(routing=routing, likelihood=likelihood).double()
    x = torch.rand(24, D, dtype=torch.float64)
    active = pots_mask(K, [0, 2, 3])
    pyro.set_rng_seed(7)
    with handlers.logit_prior_scale(lam=lam):
        pyro_loss = Trace_ELBO().differentiable_loss(vae.model, vae.guide, x, active)
    pyro.set_rng_seed(7)
    ref = twin_loss(vae, x, active, lam=lam)
    assert pyro_loss.item() == pytest.approx(ref.item(), rel=1e-10)
    _assert_same_gradients(vae, pyro_loss, ref, rtol=1e-8, atol=1e-10)


@pytest.mark.parametrize("routing", ROUTING_MODES)
def test_batched_twin_equals_the_looped_twin(routing, float64):
    vae = make_vae(routing=routing).double()
    x = torch.rand(24, D, dtype=torch.float64)
    active = pots_mask(K, [0, 2, 3])
    pyro.set_rng_seed(5)
    looped = twin_loss(vae, x, active, lam=0.7)
    pyro.set_rng_seed(5)
    batched = twin_loss(vae, x, active, lam=0.7, batched=True)
    assert batched.item() == pytest.approx(looped.item(), rel=1e-12)
    _assert_same_gradients(vae, looped, batched, rtol=1e-10, atol=1e-12)


def test_trace_elbo_equals_pytorch_twin_float32():
    vae = make_vae()
    x = torch.rand(64, D)
    active = pots_mask(K, [1, 2, 3, 4])
    pyro.set_rng_seed(11)
    pyro_loss = Trace_ELBO().loss(vae.model, vae.guide, x, active)
    pyro.set_rng_seed(11)
    assert pyro_loss == pytest.approx(twin_loss(vae, x, active).item(), rel=1e-5)
