"""
The levers of growing a fitted run on new data (config section ``grow``, applied by
:func:`~pyro_pots.training.growing.grow_from`):

- :func:`freeze_pots`: the old pots' decoders and latent heads stay bit-identical (written
  back after every optimizer step, so Adam's momentum cannot move them either);
- :func:`set_training_rows`: the training rows replaced (new rows plus replayed old ones),
  with the kick and the neighbour graph rebuilt on them;
- :func:`keep_old_pots_whole`: the old pots are protected in the stage manager, never a
  split candidate;
- :func:`poorly_explained` and :func:`seed_pot`: the new rows whose misfit in their pot is
  above what the pot's own old rows reach (CURL's expansion buffer) seed a new pot, kicked
  and then judged like any split (a seed that fades is undone, and the curriculum goes on
  by its own rule).
"""

from dataclasses import dataclass
from typing import Any, Dict, List, Optional

import torch

from pyro_pots.curriculum.kick import NO_TARGET, Kick
from pyro_pots.curriculum.split import copy_pot, fresh_pot
from pyro_pots.model.pots_vae import PotsVAE
from pyro_pots.model.scoring import pot_scores

#: the seed of the misfit's noise (common random numbers for old and new rows).
MISFIT_SEED = 0


def _frozen_tensors(vae: PotsVAE) -> List[torch.Tensor]:
    """The per-pot tensors a frozen pot keeps: its latent head and both decoder layers."""
    layers = (vae.encoder.latent_heads, vae.decoders.hidden_layer, vae.decoders.output_layer)
    return [tensor for layer in layers for tensor in (layer.weight, layer.bias)]


class FrozenPots:
    """An optimizer step post-hook that writes the frozen pots' rows back after each step.
    A frozen pot that the curriculum prunes is let go (its id may be reopened as a new
    pot, which must train)."""

    def __init__(self, vae: PotsVAE, manager, pots) -> None:
        self.manager = manager
        self.seen = len(manager.log)
        self.tensors = _frozen_tensors(vae)
        self.saved = {
            int(pot): [tensor[pot].detach().clone() for tensor in self.tensors] for pot in pots
        }

    @property
    def pots(self) -> List[int]:
        return sorted(self.saved)

    @torch.no_grad()
    def __call__(self, *_) -> None:
        log = self.manager.log
        for entry in log[self.seen :]:
            if entry["action"] == "prune":
                self.saved.pop(entry["pot"], None)
        self.seen = len(log)
        for pot, values in self.saved.items():
            for tensor, value in zip(self.tensors, values):
                tensor[pot] = value


def freeze_pots(trainer, pots) -> FrozenPots:
    """Freeze ``pots``' decoders and latent heads for the rest of ``trainer``'s run (their
    routing logits and the shared encoder trunk still train). Returns the hook (also kept
    as ``trainer.frozen_pots``)."""
    frozen = FrozenPots(trainer.vae, trainer.manager, pots)
    trainer.optimizer.register_step_post_hook(frozen)
    trainer.frozen_pots = frozen
    return frozen


def keep_old_pots_whole(trainer, pots) -> List[int]:
    """Only pots opened during growth may be split from now on: the old ``pots`` are
    protected in the stage manager (:meth:`~pyro_pots.curriculum.StageManager.protect`;
    kept in its checkpointed state, so a resumed run keeps them whole too). Returns the
    protected pots."""
    return trainer.manager.protect(pots)


def set_training_rows(trainer, rows: torch.Tensor) -> None:
    """Train on ``rows`` from now on: the kick (no split pending) and the neighbour graph
    are rebuilt for them. The held-out rows stay."""
    if trainer.manager.pending is not None:
        raise ValueError("the training rows cannot change while a split is pending")
    c = trainer.cfg.curriculum
    trainer.train_x = rows.to(trainer.device)
    trainer.kick = Kick(
        len(rows),
        weight=c.kick_weight,
        temperature=c.kick_temperature,
        bias=c.kick_bias,
        lam_factor=c.kick_lam_factor,
    )
    trainer.rebuild_graph()


@dataclass
class PoorRows:
    """Which new rows no old pot explains: ``mask`` ``(N,)`` over the new rows, ``pots``
    ``(N,)`` each row's pot id, ``misfit`` ``(N,)`` its misfit there (nats) and
    ``threshold`` pot id -> the misfit above which a row is poorly explained."""

    mask: torch.Tensor
    pots: torch.Tensor
    misfit: torch.Tensor
    threshold: Dict[int, float]
    quantile: float

    @property
    def share(self) -> float:
        return float(self.mask.float().mean()) if len(self.mask) else 0.0

    def summary(self) -> Dict[str, Any]:
        """What the ``grow`` decision records: how many rows, in which pots."""
        ids, counts = self.pots[self.mask].unique(return_counts=True)
        return {
            "rows": int(self.mask.sum()),
            "share": self.share,
            "quantile": self.quantile,
            "by_pot": {int(p): int(n) for p, n in zip(ids, counts)},
            "threshold": dict(self.threshold),
        }


def _own_misfit(vae: PotsVAE, x: torch.Tensor):
    """Each row's pot id and its misfit (minus the pot's ELBO, one seeded draw) there."""
    with torch.no_grad():
        generator = torch.Generator().manual_seed(MISFIT_SEED)
        scores = pot_scores(vae, x, vae.active, generator=generator)
    column = scores.resp.argmax(-1)
    ids = scores.pots.to(column.device)
    return ids[column].cpu(), -scores.elbo.gather(-1, column[:, None]).squeeze(-1).cpu()


def poorly_explained(
    vae: PotsVAE, new_x: torch.Tensor, old_x: torch.Tensor, quantile: float
) -> PoorRows:
    """The rows of ``new_x`` whose misfit in their pot is above the ``quantile`` of the
    misfits of that pot's own rows among ``old_x`` (the rows it was fitted on; a pot with
    fewer than 10 of them takes the quantile over all old rows)."""
    old_pots, old_misfit = _own_misfit(vae, old_x)
    new_pots, new_misfit = _own_misfit(vae, new_x)
    overall = float(old_misfit.quantile(quantile))
    threshold = {}
    for pot in vae.open_ids().tolist():
        own = old_misfit[old_pots == pot]
        threshold[pot] = float(own.quantile(quantile)) if len(own) >= 10 else overall
    limit = torch.tensor([threshold[int(p)] for p in new_pots], dtype=new_misfit.dtype)
    return PoorRows(new_misfit > limit, new_pots, new_misfit, threshold, quantile)


def seed_pot(trainer, poor: PoorRows) -> Optional[int]:
    """Open a pot for the poorly explained rows (the first kick of the growth): a copy of
    the old pot that holds most of them (or a fresh one: ``curriculum.new_pot_init``),
    kicked to take those rows while the rest of that pot's rows stay, then judged at the
    stage end like any split (:meth:`~pyro_pots.curriculum.StageManager.open_pot`; should
    it be undone, the protected pots are no candidates). Returns the new pot, or None when
    every pot is open."""
    manager = trainer.manager
    if len(manager.open) >= manager.num_pots or not poor.mask.any():
        return None
    parent = int(poor.pots[poor.mask].mode().values)
    ev = trainer.evaluate(full=False)
    end = trainer.stage_end_scores(ev["heldout_rows"])  # what a retry of a rejected seed needs
    rows = int(poor.mask.sum())
    new = min(set(range(manager.num_pots)) - set(manager.open))
    reason = (
        f"grow: seed pot {new} from the {rows} new rows no old pot explains "
        f"(misfit above their pot's {poor.quantile} quantile on its old rows), copied from "
        f"pot {parent}, which holds most of them"
    )
    scores = (ev["usage"], end["misfit"], end["normality"])
    decision = manager.open_pot(parent, reason, *scores, numbers={"seeded_rows": rows})
    if decision.pot != new:
        raise RuntimeError(f"the stage manager opened pot {decision.pot}, not {new}")
    trainer.pre_split = {"state": trainer.snapshot(), "heldout_rows": ev["heldout_rows"]}
    c = trainer.cfg.curriculum
    gen = torch.Generator().manual_seed(trainer.cfg.train.seed + 1000 + new)
    if c.new_pot_init == "fresh":
        fresh_pot(trainer.vae, new, gen, trainer.optimizer)
    else:
        copy_pot(trainer.vae, parent, new, c.init_noise, gen, trainer.optimizer)
    targets = torch.full_like(trainer.kick.targets, NO_TARGET)
    n = len(poor.mask)
    targets[:n][(poor.pots == parent) & ~poor.mask] = parent
    targets[:n][poor.mask] = new
    trainer.kick.start(new, targets)
    trainer.vae.open_pots(manager.open)
    return new
