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

    def best_pots(self) -> torch.Tensor:
        """Each row's open pot of highest ELBO (the decoders' choice, routing aside), as a
        pot id ``(N,)``."""
        return self.pots[self.elbo.argmax(-1)]


#: floats one decoded tensor of :func:`pot_scores` may hold per chunk of rows by default:
#: ``num_samples x open pots x rows x max(D, decoder width)`` stays at or below this (64 MiB in
#: float32), e.g. about 1000 rows per chunk at 20 pots and D = 784 (the whole input at once
#: on digits' 1797 x 64 with a dozen pots).
MAX_DECODE_FLOATS = 1 << 24


def default_chunk_rows(vae: PotsVAE, data_dim: int, num_pots: int, num_samples: int = 1) -> int:
    """Rows per chunk of :func:`pot_scores` by default: the most rows whose decoding by
    ``num_pots`` pots (``num_samples`` draws each) holds at most :data:`MAX_DECODE_FLOATS`
    floats in its widest layer; at least 1."""
    width = max(data_dim, vae.decoders.hidden_layer.weight.shape[-1])
    return max(1, MAX_DECODE_FLOATS // (num_samples * max(num_pots, 1) * width))


@torch.no_grad()
def pot_scores(
    vae: PotsVAE,
    x: torch.Tensor,
    active: torch.Tensor,
    num_samples: int = 1,
    generator: Optional[torch.Generator] = None,
    rows: Optional[int] = None,
) -> PotScores:
    """
    Each open pot's ELBO on each row (Monte Carlo over ``num_samples`` draws of z, analytic
    KL) and the responsibilities. Pass a seeded ``generator`` to reuse the same noise at
    every call (common random numbers make epoch-to-epoch differences real ones).

    The rows are scored ``rows`` at a time (default :func:`default_chunk_rows`: one chunk's
    decoding, ``num_samples x A x rows x D`` floats, stays at most
    :data:`MAX_DECODE_FLOATS`), so memory is bounded whatever ``N`` is. The noise is drawn
    once for all rows, in the layout ``(num_samples, A, N, d)`` of an unchunked call, and
    sliced per chunk: every row sees the same draw at every chunk size (the noise, ``A x N
    x d`` floats per sample, is ``D / d`` times smaller than the decoding it replaces).
    """
    pots = active.nonzero().squeeze(-1)
    n = x.shape[0]
    if rows is None:
        rows = default_chunk_rows(vae, x.shape[-1], len(pots), num_samples)
    if rows < 1:
        raise ValueError(f"rows must be >= 1, got {rows}")
    noise = torch.randn(
        (num_samples, len(pots), n, vae.latent_dim),
        generator=generator,
        dtype=vae.encoder.latent_heads.weight.dtype,
        device="cpu",
    )
    parts = [
        _chunk_scores(vae, x[start : start + rows], active, pots, noise[:, :, start : start + rows])
        for start in range(0, n, rows)
    ] or [_chunk_scores(vae, x, active, pots, noise)]
    elbo, resp, codes = (torch.cat(part, dim) for part, dim in zip(zip(*parts), (0, 0, 1)))
    return PotScores(pots=pots, elbo=elbo, resp=resp, codes=codes)


def _chunk_scores(
    vae: PotsVAE, x: torch.Tensor, active: torch.Tensor, pots: torch.Tensor, noise: torch.Tensor
):
    """``(elbo (N, A), resp (N, A), codes (A, N, d))`` of one chunk, its noise given."""
    h = vae.encoder.hidden(x)
    y = vae.logits_guide(vae.encoder.logits_params(h)).mean
    resp = masked_softmax(y, active).index_select(-1, pots)
    loc, raw_scale = vae.encoder.latent_heads(h, pots).split(vae.latent_dim, dim=-1)
    scale = softplus(raw_scale) + MIN_SCALE
    out = vae.decoders.decode(loc + scale * noise.to(loc.device), pots)  # (S, A, N, D)
    log_lik = vae.likelihood(out).log_prob(x).mean(0)  # (A, N)
    q = torch.distributions.Normal(loc, scale)
    kl = kl_divergence(q, torch.distributions.Normal(torch.zeros_like(loc), 1.0)).sum(-1)
    return (log_lik - kl).T, resp, loc


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
    return labelled_loss(scores, weights.log())


def labelled_loss(scores: PotScores, log_prior: torch.Tensor) -> torch.Tensor:
    """
    Negative ELBO per row, ``(N,)`` nats, of the model that gives row ``n``'s pot the prior
    ``log_prior`` (``(A,)``, the mixture's ``log pi``, or ``(N, A)``, a prior of each row's
    own such as the Potts conditional of
    :func:`~pyro_pots.curriculum.neighbours.conditional_log_prior`), with the
    responsibilities as ``q(c | x)``: ``-sum_c r_c [ELBO_c + log p(c) - log r_c]``.
    """
    r = scores.resp
    entropy = -torch.special.xlogy(r, r).sum(-1)
    return -((r * (scores.elbo + log_prior)).sum(-1) + entropy)
