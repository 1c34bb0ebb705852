"""
Split proposals: two-way partitions of a parent pot's rows that the kick then teaches.

A proposal only says where to start; the model moves the boundary during the stage, and
the judge decides on what the split earned. When a proposal is rejected, the parent gets
the next proposal of ``curriculum.split_proposals`` before it is marked as tried.

- ``two_means``: 2-means on the rows themselves (bisecting k-means' cut; good for blobs).
- ``spectral``: the sign of the Fiedler vector of a symmetric k-nearest-neighbour graph of
  the rows (a normalised-cut bisection): it follows connectivity, so it separates two
  curved or nested modes that no straight cut separates.
- ``codes``: 2-means on the parent's latent codes, whitened
  (:func:`~pyro_pots.curriculum.normality.whitened`): the model's own geometry, with every
  direction at unit spread, so a wide Gaussian nuisance direction, along which 2-means on
  the rows cuts, does not hide the modes.

A proposal should cut where the normality test saw two modes: :func:`proposal_order` puts
``codes`` first for a pot whose codes are not one Gaussian blob while its rows look like one.
"""

import warnings
from typing import Callable, Dict, Mapping, Optional, Sequence

import numpy as np
import torch
from scipy import sparse
from scipy.linalg import eigh
from scipy.sparse.csgraph import laplacian
from scipy.sparse.linalg import ArpackNoConvergence, eigsh, lobpcg
from sklearn.neighbors import kneighbors_graph

from pyro_pots.curriculum.normality import whitened
from pyro_pots.curriculum.split import two_means

#: neighbours of each row in the ``spectral`` proposal's graph (fewer rows: all of them).
SPECTRAL_NEIGHBOURS = 10
#: rows up to which :func:`fiedler_vector` falls back to a dense eigendecomposition
#: (4000 x 4000 doubles: 128 MB, seconds); above it, to LOBPCG.
DENSE_ROWS = 4000


def spectral_bisection(rows: torch.Tensor, seed: int) -> np.ndarray:
    """
    Split rows ``(n, D)`` in two by the normalised graph Laplacian of their symmetric
    k-nearest-neighbour graph: labels 0 (stays with the parent, the larger half) and 1.
    The rows' coordinates on the Fiedler vector are cut in two by 2-means (spectral
    clustering with two clusters). Fewer than four distinct rows: all stay.
    """
    x = rows.detach().cpu().double().numpy()
    n = len(x)
    if n < 4 or np.unique(x, axis=0).shape[0] < 4:
        return np.zeros(n, dtype=np.int64)
    graph = kneighbors_graph(x, min(SPECTRAL_NEIGHBOURS, n - 1), include_self=False)
    graph = 0.5 * (graph + graph.T)
    fiedler = fiedler_vector(laplacian(graph, normed=True), seed)
    return two_means(torch.from_numpy(fiedler[:, None]), seed)


def fiedler_vector(lap: sparse.spmatrix, seed: int) -> np.ndarray:
    """
    The eigenvector of the second-smallest eigenvalue of the symmetric sparse ``lap``.
    ARPACK's shift-invert finds it in milliseconds, but can fail to converge where 0 is an
    eigenvalue of high multiplicity (a graph of many components: it stopped a fit on the
    shifted-templates set). Then a dense eigendecomposition takes over, or, above
    :data:`DENSE_ROWS` rows, LOBPCG.
    """
    n = lap.shape[0]
    rng = np.random.default_rng(seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:  # shift-invert near 0 (at 0 itself the factorisation of a singular matrix fails)
            _, vectors = eigsh(lap, k=2, sigma=-1e-3, which="LM", v0=rng.standard_normal(n))
            return vectors[:, 1]
        except ArpackNoConvergence:
            pass
        if n <= DENSE_ROWS:
            _, vectors = eigh(lap.toarray(), subset_by_index=[0, 1])
            return vectors[:, 1]
        values, vectors = lobpcg(lap, rng.standard_normal((n, 2)), largest=False, maxiter=500)
    return vectors[:, np.argsort(values)[1]]


def whitened_two_means(codes: torch.Tensor, seed: int) -> np.ndarray:
    """2-means on :func:`~pyro_pots.curriculum.normality.whitened` ``codes``: labels 0 (the
    larger half, stays with the parent) and 1. Codes that do not vary: all stay."""
    white = whitened(codes)
    if white.shape[1] == 0:
        return np.zeros(len(codes), dtype=np.int64)
    return two_means(white, seed)


#: proposal name -> function (data, seed) -> labels in {0, 1}, 0 for the larger half.
PROPOSALS: Dict[str, Callable[[torch.Tensor, int], np.ndarray]] = {
    "two_means": two_means,
    "spectral": spectral_bisection,
    "codes": whitened_two_means,
}

#: the proposals that read the parent's latent codes; the others read its rows.
ON_CODES = frozenset({"codes"})


def propose(
    method: str, rows: torch.Tensor, seed: int, codes: Optional[torch.Tensor] = None
) -> np.ndarray:
    """The two-way partition of a parent's ``rows`` (or, for the proposals in
    :data:`ON_CODES`, of the same rows' latent ``codes``) by ``method``, a key of
    :data:`PROPOSALS`."""
    if method not in PROPOSALS:
        raise ValueError(f"unknown split proposal {method!r}; one of {sorted(PROPOSALS)}")
    if method in ON_CODES:
        if codes is None or len(codes) != len(rows):
            raise ValueError(f"the {method!r} proposal needs the latent codes of the same rows")
        return PROPOSALS[method](codes, seed)
    return PROPOSALS[method](rows, seed)


def parse_proposals(text: str) -> Sequence[str]:
    """``"two_means,spectral"`` -> ``("two_means", "spectral")``, each checked."""
    names = tuple(name.strip() for name in text.split(","))
    unknown = [name for name in names if name not in PROPOSALS]
    if not names or unknown:
        raise ValueError(f"unknown split proposal(s) {unknown}; choose from {sorted(PROPOSALS)}")
    return names


def proposal_order(
    proposals: Sequence[str], tests: Mapping[str, float], critical: float
) -> Sequence[str]:
    """
    The order a parent's split proposals are tried in: ``proposals`` as configured, except
    for a pot whose rows look like one Gaussian blob (the ``rows`` statistic of ``tests`` at
    most ``critical``) while its latent codes do not (``codes`` or, when the whitened test
    runs, ``whitened`` above it): the modes are in the model's geometry, not along the rows'
    widest direction, where ``two_means`` and ``spectral`` on the rows cut (measured: three
    clusters beside a Gaussian nuisance direction five times their spread, rows 0.2-0.5,
    codes up to 40). Such a pot is split on its whitened codes first (``codes``), then by
    the other proposals in order, as many in all as ``proposals`` holds.

    :param proposals: the configured proposals (:func:`parse_proposals`).
    :param tests: one pot's normality statistics by test (``rows``, ``codes`` and, when
        the whitened test runs, ``whitened``).
    :param float critical: the statistic above which a pot is not one Gaussian blob.
    """
    in_codes = max(tests.get("codes", 0.0), tests.get("whitened", 0.0))
    if not in_codes > critical >= tests.get("rows", 0.0):
        return tuple(proposals)
    others = tuple(name for name in proposals if name != "codes")
    return (("codes",) + others)[: len(proposals)]
