"""The ``grow`` section's levers (``fit --resume-from``): frozen old pots stay bit-identical,
replayed rows come from the old pots (or the old run's rows), the seeded pot takes the
new rows no old pot explains, and the stage manager's protected pots (``split_old_pots``)
are never split, also after a resume."""

import json
import random
from dataclasses import asdict

import pytest
import torch
from test_cli_and_examples import TINY
from test_stage_manager import feed, manager

from pyro_pots import run_dir
from pyro_pots.cli import main
from pyro_pots.config import load_config
from pyro_pots.curriculum.kick import NO_TARGET
from pyro_pots.curriculum.replay import generative_rows, old_weights, reservoir_rows
from pyro_pots.data import load_data
from pyro_pots.model import PotsVAE
from pyro_pots.storage.checkpoints import load_trainer_state
from pyro_pots.training.growing import grow_from, restore_levers
from pyro_pots.training.growth_levers import poorly_explained
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


# -- protected pots and open_pot (the stage manager's side of the levers) ---------------
SKEWED = dict(
    usage={0: 0.8, 1: 0.1, 2: 0.1},
    misfit={0: 100.0, 1: 1.0, 2: 2.0},
    normality={0: 50.0, 1: 3.0, 2: 2.0},
)
PLATEAU = [10, 9, 8, 8, 8]


@pytest.mark.parametrize("rule", ["normality", "recon", "usage"])
def test_a_protected_pot_is_never_a_parent_however_large_and_non_normal(rule):
    free = manager(start_pots=3, parent_rule=rule, normality_critical=1.0)
    d, _ = feed(free, PLATEAU, **SKEWED)
    assert (d.action, d.parent) == ("unlock", 0)  # the control: pot 0 wins every rule
    assert "protected" not in d.numbers
    kept = manager(start_pots=3, parent_rule=rule, normality_critical=1.0)
    assert kept.protect([0]) == [0]
    d, _ = feed(kept, PLATEAU, **SKEWED)
    assert d.action == "unlock" and d.parent in (1, 2) and d.pot == 3
    assert d.numbers["protected"] == [0] and kept.log[-1]["numbers"]["protected"] == [0]


def test_when_every_pot_is_protected_the_curriculum_stops_and_says_why():
    m = manager(start_pots=2, parent_rule="usage")
    m.protect([1, 0])
    assert m.protected == [0, 1]
    d, _ = feed(m, PLATEAU)
    assert d.action == "stop" and "protected ([0, 1])" in d.reason and m.stopped
    assert d.numbers["protected"] == [0, 1]


def test_protect_takes_open_pots_only_and_unprotect_lets_them_go():
    m = manager(start_pots=2)
    with pytest.raises(ValueError, match="only open pots"):
        m.protect([0, 3])
    assert m.protected == []
    m.protect([0, 1])
    assert m.unprotect([0]) == [1] and m.unprotect([1]) == []


def test_a_pruned_protected_pot_is_let_go_and_its_id_reopens_unprotected():
    m = manager(start_pots=3, parent_rule="usage", heldout_stop=False)
    m.protect([0, 1])
    usage = {0: 0.0, 1: 0.5, 2: 0.5}  # pot 0 lost its data
    d, _ = feed(m, PLATEAU, usage=usage, misfit={0: 0.0, 1: 0.0, 2: 0.0})
    assert [e["action"] for e in m.log] == ["prune", "unlock"]
    assert (d.pot, d.parent) == (0, 2)  # the lowest closed id, split from the only candidate
    assert m.protected == [1] and d.numbers["protected"] == [1]


def test_protection_round_trips_through_the_state_dict():
    m = manager(start_pots=3, parent_rule="normality", normality_critical=1.0)
    assert "protected" not in m.state_dict()  # an unprotected manager saves what it did
    m.protect([0])
    state = m.state_dict()
    assert state["protected"] == [0]
    loaded = manager(start_pots=1, parent_rule="normality", normality_critical=1.0)
    loaded.load_state_dict(state)
    assert loaded.protected == [0]
    loaded.protected.append(2)  # a copy: the saved state does not change
    assert state["protected"] == [0]
    loaded.unprotect([2])
    a, _ = feed(m, PLATEAU, **SKEWED)
    b, _ = feed(loaded, PLATEAU, **SKEWED)
    assert asdict(a) == asdict(b) and a.parent == 1


def test_a_state_without_protection_loads_as_none_and_bad_ones_are_refused():
    m = manager(start_pots=2)
    m.protect([1])
    old = {k: v for k, v in m.state_dict().items() if k != "protected"}  # before the key
    fresh = manager()
    fresh.protect([0])
    fresh.load_state_dict(old)
    assert fresh.protected == []
    for bad, needle in (([5], "outside"), ([1, 1], "distinct"), ("1", "list"), ([True], "out")):
        with pytest.raises(ValueError, match=needle):
            manager().load_state_dict({**old, "protected": bad})


@pytest.mark.parametrize("proposals", [1, 2])
def test_open_pot_opens_for_the_given_parent_and_logs_its_reason_and_numbers(proposals):
    m = manager(
        num_pots=5,
        start_pots=3,
        parent_rule="normality",
        normality_critical=1.0,
        proposals=proposals,
    )
    m.protect([0, 1])
    d = m.open_pot(0, "grow: seed it", **SKEWED, numbers={"seeded_rows": 7})
    assert (d.action, d.pot, d.parent, d.attempt, d.reason) == ("unlock", 3, 0, 0, "grow: seed it")
    assert m.log[-1] == asdict(d) and len(m.log) == 1
    numbers = d.numbers
    assert numbers["seeded_rows"] == 7 and numbers["parent_score"] == 50.0
    assert numbers["normality"] == SKEWED["normality"] and numbers["protected"] == [0, 1]
    assert m.open == [0, 1, 2, 3] and m.stage == 1 and m.kick_remaining == 2
    assert (m.pending["pot"], m.pending["parent"], m.pending["attempt"]) == (3, 0, 0)
    assert m.pending["scores"]["usage"] == SKEWED["usage"]
    with pytest.raises(ValueError, match="not judged yet"):
        m.open_pot(2, "again", **SKEWED)
    # the seed fades: it is undone and the curriculum goes on by its own rule, which
    # skips the protected pots (and the parent that was tried); a protected parent gets
    # no retry by its next proposal
    faded = {0: 0.5, 1: 0.2, 2: 0.3, 3: 0.0}
    d, _ = feed(m, [0, 0, *PLATEAU], usage=faded, misfit=SKEWED["misfit"])
    assert [e["action"] for e in m.log[1:]] == ["reject", "unlock"]
    assert (d.pot, d.parent) == (3, 2) and m.tried == [0]


def test_open_pot_refuses_what_it_cannot_do():
    m = manager(start_pots=2)
    for parent, reason, error, needle in (
        (3, "why", ValueError, "not an open pot"),
        (0, "", ValueError, "reason"),
    ):
        with pytest.raises(error, match=needle):
            m.open_pot(parent, reason, {0: 1.0}, {0: 1.0})
    full = manager(num_pots=2, start_pots=2)
    with pytest.raises(ValueError, match="every pot is open"):
        full.open_pot(0, "why", {0: 1.0}, {0: 1.0})
    m.stop("budget")
    with pytest.raises(RuntimeError, match="stopped"):
        m.open_pot(0, "why", {0: 1.0}, {0: 1.0})
    assert [e["action"] for e in m.log] == ["stop"]


@pytest.mark.parametrize("rule", ["normality", "recon", "usage"])
def test_protection_decides_as_reading_the_protected_normality_as_zero(rule):
    """The lever as it was before protection existed (the observe wrapper read the old
    pots' normality as 0) and protection decide the same, pruning included, when the
    normality test is on; only the recorded normality differs (the real statistic now)."""

    def run(protect: bool):
        m = manager(num_pots=8, start_pots=3, parent_rule=rule, normality_critical=1.0)
        m.heldout_stop = False
        whole = {0, 1}
        if protect:
            m.protect(whole)
        seen, rng = 0, random.Random(7)
        for epoch in range(150):
            if m.stopped:
                break
            usage = {k: (0.0 if k == 1 and 20 <= epoch < 24 else 1.0) for k in m.open}
            total = sum(usage.values())
            usage = {k: v / total for k, v in usage.items()}
            misfit = {k: rng.uniform(0, 10) for k in m.open}
            normality = {k: rng.uniform(0, 3) for k in m.open}
            if not protect:  # the old wrapper: a pruned pot is let go
                whole -= {e["pot"] for e in m.log[seen:] if e["action"] == "prune"}
                seen = len(m.log)
                normality = {k: (0.0 if k in whole else v) for k, v in normality.items()}
            m.observe(10.0 - 0.01 * epoch, usage, misfit, normality)
        return [(e["action"], e["epoch"], e["pot"], e["parent"]) for e in m.log]

    old, new = run(False), run(True)
    assert old == new
    assert ("prune", 23, 1, None) in new and ("unlock", 23, 1, 2) in new  # 1 reopens
    assert sum(a == "accept" for a, *_ in new) >= 5


# -- a grown run resumed keeps its levers --------------------------------------------
def _grow(tmp_path, name, epochs, *sets):
    old = tmp_path / "old"
    if not old.exists():
        sets_old = ["--set", "train.max_epochs=12", "--set", "model.num_pots=4"]
        assert main(["fit", "--out", str(old), *TINY, *sets_old]) == 0
    out = tmp_path / name
    argv = ["fit", "--resume-from", str(old), "--out", str(out), "--data", NEW, "--quiet"]
    extra = [arg for pair in sets for arg in ("--set", pair)]
    assert main([*argv, "--set", f"train.max_epochs={epochs}", *extra]) == 0
    return old, out


def test_a_resumed_grown_run_keeps_its_protected_pots_and_its_seed(tmp_path):
    levers = (
        "grow.split_old_pots=false",
        "grow.seed_new_pot=true",
        "grow.seed_min_share=0",
        "curriculum.normality_critical=0",  # protection needs no normality test
    )
    old, straight = _grow(tmp_path, "straight", 30, *levers)
    _, cut = _grow(tmp_path, "cut", 2, *levers)  # cut during the seed's kick
    state = run_dir.load_checkpoint(cut)["trainer"]
    old_pots = run_dir.load_checkpoint(old)["trainer"]["manager"]["open"]
    assert state["manager"]["protected"] == sorted(old_pots)
    assert state["manager"]["pending"]["parent"] in old_pots  # the seed, not yet judged
    total = f"train.max_epochs={state['epoch'] + 28}"
    assert main(["fit", "--out", str(cut), "--resume", "--quiet", "--set", total]) == 0
    log = json.loads((cut / "stages.json").read_text())
    assert log == json.loads((straight / "stages.json").read_text())  # as if never cut
    grow = next(i for i, e in enumerate(log) if e["action"] == "grow")
    assert log[grow + 1]["reason"].startswith("grow: seed pot")
    for entry in log[grow + 2 :]:  # the curriculum's own choices skip the old pots
        assert entry["action"] != "unlock" or entry["parent"] not in old_pots
    assert log[-1]["action"] == "stop"  # with the old pots still protected after the resume
    assert f"or it is protected ({sorted(old_pots)})" in log[-1]["reason"]


def test_restore_levers_freezes_the_old_pots_of_a_resumed_grown_run_again(tmp_path):
    old, grown = _grow(tmp_path, "grown", 4, "grow.freeze_old_pots=true")
    state = run_dir.load_checkpoint(grown)["trainer"]
    more = [f"train.max_epochs={state['epoch'] + 6}"]
    cfg = load_config(grown / run_dir.CONFIG, more)
    data = load_data(cfg.data.spec)
    train, held = data.split(cfg.data.heldout_fraction, cfg.data.seed)
    rows = torch.from_numpy(train.X), torch.from_numpy(held.X)
    trainer = CurriculumTrainer.from_config(cfg, *rows)
    load_trainer_state(trainer, state, grown / run_dir.CHECKPOINT, train.n_rows)
    frozen = restore_levers(trainer)
    grow = next(e for e in trainer.manager.log if e["action"] == "grow")
    assert frozen and frozen == grow["numbers"]["frozen"] and trainer.frozen_pots.pots == frozen
    trainer.run()
    assert trainer.epoch > state["epoch"]
    before = run_dir.load_checkpoint(old)["trainer"]["vae"]
    after = trainer.vae.state_dict()
    pruned = {e["pot"] for e in trainer.manager.log if e["action"] == "prune"}
    kept = [pot for pot in frozen if pot not in pruned]
    for name in FROZEN:
        assert torch.equal(before[name][kept], after[name][kept]), name


def test_fit_resume_keeps_a_grown_runs_old_pots_frozen(tmp_path):
    old, grown = _grow(tmp_path, "grown", 4, "grow.freeze_old_pots=true")
    state = run_dir.load_checkpoint(grown)["trainer"]
    total = f"train.max_epochs={state['epoch'] + 6}"
    assert main(["fit", "--out", str(grown), "--resume", "--quiet", "--set", total]) == 0
    log = json.loads((grown / "stages.json").read_text())
    frozen = next(e for e in log if e["action"] == "grow")["numbers"]["frozen"]
    pruned = {e["pot"] for e in log if e["action"] == "prune"}
    kept = [pot for pot in frozen if pot not in pruned]
    before = run_dir.load_checkpoint(old)["trainer"]["vae"]
    after = run_dir.load_checkpoint(grown)["trainer"]["vae"]
    assert kept and run_dir.load_checkpoint(grown)["trainer"]["epoch"] > state["epoch"]
    for name in FROZEN:
        assert torch.equal(before[name][kept], after[name][kept]), name


def test_restore_levers_leaves_a_run_without_frozen_pots_alone():
    x = _old_rows()
    trainer = _fitted(x, epochs=2)
    assert restore_levers(trainer) == [] and not hasattr(trainer, "frozen_pots")
