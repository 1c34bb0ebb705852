"""Distributions of pyro-pots: the logit-mixture prior, pot routing, the categorical-KL
potential, and the masked-softmax helpers they share."""

from pyro_pots.distributions.categorical_kl import CategoricalKLPotential
from pyro_pots.distributions.logit_mixture import LogitMixture
from pyro_pots.distributions.pot_routing import ROUTING_MODES, PotRouting
from pyro_pots.distributions.util import masked_log_softmax, masked_softmax, pots_mask

__all__ = [
    "CategoricalKLPotential",
    "LogitMixture",
    "PotRouting",
    "ROUTING_MODES",
    "masked_log_softmax",
    "masked_softmax",
    "pots_mask",
]
