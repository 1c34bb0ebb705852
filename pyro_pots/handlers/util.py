"""Helpers shared by the pyro-pots messengers."""

import warnings
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

    ``per_pot`` has the pot axis last and, before it, the batch dims of a site outside the
    channels plate: where those reach the channels plate's slot it holds a size-1 dim
    (batch dims of vectorized particles or of a vectorized ``Predictive`` sit further
    left), and the pot axis takes its place. So ``(N, K)`` becomes ``(K, N)``,
    ``(P, 1, N, K)`` becomes ``(P, K, N)``, and a plain per-pot vector ``(K,)`` becomes
    ``(K, 1)``.
    """
    if per_pot.dim() - 1 >= -frame.dim:  # the batch dims reach the channels slot
        slot = frame.dim - 1  # counted from the right of per_pot, whose last dim is the pots
        if per_pot.shape[slot] != 1:
            raise ValueError(
                f"a per-pot tensor of shape {tuple(per_pot.shape)} has size "
                f"{per_pot.shape[slot]} at the {frame.name!r} plate's dim {frame.dim}; "
                "expected 1 there (it comes from a site outside that plate)"
            )
        per_pot = per_pot.squeeze(slot)
    inner = -1 - frame.dim  # plate dims nested inside the channels plate
    missing = inner - (per_pot.dim() - 1)
    if missing > 0:
        per_pot = per_pot.reshape((1,) * missing + per_pot.shape)
    return per_pot.movedim(-1, frame.dim)


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


def check_factor(name: str, value: Union[float, torch.Tensor], positive: bool = False) -> None:
    """Raise a ValueError unless ``value`` is a finite number >= 0 (> 0 with ``positive``).

    While :func:`torch.jit.trace` runs, a tensor's value is only checked for its size: the
    value seen there stands for every later input, and reading it would warn.
    """
    bound = "> 0" if positive else ">= 0"
    error = ValueError(f"{name} must be a finite number {bound}, got {value!r}")
    tensor = torch.as_tensor(value)
    if tensor.numel() != 1:
        raise error
    if isinstance(value, torch.Tensor) and torch._C._get_tracing_state():
        return
    if not bool(torch.isfinite(tensor)) or bool(tensor <= 0 if positive else tensor < 0):
        raise error


class FrozenValueWarning(torch.jit.TracerWarning):
    """A handler value is a constant of a graph that :func:`torch.jit.trace` is recording
    (e.g. under :class:`~pyro.infer.JitTrace_ELBO`): the compiled graph keeps it however the
    handler's value changes later. ``JitTrace_ELBO(ignore_jit_warnings=True)`` hides it, as
    it hides every :class:`~torch.jit.TracerWarning`."""


def warn_if_frozen(handler: str, name: str, value: Union[float, torch.Tensor]) -> None:
    """Warn with :class:`FrozenValueWarning` if a trace is being recorded and ``value`` is
    not computed from the traced inputs (a Python number, or a tensor captured from outside
    the traced function), so that a later value would be silently ignored."""
    if not torch._C._get_tracing_state():
        return
    if isinstance(value, torch.Tensor):
        try:
            traced = torch._C._get_value_trace(value)
        except RuntimeError:  # not known to the tracer: assume it is an input
            return
        if traced.node().kind() != "prim::Constant":
            return
    shown = f"{name}={value!r}" if isinstance(value, Number) else f"the tensor {name}"
    warnings.warn(
        f"{handler}: {shown} is a constant of the graph being traced, and the "
        "compiled function will keep it whatever the handler's value is later. To change it "
        f"between calls, pass {name} as a tensor argument of the model and guide and enter "
        f"the handler inside them (see {handler}'s docstring); to keep it fixed, ignore this.",
        FrozenValueWarning,
        stacklevel=2,
    )
