"""``curriculum.refine_weight``: the routing refinement teaches the encoder, for each row,
the open pot whose own ELBO is highest."""

from __future__ import annotations

import copy
import math

import pytest
import torch
from test_curriculum_parts import _trainer
from test_kick_until_parted import set_decoders, trainer_with_split, two_blocks

from pyro_pots.curriculum.refinement import RoutingRefinement
from pyro_pots.distributions import pots_mask
from pyro_pots.model import PotsVAE


def small_vae_and_rows(num_pots: int, rows: int, seed: int):
    """A small model (weights seeded with 0) over 5 features, and ``rows`` rows in [0, 1]."""
    torch.manual_seed(0)
    vae = PotsVAE(5, num_pots=num_pots, latent_dim=2, hidden_dim=8, decoder_hidden_dim=8)
    return vae, torch.rand(rows, 5, generator=torch.Generator().manual_seed(seed))


def test_a_refinement_without_weight_is_refused():
    with pytest.raises(ValueError, match="weight"):
        RoutingRefinement(0.0, seed=0)


def test_targets_are_the_pot_whose_decoder_explains_the_row():
    x = two_blocks()
    trainer = trainer_with_split(x)
    set_decoders(trainer, {0: -6.0, 1: 6.0})  # pot 0 explains zeros, pot 1 ones
    refinement = RoutingRefinement(1.0, seed=0)
    refinement.start_epoch(0)
    targets = refinement.targets(trainer.vae, x, trainer.vae.active)
    assert targets.tolist() == (torch.arange(len(x)) % 2).tolist()


def test_loss_is_weight_times_the_cross_entropy_of_the_open_pots_logits_against_targets():
    vae, x = small_vae_and_rows(num_pots=4, rows=30, seed=1)
    active = pots_mask(4, [0, 2, 3])
    refinement = RoutingRefinement(0.7, seed=3)
    refinement.start_epoch(4)
    targets = refinement.targets(vae, x, active)
    assert set(targets.tolist()) <= {0, 2, 3}
    refinement.start_epoch(4)  # the same draw again
    loss = refinement.loss(vae, x, active)
    # by hand: minus the log-softmax over the open pots' logits at each row's target
    with torch.no_grad():
        y = vae.mean_logits(x)[:, [0, 2, 3]]
    column = {0: 0, 2: 1, 3: 2}
    by_hand = -sum(
        float(torch.log_softmax(y[i], -1)[column[t]]) for i, t in enumerate(targets.tolist())
    )
    assert loss.item() == pytest.approx(0.7 * by_hand, rel=1e-5)


def test_taught_rows_add_nothing_and_the_rest_add_what_they_add_alone():
    vae, x = small_vae_and_rows(num_pots=3, rows=12, seed=2)
    active = pots_mask(3, [0, 1])
    taught = torch.arange(12) < 5
    refinement = RoutingRefinement(2.0, seed=0)
    refinement.start_epoch(0)
    partial = refinement.loss(vae, x, active, taught)
    refinement.start_epoch(0)
    alone = refinement.loss(vae, x[~taught], active)
    assert partial.item() == pytest.approx(alone.item(), rel=1e-6)
    assert refinement.loss(vae, x, active, torch.ones(12, dtype=torch.bool)).item() == 0.0


def test_gradient_reaches_the_open_pots_logits_and_not_the_decoders():
    vae, x = small_vae_and_rows(num_pots=4, rows=30, seed=1)
    refinement = RoutingRefinement(1.0, seed=0)
    refinement.start_epoch(0)
    refinement.loss(vae, x, pots_mask(4, [0, 2, 3])).backward()
    grad = vae.encoder.logits_head.weight.grad
    assert grad[[0, 2, 3]].abs().sum() > 0 and grad[1].abs().sum() == 0  # pot 1 is closed
    assert all(p.grad is None for p in vae.decoders.parameters())


def test_steps_on_the_refinement_alone_route_rows_to_the_pot_that_explains_them():
    """Pot 0's decoder explains the zeros, pot 1's the ones, and the encoder starts out
    routing every row to pot 0: descending the refinement alone sends the ones to pot 1."""
    x = two_blocks()
    trainer = trainer_with_split(x)
    set_decoders(trainer, {0: -6.0, 1: 6.0})
    vae, active = trainer.vae, trainer.vae.active
    with torch.no_grad():
        vae.encoder.logits_head.bias[0] += 5.0  # every row starts in pot 0
    assert vae.responsibilities(x, active)[:, 0].min() > 0.5
    refinement = RoutingRefinement(1.0, seed=0)
    optim = torch.optim.Adam(vae.encoder.parameters(), lr=0.05)
    for epoch in range(40):
        refinement.start_epoch(epoch)
        optim.zero_grad()
        refinement.loss(vae, x, active).backward()
        optim.step()
    pots = vae.responsibilities(x, active).argmax(-1)
    assert pots.tolist() == (torch.arange(len(x)) % 2).tolist()


def test_the_trainer_builds_the_refinement_only_when_its_weight_is_positive():
    assert _trainer(**{"curriculum.refine_weight": 0}).refinement is None
    t = _trainer(**{"curriculum.refine_weight": 2.5})
    assert t.refinement.weight == 2.5


def test_a_kick_keeps_its_rows_and_the_refinement_takes_the_others(monkeypatch):
    x = two_blocks()
    trainer = trainer_with_split(x, "curriculum.refine_weight=1")
    kicked = torch.arange(len(x)) < 20  # the kick teaches rows 0-19 only
    targets = trainer.kick.targets.clone()
    targets[~kicked] = -1
    trainer.kick.start(1, targets)
    trainer.manager.kick_remaining = 5
    seen = []
    real = trainer.refinement.loss

    def spy(vae, xb, active, taught=None, rows=None, logits=None):
        seen.append(int((~taught).sum()) if taught is not None else len(xb))
        return real(vae, xb, active, taught, rows, logits)

    monkeypatch.setattr(trainer.refinement, "loss", spy)
    trainer.train_epoch()
    assert sum(seen) == int((~kicked).sum())  # every row outside the kick, once


@pytest.mark.parametrize("every", [1, 3])
def test_a_resumed_epoch_repeats_the_refinement_exactly(every):
    t = _trainer(**{"curriculum.refine_weight": 1.0, "curriculum.refine_every": every})
    plain = _trainer(**{"curriculum.refine_weight": 0})
    for trainer in (t, plain):
        trainer.manager.open = [0, 1]  # two pots, so the refinement has a choice
        trainer.vae.open_pots([0, 1])
        trainer.train_epoch()
    state = copy.deepcopy(t.state_dict())
    second = t.train_epoch()["train_loss"]
    t.load_state_dict(state)
    again = t.train_epoch()["train_loss"]
    assert math.isfinite(second) and again == second
    plain.train_epoch()
    head = "encoder.logits_head.weight"
    assert not torch.equal(t.vae.state_dict()[head], plain.vae.state_dict()[head])


def test_with_rows_the_loss_is_the_drawn_rows_scaled_to_the_batch():
    vae, x = small_vae_and_rows(num_pots=3, rows=20, seed=3)
    active = pots_mask(3, [0, 1, 2])
    refinement = RoutingRefinement(2.0, seed=4, rows=5)
    refinement.start_epoch(1)
    loss = refinement.loss(vae, x, active)
    # by hand, the same draws in the same order: the rows first, then the latent noise
    whole = RoutingRefinement(2.0, seed=4)
    whole._generator.manual_seed(4 * 100_019 + 1)
    drawn = torch.randperm(20, generator=whole._generator)[:5]
    assert loss.item() == pytest.approx(4 * whole.loss(vae, x[drawn], active).item(), rel=1e-6)
    with pytest.raises(ValueError, match="rows"):
        RoutingRefinement(1.0, seed=0, rows=0)


def test_the_trainer_passes_refine_rows_with_zero_for_every_row():
    assert _trainer(**{"curriculum.refine_weight": 1.0}).refinement.rows is None
    assert (
        _trainer(**{"curriculum.refine_weight": 1.0, "curriculum.refine_rows": 8}).refinement.rows
        == 8
    )


def test_a_table_is_scored_when_due_and_kept_in_between():
    """With ``every`` = 3 the targets are scored at epochs 0, 3, 6, ... and afresh when the
    open pots change or a kick starts or ends; in between the same table serves."""
    vae, x = small_vae_and_rows(num_pots=3, rows=40, seed=5)
    two, three = pots_mask(3, [0, 1]), pots_mask(3, [0, 1, 2])
    refinement = RoutingRefinement(1.0, seed=2, every=3)
    scored = []
    for epoch, active, kicking in [
        (0, two, False),  # no table yet
        (1, two, False),
        (2, two, False),
        (3, two, False),  # due
        (4, three, False),  # a pot opened
        (5, three, True),  # a kick started
        (6, three, True),
        (7, three, False),  # the kick ended
        (8, two, False),  # the split undone
        (9, two, False),
    ]:
        refinement.start_epoch(epoch)
        if refinement.refresh(vae, x, active, epoch, kicking):
            scored.append(epoch)
            # the table is what targets() gives with this epoch's draw
            refinement.start_epoch(epoch)
            assert torch.equal(refinement.table, refinement.targets(vae, x, active))
    assert scored == [0, 3, 4, 5, 7, 8]
    assert set(refinement.table.tolist()) <= {0, 1}


def test_with_a_table_the_loss_reads_each_rows_target_from_it():
    vae, x = small_vae_and_rows(num_pots=3, rows=40, seed=6)
    active = pots_mask(3, [0, 1, 2])
    refinement = RoutingRefinement(1.5, seed=1, every=2)
    refinement.start_epoch(0)
    refinement.refresh(vae, x, active, 0, False)
    refinement.table = torch.arange(40) % 3  # a table to read, whatever the decoders say
    rows = torch.tensor([5, 0, 17, 33, 8])
    taught = torch.tensor([False, True, False, False, True])
    loss = refinement.loss(vae, x[rows], active, taught, rows)
    with torch.no_grad():
        y = torch.log_softmax(vae.mean_logits(x[rows]), -1)
    by_hand = -sum(float(y[i, int(rows[i]) % 3]) for i in (0, 2, 3))
    assert loss.item() == pytest.approx(1.5 * by_hand, rel=1e-5)
    with pytest.raises(ValueError, match="rows"):
        refinement.loss(vae, x[rows], active)
    with pytest.raises(ValueError, match="every"):
        RoutingRefinement(1.0, seed=0, every=0)


def test_the_table_travels_in_the_checkpoint():
    t = _trainer(**{"curriculum.refine_weight": 1.0, "curriculum.refine_every": 4})
    t.manager.open = [0, 1]
    t.vae.open_pots([0, 1])
    t.train_epoch()
    state = copy.deepcopy(t.state_dict())
    fresh = _trainer(**{"curriculum.refine_weight": 1.0, "curriculum.refine_every": 4})
    fresh.load_state_dict(state)
    assert torch.equal(fresh.refinement.table, t.refinement.table)
    under = ((True, True, False), False)  # pots 0 and 1 open, no kick
    assert fresh.refinement.scored_under == t.refinement.scored_under == under


def test_a_table_naming_a_closed_pot_is_refused_and_every_1_drops_a_loaded_table():
    vae, x = small_vae_and_rows(num_pots=3, rows=10, seed=7)
    rows = torch.arange(10)
    saved = RoutingRefinement(1.0, seed=0, every=4)
    saved.start_epoch(0)
    saved.refresh(vae, x, pots_mask(3, [0, 1, 2]), 0, False)
    saved.table = torch.full((10,), 2)  # pot 2 ...
    with pytest.raises(ValueError, match="closed pot"):  # ... since closed (a split undone)
        saved.loss(vae, x, pots_mask(3, [0, 1]), rows=rows)
    # a state saved under every > 1 and loaded with every = 1: each step scores its own
    plain = RoutingRefinement(1.0, seed=0)
    plain.load_state_dict(saved.state_dict())
    plain.start_epoch(0)
    assert not plain.refresh(vae, x, pots_mask(3, [0, 1]), 0, False) and plain.table is None
    assert torch.isfinite(plain.loss(vae, x, pots_mask(3, [0, 1]), rows=rows))
