"""Figures of a run, written as PNG files.

Figures are :class:`matplotlib.figure.Figure` objects drawn without pyplot, so no display
is needed and importing pyro-pots leaves the user's matplotlib backend (a notebook's
inline figures) alone.
"""

from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

import numpy as np
import torch
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

#: decision -> (colour, line style) of its marker on the loss curve.
_MARKERS = {"unlock": ("tab:green", "--"), "reject": ("tab:red", ":"), "stop": ("black", "-")}


def plot_losses(history: Sequence[Dict[str, Any]], log: Sequence[Dict[str, Any]], path: Path):
    """Training and held-out loss per epoch, with a vertical line at each decision."""
    epochs = [row["epoch"] for row in history]
    fig, (ax_train, ax_held) = subplots(1, 2, figsize=(11, 3.8))
    ax_train.plot(epochs, [row["train_loss"] for row in history])
    ax_train.set(xlabel="epoch", ylabel="nats / row", title="training objective (per row)")
    ax_held.plot(epochs, [row["heldout_loss"] for row in history])
    ax_held.set(xlabel="epoch", title="held-out mixture loss (comparable across pots)")
    for entry in log:
        if entry["action"] in _MARKERS:
            colour, style = _MARKERS[entry["action"]]
            for ax in (ax_train, ax_held):
                ax.axvline(entry["epoch"], color=colour, linestyle=style, linewidth=0.8)
    handles = [Line2D([], [], color=c, linestyle=s) for c, s in _MARKERS.values()]
    ax_held.legend(handles, list(_MARKERS), fontsize=8)
    _save(fig, path)


def plot_usage(history: Sequence[Dict[str, Any]], num_pots: int, path: Path) -> None:
    """Share of the data each pot holds (argmax responsibility), stacked, per epoch."""
    epochs = [row["epoch"] for row in history]
    shares = np.array([[row["usage"].get(k, 0.0) for row in history] for k in range(num_pots)])
    used = shares.max(1) > 0
    fig, ax = subplots(figsize=(8, 3.8))
    ax.stackplot(epochs, shares[used], labels=[f"pot {k}" for k in np.flatnonzero(used)])
    ax.set(xlabel="epoch", ylabel="share of the data", ylim=(0, 1), title="pot usage")
    ax.legend(fontsize=6, ncol=2, loc="upper left", bbox_to_anchor=(1, 1))
    _save(fig, path)


def plot_responsibilities(resp: np.ndarray, path: Path) -> None:
    """Histogram of each row's largest responsibility (near 1 means one pot per row)."""
    fig, ax = subplots(figsize=(5, 3.5))
    ax.hist(resp.max(-1), bins=40, range=(0, 1))
    ax.set(xlabel="max responsibility", ylabel="rows", title="how peaky the routing is")
    _save(fig, path)


def plot_samples(images: np.ndarray, image_shape, pots: Sequence[int], path: Path) -> None:
    """A grid of decoded samples: one row per pot, ``images`` of shape (pots, draws, D)."""
    n_pots, n_draws = images.shape[:2]
    fig, axes = subplots(
        n_pots, n_draws, figsize=(n_draws * 0.8, n_pots * 0.8 + 0.3), squeeze=False
    )
    for i in range(n_pots):
        for j in range(n_draws):
            axes[i, j].imshow(images[i, j].reshape(image_shape), cmap="gray_r", vmin=0, vmax=1)
            axes[i, j].axis("off")
        axes[i, 0].set_title(f"pot {pots[i]}", fontsize=7, loc="left")
    _save(fig, path)


@torch.no_grad()
def pot_samples(vae, pots: Sequence[int], n: int, generator: Optional[torch.Generator] = None):
    """Mean of p(x | z) for ``n`` prior draws z of each pot in ``pots``: ``(len(pots), n, D)``."""
    idx = torch.as_tensor(list(pots), dtype=torch.long, device=vae.active.device)
    z = torch.randn((len(idx), n, vae.latent_dim), generator=generator).to(idx.device)
    return vae.likelihood(vae.decoders.decode(z, idx)).mean.cpu().numpy()


def write_run_plots(history, log, resp: np.ndarray, vae, data, folder: Path) -> List[Path]:
    """Every plot of a run; returns the files written."""
    folder.mkdir(parents=True, exist_ok=True)
    written = [folder / "losses.png", folder / "usage.png", folder / "responsibilities.png"]
    plot_losses(history, log, written[0])
    plot_usage(history, vae.num_pots, written[1])
    plot_responsibilities(resp, written[2])
    if data.image_shape is not None:
        pots = vae.active.nonzero().squeeze(-1).tolist()
        images = pot_samples(vae, pots, 8, torch.Generator().manual_seed(0))
        written.append(folder / "samples.png")
        plot_samples(images, data.image_shape, pots, written[-1])
    return written


def subplots(*grid, figsize, **kwargs):
    """``pyplot.subplots`` without pyplot: a :class:`Figure` and its axes."""
    fig = Figure(figsize=figsize)
    return fig, fig.subplots(*grid, **kwargs)


def _save(fig, path: Path) -> None:
    fig.tight_layout()
    fig.savefig(path, dpi=100)
