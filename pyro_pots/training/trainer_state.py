"""
What a :class:`~pyro_pots.training.trainer.CurriculumTrainer` saves and restores: the
snapshot a rejected split goes back to, the rollback after a run of non-finite steps, and
the checkpoint state that resumes a fit exactly (model, optimizer, stage manager, kick, the
routing refinement's targets, history, batch order, the NaN guard's counters and the RNG
states).
"""

import copy
from typing import Any, Dict

import torch
from pyro.util import get_rng_state, set_rng_state

from pyro_pots.errors import TrainingFailed

#: rollbacks in a row, with no finite step between them, after which training gives up.
MAX_FRUITLESS_ROLLBACKS = 3


class TrainerState:
    """The trainer's snapshots and checkpoint state; :class:`CurriculumTrainer`'s base
    class (it holds ``vae``, ``optimizer``, ``manager``, ``kick``, ``refinement`` and the
    counters)."""

    def learning_rate(self) -> float:
        """The optimizer's current learning rate."""
        return self.optimizer.param_groups[0]["lr"]

    def set_learning_rate(self, lr: float) -> None:
        """Set every parameter group's learning rate."""
        for group in self.optimizer.param_groups:
            group["lr"] = lr

    def _roll_back(self) -> None:
        """Too many non-finite steps in a row: go back to the start of the last clean epoch
        with a smaller learning rate (each event lands in the history). The count of bad
        steps runs across epochs; when ``MAX_FRUITLESS_ROLLBACKS`` rollbacks come with no
        finite step between them, training cannot proceed: :class:`TrainingFailed`."""
        self.rollbacks += 1
        self.fruitless_rollbacks += 1
        if self.fruitless_rollbacks >= MAX_FRUITLESS_ROLLBACKS:
            steps = self.fruitless_rollbacks * self.cfg.train.bad_step_patience
            raise TrainingFailed(
                f"training cannot proceed: {steps} SVI steps in a row were non-finite, "
                f"through {self.fruitless_rollbacks} rollbacks with smaller learning rates "
                f"(epoch {self.epoch + 1}); for likelihood=normal, standardise features of "
                "very large magnitude"
            )
        self.bad_in_a_row = 0
        lr = self.learning_rate() * self.cfg.train.rollback_lr_factor
        self.restore(self._clean)
        self.set_learning_rate(lr)

    def snapshot(self) -> Dict[str, Any]:
        """A copy of the model and optimizer state (see :meth:`restore`)."""
        return {
            "vae": copy.deepcopy(self.vae.state_dict()),
            "optimizer": copy.deepcopy(self.optimizer.state_dict()),
        }

    def restore(self, snap: Dict[str, Any]) -> None:
        """Load a :meth:`snapshot`, keeping the current learning rate (a rollback may have
        lowered it since the snapshot was taken)."""
        lr = self.learning_rate()
        self.vae.load_state_dict(snap["vae"])
        self.optimizer.load_state_dict(snap["optimizer"])
        self.set_learning_rate(lr)

    def state_dict(self) -> Dict[str, Any]:
        """Everything a checkpoint needs to resume exactly: model, optimizer, stage manager,
        kick, the refinement's targets, the pre-split state, history, batch order, the NaN
        guard's counters and RNG states."""
        return {
            "epoch": self.epoch,
            "vae": self.vae.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "manager": self.manager.state_dict(),
            "kick": self.kick.state_dict(),
            "refinement": None if self.refinement is None else self.refinement.state_dict(),
            "pre_split": self.pre_split,
            "history": self.history,
            "batch_generator": self.batch_generator.get_state(),
            "rollbacks": self.rollbacks,
            "bad_in_a_row": self.bad_in_a_row,
            "fruitless_rollbacks": self.fruitless_rollbacks,
            "rng": _rng_to_plain(get_rng_state()),
        }

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        """Restore :meth:`state_dict`'s output (a pending split needs its pre-split state)."""
        if state["manager"]["pending"] is not None and state["pre_split"] is None:
            raise ValueError("a split is pending but the state before it is missing")
        self.epoch = state["epoch"]
        self.manager.load_state_dict(state["manager"])
        self.vae.open_pots(self.manager.open)
        self.vae.load_state_dict(state["vae"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.kick.load_state_dict(state["kick"])
        if self.refinement is not None and state.get("refinement") is not None:
            self.refinement.load_state_dict(state["refinement"])
        self.pre_split = copy.deepcopy(state["pre_split"])
        self.history = list(state["history"])
        self.batch_generator.set_state(state["batch_generator"])
        self.rollbacks = state["rollbacks"]
        self.bad_in_a_row = state["bad_in_a_row"]
        self.fruitless_rollbacks = state["fruitless_rollbacks"]
        self._clean = self.snapshot()
        set_rng_state(_rng_from_plain(state["rng"]))


# Checkpoints load with ``torch.load(weights_only=True)`` (a checkpoint must not be able to
# run code), which reads tensors and Python containers but not numpy arrays: numpy's RNG key
# travels as a tensor.
def _rng_to_plain(state: Dict[str, Any]) -> Dict[str, Any]:
    name, key, pos, has_gauss, cached = state["numpy"]
    numpy_state = [name, torch.from_numpy(key.astype("int64")), pos, has_gauss, cached]
    return {"torch": state["torch"], "random": state["random"], "numpy": numpy_state}


def _rng_from_plain(state: Dict[str, Any]) -> Dict[str, Any]:
    name, key, pos, has_gauss, cached = state["numpy"]
    numpy_state = (name, key.numpy().astype("uint32"), pos, has_gauss, cached)
    return {"torch": state["torch"], "random": state["random"], "numpy": numpy_state}
