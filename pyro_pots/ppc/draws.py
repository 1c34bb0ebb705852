"""
Replicated data and prior draws of a :class:`~pyro_pots.model.PotsVAE` by
:class:`pyro.infer.Predictive`: the guide draws the latent sites of each observed row and the
unconditioned model draws a new ``obs`` given them (:func:`posterior_predictive`), or the
model alone draws everything (:func:`prior_predictive`, of the whole model or of one pot).
"""

import contextlib
from typing import Callable, Dict, Iterator, Mapping, Optional

import pyro
import torch
from pyro import poutine
from pyro.infer import Predictive
from pyro.poutine.messenger import Messenger
from pyro.poutine.runtime import Message
from pyro.util import get_rng_state, set_rng_state

from pyro_pots.distributions import pots_mask
from pyro_pots.model import PotsVAE
from pyro_pots.sites import LOGITS, OBS, RESPONSIBILITIES, ROUTE, Z

#: the sites :func:`posterior_predictive` and :func:`prior_predictive` return; ``_RETURN``
#: is the model's return value, the mixed decoder output (natural parameters), ``(S, N, D)``.
RETURN_SITES = (LOGITS, RESPONSIBILITIES, ROUTE, Z, OBS, "_RETURN")


@contextlib.contextmanager
def _seeded(seed: Optional[int]) -> Iterator[None]:
    """Seed Pyro's RNGs for the block and restore the caller's RNG state after it."""
    if seed is None:
        yield
        return
    state = get_rng_state()
    pyro.set_rng_seed(seed)
    try:
        yield
    finally:
        set_rng_state(state)


class _LogitsPlaceholder(Messenger):
    """
    Give the ``logits`` site a value of zeros where nothing else gives it one.

    The ``none`` and ``categorical_kl`` logit priors cannot be sampled, and
    :class:`~pyro.infer.Predictive` runs the model once unconditioned to learn its shapes.
    For posterior replicates the guide's logits replace the placeholder (Predictive's
    ``condition`` handler is outermost, so it acts after this one); with a single open pot
    the logits do not change the routing, so per-pot prior draws need no logit prior.
    """

    def __init__(self, like: torch.Tensor) -> None:
        super().__init__()
        self.like = like  # dtype and device of the zeros

    def _pyro_sample(self, msg: Message) -> None:
        if msg["name"] == LOGITS and msg["value"] is None:
            fn = msg["fn"]
            msg["value"] = self.like.new_zeros(fn.batch_shape + fn.event_shape)


def can_sample_logit_prior(vae: PotsVAE) -> bool:
    """Whether the model's logit prior has a sampler (``logit_mog`` does; ``none`` and
    ``categorical_kl`` do not). Probed on forked RNGs, so the caller's stream is untouched."""
    prior = vae.logit_prior(vae.active, next(vae.parameters()).dtype)
    with torch.random.fork_rng(devices=[]):
        try:
            prior.sample()
        except NotImplementedError:
            return False
    return True


def open_set(vae: PotsVAE, active: Optional[torch.Tensor]) -> torch.Tensor:
    return vae.active if active is None else active


def posterior_predictive(
    vae: PotsVAE,
    x: torch.Tensor,
    active: Optional[torch.Tensor] = None,
    num_samples: int = 100,
    seed: Optional[int] = None,
    guide: Optional[Callable] = None,
    parallel: bool = False,
) -> Dict[str, torch.Tensor]:
    """
    Posterior predictive draws by :class:`~pyro.infer.Predictive` with a guide.

    For each of ``num_samples`` draws the guide samples ``logits``, ``route`` and ``z`` given
    ``x``, and the unconditioned model samples ``obs`` given them.

    :param PotsVAE vae: a fitted model.
    :param torch.Tensor x: observed data ``(N, D)``.
    :param torch.Tensor active: boolean ``(K,)`` open pots; default ``vae.active``.
    :param int num_samples: S, the number of replicates.
    :param int seed: seed of the draws (the caller's RNG state is restored afterwards);
        None draws from the current state.
    :param guide: a guide with the model's signature ``guide(x, active)`` that samples
        every latent site; default ``vae.guide``.
    :param bool parallel: draw all replicates at once (Predictive's ``parallel``): several
        times faster, with memory for all ``S`` draws of every open pot's decoder at once.
    :returns: Predictive's dict of :data:`RETURN_SITES`: ``obs``, ``logits``, ``route``
        and ``responsibilities`` of shape ``(S, 1, N, .)``, ``z`` of shape ``(S, K, N, d)``
        and ``_RETURN`` (the mixed decoder output) of shape ``(S, N, D)``.
    """
    active = open_set(vae, active)
    model = poutine.uncondition(vae.model)
    if not can_sample_logit_prior(vae):
        model = _LogitsPlaceholder(x)(model)
    guide = vae.guide if guide is None else guide
    predictive = Predictive(
        model,
        guide=guide,
        num_samples=num_samples,
        return_sites=RETURN_SITES,
        parallel=parallel,
    )
    with _seeded(seed):
        return predictive(x, active)


def prior_predictive(
    vae: PotsVAE,
    num_rows: int,
    num_samples: int = 1,
    active: Optional[torch.Tensor] = None,
    pot: Optional[int] = None,
    seed: Optional[int] = None,
) -> Dict[str, torch.Tensor]:
    """
    Prior predictive draws of the whole model, or of one pot, by
    :class:`~pyro.infer.Predictive` on the model alone.

    With ``pot`` the model runs with that pot as its only open pot (the model's own
    ``active`` argument): the logit mixture has one component, every row is routed to
    ``pot`` and only that pot's decoder is evaluated, so the draws are
    :math:`x \\sim p(x \\mid z_k),\\ z_k \\sim \\mathcal N(0, I)`.

    :param PotsVAE vae: the model.
    :param int num_rows: rows per draw.
    :param int num_samples: number of draws.
    :param torch.Tensor active: boolean ``(K,)`` open pots; default ``vae.active``.
    :param int pot: draw from this pot only; it must be open in ``active``.
    :param int seed: seed of the draws (the caller's RNG state is restored afterwards).
    :returns: Predictive's dict of :data:`RETURN_SITES` (as in :func:`posterior_predictive`
        with ``N = num_rows``). With ``pot`` and a logit prior that cannot be sampled
        (``none``, ``categorical_kl``), ``logits`` holds zeros: with one open pot they do
        not change the routing.
    :raises ValueError: ``pot`` is not open, or the whole model is asked for with a logit
        prior that cannot be sampled.
    """
    active = open_set(vae, active)
    model = vae.model
    if pot is not None:
        open_pots = vae.open_ids(active).tolist()
        if pot not in open_pots:
            raise ValueError(f"pot {pot} is not open; open pots: {open_pots}")
        active = pots_mask(vae.num_pots, [pot], device=active.device)
        if not can_sample_logit_prior(vae):
            model = _LogitsPlaceholder(next(vae.parameters()))(model)
    elif not can_sample_logit_prior(vae):
        raise ValueError(
            f"the logit prior {type(vae.logit_prior).__name__} cannot be sampled; prior "
            "predictive draws of the whole model need logit_mog (draws of one pot work "
            "with any prior: pass pot=...)"
        )
    predictive = Predictive(model, num_samples=num_samples, return_sites=RETURN_SITES)
    with _seeded(seed):
        return predictive(None, active, num_rows=num_rows)


def replicates(samples: Mapping[str, torch.Tensor]) -> torch.Tensor:
    """The replicated data ``(S, N, D)`` of a Predictive result (``obs`` without its
    plate dims of size 1)."""
    obs = samples[OBS]
    return obs.reshape(obs.shape[0], *obs.shape[-2:])
