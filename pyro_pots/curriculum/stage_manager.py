"""
The stage manager: decides, from per-epoch numbers only, when a stage has ended, which pot
to split, whether a split paid off, and when to stop. It holds no model and no model state;
the trainer acts on its decisions (open a pot, take or restore its pre-split state, kick)
and reports numbers back.
"""

import math
from dataclasses import asdict, replace
from typing import Any, Dict, List, Optional, Tuple

from pyro_pots.curriculum.decisions import Decision
from pyro_pots.curriculum.manager_state import ManagerState
from pyro_pots.curriculum.proposals import ON_CODES

__all__ = ["PARENT_RULES", "Decision", "StageManager", "judged_evidence"]

#: How the parent of a new pot is chosen among the candidates: the least normal codes
#: ("normality"), the largest total misfit ("recon": it explains its data worst), or the
#: most data ("usage").
PARENT_RULES = ("normality", "recon", "usage")


def judged_evidence(evidence: Dict[str, float]) -> Tuple[float, float, float]:
    """
    The ``(gain, se, z)`` a split is judged by: the weaker (smaller ``z``) of the paired
    gain over all held-out rows (``gain``, ``se``, ``z``) and, when the trainer measured
    it, the gain controlled for the stage's training (``split_gain``, ``split_se``,
    ``split_z``; :func:`~pyro_pots.training.stage_scores.controlled_gain`). Each has a
    confound the other lacks: over all rows, one more stage of training counts as gain
    (splits that faded on ``synthetic:k=8`` read z up to 8); the controlled gain assumes the
    split leaves the other pots' rows alone, which a split that drifts does not (it moves
    rows between pots: the other rows lost 0.7-3.3 nats each on breast cancer and the
    ``nuisance`` set, and ``split_z`` read 3-5.5 where ``z`` read -0.4 to 2.2).
    """
    plain = (evidence["gain"], evidence["se"], evidence["z"])
    if "split_z" not in evidence:
        return plain
    controlled = (evidence["split_gain"], evidence["split_se"], evidence["split_z"])
    return min(plain, controlled, key=lambda numbers: numbers[2])


class StageManager(ManagerState):
    """
    The curriculum's state machine.

    Call :meth:`observe` once per epoch with a held-out loss that is **comparable across
    numbers of open pots** (:func:`~pyro_pots.model.scoring.mixture_loss`), the share of
    the data each open pot takes, each pot's misfit (total negative ELBO of its data) and,
    when the normality rule is on, each pot's normality statistic
    (:func:`~pyro_pots.curriculum.normality.split_normality`).

    - **Stage end**: a plateau. After at least ``min_stage_epochs`` epochs (kick epochs
      excluded), the exponentially smoothed loss has not improved on its stage best by a
      relative ``rel_tol`` for ``patience`` epochs.
    - **Judging a split** (at the end of a stage that began with an unlock): the new pot and
      its parent must each hold at least ``min_usage`` of the data once the kick is over and
      the routing is the model's own, and, when ``min_agreement > 0``, the split must have
      stayed where the kick put it: the adjusted Rand index between the kick's two-way
      targets and the parent's rows' pots at the stage end is at least ``min_agreement`` (a
      split across a real gap keeps its boundary; a cut through one mode drifts until a
      sliver is left, or fades). When ``max_cut_ratio > 0`` its two pots must also be apart
      in the rows' neighbour graph: the edges joining them, as a share of what a random
      split of the same sizes would cut (the evidence's ``cut_ratio``), must not exceed
      ``max_cut_ratio``; and when ``min_cut_contrast > 0`` it must not have cut one mode in
      two: a split whose boundary is within the factor ``min_cut_contrast`` of the sparsest
      cut inside each of its pots (the evidence's ``cut_contrast``; a cut through one
      low-dimensional mode is sparse against a random split, yet as dense as the cuts inside
      its halves) and whose held-out gain is not above zero is undone. When ``min_evidence_z
      > 0`` the data must also support it: its paired held-out gain must be at least
      ``min_evidence_z`` standard errors above zero. **Evidence overrides drift** (and the
      graph tests): a split whose paired held-out gain is at least ``evidence_z`` standard
      errors above zero is kept however far it moved from the proposal (the model found a
      better boundary than the proposal's; measured: a split that moved to its own partition
      and gained 0.63 nats per row had been undone as drift). A split that faded, drifted
      without that evidence or lacked the evidence ``min_evidence_z`` asks for is rejected:
      the trainer restores its state from before the unlock, the pot is closed again, and
      the parent gets its next split proposal (one of ``proposals`` per parent); once all of
      them are rejected it is marked as tried and the next candidate is split at once; after
      ``max_fades`` parents in a row the curriculum stops. With ``heldout_stop``, a split
      must also beat the previous stage's best loss by ``min_gain`` nats per row; if it does
      not, the snapshot is restored and the curriculum stops (the greedy held-out rule).
    - **Small pots apart**: a new pot below ``min_usage`` is not faded when it holds at
      least ``min_usage_apart`` and its boundary with its parent cuts at most
      ``max_cut_ratio_apart`` of what a random split would (a small mode apart in the
      graph, not a sliver of one); the other tests still judge it.
    - **Prune**: at each stage end, an open pot that lost its data to later splits (below
      ``min_usage``, or below ``min_usage_apart`` for a pot kept as apart) is closed.
    - **Unlock**: the candidates are the open pots not yet tried since the last accepted
      split and, when ``normality_critical > 0``, whose normality statistic exceeds it (the
      pot's codes are not one Gaussian blob). The parent is the candidate with the largest
      score under ``parent_rule``; the next closed pot (lowest id) is opened and kicked for
      ``kick_epochs``, and a retry of the same parent ``retry_kick_factor`` times longer
      than the attempt before it (:meth:`kick_length`).
    - **Stop**: no candidate is left (every pot looks like one blob, or every split tried
      faded), every pot is open, the greedy held-out rule fires, or :meth:`stop` is called
      (the epoch budget; a split not yet judged is then undone).

    Every argument is required: their defaults live in one place,
    :class:`~pyro_pots.config.CurriculumConfig`.

    Every decision other than ``continue`` is appended to :attr:`log` with its reason and
    the numbers behind it.

    :param int num_pots: K_max.
    :param int start_pots: pots open at the start (ids ``0..start_pots-1``).
    :param str parent_rule: ``normality`` (least normal), ``recon`` (largest misfit) or
        ``usage`` (most data).
    :param float normality_critical: split only pots whose normality statistic exceeds
        this; 0 switches the test off.
    :param bool heldout_stop: stop at the first split that does not gain ``min_gain``.
    :param float min_usage_apart: the least share of a new pot below ``min_usage`` that is
        kept (and later pruned) as a small mode apart in the graph; 0 switches this off.
    :param float max_cut_ratio_apart: the most a new pot's boundary with its parent may
        cut (the evidence's ``cut_ratio``) for the pot to count as apart.
    :param int max_fades: parents in a row whose every split proposal faded or drifted
        before the curriculum stops.
    :param float min_agreement: the least agreement (adjusted Rand index) between a split's
        kick targets and where its rows are at the stage end; 0 switches the test off.
    :param float max_cut_ratio: the most edges of the neighbour graph a split's two pots may
        share, as a share of what a random split of the same sizes would cut (the
        evidence's ``cut_ratio``); 0 switches the test off.
    :param float min_cut_contrast: the least factor between the boundary's cut ratio and
        the sparsest cut inside one of its two pots (the evidence's ``cut_contrast``,
        :mod:`~pyro_pots.curriculum.gaps`); below it, and with no held-out gain, the split
        cut one mode in two; 0 switches the test off.
    :param float evidence_z: a split whose held-out gain is at least this many standard
        errors above zero is never undone as drift; 0 switches the override off.
    :param float min_evidence_z: a split whose held-out gain is less than this many
        standard errors above zero is undone as unsupported; 0 switches the test off.
    :param int proposals: split proposals a parent gets before it is marked as tried.
    :param float screen_cut_ratio: with ``max_cut_ratio`` on, undo a split before its
        kick when its proposal's own cut ratio in the neighbour graph exceeds this
        (:meth:`screen`); 0 switches the screen off.
    :param bool screen_first_proposals: screen a parent's first proposal too (false: only
        its retries; the first is always kicked). A proposal on the latent codes is never
        screened (:meth:`screens`).
    """

    def __init__(
        self,
        num_pots: int,
        *,
        start_pots: int,
        min_stage_epochs: int,
        patience: int,
        rel_tol: float,
        smoothing: float,
        min_usage: float,
        min_usage_apart: float,
        max_cut_ratio_apart: float,
        kick_epochs: int,
        retry_kick_factor: float,
        parent_rule: str,
        normality_critical: float,
        heldout_stop: bool,
        min_gain: float,
        max_fades: int,
        min_agreement: float,
        max_cut_ratio: float,
        min_cut_contrast: float,
        evidence_z: float,
        min_evidence_z: float,
        proposals: int,
        screen_cut_ratio: float = 0.0,
        screen_first_proposals: bool = True,
    ) -> None:
        if not 1 <= start_pots <= num_pots:
            raise ValueError(f"start_pots must be in 1..{num_pots}, got {start_pots}")
        if parent_rule not in PARENT_RULES:
            raise ValueError(f"parent_rule must be one of {PARENT_RULES}, got {parent_rule!r}")
        if not 0 < smoothing <= 1:
            raise ValueError(f"smoothing must be in (0, 1], got {smoothing}")
        if proposals < 1:
            raise ValueError(f"proposals must be >= 1, got {proposals}")
        if not retry_kick_factor >= 1:
            raise ValueError(f"retry_kick_factor must be >= 1, got {retry_kick_factor}")
        self.num_pots = num_pots
        self.min_stage_epochs = min_stage_epochs
        self.patience = patience
        self.rel_tol = rel_tol
        self.smoothing = smoothing
        self.min_usage = min_usage
        self.min_usage_apart = min_usage_apart
        self.max_cut_ratio_apart = max_cut_ratio_apart
        self.kick_epochs = kick_epochs
        self.retry_kick_factor = retry_kick_factor
        self.parent_rule = parent_rule
        self.normality_critical = normality_critical
        self.heldout_stop = heldout_stop
        self.min_gain = min_gain
        self.max_fades = max_fades
        self.min_agreement = min_agreement
        self.max_cut_ratio = max_cut_ratio
        self.min_cut_contrast = min_cut_contrast
        self.evidence_z = evidence_z
        self.min_evidence_z = min_evidence_z
        self.proposals = proposals
        self.screen_cut_ratio = screen_cut_ratio
        self.screen_first_proposals = screen_first_proposals
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
        self.tried: List[int] = []  # parents whose split faded since the last accepted one
        self.protected: List[int] = []  # pots never chosen as a parent (see protect)
        self.apart: List[int] = []  # small pots kept because they are apart in the graph
        self.stopped = False
        self.stop_reason = ""
        self.log: List[Dict[str, Any]] = []

    # -- the per-epoch step ----------------------------------------------------------
    def observe(
        self,
        loss: float,
        usage: Dict[int, float],
        misfit: Dict[int, float],
        normality: Optional[Dict[int, float]] = None,
        agreement: Optional[float] = None,
        evidence: Optional[Dict[str, float]] = None,
    ) -> Decision:
        """Take one epoch's numbers and return what to do next. ``normality``,
        ``agreement`` and ``evidence`` (of the pending split: its paired held-out ``gain``
        in nats per row, the gain's standard error ``se`` and ``z = gain / se``; see the
        class docstring) are only read at the end of a stage, so they may be None on other
        epochs (the trainer computes them when :meth:`would_end_stage` says so)."""
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
        return self._end_stage(usage, misfit, normality or {}, agreement, evidence)

    def would_end_stage(self, loss: float) -> bool:
        """Whether observing ``loss`` now would end the stage (so the trainer computes the
        normality statistics only then). Changes no state."""
        if self.stopped or self.kick_remaining > 0:
            return False
        saved = (self.stage_epochs, self.smoothed, self.stage_best, self.since_best)
        self._track(loss)
        ends = self._plateau()
        self.stage_epochs, self.smoothed, self.stage_best, self.since_best = saved
        return ends

    def stop(self, reason: str) -> Decision:
        """Stop from outside (the epoch budget); a split not yet judged is undone."""
        if self.stopped:
            return Decision("stop", self.epoch, self.stage, reason=self.stop_reason)
        if self.pending is not None:
            why = f"{reason} before the split of pot {self.pending['pot']} was judged"
            return self._reject(why, {}, stop=True)
        return self._finish(reason, {})

    def note_unlock(self, pot: int, **numbers: Any) -> bool:
        """Add ``numbers`` to the logged unlock of ``pot`` when it is the last decision: how
        the trainer carried it out (the split proposal it used), so that ``stages.json``
        says it beside the why. Returns whether it was (an unlock the trainer was handed
        from elsewhere, as by hand, is not in this log)."""
        last = self.log[-1] if self.log else {}
        if last.get("action") != "unlock" or last.get("pot") != pot:
            return False
        last.setdefault("numbers", {}).update(numbers)
        return True

    def grow(self, numbers: Dict[str, Any]) -> Decision:
        """Go on after a stop, on new data (``fit --resume-from``): the open pots stay, and a
        new stage starts with fresh plateau tracking (losses on other data are not
        comparable with the old ones). Logged as ``grow`` with ``numbers`` (where the new
        data went)."""
        self.stopped, self.stop_reason = False, ""
        self.pending, self.tried, self.kick_remaining = None, [], 0
        self.stage += 1
        self.stage_epochs, self.smoothed, self.stage_best, self.since_best = 0, None, math.inf, 0
        reason = "new data: the open pots stay and the curriculum may open more"
        return self._decide("grow", numbers=numbers, reason=reason)

    def protect(self, pots) -> List[int]:
        """Keep the open ``pots`` out of the split candidates from now on: the plateau rule
        never chooses one as a parent (however large or non-normal it is); :meth:`open_pot`
        still may. A protected pot that is pruned is let go (its id may reopen as a new
        pot). Returns the protected pots; saved in :meth:`state_dict`, and recorded as
        ``protected`` in the numbers of each later ``unlock``."""
        pots = [int(pot) for pot in pots]
        closed = [pot for pot in pots if pot not in self.open]
        if closed:
            raise ValueError(f"only open pots can be protected, not {closed}")
        self.protected = sorted(set(self.protected) | set(pots))
        return list(self.protected)

    def unprotect(self, pots) -> List[int]:
        """Let ``pots`` be split candidates again. Returns the pots still protected."""
        gone = {int(pot) for pot in pots}
        self.protected = [pot for pot in self.protected if pot not in gone]
        return list(self.protected)

    def open_pot(
        self,
        parent: int,
        reason: str,
        usage: Dict[int, float],
        misfit: Dict[int, float],
        normality: Optional[Dict[int, float]] = None,
        numbers: Optional[Dict[str, Any]] = None,
    ) -> Decision:
        """Open the next closed pot now, split from ``parent`` by its first proposal,
        outside the plateau rule (a protected parent too): a new stage starts with the kick,
        and the split is judged at its end like any other (a rejected one is undone and the
        curriculum goes on by its own rule, from ``usage``, ``misfit`` and ``normality``,
        the numbers the candidates are then chosen by). Logged as ``unlock`` with
        ``reason`` and the usual numbers plus ``numbers``; returns that decision."""
        if self.stopped:
            raise RuntimeError("the curriculum has stopped; no pot can be opened")
        if self.pending is not None:
            raise ValueError(f"the split of pot {self.pending['pot']} is not judged yet")
        if parent not in self.open:
            raise ValueError(f"the parent {parent} is not an open pot (open: {self.open})")
        if len(self.open) >= self.num_pots:
            raise ValueError(f"every pot is open ({self.num_pots})")
        if not reason:
            raise ValueError("a pot opened outside the plateau rule needs its reason")
        decision = self._unlock(usage, misfit, normality or {}, {}, retry=(parent, 0))
        extra = dict(numbers or {})
        decision = replace(decision, reason=reason, numbers={**decision.numbers, **extra})
        self.log[-1] = asdict(decision)
        return decision

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

    def _end_stage(self, usage, misfit, normality, agreement, evidence) -> Decision:
        numbers = {"stage_best": self.stage_best, "stage_epochs": self.stage_epochs}
        if self.pending is not None:
            verdict = self._judge(usage, agreement, evidence, numbers)
            if verdict is not None:
                return verdict  # undone: the restored state is the one before the split
        self._prune(usage)
        self.stage_bests.append(self.stage_best)
        if len(self.open) == self.num_pots:
            return self._finish("every pot is open (K_max reached)", numbers)
        return self._unlock(usage, misfit, normality, numbers)

    def _prune(self, usage: Dict[int, float]) -> None:
        """Close pots that lost their data to later splits, once the stage's split (if
        any) is accepted; each is logged as ``prune``."""
        for pot in list(self.open):
            floor = self.min_usage_apart if pot in self.apart else self.min_usage
            if usage.get(pot, 0.0) < floor and len(self.open) > 1:
                self.open.remove(pot)
                numbers = {"usage": usage.get(pot, 0.0), "min_usage": floor}
                self._decide("prune", pot=pot, numbers=numbers, reason="the pot lost its data")
        self.apart = [pot for pot in self.apart if pot in self.open]  # the pruned go

    def _judge(self, usage, agreement, evidence, numbers) -> Optional[Decision]:
        """Accept the pending split (returns None), or reject it: retry with another
        proposal or parent after a fade or a drift, stop when the held-out rule fires."""
        new, parent = self.pending["pot"], self.pending["parent"]
        share, kept = usage.get(new, 0.0), usage.get(parent, 0.0)
        previous = self.pending["previous_best"]
        gain = previous - self.stage_best
        numbers.update(usage=share, parent_usage=kept, min_usage=self.min_usage)
        numbers.update(previous_best=previous, gain=gain)
        if agreement is not None:
            numbers.update(agreement=agreement, min_agreement=self.min_agreement)
        ev_gain = ev_se = ev_z = None
        if evidence is not None:
            numbers.update(evidence=dict(evidence), evidence_z=self.evidence_z)
            ev_gain, ev_se, ev_z = judged_evidence(evidence)
        proven = (
            self.evidence_z > 0 and ev_z is not None and ev_gain > 0 and ev_z >= self.evidence_z
        )
        why = None
        apart = self._is_apart(share, kept, (evidence or {}).get("cut_ratio"))
        if apart:
            numbers.update(apart=True, min_usage_apart=self.min_usage_apart)
        if min(share, kept) < self.min_usage and not apart:
            # either side emptied: the data did not take the split (a parent that lost all
            # its rows to the new pot is a relabelling, not a split)
            faded, left = (new, share) if share <= kept else (parent, kept)
            role = "new pot" if faded == new else "parent"
            why = f"{role} {faded} faded to {left:.3f} of the data (< min_usage {self.min_usage})"
        elif self.min_agreement > 0 and agreement is not None and agreement < self.min_agreement:
            if not proven:
                why = (
                    f"the split drifted from where the kick put it (agreement {agreement:.3f} "
                    f"< min_agreement {self.min_agreement})"
                )
            else:
                numbers.update(drift_overridden=True)
        cut = (evidence or {}).get("cut_ratio")
        if why is None and self.max_cut_ratio > 0 and cut is not None:
            numbers.update(max_cut_ratio=self.max_cut_ratio)
            if cut > self.max_cut_ratio and not proven:
                why = (
                    f"the split cuts through its rows' neighbour graph (cut ratio {cut:.3f} > "
                    f"max_cut_ratio {self.max_cut_ratio})"
                )
        contrast = (evidence or {}).get("cut_contrast")
        if why is None and self.min_cut_contrast > 0 and contrast is not None:
            # two weak signals, vetoing only together: on digits, splits between digit
            # classes reach contrasts of 1.4-1.9 too, but the held-out data support them
            numbers.update(min_cut_contrast=self.min_cut_contrast)
            if contrast < self.min_cut_contrast and ev_gain <= 0:
                why = (
                    f"the split cut one mode in two: its boundary is as dense as the cuts "
                    f"inside its pots (cut contrast {contrast:.2f} < min_cut_contrast "
                    f"{self.min_cut_contrast}) and the held-out data do not support it "
                    f"(gain {ev_gain:.4f} nats/row, z {ev_z:.2f})"
                )
        if why is None and self.min_evidence_z > 0 and evidence is not None:
            numbers.update(min_evidence_z=self.min_evidence_z)
            if ev_z < self.min_evidence_z:
                why = (
                    f"the data did not support the split (held-out gain {ev_gain:.4f} "
                    f"+- {ev_se:.4f} nats/row, z {ev_z:.2f} < min_evidence_z "
                    f"{self.min_evidence_z})"
                )
        if why is not None:
            return self._undo(why, numbers)
        if self.heldout_stop and gain < self.min_gain:
            why = f"held-out gain {gain:.4f} nats/row < min_gain {self.min_gain}"
            return self._reject(why, numbers, stop=True)
        self.pending = None
        self.tried = []
        reason = "the new pot holds data after the kick"
        if apart:
            self.apart.append(new)
            reason = (
                f"the new pot holds {share:.3f} of the data (< min_usage {self.min_usage}), a "
                f"small mode apart from its parent in the graph (cut ratio "
                f"{evidence['cut_ratio']:.3f} <= max_cut_ratio_apart {self.max_cut_ratio_apart})"
            )
        if numbers.get("drift_overridden"):
            reason = (
                f"the split moved from its proposal (agreement {agreement:.3f}) but its "
                f"held-out gain {ev_gain:.4f} +- {ev_se:.4f} nats/row is "
                f"{ev_z:.1f} standard errors above zero (>= evidence_z "
                f"{self.evidence_z})"
            )
        self._decide("accept", pot=new, parent=parent, numbers=dict(numbers), reason=reason)
        return None

    def _undo(self, why: str, numbers: Dict[str, Any]) -> Decision:
        """Reject the pending split and go on with the next proposal or parent; stop when
        this was the last proposal of the ``max_fades``-th parent in a row."""
        exhausted = self._next_attempt(self.pending["parent"], self.pending["attempt"]) is None
        if exhausted and len(self.tried) + 1 >= self.max_fades:
            why += f"; the splits of {self.max_fades} parents in a row were undone"
            return self._reject(why, numbers, stop=True)
        return self._reject(why, numbers, stop=False)

    def screens(self, cut: Optional[float], proposal: Optional[str] = None) -> bool:
        """Whether the pending split's ``proposal`` (a key of
        :data:`~pyro_pots.curriculum.proposals.PROPOSALS`), whose own cut ratio in the
        neighbour graph is ``cut`` (None: no graph or no boundary), is undone before its
        kick (:meth:`screen`). A parent's first proposal is screened only with
        ``screen_first_proposals``. A proposal on the latent codes
        (:data:`~pyro_pots.curriculum.proposals.ON_CODES`) is never screened: it is made
        where the rows look like one blob and the whitened codes do not, so the rows'
        graph before any training says nothing of it; and the parent's retry is proposed
        on the rows the parent keeps at the end of its stage."""
        if self.screen_cut_ratio <= 0 or self.max_cut_ratio <= 0 or cut is None:
            return False
        if self.pending is None or proposal in ON_CODES:
            return False
        if self.pending["attempt"] == 0 and not self.screen_first_proposals:
            return False
        return cut > self.screen_cut_ratio

    def screen(self, cut: float) -> Decision:
        """Undo the pending split before its kick: its proposal already cuts ``cut`` >
        ``screen_cut_ratio`` of what a random split of its rows would, and a kick teaches
        the proposal, so the stage would likely end with a split the graph test
        (``max_cut_ratio``) undoes. The parent's next proposal (or the next parent) follows
        at once, as after a rejection; logged as ``reject`` with ``screened``."""
        numbers = {"proposal_cut_ratio": cut, "screen_cut_ratio": self.screen_cut_ratio}
        numbers["screened"] = True
        why = (
            f"its proposal cuts through its rows' neighbour graph before any training (cut "
            f"ratio {cut:.3f} > screen_cut_ratio {self.screen_cut_ratio}); not kicked"
        )
        return self._undo(why, numbers)

    def _is_apart(self, share: float, kept: float, cut: Optional[float]) -> bool:
        """Whether a new pot below ``min_usage`` is a small mode apart from its parent in
        the neighbour graph (kept down to ``min_usage_apart``) rather than a sliver: it is
        the smaller side, holds at least ``min_usage_apart`` and its boundary cuts at most
        ``max_cut_ratio_apart`` of what a random split would."""
        if self.min_usage_apart <= 0 or cut is None or share >= self.min_usage:
            return False
        return self.min_usage_apart <= share < kept and cut <= self.max_cut_ratio_apart

    def _unlock(
        self,
        usage,
        misfit,
        normality,
        numbers,
        restore: bool = False,
        retry: Optional[Tuple[int, int]] = None,
    ) -> Decision:
        """Open the next closed pot, split from the best candidate parent by its first
        proposal, or from ``retry = (parent, attempt)`` by that proposal."""
        score = {"normality": normality, "recon": misfit, "usage": usage}[self.parent_rule]
        self.protected = [k for k in self.protected if k in self.open]  # the pruned go
        candidates = [k for k in self.open if k not in self.tried and k not in self.protected]
        if self.normality_critical > 0:
            candidates = [k for k in candidates if normality.get(k, 0.0) > self.normality_critical]
        numbers = {**numbers, "normality": dict(normality), "tried": list(self.tried)}
        if self.protected:
            numbers["protected"] = list(self.protected)
        if not candidates and retry is None:
            why = (
                "no pot left to split: every open pot's codes look like one Gaussian blob "
                f"(normality <= {self.normality_critical}) or its split faded"
            )
            if self.protected:
                why += f", or it is protected ({self.protected})"
            return self._finish(why, numbers, restore=restore)
        if retry is None:
            parent, attempt = max(candidates, key=lambda k: score.get(k, -math.inf)), 0
        else:
            parent, attempt = retry
        new = min(set(range(self.num_pots)) - set(self.open))
        self.pending = {
            "pot": new,
            "parent": parent,
            "attempt": attempt,
            "previous_best": self.stage_bests[-1] if self.stage_bests else math.inf,
            "scores": {"usage": dict(usage), "misfit": dict(misfit), "normality": dict(normality)},
        }
        self.open.append(new)
        self.stage += 1
        self.stage_epochs = 0
        self.smoothed = None
        self.stage_best = math.inf
        self.since_best = 0
        self.kick_remaining = self.kick_length(attempt)
        numbers = {**numbers, "parent_rule": self.parent_rule, "parent_score": score.get(parent)}
        reason = f"plateau; split pot {parent} ({self.parent_rule} rule)"
        if retry is not None:
            numbers["proposal"] = attempt
            reason = f"split pot {parent} again, by its split proposal {attempt + 1}"
        return self._decide(
            "unlock",
            pot=new,
            parent=parent,
            restore=restore,
            attempt=attempt,
            numbers=numbers,
            reason=reason,
        )

    def kick_length(self, attempt: int) -> int:
        """Epochs of the kick of a parent's ``attempt``-th split (0 the first):
        ``kick_epochs * retry_kick_factor ** attempt``, rounded up. A split whose kick ended
        before the two pots' decoders had parted can be relabelled (the new pot takes
        every row) or fade; its retry gets longer to part them."""
        return math.ceil(self.kick_epochs * self.retry_kick_factor**attempt)

    def _reject(self, reason: str, numbers: Dict[str, Any], stop: bool) -> Decision:
        """Undo the pending split (the trainer restores its pre-split state); then stop, or
        retry at once with the parent's next proposal or the next candidate parent."""
        pot, parent = self.pending["pot"], self.pending["parent"]
        scores, attempt = self.pending["scores"], self.pending["attempt"]
        self.open.remove(pot)
        self.pending = None
        retry = self._next_attempt(parent, attempt)
        if retry is None:
            self.tried.append(parent)
        rejected = dict(pot=pot, parent=parent, attempt=attempt, reason=reason, numbers=numbers)
        if stop:
            self.stopped, self.stop_reason = True, f"split rejected: {reason}"
            return self._decide("reject", restore=True, **rejected)
        self._decide("reject", restore=True, **rejected)
        return self._unlock(
            scores["usage"], scores["misfit"], scores["normality"], {}, restore=True, retry=retry
        )

    def _next_attempt(self, parent: int, attempt: int) -> Optional[Tuple[int, int]]:
        """The retry of a rejected split: the parent's next proposal, if it has one. A
        protected parent gets none: only :meth:`open_pot` splits it (a grown run's seed),
        and the curriculum's own splits leave it whole."""
        if attempt + 1 >= self.proposals or parent in self.protected:
            return None
        return parent, attempt + 1

    def _finish(self, reason: str, numbers: Dict[str, Any], restore: bool = False) -> Decision:
        self.stopped, self.stop_reason = True, reason
        return self._decide("stop", reason=reason, numbers=numbers, restore=restore)

    def _decide(self, action: str, **kw) -> Decision:
        decision = Decision(action, self.epoch, self.stage, **kw)
        if action != "continue":
            self._record(decision)
        return decision

    def _record(self, decision: Decision) -> None:
        self.log.append(asdict(decision))
