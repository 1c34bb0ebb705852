"""
How a new pot starts: a copy of its parent (so it begins as a good model of the parent's
data) and a two-way split of the parent's rows (2-means), which the kick teaches the
encoder.
"""

import math
from typing import List, Optional, Tuple

import numpy as np
import torch
from sklearn.cluster import KMeans

from pyro_pots.model.pots_vae import PotsVAE

#: How a new pot's weights start: ``copy`` its parent's (the design) or ``fresh`` from
#: the layers' default initialisation (an ablation).
NEW_POT_INITS = ("copy", "fresh")


def _pot_rows(vae: PotsVAE, pot: int) -> List[Tuple[torch.Tensor, int, int]]:
    """(tensor, row, fan-in) for every weight row that belongs to ``pot``: its latent head,
    its decoder, and its block(s) of the logits head."""
    rows = []
    for layer in (vae.encoder.latent_heads, vae.decoders.hidden_layer, vae.decoders.output_layer):
        fan_in = layer.weight.shape[1]
        rows += [(tensor, pot, fan_in) for tensor in (layer.weight, layer.bias)]
    # The logits head emits params_per_pot blocks of K outputs (e.g. loc then scale).
    head = vae.encoder.logits_head
    for block in range(vae.logits_guide.params_per_pot):
        row = block * vae.num_pots + pot
        rows += [(tensor, row, head.in_features) for tensor in (head.weight, head.bias)]
    return rows


@torch.no_grad()
def copy_pot(
    vae: PotsVAE,
    parent: int,
    new: int,
    noise: float,
    generator: torch.Generator,
    optimizer: Optional[torch.optim.Optimizer] = None,
) -> None:
    """
    Give pot ``new`` the parent's latent head, decoder and logits-head rows, plus Gaussian
    noise of standard deviation ``noise`` so the two can drift apart. With ``optimizer``,
    the per-parameter optimizer state (e.g. Adam's moments) of those rows is copied too:
    left stale, the new rows' first steps would be several times larger than the parent's.
    """
    for (tensor, src, _), (_, dst, _) in zip(_pot_rows(vae, parent), _pot_rows(vae, new)):
        fresh = torch.randn(tensor[src].shape, generator=generator, dtype=tensor.dtype)
        tensor[dst] = tensor[src] + noise * fresh.to(tensor.device)
        for value in _row_state(optimizer, tensor):
            value[dst] = value[src]


@torch.no_grad()
def fresh_pot(
    vae: PotsVAE,
    new: int,
    generator: torch.Generator,
    optimizer: Optional[torch.optim.Optimizer] = None,
) -> None:
    """
    Draw pot ``new``'s rows afresh from the layers' default initialisation (uniform in
    +-1/sqrt(fan-in), as :class:`torch.nn.Linear`) and zero their optimizer state: a pot
    that knows nothing of its parent (the ``fresh`` ablation of :func:`copy_pot`).
    """
    for tensor, dst, fan_in in _pot_rows(vae, new):
        bound = 1.0 / math.sqrt(fan_in)
        draw = torch.rand(tensor[dst].shape, generator=generator, dtype=tensor.dtype)
        tensor[dst] = ((2 * draw - 1) * bound).to(tensor.device)
        for value in _row_state(optimizer, tensor):
            value[dst] = 0


def _row_state(optimizer: Optional[torch.optim.Optimizer], tensor: torch.Tensor):
    """The optimizer's per-element state tensors of ``tensor`` (none without an optimizer)."""
    state = optimizer.state.get(tensor, {}) if optimizer is not None else {}
    return [v for v in state.values() if torch.is_tensor(v) and v.shape == tensor.shape]


def two_means(codes: torch.Tensor, seed: int) -> np.ndarray:
    """
    Split rows ``(n, d)`` (data rows or latent codes) in two by 2-means: labels 0 (stays
    with the parent) and 1 (goes to the new pot); the larger half stays. Fewer than two
    distinct rows cannot be split: all stay.
    """
    x = codes.detach().cpu().double().numpy()
    if len(x) < 2 or np.unique(x, axis=0).shape[0] < 2:
        return np.zeros(len(x), dtype=np.int64)
    labels = KMeans(n_clusters=2, n_init=3, random_state=seed).fit_predict(x)
    if (labels == 1).sum() > (labels == 0).sum():
        labels = 1 - labels
    return labels.astype(np.int64)
