"""Growing a fitted run on new data (``fit --resume-from``): the paths checked (the fitted run
is never changed), its finished checkpoint read, and its trainer state checked and loaded."""

import os
from dataclasses import replace
from pathlib import Path
from typing import Any, Dict, Tuple

from pyro_pots import run_dir
from pyro_pots.config import Config, load_config
from pyro_pots.curriculum import Decision
from pyro_pots.errors import PotsInputError, first_line
from pyro_pots.fitted_run import check_finished
from pyro_pots.storage.checkpoints import check_header, check_trainer_state
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


def grow_from(trainer: CurriculumTrainer, state: Dict[str, Any]) -> Decision:
    """Start ``trainer`` from a fitted run's trainer ``state`` on its (new) data: the model,
    optimizer, open pots and history carry over, the curriculum starts a new stage, and the
    ``grow`` decision records each open pot's share of the new rows."""
    # the old rows' kick targets mean nothing on the new rows
    no_kick = {"targets": trainer.kick.targets.clone(), "pot": None}
    trainer.load_state_dict({**state, "kick": no_kick})
    trainer.finish()  # the fitted model, as its run wrote it: a split not judged is undone
    usage = trainer.evaluate(full=False)["usage"]
    decision = trainer.manager.grow({"usage": usage, "rows": len(trainer.train_x)})
    trainer._clean = trainer.snapshot()
    return decision


def grow(trainer: CurriculumTrainer, state: Dict[str, Any], where: Path) -> None:
    """:func:`grow_from`, the state checked first as ``--resume`` checks its own (Adam's
    moments of another shape would corrupt memory in the fused kernel)."""
    check_trainer_state(trainer, state, where)
    try:
        grow_from(trainer, state)
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
