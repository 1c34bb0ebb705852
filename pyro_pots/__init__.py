"""
pyro-pots: discover the modes of a dataset with a responsibility-conditioned mixture VAE
whose latent channels ("pots") are opened one at a time.

The pieces mirror the design: :mod:`pyro_pots.distributions` (the logit-mixture prior and
pot routing), :mod:`pyro_pots.handlers` (masking, responsibility scaling, lambda, kick),
:mod:`pyro_pots.model` (:class:`PotsVAE` with its priors and guides), and
:mod:`pyro_pots.curriculum` (the stage manager, splits, the normality test),
:mod:`pyro_pots.training` (the trainer and :func:`fit`) and :mod:`pyro_pots.sites` (the
public site names). From Python: :class:`PotsMixture`, the curriculum as a scikit-learn
estimator, and :func:`load_run`, a fitted run directory read back without its trainer.
"""

from pyro_pots import handlers, sites
from pyro_pots.distributions import CategoricalKLPotential, LogitMixture, PotRouting, pots_mask
from pyro_pots.estimator import PotsMixture
from pyro_pots.fitted_run import FittedRun, load_run
from pyro_pots.model import PotsVAE
from pyro_pots.training.fitting import fit

__version__ = "0.1.0"

__all__ = [
    "CategoricalKLPotential",
    "FittedRun",
    "LogitMixture",
    "PotRouting",
    "PotsMixture",
    "PotsVAE",
    "fit",
    "handlers",
    "load_run",
    "pots_mask",
    "sites",
]
