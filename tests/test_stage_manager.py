"""The stage manager's decisions on scripted loss sequences."""

import json
import math

import pytest

from pyro_pots.curriculum import StageManager

SETTINGS = dict(
    start_pots=1,
    min_stage_epochs=3,
    patience=2,
    rel_tol=0.01,
    smoothing=1.0,
    min_gain=0.02,
    min_usage=0.05,
    kick_epochs=2,
    parent_rule="recon",
)


def manager(num_pots=4, **changes):
    return StageManager(num_pots, **{**SETTINGS, **changes})


def feed(m, losses, usage=None, misfit=None):
    """Feed losses until a non-continue decision; return it and how many were used."""
    for i, loss in enumerate(losses, 1):
        open_usage = usage or {k: 1 / len(m.open) for k in m.open}
        d = m.observe(loss, open_usage, misfit or {k: float(k) for k in m.open})
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


def test_accept_then_reject_for_too_little_gain_and_stop():
    m = manager()
    feed(m, [10, 9, 8, 8, 8])  # stage 0, best 8 -> unlock 1
    d, _ = feed(m, [0, 0] + [7, 6, 5, 5, 5])  # kick, then best 5: gain .375
    assert (d.action, d.pot) == ("unlock", 2)
    assert [e["action"] for e in m.log] == ["unlock", "accept", "unlock"]
    d, _ = feed(m, [0, 0] + [5, 4.92, 4.92, 4.92, 4.92])  # gain 1.6 % < 2 %
    assert (d.action, d.pot) == ("reject", 2)
    assert "relative gain" in d.reason and m.stopped and m.open == [0, 1]
    assert d.numbers["gain"] == pytest.approx(0.016)
    with pytest.raises(RuntimeError, match="stopped"):
        m.observe(1.0, {}, {})


def test_reject_when_the_new_pot_gets_too_little_data():
    m = manager()
    feed(m, [10, 9, 8, 8, 8])
    d, _ = feed(m, [0, 0, 7, 6, 5, 5, 5], usage={0: 0.98, 1: 0.02})
    assert d.action == "reject" and "holds 0.020" in d.reason and m.open == [0]


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
    assert d.action == "reject" and m.open == [0] and "budget" in m.stop_reason


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


def test_bad_settings_and_inputs():
    with pytest.raises(ValueError, match="start_pots"):
        manager(num_pots=2, start_pots=3)
    with pytest.raises(ValueError, match="parent_rule"):
        manager(parent_rule="random")
    with pytest.raises(ValueError, match="finite"):
        manager().observe(math.nan, {0: 1.0}, {0: 1.0})
    with pytest.raises(ValueError, match="lacks"):
        manager().load_state_dict({"open": [0]})
