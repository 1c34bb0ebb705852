"""What a fitted run reports: the open pots' responsibilities, how the fit ended, the
headline numbers of ``summary.json`` and the files written after the checkpoint. Shared by
:func:`~pyro_pots.training.fitting.fit`, ``pyro-pots evaluate`` and ``PotsMixture.save``."""

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import numpy as np
import torch

from pyro_pots import plots, run_dir, uncertainty
from pyro_pots.data import Dataset
from pyro_pots.metrics import clustering_scores
from pyro_pots.model import PotsVAE
from pyro_pots.training import stage_scores
from pyro_pots.training.guard import finite
from pyro_pots.training.trainer import CurriculumTrainer


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
            final_loss=last if finite(last) else None,
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
