"""The logit-space Gaussian-mixture prior over the encoder's raw logits."""

import math

import torch
from pyro.distributions import TorchDistribution, constraints
from torch.distributions.utils import broadcast_all


class LogitMixture(TorchDistribution):
    r"""
    Mixture of isotropic Gaussians in logit space, one component per *open* pot.

    Component :math:`k` sits at :math:`M e_k` with covariance :math:`\sigma^2 I`, and the
    mixture is uniform over the open set :math:`A`:

    .. math::

        \log p(y) = \operatorname{logsumexp}_{k \in A}
            \left[-\frac{\lVert y - M e_k \rVert^2}{2\sigma^2}\right]
            - \log|A| - \frac{K}{2}\log(2\pi\sigma^2)

    A draw lands near one corner :math:`M e_k`, so ``softmax(y)`` is near one-hot; the
    ratio :math:`M/\sigma` sets how peaky. The density is over all :math:`K` coordinates of
    the raw logits (closed pots included: there every component has mean 0).

    The squared distance is expanded as
    :math:`\lVert y\rVert^2 - 2M y_k + M^2` so the log-sum-exp only sees the
    :math:`k`-dependent part; this keeps log-density and gradients finite at
    :math:`|y| \sim 10^3`.

    :param M: positive distance of each component from the origin.
    :type M: float or torch.Tensor
    :param sigma: positive per-coordinate standard deviation of each component.
    :type sigma: float or torch.Tensor
    :param torch.Tensor active: boolean mask of shape ``(..., K)``, True for open pots;
        batched masks broadcast against the batch shape of ``M`` and ``sigma``.
    """

    arg_constraints = {"M": constraints.positive, "sigma": constraints.positive}
    support = constraints.real_vector
    has_rsample = True

    def __init__(self, M, sigma, active: torch.Tensor, validate_args=None) -> None:
        if not isinstance(active, torch.Tensor):
            active = torch.as_tensor(active)  # not on tensors: JIT would bake it in as a constant
        if active.dtype != torch.bool or active.dim() < 1:
            raise ValueError("LogitMixture: `active` must be a boolean tensor of shape (..., K)")
        self.M, self.sigma = broadcast_all(M, sigma)
        self.active = active
        batch_shape = torch.broadcast_shapes(self.M.shape, active.shape[:-1])
        super().__init__(batch_shape, active.shape[-1:], validate_args=validate_args)
        if self._validate_args and not bool(active.any(-1).all()):
            raise ValueError("LogitMixture: the active set is empty; open at least one pot")

    @property
    def num_pots(self) -> int:
        return self.event_shape[0]

    def mask_pots(self, active: torch.Tensor) -> "LogitMixture":
        """Restrict the mixture to the pots that are open in both ``self.active`` and ``active``."""
        return LogitMixture(self.M, self.sigma, self.active & active, self._validate_args)

    def expand(self, batch_shape, _instance=None) -> "LogitMixture":
        new = self._get_checked_instance(LogitMixture, _instance)
        batch_shape = torch.Size(batch_shape)
        new.M = self.M.expand(batch_shape)
        new.sigma = self.sigma.expand(batch_shape)
        new.active = self.active.expand(batch_shape + self.event_shape)
        super(LogitMixture, new).__init__(batch_shape, self.event_shape, validate_args=False)
        new._validate_args = self._validate_args
        return new

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        if self._validate_args:
            self._validate_sample(value)
        M = self.M.unsqueeze(-1)
        var = self.sigma.pow(2)
        # -||y - M e_k||^2 / (2 var) = -||y||^2 / (2 var) + (2 M y_k - M^2) / (2 var)
        near = ((2 * M * value - M.pow(2)) / (2 * var.unsqueeze(-1))).masked_fill(
            ~self.active, -float("inf")
        )
        n_open = self.active.sum(-1).to(value.dtype)
        return (
            near.logsumexp(-1)
            - value.pow(2).sum(-1) / (2 * var)
            - n_open.log()
            - 0.5 * self.num_pots * torch.log(2 * math.pi * var)
        )

    def rsample(self, sample_shape=torch.Size()) -> torch.Tensor:
        shape = self._extended_shape(sample_shape)
        # A uniform pick among the open pots: argmax of uniform noise restricted to `active`.
        # The pick does not depend on M or sigma, so the draw is reparameterized in both.
        u = torch.rand(shape, dtype=self.M.dtype, device=self.M.device)
        pick = u.masked_fill(~self.active, -1.0).argmax(-1)
        corner = torch.nn.functional.one_hot(pick, self.num_pots).to(self.M.dtype)
        eps = torch.randn(shape, dtype=self.M.dtype, device=self.M.device)
        return self.M.unsqueeze(-1) * corner + self.sigma.unsqueeze(-1) * eps

    @property
    def mean(self) -> torch.Tensor:
        p = self._component_share()
        return (self.M.unsqueeze(-1) * p).expand(self.batch_shape + self.event_shape)

    @property
    def variance(self) -> torch.Tensor:
        p = self._component_share()
        var = self.sigma.pow(2).unsqueeze(-1) + self.M.pow(2).unsqueeze(-1) * p * (1 - p)
        return var.expand(self.batch_shape + self.event_shape)

    def _component_share(self) -> torch.Tensor:
        """Probability that coordinate k holds the chosen corner: 1/|A| on open pots."""
        active = self.active.to(self.M.dtype)
        return active / active.sum(-1, keepdim=True)
