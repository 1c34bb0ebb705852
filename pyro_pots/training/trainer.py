"""
The curriculum's training loop: SVI epochs on the open pots, a comparable held-out score
after each, and the stage manager's decisions acted on (split a pot and kick it, restore a
snapshot, stop).

The model and guide stay plain Pyro callables: each step minimises
``Trace_ELBO().differentiable_loss(vae.model, vae.guide, x, active)`` under the handlers
(:func:`~pyro_pots.handlers.logit_prior_scale` for lambda, :func:`~pyro_pots.handlers.kick`
while a new pot is kicked). The kick adds one term outside the ELBO: a cross-entropy that
teaches the encoder's raw logits the two-way split of the parent's rows (a kick that only
biases routing is undone as soon as it ends; see ``shared/docs/FINDINGS.md``). After the
kick the routing is the model's own; a split the data does not support fades.
"""

import contextlib
import copy
import math
from typing import Any, Callable, Dict, List, Optional

import pyro
import torch
from pyro.infer import JitTrace_ELBO, Trace_ELBO
from pyro.util import get_rng_state, set_rng_state
from sklearn.metrics import adjusted_rand_score
from torch.nn.functional import cross_entropy

from pyro_pots import handlers
from pyro_pots.config import Config, model_kwargs
from pyro_pots.curriculum import Decision, StageManager
from pyro_pots.curriculum.normality import split_normality
from pyro_pots.curriculum.split import copy_pot, fresh_pot, two_means
from pyro_pots.errors import PotsInputError
from pyro_pots.model import PotsVAE
from pyro_pots.training import distributed
from pyro_pots.training.scoring import PotScores, mixture_loss, pot_scores, weights_from_mean
from pyro_pots.training.svi_fit import lambda_schedule

#: rows the kick's 2-means sees at most (rows beyond it get no kick target).
_TWO_MEANS_ROWS = 5000


def resolve_device(name: str) -> torch.device:
    """``auto`` is ``cuda`` when a GPU is present, else ``cpu``."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(name)
    if device.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if (device.index or 0) >= count:
            raise PotsInputError(
                f"config key 'train.device': {name} asked for, but this machine has "
                f"{count} CUDA device(s); use cpu or auto"
            )
    return device


def adam(params, lr: float) -> torch.optim.Adam:
    """The trainer's optimizer: Adam, fused into one kernel per step. Each pot is a row of
    stacked tensors, so Adam also updates the closed pots' zero-gradient rows; unfused,
    that made K_max = 64 cost 2.3 times K_max = 4 per step (docs/benchmarks.md)."""
    return torch.optim.Adam(params, lr=lr, fused=True)


def build_manager(cfg: Config, steps_per_epoch: int) -> StageManager:
    """The stage manager ``cfg`` describes; the kick's steps become whole epochs."""
    c = cfg.curriculum
    return StageManager(
        num_pots=cfg.model.num_pots,
        start_pots=c.start_pots,
        min_stage_epochs=c.min_stage_epochs,
        patience=c.patience,
        rel_tol=c.rel_tol,
        smoothing=c.smoothing,
        min_usage=c.min_usage,
        kick_epochs=math.ceil(c.kick_steps / steps_per_epoch),
        parent_rule=c.parent_rule,
        normality_critical=c.normality_critical,
        heldout_stop=c.heldout_stop,
        min_gain=c.min_gain,
        max_fades=c.max_fades,
        min_agreement=c.min_agreement,
    )


class _Method(torch.nn.Module):
    """A module's method as a module of its own: Pyro's ``ELBO.__call__(model, guide)``
    takes the model and guide as modules, whose parameters (here the shared
    :class:`PotsVAE`'s, counted once) become the ELBO module's."""

    def __init__(self, owner: torch.nn.Module, name: str) -> None:
        super().__init__()
        self.owner, self.name = owner, name

    def forward(self, *args, **kwargs):
        return getattr(self.owner, self.name)(*args, **kwargs)


class CurriculumTrainer:
    """
    Grows a :class:`PotsVAE` one pot at a time on ``train_x``, judging stages on
    ``heldout_x`` (or on ``train_x`` when no rows are held out).

    :param Config cfg: the run configuration.
    :param torch.Tensor train_x: rows trained on, ``(N, D)``.
    :param torch.Tensor heldout_x: rows that score the stages, ``(M, D)``; may be empty.
    """

    def __init__(self, cfg: Config, train_x: torch.Tensor, heldout_x: torch.Tensor) -> None:
        self.cfg = cfg
        self.device = distributed.local_device(resolve_device(cfg.train.device))
        pyro.set_rng_seed(cfg.train.seed)
        self.vae = PotsVAE(train_x.shape[1], **model_kwargs(cfg)).to(self.device)
        self.train_x = train_x.to(self.device)
        self.heldout_x = heldout_x.to(self.device) if len(heldout_x) else self.train_x
        world = distributed.world_size()
        self.manager = build_manager(cfg, math.ceil(len(train_x) / (cfg.train.batch_size * world)))
        self.vae.open_pots(self.manager.open)
        self.optimizer = adam(self.vae.parameters(), cfg.train.lr)
        self.model, self.guide = self.vae.model, self.vae.guide  # held once: JIT caches on id
        self._elbos: Dict[Any, Any] = {}
        # under torchrun: DistributedDataParallel over Pyro's ELBO module
        elbo_module = Trace_ELBO()(_Method(self.vae, "model"), _Method(self.vae, "guide"))
        self._ddp = distributed.wrap(elbo_module, self.device)
        self.epoch = 0
        self.history: List[Dict[str, Any]] = []
        # -1: no kick target; else the pot the kick teaches this row's logits to pick.
        self.kick_targets = torch.full((len(train_x),), -1, dtype=torch.long)
        self.kick_pot: Optional[int] = None
        self.batch_generator = torch.Generator().manual_seed(cfg.train.seed)
        self.rollbacks = 0
        self._clean = self.snapshot()  # the state a run of non-finite steps rolls back to

    # -- one epoch -----------------------------------------------------------------
    def train_epoch(self) -> Dict[str, Any]:
        """One pass over the training rows (this rank's shard under torchrun): SVI steps
        under the handlers, plus the kick's cross-entropy while it lasts."""
        cfg, c = self.cfg, self.cfg.curriculum
        lam = lambda_schedule(self.epoch, cfg.prior.lam_warmup_epochs, cfg.prior.lam_max)
        kicking = self.manager.kick_remaining > 0
        active = self.vae.active.clone()
        elbo = self._elbo(lam, kicking)
        if self._ddp is None:
            order = torch.randperm(len(self.train_x), generator=self.batch_generator)
        else:
            order = distributed.shard(len(self.train_x), cfg.train.seed, self.epoch)
        loss_sum = rows_seen = 0.0
        kick = (
            handlers.kick(
                pot=self.kick_pot,
                temperature=c.kick_temperature,
                bias=c.kick_bias,
                lam_factor=c.kick_lam_factor,
            )
            if kicking
            else contextlib.nullcontext()
        )
        # Pyro's argument and shape checks cost about a third of a step here: run them on
        # the first epoch only (shapes do not change later; splits reuse the same tensors).
        validate = pyro.validation_enabled(self.epoch == 0)
        bad_in_a_row = skipped = 0
        rolled_back = False
        with validate, handlers.logit_prior_scale(lam=lam), kick:
            for rows in order.split(cfg.train.batch_size):
                xb = self.train_x[rows]
                if self._ddp is None:
                    loss = elbo.differentiable_loss(self.model, self.guide, xb, active)
                else:
                    loss = self._ddp(xb, active)
                if kicking:
                    loss = loss + c.kick_weight * self._kick_loss(xb, rows, active)
                self.optimizer.zero_grad()
                if not self._backward_is_finite(loss):
                    # the NaN guard: a non-finite step never reaches the parameters
                    skipped += 1
                    bad_in_a_row += 1
                    if bad_in_a_row >= cfg.train.bad_step_patience:
                        self._roll_back()
                        rolled_back = True
                        break
                    continue
                bad_in_a_row = 0
                self.optimizer.step()
                loss_sum += loss.item()
                rows_seen += len(rows)
        self.epoch += 1
        total = torch.tensor([loss_sum, rows_seen], dtype=torch.float64, device=self.device)
        total = distributed.all_reduce_sum(total).cpu()
        return {
            "train_loss": (total[0] / total[1].clamp_min(1)).item(),
            "lam": lam,
            "kicking": kicking,
            "bad_steps": skipped,
            "rolled_back": rolled_back,
        }

    def _backward_is_finite(self, loss: torch.Tensor) -> bool:
        """Backpropagate ``loss``; whether the loss and every gradient are finite (on every
        rank: under DDP every rank runs the backward pass and they skip a step together)."""
        finite = bool(torch.isfinite(loss))
        if not finite and self._ddp is None:
            return False
        loss.backward()
        grads = [p.grad for p in self.vae.parameters() if p.grad is not None]
        finite = finite and bool(torch.isfinite(torch.nn.utils.get_total_norm(grads)))
        return distributed.all_true(finite, self.device)

    def _roll_back(self) -> None:
        """Too many non-finite steps in a row: go back to the start of the last clean epoch
        with a smaller learning rate (each event lands in the history)."""
        lr = self.learning_rate() * self.cfg.train.rollback_lr_factor
        self.restore(self._clean)
        self.set_learning_rate(lr)
        self.rollbacks += 1

    def learning_rate(self) -> float:
        """The optimizer's current learning rate."""
        return self.optimizer.param_groups[0]["lr"]

    def set_learning_rate(self, lr: float) -> None:
        """Set every parameter group's learning rate."""
        for group in self.optimizer.param_groups:
            group["lr"] = lr

    def _elbo(self, lam: float, kicking: bool):
        if not self.cfg.train.jit:
            return self._elbos.setdefault(None, Trace_ELBO())
        # handler values are compile-time constants under JIT: one compiled ELBO each
        key = (lam, self.kick_pot if kicking else None)
        if key not in self._elbos:
            self._elbos[key] = JitTrace_ELBO(ignore_jit_warnings=True)
        return self._elbos[key]

    def _kick_loss(self, xb: torch.Tensor, rows: torch.Tensor, active: torch.Tensor):
        """Cross-entropy (summed over rows) between the raw logits over the open pots and
        the two-way split of the parent's rows; rows without a target add nothing."""
        target = self.kick_targets[rows].to(self.device)
        has = target >= 0
        if not has.any():
            return xb.new_zeros(())
        head = self.vae.encoder.logits_params(self.vae.encoder.hidden(xb[has]))
        y = self.vae.logits_guide(head).mean
        y = y.masked_fill(~active, -math.inf)
        return cross_entropy(y, target[has], reduction="sum")

    # -- scores --------------------------------------------------------------------
    def evaluate(self, full: bool = True) -> Dict[str, Any]:
        """The numbers the stage manager judges by, with fixed noise (common random
        numbers): the held-out mixture loss and each pot's share of the training rows;
        with ``full`` also :meth:`train_scores` (needed only at a stage end, and the
        costly part)."""
        active = self.vae.active
        pots = active.nonzero().squeeze(-1)
        a = len(pots)
        # each rank scores its share of the rows; the sums are reduced across ranks
        rows = distributed.strided(self.train_x)
        resp = self.vae.responsibilities(rows, active).index_select(-1, pots).double()
        sums = torch.cat(
            [
                resp.sum(0),
                resp.argmax(-1).bincount(minlength=a).double(),
                resp.max(-1).values.sum().reshape(1),
                resp.new_tensor([len(resp)]),
            ]
        )
        sums = distributed.all_reduce_sum(sums)
        n = sums[-1]
        weights = weights_from_mean(sums[:a] / n).to(self.heldout_x.dtype)
        held_noise = torch.Generator().manual_seed(self.cfg.train.seed + 2)
        held_rows = distributed.strided(self.heldout_x)
        held = pot_scores(self.vae, held_rows, active, generator=held_noise)
        held_sum = mixture_loss(held, weights).double().sum().reshape(1)
        held_sum = distributed.all_reduce_sum(torch.cat([held_sum, n.new_tensor([len(held_rows)])]))
        result = {
            "heldout_loss": (held_sum[0] / held_sum[1]).item(),
            "usage": dict(zip(pots.tolist(), (sums[a : 2 * a] / n).tolist())),
            "mean_max_resp": (sums[2 * a] / n).item(),
            "misfit": {},
            "scores": None,
        }
        if full:
            result.update(self.train_scores())
        return result

    def train_scores(self) -> Dict[str, Any]:
        """Each open pot's misfit (total negative ELBO of the training rows, weighted by
        responsibility) and the training rows' :class:`PotScores`."""
        noise = torch.Generator().manual_seed(self.cfg.train.seed + 1)
        train = pot_scores(self.vae, self.train_x, self.vae.active, generator=noise)
        misfit = -(train.resp * train.elbo).sum(0)
        return {"misfit": dict(zip(train.pots.tolist(), misfit.tolist())), "scores": train}

    def _stage_end_scores(self):
        """Misfit, normality and the pending split's agreement for the stage manager,
        computed on rank 0 and sent to every rank (so that every rank takes the same
        decision); the training rows' scores, which only rank 0 needs to split, stay on
        rank 0 (None elsewhere)."""
        kept: Dict[str, Any] = {}

        def compute():
            kept.update(self.train_scores())
            scores = kept["scores"]
            return kept["misfit"], self.normality(scores), self.split_agreement(scores)

        misfit, normality, agreement = distributed.from_main(compute)
        return misfit, normality, agreement, kept.get("scores")

    def split_agreement(self, scores: PotScores) -> Optional[float]:
        """How well the pending split kept the kick's partition: the adjusted Rand index
        between the kick targets of the parent's rows and their pots now (None when no
        split is pending). A split across a real gap keeps its boundary once the routing
        is the model's own; a cut through one mode drifts."""
        has = self.kick_targets >= 0
        if self.manager.pending is None or not has.any():
            return None
        pots_now = scores.pots.cpu()[scores.resp.argmax(-1).cpu()]
        return float(adjusted_rand_score(self.kick_targets[has].numpy(), pots_now[has].numpy()))

    def normality(self, scores: PotScores) -> Dict[int, float]:
        """Each open pot's normality statistic: the larger of the split test on its latent
        codes and on its rows themselves. (On codes alone, measured on synthetic K = 8, a pot
        holding two clusters could score below the critical value: the KL term had pulled
        the two clusters' codes into one blob.)"""
        own = scores.resp.argmax(-1)
        seed = self.cfg.train.seed
        return {
            pot: max(
                split_normality(scores.codes[j][own == j], seed),
                split_normality(self.train_x[own == j][:_TWO_MEANS_ROWS], seed),
            )
            for j, pot in enumerate(scores.pots.tolist())
        }

    # -- acting on decisions ---------------------------------------------------------
    def act(self, decision: Decision, scores: Optional[PotScores]) -> None:
        """Restore the pre-unlock snapshot when told to, then split on an unlock."""
        if decision.restore:
            self.restore(self.manager.snapshot)
            self.kick_targets.fill_(-1)
        if decision.action == "unlock":
            self.manager.snapshot = self.snapshot()
            self._split(decision.parent, decision.pot, scores)
        self.vae.open_pots(self.manager.open)
        if decision.restore or decision.action == "unlock":
            distributed.broadcast_state(self.vae)  # ranks stay bit-identical

    def _split(self, parent: int, new: int, scores: Optional[PotScores]) -> None:
        """Copy the parent into the new pot (or draw it afresh: ``new_pot_init``) and set
        the kick's targets: the parent's rows split in two by 2-means on the rows
        themselves. (2-means on the parent's latent codes was tried first: the KL term
        pulls the codes of two clusters sharing a pot together, and its halves cut across
        the clusters; those splits faded.) Under torchrun the targets come from rank 0,
        which holds the stage-end ``scores``."""
        c = self.cfg.curriculum
        gen = torch.Generator().manual_seed(self.cfg.train.seed + 1000 + new)
        if c.new_pot_init == "fresh":
            fresh_pot(self.vae, new, gen, self.optimizer)
        else:
            copy_pot(self.vae, parent, new, c.init_noise, gen, self.optimizer)

        def targets() -> torch.Tensor:
            column = scores.pots.tolist().index(parent)
            rows = (scores.resp.argmax(-1) == column).nonzero().squeeze(-1).cpu()
            rows = rows[torch.randperm(len(rows), generator=gen)[:_TWO_MEANS_ROWS]]
            halves = torch.as_tensor(two_means(self.train_x[rows.to(self.device)], new))
            result = torch.full_like(self.kick_targets, -1)
            result[rows] = torch.where(halves == 1, new, parent)
            return result

        self.kick_targets = distributed.from_main(targets)
        self.kick_pot = new

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

    # -- the loop ------------------------------------------------------------------
    def run(self, on_epoch: Optional[Callable[[Dict[str, Any]], None]] = None) -> None:
        """Train until the stage manager stops or ``train.max_epochs`` epochs have run. A
        run cut by the budget can go on (a larger budget, :meth:`run` again); call
        :meth:`finish` for the final model."""
        while not self.manager.stopped and self.epoch < self.cfg.train.max_epochs:
            step = self.train_epoch()
            ev = self.evaluate(full=False)
            if not math.isfinite(ev["heldout_loss"]):  # the stage manager cannot judge it
                raise PotsInputError(
                    f"the held-out loss is {ev['heldout_loss']} after epoch {self.epoch}: the "
                    "model cannot score this data in float32 (for likelihood=normal, "
                    "standardise features of very large magnitude)"
                )
            normality = None
            agreement = None
            if self.manager.would_end_stage(ev["heldout_loss"]):
                ev["misfit"], normality, agreement, ev["scores"] = self._stage_end_scores()
            decision = self.manager.observe(
                ev["heldout_loss"], ev["usage"], ev["misfit"], normality, agreement
            )
            self.act(decision, ev["scores"])
            if step["bad_steps"] == 0:  # after act(): a rollback never undoes a decision
                self._clean = self.snapshot()
            row = {
                "epoch": self.epoch,
                "stage": self.manager.stage,
                "n_open": len(self.manager.open),
                "open": list(self.manager.open),
                "train_loss": step["train_loss"],
                "heldout_loss": ev["heldout_loss"],
                "lam": step["lam"],
                "temperature": (
                    self.cfg.curriculum.kick_temperature
                    if step["kicking"]
                    else self.cfg.routing.temperature
                ),
                "kicking": step["kicking"],
                "bad_steps": step["bad_steps"],
                "rolled_back": step["rolled_back"],
                "lr": self.learning_rate(),
                "mean_max_resp": ev["mean_max_resp"],
                "usage": ev["usage"],
                "action": decision.action,
            }
            self.history.append(row)
            if on_epoch is not None:
                on_epoch(row)

    def finish(self) -> None:
        """Stop a run cut by the epoch budget: a split not yet judged is undone."""
        if not self.manager.stopped:
            decision = self.manager.stop("the epoch budget (train.max_epochs) is spent")
            self.act(decision, None)

    # -- growing on new data -----------------------------------------------------------
    def grow_from(self, state: Dict[str, Any]) -> Decision:
        """Start from a fitted run's trainer ``state`` on this trainer's (new) data: the
        model, optimizer, open pots and history carry over, the curriculum starts a new
        stage, and the ``grow`` decision records each open pot's share of the new rows."""
        # the old rows' kick targets mean nothing on the new rows
        self.load_state_dict({**state, "kick_targets": torch.full_like(self.kick_targets, -1)})
        self.finish()  # the fitted model, as its run wrote it: a split not judged is undone
        self.kick_pot = None
        usage = self.evaluate(full=False)["usage"]
        decision = self.manager.grow({"usage": usage, "rows": len(self.train_x)})
        self._clean = self.snapshot()
        return decision

    # -- checkpoints ---------------------------------------------------------------
    def state_dict(self) -> Dict[str, Any]:
        """Everything a checkpoint needs to resume exactly: model, optimizer, stage manager,
        history, kick targets, batch order and RNG states."""
        return {
            "epoch": self.epoch,
            "vae": self.vae.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "manager": self.manager.state_dict(),
            "history": self.history,
            "kick_targets": self.kick_targets,
            "kick_pot": self.kick_pot,
            "batch_generator": self.batch_generator.get_state(),
            "rollbacks": self.rollbacks,
            "rng": _rng_to_plain(get_rng_state()),
        }

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        """Restore :meth:`state_dict`'s output."""
        self.epoch = state["epoch"]
        self.manager.load_state_dict(state["manager"])
        self.vae.open_pots(self.manager.open)
        self.vae.load_state_dict(state["vae"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.history = list(state["history"])
        self.kick_targets = state["kick_targets"].clone()
        self.kick_pot = state["kick_pot"]
        self.batch_generator.set_state(state["batch_generator"])
        self.rollbacks = state["rollbacks"]
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
