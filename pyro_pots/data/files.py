"""Readers for user data files: ``.npz``, ``.npy``, ``.csv`` and MNIST IDX (optionally gzipped).

Every problem with a file becomes a one-line :class:`PotsInputError` naming the file.
"""

from __future__ import annotations

import csv
import gzip
import os
import re
import zipfile
import zlib
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from pyro_pots.data.dataset import Dataset, as_feature_matrix, as_labels
from pyro_pots.errors import PotsInputError

#: Header names (case-insensitive) that mark a CSV column as class labels.
CSV_LABEL_COLUMNS: frozenset[str] = frozenset({"label", "y"})

_IDX_IMAGES_MAGIC = 2051  # 0x00000803: unsigned bytes, 3 dimensions (count, rows, cols)
_IDX_LABELS_MAGIC = 2049  # 0x00000801: unsigned bytes, 1 dimension (count)
_IDX_IMAGES_NAME = re.compile(r"idx3-ubyte(\.gz)?$", re.IGNORECASE)
_IDX_LABELS_NAME = re.compile(r"idx1-ubyte(\.gz)?$", re.IGNORECASE)

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
    where = f"data file '{path}'"
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
        X, labels, image_shape = _read_npz(file, where)
    elif name.endswith(".npy"):
        X, labels, image_shape = _read_npy(file, where), None, None
    elif name.endswith(".csv"):
        X, labels, image_shape = (*_read_csv(file, where), None)
    elif _IDX_IMAGES_NAME.search(name):
        X, labels, image_shape = _read_idx_images(file, where)
    elif _IDX_LABELS_NAME.search(name):
        raise PotsInputError(
            f"{where}: this is an IDX labels file; pass the images (idx3-ubyte) file instead"
        )
    else:
        raise PotsInputError(f"{where}: unknown file type; supported: {SUPPORTED_FORMATS}")
    return Dataset(X=X, labels=labels, name=file.name, image_shape=image_shape)


def _one_line(error: BaseException) -> str:
    """Collapse an exception's text to one line for embedding in our message."""
    return " ".join(str(error).split()) or type(error).__name__


def _numpy_load_problem(error: BaseException) -> str:
    """Translate np.load's errors (under allow_pickle=False) into a user-facing phrase."""
    text = str(error)
    if "Object arrays" in text:
        return "holds an object-dtype array; only numeric arrays are supported"
    if "pickled" in text:
        # np.load falls back to unpickling anything without a numpy/zip signature.
        return "not a numpy file (no .npy/.npz signature; pickles are not loaded for safety)"
    return f"not a valid numpy file ({_one_line(error)})"


# What np.load and zip/zlib raise on corrupt or truncated input.
_LOAD_ERRORS = (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error)


def _read_npz(file: Path, where: str) -> tuple[np.ndarray, np.ndarray | None, None]:
    """Read array ``X`` and optional ``y`` from an ``.npz`` archive."""
    try:
        loaded = np.load(file, allow_pickle=False)
        if not isinstance(loaded, np.lib.npyio.NpzFile):
            raise PotsInputError(f"{where}: not an .npz archive (looks like a single .npy array)")
        with loaded as archive:
            keys = sorted(archive.files)
            if "X" not in keys:
                found = ", ".join(keys) if keys else "none"
                raise PotsInputError(
                    f"{where}: needs an array named 'X' (optional labels 'y'); found: {found}"
                )
            X = archive["X"]
            y = archive["y"] if "y" in keys else None
    except PotsInputError:
        raise
    except _LOAD_ERRORS as error:
        raise PotsInputError(f"{where}: {_numpy_load_problem(error)}") from error
    X = as_feature_matrix(X, f"{where}: array 'X'")
    labels = None if y is None else as_labels(y, X.shape[0], f"{where}: array 'y'")
    return X, labels, None


def _read_npy(file: Path, where: str) -> np.ndarray:
    """Read a 2-D numeric array from an ``.npy`` file."""
    try:
        array = np.load(file, allow_pickle=False)
    except _LOAD_ERRORS as error:
        raise PotsInputError(f"{where}: {_numpy_load_problem(error)}") from error
    if not isinstance(array, np.ndarray):
        array.close()
        raise PotsInputError(f"{where}: not a .npy array (looks like an .npz archive)")
    return as_feature_matrix(array, where)


def _read_csv(file: Path, where: str) -> tuple[np.ndarray, np.ndarray | None]:
    """Read a numeric comma-separated file with an optional header and label column.

    A first row with any non-numeric cell is the header. Messages number rows as file lines
    (from 1, header and blank lines included) and columns from 1, as a text editor shows them.
    """
    try:
        # utf-8-sig drops the byte-order mark that spreadsheet exports often start with.
        with file.open(newline="", encoding="utf-8-sig") as handle:
            rows = [(line, cells) for line, cells in _csv_rows(handle) if cells]
    except UnicodeDecodeError as error:
        raise PotsInputError(f"{where}: not a UTF-8 text file ({_one_line(error)})") from error
    except csv.Error as error:
        raise PotsInputError(f"{where}: malformed CSV ({_one_line(error)})") from error
    if not rows:
        raise PotsInputError(f"{where}: empty file (no rows)")
    header = rows[0][1] if not _is_numeric_row(rows[0][1]) else None
    data_rows = rows[1:] if header is not None else rows
    if not data_rows:
        raise PotsInputError(f"{where}: has a header row but no data rows")
    label_col = _label_column(header, where) if header is not None else None
    width = len(header) if header is not None else len(data_rows[0][1])
    if label_col is not None and width < 2:
        raise PotsInputError(f"{where}: has only the label column, no feature columns")
    values = np.empty((len(data_rows), width), dtype=np.float64)
    for i, (line, row) in enumerate(data_rows):
        if len(row) != width:
            raise PotsInputError(f"{where}: row {line} has {len(row)} columns, expected {width}")
        values[i] = _parse_row(row, line, where)
    _check_csv_finite(values, data_rows, where)
    if label_col is None:
        return values, None
    labels = as_labels(values[:, label_col], len(values), f"{where}: column '{header[label_col]}'")
    return np.delete(values, label_col, axis=1), labels


def _check_csv_finite(
    values: np.ndarray, data_rows: list[tuple[int, list[str]]], where: str
) -> None:
    """Reject NaN/inf cells ("nan", "inf" parse as floats), naming the first by file position."""
    bad = ~np.isfinite(values)
    n_bad = int(bad.sum())
    if n_bad:
        i, j = (int(k) for k in np.argwhere(bad)[0])
        raise PotsInputError(
            f"{where}: {n_bad} non-finite value(s) (NaN or inf); first at row {data_rows[i][0]}, "
            f"column {j + 1}: {data_rows[i][1][j]!r}"
        )


def _csv_rows(handle: Iterable[str]) -> list[tuple[int, list[str]]]:
    """Return ``(line number, cells)`` pairs; whitespace-only rows come back empty."""
    reader = csv.reader(handle)
    out = []
    for row in reader:
        cells = [] if all(not cell.strip() for cell in row) else row
        out.append((reader.line_num, cells))
    return out


def _is_numeric_row(row: list[str]) -> bool:
    try:
        [float(cell) for cell in row]
    except ValueError:
        return False
    return True


def _label_column(header: list[str], where: str) -> int | None:
    """Index of the header column named ``label`` or ``y`` (case-insensitive), if any."""
    matches = [i for i, cell in enumerate(header) if cell.strip().lower() in CSV_LABEL_COLUMNS]
    if len(matches) > 1:
        names = ", ".join(repr(header[i]) for i in matches)
        raise PotsInputError(f"{where}: several label columns in the header ({names}); keep one")
    return matches[0] if matches else None


def _parse_row(row: list[str], line: int, where: str) -> list[float]:
    """Parse one row of cells to floats, naming the first bad cell on failure."""
    try:
        return [float(cell) for cell in row]
    except ValueError:
        pass
    for col, cell in enumerate(row, start=1):
        try:
            float(cell)
        except ValueError:
            hint = " (the file must be comma-separated)" if re.search(r"[;\t]", cell) else ""
            raise PotsInputError(
                f"{where}: row {line}, column {col}: non-numeric value {cell!r}{hint}"
            ) from None
    raise AssertionError("unreachable: some cell failed to parse")


def _read_idx_images(
    file: Path, where: str
) -> tuple[np.ndarray, np.ndarray | None, tuple[int, int]]:
    """Read MNIST IDX images scaled to [0, 1], plus labels from a sibling file if present."""
    data = _read_bytes(file, where)
    count, rows, cols = _idx_header(data, _IDX_IMAGES_MAGIC, 3, where)
    pixels = _idx_payload(data, 16, count * rows * cols, where)
    if count == 0 or rows * cols == 0:
        raise PotsInputError(f"{where}: no data ({count} images of {rows}x{cols})")
    X = pixels.reshape(count, rows * cols).astype(np.float32) / np.float32(255.0)
    labels_file = _idx_labels_sibling(file)
    labels = None if labels_file is None else _read_idx_labels(labels_file, count, where)
    return X, labels, (rows, cols)


def _read_bytes(file: Path, where: str) -> bytes:
    try:
        if file.name.lower().endswith(".gz"):
            with gzip.open(file, "rb") as handle:
                return handle.read()
        return file.read_bytes()
    except (OSError, EOFError, zlib.error) as error:
        raise PotsInputError(f"{where}: cannot read ({_one_line(error)})") from error


def _idx_header(data: bytes, magic: int, ndim: int, where: str) -> tuple[int, ...]:
    """Check the big-endian IDX magic number and return the ``ndim`` dimension sizes."""
    header_len = 4 + 4 * ndim
    if len(data) < 4:
        raise PotsInputError(f"{where}: truncated IDX file ({len(data)} bytes, no header)")
    found = int.from_bytes(data[:4], "big")
    if found != magic:
        raise PotsInputError(
            f"{where}: wrong IDX magic number {found} (0x{found:08x}), expected {magic}"
        )
    if len(data) < header_len:
        raise PotsInputError(
            f"{where}: truncated IDX header ({len(data)} bytes, expected {header_len})"
        )
    return tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))


def _idx_payload(data: bytes, offset: int, size: int, where: str) -> np.ndarray:
    """Return the ``size`` uint8 values after the header, insisting on the exact file size."""
    expected = offset + size
    if len(data) < expected:
        raise PotsInputError(
            f"{where}: truncated IDX file ({len(data)} bytes, header promises {expected})"
        )
    if len(data) > expected:
        raise PotsInputError(
            f"{where}: IDX size mismatch ({len(data)} bytes, header promises {expected})"
        )
    return np.frombuffer(data, dtype=np.uint8, offset=offset)


def _idx_labels_sibling(images: Path) -> Path | None:
    """Find the labels file next to an images file (idx3 -> idx1, images -> labels)."""
    stem = re.sub(r"\.gz$", "", images.name, flags=re.IGNORECASE)
    stem = stem.replace("idx3", "idx1").replace("images", "labels")
    # Prefer the same compression as the images, but accept the other one too.
    suffixes = (".gz", "") if images.name.lower().endswith(".gz") else ("", ".gz")
    for suffix in suffixes:
        candidate = images.with_name(stem + suffix)
        if candidate.is_file():
            return candidate
    return None


def _read_idx_labels(file: Path, n_images: int, images_where: str) -> np.ndarray:
    """Read an IDX labels file and check it has one label per image."""
    where = f"labels file '{file}' (for {images_where})"
    data = _read_bytes(file, where)
    (count,) = _idx_header(data, _IDX_LABELS_MAGIC, 1, where)
    labels = _idx_payload(data, 8, count, where)
    if count != n_images:
        raise PotsInputError(f"{where}: {count} labels for {n_images} images; counts must match")
    return labels.astype(np.int64)
