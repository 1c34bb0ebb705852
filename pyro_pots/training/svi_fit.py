"""Plain SVI on a fixed set of open pots, with lambda annealed from 0 upward."""

from dataclasses import dataclass
from typing import Callable, Iterable, List, Optional

import pyro
import torch
from pyro.infer import SVI, Trace_ELBO
from pyro.optim import Adam
from torch.utils.data import DataLoader, TensorDataset

from pyro_pots import handlers
from pyro_pots.model import PotsVAE


@dataclass
class EpochRecord:
    """What one epoch of :func:`fit_svi` measured (loss in nats per row)."""

    epoch: int
    loss: float
    lam: float
    mean_max_resp: float
    usage: List[float]


def lambda_schedule(epoch: int, warmup_epochs: int, lam_max: float = 1.0) -> float:
    """Linear annealing of the logit-prior weight: 0 at epoch 0, ``lam_max`` after warmup."""
    if warmup_epochs <= 0:
        return lam_max
    return lam_max * min(1.0, epoch / warmup_epochs)


def fit_svi(
    vae: PotsVAE,
    X: torch.Tensor,
    active: torch.Tensor,
    num_epochs: int = 20,
    batch_size: int = 128,
    lr: float = 1e-3,
    warmup_epochs: int = 5,
    seed: int = 0,
    on_epoch: Optional[Callable[[EpochRecord], None]] = None,
    batches: Optional[Callable[[int], Iterable]] = None,
) -> List[EpochRecord]:
    """
    Fit ``vae`` by SVI with ``Trace_ELBO`` and Adam, the open set held at ``active``.

    Each epoch runs under :func:`~pyro_pots.handlers.logit_prior_scale` with lambda from
    :func:`lambda_schedule`, then measures the responsibilities on all of ``X``.

    :param PotsVAE vae: the model (its parameters are trained in place).
    :param torch.Tensor X: data ``(N, D)``.
    :param torch.Tensor active: boolean ``(K,)`` open pots.
    :param on_epoch: called with each :class:`EpochRecord` (progress bars, logging).
    :returns: one :class:`EpochRecord` per epoch.
    """
    pyro.set_rng_seed(seed)
    vae.active.copy_(active)
    loader = DataLoader(
        TensorDataset(X),
        batch_size=batch_size,
        shuffle=True,
        generator=torch.Generator().manual_seed(seed),
    )
    svi = SVI(vae.model, vae.guide, Adam({"lr": lr}), Trace_ELBO())
    history = []
    for epoch in range(num_epochs):
        lam = lambda_schedule(epoch, warmup_epochs)
        total = 0.0
        with handlers.logit_prior_scale(lam=lam):
            for (xb,) in loader:
                total += svi.step(xb, active)
        resp = vae.responsibilities(X, active)
        record = EpochRecord(
            epoch=epoch,
            loss=total / len(X),
            lam=lam,
            mean_max_resp=resp.max(-1).values.mean().item(),
            usage=resp.argmax(-1).bincount(minlength=vae.num_pots).div(len(X)).tolist(),
        )
        history.append(record)
        if on_epoch is not None:
            on_epoch(record)
    return history
