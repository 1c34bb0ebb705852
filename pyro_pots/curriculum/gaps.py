"""
Whether a split cut one mode in two: its boundary's cut of the neighbour graph against the
cuts inside its two sides.

:func:`~pyro_pots.curriculum.neighbours.cut_ratio` measures a boundary against a random
split, and what a random split cuts depends on the data's intrinsic dimension: a straight
cut through the middle of one 2-d Gaussian blob cuts only about 5 % of what a random split
cuts (measured on ``synthetic:k=3``), as sparse as the boundary between two digit classes.
Scale-free is the comparison with the sparsest cut **inside** each side (the cut ratio of
its spectral bisection). A cut through one mode leaves two halves whose own best cuts are
about as dense as the boundary; a boundary between modes is much sparser than the cuts
inside them; and a side that still holds several modes has a gap of its own, much sparser
than the boundary. So the **cut contrast** is the largest factor between the boundary's
cut ratio and a side's inner one, either way round: about 1 only when the boundary is no
sparser than the cuts inside single-mode halves, that is, when one mode was cut in two.
"""

import math
from typing import Dict, Optional

import torch

from pyro_pots.curriculum.neighbours import cut_ratio
from pyro_pots.curriculum.proposals import spectral_bisection

__all__ = ["cut_contrast", "inner_cut_ratio"]

#: a side's rows its inner bisection sees at most (a random subset above it: the cut is
#: then counted on the edges among those rows).
MAX_INNER_ROWS = 5000


def inner_cut_ratio(
    pots: torch.Tensor,
    neighbours: torch.Tensor,
    x: torch.Tensor,
    pot: int,
    seed: int,
    max_rows: int = MAX_INNER_ROWS,
) -> Optional[float]:
    """
    The :func:`~pyro_pots.curriculum.neighbours.cut_ratio` of the spectral bisection
    (:func:`~pyro_pots.curriculum.proposals.spectral_bisection`) of ``pot``'s rows: how
    sparse the sparsest cut inside the pot is that the proposal finds. None when the pot
    has fewer than four rows, or its bisection leaves a side empty or joined by no edge.

    :param torch.Tensor pots: one pot id per row, ``(N,)``.
    :param torch.Tensor neighbours: the rows' neighbour graph, ``(N, k)`` row ids.
    :param torch.Tensor x: the rows ``(N, D)`` the bisection reads.
    :param int pot: the pot whose inside is cut.
    :param int seed: seeds the subset and the bisection.
    :param int max_rows: rows the bisection sees at most.
    """
    pots = pots.cpu()
    rows = (pots == pot).nonzero().squeeze(-1)
    if len(rows) < 4:
        return None
    gen = torch.Generator().manual_seed(seed)
    rows = rows[torch.randperm(len(rows), generator=gen)[:max_rows]]
    halves = torch.as_tensor(spectral_bisection(x[rows.to(x.device)], seed))
    # the two halves are pots 0 and 1 of their own; every other row (other pots, and the
    # pot's rows left out of the subset) is -1, so their edges are not counted
    labels = torch.full_like(pots, -1)
    labels[rows] = halves.to(labels.dtype)
    return cut_ratio(labels, neighbours, 0, 1)


def cut_contrast(
    pots: torch.Tensor,
    neighbours: torch.Tensor,
    x: torch.Tensor,
    a: int,
    b: int,
    seed: int,
    max_rows: int = MAX_INNER_ROWS,
) -> Optional[Dict[str, float]]:
    """
    The boundary between pots ``a`` and ``b`` against the cuts inside them:
    ``cut_ratio`` (the boundary's), ``inner_cut_<pot>`` for each pot whose
    :func:`inner_cut_ratio` is defined, and, when one is, ``cut_contrast``, the largest of
    ``max(inner / cut, cut / inner)`` over those pots (at least 1; infinite when exactly
    one of the two is 0). About 1: both sides' best inner cuts are as dense as the
    boundary, one mode cut in two; large: a gap between the sides, or a gap inside one.
    None when the boundary is undefined.
    """
    boundary = cut_ratio(pots, neighbours, a, b)
    if boundary is None:
        return None
    inner = {pot: inner_cut_ratio(pots, neighbours, x, pot, seed, max_rows) for pot in (a, b)}
    inner = {pot: value for pot, value in inner.items() if value is not None}
    result = {"cut_ratio": boundary}
    if inner:  # without an inner cut the boundary is still judged by max_cut_ratio
        result["cut_contrast"] = max(_factor(boundary, v) for v in inner.values())
    result.update({f"inner_cut_{pot}": value for pot, value in inner.items()})
    return result


def _factor(u: float, v: float) -> float:
    """``max(u / v, v / u)`` for non-negative ``u``, ``v``: 1 when both are 0."""
    low, high = min(u, v), max(u, v)
    if low > 0:
        return high / low
    return 1.0 if high == 0 else math.inf
