"""The loss terms outside the ELBO (the kick, the Potts prior, the routing refinement) take
the batch's mean logits from the trainer, one encoder pass shared by the three: given them,
each term equals the term that runs its own pass, in value and in gradient."""

import pytest
import torch

from pyro_pots.curriculum.kick import NO_TARGET, Kick
from pyro_pots.curriculum.neighbours import NeighbourPrior
from pyro_pots.curriculum.refinement import RoutingRefinement
from pyro_pots.distributions import pots_mask
from pyro_pots.model import PotsVAE

ROWS = torch.tensor([3, 0, 17, 29, 8, 11, 21, 5])
ACTIVE = pots_mask(4, [0, 2, 3])


def _vae_and_rows():
    torch.manual_seed(0)
    vae = PotsVAE(5, num_pots=4, latent_dim=2, hidden_dim=8, decoder_hidden_dim=8)
    return vae, torch.rand(30, 5, generator=torch.Generator().manual_seed(1))


def _kick() -> Kick:
    kick = Kick(30, weight=0.5, temperature=0.5)
    targets = torch.full((30,), NO_TARGET)
    targets[[0, 3, 8, 21]] = torch.tensor([0, 3, 3, 0])
    kick.start(3, targets)
    return kick


def _term(name: str, train_x: torch.Tensor):
    """The term ``name`` as the trainer calls it, with or without the batch's logits; its
    random draws reseeded at each call so that the two calls draw the same."""
    xb = train_x[ROWS]
    if name == "kick":
        kick = _kick()
        return lambda vae, logits: kick.loss(vae, xb, ROWS, ACTIVE, logits)
    if name == "neighbours":
        prior = NeighbourPrior(train_x, k=3, beta=0.7, seed=5)

        def neighbours(vae, logits):
            prior.start_epoch(2)
            return prior.loss(vae, train_x, ROWS, ACTIVE, logits)

        return neighbours
    taught = _kick().taught(ROWS)
    refinement = RoutingRefinement(1.5, seed=4, rows=3 if name == "refinement, rows" else None)

    def refine(vae, logits):
        refinement.start_epoch(1)
        return refinement.loss(vae, xb, ACTIVE, taught, ROWS, logits)

    return refine


@pytest.mark.parametrize("name", ["kick", "neighbours", "refinement", "refinement, rows"])
def test_a_term_given_the_batch_logits_equals_the_term_computing_them(name):
    vae, train_x = _vae_and_rows()
    term = _term(name, train_x)
    alone = term(vae, None)
    alone.backward()
    grads = {n: p.grad.clone() for n, p in vae.named_parameters() if p.grad is not None}
    vae.zero_grad()
    shared = term(vae, vae.mean_logits(train_x[ROWS]))
    shared.backward()
    assert alone.item() > 0
    assert shared.item() == pytest.approx(alone.item(), rel=1e-6)
    for n, p in vae.named_parameters():
        if n in grads:
            torch.testing.assert_close(p.grad, grads[n], rtol=1e-5, atol=1e-7)
        else:  # a weight the term does not reach gets no gradient either way
            assert p.grad is None or not p.grad.any()
