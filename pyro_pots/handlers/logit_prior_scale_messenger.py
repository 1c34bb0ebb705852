"""The ``logit_prior_scale`` handler: lambda, the weight of the logit prior's term."""

from typing import Union

import torch
from pyro.poutine.messenger import Messenger
from pyro.poutine.runtime import Message

from pyro_pots.handlers.util import check_factor, scale_site
from pyro_pots.sites import LOGITS


class LogitPriorScaleMessenger(Messenger):
    r"""
    Scale the ``logits`` site by :math:`\lambda` (the weight of the logit prior).

    Applied to model and guide, the site contributes
    :math:`\lambda\,[\log p(y) - \log q(y\mid x)]`; with the Delta logits guide that is the
    seed's penalty :math:`-\lambda \log p_\text{mix}(y(x))` on the loss. :math:`\lambda = 0`
    switches the term off (it masks the site: ``poutine.scale`` refuses 0), which is how
    an annealing schedule starts.

    Under :class:`~pyro.infer.JitTrace_ELBO` the value is a compile-time constant: build a
    new ELBO when it changes.

    :param lam: a finite weight >= 0 (float or 0-dim tensor).
    """

    def __init__(self, lam: Union[float, torch.Tensor]) -> None:
        check_factor("lam", lam)
        super().__init__()
        self.lam = lam

    def _process_message(self, msg: Message) -> None:
        if msg["type"] == "sample" and msg["name"] == LOGITS:
            scale_site(msg, self.lam)
