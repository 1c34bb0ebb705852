"""
``pyro_pots.fit(config)``: load the data, grow the model with the curriculum, and write the
run directory (see :mod:`pyro_pots.run_dir`).
"""

import gc
import os
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Dict, Optional

import torch
from tqdm import tqdm

from pyro_pots import run_dir
from pyro_pots.config import Config, load_config, resolve_likelihood, save_config
from pyro_pots.data import load_data
from pyro_pots.errors import FitInterrupted, PotsInputError
from pyro_pots.model import PotsVAE
from pyro_pots.storage import RunStaging, fingerprint
from pyro_pots.storage.checkpoints import check_header, load_trainer_state
from pyro_pots.training import distributed
from pyro_pots.training.growing import check_grow_paths, grow, grown_run, restore_levers
from pyro_pots.training.guard import NonFiniteGuard, finite, steps_per_epoch
from pyro_pots.training.interrupts import (
    STOP_SIGNALS,
    StoppedAgain,
    deferred_signals,
    interruption,
    put_in_place,
    stopped_again,
)
from pyro_pots.training.outputs import (
    RunEnd,
    heldout_loss,
    open_responsibilities,
    summarize,
    write_outputs,
)
from pyro_pots.training.parts import resolve_device
from pyro_pots.training.trainer import CurriculumTrainer

#: names that moved out of this module (see :mod:`~pyro_pots.training.outputs`,
#: :mod:`~pyro_pots.training.guard`, :mod:`~pyro_pots.training.interrupts`), importable here
#: as before.
__all__ = [
    "STOP_SIGNALS",
    "FitResult",
    "NonFiniteGuard",
    "RunEnd",
    "fit",
    "heldout_loss",
    "new_trainer",
    "open_responsibilities",
    "steps_per_epoch",
    "summarize",
    "write_outputs",
]


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
    joined = distributed.init_from_env(resolve_device(cfg.train.device))
    result: Optional[FitResult] = None
    try:
        progress = progress and distributed.is_main()
        with deferred_signals() as signals:
            result = _staged_fit(cfg, resume, progress, grow_from, signals)
        if joined:  # leave together: a rank that exits while rank 0 still writes aborts
            torch.distributed.barrier()
        return result
    finally:
        if joined:
            if result is not None:  # the returned trainer must not outlive the group in DDP
                result.trainer.leave_process_group()
            gc.collect()  # DDP's reducer goes before its process group (else gloo may abort)
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
                put_in_place(staging, signals)
            raise
        except StoppedAgain as stop:
            raise stopped_again(stop, out, staging, signals, progress_state) from None
        except BaseException as error:
            if main and staging.opened:
                resumable = (staging.work / run_dir.CHECKPOINT).is_file()
                staging.discard(resumable and not isinstance(error, PotsInputError))
            raise
        if main:
            put_in_place(staging, signals)
        return result
    finally:
        staging.close()


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
        check_grow_paths(Path(grow_from), out)
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
        grown, cfg = grown_run(Path(grow_from), cfg)
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
        restore_levers(trainer)  # a grown run's frozen pots stay frozen
    if grown is not None:
        grow(trainer, grown["trainer"], Path(grow_from) / run_dir.CHECKPOINT)
    state["epoch"] = trainer.epoch

    spent = checkpoint.get("time_s") if checkpoint else None
    start = time.perf_counter() - (spent if finite(spent) else 0.0)  # the clock goes on

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
            raise interruption(signals, f"after epoch {row['epoch']}", out)

    if resume and main:  # a finished run's summary no longer describes the run going on
        (out / run_dir.SUMMARY).unlink(missing_ok=True)
    with bar:
        trainer.run(on_epoch)
    guard.check_trained(trainer.history)
    save()  # before finish(): a run cut by the budget resumes from here
    if not distributed.all_true(signals["signum"] is None, trainer.device):
        raise interruption(signals, f"after epoch {trainer.epoch}", out)
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


def new_trainer(cfg: Config, train_x: torch.Tensor, heldout_x: torch.Tensor) -> CurriculumTrainer:
    """The trainer ``cfg`` describes on these rows."""
    return CurriculumTrainer.from_config(cfg, train_x, heldout_x)


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
