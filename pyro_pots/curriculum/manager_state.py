"""The stage manager's checkpointed state: which attributes are saved, and the check that a
saved state is one before it is restored (a checkpoint may hold anything)."""

from typing import Any, Dict, Optional


class ManagerState:
    """:meth:`state_dict` and :meth:`load_state_dict` of the
    :class:`~pyro_pots.curriculum.StageManager` (its base class): the attributes named in
    ``_STATE``, copied so that later mutation of one side cannot change the other, and
    those named in ``_OPTIONAL_STATE`` when they hold something."""

    num_pots: int
    proposals: int

    _STATE = (
        "open",
        "stage",
        "epoch",
        "stage_epochs",
        "smoothed",
        "stage_best",
        "since_best",
        "stage_bests",
        "kick_remaining",
        "pending",
        "tried",
        "stopped",
        "stop_reason",
        "log",
    )
    #: attributes saved only when not empty, and read as empty from a state without them:
    #: a state written before they existed loads, and one that never set them is as it was
    #: (the resume check compares a checkpoint's layout with a fresh trainer's).
    _OPTIONAL_STATE = ("protected", "apart")

    def state_dict(self) -> Dict[str, Any]:
        """Everything needed to resume exactly (plain Python values and the snapshot)."""
        state = {name: _copy(getattr(self, name)) for name in self._STATE}
        for name in self._OPTIONAL_STATE:
            if getattr(self, name):
                state[name] = _copy(getattr(self, name))
        return state

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        """Restore :meth:`state_dict`'s output exactly, after checking that it is one: the
        open pots are distinct ids below ``num_pots``, the kick countdown is a count, and
        a pending split names an open pot, its parent and its proposal, and the protected
        and the apart pots (none when the state has no ``protected`` or ``apart``) are
        distinct pot ids."""
        missing = [name for name in self._STATE if name not in state]
        if missing:
            raise ValueError(f"stage-manager state lacks {missing}")
        problem = _state_problem(state, self.num_pots, self.proposals)
        if problem is not None:
            raise ValueError(f"stage-manager state: {problem}")
        for name in self._STATE:
            setattr(self, name, _copy(state[name]))
        for name in self._OPTIONAL_STATE:
            setattr(self, name, _copy(state.get(name, [])))


def _is_count(value: Any, high: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value < high


def _state_problem(state: Dict[str, Any], num_pots: int, proposals: int) -> Optional[str]:
    """What makes ``state`` no state of a manager with ``num_pots`` pots (None: nothing)."""
    pots = state["open"]
    if not isinstance(pots, list) or not pots or len(set(map(repr, pots))) != len(pots):
        return "open must be a non-empty list of distinct pot ids"
    if not all(_is_count(pot, num_pots) for pot in pots):
        return f"open holds ids outside 0..{num_pots - 1}"
    if not _is_count(state["kick_remaining"], 2**31):
        return "kick_remaining must be a count"
    for name in ("protected", "apart"):
        pots_named = state.get(name, [])
        if not isinstance(pots_named, list) or len(set(map(repr, pots_named))) != len(pots_named):
            return f"{name} must be a list of distinct pot ids"
        if not all(_is_count(pot, num_pots) for pot in pots_named):
            return f"{name} holds ids outside 0..{num_pots - 1}"
    pending = state["pending"]
    if pending is None:
        return None
    keys = {"pot", "parent", "attempt", "previous_best", "scores"}
    if not isinstance(pending, dict) or set(pending) != keys:
        return f"a pending split must hold exactly {sorted(keys)}"
    if pending["pot"] not in pots or pending["parent"] not in pots:
        return "the pending split's pot and parent must be open"
    if not _is_count(pending["attempt"], proposals):
        return f"the pending split's proposal must be in 0..{proposals - 1}"
    return None


def _copy(value):
    """A copy deep enough that later mutation of one side cannot change the other."""
    if isinstance(value, dict):
        return {k: _copy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_copy(v) for v in value]
    return value
