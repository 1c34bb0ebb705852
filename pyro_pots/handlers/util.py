"""Helpers shared by the pyro-pots messengers."""

from numbers import Number
from typing import Optional, Union

import torch
from pyro.poutine.indep_messenger import CondIndepStackFrame
from pyro.poutine.runtime import Message

from pyro_pots.sites import CHANNELS_PLATE


def channels_frame(msg: Message) -> Optional[CondIndepStackFrame]:
    """The ``channels`` plate frame of a site, or None if the site is not per-pot."""
    return next((f for f in msg["cond_indep_stack"] if f.name == CHANNELS_PLATE), None)


def along_channels(per_pot: torch.Tensor, frame: CondIndepStackFrame) -> torch.Tensor:
    """
    Lay a per-pot tensor along the channels plate, whose dim is ``frame.dim``.

    ``(..., N, K)`` (pot axis last, rows inside the channels plate) becomes
    ``(..., K, N)``; a plain per-pot vector ``(K,)`` becomes ``(K, 1)``.
    """
    inner = -1 - frame.dim  # plate dims nested inside the channels plate
    if per_pot.dim() - 1 >= inner:
        return per_pot.movedim(-1, frame.dim)
    return per_pot.reshape(per_pot.shape + (1,) * inner)


def and_mask(msg: Message, mask) -> None:
    """Combine ``mask`` with the site's mask, as :class:`pyro.poutine.mask` does."""
    msg["mask"] = mask if msg["mask"] is None else msg["mask"] & mask


def scale_site(msg: Message, factor: Union[float, torch.Tensor]) -> None:
    """Multiply a site's log-density by ``factor >= 0``; a factor of 0 masks the site.

    ``poutine.scale`` refuses 0, and ``0 * log_prob`` is NaN wherever the log-density is
    infinite, so a zero factor switches the term off through the mask instead.
    """
    if isinstance(factor, Number):
        if factor == 0:
            and_mask(msg, False)
        elif factor != 1:
            msg["scale"] = factor * msg["scale"]
        return
    msg["scale"] = factor * msg["scale"]
    and_mask(msg, factor > 0)


def check_factor(name: str, value: Union[float, torch.Tensor]) -> None:
    """Raise a ValueError unless ``value`` is a finite number >= 0."""
    tensor = torch.as_tensor(value)
    if tensor.numel() != 1 or not bool(torch.isfinite(tensor)) or bool(tensor < 0):
        raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
