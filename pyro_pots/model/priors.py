"""Swappable priors on the ``logits`` site. Each is a callable
``prior(active, dtype) -> distribution over y in R^K`` and is selected by name in configs."""

import pyro.distributions as dist
import torch
from pyro.distributions import constraints

from pyro_pots.distributions import CategoricalKLPotential, LogitMixture


class LogitMoGPrior:
    """
    The logit-space Gaussian mixture :class:`~pyro_pots.distributions.LogitMixture` (the
    default). Peakiness is set mainly by ``M / sigma``.

    :param float M: distance of each component from the origin (> 0).
    :param float sigma: per-coordinate standard deviation (> 0).
    """

    def __init__(self, M: float = 5.0, sigma: float = 1.0) -> None:
        if not (M > 0 and sigma > 0):
            raise ValueError(f"LogitMoGPrior needs M > 0 and sigma > 0, got M={M}, sigma={sigma}")
        self.M = M
        self.sigma = sigma

    def __call__(self, active: torch.Tensor, dtype: torch.dtype = torch.float32) -> LogitMixture:
        M = torch.tensor(self.M, dtype=dtype, device=active.device)
        sigma = torch.tensor(self.sigma, dtype=dtype, device=active.device)
        return LogitMixture(M, sigma, active)


class FlatLogitPrior:
    """No prior on the logits (improper flat density, log-density 0; cannot be sampled)."""

    def __call__(self, active: torch.Tensor, dtype: torch.dtype = torch.float32):
        return dist.ImproperUniform(constraints.real_vector, (), active.shape[-1:])


class CategoricalKLPrior:
    """The textbook mixture-VAE term ``-KL(softmax_A(y) || Uniform(A))`` as a potential."""

    def __call__(self, active: torch.Tensor, dtype: torch.dtype = torch.float32):
        return CategoricalKLPotential(active)


#: config name -> prior class.
LOGIT_PRIORS = {
    "logit_mog": LogitMoGPrior,
    "none": FlatLogitPrior,
    "categorical_kl": CategoricalKLPrior,
}
