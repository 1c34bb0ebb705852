"""The NaN guard: a non-finite loss or gradient never reaches the parameters; repeated
failures roll back to the last clean state with a smaller learning rate; the history shows
each event. Faults are injected into a real trainer."""

import pytest
import torch
from test_curriculum_parts import _trainer

from pyro_pots.errors import TrainingFailed
from pyro_pots.training.trainer_state import MAX_FRUITLESS_ROLLBACKS


class _FaultyELBO:
    """Wraps the trainer's ELBO; the loss of the calls numbered in ``bad`` becomes NaN."""

    def __init__(self, inner, bad):
        self.inner, self.bad, self.calls = inner, bad, 0

    def differentiable_loss(self, *args, **kwargs):
        self.calls += 1
        loss = self.inner.differentiable_loss(*args, **kwargs)
        return loss * float("nan") if self.bad(self.calls) else loss


def _inject(trainer, bad):
    inner = trainer._elbo(0.0, False)
    faulty = _FaultyELBO(inner, bad)
    trainer._elbo = lambda lam, kicking: faulty
    return faulty


def _parameters(trainer):
    return {k: v.clone() for k, v in trainer.vae.state_dict().items()}


def test_non_finite_losses_are_skipped_and_never_reach_the_parameters():
    t = _trainer(**{"train.bad_step_patience": 100})
    before = _parameters(t)
    _inject(t, lambda call: True)  # every step of the epoch is bad
    step = t.train_epoch()
    assert step["bad_steps"] == 3 and not step["rolled_back"]  # 48 rows, batches of 16
    for name, value in t.vae.state_dict().items():
        assert torch.equal(value, before[name]), name
    assert t.optimizer.state_dict()["state"] == {}  # Adam never stepped


def test_one_bad_step_is_skipped_and_training_goes_on():
    t = _trainer()
    _inject(t, lambda call: call == 2)
    step = t.train_epoch()
    assert step["bad_steps"] == 1 and not step["rolled_back"]
    assert t.optimizer.state_dict()["state"][0]["step"] == 2  # the two good steps
    assert all(torch.isfinite(v).all() for v in t.vae.state_dict().values())


def test_a_non_finite_gradient_with_a_finite_loss_is_skipped():
    t = _trainer()
    weight = t.vae.decoders.output_layer.weight
    before = weight.detach().clone()
    handle = weight.register_hook(lambda grad: grad * float("nan"))
    step = t.train_epoch()
    handle.remove()
    # every step skipped: no loss was computed, and none is reported (never 0.0)
    assert step["bad_steps"] == 3 and step["train_loss"] is None
    assert torch.equal(weight.detach(), before)


def test_bad_steps_count_across_epochs_and_end_training_that_cannot_proceed():
    # 3 batches per epoch against a patience of 5: a counter reset each epoch never fired
    t = _trainer(**{"train.bad_step_patience": 5})
    faulty = _inject(t, lambda call: call >= 4)  # one good epoch, then only failures
    t.train_epoch()
    assert t.train_epoch()["bad_steps"] == 3 and t.rollbacks == 0
    assert t.train_epoch()["rolled_back"] and t.rollbacks == 1  # steps 4 and 5 of the run
    with pytest.raises(TrainingFailed, match="training cannot proceed"):
        for _ in range(10):
            t.train_epoch()
    assert t.rollbacks == MAX_FRUITLESS_ROLLBACKS
    faulty.bad = lambda call: False  # one finite step clears the count
    t.fruitless_rollbacks = MAX_FRUITLESS_ROLLBACKS - 1
    assert t.train_epoch()["bad_steps"] == 0 and t.fruitless_rollbacks == 0


def test_repeated_failures_roll_back_to_the_last_clean_epoch_with_a_smaller_lr():
    t = _trainer(**{"train.bad_step_patience": 2, "train.rollback_lr_factor": 0.25})
    lr = t.learning_rate()
    t.train_epoch()
    t._clean = t.snapshot()  # what run() does after a clean epoch
    clean = _parameters(t)
    faulty = _inject(t, lambda call: call >= 2)  # one good step, then failures
    step = t.train_epoch()
    assert step["rolled_back"] and step["bad_steps"] == 2 and t.rollbacks == 1
    for name, value in t.vae.state_dict().items():
        assert torch.equal(value, clean[name]), name  # the good step is undone too
    assert t.learning_rate() == lr * 0.25
    faulty.bad = lambda call: False
    assert t.train_epoch()["bad_steps"] == 0 and t.learning_rate() == lr * 0.25


def test_the_history_records_bad_steps_rollbacks_and_the_learning_rate(tmp_path):
    t = _trainer(**{"train.bad_step_patience": 2, "train.max_epochs": 3})
    _inject(t, lambda call: 4 <= call <= 5)  # epoch 2's first two steps
    t.run()
    rows = t.history
    assert [r["bad_steps"] for r in rows] == [0, 2, 0]
    assert [r["rolled_back"] for r in rows] == [False, True, False]
    assert rows[2]["lr"] == rows[0]["lr"] * t.cfg.train.rollback_lr_factor
