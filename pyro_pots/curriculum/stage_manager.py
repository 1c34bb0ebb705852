"""
The stage manager: decides, from per-epoch numbers only, when a stage has ended, which pot
to split, whether a split paid off, and when to stop. It holds no model; the trainer acts
on its decisions (open a pot, take or restore a snapshot, kick) and reports numbers back.
"""

import math
from dataclasses import asdict, dataclass, field
from typing import Any, Dict, List, Optional

#: How the parent of a new pot is chosen: the open pot with the largest total
#: reconstruction loss ("recon": it explains the most badly), or with the most data ("usage").
PARENT_RULES = ("recon", "usage")


@dataclass
class Decision:
    """One decision of the stage manager, with the reason and the numbers behind it.

    ``action`` is ``continue`` (train on), ``unlock`` (open ``pot`` split from ``parent``
    and kick it), ``reject`` (restore the snapshot taken before ``pot`` was opened; the
    manager has stopped) or ``stop``.
    """

    action: str
    epoch: int
    stage: int
    pot: Optional[int] = None
    parent: Optional[int] = None
    reason: str = ""
    numbers: Dict[str, Any] = field(default_factory=dict)


class StageManager:
    """
    The curriculum's state machine.

    Call :meth:`observe` once per epoch with a loss that is **comparable across numbers of
    open pots** (e.g. a held-out negative ELBO without the logit prior's normaliser, which
    grows by about a nat per open pot), the fraction of data each open pot takes, and a
    per-pot misfit (total reconstruction loss of the data the pot explains).

    - A stage ends on a plateau: after at least ``min_stage_epochs`` epochs (kick epochs
      excluded), the exponentially smoothed loss has not improved on its stage best by a
      relative ``rel_tol`` for ``patience`` epochs.
    - At the end of the first stage, and of every stage whose unlock was accepted, the next
      closed pot (lowest id) is opened, split from a parent chosen by ``parent_rule``.
    - At the end of a stage that began with an unlock, the unlock is accepted when the new
      pot holds at least ``min_usage`` of the data and the stage's best loss beats the
      previous stage's best by at least ``min_gain`` (relative). Otherwise the trainer
      restores the snapshot taken before the unlock and the curriculum stops.
    - It also stops when every pot is open (after the last stage ends) or when
      :meth:`stop` is called (the epoch budget).

    Every decision other than ``continue`` is appended to :attr:`log`.

    :param int num_pots: K_max.
    :param int start_pots: pots open at the start (ids ``0..start_pots-1``).
    """

    def __init__(
        self,
        num_pots: int,
        start_pots: int,
        min_stage_epochs: int,
        patience: int,
        rel_tol: float,
        smoothing: float,
        min_gain: float,
        min_usage: float,
        kick_epochs: int,
        parent_rule: str,
    ) -> None:
        if not 1 <= start_pots <= num_pots:
            raise ValueError(f"start_pots must be in 1..{num_pots}, got {start_pots}")
        if parent_rule not in PARENT_RULES:
            raise ValueError(f"parent_rule must be one of {PARENT_RULES}, got {parent_rule!r}")
        if not 0 < smoothing <= 1:
            raise ValueError(f"smoothing must be in (0, 1], got {smoothing}")
        self.num_pots = num_pots
        self.min_stage_epochs = min_stage_epochs
        self.patience = patience
        self.rel_tol = rel_tol
        self.smoothing = smoothing
        self.min_gain = min_gain
        self.min_usage = min_usage
        self.kick_epochs = kick_epochs
        self.parent_rule = parent_rule
        # -- state (all of it in state_dict) --
        self.open: List[int] = list(range(start_pots))
        self.stage = 0
        self.epoch = 0
        self.stage_epochs = 0
        self.smoothed: Optional[float] = None
        self.stage_best = math.inf
        self.since_best = 0
        self.stage_bests: List[float] = []
        self.kick_remaining = 0
        self.pending: Optional[Dict[str, Any]] = None  # the unlock under evaluation
        self.snapshot: Any = None  # the trainer's state before the pending unlock
        self.stopped = False
        self.stop_reason = ""
        self.log: List[Dict[str, Any]] = []

    # -- the per-epoch step ----------------------------------------------------------
    def observe(self, loss: float, usage: Dict[int, float], misfit: Dict[int, float]) -> Decision:
        """Take one epoch's numbers and return what to do next."""
        if self.stopped:
            raise RuntimeError("the curriculum has stopped; observe() takes no more epochs")
        if not math.isfinite(loss):
            raise ValueError(f"the monitored loss must be finite, got {loss}")
        self.epoch += 1
        if self.kick_remaining > 0:  # the kick explores; its losses judge nothing
            self.kick_remaining -= 1
            return self._decide("continue")
        self._track(loss)
        if not self._plateau():
            return self._decide("continue")
        return self._end_stage(usage, misfit)

    def stop(self, reason: str) -> Decision:
        """Stop from outside (the epoch budget); a pending unlock is judged first."""
        if self.stopped:
            return Decision("stop", self.epoch, self.stage, reason=self.stop_reason)
        return self._finish(reason, {})

    # -- internals -------------------------------------------------------------------
    def _track(self, loss: float) -> None:
        self.stage_epochs += 1
        a = self.smoothing
        self.smoothed = loss if self.smoothed is None else a * loss + (1 - a) * self.smoothed
        first = not math.isfinite(self.stage_best)
        if first or self.smoothed < self.stage_best - self.rel_tol * abs(self.stage_best):
            self.stage_best = self.smoothed
            self.since_best = 0
        else:
            self.since_best += 1

    def _plateau(self) -> bool:
        return self.stage_epochs >= self.min_stage_epochs and self.since_best >= self.patience

    def _end_stage(self, usage: Dict[int, float], misfit: Dict[int, float]) -> Decision:
        numbers = {"stage_best": self.stage_best, "stage_epochs": self.stage_epochs}
        if self.pending is not None:
            verdict = self._judge(usage)
            if verdict is not None:
                return verdict
        self.stage_bests.append(self.stage_best)
        if len(self.open) == self.num_pots:
            return self._finish("every pot is open (K_max reached)", numbers)
        return self._unlock(usage, misfit, numbers)

    def _judge(self, usage: Dict[int, float]) -> Optional[Decision]:
        """Accept the pending unlock (returns None) or reject it (returns the decision)."""
        new, previous = self.pending["pot"], self.pending["previous_best"]
        gain = (previous - self.stage_best) / (abs(previous) or 1.0)
        share = usage.get(new, 0.0)
        numbers = {
            "gain": gain,
            "min_gain": self.min_gain,
            "usage": share,
            "min_usage": self.min_usage,
            "previous_best": previous,
            "stage_best": self.stage_best,
        }
        if share >= self.min_usage and gain >= self.min_gain:
            reason = "the new pot holds data and the loss improved"
            parent = self.pending["parent"]
            self.pending = None
            self._decide("accept", pot=new, parent=parent, numbers=numbers, reason=reason)
            return None
        why = (
            f"new pot {new} holds {share:.3f} of the data (< {self.min_usage})"
            if share < self.min_usage
            else f"relative gain {gain:.4f} < min_gain {self.min_gain}"
        )
        return self._reject(why, numbers, stop_reason=f"split rejected: {why}")

    def _unlock(self, usage, misfit, numbers) -> Decision:
        score = misfit if self.parent_rule == "recon" else usage
        parent = max(self.open, key=lambda k: score.get(k, -math.inf))
        new = min(set(range(self.num_pots)) - set(self.open))
        self.pending = {"pot": new, "parent": parent, "previous_best": self.stage_best}
        self.open.append(new)
        self.stage += 1
        self.stage_epochs = 0
        self.smoothed = None
        self.stage_best = math.inf
        self.since_best = 0
        self.kick_remaining = self.kick_epochs
        numbers = {**numbers, "parent_rule": self.parent_rule, "parent_score": score.get(parent)}
        return self._decide(
            "unlock",
            pot=new,
            parent=parent,
            numbers=numbers,
            reason=f"plateau; split pot {parent} ({self.parent_rule} rule)",
        )

    def _finish(self, reason: str, numbers: Dict[str, Any]) -> Decision:
        if self.pending is not None:  # stopping mid-judgement: the unlock was not shown to help
            why = f"{reason} before the split of pot {self.pending['pot']} was judged"
            return self._reject(why, numbers, stop_reason=why)
        self.stopped, self.stop_reason = True, reason
        return self._decide("stop", reason=reason, numbers=numbers)

    def _reject(self, reason: str, numbers: Dict[str, Any], stop_reason: str) -> Decision:
        """Close the pending pot again (the trainer restores its snapshot) and stop."""
        pot, parent = self.pending["pot"], self.pending["parent"]
        self.open.remove(pot)
        self.pending = None
        self.stopped, self.stop_reason = True, stop_reason
        return self._decide("reject", pot=pot, parent=parent, reason=reason, numbers=numbers)

    def _decide(self, action: str, **kw) -> Decision:
        decision = Decision(action, self.epoch, self.stage, **kw)
        if action != "continue":
            self._record(decision)
        return decision

    def _record(self, decision: Decision) -> None:
        self.log.append(asdict(decision))

    # -- checkpointing ---------------------------------------------------------------
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
        "snapshot",
        "stopped",
        "stop_reason",
        "log",
    )

    def state_dict(self) -> Dict[str, Any]:
        """Everything needed to resume exactly (plain Python values and the snapshot)."""
        return {name: _copy(getattr(self, name)) for name in self._STATE}

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        missing = [name for name in self._STATE if name not in state]
        if missing:
            raise ValueError(f"stage-manager state lacks {missing}")
        for name in self._STATE:
            setattr(self, name, _copy(state[name]))


def _copy(value):
    """A copy deep enough that later mutation of one side cannot change the other."""
    if isinstance(value, dict):
        return {k: _copy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_copy(v) for v in value]
    return value
