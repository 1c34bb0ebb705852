"""
The trainer's parts that a config describes: the device, the optimizer, the stage manager,
the module form of a model or guide that Pyro's ``ELBO.__call__`` and
DistributedDataParallel take, and the one compiled ELBO of a ``train.jit`` fit.
"""

import contextlib
import math
from typing import Any, Callable, Dict, Optional, Tuple

import pyro.util
import torch
from pyro.infer import JitTrace_ELBO
from pyro.util import warn_if_nan

from pyro_pots import handlers
from pyro_pots.config import Config
from pyro_pots.curriculum import StageManager
from pyro_pots.curriculum.proposals import parse_proposals
from pyro_pots.errors import PotsInputError


def resolve_device(name: str) -> torch.device:
    """``auto`` is ``cuda`` when a GPU is present, else ``cpu``."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(name)
    if device.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if (device.index or 0) >= count:
            raise PotsInputError(
                f"config key 'train.device': {name} asked for, but this machine has "
                f"{count} CUDA device(s); use cpu or auto"
            )
    return device


def adam(params, lr: float) -> torch.optim.Adam:
    """The trainer's optimizer: Adam, fused into one kernel per step. Each pot is a row of
    stacked tensors, so Adam also updates the closed pots' zero-gradient rows; unfused,
    that made K_max = 64 cost 2.3 times K_max = 4 per step (docs/benchmarks.md)."""
    return torch.optim.Adam(params, lr=lr, fused=True)


def build_manager(cfg: Config, steps_per_epoch: int) -> StageManager:
    """The stage manager ``cfg`` describes; the kick's steps become whole epochs."""
    c = cfg.curriculum
    return StageManager(
        num_pots=cfg.model.num_pots,
        start_pots=c.start_pots,
        min_stage_epochs=c.min_stage_epochs,
        patience=c.patience,
        rel_tol=c.rel_tol,
        smoothing=c.smoothing,
        min_usage=c.min_usage,
        min_usage_apart=c.min_usage_apart,
        max_cut_ratio_apart=c.max_cut_ratio_apart,
        kick_epochs=math.ceil(c.kick_steps / steps_per_epoch),
        retry_kick_factor=c.retry_kick_factor,
        parent_rule=c.parent_rule,
        normality_critical=c.normality_critical,
        heldout_stop=c.heldout_stop,
        min_gain=c.min_gain,
        max_fades=c.max_fades,
        min_agreement=c.min_agreement,
        max_cut_ratio=c.max_cut_ratio,
        min_cut_contrast=c.min_cut_contrast,
        evidence_z=c.evidence_z,
        min_evidence_z=c.min_evidence_z,
        proposals=len(parse_proposals(c.split_proposals)),
        screen_cut_ratio=c.screen_cut_ratio,
        screen_first_proposals=c.screen_first_proposals,
    )


class ElboMethod(torch.nn.Module):
    """A module's method as a module of its own: Pyro's ``ELBO.__call__(model, guide)``
    takes the model and guide as modules, whose parameters (here the shared
    :class:`PotsVAE`'s, counted once) become the ELBO module's."""

    def __init__(self, owner: torch.nn.Module, name: str) -> None:
        super().__init__()
        self.owner, self.name = owner, name

    def forward(self, *args, **kwargs):
        return getattr(self.owner, self.name)(*args, **kwargs)


class Scheduled:
    """
    ``fn(x, active)`` (a model or guide) under the curriculum's handler values, taken as
    tensor arguments: ``fn_(x, active, lam, pot, temperature, bias, lam_factor)`` enters
    :func:`~pyro_pots.handlers.logit_prior_scale` and :func:`~pyro_pots.handlers.kick`
    inside the call, so that under :class:`~pyro.infer.JitTrace_ELBO` every value is an
    input of the compiled graph rather than a constant of it. The keyword ``kick=False``
    (a Python bool, so a key of the compiled cache) leaves the kick handler out.

    :attr:`traces` counts the calls made while :func:`torch.jit.trace` records a graph.
    """

    def __init__(self, fn: Callable) -> None:
        self.fn = fn
        self.traces = 0

    def __call__(self, x, active, lam, pot, temperature, bias, lam_factor, kick: bool = True):
        if torch._C._get_tracing_state():
            self.traces += 1
        kicked = (
            handlers.kick(pot=pot, temperature=temperature, bias=bias, lam_factor=lam_factor)
            if kick
            else contextlib.nullcontext()
        )
        with handlers.logit_prior_scale(lam=lam), kicked:
            return self.fn(x, active)


class ScheduledElbo:
    """
    One :class:`~pyro.infer.JitTrace_ELBO` for a whole curriculum fit (``train.jit``): the
    warm-up's lambda and the kick's pot, temperature, bias and lambda factor reach the
    compiled graph as tensor arguments (:class:`Scheduled`), so changing them never
    recompiles and never goes stale. :meth:`at` sets the values of the next steps;
    :meth:`differentiable_loss` has :class:`~pyro.infer.Trace_ELBO`'s signature, and the
    caller enters no handler around it.

    Not kicking is the kick handler at values that change nothing: bias 0, lambda factor
    1 and the routing's own ``temperature``, the ELBO without the handler. With
    ``straight_through`` routing the kick also changes the routing family (to plain
    Gumbel-softmax), a change of the graph's structure: there the kick handler is left
    out when not kicking, and the fit compiles twice (kicking and not), never more.

    :param model: ``model(x, active)``, held (the compiled ELBO is Pyro's, cached on the
        ids of one model and guide).
    :param guide: ``guide(x, active)``, held.
    :param float temperature: the model's routing temperature (the value when not kicking).
    :param bool straight_through: whether the model routes ``straight_through``.
    :param bool ignore_jit_warnings: passed to :class:`~pyro.infer.JitTrace_ELBO`.
    """

    def __init__(
        self,
        model: Callable,
        guide: Callable,
        temperature: float,
        straight_through: bool = False,
        ignore_jit_warnings: bool = True,
    ) -> None:
        self.model, self.guide = Scheduled(model), Scheduled(guide)
        self.elbo = JitTrace_ELBO(ignore_jit_warnings=ignore_jit_warnings)
        self.temperature = temperature
        self.straight_through = straight_through
        self._values: Tuple[torch.Tensor, ...] = ()
        self._options: Dict[str, Any] = {}
        self._graphs: set = set()  # the options a graph was compiled for (Pyro's key)

    def at(
        self,
        lam: float,
        kick: Optional[Dict[str, Any]] = None,
        dtype: torch.dtype = torch.float32,
        device: Optional[torch.device] = None,
    ) -> "ScheduledElbo":
        """Set lambda and the kick (a dict of ``pot``, ``temperature``, ``bias``,
        ``lam_factor``; None: not kicking) for the next calls; returns self."""
        off = {"pot": 0, "temperature": self.temperature, "bias": 0.0, "lam_factor": 1.0}
        values = off if kick is None else kick
        real = [lam, values["temperature"], values["bias"], values["lam_factor"]]
        lam_t, temperature, bias, lam_factor = (
            torch.tensor(float(v), dtype=dtype, device=device) for v in real
        )
        pot = torch.tensor(int(values["pot"]), dtype=torch.long, device=device)
        self._values = (lam_t, pot, temperature, bias, lam_factor)
        self._options = {"kick": False} if self.straight_through and kick is None else {}
        return self

    def differentiable_loss(self, model: Callable, guide: Callable, x, active) -> torch.Tensor:
        """The compiled ELBO's loss of ``model(x, active)`` and ``guide(x, active)`` (the
        ones this was built with) at the values of :meth:`at`, differentiable."""
        if model != self.model.fn or guide != self.guide.fn:
            raise ValueError("a ScheduledElbo serves the model and guide it was built with")
        if not self._values:
            raise RuntimeError("ScheduledElbo.at(lam, kick) sets the values before a loss")
        args = (self.model, self.guide, x, active, *self._values)
        options = tuple(sorted(self._options.items()))
        state = None if options in self._graphs else _rng_state()  # a compile to come
        compiled = self.compiled
        with executor(x.device):
            loss, surrogate = self.elbo.loss_and_surrogate_loss(*args, **self._options)
            self._graphs.add(options)
            if state is not None and self.compiled > compiled:
                # compiling ran the ELBO three times, drawing noise each time: draw again
                # from where this step started, so that the compile step draws as any other
                # step does and a resumed fit (which compiles again) goes on exactly as the
                # uninterrupted one
                _set_rng_state(state)
                loss, surrogate = self.elbo.loss_and_surrogate_loss(*args, **self._options)
        # the surrogate's gradient only, as Trace_ELBO.differentiable_loss: Pyro 1.9's
        # JitTrace_ELBO.differentiable_loss keeps the loss's own gradient too, doubling
        # the ELBO's against any term added to it (the kick's, the neighbours')
        loss = loss.detach()
        warn_if_nan(loss, "loss")
        return loss + (surrogate - surrogate.detach())

    def module(self, owner: torch.nn.Module) -> torch.nn.Module:
        """This ELBO's loss as a module over ``owner``'s parameters (the model's), the
        form DistributedDataParallel wraps: ``module(x, active)`` is
        :meth:`differentiable_loss` at the values of :meth:`at`."""
        return _ScheduledLoss(owner, self)

    @property
    def compiled(self) -> int:
        """How many graphs have been compiled (one per fit; two with straight-through)."""
        fn = getattr(self.elbo, "_loss_and_surrogate_loss", None)
        return 0 if fn is None else len(fn.compiled)


def executor(device: torch.device) -> contextlib.AbstractContextManager:
    """TorchScript's executor for the compiled ELBO on ``device``. On CPU the graph is
    interpreted: its forward runs without Pyro's Python (the point of compiling) and eager
    autograd records it, whereas the optimizing executor differentiates the graph itself,
    with a backward 1.4-1.6 times eager's at 64-d (docs/benchmarks.md). On CUDA the
    optimizing executor, which may fuse kernels (not measured against it)."""
    return torch.jit.optimized_execution(device.type != "cpu")


def _rng_state() -> Tuple[Dict[str, Any], Optional[list]]:
    """The random number generators' state: Pyro's (torch's CPU, Python's, NumPy's) and
    CUDA's when it is in use."""
    cuda = torch.cuda.get_rng_state_all() if torch.cuda.is_initialized() else None
    return pyro.util.get_rng_state(), cuda


def _set_rng_state(state: Tuple[Dict[str, Any], Optional[list]]) -> None:
    """Put the generators back to ``state`` (:func:`_rng_state`)."""
    pyro.util.set_rng_state(state[0])
    if state[1] is not None:
        torch.cuda.set_rng_state_all(state[1])


class _ScheduledLoss(torch.nn.Module):
    """:meth:`ScheduledElbo.module`."""

    def __init__(self, owner: torch.nn.Module, elbo: ScheduledElbo) -> None:
        super().__init__()
        self.owner = owner
        self.elbo = elbo

    def forward(self, x, active):
        return self.elbo.differentiable_loss(self.elbo.model.fn, self.elbo.guide.fn, x, active)
