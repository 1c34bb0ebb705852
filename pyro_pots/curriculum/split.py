"""
How a new pot starts: a copy of its parent (so it begins as a good model of the parent's
data) and a two-way split of the parent's rows (2-means), which the kick teaches the
encoder.
"""

from typing import Optional

import numpy as np
import torch
from sklearn.cluster import KMeans

from pyro_pots.model.pots_vae import PotsVAE


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
    grouped = [
        vae.encoder.latent_heads.weight,
        vae.encoder.latent_heads.bias,
        vae.decoders.hidden_layer.weight,
        vae.decoders.hidden_layer.bias,
        vae.decoders.output_layer.weight,
        vae.decoders.output_layer.bias,
    ]
    rows = [(tensor, parent, new) for tensor in grouped]
    # The logits head emits params_per_pot blocks of K outputs (e.g. loc then scale).
    head = vae.encoder.logits_head
    for block in range(vae.logits_guide.params_per_pot):
        offset = block * vae.num_pots
        rows += [(tensor, offset + parent, offset + new) for tensor in (head.weight, head.bias)]
    for tensor, src, dst in rows:
        fresh = torch.randn(tensor[src].shape, generator=generator, dtype=tensor.dtype)
        tensor[dst] = tensor[src] + noise * fresh.to(tensor.device)
        state = optimizer.state.get(tensor, {}) if optimizer is not None else {}
        for value in state.values():
            if torch.is_tensor(value) and value.shape == tensor.shape:
                value[dst] = value[src]


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
