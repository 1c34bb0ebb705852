"""
Effect handlers of pyro-pots, in the style of :mod:`pyro.poutine`: each is a
:class:`~pyro.poutine.messenger.Messenger` usable as a ``with`` block or as a wrapper
``handler(fn, **kwargs)``.

- :func:`active_pots`: mask closed pots out of every per-pot site and restrict routing and
  the logit mixture to the open pots.
- :func:`responsibility_scale`: weight each pot's latent terms by the responsibilities.
- :func:`logit_prior_scale`: the lambda of the logit prior (0 switches it off).
- :func:`kick`: exploration after a pot is opened.

Handler values may be tensors. Under :class:`~pyro.infer.JitTrace_ELBO` a value follows
the compiled ELBO only if it is computed from the model's arguments: pass it as a tensor
argument and enter the handler inside model and guide (see
:class:`LogitPriorScaleMessenger`). A constant value warns with
:class:`FrozenValueWarning` while the ELBO is compiled.
"""

from pyro_pots.handlers.active_pots_messenger import ActivePotsMessenger
from pyro_pots.handlers.kick_messenger import KickMessenger
from pyro_pots.handlers.logit_prior_scale_messenger import LogitPriorScaleMessenger
from pyro_pots.handlers.responsibility_scale_messenger import ResponsibilityScaleMessenger
from pyro_pots.handlers.util import FrozenValueWarning


def _wrap(messenger_class, fn, kwargs):
    """``handler(fn, **kwargs)`` wraps ``fn``; ``handler(**kwargs)`` is a ``with`` block."""
    if fn is not None and not callable(fn):
        raise ValueError(f"{fn!r} is not callable; pass handler values as keyword arguments")
    messenger = messenger_class(**kwargs)
    return messenger(fn) if fn is not None else messenger


def active_pots(fn=None, **kwargs):
    """Convenient wrapper of :class:`ActivePotsMessenger` (keyword ``active``)."""
    return _wrap(ActivePotsMessenger, fn, kwargs)


def responsibility_scale(fn=None, **kwargs):
    """Convenient wrapper of :class:`ResponsibilityScaleMessenger` (keyword ``active``)."""
    return _wrap(ResponsibilityScaleMessenger, fn, kwargs)


def logit_prior_scale(fn=None, **kwargs):
    """Convenient wrapper of :class:`LogitPriorScaleMessenger` (keyword ``lam``)."""
    return _wrap(LogitPriorScaleMessenger, fn, kwargs)


def kick(fn=None, **kwargs):
    """Convenient wrapper of :class:`KickMessenger` (keywords ``pot``, ``temperature``,
    ``bias``, ``lam_factor``)."""
    return _wrap(KickMessenger, fn, kwargs)


__all__ = [
    "ActivePotsMessenger",
    "FrozenValueWarning",
    "KickMessenger",
    "LogitPriorScaleMessenger",
    "ResponsibilityScaleMessenger",
    "active_pots",
    "kick",
    "logit_prior_scale",
    "responsibility_scale",
]
