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
"""

import math
from typing import Optional

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
    """

    def __init__(self, weight: float, seed: int, rows: Optional[int] = None) -> None:
        if not weight > 0:
            raise ValueError(f"weight must be > 0, got {weight}")
        if rows is not None and rows < 1:
            raise ValueError(f"rows must be >= 1 or None, got {rows}")
        self.weight = weight
        self.seed = seed
        self.rows = rows
        self._generator = torch.Generator()

    def start_epoch(self, epoch: int) -> None:
        """Reseed the latent draws from the epoch number, so that a resumed run draws what
        one that never stopped would (no state to checkpoint)."""
        self._generator.manual_seed(self.seed * 100_019 + epoch)

    def targets(self, vae: PotsVAE, xb: torch.Tensor, active: torch.Tensor) -> torch.Tensor:
        """Each row's open pot with the highest ELBO, as a pot id ``(B,)``."""
        return pot_scores(vae, xb, active, generator=self._generator).best_pots()

    def loss(
        self,
        vae: PotsVAE,
        xb: torch.Tensor,
        active: torch.Tensor,
        taught: Optional[torch.Tensor] = None,
    ) -> torch.Tensor:
        """``weight`` times the cross-entropy (summed over the batch ``xb``) between the
        raw logits over the open pots and :meth:`targets`; rows marked in ``taught`` (the
        rows a kick teaches its own targets) add nothing. With :attr:`rows`, estimated
        from that many of the other rows."""
        if taught is not None:
            xb = xb[~taught.to(xb.device)]
        if len(xb) == 0:
            return self.weight * xb.new_zeros(())
        scale = 1.0
        if self.rows is not None and len(xb) > self.rows:
            drawn = torch.randperm(len(xb), generator=self._generator)[: self.rows]
            scale = len(xb) / self.rows
            xb = xb[drawn.to(xb.device)]
        target = self.targets(vae, xb, active).to(xb.device)
        y = vae.mean_logits(xb).masked_fill(~active, -math.inf)
        return self.weight * scale * cross_entropy(y, target, reduction="sum")
