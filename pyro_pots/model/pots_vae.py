"""The pots mixture VAE: a Pyro model and guide over the sites of :mod:`pyro_pots.sites`."""

import contextlib
import itertools
from typing import Optional, Union

import pyro
import pyro.distributions as dist
import torch
from pyro.nn import PyroModule

from pyro_pots import handlers
from pyro_pots.distributions import ROUTING_MODES, PotRouting, masked_softmax, pots_mask
from pyro_pots.model.guides import LOGITS_GUIDES
from pyro_pots.model.likelihoods import Likelihood
from pyro_pots.model.networks import Encoder, PotDecoders
from pyro_pots.model.priors import LOGIT_PRIORS
from pyro_pots.sites import CHANNELS_PLATE, DATA_PLATE, LOGITS, OBS, RESPONSIBILITIES, ROUTE, Z

_instances = itertools.count()


def _pick(kind: str, choice, table: dict):
    """A swappable part given by config name (built with defaults) or as an object."""
    if isinstance(choice, str):
        if choice not in table:
            raise ValueError(f"unknown {kind} {choice!r}; choose from {sorted(table)}")
        return table[choice]()
    return choice


class PotsVAE(PyroModule):
    r"""
    Responsibility-conditioned mixture VAE with one latent channel ("pot") per mode.

    Generative model, for each row, with open set :math:`A`:

    .. math::

        y &\sim p(y)  &\text{(logit prior; default LogitMixture over } A)\\
        w &\sim \mathrm{Relaxed}(y, T)\ \text{masked to } A &\text{(routing)}\\
        z_k &\sim \mathcal N(0, I_d),\ k = 1..K  &\text{(per-pot latents)}\\
        x &\sim p\big(x \mid \textstyle\sum_{k\in A} w_k\, g_k(z_k)\big)

    The guide is ``y = y(x)`` (or Normal), the same routing family on the same logits, and
    :math:`q(z_k\mid x) = \mathcal N(\mu_k(x), \sigma_k(x))`. Pot :math:`k`'s latent term
    is weighted by its responsibility :math:`r_k(x) = \mathrm{softmax}_A(y)_k` (see
    :class:`~pyro_pots.handlers.ResponsibilityScaleMessenger`), and closed pots are masked
    out of model and guide alike (:class:`~pyro_pots.handlers.ActivePotsMessenger`).

    ``model(x, active)`` and ``guide(x, active)`` are plain Pyro callables: use them with
    :class:`~pyro.infer.SVI`, any ELBO, :class:`~pyro.infer.Predictive` and poutine. The
    open set is the buffer :attr:`active` unless passed explicitly; under
    :class:`~pyro.infer.JitTrace_ELBO` pass it explicitly (as a positional tensor), so
    that changing it never goes stale. Only open pots' encoder heads and decoders are
    evaluated.

    :param int data_dim: D, features per row.
    :param int num_pots: K_max, the most pots there can be.
    :param int latent_dim: d, latent size of each pot.
    :param int hidden_dim: width of the encoder trunk.
    :param int decoder_hidden_dim: width of each pot's decoder.
    :param str likelihood: ``bernoulli`` | ``continuous_bernoulli`` | ``normal``.
    :param str routing: ``softmax`` | ``gumbel`` | ``straight_through``.
    :param float temperature: routing temperature (> 0).
    :param logit_prior: ``logit_mog`` | ``none`` | ``categorical_kl``, or a prior object
        (e.g. ``LogitMoGPrior(M=8.0, sigma=1.0)``).
    :param logits_guide: ``delta`` | ``normal``, or a logits guide object.
    :param bool responsibility_kl: weight each pot's latent KL by the responsibilities.
    :param str name: prefix of the parameter names in Pyro's param store; defaults to a
        name unique to this instance, so two models in one process never share weights.
    """

    def __init__(
        self,
        data_dim: int,
        num_pots: int = 10,
        latent_dim: int = 4,
        hidden_dim: int = 200,
        decoder_hidden_dim: int = 200,
        likelihood: str = "bernoulli",
        routing: str = "gumbel",
        temperature: float = 0.5,
        logit_prior: Union[str, object] = "logit_mog",
        logits_guide: Union[str, object] = "delta",
        responsibility_kl: bool = True,
        name: Optional[str] = None,
    ) -> None:
        if routing not in ROUTING_MODES:
            raise ValueError(f"unknown routing {routing!r}; choose from {ROUTING_MODES}")
        if not temperature > 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        if num_pots < 1 or latent_dim < 1 or data_dim < 1:
            raise ValueError("data_dim, num_pots and latent_dim must be >= 1")
        super().__init__(name if name is not None else f"pots_vae_{next(_instances)}")
        self.num_pots = num_pots
        self.latent_dim = latent_dim
        self.routing = routing
        self.temperature = temperature
        self.responsibility_kl = responsibility_kl
        self.logit_prior = _pick("logit prior", logit_prior, LOGIT_PRIORS)
        self.logits_guide = _pick("logits guide", logits_guide, LOGITS_GUIDES)
        self.encoder = Encoder(
            data_dim, num_pots, latent_dim, hidden_dim, self.logits_guide.params_per_pot
        )
        self.decoders = PotDecoders(num_pots, latent_dim, decoder_hidden_dim, data_dim)
        self.likelihood = Likelihood(likelihood, data_dim)
        self.register_buffer("active", pots_mask(num_pots, 0))

    # -- the open set ---------------------------------------------------------------
    def open_pots(self, pots) -> None:
        """Set :attr:`active` to exactly the pot ids in ``pots``."""
        self.active.copy_(pots_mask(self.num_pots, pots, self.active.device))

    def _resolve_active(self, active: Optional[torch.Tensor]) -> torch.Tensor:
        if active is None:
            if torch._C._get_tracing_state():
                raise ValueError(
                    "under JIT pass `active` to model and guide explicitly, "
                    "or the traced open set goes stale"
                )
            return self.active
        if active.dtype != torch.bool or active.shape != (self.num_pots,):
            raise ValueError(f"active must be a boolean tensor of shape ({self.num_pots},)")
        return active

    @contextlib.contextmanager
    def _pot_handlers(self, active: torch.Tensor):
        """The handlers model and guide run under; entered outside the plates."""
        scale = (
            handlers.responsibility_scale(active=active)
            if self.responsibility_kl
            else contextlib.nullcontext()
        )
        with handlers.active_pots(active=active), scale:
            yield

    # -- model and guide -----------------------------------------------------------
    def model(
        self,
        x: Optional[torch.Tensor] = None,
        active: Optional[torch.Tensor] = None,
        num_rows: Optional[int] = None,
    ) -> torch.Tensor:
        """
        :param x: data of shape ``(N, D)``, or None to sample ``num_rows`` rows.
        :param active: boolean mask ``(K,)`` of open pots; defaults to :attr:`active`.
        :returns: the mixed decoder output (natural parameters), shape ``(N, D)``.
        """
        active = self._resolve_active(active)
        n = x.shape[0] if x is not None else (num_rows or 1)
        dtype = next(self.parameters()).dtype  # read directly: no pyro.param site
        with self._pot_handlers(active):
            with pyro.plate(DATA_PLATE, n, dim=-1):
                y = pyro.sample(LOGITS, self.logit_prior(active, dtype))
                pyro.deterministic(RESPONSIBILITIES, masked_softmax(y, active), event_dim=1)
                w = pyro.sample(ROUTE, PotRouting(y, self.temperature, self.routing))
                with pyro.plate(CHANNELS_PLATE, self.num_pots, dim=-2):
                    z = pyro.sample(Z, dist.Normal(y.new_zeros(self.latent_dim), 1.0).to_event(1))
                out = self.decoders(z, w, active.nonzero().squeeze(-1))
                pyro.sample(OBS, self.likelihood(out), obs=x)
        return out

    def guide(
        self, x: torch.Tensor, active: Optional[torch.Tensor] = None, num_rows: Optional[int] = None
    ) -> None:
        """
        :param x: data of shape ``(N, D)``.
        :param active: boolean mask ``(K,)`` of open pots; defaults to :attr:`active`.
        :param num_rows: unused; the guide takes the model's arguments, as Predictive passes
            the same arguments to both.
        """
        active = self._resolve_active(active)
        n = x.shape[0]
        h = self.encoder.hidden(x)
        with self._pot_handlers(active):
            with pyro.plate(DATA_PLATE, n, dim=-1):
                y = pyro.sample(LOGITS, self.logits_guide(self.encoder.logits_params(h)))
                pyro.sample(ROUTE, PotRouting(y, self.temperature, self.routing))
                loc, scale = self.encoder.latent_params(h, active.nonzero().squeeze(-1))
                with pyro.plate(CHANNELS_PLATE, self.num_pots, dim=-2):
                    pyro.sample(Z, dist.Normal(loc, scale).to_event(1))

    # -- helpers for users ----------------------------------------------------------
    @torch.no_grad()
    def responsibilities(
        self, x: torch.Tensor, active: Optional[torch.Tensor] = None
    ) -> torch.Tensor:
        """Responsibilities r(x): softmax over the open pots of the guide's mean logits, (N, K)."""
        active = self._resolve_active(active)
        head = self.encoder.logits_params(self.encoder.hidden(x))
        y = self.logits_guide(head).mean
        return masked_softmax(y, active)
