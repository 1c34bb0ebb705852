"""The ``kick`` handler: routing temperature, bias and lambda while a new pot is explored."""

from typing import Union

import torch
from pyro.poutine.messenger import Messenger
from pyro.poutine.runtime import Message

from pyro_pots.handlers.util import check_factor, scale_site, warn_if_frozen
from pyro_pots.sites import LOGITS, ROUTE


class KickMessenger(Messenger):
    """
    Exploration after a pot is opened, so the new pot receives data.

    At the ``route`` site: the routing temperature is set to ``temperature``,
    straight-through becomes plain Gumbel-softmax, and ``bias`` is added to the routing
    logit of ``pot``. At the ``logits`` site: the prior term is multiplied by
    ``lam_factor`` (relaxed; 0 switches it off). The raw logits, and so the logit prior,
    are not biased. Apply it to model and guide together (around the SVI step).

    A kick that only touches routing is undone once it ends (the encoder still sends the
    data to the parent); pair it with a term that trains the encoder, as the curriculum
    does.

    Every value may be a 0-dim tensor (``pot`` an integer one). Under
    :class:`~pyro.infer.JitTrace_ELBO`, values not computed from the model's arguments are
    constants of the compiled ELBO (a :class:`~pyro_pots.handlers.FrozenValueWarning` says
    so); to change them between calls, pass them as tensor arguments and enter the
    handler inside model and guide, as for
    :class:`~pyro_pots.handlers.LogitPriorScaleMessenger`.

    :param pot: id of the pot to favour.
    :type pot: int or torch.Tensor
    :param temperature: routing temperature during the kick (> 0).
    :param bias: added to the routing logit of ``pot``.
    :param lam_factor: multiplier of the logit prior during the kick (>= 0).
    """

    def __init__(
        self,
        pot: Union[int, torch.Tensor],
        temperature: Union[float, torch.Tensor] = 1.0,
        bias: Union[float, torch.Tensor] = 2.0,
        lam_factor: Union[float, torch.Tensor] = 0.1,
    ) -> None:
        check_factor("temperature", temperature, positive=True)
        check_factor("lam_factor", lam_factor)
        super().__init__()
        self.pot = pot if isinstance(pot, torch.Tensor) else int(pot)
        self.temperature = temperature
        self.bias = bias
        self.lam_factor = lam_factor

    def _process_message(self, msg: Message) -> None:
        if msg["type"] != "sample":
            return
        if msg["name"] == ROUTE and hasattr(msg["fn"], "kick"):
            for name in ("pot", "temperature", "bias"):
                warn_if_frozen("kick", name, getattr(self, name))
            msg["fn"] = msg["fn"].kick(self.pot, self.bias, self.temperature)
        elif msg["name"] == LOGITS:
            warn_if_frozen("kick", "lam_factor", self.lam_factor)
            scale_site(msg, self.lam_factor)
