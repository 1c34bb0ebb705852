"""
Routing refinement: teach the encoder's routing the pot whose own ELBO explains a row best.

The routing site is a relaxed one-hot of ``softmax(y)``. Once the logit prior has made it
near one-hot, the reconstruction's gradient on the logits ``y`` vanishes with the
softmax's, while the prior's pull toward the nearest component ``M e_k`` does not. So after
a kick nothing in the ELBO holds a row in the pot whose decoder is better for it: on
``synthetic:k=8`` seed 2 the kick parted the two decoders (each 0.5-0.9 nats per row better
on its own cluster), and within eight epochs of its end the encoder, pulled by the prior
through its shared weights, routed both clusters to the new pot, a relabelling, and the
split was undone (``docs/benchmarks.md``).

The refinement is one more term of the SVI loss, as the kick's and the Potts prior's are:
``weight`` times the cross-entropy between the routing over the open pots and, for each
row, the open pot whose ELBO (:func:`~pyro_pots.model.scoring.pot_scores`, one draw, no
gradient) is highest, the pot the discrete mixture's posterior
``p(c | x) ∝ pi_c exp(ELBO_c(x))`` picks when the pots are equally used. Its gradient does
not vanish where the routing is one-hot on the wrong pot. The model and guide are
unchanged.

Scoring every open pot's decoder on every batch costs about as much as the ELBO's own
forward pass. With ``every`` > 1 the targets are a table over the training rows, scored in
one pass at the start of an epoch and kept for ``every`` epochs; the table is scored afresh
as soon as the open pots change or a kick starts or ends, when the decoders' choice can
move at once.
"""

import math
from typing import Any, Dict, Optional, Tuple

import torch
from torch.nn.functional import cross_entropy

from pyro_pots.model.pots_vae import PotsVAE
from pyro_pots.model.scoring import pot_scores

__all__ = ["RoutingRefinement"]


class RoutingRefinement:
    """
    The routing refinement's loss term (module docstring).

    :param float weight: nats per row of the cross-entropy, > 0 (a trainer without the
        term holds None).
    :param int seed: seeds the latent draws of the pots' ELBOs (and the rows drawn).
    :param int rows: rows of each batch scored, a uniform draw whose loss is scaled by
        batch / rows (an unbiased estimate of the whole batch's, at rows / batch of the
        cost); None: every row.
    :param int every: epochs a table of the training rows' targets is kept
        (:meth:`refresh`); 1: each batch's targets are scored at its step.
    """

    def __init__(
        self, weight: float, seed: int, rows: Optional[int] = None, every: int = 1
    ) -> None:
        if not weight > 0:
            raise ValueError(f"weight must be > 0, got {weight}")
        if rows is not None and rows < 1:
            raise ValueError(f"rows must be >= 1 or None, got {rows}")
        if every < 1:
            raise ValueError(f"every must be >= 1, got {every}")
        self.weight = weight
        self.seed = seed
        self.rows = rows
        self.every = every
        self._generator = torch.Generator()
        # with every > 1: each training row's target, the epoch it was scored at and what
        # it was scored under (the open pots, whether a kick ran)
        self.table: Optional[torch.Tensor] = None
        self.scored_at = 0
        self.scored_under: Optional[Tuple[Tuple[bool, ...], bool]] = None

    def start_epoch(self, epoch: int) -> None:
        """Reseed the latent draws from the epoch number, so that a resumed run draws what
        one that never stopped would."""
        self._generator.manual_seed(self.seed * 100_019 + epoch)

    def refresh(
        self,
        vae: PotsVAE,
        train_x: torch.Tensor,
        active: torch.Tensor,
        epoch: int,
        kicking: bool,
    ) -> bool:
        """With ``every`` > 1, score the table of ``train_x``'s targets when it is due: no
        table yet, ``every`` epochs since it was scored, or other open pots or another kick
        state than it was scored under. Call after :meth:`start_epoch`; returns whether it
        scored."""
        if self.every == 1:
            self.table = None  # e.g. one loaded with a state saved under every > 1
            return False
        under = (tuple(active.tolist()), kicking)
        due = self.table is None or epoch - self.scored_at >= self.every
        if not due and under == self.scored_under:
            return False
        self.table = self.targets(vae, train_x, active).cpu()
        self.scored_at, self.scored_under = epoch, under
        return True

    def targets(self, vae: PotsVAE, xb: torch.Tensor, active: torch.Tensor) -> torch.Tensor:
        """Each row's open pot with the highest ELBO, as a pot id ``(B,)``."""
        return pot_scores(vae, xb, active, generator=self._generator).best_pots()

    def loss(
        self,
        vae: PotsVAE,
        xb: torch.Tensor,
        active: torch.Tensor,
        taught: Optional[torch.Tensor] = None,
        rows: Optional[torch.Tensor] = None,
        logits: Optional[torch.Tensor] = None,
    ) -> torch.Tensor:
        """``weight`` times the cross-entropy (summed over the batch ``xb``) between the
        raw logits over the open pots and :meth:`targets` (the :meth:`refresh` table's at
        the batch's training rows ``rows``, when there is one); rows marked in ``taught``
        (the rows a kick teaches its own targets) add nothing. With :attr:`rows`,
        estimated from that many of the other rows. ``logits``: the batch's
        :meth:`PotsVAE.mean_logits`, when the caller has them (None: computed here)."""
        if self.table is not None and rows is None:
            raise ValueError("with a table of targets (every > 1) the batch's rows are needed")
        index = torch.arange(len(xb)) if rows is None else rows.cpu()
        at = torch.arange(len(xb))  # the kept rows' places in the batch
        if taught is not None:
            keep = ~taught.cpu()
            xb, index, at = xb[keep.to(xb.device)], index[keep], at[keep]
        if len(xb) == 0:
            return self.weight * xb.new_zeros(())
        scale = 1.0
        if self.rows is not None and len(xb) > self.rows:
            drawn = torch.randperm(len(xb), generator=self._generator)[: self.rows]
            scale = len(xb) / self.rows
            xb, index, at = xb[drawn.to(xb.device)], index[drawn], at[drawn]
        if self.table is None:
            target = self.targets(vae, xb, active).to(xb.device)
        else:
            target = self.table[index].to(xb.device)
            if not bool(active[target].all()):
                raise ValueError(
                    "the table of targets names a closed pot: refresh() it for the open pots"
                )
        y = vae.mean_logits(xb) if logits is None else logits[at.to(logits.device)]
        y = y.masked_fill(~active, -math.inf)
        return self.weight * scale * cross_entropy(y, target, reduction="sum")

    def state_dict(self) -> Dict[str, Any]:
        """The table of targets and when and under what it was scored (a resumed run
        keeps them, as one that never stopped would)."""
        under = None if self.scored_under is None else list(self.scored_under[0])
        kicking = None if self.scored_under is None else self.scored_under[1]
        return {"table": self.table, "scored_at": self.scored_at, "open": under, "kicking": kicking}

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        """Restore :meth:`state_dict`'s output."""
        self.table = state["table"]
        self.scored_at = state["scored_at"]
        open_ = state["open"]
        self.scored_under = None if open_ is None else (tuple(open_), state["kicking"])
