"""The pots mixture VAE: a Pyro model and guide over the sites of :mod:`pyro_pots.sites`."""

import contextlib
import itertools
import warnings
import weakref
from typing import Optional, Sequence, Union

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
#: an open set: a boolean mask ``(K,)``, as a tensor or as a list or tuple of K bools.
ActiveMask = Union[torch.Tensor, Sequence[bool]]
#: every PotsVAE's parameters, by id: a value in the param store that is not one of these
#: was put there by ParamStoreDict.load (or by hand), not by a model.
_model_weights: "weakref.WeakValueDictionary[int, torch.Tensor]" = weakref.WeakValueDictionary()


def _is_model_weight(value: torch.Tensor) -> bool:
    return _model_weights.get(id(value)) is value


#: what a swappable part must be, for the error that refuses anything else.
_EXPECTED = {
    "logit prior": "a callable prior(active, dtype) -> distribution over the K logits, "
    "e.g. LogitMoGPrior(M=8.0, sigma=1.0)",
    "logits guide": "a callable guide(head) -> distribution over the K logits with an int "
    "attribute params_per_pot, e.g. NormalLogitsGuide()",
}


def _pick(kind: str, choice, table: dict):
    """A swappable part given by config name (built with defaults) or as an object."""
    if isinstance(choice, str):
        if choice not in table:
            raise ValueError(f"unknown {kind} {choice!r}; choose from {sorted(table)}")
        return table[choice]()
    # a distribution is callable-looking but is not a part: it cannot follow the open set
    wrong = isinstance(choice, torch.distributions.Distribution) or not callable(choice)
    if kind == "logits guide" and not isinstance(getattr(choice, "params_per_pot", None), int):
        wrong = True
    if wrong:
        raise ValueError(
            f"{kind.replace(' ', '_')} must be one of {sorted(table)} or "
            f"{_EXPECTED[kind]}; got {type(choice).__name__} {choice!r}"
        )
    return choice


#: the buffers that hold the data's units (:meth:`PotsVAE.standardize_to`) and their
#: identity value: a model saved before they existed read the data as they are.
UNIT_BUFFERS = {
    "encoder.input_loc": 0.0,
    "encoder.input_scale": 1.0,
    "likelihood.loc": 0.0,
    "likelihood.unit": 1.0,
}


def fill_unit_buffers(state: dict) -> dict:
    """A :class:`PotsVAE` ``state_dict`` saved before the data's units existed, completed
    with their identity values (in place; returned). A state without the encoder's trunk
    is left alone (it is not a model's)."""
    trunk = state.get("encoder.trunk.weight")
    if not isinstance(trunk, torch.Tensor) or trunk.dim() != 2:
        return state
    for key, value in UNIT_BUFFERS.items():
        if key not in state:
            state[key] = torch.full((trunk.shape[1],), value, dtype=trunk.dtype)
    return state


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
        Weights are saved and loaded with ``state_dict()`` / ``load_state_dict()``, or
        through the param store: after ``pyro.get_param_store().load(path)`` a model
        built with the saved model's ``name`` takes them up at its next call (a model of
        another name warns that it does not). The data's units (:meth:`standardize_to`) are buffers:
        they travel with ``state_dict()``, not with the param store.
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
        self._store_checked = False

    # -- the open set ---------------------------------------------------------------
    def open_pots(self, pots) -> None:
        """Set :attr:`active` to exactly the pot ids in ``pots``."""
        self.active.copy_(pots_mask(self.num_pots, pots, self.active.device))

    def _resolve_active(self, active: Optional[ActiveMask]) -> torch.Tensor:
        """``active`` as a boolean tensor ``(K,)``: the buffer if None; a list, tuple or
        array of K bools is converted."""
        tracing = torch._C._get_tracing_state()
        if active is None:
            if tracing:
                raise ValueError(
                    "under JIT pass `active` to model and guide explicitly, "
                    "or the traced open set goes stale"
                )
            return self.active
        expected = (
            f"active must be a boolean mask of shape ({self.num_pots},): a tensor, or a list "
            f"of {self.num_pots} bools (for pot ids use pots_mask({self.num_pots}, ids))"
        )
        if not isinstance(active, torch.Tensor):
            if tracing:  # converted here it would be a constant of the trace
                raise ValueError(expected + "; under JIT, a tensor argument")
            try:
                active = torch.as_tensor(active, device=self.active.device)
            except (TypeError, ValueError, RuntimeError):
                raise ValueError(f"{expected}; got {active!r}") from None
        if active.dtype != torch.bool or active.shape != (self.num_pots,):
            shown = f"{active.dtype} of shape {tuple(active.shape)}"
            raise ValueError(f"{expected}; got {shown}")
        return active

    def open_ids(self, active: Optional[ActiveMask] = None) -> torch.Tensor:
        """The ids of the open pots, increasing: a long tensor ``(A,)``.

        :param active: boolean mask ``(K,)`` (tensor or list of bools); defaults to
            :attr:`active`.
        """
        return self._resolve_active(active).nonzero().squeeze(-1)

    def _pot_ids(self, pots) -> torch.Tensor:
        """Pot ids (an int, a sequence of ints or a long tensor) as a long tensor."""
        ids = torch.as_tensor(pots, dtype=torch.long, device=self.active.device)
        return ids.reshape(-1) if ids.dim() == 0 else ids

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

    # -- the data's units -------------------------------------------------------------
    @torch.no_grad()
    def standardize_to(self, x: torch.Tensor) -> None:
        """
        Read and model the data in standardised units: the encoder reads each feature of
        ``x`` less its mean over the rows, divided by its standard deviation (1 for a
        feature that never varies), and the ``normal`` likelihood maps the decoders'
        output back, so that the model is still a density over the data as given. Call it
        once, before training, with the training rows. Inputs on scales far apart (a
        feature in thousands beside one in tenths) otherwise saturate the encoder's trunk,
        and the data's own units decide the curriculum's distances (:meth:`standardize`).

        :param x: the training rows ``(N, D)``.
        :raises ValueError: the likelihood is a bernoulli one (its support is [0, 1]).
        """
        loc = x.mean(0)
        unit = x.std(0, unbiased=False)
        unit = torch.where(unit > 0, unit, torch.ones_like(unit))
        self.likelihood.set_units(loc, unit)
        self.encoder.input_loc.copy_(loc)
        self.encoder.input_scale.copy_(unit)

    def load_state_dict(self, state_dict, strict: bool = True, assign: bool = False):
        """:meth:`torch.nn.Module.load_state_dict`, taking a state saved before the data's
        units existed as the identity units (:func:`fill_unit_buffers`)."""
        state = fill_unit_buffers(dict(state_dict))
        return super().load_state_dict(state, strict=strict, assign=assign)

    def standardize(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` in the units the encoder reads (:meth:`standardize_to`; ``x`` itself
        when the model was never standardised): where the curriculum measures distances
        between rows."""
        return self.encoder.standardize(x)

    # -- the param store -------------------------------------------------------------
    def _sync_param_store(self) -> None:
        """
        Take up weights that :meth:`~pyro.params.param_store.ParamStoreDict.load` put in
        the param store under this model's names (values that are no model's parameters:
        a copy of this model, which has its name, never overwrites it).

        :class:`~pyro.nn.PyroModule` keeps its plain ``nn.Parameter`` s (every network
        weight here) whatever the store holds, as :func:`pyro.module` does without
        ``update_module_params=True``, and reads a ``PyroParam`` back only where it is
        used. This does the update at every entry point: each stored value is copied into
        the module's parameter in place (so optimizers that hold it stay valid), and the
        entry leaves the store, which takes the module's own parameter at its next use.
        """
        store = pyro.get_param_store()
        if not _is_model_weight(self.encoder.trunk._parameters["weight"]):  # new or a copy
            _model_weights.update((id(p), p) for p in self.parameters())
        for local, param in self.named_parameters():
            # a PyroParam's raw tensor is "<name>_unconstrained"; the store holds it as <name>
            name = f"{self._pyro_name}.{local.removesuffix('_unconstrained')}"
            # the raw dict, as PyroModule reads it: store[name] would transform each value
            stored = store._params.get(name)
            # another model's parameter (a copy of this one has its name) is left alone
            if stored is None or _is_model_weight(stored):
                continue
            if stored.shape != param.shape:
                raise ValueError(
                    f"the param store holds {name} of shape {tuple(stored.shape)}, but this "
                    f"model's is {tuple(param.shape)}: it was saved from another architecture"
                )
            with torch.no_grad():
                param.copy_(stored)
            del store[name]
        if not self._store_checked:
            self._store_checked = True
            self._warn_unused_store_weights(store)

    def _warn_unused_store_weights(self, store) -> None:
        """Loaded PotsVAE weights under another model's name (the default names differ
        between instances): say so rather than train from scratch in silence."""
        suffix = ".encoder.trunk.weight"
        if f"{self._pyro_name}{suffix}" in store:
            return
        for key, value in store._params.items():
            if key.endswith(suffix) and not _is_model_weight(value):
                prefix = key[: -len(suffix)]
                warnings.warn(
                    f"the param store holds weights of a PotsVAE named {prefix!r} that no "
                    f"model of that name uses (loaded from a file?); this model is named "
                    f"{self._pyro_name!r} and starts from its own. To restore them, build "
                    f"it with PotsVAE(..., name={prefix!r}) before the first call, or "
                    "save and load model.state_dict()",
                    stacklevel=4,
                )
                return

    # -- model and guide -----------------------------------------------------------
    def model(
        self,
        x: Optional[torch.Tensor] = None,
        active: Optional[ActiveMask] = None,
        num_rows: Optional[int] = None,
    ) -> torch.Tensor:
        """
        :param x: data of shape ``(N, D)``, or None to sample ``num_rows`` rows.
        :param active: boolean mask ``(K,)`` of open pots (a tensor, or a list of K bools;
            under JIT a tensor argument); defaults to :attr:`active`.
        :returns: the mixed decoder output (natural parameters), shape ``(N, D)``.
        """
        active = self._resolve_active(active)
        self._sync_param_store()
        n = x.shape[0] if x is not None else (num_rows or 1)
        dtype = next(self.parameters()).dtype  # read directly: no pyro.param site
        with self._pot_handlers(active):
            with pyro.plate(DATA_PLATE, n, dim=-1):
                y = pyro.sample(LOGITS, self.logit_prior(active, dtype))
                pyro.deterministic(RESPONSIBILITIES, masked_softmax(y, active), event_dim=1)
                w = pyro.sample(ROUTE, PotRouting(y, self.temperature, self.routing))
                with pyro.plate(CHANNELS_PLATE, self.num_pots, dim=-2):
                    z = pyro.sample(Z, dist.Normal(y.new_zeros(self.latent_dim), 1.0).to_event(1))
                out = self.decoders(z, w, self.open_ids(active))
                pyro.sample(OBS, self.likelihood(out), obs=x)
        return out

    def guide(
        self, x: torch.Tensor, active: Optional[ActiveMask] = None, num_rows: Optional[int] = None
    ) -> None:
        """
        :param x: data of shape ``(N, D)``.
        :param active: boolean mask ``(K,)`` of open pots (a tensor, or a list of K bools;
            under JIT a tensor argument); defaults to :attr:`active`.
        :param num_rows: unused; the guide takes the model's arguments, as Predictive passes
            the same arguments to both.
        """
        active = self._resolve_active(active)
        self._sync_param_store()
        n = x.shape[0]
        h = self.encoder.hidden(x)
        with self._pot_handlers(active):
            with pyro.plate(DATA_PLATE, n, dim=-1):
                y = pyro.sample(LOGITS, self.logits_guide(self.encoder.logits_params(h)))
                pyro.sample(ROUTE, PotRouting(y, self.temperature, self.routing))
                loc, scale = self.encoder.latent_params(h, self.open_ids(active))
                with pyro.plate(CHANNELS_PLATE, self.num_pots, dim=-2):
                    pyro.sample(Z, dist.Normal(loc, scale).to_event(1))

    # -- the parts, for users and scores -----------------------------------------------
    def mean_logits(self, x: torch.Tensor) -> torch.Tensor:
        """The mean of the logits guide q(y | x), ``(N, K)`` (the raw logits y(x) with the
        Delta guide). Differentiable: wrap in :func:`torch.no_grad` to score."""
        self._sync_param_store()
        return self.logits_guide(self.encoder.logits_params(self.encoder.hidden(x))).mean

    def latent_posterior(
        self, x: torch.Tensor, pots: Union[int, Sequence[int], torch.Tensor]
    ) -> dist.Normal:
        """
        The guide's q(z_k | x) for each pot k in ``pots``: a Normal with loc and scale of
        shape ``(len(pots), N, d)`` (no event dims; ``.to_event(1)`` for a density over z).

        :param pots: a pot id, or pot ids (sequence or long tensor), e.g. :meth:`open_ids`.
        """
        self._sync_param_store()
        loc, scale = self.encoder.latent_loc_scale(self.encoder.hidden(x), self._pot_ids(pots))
        return dist.Normal(loc, scale)

    def decode(
        self, z: torch.Tensor, pots: Union[int, Sequence[int], torch.Tensor]
    ) -> torch.Tensor:
        """
        Pot k's decoder output g_k(z_k) for each k in ``pots``: ``(..., len(pots), N, D)``
        from codes ``(..., len(pots), N, d)``. It is the likelihood's natural parameter
        (logits or mean): ``vae.likelihood(vae.decode(z, pots))`` is p(x | z).
        """
        self._sync_param_store()
        return self.decoders.decode(z, self._pot_ids(pots))

    @torch.no_grad()
    def responsibilities(
        self, x: torch.Tensor, active: Optional[ActiveMask] = None
    ) -> torch.Tensor:
        """Responsibilities r(x): softmax over the open pots of the guide's mean logits, (N, K)."""
        return masked_softmax(self.mean_logits(x), self._resolve_active(active))
