"""Pyro features that used to give silent wrong numbers: vectorized particles, JitTrace_ELBO
under changing handler values, and the param store."""

import copy
import math
import warnings

import pyro
import pytest
import torch
from pyro import poutine
from pyro.infer import SVI, JitTrace_ELBO, Trace_ELBO
from pyro.optim import Adam
from pyro.poutine.indep_messenger import CondIndepStackFrame

from pyro_pots import PotsVAE, handlers, pots_mask, sites
from pyro_pots.distributions import ROUTING_MODES
from pyro_pots.handlers import FrozenValueWarning
from pyro_pots.handlers.util import along_channels

D, K, d = 8, 4, 2


def make_vae(**kw):
    kw = {"num_pots": K, "latent_dim": d, "hidden_dim": 12, "decoder_hidden_dim": 12, **kw}
    return PotsVAE(D, **kw)


# vectorized particles ----------------------------------------------------------------
def test_along_channels_puts_the_pots_in_the_channels_slot():
    frame = CondIndepStackFrame(sites.CHANNELS_PLATE, -2, K, 0)
    r = torch.rand(3, 1, 5, K)  # (particles, channels slot, rows, pots)
    assert along_channels(r, frame).shape == (3, K, 5)
    assert torch.equal(along_channels(r, frame)[1, :, 2], r[1, 0, 2])
    assert torch.equal(along_channels(r[0, 0], frame), r[0, 0].T)  # (N, K) -> (K, N)
    assert along_channels(torch.rand(K), frame).shape == (K, 1)
    with pytest.raises(ValueError, match="expected 1 there"):
        along_channels(torch.rand(3, 2, 5, K), frame)


def elbo_estimates(vae, x, active, vectorize, repeats, particles):
    """``repeats`` independent loss estimates, each the mean of ``particles`` particles."""
    elbo = Trace_ELBO(num_particles=particles, vectorize_particles=vectorize, max_plate_nesting=2)
    return torch.tensor([elbo.loss(vae.model, vae.guide, x, active) for _ in range(repeats)])


@pytest.mark.parametrize("routing", ROUTING_MODES)
@pytest.mark.parametrize("logits_guide", ["delta", "normal"])
def test_vectorized_particles_agree_with_sequential_particles(routing, logits_guide):
    vae = make_vae(routing=routing, logits_guide=logits_guide)
    x = torch.rand(6, D)
    active = pots_mask(K, [0, 2, 3])
    pyro.set_rng_seed(1)
    seq = elbo_estimates(vae, x, active, vectorize=False, repeats=300, particles=1)
    vec = elbo_estimates(vae, x, active, vectorize=True, repeats=30, particles=10)
    # the two are unbiased estimates of one ELBO: their means differ by Monte Carlo error
    se = math.sqrt(seq.var() / len(seq) + vec.var() / len(vec))
    assert abs(seq.mean() - vec.mean()) < 4 * se, (seq.mean(), vec.mean(), se)
    # and the vectorized z site is scaled per particle, pot and row: (P, K, N)
    with pyro.plate("particles", 10, dim=-3):
        tr = poutine.trace(vae.guide).get_trace(x, active)
    assert tr.nodes[sites.Z]["scale"].shape == (10, K, len(x))


# JitTrace_ELBO follows handler values passed as arguments ------------------------------
@pytest.fixture
def no_noise(monkeypatch):
    """Traced and eager graphs draw random numbers differently, so the Normal noise is
    switched off (z = loc) and routing is softmax: what is left must agree to rounding."""
    monkeypatch.setattr(
        torch.distributions.normal,
        "_standard_normal",
        lambda shape, dtype, device: torch.zeros(shape, dtype=dtype, device=device),
    )


def under_handlers(fn):
    """``fn(x, active)`` under lambda and a kick whose values are tensor arguments."""

    def wrapped(x, active, lam, pot, temperature, bias, lam_factor):
        kick = handlers.kick(pot=pot, temperature=temperature, bias=bias, lam_factor=lam_factor)
        with handlers.logit_prior_scale(lam=lam), kick:
            return fn(x, active)

    return wrapped


SETTINGS = [  # lam, pot, temperature, bias, lam_factor
    (0.0, 1, 1.0, 2.0, 0.5),
    (1.0, 1, 1.0, 2.0, 0.5),
    (0.3, 2, 0.7, 5.0, 0.0),
    (0.0, 0, 2.0, -1.0, 1.0),
]


def test_a_compiled_elbo_follows_handler_values_passed_as_arguments(no_noise):
    vae = make_vae(routing="softmax")
    x = torch.rand(10, D)
    active = pots_mask(K, [0, 1, 2])
    model, guide = under_handlers(vae.model), under_handlers(vae.guide)
    jit_elbo = JitTrace_ELBO()
    params = list(vae.parameters())
    losses = set()
    for lam, pot, temperature, bias, lam_factor in SETTINGS:
        values = [torch.tensor(v) for v in (lam, pot, temperature, bias, lam_factor)]
        vae.zero_grad(set_to_none=False)
        got = jit_elbo.loss_and_grads(model, guide, x, active, *values)
        got_grads = [p.grad.clone() for p in params]
        # the eager reference with the same values as plain Python numbers
        kick = handlers.kick(pot=pot, temperature=temperature, bias=bias, lam_factor=lam_factor)
        vae.zero_grad(set_to_none=False)
        with handlers.logit_prior_scale(lam=lam), kick:
            ref = Trace_ELBO().loss_and_grads(vae.model, vae.guide, x, active)
        assert got == pytest.approx(ref, rel=1e-6)
        for a, b in zip(got_grads, [p.grad for p in params]):
            torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
        losses.add(round(ref, 3))
    assert len(losses) == len(SETTINGS)  # the settings do move the loss
    assert len(jit_elbo._loss_and_surrogate_loss.compiled) == 1  # one graph for all


def test_a_constant_handler_value_warns_while_the_elbo_is_compiled(no_noise):
    vae = make_vae(routing="softmax")
    x, active = torch.rand(10, D), pots_mask(K, [0, 1])
    model, guide = vae.model, vae.guide
    with pytest.warns(FrozenValueWarning, match="lam=0.0 is a constant"):
        with handlers.logit_prior_scale(lam=0.0):
            JitTrace_ELBO().differentiable_loss(model, guide, x, active)
    lam = torch.tensor(0.5)  # a tensor captured from outside is a constant too
    with pytest.warns(FrozenValueWarning, match="the tensor lam is a constant"):
        with handlers.logit_prior_scale(lam=lam):
            JitTrace_ELBO().differentiable_loss(model, guide, x, active)
    with pytest.warns(FrozenValueWarning, match="pot=1 is a constant"):
        with handlers.kick(pot=1):
            JitTrace_ELBO().differentiable_loss(model, guide, x, active)
    # ignore_jit_warnings hides it, as every TracerWarning (a value meant to stay fixed)
    with warnings.catch_warnings():
        warnings.simplefilter("error", FrozenValueWarning)
        with handlers.logit_prior_scale(lam=0.0):
            JitTrace_ELBO(ignore_jit_warnings=True).differentiable_loss(model, guide, x, active)


# the param store -------------------------------------------------------------------------
def test_the_param_store_restores_a_model_of_the_same_name(tmp_path):
    x, active = torch.rand(5, D), pots_mask(K, [0, 1])
    a = make_vae(likelihood="normal", name="vae")
    svi = SVI(a.model, a.guide, Adam({"lr": 0.05}), Trace_ELBO())
    for _ in range(3):
        svi.step(x, active)
    trained = {n: p.detach().clone() for n, p in a.named_parameters()}
    pyro.get_param_store().save(tmp_path / "params.pt")
    pyro.clear_param_store()
    b = make_vae(likelihood="normal", name="vae")
    pyro.get_param_store().load(tmp_path / "params.pt")
    resp = b.responsibilities(x, active)  # any entry point takes the stored weights up
    for name, param in b.named_parameters():
        assert torch.equal(param, trained[name]), name
    assert torch.equal(resp, a.responsibilities(x, active))
    # and training goes on with the module's own parameters in the store
    before = b.encoder.trunk.weight.detach().clone()
    SVI(b.model, b.guide, Adam({"lr": 0.05}), Trace_ELBO()).step(x, active)
    assert not torch.equal(b.encoder.trunk.weight, before)
    assert pyro.get_param_store()["vae.encoder.trunk.weight"] is b.encoder.trunk.weight


def test_the_param_store_says_when_loaded_weights_belong_to_another_name(tmp_path):
    x, active = torch.rand(5, D), pots_mask(K, [0, 1])
    a = make_vae()
    Trace_ELBO().loss(a.model, a.guide, x, active)
    pyro.get_param_store().save(tmp_path / "params.pt")
    pyro.clear_param_store()
    b = make_vae()  # a default name: unique to the instance
    pyro.get_param_store().load(tmp_path / "params.pt")
    with pytest.warns(UserWarning, match=f"name='{a._pyro_name}'"):
        Trace_ELBO().loss(b.model, b.guide, x, active)
    c = make_vae(name=a._pyro_name)  # as the warning says
    assert torch.equal(c.responsibilities(x, active), a.responsibilities(x, active))
    # a model built and dropped without clearing the store is no reason to warn
    pyro.clear_param_store()
    Trace_ELBO().loss(make_vae().model, make_vae().guide, x, active)
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        Trace_ELBO().loss(make_vae().model, make_vae().guide, x, active)


def test_a_copy_of_a_model_shares_its_name_but_never_its_weights():
    x, active = torch.rand(5, D), pots_mask(K, [0, 1])
    a = make_vae()
    Trace_ELBO().loss(a.model, a.guide, x, active)
    b = copy.deepcopy(a)  # e.g. sklearn.base.clone of an estimator that holds the model
    with torch.no_grad():
        for p in b.parameters():
            p.add_(1.0)
    own = {n: p.detach().clone() for n, p in a.named_parameters()}
    Trace_ELBO().loss(b.model, b.guide, x, active)
    Trace_ELBO().loss(a.model, a.guide, x, active)
    for name, param in a.named_parameters():
        assert torch.equal(param, own[name]), name
