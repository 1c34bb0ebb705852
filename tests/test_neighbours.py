"""The Potts prior over the nearest-neighbour graph (``curriculum/neighbours.py``): the graph,
the loss against an independent computation, its gradients, and the trainer's use of it."""

import copy
import math

import pytest
import torch
from test_curriculum_parts import _trainer

from pyro_pots import PotsVAE
from pyro_pots.curriculum.gaps import inner_cut_ratio
from pyro_pots.curriculum.neighbours import (
    NeighbourPrior,
    conditional_log_prior,
    cut_ratio,
    nearest_among,
    nearest_neighbours,
)
from pyro_pots.distributions import pots_mask
from pyro_pots.model.scoring import PotScores, labelled_loss, mixture_loss, pot_scores
from pyro_pots.training import stage_scores


def test_nearest_neighbours_are_the_k_closest_other_rows():
    x = torch.randn(40, 3, generator=torch.Generator().manual_seed(0))
    ids = nearest_neighbours(x, 4)
    dist = torch.cdist(x.double(), x.double())
    dist.fill_diagonal_(float("inf"))
    expected = dist.argsort(-1)[:, :4]
    assert ids.shape == (40, 4)
    assert torch.equal(ids.sort(-1).values, expected.sort(-1).values)


def test_duplicate_rows_never_list_themselves():
    x = torch.tensor([[0.0, 0.0]] * 4 + [[1.0, 0.0], [5.0, 5.0]])
    ids = nearest_neighbours(x, 3)
    own = torch.arange(6).unsqueeze(-1)
    assert ids.shape == (6, 3) and not (ids == own).any()
    assert set(ids[0].tolist()) == {1, 2, 3}  # the other copies are nearest


@pytest.mark.parametrize("k", [0, 6])
def test_k_out_of_range_is_refused(k):
    with pytest.raises(ValueError, match="k must be in"):
        nearest_neighbours(torch.zeros(6, 2), k)


@pytest.mark.parametrize("beta", [0.0, -1.0])
def test_a_prior_without_weight_is_refused(beta):
    with pytest.raises(ValueError, match="beta must be > 0"):
        NeighbourPrior(torch.zeros(6, 2), k=2, beta=beta, seed=0)


def _vae_and_data():
    torch.manual_seed(0)
    vae = PotsVAE(5, num_pots=4, latent_dim=2, hidden_dim=8, decoder_hidden_dim=8)
    x = torch.rand(30, 5, generator=torch.Generator().manual_seed(1))
    return vae, x, pots_mask(4, [0, 2, 3])


def test_loss_is_beta_k_times_the_expected_cut_edges_of_the_drawn_pairs():
    vae, x, active = _vae_and_data()
    prior = NeighbourPrior(x, k=3, beta=0.7, seed=5)
    rows = torch.tensor([0, 4, 9, 17, 29])
    prior.start_epoch(2)
    loss = prior.loss(vae, x, rows, active)
    # the same draw, by hand: one neighbour per row, then 1 - sum_c r_c(x_i) r_c(x_j)
    pick = torch.randint(3, (5,), generator=torch.Generator().manual_seed(5 * 100_003 + 2))
    partners = prior.neighbours[rows, pick]
    with torch.no_grad():
        r = vae.responsibilities(x, active)
    cut = sum(1.0 - float(r[i] @ r[j]) for i, j in zip(rows.tolist(), partners.tolist()))
    assert loss.item() == pytest.approx(0.7 * 3 * cut, rel=1e-5)


def test_the_same_epoch_draws_the_same_neighbours():
    vae, x, active = _vae_and_data()
    prior = NeighbourPrior(x, k=3, beta=1.0, seed=0)
    rows = torch.arange(30)
    prior.start_epoch(7)
    first = prior.loss(vae, x, rows, active)
    prior.start_epoch(8)
    other = prior.loss(vae, x, rows, active)
    prior.start_epoch(7)
    assert prior.loss(vae, x, rows, active).item() == first.item() != other.item()


def test_gradient_reaches_the_open_pots_logits_only():
    vae, x, active = _vae_and_data()
    prior = NeighbourPrior(x, k=3, beta=1.0, seed=0)
    prior.start_epoch(0)
    prior.loss(vae, x, torch.arange(30), active).backward()
    grad = vae.encoder.logits_head.weight.grad
    assert grad[[0, 2, 3]].abs().sum() > 0 and grad[1].abs().sum() == 0  # pot 1 is closed


def test_one_open_pot_cuts_nothing():
    vae, x, _ = _vae_and_data()
    prior = NeighbourPrior(x, k=3, beta=2.0, seed=0)
    prior.start_epoch(0)
    assert prior.loss(vae, x, torch.arange(30), pots_mask(4, [1])).item() == 0.0


def test_a_step_on_the_prior_alone_moves_a_row_towards_its_neighbours_pot():
    """Rows 0-9 sit together; nine of them route to pot 0 and row 0 to pot 1 (by the
    logits head's bias on a one-hot feature). Descending the Potts loss pulls row 0 to pot 0."""
    torch.manual_seed(0)
    x = torch.zeros(10, 11)
    x[:, 10] = torch.linspace(0, 0.01, 10)  # near-identical rows: one neighbourhood
    x[0, 0] = 1.0  # row 0's own feature, wired to pot 1 below
    vae = PotsVAE(11, num_pots=2, latent_dim=1, hidden_dim=11, decoder_hidden_dim=4)
    active = pots_mask(2, [0, 1])
    prior = NeighbourPrior(x, k=9, beta=1.0, seed=0)
    params = list(vae.encoder.parameters())
    before = vae.responsibilities(x, active)[0, 0].item()
    optim = torch.optim.SGD(params, lr=0.5)
    for epoch in range(20):
        prior.start_epoch(epoch)
        optim.zero_grad()
        prior.loss(vae, x, torch.arange(10), active).backward()
        optim.step()
    after = vae.responsibilities(x, active)
    assert after[0, 0].item() > before
    assert after[:, 0].std().item() < 0.05  # every row ends in the same pot


def test_the_trainer_builds_the_prior_only_when_its_weight_is_positive():
    assert _trainer(**{"curriculum.neighbour_weight": 0}).neighbour_prior is None
    t = _trainer(**{"curriculum.neighbour_weight": 0.5, "curriculum.neighbours": 4})
    assert t.neighbour_prior.beta == 0.5 and t.neighbour_prior.neighbours.shape == (48, 4)


def test_the_prior_changes_training_and_a_resumed_epoch_repeats_it_exactly():
    plain = _trainer(**{"curriculum.neighbour_weight": 0})
    with_prior = _trainer(**{"curriculum.neighbour_weight": 1.0})
    t = _trainer(**{"curriculum.neighbour_weight": 1.0})
    for trainer in (plain, with_prior, t):
        trainer.train_epoch()
    state = copy.deepcopy(t.state_dict())  # the live tensors train on
    second = t.train_epoch()["train_loss"]
    t.load_state_dict(state)
    assert t.train_epoch()["train_loss"] == second
    bias = "decoders.output_layer.bias"
    assert not torch.equal(plain.vae.state_dict()[bias], with_prior.vae.state_dict()[bias])


def test_cut_ratio_against_a_hand_count():
    # rows 0-3 in pot 5, rows 4-5 in pot 7, row 6 elsewhere; two neighbours each
    pots = torch.tensor([5, 5, 5, 5, 7, 7, 2])
    neighbours = torch.tensor([[1, 4], [0, 2], [1, 6], [2, 4], [5, 3], [4, 6], [5, 4]])
    # edges among pots 5 and 7 (row 6's dropped): 0-1 0-4 1-0 1-2 2-1 3-2 3-4 4-5 4-3 5-4
    # crossing: 0-4 3-4 4-3 -> 3 of 10; random split of 4 + 2 rows crosses 2*4*2/(6*5)
    assert cut_ratio(pots, neighbours, 5, 7) == pytest.approx((3 / 10) / (16 / 30))
    assert cut_ratio(pots, neighbours, 5, 9) is None  # an empty pot


def test_cut_ratio_is_zero_across_a_gap_and_about_one_at_random():
    g = torch.Generator().manual_seed(0)
    x = torch.cat([torch.randn(200, 2, generator=g), torch.randn(200, 2, generator=g) + 50])
    neighbours = nearest_neighbours(x, 10)
    apart = torch.arange(400) // 200
    assert cut_ratio(apart, neighbours, 0, 1) == 0.0
    shuffled = apart[torch.randperm(400, generator=g)]
    assert cut_ratio(shuffled, neighbours, 0, 1) == pytest.approx(1.0, abs=0.1)


def test_split_cut_is_the_cut_ratio_of_the_pending_split():
    t = _trainer(**{"curriculum.neighbour_weight": 1.0, "curriculum.neighbours": 5})
    resp = torch.zeros(48, 3)
    resp[torch.arange(48), torch.arange(48) % 2] = 1.0  # rows alternate between pots 0 and 1
    scores = PotScores(torch.arange(3), torch.zeros(48, 3), resp, torch.zeros(3, 48, 1))
    assert t.split_cut(scores) is None  # no split pending
    t.manager.pending = {"pot": 1, "parent": 0, "attempt": 0}
    pots, graph = torch.arange(48) % 2, t.neighbour_prior.neighbours
    cut = t.split_cut(scores)
    assert cut["cut_ratio"] == cut_ratio(pots, graph, 0, 1)
    inner = [inner_cut_ratio(pots, graph, t.train_x, pot, t.cfg.train.seed) for pot in (0, 1)]
    assert cut["inner_cut_0"] == inner[0] and cut["inner_cut_1"] == inner[1]
    # the largest factor between the boundary and an inner cut (one cut of 0: infinite)
    u = cut["cut_ratio"]
    factors = [max(u, v) / min(u, v) if min(u, v) > 0 else math.inf for v in inner]
    assert cut["cut_contrast"] == max(factors)


def test_a_judged_split_records_its_cut_ratio_beside_the_gain(monkeypatch):
    t = _trainer(**{"curriculum.neighbour_weight": 1.0})
    t.train_epoch()
    heldout = t.evaluate(full=False)["heldout_rows"]
    t.manager.pending = {"pot": 1, "parent": 0, "attempt": 0}
    t.pre_split = {"state": t.snapshot(), "heldout_rows": heldout}
    cut = {"cut_ratio": 0.25, "cut_contrast": 0.4}
    monkeypatch.setattr(t, "split_cut", lambda scores: cut)
    monkeypatch.setattr(t, "split_agreement", lambda scores: 0.9)
    evidence = t.stage_end_scores(heldout)["evidence"]
    assert evidence["cut_ratio"] == 0.25 and evidence["gain"] == 0.0  # the same rows
    assert set(evidence) == {"gain", "se", "z", "cut_ratio", "cut_contrast"}


def test_nearest_among_are_the_k_closest_rows_of_the_other_set():
    g = torch.Generator().manual_seed(0)
    rows, x = torch.randn(30, 3, generator=g), torch.randn(7, 3, generator=g)
    ids = nearest_among(x, rows, 4)
    expected = torch.cdist(x.double(), rows.double()).argsort(-1)[:, :4]
    assert ids.shape == (7, 4) and torch.equal(ids.sort(-1).values, expected.sort(-1).values)
    with pytest.raises(ValueError, match="k must be in"):
        nearest_among(x, rows, 31)


def test_conditional_log_prior_is_the_potts_conditional_given_one_hot_neighbours():
    # three pots; row 0's four neighbours are in pots 0, 0, 0, 2; row 1's in 1, 2, 1, 2
    resp = torch.eye(3)[torch.tensor([0, 0, 0, 2, 1, 2, 1, 2])].double()
    neighbours = torch.tensor([[0, 1, 2, 3], [4, 5, 6, 7]])
    beta = 0.8
    got = conditional_log_prior(resp, neighbours, beta)
    for row, labels in enumerate([[0, 0, 0, 2], [1, 2, 1, 2]]):
        # p(c | neighbours) ∝ exp(-beta * #neighbours not in c)
        energy = torch.tensor([sum(c != other for other in labels) for c in range(3)])
        expected = torch.log_softmax(-beta * energy.double(), 0)
        assert torch.allclose(got[row], expected)


def test_labelled_loss_with_the_mixture_weights_is_the_mixture_loss_and_row_by_row():
    g = torch.Generator().manual_seed(3)
    resp = torch.softmax(torch.randn(6, 3, generator=g), -1)
    scores = PotScores(torch.arange(3), torch.randn(6, 3, generator=g), resp, torch.zeros(3, 6, 1))
    weights = torch.tensor([0.5, 0.3, 0.2])
    assert torch.allclose(labelled_loss(scores, weights.log()), mixture_loss(scores, weights))
    log_prior = torch.log_softmax(torch.randn(6, 3, generator=g), -1)
    by_row = [
        -sum(
            float(resp[n, c] * (scores.elbo[n, c] + log_prior[n, c] - resp[n, c].log()))
            for c in range(3)
        )
        for n in range(6)
    ]
    assert torch.allclose(labelled_loss(scores, log_prior), torch.tensor(by_row), atol=1e-5)


def test_under_the_potts_prior_naming_two_separate_halves_costs_nothing():
    """Two clusters far apart, each row's neighbours in its own cluster. One pot for both,
    then one pot each, with the same ELBO per row: the mixture bound charges the split
    log 2 nats per row for naming the halves, the Potts conditional about nothing."""
    n = 20
    elbo = torch.full((n, 2), -5.0, dtype=torch.float64)
    half = torch.arange(n) // (n // 2)
    # each row's three neighbours: the next three rows of its own half, cyclically
    shifts = [(torch.arange(n) + s) % (n // 2) + half * (n // 2) for s in (1, 2, 3)]
    neighbours = torch.stack(shifts, 1)
    one = PotScores(torch.tensor([0]), elbo[:, :1], torch.ones(n, 1, dtype=torch.float64), None)
    two = PotScores(torch.arange(2), elbo, torch.eye(2, dtype=torch.float64)[half], None)
    mixture_cost = mixture_loss(two, two.resp.mean(0)) - mixture_loss(one, one.resp.mean(0))
    assert torch.allclose(mixture_cost, torch.full((n,), math.log(2), dtype=torch.float64))
    potts = [labelled_loss(s, conditional_log_prior(s.resp, neighbours, 1.0)) for s in (one, two)]
    assert (potts[1] - potts[0]).abs().max() < 0.1  # log(1 + e^-3): one neighbour-free pot


def test_a_judged_split_is_measured_under_the_potts_prior():
    t = _trainer(**{"curriculum.neighbour_weight": 1.0, "curriculum.neighbours": 4})
    t.train_epoch()
    ev = t.evaluate()
    assert t.heldout_neighbours.shape == (16, 4)  # the held-out rows' training neighbours
    before = t.potts_rows(ev["scores"])
    # the same rows by hand: the held-out rows' scores with the held-out noise, and the
    # Potts conditional from the training rows' responsibilities
    noise = torch.Generator().manual_seed(t.cfg.train.seed + stage_scores.HELDOUT_NOISE)
    held = pot_scores(t.vae, t.heldout_x, t.vae.active, stage_scores.EVIDENCE_SAMPLES, noise)
    prior = conditional_log_prior(ev["scores"].resp, nearest_among(t.heldout_x, t.train_x, 4), 1.0)
    assert torch.allclose(before, labelled_loss(held, prior).double())
    t.manager.pending = {"pot": 1, "parent": 0, "attempt": 0}
    t.pre_split = {"state": t.snapshot(), "heldout_rows": ev["heldout_rows"], "potts_rows": before}
    t.train_epoch()
    end = t.stage_end_scores(t.evaluate(full=False)["heldout_rows"])
    expected = stage_scores.paired_gain(before, end["potts_rows"], sharded=False)
    assert {k: end["evidence"][k] for k in ("gain", "se", "z")} == expected
    assert end["evidence"]["gain"] != 0.0
