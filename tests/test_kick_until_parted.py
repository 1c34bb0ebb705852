"""``curriculum.kick_max_steps``: a kick goes on, an epoch at a time up to a cap, while the
two pots' decoders have not parted the kicked rows."""

from __future__ import annotations

import math

import pytest
import torch
from sklearn.metrics import adjusted_rand_score

from pyro_pots.config import load_config
from pyro_pots.curriculum.kick import NO_TARGET
from pyro_pots.training.guard import steps_per_epoch
from pyro_pots.training.trainer import CurriculumTrainer


def two_blocks(n: int = 64, d: int = 8) -> torch.Tensor:
    """Rows of zeros and rows of ones, alternating."""
    return (torch.arange(n) % 2)[:, None].float().expand(n, d).contiguous()


def trainer_with_split(x: torch.Tensor, *sets: str) -> CurriculumTrainer:
    """A trainer on ``x`` with pots 0 and 1 open and a pending split of pot 0 into pot 1
    whose kick targets are the two blocks."""
    cfg = load_config(
        None,
        [
            "model.num_pots=3",
            "model.hidden_dim=8",
            "model.decoder_hidden_dim=8",
            "model.likelihood=bernoulli",
            "train.threads=1",
            "train.batch_size=16",
            "curriculum.kick_steps=8",
            "curriculum.neighbour_weight=0",
            *sets,
        ],
    )
    trainer = CurriculumTrainer.from_config(cfg, x, x[:0])
    trainer.manager.open = [0, 1]
    trainer.manager.pending = {"pot": 1, "parent": 0, "attempt": 0}
    trainer.vae.open_pots([0, 1])
    trainer.kick.start(1, (torch.arange(len(x)) % 2).long())
    return trainer


def set_decoders(trainer: CurriculumTrainer, bias: dict) -> None:
    """Make pot k's decoder output the constant logit ``bias[k]`` whatever its code."""
    out = trainer.vae.decoders.output_layer
    with torch.no_grad():
        out.weight.zero_()
        for pot, value in bias.items():
            out.bias[pot].fill_(value)


def test_kick_parted_is_the_rand_index_of_the_pots_whose_decoders_explain_the_rows():
    x = two_blocks()
    trainer = trainer_with_split(x)
    set_decoders(trainer, {0: -6.0, 1: 6.0})  # pot 0 explains zeros, pot 1 ones
    assert trainer.kick_parted() == pytest.approx(1.0)
    set_decoders(trainer, {0: 6.0, 1: -6.0})  # swapped: still parted (a relabelling)
    assert trainer.kick_parted() == pytest.approx(1.0)
    # a kick whose halves are not the blocks the decoders explain: not parted
    g = torch.Generator().manual_seed(0)
    trainer.kick.start(1, torch.randperm(len(x), generator=g) % 2)
    expected = adjusted_rand_score(trainer.kick.targets, x[:, 0].long())
    assert trainer.kick_parted() == pytest.approx(expected) and expected < 0.1
    # only the kicked rows count: untargeted rows change nothing
    trainer.kick.targets[:8] = NO_TARGET
    set_decoders(trainer, {0: -6.0, 1: 6.0})
    rows = trainer.kick.targets != NO_TARGET
    expected = adjusted_rand_score(trainer.kick.targets[rows], x[rows, 0].long())
    assert trainer.kick_parted() == pytest.approx(expected)


def test_a_kick_goes_on_only_while_unparted_and_below_its_cap(monkeypatch):
    x = two_blocks()
    off = trainer_with_split(x)
    assert not off.kick_goes_on()  # kick_max_steps 0: every kick lasts kick_steps
    trainer = trainer_with_split(x, "curriculum.kick_max_steps=20")
    per_epoch = steps_per_epoch(trainer.cfg, len(x))
    parted = {"value": 0.0}
    monkeypatch.setattr(trainer, "kick_parted", lambda: parted["value"])
    assert trainer.kick_goes_on()
    parted["value"] = 0.9  # parted (min_agreement is 0.5): the kick ends
    assert not trainer.kick_goes_on()
    parted["value"] = 0.0
    stage = trainer.manager.stage
    cap = math.ceil(20 / per_epoch)
    trainer.history = [{"kicking": True, "stage": stage}] * (cap - 1)
    assert not trainer.kick_goes_on()  # this epoch is the cap's last
    trainer.history = [{"kicking": True, "stage": stage - 1}] * (cap - 1)
    assert trainer.kick_goes_on()  # another stage's kick epochs do not count
    trainer.manager.pending = None
    assert not trainer.kick_goes_on()
