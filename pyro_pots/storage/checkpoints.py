"""Checking a checkpoint against the run it claims to be, before anything is loaded.

A checkpoint is read with ``weights_only=True`` (it cannot run code), but its contents can
still be anything: another layout version, a ``config.yaml`` edited since it was written,
tensors of other shapes, values of other types. Each is refused here in one line, so that
``--resume`` (:func:`load_trainer_state`, against the trainer the config builds) and
``evaluate`` and the other readers of a finished run (:func:`check_finished_state`,
against the model the config builds, without a trainer) never fail deep inside torch with
a long traceback.
"""

import copy
from pathlib import Path
from typing import Any, Dict, Optional

from pyro_pots import run_dir
from pyro_pots.errors import PotsInputError, first_line
from pyro_pots.storage.state_checks import (
    is_int,
    kick_targets,
    show,
    state_problem,
    tensors_problem,
)
from pyro_pots.training import distributed

__all__ = [
    "MAX_DATA_DIM",
    "check_finished_state",
    "check_header",
    "check_trainer_state",
    "kick_targets",
    "load_trainer_state",
]

#: the largest ``data_dim`` a checkpoint may claim (a placeholder row of it is allocated).
MAX_DATA_DIM = 10**7


def check_header(state: Dict[str, Any], run: Path, version: int) -> int:
    """The checkpoint's format, config and number of features, checked.

    :param state: the checkpoint (see :func:`~pyro_pots.run_dir.load_checkpoint`).
    :param run: its run directory (whose ``config.yaml`` it must have been written with).
    :param version: the checkpoint format this version of pyro-pots reads.
    :returns: ``data_dim``, the number of features.
    :raises PotsInputError: another format, an edited config, a bad ``data_dim``.
    """
    where = run / run_dir.CHECKPOINT
    if not is_int(state["format"]) or state["format"] != version:
        raise PotsInputError(
            f"checkpoint '{where}' has format {show(state['format'])}, this version of "
            f"pyro-pots reads format {version}"
        )
    written_with = state.get("config_sha256")
    if written_with is not None and written_with != _config_sha256(run):
        raise PotsInputError(
            f"'{run / run_dir.CONFIG}' was edited after the checkpoint was written; put it "
            "back, or start a new run (fit --overwrite, or fit --resume-from to grow this one)"
        )
    if not isinstance(state["trainer"], dict):
        raise PotsInputError(f"checkpoint '{where}': the trainer state is not a mapping")
    dim = state["data_dim"]
    if not is_int(dim) or not 1 <= dim <= MAX_DATA_DIM:
        raise PotsInputError(f"checkpoint '{where}': data_dim {show(dim)} is not a size")
    return int(dim)


def _config_sha256(run: Path) -> str:
    try:
        return run_dir.file_sha256(run / run_dir.CONFIG)
    except OSError as error:
        raise PotsInputError(
            f"cannot read '{run / run_dir.CONFIG}' ({error.strerror or error})"
        ) from None


def load_trainer_state(
    trainer: Any, state: Any, where: Path, train_rows: Optional[int] = None
) -> None:
    """Load a checkpoint's trainer ``state`` into ``trainer`` after checking it against
    the trainer's own :meth:`state_dict` (same entries; model and optimizer tensors of the
    same shapes; counters that are counts).

    :param trainer: a :class:`~pyro_pots.training.trainer.CurriculumTrainer` built from
        the run's config.
    :param where: the checkpoint, for messages.
    :param train_rows: the number of training rows when the data is the run's own (resume),
        which the kick targets must match; None to skip that check.
    :raises PotsInputError: in one line, naming the first mismatch.
    """
    problem = _problem(trainer, state, train_rows)
    if problem is None:
        try:
            trainer.load_state_dict(state)
            _probe(trainer)
            return
        except Exception as error:  # any inconsistency torch or the manager finds
            problem = f"{type(error).__name__}: {first_line(error)}"
    raise PotsInputError(f"checkpoint '{where}' does not fit the run's config: {problem}")


def check_trainer_state(trainer: Any, state: Any, where: Path) -> None:
    """The checks of :func:`load_trainer_state`, without loading: for a caller that loads
    ``state`` its own way (growing a fitted run on new data: its kick targets are the old
    rows').

    :raises PotsInputError: in one line, naming the first mismatch.
    """
    problem = _problem(trainer, state, None)
    if problem is not None:
        raise PotsInputError(f"checkpoint '{where}' does not fit the run's config: {problem}")


def _probe(trainer: Any) -> None:
    """Let a copy of the loaded trainer judge an epoch and stop, as the run will: a state
    that loads but cannot be acted on (a pending split without the state it would restore)
    fails here, not at the end of a long resumed fit. The copy shares no data rows."""
    if distributed.world_size() > 1:  # a DistributedDataParallel wrapper cannot be copied
        return
    rows = trainer.train_x, trainer.heldout_x
    trainer.train_x = trainer.heldout_x = trainer.train_x[:1]
    try:
        probe = copy.deepcopy(trainer)
    finally:
        trainer.train_x, trainer.heldout_x = rows
    probe.manager.would_end_stage(0.0)
    probe.finish()


def check_finished_state(state: Any, model: Any, where: Path) -> None:
    """A finished run's trainer ``state`` checked without a trainer, against ``model``
    (the untrained :class:`~pyro_pots.model.PotsVAE` its config builds), for a reader of
    the final model (:func:`pyro_pots.load_run`): every check of
    :func:`load_trainer_state` but the comparison with a fresh trainer's whole state, and
    in its place the entries the final model is read from (the open pots; a pending split
    and the pre-split state that undoes it).

    :raises PotsInputError: in one line, naming the first mismatch.
    """
    problem = state_problem(model, state, None)
    if problem is None:
        problem = _final_model_problem(state, model)
    if problem is not None:
        raise PotsInputError(f"checkpoint '{where}' does not fit the run's config: {problem}")


def _final_model_problem(state: Dict[str, Any], model: Any) -> Optional[str]:
    """What a reader of the final model takes from the stage manager: the open pots (ids
    of the model's pots; a negative one would index from the end), and a pending split's
    pot with the pre-split model that undoes it (as ``CurriculumTrainer.finish`` does)."""
    manager, num_pots = state["manager"], model.num_pots
    if not isinstance(manager, dict):
        return "the stage manager state is not a mapping"
    pots = manager.get("open")
    if not isinstance(pots, (list, tuple)) or not pots:
        return "the stage manager has no list of open pots"
    if not all(is_int(pot) and 0 <= pot < num_pots for pot in pots) or len(set(pots)) < len(pots):
        return f"the open pots {show(pots)} are not distinct pots of {num_pots}"
    pending = manager.get("pending")
    if pending is None:
        return None
    if not isinstance(pending, dict) or not is_int(pending.get("pot")):
        return "the pending split has no pot"
    if pending["pot"] not in pots:
        return f"the pending split's pot {pending['pot']} is not open"
    before = state.get("pre_split")
    if not isinstance(before, dict) or not isinstance(before.get("state"), dict):
        return "a split is pending without the pre-split state that undoes it"
    return tensors_problem("pre-split model", model.state_dict(), before["state"].get("vae"))


def _problem(trainer: Any, state: Any, train_rows: Optional[int]) -> Optional[str]:
    """The first way ``state`` differs from what ``trainer`` would save, or None."""
    if not isinstance(state, dict):
        return "the trainer state is not a mapping"
    return state_problem(trainer.vae, state, train_rows, trainer.state_dict())
