r"""
Scores that can be compared across numbers of open pots.

The training objective cannot: its logit-prior term carries the normaliser of a mixture
over the open pots, which grows by about a nat per pot. What the curriculum compares is
instead the negative ELBO of the **discrete mixture** the model defines: a row picks pot
:math:`c` with probability :math:`\pi_c`, then :math:`x \sim p_c(x)`, the pot's own VAE.
With the encoder's responsibilities :math:`r(x)` as :math:`q(c \mid x)`,

.. math::

    \log p(x) \ge \sum_{c\in A} r_c(x)\,\big[\mathrm{ELBO}_c(x) + \log\pi_c
        - \log r_c(x)\big],
    \qquad
    \mathrm{ELBO}_c(x) = \mathbb E_{q(z_c\mid x)}\log p_c(x\mid z_c)
        - \mathrm{KL}\big(q(z_c\mid x)\,\|\,\mathcal N(0, I)\big).

This bounds the log-density of a proper mixture for every open set :math:`A`, so its value
on held-out rows is comparable across stages. The mixture weights :math:`\pi` are the
training rows' mean responsibilities (their maximum-likelihood value for fixed pots). A
split therefore pays for the information it adds: with near one-hot responsibilities,
splitting a pot that holds a share :math:`s` into halves :math:`s_1 + s_2 = s` costs
:math:`s\,H(s_1/s, s_2/s) \le s \log 2` nats per row, the price of naming the half, and
is worth it only when the two pots' ELBOs gain more than that on the rows they take.
"""

from dataclasses import dataclass
from typing import Optional

import torch
from torch.distributions import kl_divergence
from torch.nn.functional import softplus

from pyro_pots.distributions import masked_softmax
from pyro_pots.model.networks import MIN_SCALE
from pyro_pots.model.pots_vae import PotsVAE

#: floor on a mixture weight, so an empty pot's log-weight stays finite.
MIN_WEIGHT = 1e-6


@dataclass
class PotScores:
    """Per-row, per-open-pot numbers of :func:`pot_scores` (columns follow ``pots``)."""

    pots: torch.Tensor  #: long ``(A,)``, the open pot ids
    elbo: torch.Tensor  #: ``(N, A)``, ELBO_c(x) in nats
    resp: torch.Tensor  #: ``(N, A)``, responsibilities r(x) over the open pots
    codes: torch.Tensor  #: ``(A, N, d)``, the guide's latent means


@torch.no_grad()
def pot_scores(
    vae: PotsVAE,
    x: torch.Tensor,
    active: torch.Tensor,
    num_samples: int = 1,
    generator: Optional[torch.Generator] = None,
) -> PotScores:
    """
    Each open pot's ELBO on each row (Monte Carlo over ``num_samples`` draws of z, analytic
    KL) and the responsibilities. Pass a seeded ``generator`` to reuse the same noise at
    every call (common random numbers make epoch-to-epoch differences real ones).
    """
    pots = active.nonzero().squeeze(-1)
    h = vae.encoder.hidden(x)
    y = vae.logits_guide(vae.encoder.logits_params(h)).mean
    resp = masked_softmax(y, active).index_select(-1, pots)
    loc, raw_scale = vae.encoder.latent_heads(h, pots).split(vae.latent_dim, dim=-1)
    scale = softplus(raw_scale) + MIN_SCALE
    noise = torch.randn(
        (num_samples,) + loc.shape, generator=generator, dtype=loc.dtype, device="cpu"
    ).to(loc.device)
    out = vae.decoders.decode(loc + scale * noise, pots)  # (S, A, N, D)
    log_lik = vae.likelihood(out).log_prob(x).mean(0)  # (A, N)
    q = torch.distributions.Normal(loc, scale)
    kl = kl_divergence(q, torch.distributions.Normal(torch.zeros_like(loc), 1.0)).sum(-1)
    return PotScores(pots=pots, elbo=(log_lik - kl).T, resp=resp, codes=loc)


def mixture_weights(resp: torch.Tensor) -> torch.Tensor:
    """Maximum-likelihood mixture weights: the mean responsibility of each pot, ``(A,)``."""
    return weights_from_mean(resp.mean(0))


def weights_from_mean(mean_resp: torch.Tensor) -> torch.Tensor:
    """Mixture weights from the mean responsibilities (however they were averaged, e.g.
    reduced across ranks), floored at ``MIN_WEIGHT`` so an empty pot costs no ``log 0``."""
    return mean_resp.clamp_min(MIN_WEIGHT)


def mixture_loss(scores: PotScores, weights: torch.Tensor) -> torch.Tensor:
    """
    Negative mixture ELBO per row, ``(N,)`` nats (see the module docstring): comparable
    across numbers of open pots.
    """
    r = scores.resp
    entropy = -torch.special.xlogy(r, r).sum(-1)
    return -((r * (scores.elbo + weights.log())).sum(-1) + entropy)
