"""The :class:`Dataset` container and the array checks shared by every loader."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from pyro_pots.data import limits
from pyro_pots.errors import PotsInputError
from pyro_pots.model.likelihoods import LIKELIHOODS

#: The likelihoods whose support is [0, 1].
_UNIT_INTERVAL_LIKELIHOODS = frozenset({"bernoulli", "continuous_bernoulli"})

#: The config's name for "pick by the data" (:meth:`Dataset.auto_likelihood`); a config-level
#: choice, resolved before a model is built (:class:`~pyro_pots.model.PotsVAE` takes names).
AUTO_LIKELIHOOD = "auto"

#: How the model reads the data (:meth:`~pyro_pots.model.PotsVAE.standardize_to`):
#: ``standard`` (each feature in units of its standard deviation) or ``none``.
DATA_SCALINGS = ("standard", "none")
#: The config's name for "by the likelihood" (:func:`auto_scaling`).
AUTO_SCALING = "auto"


def auto_likelihood(*rows: Any) -> str:
    """What ``likelihood: auto`` means for data: ``bernoulli`` when every value of every
    array lies in [0, 1] (images scaled to [0, 1], binary data), ``normal`` otherwise
    (standardised or raw measurements, outside the bernoulli likelihoods' support).

    :param rows: numpy arrays or torch tensors (a training and a held-out part, say); an
        empty one says nothing.
    :returns: ``"bernoulli"`` or ``"normal"``.
    """
    for x in rows:
        if (x.numel() if hasattr(x, "numel") else np.size(x)) == 0:
            continue
        # min and max, not an elementwise mask: no copy of the data; NaN compares False
        if not (float(x.min()) >= 0.0 and float(x.max()) <= 1.0):
            return "normal"
    return "bernoulli"


def auto_scaling(likelihood: str) -> str:
    """What ``scaling: auto`` means for a likelihood: ``standard`` for ``normal`` (raw
    measurements, whose features may be on any scale), ``none`` for the bernoulli ones
    (their data lie in [0, 1] and are read as they are)."""
    return "none" if likelihood in _UNIT_INTERVAL_LIKELIHOODS else "standard"


def as_feature_matrix(array: object, where: str) -> np.ndarray:
    """Check that ``array`` is a non-empty, finite, numeric (N, D) array and cast it.

    :param array: the candidate data matrix.
    :param where: message prefix naming the source, e.g. ``"data file 'x.npy'"``.
    :returns: a C-contiguous float32 copy-or-view of ``array``.
    :raises PotsInputError: on any violation, with a one-line message starting with ``where``.
    """
    if not isinstance(array, np.ndarray):
        raise PotsInputError(f"{where}: expected a numpy array, got {type(array).__name__}")
    # Kinds b/i/u/f only: complex, strings, objects and datetimes are not data we can model.
    if array.dtype.kind not in "biuf":
        raise PotsInputError(f"{where}: values must be numeric, got dtype {array.dtype}")
    if array.ndim != 2:
        hint = ""
        if array.ndim == 1:
            hint = "; reshape to (N, 1) for a single feature"
        elif array.ndim >= 3:
            hint = "; flatten each row, e.g. images to (N, height*width)"
        raise PotsInputError(
            f"{where}: expected a 2-D array (rows x features), got {array.ndim}-D shape "
            f"{array.shape}{hint}"
        )
    if array.size == 0:
        raise PotsInputError(f"{where}: no data (shape {array.shape})")
    _check_finite(array, where)
    with np.errstate(over="ignore"):  # overflow is detected just below
        X = np.ascontiguousarray(array, dtype=np.float32)
    # Finite float64 beyond ~3.4e38 becomes inf in float32; report it rather than train on inf.
    if not np.isfinite(X).all():
        raise PotsInputError(f"{where}: values too large for float32 (max |x| is about 3.4e38)")
    return X


def _check_finite(array: np.ndarray, where: str) -> None:
    """Raise if ``array`` (2-D) holds NaN or inf, saying how many and where the first is."""
    if array.dtype.kind != "f":
        return
    bad = ~np.isfinite(array)
    n_bad = int(bad.sum())
    if n_bad:
        row, col = (int(i) for i in np.argwhere(bad)[0])
        raise PotsInputError(
            f"{where}: {n_bad} non-finite value(s) (NaN or inf); first at row {row}, "
            f"column {col} (0-based) is {array[row, col]}"
        )


def as_labels(labels: object, n_rows: int, where: str) -> np.ndarray:
    """Check that ``labels`` is a 1-D integer-valued array with ``n_rows`` entries.

    Float labels are accepted when every value is a whole number (CSV columns parse as float).
    Every label must lie within :data:`~pyro_pots.data.limits.MAX_ABS_LABEL` of 0 (2**53),
    so that it converts to int64 exactly.

    :param labels: the candidate label vector.
    :param n_rows: number of rows of the matching data matrix.
    :param where: message prefix naming the source.
    :returns: an int64 array of shape (n_rows,).
    :raises PotsInputError: on any violation.
    """
    if not isinstance(labels, np.ndarray):
        raise PotsInputError(f"{where}: labels must be a numpy array, got {type(labels).__name__}")
    if labels.ndim != 1:
        raise PotsInputError(f"{where}: labels must be 1-D, got shape {labels.shape}")
    if labels.shape[0] != n_rows:
        raise PotsInputError(
            f"{where}: {labels.shape[0]} labels for {n_rows} data rows; counts must match"
        )
    if labels.dtype.kind not in "biuf":
        raise PotsInputError(f"{where}: labels must be integers, got dtype {labels.dtype}")
    if labels.dtype.kind == "f":
        whole = np.isfinite(labels) & (labels == np.round(labels))
        if not whole.all():
            i = int(np.flatnonzero(~whole)[0])
            raise PotsInputError(
                f"{where}: labels must be integers; label {i} (0-based) is {labels[i]}"
            )
    # Integers compare in their own dtype (a uint64 must not wrap), floats as float64 (2**53
    # overflows a float16).
    values = labels.astype(np.float64) if labels.dtype.kind == "f" else labels
    outside = (values > limits.MAX_ABS_LABEL) | (values < -limits.MAX_ABS_LABEL)
    if outside.any():
        i = int(np.flatnonzero(outside)[0])
        raise PotsInputError(
            f"{where}: labels must be integers of magnitude at most {limits.MAX_ABS_LABEL}; "
            f"label {i} (0-based) is {labels[i]}"
        )
    return labels.astype(np.int64)


@dataclass(frozen=True, eq=False)
class Dataset:
    """An (N, D) float32 data matrix with optional class labels used only for scoring.

    ``eq=False`` because element-wise array comparison has no single truth value.

    :param X: float32 array of shape (N, D) with finite values.
    :param labels: int64 array of shape (N,), or None when the data are unlabelled.
    :param name: human-readable name used in messages and reports.
    :param image_shape: (height, width) when each row is a flattened image, else None.
    """

    X: np.ndarray
    labels: np.ndarray | None = None
    name: str = "data"
    image_shape: tuple[int, int] | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise PotsInputError(f"dataset name must be a non-empty string, got {self.name!r}")
        where = f"dataset '{self.name}'"
        # The dataclass is frozen, so normalised arrays are stored via object.__setattr__.
        object.__setattr__(self, "X", as_feature_matrix(self.X, where))
        if self.labels is not None:
            object.__setattr__(self, "labels", as_labels(self.labels, self.n_rows, where))
        if self.image_shape is not None:
            object.__setattr__(self, "image_shape", self._checked_image_shape(where))

    def _checked_image_shape(self, where: str) -> tuple[int, int]:
        shape = self.image_shape
        ok = (
            isinstance(shape, tuple | list)
            and len(shape) == 2
            and all(isinstance(s, int | np.integer) and not isinstance(s, bool) for s in shape)
            and all(s >= 1 for s in shape)
        )
        if not ok:
            raise PotsInputError(f"{where}: image_shape must be two positive ints, got {shape!r}")
        height, width = int(shape[0]), int(shape[1])
        if height * width != self.n_features:
            raise PotsInputError(
                f"{where}: image_shape {height}x{width} = {height * width} pixels, "
                f"but rows have {self.n_features} features"
            )
        return height, width

    @property
    def n_rows(self) -> int:
        """Number of data rows N."""
        return int(self.X.shape[0])

    @property
    def n_features(self) -> int:
        """Number of features D per row."""
        return int(self.X.shape[1])

    def split(self, heldout_fraction: float, seed: int) -> tuple[Dataset, Dataset]:
        """Split the rows at random into a training part and a held-out part.

        :param heldout_fraction: share of rows held out, strictly between 0 and 1.
        :param seed: non-negative integer seed for the permutation.
        :returns: ``(train, heldout)``, each keeping labels and image_shape; rows keep their
            original relative order within each part.
        :raises PotsInputError: on a bad fraction or seed, or when either part would be empty.
        """
        where = f"dataset '{self.name}'"
        frac_ok = isinstance(heldout_fraction, int | float | np.floating) and not isinstance(
            heldout_fraction, bool
        )
        if not frac_ok or not 0.0 < float(heldout_fraction) < 1.0:
            raise PotsInputError(
                f"{where}: heldout_fraction must be a number strictly between 0 and 1, "
                f"got {heldout_fraction!r}"
            )
        if not isinstance(seed, int | np.integer) or isinstance(seed, bool) or seed < 0:
            raise PotsInputError(f"{where}: split seed must be an integer >= 0, got {seed!r}")
        n_heldout = round(self.n_rows * float(heldout_fraction))
        if n_heldout < 1 or n_heldout > self.n_rows - 1:
            raise PotsInputError(
                f"{where}: heldout_fraction {heldout_fraction} of {self.n_rows} rows leaves "
                f"{n_heldout} held-out and {self.n_rows - n_heldout} training rows; "
                "both parts need at least one row"
            )
        order = np.random.default_rng(int(seed)).permutation(self.n_rows)
        return (
            self._subset(np.sort(order[n_heldout:]), "train"),
            self._subset(np.sort(order[:n_heldout]), "heldout"),
        )

    def _subset(self, rows: np.ndarray, part: str) -> Dataset:
        labels = None if self.labels is None else self.labels[rows]
        return Dataset(
            X=self.X[rows],
            labels=labels,
            name=f"{self.name}[{part}]",
            image_shape=self.image_shape,
        )

    def auto_likelihood(self) -> str:
        """What ``likelihood: auto`` means for these rows (:func:`auto_likelihood`)."""
        return auto_likelihood(self.X)

    def check_support(self, likelihood: str) -> None:
        """Check that the data lie in the support of an observation likelihood.

        :param likelihood: one of :data:`LIKELIHOODS`, or ``auto`` (every finite data set
            has one that fits: nothing to check).
        :raises PotsInputError: for an unknown likelihood, or values outside [0, 1] for the
            bernoulli likelihoods.
        """
        if likelihood == AUTO_LIKELIHOOD:
            return
        if likelihood not in LIKELIHOODS:
            raise PotsInputError(
                f"dataset '{self.name}': unknown likelihood {likelihood!r}; "
                f"allowed: {', '.join(LIKELIHOODS)}, {AUTO_LIKELIHOOD}"
            )
        if likelihood not in _UNIT_INTERVAL_LIKELIHOODS:
            return
        outside = int(np.count_nonzero((self.X < 0.0) | (self.X > 1.0)))
        if outside:
            raise PotsInputError(
                f"dataset '{self.name}': likelihood '{likelihood}' needs every value in "
                f"[0, 1], but {outside} of {self.X.size} values fall outside (min "
                f"{float(self.X.min()):.6g}, max {float(self.X.max()):.6g}); use likelihood "
                "'normal' or rescale the data to [0, 1]"
            )
