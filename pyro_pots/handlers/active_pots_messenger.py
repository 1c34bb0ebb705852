"""The ``active_pots`` handler: masks closed pots out of every site in the ``channels`` plate."""

import torch
from pyro.poutine.messenger import Messenger
from pyro.poutine.runtime import Message

from pyro_pots.handlers.util import along_channels, and_mask, channels_frame


class ActivePotsMessenger(Messenger):
    """
    Restrict a model or guide to the open pots.

    - Every sample site inside the ``channels`` plate is masked to the open pots, so a
      closed pot's latent contributes nothing to the ELBO and gets no gradient.
    - Every site whose distribution implements ``mask_pots(active)`` (the logit mixture,
      the routing and the categorical-KL potential) is restricted: the mixture sums over
      open pots only and routing puts weight exactly 0 on closed pots.

    Enter it *outside* the plates, so that a site's plate frames are known when it runs.
    Under :class:`~pyro.infer.JitTrace_ELBO` the mask must come from a model argument (as
    :class:`~pyro_pots.model.PotsVAE` does), not from Python state captured at trace time.

    :param torch.Tensor active: boolean mask of shape ``(K,)``, True for open pots.
    """

    def __init__(self, active: torch.Tensor) -> None:
        if not isinstance(active, torch.Tensor) or active.dtype != torch.bool or active.dim() != 1:
            raise ValueError("active_pots expects a 1-D boolean tensor of shape (K,)")
        super().__init__()
        self.active = active

    def _process_message(self, msg: Message) -> None:
        if msg["type"] != "sample":
            return
        if hasattr(msg["fn"], "mask_pots"):
            msg["fn"] = msg["fn"].mask_pots(self.active)
        frame = channels_frame(msg)
        if frame is not None:
            and_mask(msg, along_channels(self.active, frame))
