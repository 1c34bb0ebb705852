"""One compiled ELBO for a whole curriculum fit (``train.jit``, issue 17): lambda and the
kick's pot, temperature, bias and lambda factor are tensor arguments of the compiled graph
(:class:`~pyro_pots.training.parts.ScheduledElbo`), so the warm-up and every kick reuse
one graph, and each value it is called at gives Trace_ELBO's loss and gradients.

Noise: traced and eager graphs may draw the Gumbel and the Normal numbers in a different
order, so the Normal noise is switched off (z = loc) and each comparison starts from the
same Pyro seed; what is left must agree to rounding. Speed is never asserted here."""

import contextlib
import warnings

import pyro
import pytest
import torch
from pyro.infer import Trace_ELBO

from pyro_pots import PotsVAE, handlers, pots_mask
from pyro_pots.distributions import ROUTING_MODES
from pyro_pots.handlers import FrozenValueWarning
from pyro_pots.training.parts import ScheduledElbo

D, K, d = 8, 4, 2

#: lambda and the kick (None: not kicking) of consecutive calls, as a fit changes them:
#: the warm-up from 0, kicks of different pots, temperatures, biases and lambda factors
#: (0 included), and back to no kick
SCHEDULE = [
    (0.0, None),
    (0.25, None),
    (0.0, {"pot": 1, "temperature": 1.0, "bias": 2.0, "lam_factor": 0.5}),
    (0.5, {"pot": 2, "temperature": 0.7, "bias": -1.0, "lam_factor": 0.0}),
    (1.0, {"pot": 1, "temperature": 2.0, "bias": 0.0, "lam_factor": 1.0}),
    (1.0, {"pot": 0, "temperature": 0.3, "bias": 5.0, "lam_factor": 0.1}),
    (1.0, None),
    (0.0, None),
]


@pytest.fixture
def no_normal_noise(monkeypatch):
    """z = loc: the Normal draws are the only ones whose order the traced graph changes."""
    monkeypatch.setattr(
        torch.distributions.normal,
        "_standard_normal",
        lambda shape, dtype, device: torch.zeros(shape, dtype=dtype, device=device),
    )


def make_vae(**kw):
    kw = {"num_pots": K, "latent_dim": d, "hidden_dim": 12, "decoder_hidden_dim": 12, **kw}
    return PotsVAE(D, **kw).double()


def eager_loss(vae, lam, kick, x, active):
    """Trace_ELBO under the handlers as the eager trainer enters them: lambda as a Python
    number, and no kick handler at all when not kicking."""
    kicked = handlers.kick(**kick) if kick is not None else contextlib.nullcontext()
    with handlers.logit_prior_scale(lam=lam), kicked:
        return Trace_ELBO().differentiable_loss(vae.model, vae.guide, x, active)


def loss_and_grads(vae, compute, seed):
    vae.zero_grad(set_to_none=False)
    pyro.set_rng_seed(seed)
    loss = compute()
    loss.backward()
    return loss.item(), [p.grad.clone() for p in vae.parameters()]


@pytest.mark.parametrize("routing", ROUTING_MODES)
def test_one_compiled_elbo_follows_lambda_and_the_kick(routing, float64, no_normal_noise):
    vae = make_vae(routing=routing)
    x = torch.rand(10, D)
    active = pots_mask(K, [0, 1, 2])
    model, guide = vae.model, vae.guide
    straight = routing == "straight_through"
    elbo = ScheduledElbo(model, guide, vae.temperature, straight, ignore_jit_warnings=False)
    # compile first (compiling draws random numbers of its own); no value may end up a
    # constant of the graph (a FrozenValueWarning says so while tracing)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        elbo.at(0.5, None, torch.float64).differentiable_loss(model, guide, x, active)
        if straight:  # the kick changes the routing family: a second graph
            kick = SCHEDULE[2][1]
            elbo.at(0.5, kick, torch.float64).differentiable_loss(model, guide, x, active)
    assert not [w for w in caught if issubclass(w.category, FrozenValueWarning)]
    losses = set()
    for seed, (lam, kick) in enumerate(SCHEDULE):
        elbo.at(lam, kick, torch.float64)
        got, got_grads = loss_and_grads(
            vae, lambda: elbo.differentiable_loss(model, guide, x, active), seed
        )
        ref, ref_grads = loss_and_grads(
            vae, lambda k=kick, m=lam: eager_loss(vae, m, k, x, active), seed
        )
        assert got == pytest.approx(ref, rel=1e-10, abs=1e-10), (lam, kick)
        for a, b in zip(got_grads, ref_grads):
            torch.testing.assert_close(a, b, rtol=1e-8, atol=1e-10)
        losses.add(round(ref, 6))
    assert len(losses) >= len(SCHEDULE) - 1  # the values do move the loss
    graphs = 2 if straight else 1
    assert elbo.compiled == graphs  # compiled once (twice with straight-through) ...
    assert elbo.model.traces == elbo.guide.traces == graphs  # ... and traced only then


def test_lambda_zero_masks_the_logits_term_and_its_gradient(float64, no_normal_noise):
    """lambda = 0 as a tensor gives the loss and gradients of the site switched off (the
    eager handler masks it; a zero scale must not leave NaN or a gradient behind)."""
    vae = make_vae(routing="softmax", logits_guide="normal")
    x, active = torch.rand(6, D), pots_mask(K, [0, 2])
    elbo = ScheduledElbo(vae.model, vae.guide, vae.temperature)
    elbo.at(1.0, None, torch.float64).differentiable_loss(vae.model, vae.guide, x, active)
    elbo.at(0.0, None, torch.float64)
    got, got_grads = loss_and_grads(
        vae, lambda: elbo.differentiable_loss(vae.model, vae.guide, x, active), 0
    )
    with handlers.logit_prior_scale(lam=0.0):  # the site masked: no logit prior at all
        ref, ref_grads = loss_and_grads(
            vae, lambda: Trace_ELBO().differentiable_loss(vae.model, vae.guide, x, active), 0
        )
    assert got == pytest.approx(ref, rel=1e-10)
    for a, b in zip(got_grads, ref_grads):
        assert torch.isfinite(a).all()
        torch.testing.assert_close(a, b, rtol=1e-8, atol=1e-10)
    assert elbo.compiled == 1


def test_a_scheduled_elbo_refuses_another_model_and_missing_values():
    vae, other = make_vae(), make_vae()
    x, active = torch.rand(4, D).double(), pots_mask(K, [0])
    elbo = ScheduledElbo(vae.model, vae.guide, vae.temperature)
    with pytest.raises(RuntimeError, match="sets the values"):
        elbo.differentiable_loss(vae.model, vae.guide, x, active)
    elbo.at(0.0, None, torch.float64)
    with pytest.raises(ValueError, match="the model and guide it was built with"):
        elbo.differentiable_loss(other.model, other.guide, x, active)
    # vae.model is a new bound method at each access, but the same model
    assert torch.isfinite(elbo.differentiable_loss(vae.model, vae.guide, x, active))


def _backward_nodes(loss):
    """The types of the nodes of ``loss``'s autograd graph."""
    seen, stack = set(), [loss.grad_fn]
    while stack:
        node = stack.pop()
        if node is not None and node not in seen:
            seen.add(node)
            stack.extend(child for child, _ in node.next_functions)
    return {type(node).__name__ for node in seen}


@pytest.mark.parametrize("optimized", [False, True])
def test_on_cpu_eager_autograd_differentiates_the_compiled_elbo(optimized, monkeypatch):
    """On CPU the compiled graph runs interpreted, so eager autograd records its ops
    (a softplus's own backward node); the optimizing executor differentiates the graph
    itself once it has profiled a few calls: one opaque node (``CppFunction``) for
    a fused subgraph, whose backward was the slower one (docs/benchmarks.md). The
    optimizing case, forced here, shows what the test tells apart."""
    from pyro_pots.training import parts

    if optimized:
        monkeypatch.setattr(parts, "executor", lambda device: torch.jit.optimized_execution(True))
    vae = make_vae().float()
    x, active = torch.rand(10, D), pots_mask(K, [0, 1])
    elbo = ScheduledElbo(vae.model, vae.guide, vae.temperature).at(1.0)
    for _ in range(4):  # past the optimizing executor's profiling runs
        loss = elbo.differentiable_loss(vae.model, vae.guide, x, active)
    nodes = _backward_nodes(loss)
    assert ("CppFunction" in nodes) == optimized
    assert ("SoftplusBackward0" in nodes) == (not optimized)


# -- the trainer: the same steps with and without train.jit --------------------------------
def _trainer(jit: bool):
    from test_curriculum_parts import _trainer as build

    return build(
        **{
            "train.jit": "true" if jit else "false",
            "routing.mode": "softmax",  # no Gumbel noise: the steps are deterministic
            "prior.lam_warmup_epochs": 2,
        }
    )


def _start_kick(trainer):
    """What an unlock does, by hand: open pot 1 and kick it for two epochs."""
    trainer.manager.open.append(1)
    trainer.vae.open_pots(trainer.manager.open)
    trainer.manager.kick_remaining = 2
    targets = torch.arange(len(trainer.train_x)) % 2
    trainer.kick.start(1, targets)


def test_the_trainer_compiles_once_and_follows_the_schedule(no_normal_noise):
    eager, jit = _trainer(False), _trainer(True)
    assert jit._jit is not None and eager._jit is None
    for t in (eager, jit):
        t.vae.load_state_dict(eager.vae.state_dict())
    history = {id(eager): [], id(jit): []}
    for epoch in range(6):
        if epoch == 3:  # after the warm-up (lambda 0, 0.5, 1): a kick of pot 1
            for t in (eager, jit):
                _start_kick(t)
        for t in (eager, jit):
            step = t.train_epoch()
            if t.manager.kick_remaining > 0:
                t.manager.kick_remaining -= 1
            history[id(t)].append(step)
    lams = [s["lam"] for s in history[id(jit)]]
    kicks = [s["kicking"] for s in history[id(jit)]]
    assert lams == [0.0, 0.5, 1.0, 1.0, 1.0, 1.0] and kicks == [False] * 3 + [True] * 2 + [False]
    for a, b in zip(history[id(eager)], history[id(jit)]):
        assert b["train_loss"] == pytest.approx(a["train_loss"], rel=1e-4)
    for name, value in eager.vae.state_dict().items():
        torch.testing.assert_close(jit.vae.state_dict()[name], value, rtol=1e-3, atol=1e-4)
    assert jit._jit.compiled == 1
    assert jit._jit.model.traces == jit._jit.guide.traces == 1


def test_the_trainer_compiles_twice_with_straight_through():
    from test_curriculum_parts import _trainer as build

    t = build(**{"train.jit": "true", "routing.mode": "straight_through"})
    t.train_epoch()
    _start_kick(t)
    t.train_epoch()
    t.manager.kick_remaining = 0
    t.train_epoch()
    assert t._jit.compiled == 2  # kicking and not: the kick changes the routing family
