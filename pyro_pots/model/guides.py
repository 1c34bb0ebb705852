"""Swappable variational families for the ``logits`` site. Each turns the raw output of the
encoder's logits head into a distribution over y in R^K, selected by name in configs."""

import pyro.distributions as dist
import torch
from torch.nn.functional import softplus

from pyro_pots.model.networks import MIN_SCALE


class DeltaLogitsGuide:
    """
    ``y = y(x)``, a point mass (the default). With it the ``logits`` site contributes
    exactly ``lambda * log p_mix(y(x))``: the seed's penalty.
    """

    #: numbers the encoder emits per pot for this guide.
    params_per_pot = 1

    def __call__(self, head: torch.Tensor) -> dist.Delta:
        return dist.Delta(head, event_dim=1)


class NormalLogitsGuide:
    """
    ``y ~ Normal(loc(x), scale(x))``: with the logit-mixture prior this is the
    logistic-normal-mixture variant, and the ``logits`` term becomes a Monte Carlo KL.
    """

    params_per_pot = 2

    def __call__(self, head: torch.Tensor) -> dist.TorchDistribution:
        loc, raw_scale = head.chunk(2, dim=-1)
        return dist.Normal(loc, softplus(raw_scale) + MIN_SCALE).to_event(1)


#: config name -> logits guide class.
LOGITS_GUIDES = {"delta": DeltaLogitsGuide, "normal": NormalLogitsGuide}
