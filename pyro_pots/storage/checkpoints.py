"""Checking a checkpoint against the run it claims to be, before anything is loaded.

A checkpoint is read with ``weights_only=True`` (it cannot run code), but its contents can
still be anything: another layout version, a ``config.yaml`` edited since it was written,
tensors of other shapes, values of other types. Each is refused here in one line, so that
``--resume`` and ``evaluate`` never fail deep inside torch with a long traceback.
"""

from pathlib import Path
from typing import Any, Dict, Optional

import torch

from pyro_pots import run_dir
from pyro_pots.errors import PotsInputError, first_line

#: the trainer-state entries every checkpoint has.
_REQUIRED = ("epoch", "vae", "optimizer", "manager", "history")
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
    if not _is_int(state["format"]) or state["format"] != version:
        raise PotsInputError(
            f"checkpoint '{where}' has format {_show(state['format'])}, this version of "
            f"pyro-pots reads format {version}"
        )
    written_with = state.get("config_sha256")
    if written_with is not None and written_with != _config_sha256(run):
        raise PotsInputError(
            f"'{run / run_dir.CONFIG}' was edited after the checkpoint was written; put it "
            "back, or start a new run (fit --overwrite, or fit --resume-from to grow this one)"
        )
    dim = state["data_dim"]
    if not _is_int(dim) or not 1 <= dim <= MAX_DATA_DIM:
        raise PotsInputError(f"checkpoint '{where}': data_dim {_show(dim)} is not a size")
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
            return
        except Exception as error:  # any inconsistency torch or the manager finds
            problem = first_line(error)
    raise PotsInputError(f"checkpoint '{where}' does not fit the run's config: {problem}")


def _problem(trainer: Any, state: Any, train_rows: Optional[int]) -> Optional[str]:
    """The first way ``state`` differs from what ``trainer`` would save, or None."""
    # Only the entries named here are checked; any other entry (the trainer's layout may
    # grow) is left to the trainer's own load_state_dict, whose errors are caught too.
    if not isinstance(state, dict):
        return "the trainer state is not a mapping"
    missing = [key for key in _REQUIRED if key not in state]
    if missing:
        return f"no {', '.join(missing)}"
    for key in ("epoch", "rollbacks"):
        if key in state and (not _is_int(state[key]) or state[key] < 0):
            return f"{key} {_show(state[key])} is not a count"
    num_pots = trainer.vae.num_pots
    kick = state.get("kick")
    kick_pot = kick.get("pot") if isinstance(kick, dict) else state.get("kick_pot")
    if kick_pot is not None and not (_is_int(kick_pot) and 0 <= kick_pot < num_pots):
        return f"kick_pot {_show(kick_pot)} is not a pot of {num_pots}"
    problem = _tensors_problem("model", trainer.vae.state_dict(), state["vae"])
    if problem is None:
        problem = _optimizer_problem(trainer, state["optimizer"])
    if problem is None:
        problem = _kick_targets_problem(kick_targets(state), num_pots, train_rows)
    generator = state.get("batch_generator")
    if problem is None and generator is not None and not isinstance(generator, torch.Tensor):
        problem = "batch_generator is not a tensor"
    if problem is None:
        problem = _history_problem(state["history"])
    return problem


def kick_targets(state: Any) -> Any:
    """The kick's per-row targets in a trainer state (``kick.targets``; ``kick_targets`` in
    checkpoints written before the kick had its own state), or None."""
    if not isinstance(state, dict):
        return None
    kick = state.get("kick")
    if isinstance(kick, dict):
        return kick.get("targets")
    return state.get("kick_targets")


def _tensors_problem(what: str, expected: Dict[str, Any], found: Any) -> Optional[str]:
    if not isinstance(found, dict):
        return f"the {what} state is not a mapping"
    missing = [key for key in expected if key not in found]
    extra = [str(key) for key in found if key not in expected]
    if missing or extra:
        return f"the {what} state lacks {missing[:3]} or has extra {extra[:3]}"
    for key, value in expected.items():
        other = found[key]
        if not isinstance(other, torch.Tensor):
            return f"{what} entry '{key}' is not a tensor"
        if other.shape != value.shape or other.dtype != value.dtype:
            return (
                f"{what} entry '{key}' is {other.dtype} {tuple(other.shape)}, the config's "
                f"model has {value.dtype} {tuple(value.shape)}"
            )
    return None


def _optimizer_problem(trainer: Any, found: Any) -> Optional[str]:
    """Adam's moments must have their parameters' shapes (torch checks only the counts)."""
    shapes = [p.shape for p in trainer.vae.parameters()]
    if not isinstance(found, dict) or not isinstance(found.get("state"), dict):
        return "the optimizer state is not a mapping with a 'state'"
    groups = found.get("param_groups")
    if not isinstance(groups, list) or not all(isinstance(g, dict) for g in groups):
        return "the optimizer state has no list of param_groups"
    ids = [i for g in groups for i in (g.get("params") or [])]
    if sorted(ids) != list(range(len(shapes))):
        return f"the optimizer holds {len(ids)} parameters, the model has {len(shapes)}"
    for index, moments in found["state"].items():
        if not _is_int(index) or not 0 <= index < len(shapes) or not isinstance(moments, dict):
            return f"the optimizer state has a bad entry {_show(index)}"
        for name, value in moments.items():
            if not isinstance(value, torch.Tensor):
                return f"optimizer entry {index}.{name} is not a tensor"
            if value.dim() > 0 and value.shape != shapes[index]:
                return (
                    f"optimizer entry {index}.{name} is {tuple(value.shape)}, its parameter "
                    f"is {tuple(shapes[index])}"
                )
    return None


def _kick_targets_problem(found: Any, num_pots: int, train_rows: Optional[int]) -> Optional[str]:
    if found is None:
        return "no kick targets"
    if not isinstance(found, torch.Tensor) or found.dim() != 1 or found.is_floating_point():
        return "kick_targets is not a vector of pot ids"
    if train_rows is not None and len(found) != train_rows:
        return f"kick_targets has {len(found)} rows, the run's data has {train_rows} training rows"
    if len(found) and not (-1 <= int(found.min()) and int(found.max()) < num_pots):
        return f"kick_targets holds pot ids outside -1..{num_pots - 1}"
    return None


def _history_problem(found: Any) -> Optional[str]:
    if not isinstance(found, list):
        return "the history is not a list"
    for number, row in enumerate(found):
        if not isinstance(row, dict):
            return f"history row {number} is not a mapping"
        missing = [key for key in (*run_dir.HISTORY_COLUMNS, "usage") if key not in row]
        if missing:
            return f"history row {number} lacks {', '.join(missing[:3])}"
        if not isinstance(row["usage"], dict) or not isinstance(row["open"], (list, tuple)):
            return f"history row {number} has a bad 'usage' or 'open'"
    return None


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _show(value: Any) -> str:
    """A value for a message: its repr, cut short (a checkpoint may hold anything)."""
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."
