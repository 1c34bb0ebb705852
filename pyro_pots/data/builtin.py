"""Built-in datasets: scikit-learn's bundled digits and a seeded synthetic clustering task."""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from pyro_pots.data import limits
from pyro_pots.data.dataset import Dataset
from pyro_pots.data.limits import shown
from pyro_pots.errors import PotsInputError

# Width of the hidden layer of the fixed random map from latent space to feature space.
_HIDDEN_UNITS = 64


def load_digits() -> Dataset:
    """Load scikit-learn's bundled 8x8 handwritten digits (1797 rows, no download).

    :returns: a Dataset named ``"digits"`` with X = pixel / 16 in [0, 1], labels 0-9 and
        image_shape (8, 8).
    """
    # Imported here because sklearn is slow to import and only this loader needs it.
    from sklearn.datasets import load_digits as _sk_load_digits

    bunch = _sk_load_digits()
    X = (np.asarray(bunch.data, dtype=np.float64) / 16.0).astype(np.float32)
    labels = np.asarray(bunch.target, dtype=np.int64)
    return Dataset(X=X, labels=labels, name="digits", image_shape=(8, 8))


def _is_int(value: object) -> bool:
    return isinstance(value, int | np.integer) and not isinstance(value, bool)


def _is_real(value: object) -> bool:
    return isinstance(value, int | float | np.integer | np.floating) and not isinstance(value, bool)


def _int_at_least(low: int) -> Callable[[object], str | None]:
    def check(value: object) -> str | None:
        if not _is_int(value) or value < low:
            return f"must be an integer >= {low}, got {shown(value)}"
        return None

    return check


def _positive_real(value: object) -> str | None:
    if not _is_real(value) or not math.isfinite(float(value)) or float(value) <= 0:
        return f"must be a finite number > 0, got {shown(value)}"
    return None


#: Per-argument checks for :func:`make_synthetic`; the spec parser reuses them.
SYNTHETIC_ARG_CHECKS: dict[str, Callable[[object], str | None]] = {
    "n_clusters": _int_at_least(1),
    "n_features": _int_at_least(1),
    "n_rows": _int_at_least(1),
    "latent_dim": _int_at_least(1),
    "separation": _positive_real,
    "seed": _int_at_least(0),
}


def synthetic_arg_problem(arg: str, value: object) -> str | None:
    """Describe what is wrong with one :func:`make_synthetic` argument value.

    :param arg: the argument name, a key of :data:`SYNTHETIC_ARG_CHECKS`.
    :param value: the proposed value.
    :returns: a phrase such as ``"must be an integer >= 1, got 0"``, or None if valid.
    """
    return SYNTHETIC_ARG_CHECKS[arg](value)


def make_synthetic(
    n_clusters: int = 5,
    n_features: int = 20,
    n_rows: int = 2000,
    latent_dim: int = 2,
    separation: float = 6.0,
    seed: int = 0,
) -> Dataset:
    """Make a clustering task with known clusters, fully determined by ``seed``.

    Gaussian blobs (unit spread; well-spread centres whose distance to their nearest other
    centre is ``separation`` on average) in ``latent_dim`` dimensions are pushed through a
    fixed random 2-layer tanh network to ``n_features`` dimensions and squashed by a sigmoid,
    so values lie in (0, 1) and the bernoulli likelihoods apply. Cluster sizes differ by at
    most one; rows are shuffled.

    :param n_clusters: number of clusters K (>= 1, <= n_rows).
    :param n_features: observed dimension D (>= 1).
    :param n_rows: number of rows N (>= 1).
    :param latent_dim: dimension of the latent space holding the blobs (>= 1).
    :param separation: mean distance from a centre to its nearest other centre, in units of
        the within-cluster standard deviation (> 0); about 4 or more keeps clusters apart.
    :param seed: non-negative integer seed; the same seed gives byte-identical data.
    :returns: a Dataset named ``"synthetic"`` with labels 0..K-1.
    :raises PotsInputError: on an invalid argument.
    """
    args = {
        "n_clusters": n_clusters,
        "n_features": n_features,
        "n_rows": n_rows,
        "latent_dim": latent_dim,
        "separation": separation,
        "seed": seed,
    }
    for arg, value in args.items():
        problem = synthetic_arg_problem(arg, value)
        if problem:
            raise PotsInputError(f"make_synthetic: {arg} {problem}")
    if n_rows < n_clusters:
        raise PotsInputError(
            f"make_synthetic: n_rows ({n_rows}) must be >= n_clusters ({n_clusters}) "
            "so that every cluster has a row"
        )
    _check_synthetic_size(n_clusters, n_features, n_rows, latent_dim)
    # Independent streams, so changing n_rows does not change the map or the centres.
    centre_rng, map_rng, sample_rng = (
        np.random.default_rng(s) for s in np.random.SeedSequence(int(seed)).spawn(3)
    )
    centres = _cluster_centres(centre_rng, int(n_clusters), int(latent_dim), float(separation))
    labels = sample_rng.permutation(np.arange(int(n_rows)) % int(n_clusters))
    latent = centres[labels] + sample_rng.standard_normal((int(n_rows), int(latent_dim)))
    # Expected latent spread (centres plus unit noise) keeps the map's input near unit scale.
    scale = math.sqrt(float(centres.var()) + 1.0)
    X = _random_map(map_rng, latent, int(n_features), scale=scale)
    return Dataset(X=X.astype(np.float32), labels=labels.astype(np.int64), name="synthetic")


def _check_synthetic_size(n_clusters: int, n_features: int, n_rows: int, latent_dim: int) -> None:
    """Refuse arguments whose largest intermediate array would exceed :data:`MAX_VALUES`.

    Those are the rows times the widest layer (features, latent or hidden units) and the
    centres' candidate cloud and distance matrix (clusters times max(64, clusters) times
    latent_dim).
    """
    rows = n_rows * max(n_features, latent_dim, _HIDDEN_UNITS)
    centres = n_clusters * max(n_clusters, 64) * latent_dim
    sizes = {
        "n_rows x max(n_features, latent_dim, 64)": rows,
        "n_clusters x max(n_clusters, 64) x latent_dim": centres,
    }
    for what, size in sizes.items():
        if size > limits.MAX_VALUES:
            raise PotsInputError(
                f"make_synthetic: {what} is {shown(size)} values, more than the limit of "
                f"{limits.MAX_VALUES} (pyro_pots.data.limits.MAX_VALUES)"
            )


def _cluster_centres(
    rng: np.random.Generator, n_clusters: int, latent_dim: int, separation: float
) -> np.ndarray:
    """Place K well-spread centres, scaled so the mean nearest-neighbour distance is ``separation``.

    Purely random centres often land on top of each other, making the true K unrecoverable;
    greedy farthest-point selection from a random candidate cloud avoids that.
    """
    if n_clusters == 1:
        return np.zeros((1, latent_dim))
    candidates = rng.standard_normal((64 * n_clusters, latent_dim))
    chosen = [0]
    nearest = np.linalg.norm(candidates - candidates[0], axis=1)
    for _ in range(n_clusters - 1):
        chosen.append(int(np.argmax(nearest)))
        nearest = np.minimum(nearest, np.linalg.norm(candidates - candidates[chosen[-1]], axis=1))
    centres = candidates[chosen] - candidates[chosen].mean(axis=0)
    dist = np.linalg.norm(centres[:, None, :] - centres[None, :, :], axis=-1)
    np.fill_diagonal(dist, np.inf)
    return centres * (separation / dist.min(axis=1).mean())


def _random_map(
    rng: np.random.Generator, latent: np.ndarray, n_features: int, scale: float
) -> np.ndarray:
    """Apply a seeded random map latent -> tanh hidden layer -> sigmoid outputs in (0, 1).

    Inputs are divided by ``scale`` (the latent spread) and weights are ~1/sqrt(fan-in), so
    the tanh layer works in its curved range instead of saturating, which would merge clusters.
    """
    latent_dim = latent.shape[1]
    w1 = rng.standard_normal((latent_dim, _HIDDEN_UNITS)) / math.sqrt(latent_dim)
    b1 = rng.standard_normal(_HIDDEN_UNITS) * 0.5
    w2 = rng.standard_normal((_HIDDEN_UNITS, n_features)) * (2.0 / math.sqrt(_HIDDEN_UNITS))
    b2 = rng.standard_normal(n_features) * 0.5
    hidden = np.tanh((latent / scale) @ w1 + b1)
    return 1.0 / (1.0 + np.exp(-(hidden @ w2 + b2)))
