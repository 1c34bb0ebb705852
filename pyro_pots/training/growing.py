"""Growing a fitted run on new data (``fit --resume-from``): the paths checked (the fitted run
is never changed), its finished checkpoint read, its trainer state checked and loaded, and
the ``grow`` section's levers applied (replay, a seeded pot, frozen old pots;
:mod:`~pyro_pots.training.growth_levers`)."""

import os
from dataclasses import replace
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import torch

from pyro_pots import run_dir
from pyro_pots.config import Config, load_config
from pyro_pots.curriculum import Decision
from pyro_pots.curriculum.replay import (
    generative_rows,
    old_weights,
    replay_count,
    reservoir_rows,
)
from pyro_pots.errors import PotsInputError, first_line
from pyro_pots.fitted_run import check_finished, training_rows
from pyro_pots.storage.checkpoints import check_header, check_trainer_state
from pyro_pots.training.growth_levers import (
    freeze_pots,
    keep_old_pots_whole,
    poorly_explained,
    seed_pot,
    set_training_rows,
)
from pyro_pots.training.trainer import CurriculumTrainer


def check_grow_paths(run: Path, out: Path) -> None:
    """The run grown from is never changed: ``out`` is neither it, nor inside it, nor
    around it (paths resolved, so a symlink or ``..`` does not hide it)."""
    source, target = Path(os.path.realpath(run)), Path(os.path.realpath(out))
    if target == source:
        raise PotsInputError(
            f"--resume-from '{run}' and --out are the same directory; grow into another "
            "one (the fitted run is never changed)"
        )
    if source in target.parents:
        raise PotsInputError(
            f"--out '{out}' is inside the run '{run}' it grows from; choose a directory "
            "outside it (the fitted run is never changed)"
        )
    if target in source.parents:
        raise PotsInputError(
            f"--out '{out}' holds the run '{run}' it grows from; choose another directory"
        )


def grow_from(
    trainer: CurriculumTrainer, state: Dict[str, Any], old_rows: Optional[torch.Tensor] = None
) -> Decision:
    """Start ``trainer`` from a fitted run's trainer ``state`` on its (new) data: the model,
    optimizer, open pots and history carry over, the curriculum starts a new stage, and the
    ``grow`` decision records each open pot's share of the new rows.

    The ``grow`` config section's levers act here (each off by default): ``replay`` mixes
    old rows (``old_rows``, the old run's training rows, or draws from the old pots) into
    the training rows, ``seed_new_pot`` opens a pot for the new rows no old pot explains
    (``old_rows`` calibrate what "explains" means), ``split_old_pots=false`` splits only
    the pots opened during growth, and ``freeze_old_pots`` keeps the old pots' decoders and
    latent heads as they are. The ``grow`` decision records what each
    lever did."""
    g = trainer.cfg.grow
    # the old rows' kick targets mean nothing on the new rows
    no_kick = {"targets": trainer.kick.targets.clone(), "pot": None}
    trainer.load_state_dict({**state, "kick": no_kick})
    trainer.finish()  # the fitted model, as its run wrote it: a split not judged is undone
    new_rows = len(trainer.train_x)
    old_pots = list(trainer.manager.open)
    last = trainer.history[-1]["usage"] if trainer.history else {}
    usage = trainer.evaluate(full=False)["usage"]  # where the new rows go (before replay)
    numbers: Dict[str, Any] = {"usage": usage, "rows": new_rows}
    poor = None
    if g.seed_new_pot:
        if old_rows is None:
            raise ValueError("grow.seed_new_pot needs the old run's training rows")
        poor = poorly_explained(trainer.vae, trainer.train_x, old_rows, g.seed_quantile)
        numbers["poorly_explained"] = poor.summary()
    if g.replay != "off":
        generator = torch.Generator().manual_seed(trainer.cfg.train.seed + 4099)
        count = replay_count(new_rows, g.replay_share)
        if g.replay == "reservoir":
            if old_rows is None:
                raise ValueError("grow.replay=reservoir needs the old run's training rows")
            extra = reservoir_rows(old_rows, count, generator)
        else:
            weights = old_weights(last, old_pots)
            extra = generative_rows(trainer.vae, weights, count, generator)["rows"]
        set_training_rows(trainer, torch.cat([trainer.train_x, extra.to(trainer.train_x)]))
        numbers["replay"] = {"mode": g.replay, "rows": len(extra)}
    if g.freeze_old_pots:
        numbers["frozen"] = list(old_pots)
    if not g.split_old_pots:
        numbers["whole"] = list(old_pots)
    decision = trainer.manager.grow(numbers)
    trainer.manager.unprotect(trainer.manager.protected)  # an earlier growth's levers end
    if not g.split_old_pots:
        keep_old_pots_whole(trainer, old_pots)
    if poor is not None and poor.share >= g.seed_min_share:
        seed_pot(trainer, poor)
    if g.freeze_old_pots:
        freeze_pots(trainer, old_pots)
    trainer._clean = trainer.snapshot()
    return decision


def restore_levers(trainer: CurriculumTrainer) -> List[int]:
    """Set again, on a grown run loaded from its checkpoint (``fit --resume``), the lever
    that lives outside the trainer's state: the frozen pots (the last ``grow`` decision's
    ``frozen``, less the pots pruned since), held at their values in the checkpoint, which
    are their values when growth started (they are written back after every step). The
    other levers need nothing here: the protected pots (``split_old_pots=false``) and a
    seeded pot's pending split are in the stage manager's state, and replayed rows cannot
    come back (the run's data are the new rows alone; the resume is refused). Returns the
    pots frozen again (none for a run that was not grown with ``freeze_old_pots``)."""
    log = trainer.manager.log
    grows = [i for i, entry in enumerate(log) if entry["action"] == "grow"]
    if not grows:
        return []
    frozen = log[grows[-1]]["numbers"].get("frozen", [])
    pruned = {entry["pot"] for entry in log[grows[-1] + 1 :] if entry["action"] == "prune"}
    pots = [pot for pot in frozen if pot not in pruned]
    if pots:
        freeze_pots(trainer, pots)
    return pots


def grow(trainer: CurriculumTrainer, state: Dict[str, Any], where: Path) -> None:
    """:func:`grow_from`, the state checked first as ``--resume`` checks its own (Adam's
    moments of another shape would corrupt memory in the fused kernel)."""
    check_trainer_state(trainer, state, where)
    g = trainer.cfg.grow
    old_rows = None
    if g.seed_new_pot or g.replay == "reservoir":  # the old run's own rows, as it split them
        run = where.parent
        old_rows = training_rows(run, load_config(run / run_dir.CONFIG)).to(trainer.train_x)
    try:
        grow_from(trainer, state, old_rows)
    except Exception as error:  # any inconsistency torch or the manager finds
        raise PotsInputError(
            f"checkpoint '{where}' does not fit the run's config: "
            f"{type(error).__name__}: {first_line(error)}"
        ) from None


def grown_run(run: Path, cfg: Config) -> Tuple[Dict[str, Any], Config]:
    """The checkpoint to grow from, of a finished run, and ``cfg`` with the epoch budget
    made a total."""
    check_finished(run)  # not one a fit is writing, nor one interrupted (--resume it)
    state = run_dir.load_checkpoint(run)
    check_header(state, run, run_dir.CHECKPOINT_FORMAT)
    if load_config(run / run_dir.CONFIG).model != cfg.model:
        raise PotsInputError(f"the config's model section differs from the run's in '{run}'")
    epoch = state["trainer"].get("epoch") if isinstance(state["trainer"], dict) else None
    if not isinstance(epoch, int) or isinstance(epoch, bool) or epoch < 0:
        raise PotsInputError(f"checkpoint in '{run}' has no epoch count")
    total = epoch + cfg.train.max_epochs
    return state, replace(cfg, train=replace(cfg.train, max_epochs=total))
