"""
``pyro_pots.fit(config)``: load the data, grow the model with the curriculum, and write the
run directory (see :mod:`pyro_pots.run_dir`).
"""

import contextlib
import math
import os
import signal
import sys
import threading
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Tuple

import numpy as np
import torch
from tqdm import tqdm

from pyro_pots import plots, run_dir, uncertainty
from pyro_pots.config import Config, load_config, resolve_likelihood, save_config
from pyro_pots.data import Dataset, load_data
from pyro_pots.errors import FitInterrupted, PotsInputError, TrainingFailed, first_line
from pyro_pots.fitted_run import check_finished
from pyro_pots.metrics import clustering_scores
from pyro_pots.model import PotsVAE
from pyro_pots.storage import RunStaging, fingerprint
from pyro_pots.storage.checkpoints import (
    check_header,
    check_trainer_state,
    load_trainer_state,
)
from pyro_pots.training import distributed, stage_scores
from pyro_pots.training.parts import resolve_device
from pyro_pots.training.trainer import CurriculumTrainer

#: the signals a fit stops on at the end of an epoch: Ctrl-C, and what job schedulers send.
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class _StoppedAgain(KeyboardInterrupt):
    """A second stop signal: the fit stops at once (a KeyboardInterrupt, so that no
    ``except Exception`` on the way swallows it)."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


@contextlib.contextmanager
def _deferred_signals() -> Iterator[Dict[str, Any]]:
    """While fitting, a first SIGINT or SIGTERM only records itself; the loop reads it at
    the end of the epoch (so the checkpoint is of a whole epoch). A second one stops at once
    (:class:`_StoppedAgain`), except inside a block marked ``critical`` (the swap that puts
    a run in place), which always runs to its end. Signals can only be caught on the main
    thread; elsewhere they are left alone."""
    flag: Dict[str, Any] = {"signum": None, "critical": False}
    if threading.current_thread() is not threading.main_thread():
        yield flag
        return

    def handler(signum, frame):
        if flag["signum"] is not None and not flag["critical"]:
            raise _StoppedAgain(signum)
        flag["signum"] = flag["signum"] or signum

    previous = {signum: signal.signal(signum, handler) for signum in STOP_SIGNALS}
    try:
        yield flag
    finally:
        for signum, old in previous.items():
            signal.signal(signum, old)


def _signal_name(signum: int) -> str:
    return signal.Signals(signum).name


@dataclass
class FitResult:
    """What :func:`fit` returns: the trained model, its trainer and the summary it wrote."""

    vae: PotsVAE
    trainer: CurriculumTrainer
    summary: Dict[str, Any]
    out: Path


def fit(
    cfg: Optional[Config] = None,
    resume: bool = False,
    progress: bool = True,
    grow_from: Optional[Path] = None,
) -> FitResult:
    """
    Fit a :class:`PotsVAE` by the curriculum and write the run directory ``cfg.output.dir``.

    :param Config cfg: the configuration (default: :func:`~pyro_pots.config.default_config`).
    :param bool resume: continue the run in ``cfg.output.dir`` from its checkpoint, with
        the same stage state, RNG and optimizer; the run's saved config is used, with the
        epoch budget (``train.max_epochs``) taken from ``cfg``. The run's data must be the
        data it was fitted on (its fingerprint is checked) and its ``config.yaml`` the one
        its checkpoint was written with.
    :param bool progress: show a tqdm bar (stage, open pots, held-out loss).
    :param grow_from: a fitted run directory to grow from, on ``cfg``'s data: its pots
        stay, the curriculum goes on and may open more, and the new run (in
        ``cfg.output.dir``, another directory, neither inside nor around it) starts with a
        ``grow`` decision that records each pot's share of the new rows. ``cfg.model`` must
        be the run's; ``train.max_epochs`` counts the new epochs. The fitted run is not
        changed.
    :raises PotsInputError: bad data, an existing run directory without ``overwrite``, a
        directory holding files pyro-pots did not write, a run directory in use by another
        process, or a missing, unreadable or inconsistent checkpoint.
    :raises TrainingFailed: every step non-finite for ``train.bad_step_patience`` steps in a
        row, with nothing good since the last rollback: the model cannot train on this data.
    :raises FitInterrupted: on SIGINT or SIGTERM, once the epoch is finished and its
        checkpoint saved (the run directory then has no ``summary.json``: it is not a
        finished run), or at once on a second signal (the last checkpoint, if any, is kept).

    A new fit over an existing run (``output.overwrite``) writes into a temporary sibling
    directory and replaces the old run only when it finishes or is interrupted with its
    checkpoint saved; a fit that fails leaves the old run as it was. See
    ``docs/reliability.md``.

    Under ``torchrun`` every rank calls this; it joins the process group (see
    :mod:`pyro_pots.training.distributed`) and only rank 0 writes the run directory.
    """
    cfg = cfg if cfg is not None else load_config()
    if distributed.launched_by_torchrun() and cfg.train.jit:
        raise PotsInputError("train.jit cannot be used under torchrun; set train.jit=false")
    joined = distributed.init_from_env(resolve_device(cfg.train.device))
    try:
        progress = progress and distributed.is_main()
        with _deferred_signals() as signals:
            result = _staged_fit(cfg, resume, progress, grow_from, signals)
        if joined:  # leave together: a rank that exits while rank 0 still writes aborts
            torch.distributed.barrier()
        return result
    finally:
        if joined:
            torch.distributed.destroy_process_group()


def _staged_fit(
    cfg: Config,
    resume: bool,
    progress: bool,
    grow_from: Optional[Path],
    signals: Dict[str, Any],
) -> FitResult:
    """:func:`_fit` inside a :class:`RunStaging` (rank 0's): what a failed fit wrote is
    removed, a finished or resumable one is put in place, and the locks are held until the
    end."""
    out = Path(cfg.output.dir)
    staging = RunStaging(out, resume=resume, overwrite=cfg.output.overwrite)
    main = distributed.is_main()
    progress_state: Dict[str, Any] = {"saved_epoch": None, "epoch": 0}
    try:
        try:
            result = _fit(cfg, resume, progress, grow_from, signals, staging, progress_state)
        except FitInterrupted:  # its checkpoint is saved: the run may be resumed
            if main:
                _put_in_place(staging, signals)
            raise
        except _StoppedAgain as stop:
            raise _stopped_again(stop, out, staging, signals, progress_state) from None
        except BaseException as error:
            if main and staging.opened:
                resumable = (staging.work / run_dir.CHECKPOINT).is_file()
                staging.discard(resumable and not isinstance(error, PotsInputError))
            raise
        if main:
            _put_in_place(staging, signals)
        return result
    finally:
        staging.close()


def _put_in_place(staging: RunStaging, signals: Dict[str, Any]) -> None:
    """The swap that puts a new run in place, shielded from a second signal."""
    signals["critical"] = True
    try:
        note = staging.commit()
    finally:
        signals["critical"] = False
    if note:
        print(f"pyro-pots: {note}", file=sys.stderr)


def _stopped_again(
    stop: _StoppedAgain,
    out: Path,
    staging: RunStaging,
    signals: Dict[str, Any],
    state: Dict[str, Any],
) -> FitInterrupted:
    """A second signal stopped the fit mid-epoch: keep the last checkpoint if there is one
    (it resumes exactly), else remove what the fit wrote; the line that says which."""
    name = _signal_name(stop.signum)
    during = f"{name} again during epoch {state['epoch'] + 1}"
    main = distributed.is_main()
    if not staging.opened:
        return FitInterrupted(f"interrupted ({during}); nothing was written", stop.signum)
    if (staging.work / run_dir.CHECKPOINT).is_file():
        if main:
            _put_in_place(staging, signals)
        epoch = state["saved_epoch"]
        saved = f"of epoch {epoch} " if epoch is not None else ""
        return FitInterrupted(
            f"interrupted ({during}); the checkpoint {saved}in '{out}' is kept: go on with "
            f"`pyro-pots fit --out {out} --resume`",
            stop.signum,
        )
    replacing = staging.replacing
    if main:
        staging.discard(keep_resumable=False)
    kept = f"'{out}' still holds the previous run" if replacing else "nothing was kept"
    return FitInterrupted(
        f"interrupted ({during}) before the first checkpoint; {kept}", stop.signum
    )


def _fit(
    cfg: Config,
    resume: bool,
    progress: bool,
    grow_from: Optional[Path],
    signals: Dict[str, Any],
    staging: RunStaging,
    state: Dict[str, Any],
) -> FitResult:
    main = distributed.is_main()
    out = Path(cfg.output.dir)
    checkpoint = grown = marker = None
    if grow_from is not None:
        _check_grow_paths(Path(grow_from), out)
    if resume:  # lock first: nothing may change the run while it is read
        distributed.from_main(staging.open if main else lambda: out)
        checkpoint = run_dir.load_checkpoint(out)
        check_header(checkpoint, out, run_dir.CHECKPOINT_FORMAT)
        cfg = load_config(out / run_dir.CONFIG, [f"train.max_epochs={cfg.train.max_epochs}"])
        marker = run_dir.read_marker(out)
        state["saved_epoch"] = checkpoint["trainer"].get("epoch")
    torch.set_num_threads(cfg.train.threads)
    data = load_data(cfg.data.spec, cfg.model.likelihood)
    cfg = resolve_likelihood(cfg, data)  # auto: named by the data, recorded in config.yaml
    if grow_from is not None:  # after resolving: the grown run's model section is compared
        grown, cfg = _grown_run(Path(grow_from), cfg)
    train, held = data.split(cfg.data.heldout_fraction, cfg.data.seed)
    if marker is not None:
        fingerprint.verify(
            marker["data"], data, cfg.data.spec, str(out), "the run goes on only on its own data"
        )
    if grown is not None and grown["data_dim"] != data.n_features:
        raise PotsInputError(
            f"the run in '{grow_from}' takes {grown['data_dim']} features, "
            f"the data has {data.n_features}"
        )
    if checkpoint is not None and checkpoint["data_dim"] != data.n_features:
        raise PotsInputError(
            f"checkpoint in '{out}' is for {checkpoint['data_dim']} features, "
            f"the data has {data.n_features}"
        )
    work = out
    if not resume:  # rank 0 writes; its error, if any, is raised on every rank
        cfg = replace(cfg, data=replace(cfg.data, spec=fingerprint.resolved_spec(cfg.data.spec)))
        _check_data_outside(cfg.data.spec, out)

        def prepare() -> Path:
            folder = staging.open()
            save_config(cfg, folder / run_dir.CONFIG)
            run_dir.write_marker(fingerprint.fingerprint(data), folder)
            return folder

        work = distributed.from_main(prepare if main else lambda: out)
    config_sha256 = run_dir.file_sha256(work / run_dir.CONFIG) if main else None
    trainer = new_trainer(cfg, torch.from_numpy(train.X), torch.from_numpy(held.X))
    if checkpoint is not None:
        load_trainer_state(trainer, checkpoint["trainer"], out / run_dir.CHECKPOINT, train.n_rows)
    if grown is not None:
        _grow(trainer, grown["trainer"], Path(grow_from) / run_dir.CHECKPOINT)
    state["epoch"] = trainer.epoch

    spent = checkpoint.get("time_s") if checkpoint else None
    start = time.perf_counter() - (spent if _finite(spent) else 0.0)  # the clock goes on

    def save() -> None:
        if main:
            checkpoint_state = {
                "format": run_dir.CHECKPOINT_FORMAT,
                "data_dim": data.n_features,
                "config_sha256": config_sha256,
                "trainer": trainer.state_dict(),
                "time_s": time.perf_counter() - start,
            }
            run_dir.save_checkpoint(checkpoint_state, work)
        state["saved_epoch"] = trainer.epoch

    bar = tqdm(
        total=cfg.train.max_epochs,
        initial=trainer.epoch,
        desc=f"pyro-pots {data.name}",
        unit="epoch",
        disable=not progress,
    )
    guard = NonFiniteGuard(cfg.train.bad_step_patience, steps_per_epoch(cfg, train.n_rows))

    def on_epoch(row: Dict[str, Any]) -> None:
        state["epoch"] = row["epoch"]
        guard.observe(row)
        bar.set_postfix(
            stage=row["stage"], pots=row["n_open"], heldout=f"{row['heldout_loss']:.3f}"
        )
        bar.update()
        interrupted = not distributed.all_true(signals["signum"] is None, trainer.device)
        if row["action"] != "continue" or interrupted:
            save()
        if interrupted:
            raise _interrupted(signals, f"after epoch {row['epoch']}", out)

    if resume and main:  # a finished run's summary no longer describes the run going on
        (out / run_dir.SUMMARY).unlink(missing_ok=True)
    with bar:
        trainer.run(on_epoch)
    guard.check_trained(trainer.history)
    save()  # before finish(): a run cut by the budget resumes from here
    if not distributed.all_true(signals["signum"] is None, trainer.device):
        raise _interrupted(signals, f"after epoch {trainer.epoch}", out)
    trainer.finish()
    pots, resp = open_responsibilities(trainer.vae, data)
    end = RunEnd.of(trainer, time.perf_counter() - start)
    held = trainer.evaluate(full=False)["heldout_loss"]
    summary = summarize(trainer.vae, data, held, end, (pots, resp))
    if distributed.world_size() > 1:
        summary["distributed"] = {
            "world_size": distributed.world_size(),
            "rank_state_sha256": distributed.state_digests(trainer.vae),
        }
    if main:
        write_outputs(
            trainer.vae,
            trainer.history,
            trainer.manager.log,
            data,
            summary,
            (pots, resp),
            work,
            cfg.output.plots,
        )
    return FitResult(trainer.vae, trainer, summary, out)


def _interrupted(signals: Dict[str, Any], when: str, out: Path) -> FitInterrupted:
    signum = signals["signum"] or signal.SIGINT
    return FitInterrupted(
        f"interrupted {when} ({_signal_name(signum)}); the checkpoint in '{out}' is saved: "
        f"go on with `pyro-pots fit --out {out} --resume`",
        signum,
    )


def new_trainer(cfg: Config, train_x: torch.Tensor, heldout_x: torch.Tensor) -> CurriculumTrainer:
    """The trainer ``cfg`` describes on these rows."""
    return CurriculumTrainer.from_config(cfg, train_x, heldout_x)


def steps_per_epoch(cfg: Config, rows: int) -> int:
    """The optimizer steps of one epoch over ``rows`` training rows (all ranks together)."""
    return math.ceil(rows / (cfg.train.batch_size * distributed.world_size()))


class NonFiniteGuard:
    """
    A fit that cannot train must not report success. The trainer counts non-finite steps
    across epochs, rolls back, and raises :class:`TrainingFailed` when rollbacks find
    nothing good; an epoch in which no step was finite reports no loss (None). This guard
    makes sure of the rest: a loss reported as 0.0 by a trainer that divides by
    ``max(rows, 1)`` becomes NaN (written as null), and a run in which no epoch computed
    a loss (a budget shorter than the trainer's patience) ends in :class:`TrainingFailed`
    rather than in a summary.
    """

    def __init__(self, patience: int, steps_per_epoch: int) -> None:
        self.patience = patience
        self.steps_per_epoch = steps_per_epoch

    def observe(self, row: Dict[str, Any]) -> None:
        """Read one epoch's history row (and mend its loss if none was computed)."""
        bad = int(row.get("bad_steps") or 0)
        loss = row.get("train_loss")
        if loss is not None and bad > 0 and (loss == 0.0 or not math.isfinite(loss)):
            row["train_loss"] = float("nan")

    def check_trained(self, history: List[Dict[str, Any]]) -> None:
        """At the end: a run in which no epoch computed a loss did not train."""
        if history and not any(_finite(row.get("train_loss")) for row in history):
            raise TrainingFailed(
                f"training cannot proceed: no step of the {len(history)} epochs had a "
                "finite loss and gradient (for likelihood=normal, standardise features of "
                "very large magnitude)"
            )


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value)


def _check_data_outside(spec: str, out: Path) -> None:
    """A new run never takes its data from inside ``out``: replacing the old run there
    would remove the file the new run names (``PotsMixture.save`` writes ``data.npy``)."""
    if fingerprint.is_builtin(spec):
        return
    if Path(os.path.realpath(out)) in Path(spec).parents:
        raise PotsInputError(
            f"the data '{spec}' is inside the run directory '{out}' that this fit would "
            "replace; copy it elsewhere first, or choose another --out"
        )


def _check_grow_paths(run: Path, out: Path) -> None:
    """The run grown from is never changed: ``out`` is neither it, nor inside it, nor
    around it (paths resolved, so a symlink or ``..`` does not hide it)."""
    source, target = Path(os.path.realpath(run)), Path(os.path.realpath(out))
    if target == source:
        raise PotsInputError(
            f"--resume-from '{run}' and --out are the same directory; grow into another "
            "one (the fitted run is never changed)"
        )
    if source in target.parents:
        raise PotsInputError(
            f"--out '{out}' is inside the run '{run}' it grows from; choose a directory "
            "outside it (the fitted run is never changed)"
        )
    if target in source.parents:
        raise PotsInputError(
            f"--out '{out}' holds the run '{run}' it grows from; choose another directory"
        )


def _grow(trainer: CurriculumTrainer, state: Dict[str, Any], where: Path) -> None:
    """``trainer.grow_from(state)``, the state checked first as ``--resume`` checks its
    own (Adam's moments of another shape would corrupt memory in the fused kernel)."""
    check_trainer_state(trainer, state, where)
    try:
        trainer.grow_from(state)
    except Exception as error:  # any inconsistency torch or the manager finds
        raise PotsInputError(
            f"checkpoint '{where}' does not fit the run's config: "
            f"{type(error).__name__}: {first_line(error)}"
        ) from None


def _grown_run(run: Path, cfg: Config) -> Tuple[Dict[str, Any], Config]:
    """The checkpoint to grow from, of a finished run, and ``cfg`` with the epoch budget
    made a total."""
    check_finished(run)  # not one a fit is writing, nor one interrupted (--resume it)
    state = run_dir.load_checkpoint(run)
    check_header(state, run, run_dir.CHECKPOINT_FORMAT)
    if load_config(run / run_dir.CONFIG).model != cfg.model:
        raise PotsInputError(f"the config's model section differs from the run's in '{run}'")
    epoch = state["trainer"].get("epoch") if isinstance(state["trainer"], dict) else None
    if not isinstance(epoch, int) or isinstance(epoch, bool) or epoch < 0:
        raise PotsInputError(f"checkpoint in '{run}' has no epoch count")
    total = epoch + cfg.train.max_epochs
    return state, replace(cfg, train=replace(cfg.train, max_epochs=total))


@torch.no_grad()
def open_responsibilities(vae: PotsVAE, data: Dataset) -> Tuple[List[int], np.ndarray]:
    """The open pot ids and the responsibilities of every row of ``data`` over them."""
    pots = vae.open_ids().tolist()
    resp = vae.responsibilities(torch.from_numpy(data.X).to(vae.active.device))
    return pots, resp.cpu().numpy()[:, pots]


@dataclass(frozen=True)
class RunEnd:
    """How a fit ended: the entries ``summary.json`` adds to the model's numbers."""

    final_loss: Optional[float]  #: the last epoch's training loss; None if none was computed
    epochs: int
    stages: int
    stop_reason: str
    seconds: float

    @classmethod
    def of(cls, trainer: CurriculumTrainer, seconds: float) -> "RunEnd":
        """The end of ``trainer``'s run, ``seconds`` after it started."""
        last = trainer.history[-1]["train_loss"] if trainer.history else None
        return cls(
            # null, never 0.0, when the last epoch computed no loss (every step non-finite)
            final_loss=last if _finite(last) else None,
            epochs=trainer.epoch,
            stages=trainer.manager.stage + 1,
            stop_reason=trainer.manager.stop_reason,
            seconds=seconds,
        )


def heldout_loss(vae: PotsVAE, train_x: torch.Tensor, heldout_x: torch.Tensor, seed: int) -> float:
    """The mixture loss of ``heldout_x`` (nats per row), the weights from ``train_x``: the
    number the stage manager judges by (the trainer's ``evaluate``), without a trainer."""
    return stage_scores.epoch_scores(vae, train_x, heldout_x, seed).heldout_loss


def summarize(
    vae: PotsVAE,
    data: Dataset,
    heldout: float,
    end: Optional[RunEnd] = None,
    responsibilities: Optional[Tuple[List[int], np.ndarray]] = None,
) -> Dict[str, Any]:
    """The headline numbers of a fitted model on all rows of ``data``: ``summary.json``
    with ``end`` (how the fit ended), ``evaluate``'s numbers without it.

    :param heldout: the held-out mixture loss (:func:`heldout_loss`).
    :param responsibilities: from :func:`open_responsibilities`, when already computed.
    """
    pots, resp = responsibilities or open_responsibilities(vae, data)
    assign = resp.argmax(-1)
    usage = {pot: float((assign == j).mean()) for j, pot in enumerate(pots)}
    entropy = -(resp * np.log(np.clip(resp, 1e-30, 1))).sum(-1)
    summary: Dict[str, Any] = {
        "data": data.name,
        "n_rows": data.n_rows,
        "n_active": len(pots),
        "active": pots,
        "usage": usage,
        "k_eff": sum(u >= 0.01 for u in usage.values()),
        "peakiness": {
            "mean_max_resp": float(resp.max(-1).mean()),
            "mean_entropy": float(entropy.mean()),
            "mean_max_posterior": uncertainty.mean_max_posterior(
                vae, torch.from_numpy(data.X).to(vae.active.device)
            ),
        },
    }
    if end is not None:
        summary["final_loss"] = end.final_loss
    summary["heldout_loss"] = heldout
    if end is not None:
        summary.update(
            epochs=end.epochs,
            stages=end.stages,
            stop_reason=end.stop_reason,
            time_s=round(end.seconds, 2),
        )
    if data.labels is not None:
        summary["clustering"] = clustering_scores(data.labels, np.asarray(pots)[assign])
    return summary


def write_outputs(
    vae: PotsVAE,
    history: List[Dict[str, Any]],
    log: List[Dict[str, Any]],
    data: Dataset,
    summary: Dict[str, Any],
    responsibilities: Tuple[List[int], np.ndarray],
    out: Path,
    with_plots: bool,
) -> None:
    """The files of a fitted run after its checkpoint: ``history.csv``, ``stages.json``
    (the decision ``log``), ``assignments.csv``, ``plots/``, and ``summary.json`` last (a
    summary means a finished run). Used by :func:`fit` and ``PotsMixture.save``."""
    pots, resp = responsibilities
    run_dir.write_history(history, vae.num_pots, out / run_dir.HISTORY)
    run_dir.write_json(log, out / run_dir.STAGES)
    run_dir.write_assignments(resp, pots, data.labels, out / run_dir.ASSIGNMENTS)
    if with_plots:
        plots.write_run_plots(history, log, resp, vae, data, out / run_dir.PLOTS)
    # last: a run directory with a summary is a finished run
    run_dir.write_json(summary, out / run_dir.SUMMARY)
