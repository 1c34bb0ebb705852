"""The guard that keeps a fit that cannot train from reporting success (non-finite losses),
and the count of optimizer steps per epoch it is sized by."""

import math
from typing import Any, Dict, List

from pyro_pots.config import Config
from pyro_pots.errors import TrainingFailed
from pyro_pots.training import distributed


def steps_per_epoch(cfg: Config, rows: int) -> int:
    """The optimizer steps of one epoch over ``rows`` training rows (all ranks together)."""
    return math.ceil(rows / (cfg.train.batch_size * distributed.world_size()))


class NonFiniteGuard:
    """
    A fit that cannot train must not report success. The trainer counts non-finite steps
    across epochs, rolls back, and raises :class:`TrainingFailed` when rollbacks find
    nothing good; an epoch in which no step was finite reports no loss (None). This guard
    makes sure of the rest: a loss reported as 0.0 by a trainer that divides by
    ``max(rows, 1)`` becomes NaN (written as null), and a run in which no epoch computed
    a loss (a budget shorter than the trainer's patience) ends in :class:`TrainingFailed`
    rather than in a summary.
    """

    def __init__(self, patience: int, steps_per_epoch: int) -> None:
        self.patience = patience
        self.steps_per_epoch = steps_per_epoch

    def observe(self, row: Dict[str, Any]) -> None:
        """Read one epoch's history row (and mend its loss if none was computed)."""
        bad = int(row.get("bad_steps") or 0)
        loss = row.get("train_loss")
        if loss is not None and bad > 0 and (loss == 0.0 or not math.isfinite(loss)):
            row["train_loss"] = float("nan")

    def check_trained(self, history: List[Dict[str, Any]]) -> None:
        """At the end: a run in which no epoch computed a loss did not train."""
        if history and not any(finite(row.get("train_loss")) for row in history):
            raise TrainingFailed(
                f"training cannot proceed: no step of the {len(history)} epochs had a "
                "finite loss and gradient (for likelihood=normal, standardise features of "
                "very large magnitude)"
            )


def finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value)
