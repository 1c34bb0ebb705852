"""The ``logit_prior_scale`` handler: lambda, the weight of the logit prior's term."""

from typing import Union

import torch
from pyro.poutine.messenger import Messenger
from pyro.poutine.runtime import Message

from pyro_pots.handlers.util import check_factor, scale_site, warn_if_frozen
from pyro_pots.sites import LOGITS


class LogitPriorScaleMessenger(Messenger):
    r"""
    Scale the ``logits`` site by :math:`\lambda` (the weight of the logit prior).

    Applied to model and guide, the site contributes
    :math:`\lambda\,[\log p(y) - \log q(y\mid x)]`; with the Delta logits guide that is the
    seed's penalty :math:`-\lambda \log p_\text{mix}(y(x))` on the loss. :math:`\lambda = 0`
    switches the term off (it masks the site: ``poutine.scale`` refuses 0), which is how
    an annealing schedule starts.

    Under :class:`~pyro.infer.JitTrace_ELBO` a value that is not computed from the
    model's arguments is a constant of the compiled ELBO (a
    :class:`~pyro_pots.handlers.FrozenValueWarning` says so). For one compiled ELBO that
    follows :math:`\lambda`, pass it as a tensor argument and enter the handler inside
    model and guide, as Pyro passes every changing input of a traced model::

        def at_lam(fn):
            def fn_at_lam(x, active, lam):
                with logit_prior_scale(lam=lam):
                    return fn(x, active)
            return fn_at_lam

        svi = SVI(at_lam(vae.model), at_lam(vae.guide), optim, JitTrace_ELBO())
        svi.step(x, active, torch.tensor(lam))

    :param lam: a finite weight >= 0 (float or 0-dim tensor).
    """

    def __init__(self, lam: Union[float, torch.Tensor]) -> None:
        check_factor("lam", lam)
        super().__init__()
        self.lam = lam

    def _process_message(self, msg: Message) -> None:
        if msg["type"] == "sample" and msg["name"] == LOGITS:
            warn_if_frozen("logit_prior_scale", "lam", self.lam)
            scale_site(msg, self.lam)
