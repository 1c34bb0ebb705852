"""
The kick: the few epochs after a split that teach the encoder the proposed partition.

A kick that only biases routing is undone as soon as it ends (``shared/docs/FINDINGS.md``),
so the kick adds one term outside the ELBO: a cross-entropy that pushes the raw logits of
each of the parent's rows toward the side of the split it was proposed for. While it
lasts, the :func:`~pyro_pots.handlers.kick` handler also sets the routing temperature,
the new pot's logit bias and lambda's factor. After it the routing is the model's own, and
:meth:`Kick.agreement` says how far the rows drifted from the proposal.
"""

import contextlib
import math
from typing import Any, ContextManager, Dict, Optional

import torch
from sklearn.metrics import adjusted_rand_score
from torch.nn.functional import cross_entropy

from pyro_pots import handlers
from pyro_pots.model.pots_vae import PotsVAE

#: target of a row the kick does not teach
NO_TARGET = -1


class Kick:
    """
    One split's kick: which rows go to which side, and how the handlers change while it
    lasts. How long it lasts is the stage manager's schedule
    (:attr:`~pyro_pots.curriculum.StageManager.kick_remaining`).

    :param int num_rows: training rows (the length of :attr:`targets`).
    :param float weight: weight of the cross-entropy, nats per kicked row.
    :param float temperature: routing temperature while kicking.
    :param float bias: added to the new pot's routing logit while kicking.
    :param float lam_factor: multiplier of lambda while kicking.
    """

    def __init__(
        self,
        num_rows: int,
        weight: float,
        temperature: float,
        bias: float = 0.0,
        lam_factor: float = 1.0,
    ) -> None:
        self.weight = weight
        self.temperature = temperature
        self.bias = bias
        self.lam_factor = lam_factor
        # -- state (all of it in state_dict) --
        self.targets = torch.full((num_rows,), NO_TARGET, dtype=torch.long)
        self.pot: Optional[int] = None

    def start(self, pot: int, targets: torch.Tensor) -> None:
        """Kick the new ``pot``; ``targets`` holds, per training
        row, the pot its logits are taught to pick (``NO_TARGET`` for rows outside the
        parent)."""
        if targets.shape != self.targets.shape:
            raise ValueError(f"targets must have shape {tuple(self.targets.shape)}")
        self.pot = pot
        self.targets = targets.to(dtype=torch.long, device="cpu").clone()

    def clear(self) -> None:
        """Forget the split (it was undone)."""
        self.targets.fill_(NO_TARGET)

    def handler(self, kicking: bool) -> ContextManager:
        """The handler that sets temperature, bias and lambda's factor while ``kicking``
        (a no-op otherwise)."""
        if not kicking:
            return contextlib.nullcontext()
        return handlers.kick(
            pot=self.pot, temperature=self.temperature, bias=self.bias, lam_factor=self.lam_factor
        )

    def taught(self, rows: torch.Tensor) -> torch.Tensor:
        """Which of the training rows ``rows`` the kick teaches (they have a target)."""
        return self.targets[rows.cpu()] != NO_TARGET

    def loss(
        self,
        vae: PotsVAE,
        xb: torch.Tensor,
        rows: torch.Tensor,
        active: torch.Tensor,
        logits: Optional[torch.Tensor] = None,
    ) -> torch.Tensor:
        """``weight`` times the cross-entropy (summed over rows) between the raw logits over
        the open pots of the batch ``xb`` (training rows ``rows``) and their targets; rows
        without a target add nothing. ``logits``: the batch's
        :meth:`PotsVAE.mean_logits`, when the caller has them (None: computed here)."""
        target = self.targets[rows].to(xb.device)
        has = self.taught(rows).to(xb.device)
        if not has.any():
            return self.weight * xb.new_zeros(())
        y = vae.mean_logits(xb[has]) if logits is None else logits[has]
        y = y.masked_fill(~active, -math.inf)
        return self.weight * cross_entropy(y, target[has], reduction="sum")

    def agreement(self, pots_now: torch.Tensor) -> Optional[float]:
        """The adjusted Rand index between the targets and the pots the same rows are in now
        (``pots_now``, one pot id per training row); None when no row has a target. A split
        across a real gap keeps its boundary once the routing is the model's own; a cut
        through one mode drifts."""
        has = self.targets != NO_TARGET
        if not has.any():
            return None
        now = pots_now.cpu()[has].numpy()
        return float(adjusted_rand_score(self.targets[has].numpy(), now))

    def state_dict(self) -> Dict[str, Any]:
        return {"targets": self.targets.clone(), "pot": self.pot}

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        """Restore :meth:`state_dict`'s output as saved (whether its rows are the data's is
        the checkpoint's check: a fitted run is also loaded without its data)."""
        self.targets = state["targets"].clone()
        self.pot = state["pot"]
