"""Observation models p(x | decoder output)."""

import pyro.distributions as dist
import torch
from pyro.distributions import constraints
from pyro.nn import PyroModule, PyroParam

LIKELIHOODS = ("bernoulli", "continuous_bernoulli", "normal")


class Likelihood(PyroModule):
    """
    Turns the mixed decoder output (a natural parameter, one per feature) into a
    distribution over a row of ``x`` with event dim 1.

    - ``bernoulli``: ``Bernoulli(logits)``. Data in [0, 1]; for non-binary data this is
      the usual cross-entropy "Bernoulli" likelihood (not normalised over [0, 1]).
    - ``continuous_bernoulli``: the normalised version on [0, 1] (Loaiza-Ganem and
      Cunningham, 2019).
    - ``normal``: ``Normal(mean, scale)`` with a learned scale per feature, in the
      standardised units of :meth:`set_units`: the distribution over the data's own units
      is ``Normal(loc + unit * mean, unit * scale)``, the same density divided by the
      Jacobian ``prod(unit)``.

    :param str kind: one of :data:`LIKELIHOODS`.
    :param int data_dim: D.
    :param float init_scale: initial scale of the ``normal`` likelihood.
    """

    def __init__(self, kind: str, data_dim: int, init_scale: float = 0.5) -> None:
        if kind not in LIKELIHOODS:
            raise ValueError(f"unknown likelihood {kind!r}; choose from {LIKELIHOODS}")
        super().__init__()
        self.kind = kind
        if kind == "normal":
            self.scale = PyroParam(torch.full((data_dim,), init_scale), constraints.positive)
        # the data's units: x = loc + unit * (standardised x); the identity by default
        self.register_buffer("loc", torch.zeros(data_dim))
        self.register_buffer("unit", torch.ones(data_dim))

    def set_units(self, loc: torch.Tensor, unit: torch.Tensor) -> None:
        """Model the data as ``loc + unit * u``, ``u`` in the decoders' standardised units
        (``normal`` only: the bernoulli likelihoods' support is [0, 1])."""
        if self.kind != "normal":
            raise ValueError(f"the {self.kind} likelihood takes data in [0, 1] as they are")
        self.loc.copy_(loc)
        self.unit.copy_(unit)

    def forward(self, out: torch.Tensor) -> dist.TorchDistribution:
        """The distribution of x given the mixed decoder output ``out``."""
        if self.kind == "bernoulli":
            # validate_args=False: the cross-entropy form accepts fractional data.
            return dist.Bernoulli(logits=out, validate_args=False).to_event(1)
        if self.kind == "continuous_bernoulli":
            return dist.ContinuousBernoulli(logits=out).to_event(1)
        return dist.Normal(self.loc + self.unit * out, self.unit * self.scale).to_event(1)
