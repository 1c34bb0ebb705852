"""The mixture score's old home, kept so that notebooks and outside code keep importing it:
the score is the model's own bound and lives in :mod:`pyro_pots.model.scoring`."""

from pyro_pots.model.scoring import (
    MIN_WEIGHT,
    PotScores,
    mixture_loss,
    mixture_weights,
    pot_scores,
    weights_from_mean,
)

__all__ = [
    "MIN_WEIGHT",
    "PotScores",
    "mixture_loss",
    "mixture_weights",
    "pot_scores",
    "weights_from_mean",
]
