"""The stage manager's decisions on scripted loss sequences."""

import json
import math

import pytest

from pyro_pots.curriculum import StageManager
from pyro_pots.curriculum.stage_manager import judged_evidence

SETTINGS = dict(
    start_pots=1,
    min_stage_epochs=3,
    patience=2,
    rel_tol=0.01,
    smoothing=1.0,
    min_usage=0.05,
    min_usage_apart=0.0,
    max_cut_ratio_apart=0.02,
    kick_epochs=2,
    retry_kick_factor=1.0,
    parent_rule="recon",
    heldout_stop=True,
    min_gain=0.1,
    normality_critical=0.0,
    max_fades=3,
    min_agreement=0.0,
    max_cut_ratio=0.0,
    min_cut_contrast=0.0,
    evidence_z=0.0,
    min_evidence_z=0.0,
    proposals=1,
)


def manager(num_pots=4, **changes):
    return StageManager(num_pots, **{**SETTINGS, **changes})


def feed(m, losses, usage=None, misfit=None, normality=None, agreement=None, evidence=None):
    """Feed losses until a non-continue decision; return it and how many were used."""
    for i, loss in enumerate(losses, 1):
        open_usage = usage or {k: 1 / len(m.open) for k in m.open}
        misfit_now = misfit or {k: float(k) for k in m.open}
        d = m.observe(loss, open_usage, misfit_now, normality, agreement, evidence)
        if d.action != "continue":
            return d, i
    return None, len(losses)


def test_plateau_after_min_stage_length_opens_the_next_pot():
    m = manager()
    d, used = feed(m, [10, 9, 8, 8, 8, 8, 8])
    # improves at epochs 1-3, then 2 epochs without improvement -> plateau at epoch 5
    assert (d.action, d.pot, d.parent, used) == ("unlock", 1, 0, 5)
    assert m.open == [0, 1] and m.kick_remaining == 2 and m.stage == 1
    assert d.numbers["stage_best"] == 8


def test_no_plateau_before_min_stage_epochs():
    m = manager(min_stage_epochs=6)
    d, used = feed(m, [5, 5, 5, 5, 5, 5])
    assert d.action == "unlock" and used == 6


def test_small_improvements_below_rel_tol_count_as_plateau():
    m = manager(rel_tol=0.05)
    d, used = feed(m, [100, 99, 98, 97, 96, 95])  # 1 % steps < 5 % tolerance
    assert d.action == "unlock" and used == 3


def test_kick_epochs_are_not_judged():
    m = manager()
    feed(m, [10, 9, 8, 8, 8])
    # two kick epochs with wild losses, then a new stage
    assert m.observe(1e6, {0: 1.0}, {0: 0.0}).action == "continue"
    assert m.observe(-1e6, {0: 1.0}, {0: 0.0}).action == "continue"
    assert m.kick_remaining == 0 and m.stage_epochs == 0 and m.smoothed is None


def test_greedy_heldout_rule_accepts_then_rejects_too_little_gain_and_stops():
    m = manager()
    feed(m, [10, 9, 8, 8, 8])  # stage 0, best 8 -> unlock 1
    d, _ = feed(m, [0, 0] + [7, 6, 5, 5, 5])  # kick, then best 5: gain 3 nats
    assert (d.action, d.pot) == ("unlock", 2)
    assert [e["action"] for e in m.log] == ["unlock", "accept", "unlock"]
    d, _ = feed(m, [0, 0] + [5, 4.92, 4.92, 4.92, 4.92])  # gain 0.08 < min_gain 0.1
    assert (d.action, d.pot, d.restore) == ("reject", 2, True)
    assert "held-out gain" in d.reason and m.stopped and m.open == [0, 1]
    assert d.numbers["gain"] == pytest.approx(0.08)
    with pytest.raises(RuntimeError, match="stopped"):
        m.observe(1.0, {}, {})


def test_without_the_heldout_rule_a_split_without_gain_is_kept():
    m = manager(heldout_stop=False)
    feed(m, [10, 9, 8, 8, 8])
    d, _ = feed(m, [0, 0] + [9, 9, 9, 9, 9])  # worse than stage 0, but the pot holds data
    assert (d.action, d.pot) == ("unlock", 2) and m.open == [0, 1, 2]


def test_a_faded_split_is_undone_and_the_next_parent_is_tried_at_once():
    m = manager(start_pots=2, heldout_stop=False)
    d, _ = feed(m, [10, 9, 8, 8, 8], misfit={0: 5.0, 1: 1.0})
    assert (d.action, d.parent, d.pot) == ("unlock", 0, 2)
    d, _ = feed(m, [0, 0, 7, 6, 5, 5, 5], usage={0: 0.5, 1: 0.49, 2: 0.01})
    # the split of pot 0 faded: undone, and pot 1 (next by misfit) is split instead
    assert (d.action, d.parent, d.pot, d.restore) == ("unlock", 1, 2, True)
    assert [e["action"] for e in m.log] == ["unlock", "reject", "unlock"]
    assert "faded to 0.010" in m.log[1]["reason"] and m.tried == [0] and not m.stopped
    assert d.numbers["parent_score"] == 1.0  # scored with the numbers of the pre-split state


def test_a_split_that_empties_the_parent_is_a_fade_too():
    m = manager(start_pots=2, heldout_stop=False)
    feed(m, [10, 9, 8, 8, 8], misfit={0: 5.0, 1: 1.0})
    d, _ = feed(m, [0, 0, 7, 6, 5, 5, 5], usage={0: 0.0, 1: 0.5, 2: 0.5})  # all moved
    assert m.log[1]["action"] == "reject" and "parent 0 faded to 0.000" in m.log[1]["reason"]
    assert (d.action, d.parent, d.restore) == ("unlock", 1, True)


@pytest.mark.parametrize("agreement, kept", [(0.49, False), (0.5, True), (None, True)])
def test_a_split_that_drifted_from_the_kick_is_undone(agreement, kept):
    m = manager(start_pots=2, heldout_stop=False, min_agreement=0.5)
    feed(m, [10, 9, 8, 8, 8], misfit={0: 5.0, 1: 1.0})
    # both sides hold data, so only the agreement can reject the split
    d, _ = feed(m, [0, 0, 7, 6, 5, 5, 5], usage={0: 0.3, 1: 0.4, 2: 0.3}, agreement=agreement)
    assert m.log[1]["action"] == ("accept" if kept else "reject")
    if not kept:
        assert "drifted" in m.log[1]["reason"] and "0.490 < min_agreement 0.5" in m.log[1]["reason"]
        assert (d.action, d.parent, d.restore) == ("unlock", 1, True) and m.tried == [0]
    if agreement is not None:
        assert m.log[1]["numbers"]["agreement"] == agreement


def test_the_agreement_test_is_off_at_zero():
    m = manager(start_pots=2, heldout_stop=False, min_agreement=0.0)
    feed(m, [10, 9, 8, 8, 8], misfit={0: 5.0, 1: 1.0})
    feed(m, [0, 0, 7, 6, 5, 5, 5], usage={0: 0.3, 1: 0.4, 2: 0.3}, agreement=0.0)
    assert m.log[1]["action"] == "accept"


STRONG = {"gain": 0.63, "se": 0.05, "z": 12.6}  # the hidden set's split, roughly
DRIFTED = {0: 0.3, 1: 0.4, 2: 0.3}  # both sides hold data: only the agreement can veto


@pytest.mark.parametrize(
    "evidence_z, evidence, kept",
    [
        (3.0, STRONG, True),  # far above its noise: kept although it drifted
        (3.0, {"gain": 0.1, "se": 0.05, "z": 2.0}, False),  # within 3 SE: the veto stands
        (3.0, {"gain": -0.6, "se": 0.05, "z": -12.0}, False),  # a loss, however certain
        (3.0, None, False),  # no evidence measured
        (0.0, STRONG, False),  # the override is off
        (4.0, STRONG, True),  # the default
        # the strongest undone split of the benchmark runs (breast cancer, a drift): 3.1 SE
        (4.0, {"gain": 4.659, "se": 1.503, "z": 3.1}, False),
    ],
)
def test_evidence_far_above_its_noise_overrides_a_drift_veto(evidence_z, evidence, kept):
    m = manager(start_pots=2, heldout_stop=False, min_agreement=0.5, evidence_z=evidence_z)
    feed(m, [10, 9, 8, 8, 8], misfit={0: 5.0, 1: 1.0})
    feed(m, [0, 0, 7, 6, 5, 5, 5], usage=DRIFTED, agreement=0.164, evidence=evidence)
    entry = m.log[1]
    assert entry["action"] == ("accept" if kept else "reject")
    if kept:
        assert "12.6 standard errors above zero" in entry["reason"]
        assert entry["numbers"]["evidence"] == STRONG and entry["numbers"]["drift_overridden"]
    else:
        assert "drifted" in entry["reason"]


@pytest.mark.parametrize(
    "min_evidence_z, evidence, kept",
    [
        (2.0, {"gain": 0.2, "se": 0.05, "z": 4.0}, True),
        (2.0, {"gain": 0.05, "se": 0.05, "z": 1.0}, False),  # within its noise
        (2.0, {"gain": -0.1, "se": 0.05, "z": -2.0}, False),  # a loss
        (2.0, None, True),  # nothing measured: the other tests decide
        (0.0, {"gain": -0.1, "se": 0.05, "z": -2.0}, True),  # the test is off
    ],
)
def test_a_split_without_the_evidence_min_evidence_z_asks_for_is_undone(
    min_evidence_z, evidence, kept
):
    m = manager(start_pots=2, heldout_stop=False, min_evidence_z=min_evidence_z)
    feed(m, [10, 9, 8, 8, 8], misfit={0: 5.0, 1: 1.0})
    d, _ = feed(m, [0, 0, 7, 6, 5, 5, 5], usage=DRIFTED, agreement=0.9, evidence=evidence)
    entry = m.log[1]
    assert entry["action"] == ("accept" if kept else "reject")
    if not kept:
        assert "did not support" in entry["reason"] and d.restore
        assert entry["numbers"]["min_evidence_z"] == min_evidence_z


def test_unsupported_splits_of_max_fades_parents_in_a_row_stop_the_curriculum():
    m = manager(num_pots=6, start_pots=3, heldout_stop=False, min_evidence_z=2.0, max_fades=2)
    weak = {"gain": 0.01, "se": 0.05, "z": 0.2}
    usage = {0: 0.3, 1: 0.3, 2: 0.2, 3: 0.2}
    feed(m, [10, 9, 8, 8, 8], misfit={0: 5.0, 1: 4.0, 2: 1.0})
    d, _ = feed(m, [0, 0, 7, 6, 5, 5, 5], usage=usage, misfit={0: 5.0, 1: 4.0}, evidence=weak)
    assert d.action == "unlock" and d.restore  # the next parent is tried at once
    d, _ = feed(m, [0, 0, 7, 6, 5, 5, 5], usage=usage, misfit={0: 5.0, 1: 4.0}, evidence=weak)
    assert (d.action, d.restore) == ("reject", True) and m.stopped
    assert "did not support" in m.stop_reason and "2 parents in a row were undone" in m.stop_reason


# the stage gained everywhere (z 8 over all rows) but the parent's rows no more than the rest
STAGE_ONLY = {"gain": 0.1, "se": 0.0125, "z": 8.0}
STAGE_ONLY.update(split_gain=-0.05, split_se=0.05, split_z=-1.0)
# the other rows lost what the parent's gained (a drift moves rows between pots)
MOVED_ROWS = {"gain": 0.05, "se": 0.025, "z": 2.0, "split_gain": 0.5, "split_se": 0.1}
MOVED_ROWS.update(split_z=5.0)
BOTH = {"gain": 0.3, "se": 0.05, "z": 6.0, "split_gain": 0.5, "split_se": 0.1, "split_z": 5.0}


@pytest.mark.parametrize(
    "evidence, judged, kept",
    [
        (STAGE_ONLY, (-0.05, 0.05, -1.0), False),
        (MOVED_ROWS, (0.05, 0.025, 2.0), False),
        (BOTH, (0.5, 0.1, 5.0), True),
        ({"gain": 0.4, "se": 0.1, "z": 4.0}, (0.4, 0.1, 4.0), True),  # no control measured
    ],
)
def test_a_split_is_judged_by_the_weaker_of_its_two_gains(evidence, judged, kept):
    assert judged_evidence(evidence) == judged
    for keys in ({"evidence_z": 3.0, "min_agreement": 0.5}, {"min_evidence_z": 3.0}):
        m = manager(start_pots=2, heldout_stop=False, **keys)
        feed(m, [10, 9, 8, 8, 8], misfit={0: 5.0, 1: 1.0})
        agreement = 0.164 if "evidence_z" in keys else 0.9
        feed(m, [0, 0, 7, 6, 5, 5, 5], usage=DRIFTED, agreement=agreement, evidence=evidence)
        assert m.log[1]["action"] == ("accept" if kept else "reject")
        assert m.log[1]["numbers"]["evidence"] == evidence


@pytest.mark.parametrize(
    "max_cut_ratio, cut, kept",
    [
        (0.25, 0.31, False),  # the boundary runs through the graph: undone
        (0.25, 0.09, True),  # the pots are nearly apart in the graph
        (0.25, None, True),  # no graph, no cut ratio: the other tests decide
        (0.0, 0.9, True),  # the test is off
    ],
)
def test_a_split_that_cuts_through_the_neighbour_graph_is_undone(max_cut_ratio, cut, kept):
    m = manager(start_pots=2, heldout_stop=False, max_cut_ratio=max_cut_ratio, max_fades=1)
    feed(m, [10, 9, 8, 8, 8], misfit={0: 5.0, 1: 1.0})
    evidence = {"gain": 0.1, "se": 0.05, "z": 2.0}
    if cut is not None:
        evidence["cut_ratio"] = cut
    d, _ = feed(m, [0, 0, 7, 6, 5, 5, 5], usage=DRIFTED, agreement=0.9, evidence=evidence)
    entry = m.log[1]
    assert entry["action"] == ("accept" if kept else "reject")
    if not kept:  # it counts towards max_fades like a drift
        assert "cuts through its rows' neighbour graph (cut ratio 0.310" in entry["reason"]
        assert d.restore and m.stopped and "1 parents in a row were undone" in m.stop_reason


@pytest.mark.parametrize(
    "min_cut_contrast, contrast, gain, kept",
    [
        (2.0, 1.4, -0.08, False),  # as dense as the cuts inside its pots, and no gain
        (2.0, 1.4, 0.3, True),  # ... but the held-out data support it (digit classes)
        (2.0, 7.0, -0.08, True),  # a gap, kept without a gain (late splits on k = 8)
        (2.0, None, -0.08, True),  # no graph: the other tests decide
        (0.0, 1.0, -0.08, True),  # the test is off
    ],
)
def test_a_split_that_cut_one_mode_in_two_is_undone(min_cut_contrast, contrast, gain, kept):
    m = manager(
        start_pots=2,
        heldout_stop=False,
        max_cut_ratio=0.25,
        min_cut_contrast=min_cut_contrast,
        max_fades=1,
    )
    feed(m, [10, 9, 8, 8, 8], misfit={0: 5.0, 1: 1.0})
    evidence = {"gain": gain, "se": 0.04, "z": gain / 0.04, "cut_ratio": 0.055}
    if contrast is not None:
        evidence["cut_contrast"] = contrast
    d, _ = feed(m, [0, 0, 7, 6, 5, 5, 5], usage=DRIFTED, agreement=0.9, evidence=evidence)
    entry = m.log[1]
    assert entry["action"] == ("accept" if kept else "reject")
    if contrast is not None and min_cut_contrast > 0:
        assert entry["numbers"]["min_cut_contrast"] == min_cut_contrast
    if not kept:  # it counts towards max_fades like a drift
        assert "the split cut one mode in two" in entry["reason"]
        assert "(cut contrast 1.40 < min_cut_contrast 2.0)" in entry["reason"]
        assert "(gain -0.0800 nats/row, z -2.00)" in entry["reason"]
        assert d.restore and m.stopped and "1 parents in a row were undone" in m.stop_reason


def test_the_one_mode_test_reads_the_weaker_evidence():
    # the plain gain is positive, the controlled one is not: the weaker one judges
    m = manager(start_pots=2, heldout_stop=False, min_cut_contrast=2.0, max_fades=1)
    feed(m, [10, 9, 8, 8, 8], misfit={0: 5.0, 1: 1.0})
    evidence = {"gain": 0.2, "se": 0.05, "z": 4.0, "cut_contrast": 1.2}
    evidence.update(split_gain=-0.1, split_se=0.05, split_z=-2.0)
    feed(m, [0, 0, 7, 6, 5, 5, 5], usage=DRIFTED, agreement=0.9, evidence=evidence)
    assert m.log[1]["action"] == "reject" and "z -2.00" in m.log[1]["reason"]


def test_evidence_never_keeps_a_split_whose_new_pot_faded():
    m = manager(start_pots=2, heldout_stop=False, min_agreement=0.5, evidence_z=3.0)
    feed(m, [10, 9, 8, 8, 8], misfit={0: 5.0, 1: 1.0})
    feed(m, [0, 0, 7, 6, 5, 5, 5], usage={0: 0.5, 1: 0.49, 2: 0.01}, evidence=STRONG)
    assert m.log[1]["action"] == "reject" and "faded" in m.log[1]["reason"]


def test_a_rejected_parent_gets_its_next_proposal_before_it_is_marked_as_tried():
    m = manager(start_pots=2, heldout_stop=False, proposals=2, max_fades=2)
    d, _ = feed(m, [10, 9, 8, 8, 8], misfit={0: 5.0, 1: 1.0})
    assert (d.parent, d.attempt) == (0, 0)
    faded = {0: 0.5, 1: 0.49, 2: 0.01}
    d, _ = feed(m, [0, 0, 7, 6, 5, 5, 5], usage=faded)
    # the same parent again, by its second proposal, from the restored state
    assert (d.action, d.parent, d.pot, d.attempt, d.restore) == ("unlock", 0, 2, 1, True)
    assert m.tried == [] and "proposal 2" in d.reason and m.pending["attempt"] == 1
    assert (m.log[1]["action"], m.log[1]["attempt"]) == ("reject", 0)
    d, _ = feed(m, [0, 0, 7, 6, 5, 5, 5], usage=faded)
    # both proposals faded: pot 0 is tried, and pot 1 gets its first proposal
    assert (d.action, d.parent, d.attempt) == ("unlock", 1, 0) and m.tried == [0]
    feed(m, [0, 0, 7, 6, 5, 5, 5], usage=faded)
    d, _ = feed(m, [0, 0, 7, 6, 5, 5, 5], usage=faded)
    assert m.stopped and "the splits of 2 parents in a row were undone" in m.stop_reason
    rejects = [e for e in m.log if e["action"] == "reject"]
    assert [(e["parent"], e["attempt"]) for e in rejects] == [(0, 0), (0, 1), (1, 0), (1, 1)]


def test_a_retry_is_kicked_retry_kick_factor_times_longer_than_the_attempt_before():
    m = manager(start_pots=2, heldout_stop=False, proposals=3, kick_epochs=3, retry_kick_factor=1.5)
    assert [m.kick_length(a) for a in range(3)] == [3, math.ceil(4.5), math.ceil(6.75)]
    d, _ = feed(m, [10, 9, 8, 8, 8], misfit={0: 5.0, 1: 1.0})
    assert (d.parent, d.attempt, m.kick_remaining) == (0, 0, 3)
    faded = {0: 0.5, 1: 0.49, 2: 0.01}
    d, _ = feed(m, [0, 0, 0, 0, 0, 7, 6, 5, 5, 5], usage=faded)
    assert (d.parent, d.attempt, m.kick_remaining) == (0, 1, 5)
    d, _ = feed(m, [0] * 5 + [7, 6, 5, 5, 5], usage=faded)
    assert (d.parent, d.attempt, m.kick_remaining) == (0, 2, 7)
    d, _ = feed(m, [0] * 7 + [7, 6, 5, 5, 5], usage=faded)
    # the next parent's first split: the plain kick again
    assert (d.parent, d.attempt, m.kick_remaining) == (1, 0, 3)
    with pytest.raises(ValueError, match="retry_kick_factor"):
        manager(retry_kick_factor=0.5)


def test_a_pot_that_lost_its_data_to_later_splits_is_pruned():
    m = manager(start_pots=3, heldout_stop=False)
    d, _ = feed(m, [10, 9, 8, 8, 8], usage={0: 0.6, 1: 0.4, 2: 0.0})
    assert m.log[0]["action"] == "prune" and m.log[0]["pot"] == 2
    assert (d.action, d.pot) == ("unlock", 2) and m.open == [0, 1, 2]  # id 2 reused


@pytest.mark.parametrize(
    "share, cut, min_usage_apart, kept",
    [
        (0.03, 0.005, 0.02, True),  # below min_usage (0.05), apart in the graph: a small mode
        (0.03, 0.08, 0.02, False),  # as small, but its boundary cuts the graph: a sliver
        (0.01, 0.005, 0.02, False),  # apart, but below min_usage_apart
        (0.03, 0.005, 0.0, False),  # the exemption is off
        (0.03, None, 0.02, False),  # no graph: min_usage alone
        (0.03, 0.005, 0.06, False),  # min_usage_apart above min_usage: nothing qualifies
    ],
)
def test_a_small_new_pot_apart_in_the_graph_is_kept(share, cut, min_usage_apart, kept):
    m = manager(start_pots=2, heldout_stop=False, min_usage_apart=min_usage_apart, max_fades=1)
    feed(m, [10, 9, 8, 8, 8], misfit={0: 5.0, 1: 1.0})
    evidence = {"gain": 0.01, "se": 0.01, "z": 1.0}
    if cut is not None:
        evidence["cut_ratio"] = cut
    usage = {0: 0.6 - share, 1: 0.4, 2: share}
    feed(m, [0, 0, 7, 6, 5, 5, 5], usage=usage, agreement=1.0, evidence=evidence)
    entry = m.log[1]
    assert entry["action"] == ("accept" if kept else "reject")
    if kept:
        assert entry["numbers"]["apart"] and m.apart == [2]
        assert "a small mode apart from its parent in the graph" in entry["reason"]
    else:
        assert "new pot 2 faded to" in entry["reason"] and m.apart == []


def test_an_apart_pot_is_pruned_only_below_min_usage_apart():
    m = manager(start_pots=2, heldout_stop=False, min_usage_apart=0.02, num_pots=6)
    feed(m, [10, 9, 8, 8, 8], misfit={0: 5.0, 1: 1.0})
    small = {"gain": 0.01, "se": 0.01, "z": 1.0, "cut_ratio": 0.005}
    feed(m, [0, 0, 7, 6, 5, 5, 5], usage={0: 0.57, 1: 0.4, 2: 0.03}, evidence=small)
    assert m.apart == [2] and m.log[-1]["action"] == "unlock"  # the next split, of pot 0
    # at the next stage end pot 2 holds 0.03 (kept, < min_usage) and then 0.01 (pruned)
    feed(m, [0, 0, 7, 6, 5, 5, 5], usage={0: 0.37, 1: 0.4, 2: 0.03, 3: 0.2}, evidence=small)
    assert 2 in m.open and not any(e["action"] == "prune" for e in m.log)
    state = json.loads(json.dumps(m.state_dict()))
    assert state["apart"] == [2]
    fresh = manager(start_pots=2, heldout_stop=False, min_usage_apart=0.02, num_pots=6)
    fresh.load_state_dict(state)
    assert fresh.apart == [2]
    feed(m, [0, 0, 7, 6, 5, 5, 5], usage={0: 0.19, 1: 0.4, 2: 0.01, 3: 0.2, 4: 0.2})
    prune = [e for e in m.log if e["action"] == "prune"]
    assert [e["pot"] for e in prune] == [2] and prune[0]["numbers"]["min_usage"] == 0.02
    assert 2 not in m.apart


def test_no_prune_in_a_stage_whose_split_is_undone():
    m = manager(start_pots=3, heldout_stop=False)
    feed(m, [10, 9, 8, 8, 8], usage={0: 0.4, 1: 0.3, 2: 0.3})
    # pot 1 looks empty at the end of the faded split's stage, but the restored state is
    # the one before the split, where it held data: it must stay open
    feed(m, [0, 0, 7, 6, 5, 5, 5], usage={0: 0.5, 1: 0.0, 2: 0.5, 3: 0.0})
    assert [e["action"] for e in m.log[:3]] == ["unlock", "reject", "unlock"]
    assert 1 in m.open


def test_max_fades_in_a_row_stop_the_curriculum():
    m = manager(start_pots=3, heldout_stop=False, max_fades=2)
    feed(m, [10, 9, 8, 8, 8])
    faded = {0: 0.5, 1: 0.3, 2: 0.2, 3: 0.0}
    feed(m, [0, 0, 7, 6, 5, 5, 5], usage=faded)  # first fade: retried
    d, _ = feed(m, [0, 0, 7, 6, 5, 5, 5], usage=faded)  # second fade: stop
    assert (d.action, d.restore) == ("reject", True) and m.stopped and m.open == [0, 1, 2]
    assert "the splits of 2 parents in a row were undone" in m.stop_reason


def test_an_accepted_split_clears_the_tried_parents():
    m = manager(start_pots=2, heldout_stop=False)
    feed(m, [10, 9, 8, 8, 8], misfit={0: 5.0, 1: 1.0})
    feed(m, [0, 0, 7, 6, 5, 5, 5], usage={0: 0.5, 1: 0.5, 2: 0.0})  # fade; pot 1 is tried
    assert m.tried == [0]
    feed(m, [0, 0, 7, 6, 5, 5, 5], usage={0: 0.5, 1: 0.3, 2: 0.2})  # holds: accepted
    assert m.tried == [] and m.log[-2]["action"] == "accept"


def test_normality_rule_splits_the_least_normal_pot_and_stops_when_all_look_normal():
    m = manager(start_pots=3, parent_rule="normality", normality_critical=1.87)
    d, _ = feed(m, [3, 3, 3, 3, 3], normality={0: 2.5, 1: 40.0, 2: 0.3})
    assert (d.action, d.parent, d.pot) == ("unlock", 1, 3)
    m = manager(start_pots=3, parent_rule="recon", normality_critical=1.87)
    d, _ = feed(
        m, [3, 3, 3, 3, 3], misfit={0: 9.0, 1: 1.0, 2: 5.0}, normality={0: 1.0, 1: 3.0, 2: 2.0}
    )
    assert (d.action, d.parent) == ("unlock", 2)  # pot 0 fits worst but looks normal
    m = manager(start_pots=2, parent_rule="normality", normality_critical=1.87)
    d, _ = feed(m, [3, 3, 3, 3, 3], normality={0: 1.0, 1: 1.8})
    assert d.action == "stop" and "one Gaussian blob" in d.reason and m.open == [0, 1]


def test_would_end_stage_changes_nothing():
    m = manager()
    feed(m, [10, 9, 8, 8])
    before = m.state_dict()
    assert m.would_end_stage(8.0) is True and m.would_end_stage(1.0) is False
    assert m.state_dict() == before
    d = m.observe(8.0, {0: 1.0}, {0: 0.0})
    assert d.action == "unlock"


def test_stop_at_k_max():
    m = manager(num_pots=2)
    feed(m, [10, 9, 8, 8, 8])
    d, _ = feed(m, [0, 0, 7, 6, 5, 5, 5])
    assert d.action == "stop" and "K_max" in d.reason and m.open == [0, 1]
    assert [e["action"] for e in m.log] == ["unlock", "accept", "stop"]


def test_budget_stop_rejects_an_unjudged_unlock():
    m = manager()
    feed(m, [10, 9, 8, 8, 8])
    d = m.stop("epoch budget spent")
    assert (d.action, d.restore) == ("reject", True) and m.open == [0]
    assert "budget" in m.stop_reason


def test_parent_rules():
    by_recon = manager()
    d, _ = feed(by_recon, [3, 3, 3, 3, 3], misfit={0: 1.0, 1: 9.0, 2: 4.0})
    by_usage = manager(parent_rule="usage")
    d2, _ = feed(by_usage, [3, 3, 3, 3, 3], usage={0: 0.7, 1: 0.1, 2: 0.2})
    assert d.parent == 0 and d2.parent == 0  # only pot 0 is open at stage 0
    m = manager(start_pots=3)
    d3, _ = feed(m, [3, 3, 3, 3, 3], misfit={0: 1.0, 1: 9.0, 2: 4.0})
    m2 = manager(start_pots=3, parent_rule="usage")
    d4, _ = feed(m2, [3, 3, 3, 3, 3], usage={0: 0.2, 1: 0.1, 2: 0.7})
    assert (d3.parent, d3.pot) == (1, 3) and (d4.parent, d4.pot) == (2, 3)


def test_state_round_trip_resumes_exactly():
    losses = [10, 9, 8, 8, 8, 0, 0, 7, 6, 5, 5, 5, 0, 0, 6, 5, 4, 4, 4]
    straight = manager()
    decisions = [feed(straight, [loss])[0] for loss in losses]
    resumed = manager()
    for loss in losses[:9]:
        feed(resumed, [loss])
    state = json.loads(json.dumps(resumed.state_dict()))  # plain data: survives JSON
    fresh = manager()
    fresh.load_state_dict(state)
    rest = [feed(fresh, [loss])[0] for loss in losses[9:]]
    assert [d and d.action for d in rest] == [d and d.action for d in decisions[9:]]
    assert fresh.state_dict() == straight.state_dict()


@pytest.mark.parametrize(
    "change, problem",
    [
        ({"open": []}, "non-empty list"),
        ({"open": [0, 0]}, "distinct"),
        ({"open": [0, 4]}, "outside 0..3"),
        ({"open": [0, True]}, "outside 0..3"),
        ({"kick_remaining": -1}, "count"),
        ({"pending": {"pot": 1}}, "exactly"),
        (
            {"pending": {"pot": 3, "parent": 0, "attempt": 0, "previous_best": 1.0, "scores": {}}},
            "open",
        ),
        (
            {"pending": {"pot": 1, "parent": 0, "attempt": 1, "previous_best": 1.0, "scores": {}}},
            "proposal",
        ),
        ({"apart": [1, 1]}, "apart must be a list of distinct"),
        ({"apart": [7]}, "apart holds ids outside 0..3"),
    ],
)
def test_a_state_that_no_manager_could_reach_is_refused(change, problem):
    m = manager()
    feed(m, [10, 9, 8, 8, 8])  # an unlock: pots 0 and 1 open, a split of 0 pending
    state = {**m.state_dict(), **change}
    fresh = manager()
    with pytest.raises(ValueError, match=problem):
        fresh.load_state_dict(state)
    assert fresh.open == [0]  # nothing was loaded


def test_bad_settings_and_inputs():
    with pytest.raises(ValueError, match="start_pots"):
        manager(num_pots=2, start_pots=3)
    with pytest.raises(ValueError, match="parent_rule"):
        manager(parent_rule="random")
    with pytest.raises(ValueError, match="finite"):
        manager().observe(math.nan, {0: 1.0}, {0: 1.0})
    with pytest.raises(ValueError, match="lacks"):
        manager().load_state_dict({"open": [0]})


def test_a_proposal_that_already_cuts_through_the_graph_is_screened_before_its_kick():
    m = manager(
        start_pots=2,
        heldout_stop=False,
        max_cut_ratio=0.15,
        screen_cut_ratio=0.2,
        screen_first_proposals=True,
        proposals=2,
        max_fades=2,
    )
    d, _ = feed(m, [10, 9, 8, 8, 8], misfit={0: 5.0, 1: 1.0})
    assert (d.action, d.parent, d.attempt) == ("unlock", 0, 0)
    assert not m.screens(0.2) and not m.screens(None) and m.screens(0.25)
    retry = m.screen(0.25)  # the parent's second proposal, at once: no stage ran
    assert (retry.action, retry.pot, retry.parent, retry.attempt, retry.restore) == (
        "unlock",
        2,
        0,
        1,
        True,
    )
    screened = m.log[-2]
    assert screened["action"] == "reject" and screened["numbers"]["screened"]
    assert screened["numbers"]["proposal_cut_ratio"] == 0.25
    assert "before any training (cut ratio 0.250 > screen_cut_ratio 0.2)" in screened["reason"]
    assert m.kick_remaining == 2 and m.pending["attempt"] == 1
    nxt = m.screen(0.4)  # pot 0 is spent: the next parent, pot 1
    assert (nxt.action, nxt.parent, nxt.attempt) == ("unlock", 1, 0) and m.tried == [0]
    m.screen(0.4)
    last = m.screen(0.4)  # both proposals of the second parent in a row: max_fades
    assert last.action == "reject" and last.restore and m.stopped
    assert "2 parents in a row were undone" in m.stop_reason


def test_by_default_every_proposal_is_screened_but_one_on_the_codes():
    m = manager(
        start_pots=2, heldout_stop=False, max_cut_ratio=0.15, screen_cut_ratio=0.2, proposals=2
    )
    assert m.screen_first_proposals
    d, _ = feed(m, [10, 9, 8, 8, 8], misfit={0: 5.0, 1: 1.0})
    assert (d.action, d.parent, d.attempt) == ("unlock", 0, 0)
    assert m.screens(0.25) and m.screens(0.25, "spectral") and m.screens(0.25, "two_means")
    assert not m.screens(0.9, "codes")  # made where the rows' graph shows no modes: kicked
    assert not m.screens(0.2, "spectral")
    m.screen(0.25)  # the retry, at once
    assert m.pending["attempt"] == 1 and not m.screens(0.9, "codes") and m.screens(0.9)


def test_without_screen_first_proposals_only_a_parents_retries_are_screened():
    """The first proposal is kicked whatever its cut ratio; once its stage is undone, the
    retry (proposed on the rows the parent kept at that stage end) is screened."""
    m = manager(
        start_pots=2,
        heldout_stop=False,
        max_cut_ratio=0.15,
        screen_cut_ratio=0.2,
        proposals=3,
        screen_first_proposals=False,
    )
    d, _ = feed(m, [10, 9, 8, 8, 8], misfit={0: 5.0, 1: 1.0})
    assert (d.action, d.parent, d.attempt) == ("unlock", 0, 0)
    assert not m.screens(0.9)  # the first proposal: kicked
    retry, _ = feed(m, [0, 0, 7, 6, 5, 5, 5], usage={0: 0.5, 1: 0.49, 2: 0.01})  # faded
    assert (retry.parent, retry.attempt) == (0, 1) and m.pending["attempt"] == 1
    assert m.screens(0.25) and not m.screens(0.2) and not m.screens(None)
    third = m.screen(0.25)  # the parent's third proposal follows at once
    assert (third.action, third.parent, third.attempt) == ("unlock", 0, 2)
    assert m.log[-2]["numbers"]["screened"] and m.screens(0.25)


@pytest.mark.parametrize("changes", [{"screen_cut_ratio": 0.0}, {"max_cut_ratio": 0.0}])
def test_without_the_screen_or_the_graph_test_no_proposal_is_screened(changes):
    settings = dict(start_pots=2, heldout_stop=False, max_cut_ratio=0.15, screen_cut_ratio=0.2)
    m = manager(**{**settings, **changes, "screen_first_proposals": True})
    feed(m, [10, 9, 8, 8, 8], misfit={0: 5.0, 1: 1.0})
    assert m.pending is not None and not m.screens(0.9)
