"""The record of one decision of the :class:`~pyro_pots.curriculum.StageManager`: what the
trainer is to do, and why (its log, ``stages.json``, holds one per decision other than
``continue``)."""

from dataclasses import dataclass, field
from typing import Any, Dict, Optional


@dataclass
class Decision:
    """One decision of the stage manager, with the reason and the numbers behind it.

    ``action`` is ``continue`` (train on), ``unlock`` (open ``pot`` split from ``parent``
    by its ``attempt``-th split proposal, and kick it), ``accept`` and ``prune`` (logged
    only: the split held; a pot that lost its data to later splits was closed; ``grow``:
    new data arrived), ``reject`` (the split of
    ``pot`` is undone; the manager has stopped) or ``stop``. When ``restore`` is true the
    trainer first restores its state from before the last unlock (a rejected split, logged
    as its own ``reject`` entry, may be followed at once by the ``unlock`` of another
    proposal or another parent).
    """

    action: str
    epoch: int
    stage: int
    pot: Optional[int] = None
    parent: Optional[int] = None
    restore: bool = False
    attempt: int = 0
    reason: str = ""
    numbers: Dict[str, Any] = field(default_factory=dict)
