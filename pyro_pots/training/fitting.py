"""
``pyro_pots.fit(config)``: load the data, grow the model with the curriculum, and write the
run directory (see :mod:`pyro_pots.run_dir`).
"""

import contextlib
import signal
import threading
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import numpy as np
import torch
from tqdm import tqdm

from pyro_pots import plots, run_dir, uncertainty
from pyro_pots.config import Config, load_config, save_config
from pyro_pots.data import Dataset, load_data
from pyro_pots.errors import FitInterrupted, PotsInputError
from pyro_pots.metrics import clustering_scores
from pyro_pots.model import PotsVAE
from pyro_pots.training import distributed
from pyro_pots.training.trainer import CurriculumTrainer, resolve_device

#: version of the checkpoint layout; a checkpoint of another version is refused.
CHECKPOINT_FORMAT = 1


@contextlib.contextmanager
def _deferred_sigint():
    """While fitting, a first SIGINT only raises a flag that the loop reads at the end of
    the epoch (so the checkpoint is of a whole epoch); a second one interrupts at once.
    Signals can only be caught on the main thread; elsewhere Ctrl-C is left alone."""
    flag = {"raised": False}
    if threading.current_thread() is not threading.main_thread():
        yield flag
        return

    def handler(signum, frame):
        if flag["raised"]:
            raise KeyboardInterrupt
        flag["raised"] = True

    previous = signal.signal(signal.SIGINT, handler)
    try:
        yield flag
    finally:
        signal.signal(signal.SIGINT, previous)


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
        epoch budget (``train.max_epochs``) taken from ``cfg``.
    :param bool progress: show a tqdm bar (stage, open pots, held-out loss).
    :param grow_from: a fitted run directory to grow from, on ``cfg``'s data: its pots
        stay, the curriculum goes on and may open more, and the new run (in
        ``cfg.output.dir``, another directory) starts with a ``grow`` decision that records
        each pot's share of the new rows. ``cfg.model`` must be the run's; ``train.max_epochs``
        counts the new epochs. The fitted run is not changed.
    :raises PotsInputError: bad data, an existing run directory without ``overwrite``, or
        a missing or unreadable checkpoint.
    :raises FitInterrupted: on SIGINT, once the epoch is finished and its checkpoint saved
        (the run directory then has no ``summary.json``: it is not a finished run).

    Under ``torchrun`` every rank calls this; it joins the process group (see
    :mod:`pyro_pots.training.distributed`) and only rank 0 writes the run directory.
    """
    cfg = cfg if cfg is not None else load_config()
    if distributed.launched_by_torchrun() and cfg.train.jit:
        raise PotsInputError("train.jit cannot be used under torchrun; set train.jit=false")
    joined = distributed.init_from_env(resolve_device(cfg.train.device))
    try:
        result = _fit(cfg, resume, progress and distributed.is_main(), grow_from)
        if joined:  # leave together: a rank that exits while rank 0 still writes aborts
            torch.distributed.barrier()
        return result
    finally:
        if joined:
            torch.distributed.destroy_process_group()


def _fit(cfg: Config, resume: bool, progress: bool, grow_from: Optional[Path]) -> FitResult:
    main = distributed.is_main()
    out = Path(cfg.output.dir)
    checkpoint = grown = None
    if resume:
        checkpoint = run_dir.load_checkpoint(out)
        saved = load_config(out / run_dir.CONFIG, [f"train.max_epochs={cfg.train.max_epochs}"])
        cfg = saved
    if grow_from is not None:
        grown, cfg = _grown_run(Path(grow_from), cfg)
    torch.set_num_threads(cfg.train.threads)
    data = load_data(cfg.data.spec, cfg.model.likelihood)
    train, held = data.split(cfg.data.heldout_fraction, cfg.data.seed)
    if grown is not None and grown["data_dim"] != data.n_features:
        raise PotsInputError(
            f"the run in '{grow_from}' takes {grown['data_dim']} features, "
            f"the data has {data.n_features}"
        )
    if not resume:  # rank 0 writes; its error, if any, is raised on every rank

        def prepare() -> None:
            run_dir.prepare(out, cfg.output.overwrite)
            save_config(cfg, out / run_dir.CONFIG)

        distributed.from_main(prepare)
    trainer = CurriculumTrainer(cfg, torch.from_numpy(train.X), torch.from_numpy(held.X))
    if checkpoint is not None:
        if checkpoint["data_dim"] != data.n_features:
            raise PotsInputError(
                f"checkpoint in '{out}' is for {checkpoint['data_dim']} features, "
                f"the data has {data.n_features}"
            )
        trainer.load_state_dict(checkpoint["trainer"])
    if grown is not None:
        trainer.grow_from(grown["trainer"])

    start = time.perf_counter() - (checkpoint["time_s"] if checkpoint else 0.0)

    def save() -> None:
        if not main:
            return
        state = {
            "format": CHECKPOINT_FORMAT,
            "data_dim": data.n_features,
            "trainer": trainer.state_dict(),
            "time_s": time.perf_counter() - start,
        }
        run_dir.save_checkpoint(state, out)

    bar = tqdm(
        total=cfg.train.max_epochs,
        initial=trainer.epoch,
        desc=f"pyro-pots {data.name}",
        unit="epoch",
        disable=not progress,
    )

    def on_epoch(row: Dict[str, Any]) -> None:
        bar.set_postfix(
            stage=row["stage"], pots=row["n_open"], heldout=f"{row['heldout_loss']:.3f}"
        )
        bar.update()
        interrupted = not distributed.all_true(not sigint["raised"], trainer.device)
        if row["action"] != "continue" or interrupted:
            save()
        if interrupted:
            raise FitInterrupted(
                f"interrupted after epoch {row['epoch']}; the checkpoint in '{out}' is saved: "
                f"go on with `pyro-pots fit --out {out} --resume`"
            )

    if resume and main:  # a finished run's summary no longer describes the run going on
        (out / run_dir.SUMMARY).unlink(missing_ok=True)
    with bar, _deferred_sigint() as sigint:
        trainer.run(on_epoch)
    save()  # before finish(): a run cut by the budget resumes from here
    trainer.finish()
    pots, resp = open_responsibilities(trainer, data)
    summary = summarize(trainer, data, time.perf_counter() - start, (pots, resp))
    if distributed.world_size() > 1:
        summary["distributed"] = {
            "world_size": distributed.world_size(),
            "rank_state_sha256": distributed.state_digests(trainer.vae),
        }
    if main:
        write_outputs(trainer, data, summary, (pots, resp), out, cfg.output.plots)
    return FitResult(trainer.vae, trainer, summary, out)


def _grown_run(run: Path, cfg: Config) -> Tuple[Dict[str, Any], Config]:
    """The checkpoint to grow from, and ``cfg`` with the epoch budget made a total."""
    if Path(cfg.output.dir).resolve() == run.resolve():
        raise PotsInputError(
            f"--resume-from '{run}' and --out are the same directory; grow into another "
            "one (the fitted run is never changed)"
        )
    if not run.is_dir():
        raise PotsInputError(f"run directory '{run}' does not exist")
    state = run_dir.load_checkpoint(run)
    if load_config(run / run_dir.CONFIG).model != cfg.model:
        raise PotsInputError(f"the config's model section differs from the run's in '{run}'")
    total = state["trainer"]["epoch"] + cfg.train.max_epochs
    return state, replace(cfg, train=replace(cfg.train, max_epochs=total))


@torch.no_grad()
def open_responsibilities(
    trainer: CurriculumTrainer, data: Dataset
) -> Tuple[List[int], np.ndarray]:
    """The open pot ids and the responsibilities of every row of ``data`` over them."""
    vae = trainer.vae
    pots = vae.active.nonzero().squeeze(-1).tolist()
    resp = vae.responsibilities(torch.from_numpy(data.X).to(trainer.device))
    return pots, resp.cpu().numpy()[:, pots]


def summarize(
    trainer: CurriculumTrainer,
    data: Dataset,
    seconds: float,
    responsibilities: Optional[Tuple[List[int], np.ndarray]] = None,
) -> Dict[str, Any]:
    """The headline numbers of a fitted model on all rows of ``data`` (pass
    ``responsibilities`` from :func:`open_responsibilities` when already computed)."""
    pots, resp = responsibilities or open_responsibilities(trainer, data)
    assign = resp.argmax(-1)
    usage = {pot: float((assign == j).mean()) for j, pot in enumerate(pots)}
    entropy = -(resp * np.log(np.clip(resp, 1e-30, 1))).sum(-1)
    history = trainer.history
    summary = {
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
                trainer.vae, torch.from_numpy(data.X).to(trainer.device)
            ),
        },
        "final_loss": history[-1]["train_loss"] if history else None,
        "heldout_loss": trainer.evaluate(full=False)["heldout_loss"],
        "epochs": trainer.epoch,
        "stages": trainer.manager.stage + 1,
        "stop_reason": trainer.manager.stop_reason,
        "time_s": round(seconds, 2),
    }
    if data.labels is not None:
        summary["clustering"] = clustering_scores(data.labels, np.asarray(pots)[assign])
    return summary


def write_outputs(
    trainer: CurriculumTrainer,
    data: Dataset,
    summary: Dict[str, Any],
    responsibilities: Tuple[List[int], np.ndarray],
    out: Path,
    with_plots: bool,
) -> None:
    """The run directory's files; ``summary.json`` last (a summary means a finished run)."""
    vae = trainer.vae
    pots, resp = responsibilities
    run_dir.write_history(trainer.history, vae.num_pots, out / run_dir.HISTORY)
    run_dir.write_json(trainer.manager.log, out / run_dir.STAGES)
    run_dir.write_assignments(resp, pots, data.labels, out / run_dir.ASSIGNMENTS)
    if with_plots:
        plots.write_run_plots(trainer.history, trainer.manager.log, resp, vae, data, out / "plots")
    # last: a run directory with a summary is a finished run
    run_dir.write_json(summary, out / run_dir.SUMMARY)
