"""Figures of a fit, written as PNG files (matplotlib, no display needed)."""

from pathlib import Path
from typing import Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def plot_training(history: Sequence, path: Path) -> None:
    """Loss per row, lambda, and mean max responsibility against epoch."""
    epochs = [r.epoch for r in history]
    fig, (ax_loss, ax_peak) = plt.subplots(1, 2, figsize=(10, 3.5))
    ax_loss.plot(epochs, [r.loss for r in history])
    ax_loss.set(xlabel="epoch", ylabel="loss (nats / row)", title="training loss")
    ax_peak.plot(epochs, [r.mean_max_resp for r in history], label="mean max responsibility")
    ax_peak.plot(epochs, [r.lam for r in history], "--", label="lambda")
    ax_peak.set(xlabel="epoch", ylim=(0, 1.05), title="peakiness")
    ax_peak.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_responsibilities(resp: np.ndarray, path: Path) -> None:
    """Histogram of each row's largest responsibility (near 1 means one pot per row)."""
    fig, ax = plt.subplots(figsize=(5, 3.5))
    ax.hist(resp.max(-1), bins=40, range=(0, 1))
    ax.set(xlabel="max responsibility", ylabel="rows", title="how peaky the routing is")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_pot_means(means: np.ndarray, image_shape, pots: Sequence[int], path: Path) -> None:
    """One decoded mean image per pot (rows: pots, columns: draws)."""
    n_pots, n_draws = means.shape[:2]
    fig, axes = plt.subplots(n_pots, n_draws, figsize=(n_draws, n_pots), squeeze=False)
    for i in range(n_pots):
        for j in range(n_draws):
            axes[i, j].imshow(means[i, j].reshape(image_shape), cmap="gray_r", vmin=0, vmax=1)
            axes[i, j].axis("off")
        axes[i, 0].set_title(f"pot {pots[i]}", fontsize=7, loc="left")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
