"""Figures of a posterior predictive check (:mod:`pyro_pots.ppc`), written as PNG files
(drawn without pyplot, as in :mod:`pyro_pots.plots`)."""

import math
from pathlib import Path
from typing import Dict, Sequence, Tuple

import numpy as np

from pyro_pots.plots import _save, subplots

#: row labels of the per-pot figure, in the order of its rows.
_ROW_KINDS = (("observed", "data"), ("replicated", "replicate"), ("prior", "prior draw"))


def plot_replicates(
    rows: Dict[str, np.ndarray], image_shape: Tuple[int, int], pots: Sequence[int], path: Path
) -> None:
    """
    Per pot, three rows of images: the data the encoder gives to the pot, a posterior
    replicate of each of those rows, and draws from the pot's prior predictive.

    :param rows: ``observed``, ``replicated`` and ``prior``, each ``(pots, m, D)``; NaN
        rows (a pot with fewer than ``m`` rows of data) are left blank.
    :param image_shape: (height, width) of a row.
    :param pots: the pot ids, in the order of the first axis.
    :param path: the PNG file.
    """
    n_pots, m = rows["observed"].shape[:2]
    n_rows = n_pots * len(_ROW_KINDS)
    fig, axes = subplots(n_rows, m, figsize=(m * 0.7 + 1.2, n_rows * 0.7 + 0.3), squeeze=False)
    for i, pot in enumerate(pots):
        for r, (key, label) in enumerate(_ROW_KINDS):
            line = axes[i * len(_ROW_KINDS) + r]
            for j in range(m):
                line[j].axis("off")
                image = rows[key][i, j]
                if not np.isnan(image).any():
                    line[j].imshow(image.reshape(image_shape), cmap="gray_r", vmin=0, vmax=1)
            line[0].set_title(f"pot {pot}: {label}", fontsize=6, loc="left")
    _save(fig, path)


def _panel(ax, name: str, check, alpha: float) -> None:
    """One statistic: a histogram for a scalar, else observed against replicated."""
    observed = check.observed.detach().cpu().numpy()
    replicated = check.replicated.detach().cpu().numpy()
    if observed.shape == replicated.shape and observed.ndim == 1:
        # a discrepancy: one (observed, replicated) pair per posterior draw
        ax.scatter(observed, replicated, s=6)
        _diagonal(ax, observed, replicated)
        ax.set(xlabel="T(x_obs, draw)", ylabel="T(x_rep, draw)")
    elif observed.size == 1:
        ax.hist(replicated.reshape(-1), bins=30, color="tab:gray")
        ax.axvline(float(observed.reshape(-1)[0]), color="tab:red")
        ax.set(xlabel="T(x_rep); red: T(x_obs)", ylabel="replicates")
    else:
        observed, mean = observed.reshape(-1), replicated.reshape(len(replicated), -1).mean(0)
        flagged = check.p_two_sided.detach().cpu().numpy().reshape(-1) < alpha
        ax.scatter(observed[~flagged], mean[~flagged], s=8, label="consistent")
        ax.scatter(observed[flagged], mean[flagged], s=8, color="tab:red", label=f"p < {alpha}")
        _diagonal(ax, observed, mean)
        ax.set(xlabel="T(x_obs)", ylabel="mean of T(x_rep)")
        ax.legend(fontsize=6)
    p = check.p_value.detach().cpu().numpy().reshape(-1)
    if p.size == 1:
        ax.set_title(f"{name}: p = {p[0]:.2f}", fontsize=9)
    else:
        ax.set_title(f"{name}: {check.flagged(alpha)}/{p.size} flagged", fontsize=9)


def _diagonal(ax, a: np.ndarray, b: np.ndarray) -> None:
    low, high = float(min(a.min(), b.min())), float(max(a.max(), b.max()))
    ax.plot([low, high], [low, high], color="black", linewidth=0.7)


def plot_statistics(result, path: Path, alpha: float = 0.05) -> None:
    """
    One panel per statistic of a :class:`~pyro_pots.ppc.PredictiveCheck`: replicated
    against observed values (red: two-sided p-value below ``alpha``), a histogram of the
    replicates for a scalar, draw-by-draw pairs for the log-likelihood discrepancy.

    :param result: a :class:`~pyro_pots.ppc.PredictiveCheck`.
    :param path: the PNG file.
    :param float alpha: the flagging level.
    """
    names = list(result.statistics)
    cols = min(3, len(names))
    n_rows = math.ceil(len(names) / cols)
    fig, axes = subplots(n_rows, cols, figsize=(4 * cols, 3.4 * n_rows), squeeze=False)
    for ax, name in zip(axes.flat, names):
        _panel(ax, name, result.statistics[name], alpha)
    for ax in list(axes.flat)[len(names) :]:
        ax.axis("off")
    _save(fig, path)
