"""The ``grow`` section's levers (``fit --resume-from``): frozen old pots stay bit-identical,
replayed rows come from the old pots (or the old run's rows), and the seeded pot takes the
new rows no old pot explains."""

import json

import torch
from test_cli_and_examples import TINY

from pyro_pots import run_dir
from pyro_pots.cli import main
from pyro_pots.config import load_config
from pyro_pots.curriculum.kick import NO_TARGET
from pyro_pots.curriculum.replay import generative_rows, old_weights, reservoir_rows
from pyro_pots.data import load_data
from pyro_pots.model import PotsVAE
from pyro_pots.training.growing import grow_from
from pyro_pots.training.growth_levers import keep_old_pots_whole, poorly_explained
from pyro_pots.training.trainer import CurriculumTrainer

OLD = "synthetic:k=2,d=8,n=240,seed=3"
NEW = "synthetic:k=3,d=8,n=360,seed=4"
FROZEN = [
    "encoder.latent_heads.weight",
    "encoder.latent_heads.bias",
    "decoders.hidden_layer.weight",
    "decoders.hidden_layer.bias",
    "decoders.output_layer.weight",
    "decoders.output_layer.bias",
]


def _overrides(*extra):
    """TINY's --set pairs as config overrides, plus ``extra``."""
    pairs = [TINY[i + 1] for i, arg in enumerate(TINY) if arg == "--set"]
    return [*pairs, "model.num_pots=4", *extra]


def _fitted(x: torch.Tensor, epochs: int = 12):
    cfg = load_config(None, _overrides(f"train.max_epochs={epochs}"))
    trainer = CurriculumTrainer.from_config(cfg, x, x[:0])
    trainer.run()
    trainer.finish()
    return trainer


def _old_rows() -> torch.Tensor:
    return torch.from_numpy(load_data(OLD).X)


def test_frozen_old_pots_stay_bit_identical_under_growth(tmp_path):
    old, new = tmp_path / "old", tmp_path / "new"
    assert main(["fit", "--out", str(old), *TINY, "--set", "train.max_epochs=12"]) == 0
    argv = ["fit", "--resume-from", str(old), "--out", str(new), "--data", NEW, "--quiet"]
    sets = ["--set", "train.max_epochs=10", "--set", "grow.freeze_old_pots=true"]
    assert main([*argv, *sets]) == 0
    log = json.loads((new / "stages.json").read_text())
    grow = next(e for e in log if e["action"] == "grow")
    pruned = {e["pot"] for e in log if e["action"] == "prune"}
    frozen = [p for p in grow["numbers"]["frozen"] if p not in pruned]
    assert frozen
    before = run_dir.load_checkpoint(old)["trainer"]["vae"]
    after = run_dir.load_checkpoint(new)["trainer"]["vae"]
    for name in FROZEN:
        assert torch.equal(before[name][frozen], after[name][frozen]), name
    # the rest trains: the shared trunk moved
    assert not torch.equal(before["encoder.trunk.weight"], after["encoder.trunk.weight"])


def test_generative_replay_draws_come_from_the_old_pots():
    torch.manual_seed(0)
    vae = PotsVAE(8, num_pots=4, latent_dim=2, hidden_dim=16, decoder_hidden_dim=16)
    draw = generative_rows(vae, {1: 0.0, 2: 0.7, 3: 0.3}, 200, torch.Generator().manual_seed(5))
    assert set(draw["pots"].tolist()) == {2, 3}  # never a pot of weight 0, nor a closed one
    # each row is the mean of its pot's decoder at a prior draw of z
    gen = torch.Generator().manual_seed(5)
    pots = torch.tensor([1, 2, 3])
    probs = torch.tensor([0.0, 0.7, 0.3], dtype=torch.float64)
    chosen = pots[torch.multinomial(probs, 200, True, generator=gen)]
    z = torch.randn(200, 2, generator=gen)
    assert torch.equal(chosen, draw["pots"])
    with torch.no_grad():
        for i in (0, 57, 199):
            pot = int(chosen[i])
            mean = vae.likelihood(vae.decode(z[i : i + 1].unsqueeze(0), [pot])[0]).mean
            assert torch.allclose(draw["rows"][i], mean[0], atol=1e-6)


def test_replay_during_growth_appends_rows_of_the_old_model_or_run():
    old_x = _old_rows()
    old = _fitted(old_x)
    state = old.state_dict()
    new_x = torch.from_numpy(load_data(NEW).X)
    for mode in ("generative", "reservoir"):
        cfg = load_config(None, _overrides("grow.replay=" + mode, "grow.replay_share=0.5"))
        trainer = CurriculumTrainer.from_config(cfg, new_x, new_x[:0])
        decision = grow_from(trainer, state, old_x)
        extra = trainer.train_x[len(new_x) :]
        assert len(extra) == 180 and torch.equal(trainer.train_x[: len(new_x)], new_x)
        assert decision.numbers["replay"] == {"mode": mode, "rows": 180}
        assert len(trainer.kick.targets) == 540
        if mode == "reservoir":  # every replayed row is one of the old run's rows
            assert (extra[:, None] == old_x[None]).all(-1).any(-1).all()
            assert len(extra.unique(dim=0)) == 180
        else:  # the draws of the old model, as generative_rows makes them
            gen = torch.Generator().manual_seed(cfg.train.seed + 4099)
            weights = old_weights(old.history[-1]["usage"], old.manager.open)
            assert abs(sum(weights.values()) - 1) < 1e-9
            expect = generative_rows(old.vae, weights, 180, gen)["rows"]
            assert torch.allclose(extra, expect, atol=1e-6)
        trainer.run()  # trains on the longer rows
        assert trainer.epoch > state["epoch"]


def _prototypes(generator, count, centres):
    """Binary rows near ``centres`` (each bit flipped with probability 0.05)."""
    rows = centres[torch.randint(len(centres), (count,), generator=generator)]
    return torch.where(torch.rand(rows.shape, generator=generator) < 0.05, 1 - rows, rows)


def test_the_seeded_pot_takes_the_poorly_explained_rows():
    gen = torch.Generator().manual_seed(0)
    centres = (torch.rand(3, 16, generator=gen) < 0.5).float()
    old_x = _prototypes(gen, 240, centres[:2])
    far = _prototypes(gen, 60, centres[2:])  # a mode the old run never saw
    plateau = ["curriculum.rel_tol=0.0001", "curriculum.patience=10"]
    cfg = load_config(None, _overrides("train.max_epochs=60", *plateau))
    old = CurriculumTrainer.from_config(cfg, old_x, old_x[:0])
    old.run()
    old.finish()
    new_x = torch.cat([old_x[:180], far])
    poor = poorly_explained(old.vae, new_x, old_x, 0.95)
    assert poor.mask[180:].all()  # every row of the new mode is flagged
    assert poor.mask[:180].float().mean() <= 0.1  # the old ones (about 5 %) are not
    cfg = load_config(None, _overrides("grow.seed_new_pot=true", "train.max_epochs=90"))
    trainer = CurriculumTrainer.from_config(cfg, new_x, new_x[:0])
    grow_from(trainer, old.state_dict(), old_x)
    log = trainer.manager.log
    assert [e["action"] for e in log[-2:]] == ["grow", "unlock"]
    new = log[-1]["pot"]
    assert new not in old.manager.open and new in trainer.manager.open
    assert log[-1]["numbers"]["seeded_rows"] == int(poor.mask.sum())
    assert log[-2]["numbers"]["poorly_explained"]["rows"] == int(poor.mask.sum())
    targets = trainer.kick.targets
    assert torch.equal(targets == new, poor.mask)  # the kick sends exactly those rows there
    assert (targets[~poor.mask] != NO_TARGET).any()  # and keeps the parent's other rows
    assert trainer.manager.pending["pot"] == new  # judged like any split
    trainer.run()  # (whether the seed holds is the judge's: this tiny model undoes it)
    assert any(e["action"] in ("accept", "reject") and e["pot"] == new for e in log)


def test_reservoir_rows_are_a_sample_without_repeats():
    rows = torch.arange(20.0).reshape(10, 2)
    drawn = reservoir_rows(rows, 6, torch.Generator().manual_seed(1))
    assert len(drawn.unique(dim=0)) == 6 and all((r == rows).all(1).any() for r in drawn)
    assert len(reservoir_rows(rows, 30, torch.Generator().manual_seed(1))) == 10


def test_old_pots_whole_keeps_them_out_of_the_split_candidates():
    cfg = load_config(None, _overrides("train.max_epochs=1"))
    x = _old_rows()
    trainer = CurriculumTrainer.from_config(cfg, x, x[:0])
    manager = trainer.manager
    manager.open = [0, 1]
    whole = keep_old_pots_whole(trainer, [0])
    assert manager.observe is whole
    assert whole.filter({0: 5.0, 1: 5.0}) == {0: 0.0, 1: 5.0}
    manager.log.append({"action": "prune", "pot": 0})  # a pruned pot is let go
    assert whole.filter({0: 5.0, 1: 5.0}) == {0: 5.0, 1: 5.0}
