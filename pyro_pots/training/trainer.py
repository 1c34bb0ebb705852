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
import math
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import pyro
import torch
from pyro.infer import Trace_ELBO

from pyro_pots import handlers
from pyro_pots.config import Config, model_kwargs, resolve_likelihood
from pyro_pots.curriculum import Decision, StageManager
from pyro_pots.curriculum.gaps import cut_contrast
from pyro_pots.curriculum.kick import NO_TARGET, Kick
from pyro_pots.curriculum.neighbours import NeighbourPrior, cut_ratio, nearest_among
from pyro_pots.curriculum.proposals import ON_CODES, parse_proposals, proposal_order, propose
from pyro_pots.curriculum.refinement import RoutingRefinement
from pyro_pots.curriculum.split import copy_pot, fresh_pot
from pyro_pots.distributions import pots_mask
from pyro_pots.errors import PotsInputError
from pyro_pots.model import PotsVAE
from pyro_pots.model.scoring import PotScores, pot_scores
from pyro_pots.training import distributed, stage_scores
from pyro_pots.training.guard import steps_per_epoch
from pyro_pots.training.parts import ElboMethod, ScheduledElbo, adam, build_manager, resolve_device
from pyro_pots.training.svi_fit import lambda_schedule
from pyro_pots.training.trainer_state import TrainerState


class CurriculumTrainer(TrainerState):
    """
    Grows a :class:`PotsVAE` one pot at a time on ``train_x``, judging stages on
    ``heldout_x`` (or on ``train_x`` when no rows are held out). Built from its parts; most
    callers want :meth:`from_config`.

    :param Config cfg: the run configuration (the settings the parts do not hold:
        batches, lambda's schedule, the NaN guard, how a new pot starts).
    :param PotsVAE vae: the model, on the device it trains on (any logit prior, logits
        guide, routing or networks; its open set is the manager's).
    :param StageManager manager: the curriculum's decisions.
    :param Kick kick: the kick that teaches each split.
    :param torch.optim.Optimizer optimizer: over ``vae``'s parameters.
    :param torch.Tensor train_x: rows trained on, ``(N, D)``.
    :param torch.Tensor heldout_x: rows that score the stages, ``(M, D)``; may be empty.
    :param NeighbourPrior neighbour_prior: the Potts prior over the training rows'
        neighbour graph (:mod:`~pyro_pots.curriculum.neighbours`); None: off.
    :param RoutingRefinement refinement: the routing refinement
        (:mod:`~pyro_pots.curriculum.refinement`); None: off.
    """

    def __init__(
        self,
        cfg: Config,
        vae: PotsVAE,
        manager: StageManager,
        kick: Kick,
        optimizer: torch.optim.Optimizer,
        train_x: torch.Tensor,
        heldout_x: torch.Tensor,
        neighbour_prior: Optional[NeighbourPrior] = None,
        refinement: Optional[RoutingRefinement] = None,
    ) -> None:
        if len(kick.targets) != len(train_x):
            raise ValueError(f"the kick has {len(kick.targets)} rows, train_x {len(train_x)}")
        self.cfg = cfg
        self.vae, self.manager, self.kick, self.optimizer = vae, manager, kick, optimizer
        self.device = next(vae.parameters()).device
        self.train_x = train_x.to(self.device)
        self.heldout_x = heldout_x.to(self.device) if len(heldout_x) else self.train_x
        self.proposals = parse_proposals(cfg.curriculum.split_proposals)
        # each pot's normality statistics by test at the last stage end (rank 0), and the
        # order of the pending split's proposals (fixed at its first attempt)
        self.normality_tests: Dict[int, Dict[str, float]] = {}
        self.split_order: Optional[Tuple[int, Sequence[str]]] = None
        self.neighbour_prior = neighbour_prior
        self.refinement = refinement
        # each held-out row's neighbours among the training rows: a split's evidence is
        # scored under the Potts prior the model is trained with
        self.heldout_neighbours = self._heldout_neighbours()
        self.vae.open_pots(self.manager.open)
        self.model, self.guide = self.vae.model, self.vae.guide  # held once: JIT caches on id
        self._trace_elbo = Trace_ELBO()
        # train.jit: one compiled ELBO for the whole fit; lambda and the kick's values are
        # its tensor arguments (set each epoch by _elbo), not handlers around the loop
        self._jit: Optional[ScheduledElbo] = None
        if cfg.train.jit:
            straight = getattr(vae, "routing", None) == "straight_through"
            self._jit = ScheduledElbo(self.model, self.guide, vae.temperature, straight)
        # under torchrun: DistributedDataParallel over Pyro's ELBO module
        if self._jit is None:
            elbo_module = Trace_ELBO()(ElboMethod(self.vae, "model"), ElboMethod(self.vae, "guide"))
        else:
            elbo_module = self._jit.module(self.vae)
        self._ddp = distributed.wrap(elbo_module, self.device)
        self.epoch = 0
        self.history: List[Dict[str, Any]] = []
        self.batch_generator = torch.Generator().manual_seed(cfg.train.seed)
        self.rollbacks = 0
        self.bad_in_a_row = 0  # non-finite steps since the last finite one or rollback
        self.fruitless_rollbacks = 0  # rollbacks since the last finite step
        # the state before the pending split, and its held-out rows' losses (the evidence's
        # baseline); None when no split is pending
        self.pre_split: Optional[Dict[str, Any]] = None
        self._clean = self.snapshot()  # the state a run of non-finite steps rolls back to

    @classmethod
    def from_config(
        cls,
        cfg: Config,
        train_x: torch.Tensor,
        heldout_x: torch.Tensor,
        model: Optional[PotsVAE] = None,
    ) -> "CurriculumTrainer":
        """The trainer ``cfg`` describes: a new :class:`PotsVAE` (or ``model``, a user's
        own, moved to the configured device), its stage manager, kick and Adam."""
        device = distributed.local_device(resolve_device(cfg.train.device))
        pyro.set_rng_seed(cfg.train.seed)
        if model is None:
            cfg = resolve_likelihood(cfg, train_x, heldout_x)  # auto: named by the data
            model = PotsVAE(train_x.shape[1], **model_kwargs(cfg))
        elif model.encoder.trunk.in_features != train_x.shape[1]:
            raise PotsInputError(
                f"the model takes {model.encoder.trunk.in_features} features, the data has "
                f"{train_x.shape[1]}"
            )
        vae = model.to(device)
        if cfg.data.scaling == "standard":
            vae.standardize_to(train_x.to(device))
        world = distributed.world_size()
        manager = build_manager(cfg, math.ceil(len(train_x) / (cfg.train.batch_size * world)))
        vae.open_pots(manager.open)
        c = cfg.curriculum
        kick = Kick(
            len(train_x),
            weight=c.kick_weight,
            temperature=c.kick_temperature,
            bias=c.kick_bias,
            lam_factor=c.kick_lam_factor,
        )
        optimizer = adam(vae.parameters(), cfg.train.lr)
        neighbour_prior = None
        k = min(c.neighbours, len(train_x) - 1)  # a graph needs two rows
        if c.neighbour_weight > 0 and k > 0:
            rows = vae.standardize(train_x.to(device)).to(train_x.device)
            neighbour_prior = NeighbourPrior(rows, k, c.neighbour_weight, cfg.train.seed)
        refinement = None
        if c.refine_weight > 0:
            rows_per_batch = c.refine_rows or None  # 0: every row
            refinement = RoutingRefinement(
                c.refine_weight, cfg.train.seed, rows_per_batch, c.refine_every
            )
        return cls(
            cfg, vae, manager, kick, optimizer, train_x, heldout_x, neighbour_prior, refinement
        )

    # -- where distances are measured ---------------------------------------------------
    def scaled(self, x: torch.Tensor) -> torch.Tensor:
        """Rows ``x`` in the units the model reads (:meth:`PotsVAE.standardize`): the
        neighbour graph, the split proposals and the normality test on rows measure
        distances in them."""
        return self.vae.standardize(x)

    def _heldout_neighbours(self) -> Optional[torch.Tensor]:
        """Each held-out row's neighbours among the training rows (None without the
        graph; the graph's own when no rows are held out)."""
        if self.neighbour_prior is None:
            return None
        if self.heldout_x is self.train_x:
            return self.neighbour_prior.neighbours
        held, train = self.scaled(self.heldout_x), self.scaled(self.train_x)
        return nearest_among(held, train, self.neighbour_prior.k)

    def rebuild_graph(self) -> None:
        """Build the neighbour graph again on the training rows as the model now reads
        them (after the rows or the model's units changed)."""
        old = self.neighbour_prior
        if old is None:
            return
        k = min(old.k, len(self.train_x) - 1)
        self.neighbour_prior = NeighbourPrior(self.scaled(self.train_x), k, old.beta, old.seed)
        self.heldout_neighbours = self._heldout_neighbours()

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        """Restore :meth:`state_dict`'s output; a model saved in other units (a grown
        run's, or one saved before the units existed) gets its graph rebuilt in them."""
        units = self.vae.standardize(self.train_x[:1])
        super().load_state_dict(state)
        if not torch.equal(units, self.vae.standardize(self.train_x[:1])):
            self.rebuild_graph()

    def leave_process_group(self) -> None:
        """Drop the DistributedDataParallel wrapper before torchrun's process group is
        destroyed (a reducer that outlives its group can abort the process at exit, seen
        with the compiled ELBO); later epochs, if any, train this process alone."""
        self._ddp = None

    # -- one epoch -----------------------------------------------------------------
    def train_epoch(self) -> Dict[str, Any]:
        """One pass over the training rows (this rank's shard under torchrun): SVI steps
        under the handlers, plus the kick's cross-entropy while it lasts."""
        cfg = self.cfg
        lam = lambda_schedule(self.epoch, cfg.prior.lam_warmup_epochs, cfg.prior.lam_max)
        kicking = self.manager.kick_remaining > 0
        active = self.vae.active.clone()
        elbo = self._elbo(lam, kicking)
        if self._ddp is None:
            order = torch.randperm(len(self.train_x), generator=self.batch_generator)
        else:
            order = distributed.shard(len(self.train_x), cfg.train.seed, self.epoch)
        loss_sum = rows_seen = 0.0
        # Pyro's argument and shape checks cost about a third of a step here: run them on
        # the first epoch only (shapes do not change later; splits reuse the same tensors).
        validate = pyro.validation_enabled(self.epoch == 0)
        skipped = 0
        rolled_back = False
        if self.neighbour_prior is not None:
            self.neighbour_prior.start_epoch(self.epoch)
        # the refinement holds rows in the pot that explains them; a kick teaches its own
        refine = self.refinement is not None and int(active.sum()) > 1
        if refine:
            self.refinement.start_epoch(self.epoch)
            self.refinement.refresh(self.vae, self.train_x, active, self.epoch, kicking)
        extra_terms = kicking or refine or self.neighbour_prior is not None
        eager = self._jit is None  # under train.jit the values are the compiled ELBO's inputs
        lam_scale = handlers.logit_prior_scale(lam=lam) if eager else contextlib.nullcontext()
        with validate, lam_scale, self.kick.handler(kicking and eager):
            for rows in order.split(cfg.train.batch_size):
                xb = self.train_x[rows]
                if self._ddp is None:
                    loss = elbo.differentiable_loss(self.model, self.guide, xb, active)
                else:
                    loss = self._ddp(xb, active)
                # the terms outside the ELBO share one encoder pass over the batch
                logits = self.vae.mean_logits(xb) if extra_terms else None
                if kicking:
                    loss = loss + self.kick.loss(self.vae, xb, rows, active, logits)
                if self.neighbour_prior is not None:
                    prior = self.neighbour_prior
                    loss = loss + prior.loss(self.vae, self.train_x, rows, active, logits)
                if refine:
                    taught = self.kick.taught(rows) if kicking else None
                    loss = loss + self.refinement.loss(self.vae, xb, active, taught, rows, logits)
                self.optimizer.zero_grad()
                if not self._backward_is_finite(loss):
                    # the NaN guard: a non-finite step never reaches the parameters
                    skipped += 1
                    self.bad_in_a_row += 1
                    if self.bad_in_a_row >= cfg.train.bad_step_patience:
                        self._roll_back()
                        rolled_back = True
                        break
                    continue
                self.bad_in_a_row = self.fruitless_rollbacks = 0
                self.optimizer.step()
                loss_sum += loss.item()
                rows_seen += len(rows)
        self.epoch += 1
        total = torch.tensor([loss_sum, rows_seen], dtype=torch.float64, device=self.device)
        total = distributed.all_reduce_sum(total).cpu()
        return {
            # None, not 0: no step of this epoch was finite, so no loss was computed
            "train_loss": (total[0] / total[1]).item() if total[1] > 0 else None,
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

    def _elbo(self, lam: float, kicking: bool):
        """The ELBO of an epoch's steps: ``Trace_ELBO`` under the handlers that
        :meth:`train_epoch` enters, or (``train.jit``) the one compiled ELBO, given lambda
        and the kick's values as tensor arguments (also under torchrun)."""
        if self._jit is None:
            return self._trace_elbo
        k = self.kick
        kick = None
        if kicking:
            kick = dict(pot=k.pot, temperature=k.temperature, bias=k.bias, lam_factor=k.lam_factor)
        return self._jit.at(lam, kick, next(self.vae.parameters()).dtype, self.device)

    # -- scores --------------------------------------------------------------------
    def evaluate(self, full: bool = True) -> Dict[str, Any]:
        """The numbers the stage manager judges by (:func:`~.stage_scores.epoch_scores`);
        with ``full`` also the training rows' misfit and scores (needed only at a stage
        end, and the costly part)."""
        ev = stage_scores.epoch_scores(self.vae, self.train_x, self.heldout_x, self.cfg.train.seed)
        result = {
            "heldout_loss": ev.heldout_loss,
            "heldout_rows": ev.heldout_rows,
            "usage": ev.usage,
            "mean_max_resp": ev.mean_max_resp,
            "misfit": {},
            "scores": None,
        }
        if full:
            result.update(self.train_scores())
        return result

    def train_scores(self) -> Dict[str, Any]:
        """Each open pot's misfit and the training rows' :class:`PotScores`."""
        scores = stage_scores.train_scores(self.vae, self.train_x, self.cfg.train.seed)
        return {"misfit": stage_scores.misfit(scores), "scores": scores}

    def stage_end_scores(self, heldout_rows: torch.Tensor) -> Dict[str, Any]:
        """Misfit, normality, the pending split's agreement and its evidence (the paired
        held-out gain over :attr:`pre_split`, from this epoch's ``heldout_rows``, and with
        the neighbour graph its :meth:`split_cut`: ``cut_ratio`` and ``cut_contrast``),
        computed on rank 0 and sent to every rank (so that every rank takes the same
        decision); the training rows' scores, which only rank 0 needs to split, stay on
        rank 0 (None elsewhere)."""
        kept: Dict[str, Any] = {}
        seed = self.cfg.train.seed

        def compute():
            kept.update(self.train_scores())
            scores = kept["scores"]
            whitened = self.cfg.curriculum.normality_whitened
            rows = self.scaled(self.train_x)
            tests = stage_scores.normality_tests(scores, rows, seed, whitened)
            self.normality_tests = tests
            normality = {pot: max(by_test.values()) for pot, by_test in tests.items()}
            agreement, cut = self.split_agreement(scores), self.split_cut(scores)
            return kept["misfit"], normality, agreement, cut, self.potts_rows(scores)

        misfit, normality, agreement, cut, potts_rows = distributed.from_main(compute)
        evidence = None
        if self.manager.pending is not None:
            evidence = stage_scores.split_evidence(self.pre_split or {}, heldout_rows, potts_rows)
        if evidence is not None and cut is not None:  # recorded beside the gain
            evidence.update(cut)
        return {
            "misfit": misfit,
            "normality": normality,
            "agreement": agreement,
            "evidence": evidence,
            "potts_rows": potts_rows,
            "scores": kept.get("scores"),
        }

    def potts_rows(self, scores: PotScores) -> Optional[torch.Tensor]:
        """The held-out rows' losses under the Potts prior
        (:func:`~.stage_scores.potts_heldout_rows`), given the training rows' stage-end
        ``scores``; None without the neighbour graph."""
        if self.neighbour_prior is None:
            return None
        return stage_scores.potts_heldout_rows(
            self.vae,
            self.heldout_x,
            scores,
            self.heldout_neighbours,
            self.neighbour_prior.beta,
            self.cfg.train.seed,
        )

    def split_agreement(self, scores: PotScores) -> Optional[float]:
        """How well the pending split kept the kick's partition (:meth:`Kick.agreement`);
        None when no split is pending."""
        if self.manager.pending is None:
            return None
        return self.kick.agreement(stage_scores.pots_of_rows(scores))

    def split_cut(self, scores: PotScores) -> Optional[Dict[str, float]]:
        """How far the pending split's two pots follow the neighbour graph
        (:func:`~pyro_pots.curriculum.gaps.cut_contrast`: the boundary's ``cut_ratio``, 0
        apart in the graph, about 1 a boundary that ignores it, and its ``cut_contrast``
        with the sparsest cuts inside the two pots); None without a pending split, a graph
        or a boundary."""
        if self.manager.pending is None or self.neighbour_prior is None:
            return None
        pending = self.manager.pending
        pots = stage_scores.pots_of_rows(scores)
        graph = self.neighbour_prior.neighbours
        parent, new = pending["parent"], pending["pot"]
        rows = self.scaled(self.train_x)
        return cut_contrast(pots, graph, rows, parent, new, self.cfg.train.seed)

    # -- acting on decisions ---------------------------------------------------------
    def act(
        self,
        decision: Decision,
        scores: Optional[PotScores],
        heldout_rows: Optional[torch.Tensor] = None,
        potts_rows: Optional[torch.Tensor] = None,
    ) -> None:
        """Restore the pre-split state when told to, then split on an unlock. ``scores``
        are the training rows' stage-end scores (the split's rows come from them),
        ``heldout_rows`` this epoch's held-out losses and ``potts_rows`` the same rows'
        under the Potts prior (the baselines a split's evidence is measured against)."""
        if decision.restore:
            self.restore(self.pre_split["state"])
            self.kick.clear()
        if decision.action == "unlock":
            if not decision.restore:  # a retry keeps the baseline it was restored to
                self.pre_split = {
                    "state": self.snapshot(),
                    "heldout_rows": heldout_rows,
                    "potts_rows": potts_rows,
                }
            if self.pre_split.get("potts_rows") is not None:
                # the held-out rows the split acts on (the controlled gain, measured only
                # under the Potts prior, compares them with the rest), in the pre-split
                # state: after a rejection the next parent may be another pot
                pots = stage_scores.heldout_pots(self.vae, self.heldout_x)
                self.pre_split["parent_rows"] = pots == decision.parent
            self._split(decision.parent, decision.pot, decision.attempt, scores)
        if self.manager.pending is None:
            self.pre_split = None
        self.vae.open_pots(self.manager.open)
        if decision.restore or decision.action == "unlock":
            distributed.broadcast_state(self.vae)  # ranks stay bit-identical

    def _split(self, parent: int, new: int, attempt: int, scores: Optional[PotScores]) -> None:
        """Copy the parent into the new pot (or draw it afresh: ``new_pot_init``) and start
        the kick on a two-way partition of the parent's rows: the ``attempt``-th proposal
        of ``curriculum.split_proposals`` in the parent's
        :func:`~pyro_pots.curriculum.proposals.proposal_order`, with noise of its own; the
        proposal used is noted in the unlock's record. Under torchrun the targets come from
        rank 0, which holds the stage-end ``scores``."""
        c = self.cfg.curriculum
        gen = torch.Generator().manual_seed(self.cfg.train.seed + 1000 + new + 7919 * attempt)
        if c.new_pot_init == "fresh":
            fresh_pot(self.vae, new, gen, self.optimizer)
        else:
            copy_pot(self.vae, parent, new, c.init_noise, gen, self.optimizer)

        def targets() -> Tuple[str, Dict[str, float], torch.Tensor, Optional[float]]:
            rows = stage_scores.rows_of_pot(scores, parent)
            rows = rows[torch.randperm(len(rows), generator=gen)[: stage_scores.MAX_SPLIT_ROWS]]
            method = self.proposals_for(parent, attempt)[attempt]
            codes = None
            if method in ON_CODES:  # the parent's latent codes of the same rows
                own = scores.codes[scores.pots.tolist().index(parent)]
                codes = own[rows.to(own.device)]
            data = self.scaled(self.train_x[rows.to(self.device)])
            halves = torch.as_tensor(propose(method, data, new, codes))
            result = torch.full_like(self.kick.targets, NO_TARGET)
            result[rows] = torch.where(halves == 1, new, parent)
            cut = None  # how far the proposal itself follows the neighbour graph
            if self.neighbour_prior is not None:
                cut = cut_ratio(result, self.neighbour_prior.neighbours, parent, new)
            return method, dict(self.normality_tests.get(parent, {})), result, cut

        # every rank notes the same: the tests are rank 0's
        method, tests, result, cut = distributed.from_main(targets)
        noted = {"proposal": method}
        if cut is not None:
            noted["proposal_cut_ratio"] = cut
        if attempt == 0:  # the statistics that set the order of the parent's proposals
            noted["normality_tests"] = tests
        self.manager.note_unlock(new, **noted)
        if self.manager.screens(cut, method):  # undone before its kick: the next one at once
            self.act(self.manager.screen(cut), scores)
            return
        self.kick.start(new, result)

    def proposals_for(self, parent: int, attempt: int) -> Sequence[str]:
        """The order of ``parent``'s split proposals: with ``normality_whitened``, set from
        its normality tests at the first attempt and kept for its retries (a retry's
        stage-end tests are the split's, not the parent's; after a resume between the two,
        the latest tests decide); without, as configured."""
        c = self.cfg.curriculum
        if not c.normality_whitened:  # the configured order, as before the whitened test
            return self.proposals
        if attempt == 0 or self.split_order is None or self.split_order[0] != parent:
            tests = self.normality_tests.get(parent, {})
            order = proposal_order(self.proposals, tests, c.normality_critical)
            self.split_order = (parent, order)
        return self.split_order[1]

    def kick_goes_on(self) -> bool:
        """With ``curriculum.kick_max_steps``, whether the kick that has just run its
        epochs goes on for one more: while it has run fewer than ``kick_max_steps`` steps
        and the two pots' decoders have not parted its rows (:meth:`kick_parted` below
        ``min_agreement``). Decided on rank 0."""
        c = self.cfg.curriculum
        if c.kick_max_steps <= c.kick_steps or self.manager.pending is None:
            return False
        per_epoch = steps_per_epoch(self.cfg, len(self.train_x))
        stage = self.manager.stage
        kicked = 1 + sum(row["kicking"] and row["stage"] == stage for row in self.history)
        if kicked * per_epoch >= c.kick_max_steps:
            return False
        return distributed.from_main(lambda: self.kick_parted() < c.min_agreement)

    @torch.no_grad()
    def kick_parted(self) -> float:
        """How far the decoders of the pending split's two pots have parted the kicked
        rows: the adjusted Rand index between the kick's halves and, for each row, the pot
        of the two whose ELBO is higher (the model's own choice, routing aside)."""
        pending = self.manager.pending
        rows = (self.kick.targets != NO_TARGET).nonzero().squeeze(-1)
        if len(rows) == 0:  # nothing kicked (a parent without rows): nothing to part
            return 1.0
        two = pots_mask(self.vae.num_pots, [pending["parent"], pending["pot"]]).to(self.device)
        noise = torch.Generator(device=self.device).manual_seed(self.cfg.train.seed + 31)
        scores = pot_scores(self.vae, self.train_x[rows.to(self.device)], two, generator=noise)
        better = torch.full_like(self.kick.targets, NO_TARGET)
        better[rows] = scores.best_pots().cpu()
        return self.kick.agreement(better)  # the kick's own ARI, on the better pots

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
                    "standardise features of very large magnitude: data.scaling=standard)"
                )
            end: Dict[str, Any] = {}
            if self.manager.would_end_stage(ev["heldout_loss"]):
                end = self.stage_end_scores(ev["heldout_rows"])
            decision = self.manager.observe(
                ev["heldout_loss"],
                ev["usage"],
                end.get("misfit", {}),
                end.get("normality"),
                end.get("agreement"),
                end.get("evidence"),
            )
            self.act(decision, end.get("scores"), ev["heldout_rows"], end.get("potts_rows"))
            if step["kicking"] and self.manager.kick_remaining == 0 and self.kick_goes_on():
                self.manager.kick_remaining = 1
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
