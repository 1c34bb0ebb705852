"""The parts that decide K by evidence: a split's paired held-out gain and its noise, the
split proposals, the retry of a rejected parent, and the kick as one object."""

import math

import numpy as np
import pytest
import torch
from scipy.sparse.csgraph import laplacian
from scipy.sparse.linalg import ArpackNoConvergence
from sklearn.metrics import adjusted_rand_score
from sklearn.neighbors import kneighbors_graph
from test_curriculum_parts import _trainer

from pyro_pots import PotsVAE, pots_mask
from pyro_pots.curriculum import Decision, proposals
from pyro_pots.curriculum.kick import NO_TARGET, Kick
from pyro_pots.curriculum.neighbours import cut_ratio
from pyro_pots.curriculum.normality import CRITICAL_1E4, split_normality, whitened
from pyro_pots.curriculum.proposals import parse_proposals, proposal_order, propose
from pyro_pots.training.stage_scores import (
    controlled_gain,
    heldout_pots,
    normality_tests,
    paired_gain,
)


def _rings(n=600, seed=0):
    """Two concentric rings: no straight cut separates them."""
    g = np.random.default_rng(seed)
    labels = np.arange(n) % 2
    angle = g.uniform(0, 2 * np.pi, n)
    radius = np.where(labels == 0, 1.0, 3.0) + 0.1 * g.standard_normal(n)
    return torch.tensor(np.c_[radius * np.cos(angle), radius * np.sin(angle)]), labels


def test_paired_gain_is_the_mean_difference_with_its_standard_error():
    g = torch.Generator().manual_seed(0)
    before = 10 + torch.randn(200, generator=g, dtype=torch.float64)
    after = before - 0.3 + 0.5 * torch.randn(200, generator=g, dtype=torch.float64)
    d = (before - after).numpy()
    got = paired_gain(before, after)
    se = d.std(ddof=1) / math.sqrt(len(d))
    assert got["gain"] == pytest.approx(d.mean(), rel=1e-12)
    assert got["se"] == pytest.approx(se, rel=1e-9)
    assert got["z"] == pytest.approx(d.mean() / se, rel=1e-9)
    # pairing removes the rows' own spread: the unpaired standard error is far larger
    assert se < 0.5 * math.sqrt(before.var().item() / 200 + after.var().item() / 200)


def test_paired_gain_of_identical_losses_is_zero_and_not_evidence():
    rows = torch.arange(10, dtype=torch.float64)
    assert paired_gain(rows, rows) == {"gain": 0.0, "se": 0.0, "z": 0.0}


def test_controlled_gain_is_the_parents_gain_less_the_other_rows():
    g = torch.Generator().manual_seed(1)
    before = 10 + torch.randn(300, generator=g, dtype=torch.float64)
    after = before - 0.2 + 0.3 * torch.randn(300, generator=g, dtype=torch.float64)
    parent = torch.arange(300) % 3 == 0
    after[parent] -= 0.5  # the split's own gain, on top of the stage's 0.2 everywhere
    d = (before - after).numpy()
    p, o = d[parent.numpy()], d[~parent.numpy()]
    se = math.sqrt(p.var(ddof=1) / len(p) + o.var(ddof=1) / len(o))
    got = controlled_gain(before, after, parent)
    assert got["parent_gain"] == pytest.approx(p.mean(), rel=1e-12)
    assert got["control_gain"] == pytest.approx(o.mean(), rel=1e-12)
    assert got["split_gain"] == pytest.approx(p.mean() - o.mean(), rel=1e-12)
    assert got["split_se"] == pytest.approx(se, rel=1e-9)
    assert got["split_z"] == pytest.approx((p.mean() - o.mean()) / se, rel=1e-9)
    assert got["parent_rows"] == 100
    assert got["split_gain"] == pytest.approx(0.5, abs=0.1)  # the stage's 0.2 is gone
    # a stage that gains the same everywhere is no evidence for the split
    flat = controlled_gain(before, before - 0.2, parent)
    assert flat["parent_gain"] == pytest.approx(0.2) and flat["split_gain"] == pytest.approx(0)


def test_controlled_gain_without_other_rows_has_no_control():
    before = torch.tensor([3.0, 2.0, 4.0], dtype=torch.float64)
    got = controlled_gain(
        before, before - torch.tensor([1.0, 2.0, 3.0]), torch.ones(3, dtype=torch.bool)
    )
    assert got["control_gain"] == 0.0 and got["control_se"] == 0.0
    assert got["split_gain"] == pytest.approx(2.0) and got["split_se"] == pytest.approx(
        math.sqrt(1 / 3)
    )


def test_the_spectral_proposal_separates_rings_that_two_means_cuts_across():
    x, labels = _rings()
    spectral = propose("spectral", x, 0)
    straight = propose("two_means", x, 0)
    assert adjusted_rand_score(labels, spectral) == 1.0
    assert adjusted_rand_score(labels, straight) < 0.05
    assert (spectral == 1).sum() <= (spectral == 0).sum()  # the larger half stays


def _fail_arpack(*args, **kwargs):
    raise ArpackNoConvergence("no convergence (forced by the test)", np.zeros(0), np.zeros((0, 0)))


@pytest.mark.parametrize("dense_rows", [4000, 10])  # the dense fallback, then LOBPCG
def test_the_spectral_proposal_survives_arpack_not_converging(monkeypatch, dense_rows):
    """ARPACK's shift-invert failed on a shifted-templates parent (0 an eigenvalue of high
    multiplicity); the fallbacks must give the same Fiedler vector and the same split."""
    g = np.random.default_rng(0)  # two overlapping blobs: a connected graph, lambda_2 simple
    blobs = g.standard_normal((400, 2)) + np.c_[3.0 * (np.arange(400) % 2), np.zeros(400)]
    graph = kneighbors_graph(blobs, proposals.SPECTRAL_NEIGHBOURS, include_self=False)
    lap = laplacian(0.5 * (graph + graph.T), normed=True)
    dense = np.linalg.eigh(lap.toarray())[1][:, 1]  # independent: every eigenpair, numpy
    assert abs(proposals.fiedler_vector(lap, 0) @ dense) == pytest.approx(1.0, abs=1e-6)
    monkeypatch.setattr(proposals, "eigsh", _fail_arpack)
    monkeypatch.setattr(proposals, "DENSE_ROWS", dense_rows)
    assert abs(proposals.fiedler_vector(lap, 0) @ dense) == pytest.approx(1.0, abs=1e-4)
    x, labels = _rings()  # two components: the fallbacks still part them
    assert adjusted_rand_score(labels, propose("spectral", x, 0)) == 1.0


def _beside_a_nuisance(n=600, seed=0):
    """Two clusters 5 apart along one axis, beside a Gaussian nuisance direction with 5x
    their spread: 2-means cuts along the nuisance, across both clusters."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % 2
    x = torch.randn(n, 3, generator=g, dtype=torch.float64)
    x[:, 0] += 5.0 * labels
    x[:, 1] *= 5.0
    rotation, _ = torch.linalg.qr(torch.randn(3, 3, generator=g, dtype=torch.float64))
    return x @ rotation, labels.numpy()


def test_whitened_codes_have_unit_covariance_and_drop_unused_directions():
    g = torch.Generator().manual_seed(0)
    codes = torch.randn(500, 3, generator=g, dtype=torch.float64) * torch.tensor([4.0, 1.0, 0.05])
    white = whitened(codes @ torch.linalg.qr(torch.randn(3, 3, generator=g).double())[0])
    assert white.shape == (500, 2)  # the direction with 0.05 / 4 of the spread is dropped
    assert torch.allclose(torch.cov(white.T), torch.eye(2, dtype=torch.float64), atol=1e-10)
    assert whitened(torch.ones(10, 2)).shape == (10, 0)
    assert split_normality(whitened(torch.ones(10, 2))) == 0.0


def test_whitening_finds_clusters_a_wide_nuisance_direction_hides():
    x, labels = _beside_a_nuisance()
    assert split_normality(x) < CRITICAL_1E4  # along the nuisance: one Gaussian blob
    assert adjusted_rand_score(labels, propose("two_means", x, 0)) < 0.05
    assert split_normality(whitened(x)) > 10 * CRITICAL_1E4
    # the statistic on whitened codes does not depend on their scale or orientation
    a = torch.tensor([[2.0, 0.3, 0.0], [0.0, 0.5, 1.0], [1.0, 0.0, 3.0]], dtype=torch.float64)
    assert split_normality(whitened(x @ a)) == pytest.approx(split_normality(whitened(x)))
    rows = torch.zeros(len(x), 5)  # what the rows are does not matter to this proposal
    assert adjusted_rand_score(labels, propose("codes", rows, 0, codes=x)) > 0.95


def test_the_codes_proposal_needs_the_rows_codes():
    with pytest.raises(ValueError, match="latent codes of the same rows"):
        propose("codes", torch.zeros(6, 2), 0)
    with pytest.raises(ValueError, match="latent codes of the same rows"):
        propose("codes", torch.zeros(6, 2), 0, codes=torch.zeros(5, 2))
    assert parse_proposals("two_means,codes") == ("two_means", "codes")


def _split_pot_zero(t, potts_rows=None):
    """Train ``t`` one epoch, then split pot 0 into pot 1 as the trainer does on an
    unlock; returns the epoch's :meth:`evaluate` numbers (the split's baseline)."""
    t.train_epoch()
    ev = t.evaluate()
    t.manager.open.append(1)
    t.manager.pending = {"pot": 1, "parent": 0, "attempt": 0}
    t.act(Decision("unlock", 1, 1, pot=1, parent=0), ev["scores"], ev["heldout_rows"], potts_rows)
    return ev


def test_a_codes_proposal_splits_the_parents_rows_by_their_codes():
    t = _trainer(**{"curriculum.split_proposals": "codes"})
    scores = _split_pot_zero(t)["scores"]
    rows = (t.kick.targets != NO_TARGET).nonzero().squeeze(-1)
    expected = propose("two_means", whitened(scores.codes[0][rows]), 1)
    got = (t.kick.targets[rows] == 1).long().numpy()
    assert len(rows) > 0 and adjusted_rand_score(expected, got) == 1.0


SPECTRAL_FIRST = {"curriculum.split_proposals": "spectral,two_means"}
HIDDEN = {"rows": 0.3, "codes": 0.2, "whitened": 40.0}  # modes only whitening shows


@pytest.mark.parametrize(
    "proposals, tests, order",
    [
        (("spectral", "two_means"), HIDDEN, ("codes", "spectral")),  # as many in all
        (("spectral", "two_means", "codes"), HIDDEN, ("codes", "spectral", "two_means")),
        (("two_means",), HIDDEN, ("codes",)),
        # the raw codes show the modes, the rows do not (measured on the nuisance set)
        (("spectral", "two_means"), {"rows": 0.5, "codes": 38.4}, ("codes", "spectral")),
        # the rows show modes too: split the rows as configured
        (("spectral", "two_means"), {**HIDDEN, "rows": 5.0}, ("spectral", "two_means")),
        # one blob by every test (a retry's parent), or no test at all: as configured
        (("spectral", "two_means"), {**HIDDEN, "whitened": 1.0}, ("spectral", "two_means")),
        (("spectral", "two_means"), {}, ("spectral", "two_means")),
    ],
)
def test_a_pot_whose_codes_but_not_rows_show_modes_is_split_on_its_codes_first(
    proposals, tests, order
):
    assert tuple(proposal_order(proposals, tests, CRITICAL_1E4)) == order


def test_normality_tests_are_the_split_test_on_codes_rows_and_whitened_codes():
    t = _trainer()
    t.manager.open.append(1)
    t.vae.open_pots([0, 1])
    scores = t.evaluate()["scores"]
    own = scores.resp.argmax(-1)
    got = normality_tests(scores, t.train_x, 3, whitened_codes=True)
    assert set(got) == {0, 1}
    for j, pot in enumerate(scores.pots.tolist()):
        codes = scores.codes[j][own == j]
        assert got[pot] == {
            "codes": split_normality(codes, 3),
            "rows": split_normality(t.train_x[own == j], 3),
            "whitened": split_normality(whitened(codes), 3),
        }
    assert set(normality_tests(scores, t.train_x, 3)[0]) == {"codes", "rows"}


def test_a_pot_whose_rows_look_normal_gets_the_codes_proposal_noted_and_kept_for_retries():
    t = _trainer(**{**SPECTRAL_FIRST, "curriculum.normality_whitened": True})
    t.train_epoch()
    ev = t.evaluate()
    t.normality_tests = {0: dict(HIDDEN)}  # what the stage end would have measured
    decision = t.manager.open_pot(0, "by hand", ev["usage"], {0: 1.0}, {0: 40.0})
    t.act(decision, ev["scores"], ev["heldout_rows"])
    assert t.manager.log[-1]["numbers"]["proposal"] == "codes"
    assert t.manager.log[-1]["numbers"]["normality_tests"] == HIDDEN
    # how far the proposal itself follows the neighbour graph, noted beside it
    graph = t.neighbour_prior.neighbours
    noted = t.manager.log[-1]["numbers"]["proposal_cut_ratio"]
    assert noted == cut_ratio(t.kick.targets, graph, 0, decision.pot)
    rows = (t.kick.targets != NO_TARGET).nonzero().squeeze(-1)
    expected = propose("two_means", whitened(ev["scores"].codes[0][rows]), decision.pot)
    got = (t.kick.targets[rows] == decision.pot).long().numpy()
    assert adjusted_rand_score(expected, got) == 1.0
    # the retry's stage end measures the split, not the parent: the order stays
    t.normality_tests = {0: {"rows": 9.0, "codes": 9.0, "whitened": 9.0}}
    assert t.proposals_for(0, 1) == ("codes", "spectral")
    assert t.proposals_for(0, 0) == ("spectral", "two_means")  # a new first attempt
    # without the whitened test the configured order stands, as before it
    plain = _trainer(**{**SPECTRAL_FIRST, "curriculum.normality_whitened": False})
    plain.normality_tests = {0: dict(HIDDEN)}
    assert plain.proposals_for(0, 0) == ("spectral", "two_means")


def test_the_manager_notes_how_the_trainer_carried_out_its_last_unlock():
    t = _trainer()
    assert not t.manager.note_unlock(1, proposal="spectral")  # nothing logged yet
    t.train_epoch()
    ev = t.evaluate()
    decision = t.manager.open_pot(0, "by hand", ev["usage"], {0: 1.0}, {0: 9.0})
    assert not t.manager.note_unlock(decision.pot + 1, proposal="spectral")  # another pot
    assert t.manager.note_unlock(decision.pot, proposal="spectral")
    assert t.manager.log[-1]["numbers"]["proposal"] == "spectral"


def test_proposals_leave_too_few_distinct_rows_with_the_parent():
    same = torch.ones(10, 3)
    assert (propose("spectral", same, 0) == 0).all() and (propose("two_means", same, 0) == 0).all()


def test_proposal_lists_are_checked():
    assert parse_proposals("two_means, spectral") == ("two_means", "spectral")
    with pytest.raises(ValueError, match="unknown split proposal"):
        parse_proposals("two_means,kmeans")
    with pytest.raises(ValueError, match="unknown split proposal"):
        propose("kmeans", torch.zeros(4, 2), 0)


def test_a_retry_starts_the_kick_on_the_next_proposal_from_the_same_baseline():
    t = _trainer(**{"curriculum.split_proposals": "two_means,spectral"})
    ev = _split_pot_zero(t)
    baseline = ev["heldout_rows"]
    first = t.kick.targets.clone()
    t.train_epoch()  # the split trains; the retry must not take this state as its baseline
    later = t.evaluate(full=False)["heldout_rows"]
    t.manager.pending = {"pot": 1, "parent": 0, "attempt": 1}
    t.act(Decision("unlock", 2, 1, pot=1, parent=0, restore=True, attempt=1), ev["scores"], later)
    assert torch.equal(t.pre_split["heldout_rows"], baseline)
    rows = first != NO_TARGET
    expected = propose("spectral", t.train_x[rows], 1)
    # the same rows, split by the spectral proposal (up to which half is called the new pot)
    assert torch.equal(t.kick.targets != NO_TARGET, rows)
    got = (t.kick.targets[rows] == 1).long().numpy()
    assert adjusted_rand_score(expected, got) == 1.0


def test_stage_end_evidence_pairs_the_heldout_rows_with_the_baseline():
    t = _trainer()
    ev = _split_pot_zero(t)
    t.train_epoch()
    after = t.evaluate(full=False)["heldout_rows"]
    end = t.stage_end_scores(after)
    expected = paired_gain(ev["heldout_rows"], after)
    # beside the gain the evidence records the split's cut, when its boundary is defined
    assert {key: end["evidence"][key] for key in expected} == expected
    assert set(end["evidence"]) - set(expected) <= {
        "cut_ratio",
        "cut_contrast",
        "inner_cut_0",
        "inner_cut_1",
    }
    assert set(end) == {"misfit", "normality", "agreement", "evidence", "potts_rows", "scores"}


def test_a_split_keeps_the_heldout_rows_that_were_its_parents():
    t = _trainer(**{"curriculum.neighbour_weight": 1.0, "curriculum.neighbours": 4})
    t.train_epoch()
    ev = t.evaluate()
    pots = t.vae.responsibilities(t.heldout_x, t.vae.active).argmax(-1)
    assert torch.equal(heldout_pots(t.vae, t.heldout_x), pots)
    before = t.potts_rows(ev["scores"])
    t.manager.open.append(1)
    t.manager.pending = {"pot": 1, "parent": 0, "attempt": 0}
    t.act(Decision("unlock", 1, 1, pot=1, parent=0), ev["scores"], ev["heldout_rows"], before)
    assert torch.equal(t.pre_split["parent_rows"], pots == 0)
    t.train_epoch()
    end = t.stage_end_scores(t.evaluate(full=False)["heldout_rows"])
    expected = controlled_gain(before, end["potts_rows"], pots == 0)
    assert {k: end["evidence"][k] for k in expected} == expected


def test_kick_state_round_trip_and_its_handler_only_while_kicking():
    kick = Kick(6, weight=10.0, temperature=1.0)
    kick.start(2, torch.tensor([0, 2, -1, -1, 0, 2]))
    other = Kick(6, weight=10.0, temperature=1.0)
    other.load_state_dict(kick.state_dict())
    assert torch.equal(other.targets, kick.targets) and other.pot == 2
    kick.clear()
    assert (kick.targets == NO_TARGET).all() and (other.targets != NO_TARGET).any()
    vae = PotsVAE(4, num_pots=3, hidden_dim=8, decoder_hidden_dim=8)
    x, active = torch.rand(5, 4), pots_mask(3, [0, 1, 2])
    with other.handler(kicking=False):
        plain = vae.model(x, active)
    assert plain is not None  # a no-op handler
    with pytest.raises(ValueError, match="targets must have shape"):
        kick.start(1, torch.zeros(3, dtype=torch.long))


SCREEN_ALL = {"curriculum.screen_cut_ratio": 0.2, "curriculum.screen_first_proposals": True}


def test_a_proposal_on_the_codes_is_kicked_whatever_its_cut(monkeypatch):
    codes_first = {"curriculum.split_proposals": "codes,spectral"}
    t = _trainer(**{**codes_first, "curriculum.normality_whitened": False})
    assert t.manager.screen_first_proposals and t.manager.screen_cut_ratio > 0
    t.train_epoch()
    ev = t.evaluate()
    monkeypatch.setattr("pyro_pots.training.trainer.cut_ratio", lambda *args: 0.5)
    decision = t.manager.open_pot(0, "by hand", ev["usage"], {0: 1.0}, {0: 40.0})
    t.act(decision, ev["scores"], ev["heldout_rows"])
    assert [e["action"] for e in t.manager.log] == ["unlock"]
    assert t.manager.log[-1]["numbers"]["proposal"] == "codes"
    assert t.manager.log[-1]["numbers"]["proposal_cut_ratio"] == 0.5
    assert t.manager.pending["attempt"] == 0 and (t.kick.targets == decision.pot).any()


def test_by_default_a_parents_first_proposal_is_screened(monkeypatch):
    t = _trainer(**SPECTRAL_FIRST)
    t.train_epoch()
    ev = t.evaluate()
    monkeypatch.setattr("pyro_pots.training.trainer.cut_ratio", lambda *args: 0.5)
    decision = t.manager.open_pot(0, "by hand", ev["usage"], {0: 1.0}, {0: 40.0})
    t.act(decision, ev["scores"], ev["heldout_rows"])
    assert [e["action"] for e in t.manager.log][:3] == ["unlock", "reject", "unlock"]
    assert t.manager.log[1]["numbers"]["screened"]


def test_a_screened_proposal_is_never_kicked_and_the_next_follows_at_once(monkeypatch):
    """Every proposal cutting half the graph (``cut_ratio`` forced to 0.5): both proposals
    of the only parent are undone before their kicks, the model is left as it was before
    the unlock, and the curriculum stops with no pot left to split."""
    t = _trainer(**{**SPECTRAL_FIRST, **SCREEN_ALL})
    t.train_epoch()
    ev = t.evaluate()
    before = {k: v.clone() for k, v in t.vae.state_dict().items()}
    monkeypatch.setattr("pyro_pots.training.trainer.cut_ratio", lambda *args: 0.5)
    decision = t.manager.open_pot(0, "by hand", ev["usage"], {0: 1.0}, {0: 40.0})
    t.act(decision, ev["scores"], ev["heldout_rows"])
    actions = [(e["action"], e["numbers"].get("proposal")) for e in t.manager.log]
    assert actions == [
        ("unlock", "spectral"),
        ("reject", None),
        ("unlock", "two_means"),
        ("reject", None),
        ("stop", None),
    ]
    assert all(e["numbers"]["screened"] for e in t.manager.log if e["action"] == "reject")
    assert t.manager.stopped and "no pot left to split" in t.manager.stop_reason
    assert t.manager.open == [0] and t.pre_split is None
    assert (t.kick.targets == NO_TARGET).all()
    after = t.vae.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before if k != "active")


def test_a_proposal_apart_in_the_graph_is_kicked_with_the_screen_on():
    t = _trainer(**{**SPECTRAL_FIRST, "curriculum.screen_cut_ratio": 0.2})
    t.train_epoch()
    ev = t.evaluate()
    decision = t.manager.open_pot(0, "by hand", ev["usage"], {0: 1.0}, {0: 40.0})
    t.act(decision, ev["scores"], ev["heldout_rows"])
    assert t.manager.log[-1]["numbers"]["proposal_cut_ratio"] <= t.manager.screen_cut_ratio
    assert t.manager.pending is not None and (t.kick.targets == decision.pot).any()


def test_after_a_parents_proposals_are_undone_the_next_parents_held_out_rows_are_its_own(
    monkeypatch,
):
    """The controlled gain compares the held-out rows of the pot being split with the rest:
    when the curriculum moves on to another parent, they are that parent's rows."""
    t = _trainer(**{**SPECTRAL_FIRST, **SCREEN_ALL})
    t.manager.open = [0, 1]
    t.vae.open_pots([0, 1])
    t.train_epoch()
    ev = t.evaluate()
    potts = t.potts_rows(ev["scores"])
    cuts = iter([0.5, 0.5])  # pot 0's two proposals are screened, pot 1's first is not
    monkeypatch.setattr("pyro_pots.training.trainer.cut_ratio", lambda *a: next(cuts, 0.0))
    both = {0: 40.0, 1: 40.0}
    decision = t.manager.open_pot(0, "by hand", ev["usage"], {0: 1.0, 1: 0.5}, both)
    t.act(decision, ev["scores"], ev["heldout_rows"], potts)
    assert t.manager.pending["parent"] == 1 and t.manager.tried == [0]
    held = heldout_pots(t.vae, t.heldout_x)
    assert torch.equal(t.pre_split["parent_rows"], held == 1)
    assert not torch.equal(held == 0, held == 1)  # the first parent's rows would differ
