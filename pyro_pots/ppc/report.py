"""
The posterior predictive check of a fitted run directory (:func:`check_run`): the run's final
model checked on its data, and ``ppc.json`` and ``plots/ppc_*.png`` written into the run
(figures by :mod:`pyro_pots.ppc_plots`).
"""

import json
import math
from pathlib import Path
from typing import Any, Dict, Optional, Tuple, Union

import torch

from pyro_pots import run_dir
from pyro_pots.distributions import pots_mask
from pyro_pots.errors import PotsInputError
from pyro_pots.fitted_run import load_model, model_features
from pyro_pots.model import PotsVAE
from pyro_pots.ppc.checks import PredictiveCheck, check
from pyro_pots.ppc.draws import prior_predictive, replicates

#: the file :func:`check_run` writes into the run directory, and its figures.
PPC_JSON = "ppc.json"
PPC_PLOTS = ("ppc_statistics.png", "ppc_replicates.png")
#: the value of the ``tool`` key that marks a ``ppc.json`` as written by :func:`check_run`.
TOOL = "pyro-pots ppc"


def image_shape_of(n_features: int, known: Optional[Tuple[int, int]] = None):
    """The image shape of a row: ``known`` when the data say so, else a square when
    ``n_features`` is a perfect square (> 1), else None."""
    if known is not None:
        return tuple(known)
    side = math.isqrt(n_features)
    return (side, side) if side > 1 and side * side == n_features else None


@torch.no_grad()
def pot_rows(
    vae: PotsVAE, check_result: PredictiveCheck, per_pot: int, seed: Optional[int] = 0
) -> Dict[str, torch.Tensor]:
    """
    Rows for the per-pot figure, ``(pots, per_pot, D)`` each, NaN where a pot has fewer
    rows: ``observed`` (the first rows the encoder gives to the pot), ``replicated`` (their
    first replicate) and ``prior`` (:func:`prior_predictive` draws of the pot alone).

    :param PotsVAE vae: the model that was checked.
    :param PredictiveCheck check_result: what :func:`check` returned.
    :param int per_pot: rows per pot.
    :param int seed: seed of the prior draws.
    """
    x, pots = check_result.x, check_result.pots
    active = pots_mask(vae.num_pots, pots, device=x.device)
    columns = torch.as_tensor(pots, device=x.device)
    best = vae.responsibilities(x, active).index_select(-1, columns).argmax(-1)
    first_rep = check_result.replicates[0]
    shape = (len(pots), per_pot, x.shape[-1])
    observed = x.new_full(shape, math.nan)
    replicated = x.new_full(shape, math.nan)
    prior = x.new_full(shape, math.nan)
    for j, pot in enumerate(pots):
        rows = (best == j).nonzero().squeeze(-1)[:per_pot]
        observed[j, : len(rows)] = x[rows]
        replicated[j, : len(rows)] = first_rep[rows]
        draws = prior_predictive(vae, per_pot, 1, active, pot=pot, seed=seed)
        prior[j] = replicates(draws)[0]
    return {"observed": observed, "replicated": replicated, "prior": prior}


def _claim_ppc_json(run: Path) -> Path:
    """The path of ``ppc.json``; an existing one is replaced only if this tool wrote it."""
    path = run / PPC_JSON
    if path.exists():
        try:
            owner = json.loads(path.read_text()).get("tool")
        except (OSError, ValueError, AttributeError):  # unreadable, not JSON, not a dict
            owner = None
        if owner != TOOL:
            raise PotsInputError(
                f"'{path}' exists and was not written by {TOOL}; move it away first "
                "(only this tool's ppc.json is replaced)"
            )
    return path


def check_run(
    run: Union[str, Path],
    num_samples: int = 100,
    seed: int = 0,
    data: Optional[str] = None,
    alpha: float = 0.05,
    per_pot: int = 8,
) -> Dict[str, Any]:
    """
    The posterior predictive check of a fitted run, written into its directory.

    Loads the run's final model, draws ``num_samples`` replicates of the run's data (or of
    ``data``), checks the built-in statistics, and writes ``ppc.json`` (the numbers of
    :meth:`PredictiveCheck.to_dict`, with ``tool``, ``run``, ``data`` and ``seed``) and the
    figures ``plots/ppc_statistics.png`` and, for image data (known image shape or a square
    number of features), ``plots/ppc_replicates.png`` (per pot: data, posterior replicates,
    prior draws of the pot). Only those files are written; a ``ppc.json`` that this tool did
    not write is never replaced.

    :param run: the run directory.
    :param int num_samples: replicates to draw (>= 1).
    :param int seed: seed of the draws.
    :param str data: a data spec (:func:`~pyro_pots.data.load_data`); default the run's.
    :param float alpha: two-sided level at which components are flagged.
    :param int per_pot: images per pot in the replicate figure.
    :returns: the contents of ``ppc.json``, plus ``plots`` (the figures written).
    :raises PotsInputError: a missing or unreadable run, bad data, data with another number
        of features, ``num_samples < 1``, or a foreign ``ppc.json``.
    """
    from pyro_pots.data import load_data
    from pyro_pots.ppc_plots import plot_replicates, plot_statistics

    if num_samples < 1:
        raise PotsInputError(f"num_samples must be >= 1, got {num_samples}")
    run = Path(run)
    cfg, vae = load_model(run)  # the final model on the CPU, no trainer built
    spec = data or cfg.data.spec
    dataset = load_data(spec, cfg.model.likelihood)
    n_features = model_features(vae)
    if dataset.n_features != n_features:
        raise PotsInputError(
            f"data has {dataset.n_features} features, the run's model takes {n_features}"
        )
    json_path = _claim_ppc_json(run)
    x = torch.from_numpy(dataset.X).to(vae.active.device)
    result = check(vae, x, num_samples=num_samples, seed=seed)

    plots_dir = run / run_dir.PLOTS
    plots_dir.mkdir(exist_ok=True)
    written = [plots_dir / PPC_PLOTS[0]]
    plot_statistics(result, written[0], alpha)
    image_shape = image_shape_of(n_features, dataset.image_shape)
    if image_shape is not None:
        written.append(plots_dir / PPC_PLOTS[1])
        rows = {k: v.cpu().numpy() for k, v in pot_rows(vae, result, per_pot, seed).items()}
        plot_replicates(rows, image_shape, result.pots, written[-1])

    report = {"tool": TOOL, "run": str(run), "data": spec, "seed": seed}
    report.update(result.to_dict(alpha))
    report["summary"] = result.summary(alpha)
    report["plots"] = [str(path.relative_to(run)) for path in written]
    run_dir.write_json(report, json_path)
    return report
