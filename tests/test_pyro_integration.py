"""Pyro features that used to give silent wrong numbers: vectorized particles, JitTrace_ELBO
under changing handler values, and the param store."""

import math

import pyro
import pytest
import torch
from pyro import poutine
from pyro.infer import Trace_ELBO
from pyro.poutine.indep_messenger import CondIndepStackFrame

from pyro_pots import PotsVAE, pots_mask, sites
from pyro_pots.distributions import ROUTING_MODES
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
    elbo = Trace_ELBO(
        num_particles=particles, vectorize_particles=vectorize, max_plate_nesting=2
    )
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
