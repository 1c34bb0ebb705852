"""
The trainer's parts that a config describes: the device, the optimizer, the stage manager,
and the module form of a model or guide that Pyro's ``ELBO.__call__`` and
DistributedDataParallel take.
"""

import math

import torch

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
        kick_epochs=math.ceil(c.kick_steps / steps_per_epoch),
        parent_rule=c.parent_rule,
        normality_critical=c.normality_critical,
        heldout_stop=c.heldout_stop,
        min_gain=c.min_gain,
        max_fades=c.max_fades,
        min_agreement=c.min_agreement,
        evidence_z=c.evidence_z,
        proposals=len(parse_proposals(c.split_proposals)),
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
