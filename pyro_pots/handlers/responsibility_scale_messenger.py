"""The ``responsibility_scale`` handler: each pot's latent term weighted by its responsibility."""

from typing import Optional

import torch
from pyro.poutine.messenger import Messenger
from pyro.poutine.runtime import Message

from pyro_pots.distributions.util import masked_softmax
from pyro_pots.handlers.util import along_channels, channels_frame
from pyro_pots.sites import LOGITS


class ResponsibilityScaleMessenger(Messenger):
    r"""
    Weight each pot's per-datapoint terms by that datapoint's responsibility.

    It reads the value of the ``logits`` site as it passes, forms
    :math:`r(x) = \mathrm{softmax}_A(y(x))`, and scales every later sample site inside the
    ``channels`` plate by :math:`r_k(x)`. Applied to both model and guide, the latent term
    of pot :math:`k` becomes :math:`r_k(x)\,[\log p(z_k) - \log q(z_k \mid x)]`, i.e. the
    KL of pot :math:`k` is paid in proportion to the data it explains. The weight is not
    detached: the trade-off between pots' KLs reaches the logits, as in the mixture ELBO.

    :param torch.Tensor active: boolean mask of shape ``(K,)`` of open pots.
    """

    def __init__(self, active: torch.Tensor) -> None:
        super().__init__()
        self.active = active
        self._resp: Optional[torch.Tensor] = None

    def __enter__(self):
        self._resp = None
        return super().__enter__()

    def _process_message(self, msg: Message) -> None:
        if msg["type"] != "sample" or self._resp is None:
            return
        frame = channels_frame(msg)
        if frame is not None:
            msg["scale"] = along_channels(self._resp, frame) * msg["scale"]

    def _postprocess_message(self, msg: Message) -> None:
        if msg["type"] == "sample" and msg["name"] == LOGITS:
            self._resp = masked_softmax(msg["value"], self.active)
