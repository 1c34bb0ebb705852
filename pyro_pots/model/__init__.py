"""The pots mixture VAE and its swappable parts (priors, logits guides, likelihoods)."""

from pyro_pots.model.guides import LOGITS_GUIDES, DeltaLogitsGuide, NormalLogitsGuide
from pyro_pots.model.likelihoods import LIKELIHOODS, Likelihood
from pyro_pots.model.networks import Encoder, GroupedLinear, PotDecoders
from pyro_pots.model.pots_vae import PotsVAE
from pyro_pots.model.priors import LOGIT_PRIORS, CategoricalKLPrior, FlatLogitPrior, LogitMoGPrior

__all__ = [
    "CategoricalKLPrior",
    "DeltaLogitsGuide",
    "Encoder",
    "FlatLogitPrior",
    "GroupedLinear",
    "LIKELIHOODS",
    "LOGITS_GUIDES",
    "LOGIT_PRIORS",
    "Likelihood",
    "LogitMoGPrior",
    "NormalLogitsGuide",
    "PotDecoders",
    "PotsVAE",
]
