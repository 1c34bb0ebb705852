"""A trainer state checked entry by entry, for :mod:`pyro_pots.storage.checkpoints`.

Each check returns the first problem it finds as a short phrase (None when there is none);
the checkpoint's readers turn it into their one-line :class:`~pyro_pots.errors.PotsInputError`.
Only the entries named here are checked: model and optimizer tensors of the model's shapes,
snapshots to restore later, kick targets, counters that are counts, and a history and a
decision log of plain numbers.
"""

from typing import Any, Dict, Optional

import torch

from pyro_pots import run_dir

#: the trainer-state entries every checkpoint has.
_REQUIRED = ("epoch", "vae", "optimizer", "manager", "history")
#: what Adam keeps per parameter once it has stepped.
_ADAM_STATE = ("step", "exp_avg", "exp_avg_sq")


def state_problem(
    model: Any, state: Any, train_rows: Optional[int], expected: Optional[Dict[str, Any]] = None
) -> Optional[str]:
    """The first way ``state`` does not fit ``model`` (and, when given, the structure of
    ``expected``: a fresh trainer's own state), or None."""
    # Only the entries named here are checked; any other entry (the trainer's layout may
    # grow) is left to the trainer's own load_state_dict, whose errors are caught too.
    if not isinstance(state, dict):
        return "the trainer state is not a mapping"
    missing = [key for key in _REQUIRED if key not in state]
    if missing:
        return f"no {', '.join(missing)}"
    for key in ("epoch", "rollbacks"):
        if key in state and (not is_int(state[key]) or state[key] < 0):
            return f"{key} {show(state[key])} is not a count"
    num_pots = model.num_pots
    kick = state.get("kick")
    kick_pot = kick.get("pot") if isinstance(kick, dict) else state.get("kick_pot")
    if kick_pot is not None and not (is_int(kick_pot) and 0 <= kick_pot < num_pots):
        return f"kick_pot {show(kick_pot)} is not a pot of {num_pots}"
    manager = state["manager"]
    kicking = isinstance(manager, dict) and _is_number(manager.get("kick_remaining", 0))
    if kicking and manager.get("kick_remaining", 0) > 0 and kick_pot is None:
        return "a kick is under way without the pot it favours"
    problem = None
    if expected is not None:
        problem = _structure_problem(expected, state, "the trainer state")
    if problem is None:
        problem = tensors_problem("model", model.state_dict(), state["vae"])
    if problem is None:
        problem = _optimizer_problem(model, state["optimizer"])
    for where, snapshot in _snapshots(state, "the trainer state"):  # states to restore later
        if problem is None:
            problem = tensors_problem(f"{where}'s model", model.state_dict(), snapshot["vae"])
        if problem is None:
            problem = _optimizer_problem(model, snapshot["optimizer"])
    if problem is None:
        problem = _kick_targets_problem(kick_targets(state), num_pots, train_rows)
    generator = state.get("batch_generator")
    if problem is None and generator is not None and not isinstance(generator, torch.Tensor):
        problem = "batch_generator is not a tensor"
    if problem is None:
        problem = _history_problem(state["history"])
    if problem is None:
        problem = _log_problem(state["manager"])
    return problem


def _log_problem(manager: Any) -> Optional[str]:
    """The stage manager keeps plain Python values (its decision log becomes
    ``stages.json``): a tensor or another object in it is a crafted state."""
    if not isinstance(manager, dict):
        return None
    for key, value in manager.items():
        if key != "snapshot" and not _is_plain(value):
            return f"the stage manager's {key!r} holds a value that is not plain data"
    return None


def _is_plain(value: Any) -> bool:
    if value is None or isinstance(value, (bool, int, float, str)):
        return True
    if isinstance(value, (list, tuple)):
        return all(_is_plain(item) for item in value)
    if isinstance(value, dict):
        return all(isinstance(k, (str, int)) and _is_plain(v) for k, v in value.items())
    return False


def kick_targets(state: Any) -> Any:
    """The kick's per-row targets in a trainer state (``kick.targets``; ``kick_targets`` in
    checkpoints written before the kick had its own state), or None."""
    if not isinstance(state, dict):
        return None
    kick = state.get("kick")
    if isinstance(kick, dict):
        return kick.get("targets")
    return state.get("kick_targets")


def _snapshots(value: Any, where: str):
    """Every saved model-and-optimizer snapshot nested in a trainer state (the state a
    rollback or a rejected split restores), with where it sits."""
    if isinstance(value, dict):
        for key, inner in value.items():
            if key == "vae" and "optimizer" in value and where != "the trainer state":
                yield where, value
            elif isinstance(inner, (dict, list)):
                yield from _snapshots(inner, f"{where}.{key}")
    elif isinstance(value, list):
        for index, inner in enumerate(value):
            yield from _snapshots(inner, f"{where}[{index}]")


def _structure_problem(expected: Any, found: Any, where: str) -> Optional[str]:
    """The first place where ``found`` has another shape of data than ``expected`` (a
    fresh trainer's own state): a mapping lacking a key, a list that is not one, a count
    that is text. An entry that is None in ``expected`` (not set yet) may hold anything."""
    if expected is None:
        return None
    if isinstance(expected, torch.Tensor):
        return None if isinstance(found, torch.Tensor) else f"{where} is not a tensor"
    if isinstance(expected, dict):
        if not isinstance(found, dict):
            return f"{where} is not a mapping"
        for key, value in expected.items():
            if key not in found:
                return f"{where} lacks {key!r}"
            problem = _structure_problem(value, found[key], f"{where}.{key}")
            if problem is not None:
                return problem
        return None
    if isinstance(expected, (list, tuple)):
        if not isinstance(found, (list, tuple)):
            return f"{where} is not a list"
        kinds = {type(item) for item in expected}
        if len(kinds) > 1:  # a record, such as an RNG state: entry by entry
            if len(found) != len(expected):
                return f"{where} has {len(found)} entries, not {len(expected)}"
            pairs = list(zip(expected, found))
        else:  # a list of like values: each like the first expected one
            pairs = [(expected[0], item) for item in found] if expected else []
        for index, (value, item) in enumerate(pairs):
            problem = _structure_problem(value, item, f"{where}[{index}]")
            if problem is not None:
                return problem
        return None
    if isinstance(expected, bool):
        ok = isinstance(found, bool)
    elif isinstance(expected, int):
        ok = is_int(found)
    elif isinstance(expected, float):
        ok = isinstance(found, (int, float)) and not isinstance(found, bool)
    elif isinstance(expected, str):
        ok = isinstance(found, str)
    else:
        return None
    return None if ok else f"{where} is {show(found)}, not a {type(expected).__name__}"


def tensors_problem(what: str, expected: Dict[str, Any], found: Any) -> Optional[str]:
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


def _optimizer_problem(model: Any, found: Any) -> Optional[str]:
    """Adam's moments must have their parameters' shapes (torch checks only the counts)."""
    params = list(model.parameters())
    shapes = [p.shape for p in params]
    if not isinstance(found, dict) or not isinstance(found.get("state"), dict):
        return "the optimizer state is not a mapping with a 'state'"
    groups = found.get("param_groups")
    if not isinstance(groups, list) or not all(isinstance(g, dict) for g in groups):
        return "the optimizer state has no list of param_groups"
    if not all(isinstance(g.get("params"), list) for g in groups):
        return "an optimizer param_group has no list of params"
    ids = [i for g in groups for i in g["params"]]
    if not all(is_int(i) for i in ids) or sorted(ids) != list(range(len(shapes))):
        return f"the optimizer holds {len(ids)} parameters, the model has {len(shapes)}"
    for index, moments in found["state"].items():
        if not is_int(index) or not 0 <= index < len(shapes) or not isinstance(moments, dict):
            return f"the optimizer state has a bad entry {show(index)}"
        lacking = [name for name in _ADAM_STATE if moments and name not in moments]
        if lacking:
            return f"optimizer entry {index} lacks {', '.join(lacking)}"
        for name, value in moments.items():
            # the fused kernel writes a parameter's worth into each moment: a smaller
            # tensor is a memory corruption, not an error message
            param = params[index]
            if not isinstance(value, torch.Tensor):
                return f"optimizer entry {index}.{name} is not a tensor"
            if name == "step":
                if value.dim() != 0 or not value.is_floating_point():
                    return f"optimizer entry {index}.step is not a count"
            elif value.shape != param.shape or value.dtype != param.dtype:
                return (
                    f"optimizer entry {index}.{name} is {value.dtype} {tuple(value.shape)}, its "
                    f"parameter is {param.dtype} {tuple(param.shape)}"
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
        numbers = [row[key] for key in _HISTORY_NUMBERS] + list(row["usage"].values())
        if not all(_is_number(value) for value in numbers) or not all(
            is_int(key) for key in [*row["usage"], *row["open"]]
        ):
            return f"history row {number} holds a value that is not a number"
        if row["train_loss"] is not None and not _is_number(row["train_loss"]):
            return f"history row {number} has a train_loss that is not a number"
    return None


#: the history columns that are numbers (train_loss may also be None: not computed).
_HISTORY_NUMBERS = ("epoch", "stage", "n_open", "heldout_loss", "lam", "temperature", "lr")
_HISTORY_NUMBERS += ("mean_max_resp", "bad_steps")


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def show(value: Any) -> str:
    """A value for a message: its repr, cut short (a checkpoint may hold anything)."""
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."
