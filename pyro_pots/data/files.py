"""Readers for user data files: ``.npz``, ``.npy``, ``.csv`` and MNIST IDX (optionally gzipped).

Every problem with a file becomes a one-line :class:`PotsInputError` naming the file.
:func:`read_file` chooses the reader by the file's name: :mod:`~pyro_pots.data.numpy_files`,
:mod:`~pyro_pots.data.csv_files` or :mod:`~pyro_pots.data.idx_files` (what they share is
:mod:`~pyro_pots.data.reading`'s).

A header's declared size is never trusted: the shape in an ``.npy`` header, in each ``.npz``
member's header and in an IDX header is checked against
:data:`~pyro_pots.data.limits.MAX_VALUES` and against the bytes that follow (the file's
size, a zip member's declared size, a gzip stream read to one byte past the declared size)
before any array of that shape is allocated.
"""

from __future__ import annotations

import os
from pathlib import Path

from pyro_pots.data.csv_files import CSV_LABEL_COLUMNS, read_csv
from pyro_pots.data.dataset import Dataset
from pyro_pots.data.idx_files import IDX_IMAGES_NAME, IDX_LABELS_NAME, read_idx_images
from pyro_pots.data.limits import MAX_SHOWN_PATH, clipped
from pyro_pots.data.numpy_files import read_npy, read_npz
from pyro_pots.errors import PotsInputError

__all__ = ["CSV_LABEL_COLUMNS", "SUPPORTED_FORMATS", "read_file"]

SUPPORTED_FORMATS = ".npz, .npy, .csv, MNIST IDX images (*-idx3-ubyte, optionally .gz)"


def read_file(path: str | os.PathLike[str]) -> Dataset:
    """Read a data file into a :class:`Dataset`, choosing the reader by file name.

    :param path: a ``.npz`` (array ``X``, optional labels ``y``), ``.npy`` (2-D array),
        ``.csv`` (numeric, optional header; a ``label`` or ``y`` column becomes labels) or
        MNIST IDX images file ``*idx3-ubyte[.gz]`` (labels read from the sibling
        ``*idx1-ubyte[.gz]`` file when present).
    :returns: the dataset, named after the file.
    :raises PotsInputError: if the file is missing, unreadable, of an unknown type, or holds
        anything other than a finite numeric (N, D) matrix with matching integer labels.
    """
    file = Path(path)
    where = f"data file '{clipped(str(path), MAX_SHOWN_PATH)}'"
    try:
        exists, is_file = file.exists(), file.is_file()
    except OSError as error:  # e.g. a name too long for the file system
        raise PotsInputError(f"{where}: cannot be read ({error.strerror or error})") from None
    if not exists:
        raise PotsInputError(f"{where}: no such file")
    if not is_file:
        raise PotsInputError(f"{where}: not a regular file")
    name = file.name.lower()
    if name.endswith(".npz"):
        X, labels, image_shape = read_npz(file, where)
    elif name.endswith(".npy"):
        X, labels, image_shape = read_npy(file, where), None, None
    elif name.endswith(".csv"):
        X, labels, image_shape = (*read_csv(file, where), None)
    elif IDX_IMAGES_NAME.search(name):
        X, labels, image_shape = read_idx_images(file, where)
    elif IDX_LABELS_NAME.search(name):
        raise PotsInputError(
            f"{where}: this is an IDX labels file; pass the images (idx3-ubyte) file instead"
        )
    else:
        raise PotsInputError(f"{where}: unknown file type; supported: {SUPPORTED_FORMATS}")
    return Dataset(X=X, labels=labels, name=file.name, image_shape=image_shape)
