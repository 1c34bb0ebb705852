r"""
Per-row uncertainty and out-of-distribution (OOD) scores of a fitted model.

For each row :math:`x` (open pots :math:`A`, responsibilities :math:`r(x)` over them, the
encoder's routing) :func:`row_scores` gives:

``pot``
    :math:`\arg\max_c r_c(x)`, the row's pot.
``max_resp``
    :math:`\max_c r_c(x)`: how sure the routing is (1 = one pot).
``entropy``
    :math:`H(r(x)) = -\sum_{c\in A} r_c \log r_c` in nats (0 = one pot,
    :math:`\log|A|` = no preference).
``neg_elbo``
    an upper bound on :math:`-\log p(x)` under the discrete mixture the model defines
    (:mod:`pyro_pots.model.scoring`: pot :math:`c` with weight :math:`\pi_c`, the
    training rows' mean responsibility, then the pot's own VAE :math:`p_c`). With
    ``num_samples=None`` it is the mixture ELBO with :math:`q(c\mid x) = r(x)`, the
    quantity the curriculum judges stages by (``heldout_loss``):

    .. math::

        -\sum_c r_c(x)\,[\mathrm{ELBO}_c(x) + \log\pi_c - \log r_c(x)].

    With ``num_samples=S`` it is importance weighted: each pot's
    :math:`\log p_c(x)` is estimated by the IWAE bound with :math:`S` draws of
    :math:`z \sim q_c(z\mid x)`, the estimator of :class:`pyro.infer.RenyiELBO` at
    :math:`\alpha = 0` (computed per row from Pyro traces; the tests check it against
    ``RenyiELBO``), and the pot is summed out exactly:

    .. math::

        -\log \sum_{c\in A} \pi_c\,\frac1S \sum_{s=1}^S
            \frac{p_c(x\mid z_s)\,\mathcal N(z_s; 0, I)}{q_c(z_s\mid x)}.

    Both are upper bounds on :math:`-\log p(x)` in expectation; the second is the tighter
    (:math:`\mathrm{IWAE}_c \ge \mathrm{ELBO}_c` in expectation and
    :math:`\log\sum_c \pi_c e^{a_c} \ge \sum_c r_c (a_c + \log\pi_c - \log r_c)`) and
    tends to :math:`-\log p(x)` as :math:`S` grows.
``max_posterior``
    :math:`\max_c p(c\mid x)`, the posterior over pots of the discrete mixture, with each
    pot's ELBO (or, with ``num_samples``, its IWAE bound) in place of
    :math:`\log p_c(x)`:

    .. math::

        p(c\mid x) = \frac{\pi_c\, e^{\mathrm{ELBO}_c(x)}}
            {\sum_{c'\in A} \pi_{c'}\, e^{\mathrm{ELBO}_{c'}(x)}}.

    It is the :math:`q(c\mid x)` that makes the mixture bound of ``neg_elbo`` tightest.
    ``max_resp`` reads the encoder's amortised :math:`r(x)` instead, whose maximum the
    logit prior caps: at its component mean :math:`M e_c` the softmax is
    :math:`e^M / (e^M + |A| - 1)` (0.93 with M = 5 and 12 open pots).
``ood_score``
    the row's misfit *within its own pot*, relative to that pot's typical training row:
    with :math:`\ell_c(x) = -\mathrm{ELBO}_c(x)` (or :math:`-\mathrm{IWAE}_c(x)`) and
    :math:`c = ` ``pot``,

    .. math::

        \mathrm{ood}(x) = \ell_c(x) - \mathrm{median}\{\ell_c(x') : x' \text{ a training
        row whose pot is } c\},

    in nats: 0 is a typical training row of that pot, 10 a row :math:`e^{10}` times less
    likely under it than a typical one. Higher means more out of distribution. Why
    relative to the pot: pots differ in how many nats a typical row costs (a "1" is
    cheaper to encode than an "8"), so a global threshold on the likelihood flags complex
    in-distribution rows before outliers routed to a simple pot. (Dividing by each pot's
    spread as well, a z-score, measured slightly worse in issue 7's one-fit benchmark.)

    Two options of :func:`calibrate`, off by default (measured in ``docs/benchmarks.md``):

    - ``saturated=True`` (bernoulli likelihood): every misfit, the calibration rows' too,
      is measured above the saturated model, :math:`\ell_c(x) - H(x)` with :math:`H(x)`
      the row's binary entropy (:func:`saturated_misfit`), so that grey pixels, which cost
      every model nats, do not count as misfit.
    - ``neighbours=k``: the score becomes the sum of two robust z-scores,

      .. math::

          \mathrm{ood}(x) = \frac{m(x) - \mathrm{med}(m)}{s(m)}
              + \frac{d_k(x) - \mathrm{med}(d_k)}{s(d_k)},

      with :math:`m(x)` the pot-relative misfit above, :math:`d_k(x)` the mean Euclidean
      distance from :math:`x` to the :math:`k` nearest calibration rows of its pot
      (leaving a calibration row itself out), and the median and the spread
      :math:`s = 1.4826\,\mathrm{MAD}` taken over the calibration rows. It is unitless.

    With ``neighbours=k``, three more options (off by default; ``docs/benchmarks.md``):

    - ``among="all"``: :math:`d_k(x)` is measured to the :math:`k` nearest calibration rows
      of *every* pot (the plain k-NN distance), while the misfit stays pot-relative.
    - ``ratio=True``: the distance term is a local density ratio within the pot (as in
      the local outlier factor), the row's distance over the typical distance of its
      neighbours to *their* neighbours,

      .. math::

          \rho_k(x) = \frac{d_k(x)}{\frac1k \sum_{n \in N_k(x)} d_k(n)},

      :math:`N_k(x)` the :math:`k` nearest calibration rows (of the pot, or of all pots
      with ``among="all"``) and :math:`d_k(n)` each one's own distance to its :math:`k`
      nearest others; :math:`\rho_k \approx 1` for a row as far from its neighbours as
      they are from theirs. It replaces :math:`d_k` in either combination.
    - ``combine="fisher"``: instead of the sum of z-scores, Fisher's combination of the
      two terms' empirical tail probabilities over the calibration rows,

      .. math::

          \mathrm{ood}(x) = -2\,[\log p_m(x) + \log p_d(x)],\qquad
          p_t(x) = \frac{1 + \#\{x' : t(x') \ge t(x)\}}{n + 1},

      :math:`x'` the :math:`n` calibration rows and :math:`t` the misfit :math:`m` or the
      distance term. It depends on each term only through its ranks among the calibration
      rows (no spread to estimate), lies in :math:`[0, 4 \log(n+1)]`, and is
      :math:`\chi^2_4` distributed for a fresh in-distribution row when the two terms are
      independent.
"""

import csv
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, List, Optional, Tuple

import numpy as np
import pyro
import pyro.distributions as dist
import torch
from pyro import poutine

from pyro_pots.model.pots_vae import PotsVAE
from pyro_pots.model.scoring import PotScores, mixture_loss, mixture_weights, pot_scores
from pyro_pots.sites import DATA_PLATE, OBS, Z

#: columns of :func:`row_scores`, in the order the CSV writes them.
COLUMNS = ("pot", "max_resp", "entropy", "neg_elbo", "ood_score", "max_posterior")
#: rows x particles per batch in :func:`iw_log_likelihood` (bounds the decoder's memory).
_BATCH = 1 << 16
#: values of :func:`calibrate`'s ``among`` and ``combine`` options (the first: the default).
AMONG = ("pot", "all")
COMBINE = ("sum", "fisher")


def pot_model_and_guide(vae: PotsVAE, pot: int) -> Tuple[Callable, Callable]:
    """
    Pot ``pot``'s own VAE as a Pyro model and guide, both called as ``fn(x)``: the model
    draws ``z ~ N(0, I)`` and ``obs ~ p(x | g_pot(z))``, the guide
    ``z ~ N(mu_pot(x), sigma_pot(x))`` (the encoder's head for that pot).
    """
    idx = torch.tensor([pot], device=vae.active.device)

    def model(x: torch.Tensor) -> None:
        with pyro.plate(DATA_PLATE, x.shape[0], dim=-1):
            prior = dist.Normal(x.new_zeros(vae.latent_dim), 1.0).to_event(1)
            z = pyro.sample(Z, prior)
            out = vae.decode(z.unsqueeze(-3), idx).squeeze(-3)
            pyro.sample(OBS, vae.likelihood(out), obs=x)

    def guide(x: torch.Tensor) -> None:
        q = vae.latent_posterior(x, idx)  # (1, N, d): the pot's own head
        with pyro.plate(DATA_PLATE, x.shape[0], dim=-1):
            pyro.sample(Z, dist.Normal(q.loc[0], q.scale[0]).to_event(1))

    return model, guide


def per_row_log_weights(
    model: Callable, guide: Callable, x: torch.Tensor, num_samples: int
) -> torch.Tensor:
    """
    Log importance weights ``log p(x, z) - log q(z | x)`` of ``num_samples`` guide draws per
    row, ``(S, N)``: what :func:`pyro.infer.importance.vectorized_importance_weights` and
    :class:`pyro.infer.RenyiELBO` compute, but not summed over the rows.
    """
    with pyro.plate("num_particles_vectorized", num_samples, dim=-2):
        guide_trace = poutine.trace(guide).get_trace(x)
        model_trace = poutine.trace(poutine.replay(model, trace=guide_trace)).get_trace(x)
    log_w = x.new_zeros(num_samples, x.shape[0])
    for trace, sign in ((model_trace, 1.0), (guide_trace, -1.0)):
        trace.compute_log_prob()
        for site in trace.nodes.values():
            if site["type"] == "sample":
                log_w = log_w + sign * site["log_prob"]
    return log_w


@torch.no_grad()
def iw_log_likelihood(vae: PotsVAE, x: torch.Tensor, num_samples: int) -> torch.Tensor:
    r"""
    Each open pot's importance-weighted bound on :math:`\log p_c(x)` per row, ``(N, A)``
    (columns in increasing pot id): :math:`\log \frac1S \sum_s w_s`, the IWAE bound
    (``RenyiELBO(alpha=0, num_particles=S)`` on one row).
    """
    if num_samples < 1:
        raise ValueError(f"num_samples must be >= 1, got {num_samples}")
    pots = vae.open_ids().tolist()
    rows = max(1, _BATCH // num_samples)
    out = x.new_empty(x.shape[0], len(pots))
    for j, pot in enumerate(pots):
        model, guide = pot_model_and_guide(vae, pot)
        for start in range(0, x.shape[0], rows):
            log_w = per_row_log_weights(model, guide, x[start : start + rows], num_samples)
            out[start : start + rows, j] = log_w.logsumexp(0) - math.log(num_samples)
    return out


#: rows of the calibration set compared with at once in :func:`pot_distances`.
_DISTANCE_ROWS = 1024


@dataclass
class Calibration:
    """What :func:`row_scores` compares rows with, taken from the calibration rows (the
    training rows by default), and how ``ood_score`` is made (:func:`calibrate`)."""

    weights: torch.Tensor  #: ``(A,)`` mixture weights pi (mean responsibility)
    median: torch.Tensor  #: ``(A,)`` median per-pot misfit of the pot's calibration rows
    saturated: bool = False  #: misfits measured above the saturated model (``calibrate``)
    neighbours: int = 0  #: k of the distance term; 0: ``ood_score`` is the misfit alone
    #: with ``neighbours``: each pot's calibration rows (the rows whose pot it is)
    reference: Optional[List[torch.Tensor]] = None
    #: with ``neighbours``: median and robust spread (1.4826 MAD) over the calibration rows
    #: of the pot-relative misfit and of the distance, ``(4,)``: m_l, s_l, m_d, s_d
    spread: Optional[torch.Tensor] = None
    #: the distance term's reference rows: ``"pot"`` (the row's pot) or ``"all"``
    among: str = "pot"
    #: the distance term is the local density ratio rho_k rather than d_k
    ratio: bool = False
    #: how the two terms are combined: ``"sum"`` of robust z-scores or ``"fisher"``
    combine: str = "sum"
    #: with ``combine="fisher"``: the calibration rows' misfits and distance terms, each
    #: sorted, ``(2, n)`` float64
    null: Optional[torch.Tensor] = None


def saturated_misfit(vae: PotsVAE, x: torch.Tensor) -> torch.Tensor:
    r"""
    The smallest misfit any decoder output can reach on each row, ``(N,)`` nats: minus the
    log-likelihood of the **saturated** model, whose natural parameter reproduces the row.
    For the ``bernoulli`` likelihood (the cross-entropy form, fractional pixels allowed) it
    is the rows' binary entropy :math:`H(x) = -\sum_d [x_d \log x_d + (1-x_d) \log(1-x_d)]`,
    so that :math:`-\mathrm{ELBO}_c(x) - H(x) = \mathbb E_q \sum_d \mathrm{KL}(
    \mathrm{Bern}(x_d) \,\|\, \mathrm{Bern}(p_{c,d}(z))) + \mathrm{KL}(q \,\|\, p) \ge 0`:
    how far the pot's reconstructions are from the row, without the nats that grey
    (non-binary) pixels cost every model.

    :raises ValueError: another likelihood (``normal``: the saturated term is the same for
        every row, so it would change no ranking; ``continuous_bernoulli``: no closed form).
    """
    if vae.likelihood.kind != "bernoulli":
        raise ValueError(
            "saturated misfits need the bernoulli likelihood, the model has "
            f"{vae.likelihood.kind!r}"
        )
    x = x.double()
    return -(torch.special.xlogy(x, x) + torch.special.xlogy(1 - x, 1 - x)).sum(-1)


def _rows_by_pot(assign: torch.Tensor, reference: List[torch.Tensor], fewest: int):
    """For each pot (column index ``j``) that has rows: the indices of its rows in
    ``assign`` and its reference rows, or every pot's reference rows when it has fewer than
    ``fewest``."""
    everything = torch.cat(reference) if reference else None
    for j, ref in enumerate(reference):
        mine = (assign == j).nonzero().squeeze(-1)
        if len(mine):
            yield mine, (ref if len(ref) >= fewest else everything)


@torch.no_grad()
def pot_distances(
    rows: torch.Tensor, assign: torch.Tensor, reference: List[torch.Tensor], k: int, own: bool
) -> torch.Tensor:
    """
    Each row's mean Euclidean distance to its ``k`` nearest rows of ``reference[c]``, ``c =
    assign`` the row's pot (column index), ``(N,)``. ``own=True`` when ``rows`` are the
    reference rows themselves, each in its own pot's reference: the row itself is left out.
    A pot with fewer reference rows uses all it has (at least one other; a pot with none
    is compared with every reference row).
    """
    out = rows.new_zeros(len(rows), dtype=torch.float64)
    for mine, ref in _rows_by_pot(assign, reference, fewest=1 + int(own)):
        kk = min(k + int(own), len(ref))
        for chunk in mine.split(_DISTANCE_ROWS):
            dist = torch.cdist(rows[chunk].double(), ref.double())
            near = dist.topk(kk, largest=False).values
            near = near[:, 1:] if own and kk > 1 else near  # the row itself, at distance 0
            out[chunk] = near.mean(-1)
    return out


@torch.no_grad()
def pot_distance_ratios(
    rows: torch.Tensor, assign: torch.Tensor, reference: List[torch.Tensor], k: int, own: bool
) -> torch.Tensor:
    r"""
    Each row's local density ratio within its pot, ``(N,)``: :math:`\rho_k(x) = d_k(x) /
    \frac1k\sum_{n\in N_k(x)} d_k(n)`, with :math:`d_k(x)` the row's mean Euclidean
    distance to its ``k`` nearest rows of ``reference[c]`` (``c = assign``), :math:`N_k(x)`
    those rows, and :math:`d_k(n)` each one's mean distance to its ``k`` nearest other rows
    of the same reference. ``own=True`` when ``rows`` are the reference rows themselves
    (the row itself is left out of its neighbours). A pot with fewer than two reference
    rows is compared with every reference row, as in :func:`pot_distances`.
    """
    out = rows.new_zeros(len(rows), dtype=torch.float64)
    for mine, ref in _rows_by_pot(assign, reference, fewest=2):
        ref = ref.double()
        kk = min(k + 1, len(ref))  # each reference row's own d_k leaves itself out
        ref_dk = torch.cdist(ref, ref).topk(kk, largest=False).values[:, 1:].mean(-1)
        kk = min(k + int(own), len(ref))
        for chunk in mine.split(_DISTANCE_ROWS):
            near = torch.cdist(rows[chunk].double(), ref).topk(kk, largest=False)
            values, index = near.values, near.indices
            if own and kk > 1:  # the row itself, at distance 0
                values, index = values[:, 1:], index[:, 1:]
            out[chunk] = values.mean(-1) / ref_dk[index].mean(-1).clamp_min(1e-12)
    return out


def _tail_probability(values: torch.Tensor, null: torch.Tensor) -> torch.Tensor:
    """``(1 + #{null >= v}) / (n + 1)`` for each value ``v``, ``null`` sorted ascending."""
    at_least = len(null) - torch.searchsorted(null, values.contiguous(), right=False)
    return (1.0 + at_least.double()) / (len(null) + 1.0)


def _distance_term(
    rows: torch.Tensor, assign: torch.Tensor, calibration: "Calibration", own: bool
) -> torch.Tensor:
    """The distance term of ``ood_score`` with ``neighbours`` (``d_k`` or ``rho_k``, among
    the row's pot's calibration rows or all of them), ``(N,)`` float64 on the CPU."""
    if calibration.among == "all":
        assign = torch.zeros_like(assign)
    measure = pot_distance_ratios if calibration.ratio else pot_distances
    return measure(rows, assign, calibration.reference, calibration.neighbours, own=own)


def _robust(values: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """Median and robust spread ``1.4826 * median |v - median|`` (floored, never 0)."""
    centre = values.median()
    return centre, (1.4826 * (values - centre).abs().median()).clamp_min(1e-12)


@torch.no_grad()
def pot_misfit(
    vae: PotsVAE, x: torch.Tensor, num_samples: Optional[int], seed: int = 0
) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """
    ``(resp, elbo, nll)``: responsibilities ``(N, A)``, each pot's ELBO (one draw, analytic
    KL) ``(N, A)`` and each pot's misfit ``(N, A)``: ``-ELBO_c`` or, with ``num_samples``,
    ``-IWAE_c``. Seeded, so repeated calls see the same noise.
    """
    generator = torch.Generator().manual_seed(seed)
    scores = pot_scores(vae, x, vae.active, generator=generator)
    if num_samples is None:
        return scores.resp, scores.elbo, -scores.elbo
    with _seeded(seed):
        return scores.resp, scores.elbo, -iw_log_likelihood(vae, x, num_samples)


class _seeded:
    """Run a block under a fixed Pyro seed, restoring the global RNG state after it."""

    def __init__(self, seed: int) -> None:
        self.seed = seed

    def __enter__(self) -> None:
        self.state = pyro.util.get_rng_state()
        pyro.set_rng_seed(self.seed)

    def __exit__(self, *exc) -> None:
        pyro.util.set_rng_state(self.state)


def pot_posterior(nll: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """The posterior over the open pots ``(N, A)`` of the discrete mixture with weights
    ``weights`` ``(A,)`` and per-pot misfits ``nll`` ``(N, A)`` (``-ELBO_c`` or ``-IWAE_c``,
    from :func:`pot_misfit`): ``softmax_c(log pi_c - nll_c)``."""
    return (weights.log() - nll).softmax(-1)


@torch.no_grad()
def mean_max_posterior(vae: PotsVAE, x: torch.Tensor) -> float:
    """The mean over the rows of ``x`` of ``max_posterior`` (each pot's ELBO, one seeded
    draw; the weights are the mean responsibilities of ``x`` itself). Memory stays bounded
    for any ``x``: :func:`~pyro_pots.model.scoring.pot_scores` decodes in chunks of rows."""
    resp, _, nll = pot_misfit(vae, x, None)
    return pot_posterior(nll, mixture_weights(resp)).max(-1).values.mean().item()


def calibrate(
    vae: PotsVAE,
    train_x: torch.Tensor,
    num_samples: Optional[int],
    neighbours: int = 0,
    saturated: bool = False,
    among: str = "pot",
    ratio: bool = False,
    combine: str = "sum",
) -> Calibration:
    r"""
    Mixture weights and each pot's median misfit on its rows among ``train_x`` (the
    training rows, or any rows held out from the fit; the mixture weights come from the
    same rows).

    :param neighbours: ``k > 0`` makes ``ood_score`` the sum of two robust z-scores, the
        pot-relative misfit's and the distance to the ``k`` nearest rows of the row's pot
        among ``train_x`` (module docstring); 0, the default: the misfit alone, in nats.
    :param saturated: measure misfits above the saturated model (:func:`saturated_misfit`;
        bernoulli likelihood only).
    :param among: with ``neighbours``, the distance term's reference rows: ``"pot"`` (the
        default: the calibration rows of the row's pot) or ``"all"`` (every calibration
        row; the misfit stays pot-relative).
    :param ratio: with ``neighbours``, use the local density ratio :math:`\rho_k`
        (:func:`pot_distance_ratios`) instead of the distance :math:`d_k`.
    :param combine: with ``neighbours``, ``"sum"`` (the default: the sum of the two robust
        z-scores) or ``"fisher"`` (:math:`-2[\log p_m + \log p_d]`, the terms' empirical
        tail probabilities over the calibration rows).
    :raises ValueError: a negative ``neighbours``, an unknown ``among`` or ``combine``, or
        ``among``, ``ratio`` or ``combine`` set away from their defaults without
        ``neighbours``.
    """
    if neighbours < 0:
        raise ValueError(f"neighbours must be >= 0, got {neighbours}")
    if among not in AMONG:
        raise ValueError(f"among must be one of {AMONG}, got {among!r}")
    if combine not in COMBINE:
        raise ValueError(f"combine must be one of {COMBINE}, got {combine!r}")
    if not neighbours:
        for option, value, default in (
            ("among", among, "pot"),
            ("ratio", ratio, False),
            ("combine", combine, "sum"),
        ):
            if value != default:
                raise ValueError(
                    f"{option}={value!r} sets the distance term of ood_score: it needs "
                    "neighbours > 0"
                )
    resp, _, nll = pot_misfit(vae, train_x, num_samples)
    if saturated:
        nll = nll.double() - saturated_misfit(vae, train_x)[:, None].to(nll.device)
    assign = resp.argmax(-1)
    overall = nll.gather(-1, assign[:, None]).squeeze(-1)
    median = []
    for j in range(resp.shape[1]):
        own = nll[assign == j, j]
        median.append((own if len(own) else overall).median())  # an empty pot: all rows
    median = torch.stack(median)
    calibration = Calibration(mixture_weights(resp), median, saturated, neighbours)
    if neighbours:
        rows = vae.standardize(train_x).cpu()  # distances in the units the model reads
        calibration.among, calibration.ratio, calibration.combine = among, ratio, combine
        if among == "all":
            calibration.reference = [rows]
        else:
            calibration.reference = [rows[(assign == j).cpu()] for j in range(resp.shape[1])]
        dist = _distance_term(rows, assign.cpu(), calibration, own=True)
        misfit = (overall - median[assign]).double().cpu()
        calibration.spread = torch.stack([*_robust(misfit), *_robust(dist)])
        if combine == "fisher":
            calibration.null = torch.stack([misfit.sort().values, dist.sort().values])
    return calibration


def row_scores(
    vae: PotsVAE, x: torch.Tensor, calibration: Calibration, num_samples: Optional[int] = None
) -> Dict[str, np.ndarray]:
    """
    The per-row scores of the module docstring, in input order: a dict of ``(N,)`` arrays
    keyed by :data:`COLUMNS`. ``calibration`` comes from :func:`calibrate` on the training
    rows with the same ``num_samples``; its ``neighbours`` and ``saturated`` options say how
    ``ood_score`` is made (the other columns do not depend on them).
    """
    pots = vae.open_ids()
    resp, elbo, nll = pot_misfit(vae, x, num_samples)
    assign = resp.argmax(-1)
    log_w = calibration.weights.log()
    if num_samples is None:
        neg_elbo = mixture_loss(PotScores(pots, elbo, resp, elbo.new_empty(0)), calibration.weights)
    else:
        neg_elbo = -(log_w - nll).logsumexp(-1)
    misfit = nll
    if calibration.saturated:
        misfit = nll.double() - saturated_misfit(vae, x)[:, None].to(nll.device)
    own = misfit.gather(-1, assign[:, None]).squeeze(-1)
    ood = own - calibration.median[assign]
    if calibration.neighbours:
        dist = _distance_term(vae.standardize(x).cpu(), assign.cpu(), calibration, own=False)
        if calibration.combine == "fisher":
            p_m = _tail_probability(ood.double().cpu(), calibration.null[0])
            p_d = _tail_probability(dist, calibration.null[1])
            ood = -2 * (p_m.log() + p_d.log())
        else:
            m_l, s_l, m_d, s_d = calibration.spread.tolist()
            ood = (ood.double().cpu() - m_l) / s_l + (dist - m_d) / s_d
    posterior = pot_posterior(nll, calibration.weights)
    return {
        "pot": pots[assign].cpu().numpy(),
        "max_resp": resp.max(-1).values.cpu().double().numpy(),
        "entropy": (-torch.special.xlogy(resp, resp).sum(-1)).cpu().double().numpy(),
        "neg_elbo": neg_elbo.cpu().double().numpy(),
        "ood_score": ood.cpu().double().numpy(),
        "max_posterior": posterior.max(-1).values.cpu().double().numpy(),
    }


def write_scores_csv(scores: Dict[str, np.ndarray], path: Path) -> None:
    """One line per row, in input order: ``row`` then :data:`COLUMNS`."""
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(("row",) + COLUMNS)
        for i in range(len(scores["pot"])):
            values = [f"{scores[c][i]:.6g}" for c in COLUMNS[1:]]
            writer.writerow([i, int(scores["pot"][i]), *values])
