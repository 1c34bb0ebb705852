"""Relaxed one-hot routing weights over the open pots."""

import torch
from pyro.distributions import TorchDistribution, constraints

from pyro_pots.distributions.util import masked_softmax

#: Routing modes. ``softmax``: deterministic weights softmax(y / T). ``gumbel``: a
#: Gumbel-softmax (Concrete) draw. ``straight_through``: a one-hot draw whose gradient is
#: that of the Gumbel-softmax draw.
ROUTING_MODES = ("softmax", "gumbel", "straight_through")


class PotRouting(TorchDistribution):
    r"""
    Routing weights :math:`w` in the simplex, relaxed one-hot given the logits and masked
    to the open pots: every draw is exactly 0 on closed pots in every mode.

    Closed pots are removed by filling their *scores* with ``-inf`` just before the
    softmax; the logits themselves stay finite. The Gumbel-softmax density is the Concrete
    density over the :math:`n = |A|` open coordinates,

    .. math::

        \log p(w) = \log\Gamma(n) + (n-1)\log T
            + \sum_{k\in A} \left(y_k - (T+1)\log w_k\right)
            - n \operatorname{logsumexp}_{k\in A}\left(y_k - T\log w_k\right),

    with :math:`w_k` clamped at the smallest normal float before the log: at low
    temperature the weights of losing pots underflow to 0, and an exact-0 weight would
    make the density NaN. In a model and guide that share this site the term cancels
    exactly, so the clamp never biases the ELBO.

    ``softmax`` mode is deterministic: its log-density is 0 at ``softmax(y / T)`` and
    ``-inf`` elsewhere, like :class:`~pyro.distributions.Delta`. ``straight_through``
    returns the hard one-hot vector and scores it by the soft draw it came from (kept on
    the sample, as Pyro's ``RelaxedOneHotCategoricalStraightThrough`` does).

    :param torch.Tensor logits: finite logits of shape ``(..., K)``.
    :param temperature: positive temperature T.
    :type temperature: float or torch.Tensor
    :param str routing: one of :data:`ROUTING_MODES`.
    :param torch.Tensor active: boolean mask broadcastable to ``logits``; None opens all.
    """

    arg_constraints = {"logits": constraints.real_vector, "temperature": constraints.positive}
    support = constraints.simplex
    has_rsample = True

    def __init__(
        self, logits, temperature, routing: str = "gumbel", active=None, validate_args=None
    ):
        if routing not in ROUTING_MODES:
            raise ValueError(
                f"PotRouting: unknown routing {routing!r}; choose from {ROUTING_MODES}"
            )
        self.logits = logits
        self.temperature = torch.as_tensor(temperature, dtype=logits.dtype, device=logits.device)
        if active is None:
            active = torch.ones(logits.shape[-1:], dtype=torch.bool, device=logits.device)
        self.active = active
        self.routing = routing
        batch_shape = torch.broadcast_shapes(logits.shape[:-1], active.shape[:-1])
        super().__init__(batch_shape, logits.shape[-1:], validate_args=validate_args)

    def mask_pots(self, active: torch.Tensor) -> "PotRouting":
        """Restrict routing to pots open in both ``self.active`` and ``active``."""
        return self._replace(active=self.active & active)

    def kick(self, pot, bias, temperature) -> "PotRouting":
        """Exploration copy: logit bias toward ``pot``, temperature set, straight-through off.

        Each value may be a number or a 0-dim tensor (an integer one for ``pot``), so that
        under :func:`torch.jit.trace` a tensor argument stays an input of the graph.
        """
        pots = torch.arange(self.event_shape[0], device=self.logits.device)
        bump = pots == torch.as_tensor(pot, device=self.logits.device)
        routing = "gumbel" if self.routing == "straight_through" else self.routing
        return self._replace(
            logits=self.logits + bias * bump.to(self.logits),
            temperature=temperature,
            routing=routing,
        )

    def _replace(self, **changes) -> "PotRouting":
        args = dict(
            logits=self.logits,
            temperature=self.temperature,
            routing=self.routing,
            active=self.active,
            validate_args=self._validate_args,
        )
        args.update(changes)
        return PotRouting(**args)

    def expand(self, batch_shape, _instance=None) -> "PotRouting":
        batch_shape = torch.Size(batch_shape)
        return self._replace(
            logits=self.logits.expand(batch_shape + self.event_shape),
            active=self.active.expand(batch_shape + self.event_shape),
        )

    def rsample(self, sample_shape=torch.Size()) -> torch.Tensor:
        shape = self._extended_shape(sample_shape)
        scores = self.logits.expand(shape)
        if self.routing != "softmax":
            finfo = torch.finfo(self.logits.dtype)
            u = torch.rand(shape, dtype=self.logits.dtype, device=self.logits.device)
            scores = scores - torch.log(-torch.log(u.clamp(finfo.tiny, 1 - finfo.eps)))
        soft = masked_softmax(scores / self.temperature, self.active)
        if self.routing != "straight_through":
            return soft
        hard = torch.nn.functional.one_hot(soft.argmax(-1), shape[-1]).to(soft)
        value = hard + (soft - soft.detach())
        value._unquantize = soft
        return value

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        if self.routing == "softmax":
            expected = masked_softmax(self.logits / self.temperature, self.active)
            hit = (value == expected).all(-1)
            return torch.zeros_like(hit, dtype=value.dtype).masked_fill(~hit, -float("inf"))
        soft = getattr(value, "_unquantize", value)
        T = self.temperature
        log_w = soft.clamp(min=torch.finfo(soft.dtype).tiny).log()
        n = self.active.sum(-1).to(soft.dtype)
        per_pot = (self.logits - (T + 1) * log_w).masked_fill(~self.active, 0.0).sum(-1)
        norm = (self.logits - T * log_w).masked_fill(~self.active, -float("inf")).logsumexp(-1)
        return torch.lgamma(n) + (n - 1) * T.log() + per_pot - n * norm
