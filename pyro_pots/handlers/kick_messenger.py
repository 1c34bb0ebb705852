"""The ``kick`` handler: routing temperature, bias and lambda while a new pot is explored."""

from pyro.poutine.messenger import Messenger
from pyro.poutine.runtime import Message

from pyro_pots.handlers.util import check_factor, scale_site
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

    :param int pot: id of the pot to favour.
    :param float temperature: routing temperature during the kick.
    :param float bias: added to the routing logit of ``pot``.
    :param float lam_factor: multiplier of the logit prior during the kick.
    """

    def __init__(
        self, pot: int, temperature: float = 1.0, bias: float = 2.0, lam_factor: float = 0.1
    ) -> None:
        check_factor("temperature", temperature)
        check_factor("lam_factor", lam_factor)
        if temperature == 0:
            raise ValueError("temperature must be > 0")
        super().__init__()
        self.pot = int(pot)
        self.temperature = temperature
        self.bias = bias
        self.lam_factor = lam_factor

    def _process_message(self, msg: Message) -> None:
        if msg["type"] != "sample":
            return
        if msg["name"] == ROUTE and hasattr(msg["fn"], "kick"):
            msg["fn"] = msg["fn"].kick(self.pot, self.bias, self.temperature)
        elif msg["name"] == LOGITS:
            scale_site(msg, self.lam_factor)
