"""Readers for user data files: ``.npz``, ``.npy``, ``.csv`` and MNIST IDX (optionally gzipped).

Every problem with a file becomes a one-line :class:`PotsInputError` naming the file.

A header's declared size is never trusted: the shape in an ``.npy`` header, in each ``.npz``
member's header and in an IDX header is checked against
:data:`~pyro_pots.data.limits.MAX_VALUES` and against the bytes that follow (the file's
size, a zip member's declared size, a gzip stream read to one byte past the declared size)
before any array of that shape is allocated.
"""

from __future__ import annotations

import array
import csv
import gzip
import lzma
import math
import os
import re
import zipfile
import zlib
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import BinaryIO

import numpy as np

from pyro_pots.data import limits
from pyro_pots.data.dataset import Dataset, as_feature_matrix, as_labels
from pyro_pots.data.limits import MAX_SHOWN_CHARS, MAX_SHOWN_PATH, clipped, shown
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
    """Collapse an exception's text to one line (and a bounded length) for our message."""
    return clipped(" ".join(str(error).split()) or type(error).__name__, 2 * MAX_SHOWN_CHARS)


def _open(file: Path, where: str) -> BinaryIO:
    """Open ``file`` for reading bytes; an OS refusal (permissions, ...) is one line."""
    try:
        return file.open("rb")
    except OSError as error:
        raise PotsInputError(f"{where}: cannot be read ({error.strerror or error})") from None


def _check_count(shape: tuple[int, ...], where: str) -> int:
    """The number of values of a declared ``shape``, checked against :data:`MAX_VALUES`."""
    if any(side < 0 for side in shape):
        raise PotsInputError(f"{where}: invalid shape {shown(shape)} (a negative size)")
    count = math.prod(shape)
    if count > limits.MAX_VALUES:
        raise PotsInputError(
            f"{where}: declares shape {shown(shape)}, {count} values, more than the limit of "
            f"{limits.MAX_VALUES} (pyro_pots.data.limits.MAX_VALUES)"
        )
    return count


# np.load's signatures: what a file starts with decides how numpy would read it.
_ZIP_SIGNATURES = (b"PK\x03\x04", b"PK\x05\x06")
_NO_SIGNATURE = "not a numpy file (no .npy/.npz signature; pickles are not loaded for safety)"


def _signature(stream: BinaryIO, where: str) -> str:
    """``"npy"`` or ``"zip"`` by the file's first bytes, as np.load tells them apart."""
    start = stream.read(len(np.lib.format.MAGIC_PREFIX))
    stream.seek(0)
    if not start:
        raise PotsInputError(f"{where}: not a valid numpy file (empty file)")
    if start.startswith(_ZIP_SIGNATURES):
        return "zip"
    if start == np.lib.format.MAGIC_PREFIX:
        return "npy"
    raise PotsInputError(f"{where}: {_NO_SIGNATURE}")


def _npy_header(stream: BinaryIO, where: str) -> tuple[tuple[int, ...], bool, np.dtype]:
    """Read an ``.npy`` header (the stream at its start): the declared shape, whether it is
    in Fortran order, and the dtype.

    Nothing is allocated for the data: the caller checks the declared size first.
    """
    version = np.lib.format.read_magic(stream)
    if version == (1, 0):
        shape, fortran, dtype = np.lib.format.read_array_header_1_0(stream)
    elif version == (2, 0):
        shape, fortran, dtype = np.lib.format.read_array_header_2_0(stream)
    else:  # 3.0 exists only for structured dtypes with unicode field names: never numeric
        raise PotsInputError(
            f"{where}: .npy format version {version[0]}.{version[1]} is not supported "
            "(numeric arrays are written as 1.0 or 2.0)"
        )
    if dtype.hasobject:
        raise PotsInputError(
            f"{where}: holds an object-dtype array; only numeric arrays are supported"
        )
    return shape, fortran, dtype


def _check_declared(shape: tuple[int, ...], dtype: np.dtype, available: int, where: str) -> None:
    """Check a declared array against :data:`MAX_VALUES` and the ``available`` data bytes."""
    needed = _check_count(shape, where) * dtype.itemsize
    if needed > available:
        raise PotsInputError(
            f"{where}: not a valid numpy file (truncated: its header declares shape "
            f"{shown(shape)} of {dtype}, {needed} bytes, but {available} bytes follow)"
        )


# What zipfile, its decompressors and numpy's header parser raise on corrupt input.
_ZIP_ERRORS = (
    OSError,
    ValueError,
    EOFError,
    zipfile.BadZipFile,
    zlib.error,
    lzma.LZMAError,
    RuntimeError,  # an encrypted member
    NotImplementedError,  # an unsupported compression method
)


def _read_npz(file: Path, where: str) -> tuple[np.ndarray, np.ndarray | None, None]:
    """Read array ``X`` and optional ``y`` from an ``.npz`` archive.

    Each member's header is read first and its declared size checked against
    :data:`MAX_VALUES` and the member's size, so a small archive that declares a huge array
    (or decompresses to one) is refused before anything of that size is allocated.
    """
    with _open(file, where) as stream:
        kind = _signature(stream, where)
        if kind == "npy":
            raise PotsInputError(f"{where}: not an .npz archive (looks like a single .npy array)")
        try:
            with zipfile.ZipFile(stream) as archive:
                names = archive.namelist()
                if _npz_member(names, "X") is None:
                    found = ", ".join(sorted({_npz_key(name) for name in names})) or "none"
                    raise PotsInputError(
                        f"{where}: needs an array named 'X' (optional labels 'y'); found: "
                        f"{clipped(found)}"
                    )
                X = _read_npz_array(archive, _npz_member(names, "X"), f"{where}: array 'X'")
                y_name = _npz_member(names, "y")
                y = (
                    None
                    if y_name is None
                    else _read_npz_array(archive, y_name, f"{where}: array 'y'")
                )
        except PotsInputError:
            raise
        except _ZIP_ERRORS as error:
            raise PotsInputError(f"{where}: not a valid numpy file ({_one_line(error)})") from error
    X = as_feature_matrix(X, f"{where}: array 'X'")
    labels = None if y is None else as_labels(y, X.shape[0], f"{where}: array 'y'")
    return X, labels, None


def _npz_key(name: str) -> str:
    """The key numpy gives a member: its name without ``.npy``."""
    return name[:-4] if name.endswith(".npy") else name


def _npz_member(names: list[str], key: str) -> str | None:
    """The member numpy reads for ``archive[key]``: ``key`` itself, else ``key.npy``."""
    for name in (key, key + ".npy"):
        if name in names:
            return name
    return None


def _read_npz_array(archive: zipfile.ZipFile, name: str, where: str) -> np.ndarray:
    """Read one ``.npy`` member after checking its declared size.

    The data are read in chunks, so memory grows with what the member really decompresses
    to, not with what its zip entry or its header declares.
    """
    info = archive.getinfo(name)
    with archive.open(info) as member:
        if member.read(len(np.lib.format.MAGIC_PREFIX)) != np.lib.format.MAGIC_PREFIX:
            raise PotsInputError(f"{where}: not a .npy array ({_NO_SIGNATURE})")
    with archive.open(info) as member:
        shape, fortran, dtype = _npy_header(member, where)
        # zipfile never yields more than the member's declared (uncompressed) size.
        _check_declared(shape, dtype, info.file_size - member.tell(), where)
        count = math.prod(shape)
        data = _read_at_most(member, count * dtype.itemsize)
    if len(data) < count * dtype.itemsize:
        raise PotsInputError(
            f"{where}: not a valid numpy file (truncated: {len(data)} of the "
            f"{count * dtype.itemsize} bytes its header declares)"
        )
    array = np.frombuffer(data, dtype=dtype, count=count)  # writable: data is a bytearray
    return array.reshape(shape[::-1]).transpose() if fortran else array.reshape(shape)


#: how much of a compressed stream is read at a time.
_CHUNK_BYTES = 2**20


def _read_at_most(stream: BinaryIO, size: int) -> bytearray:
    """Up to ``size`` bytes of ``stream``, read in chunks: a stream that ends early costs
    only what it held (a single ``read(size)`` would allocate ``size`` bytes first)."""
    data = bytearray()
    while len(data) < size:
        chunk = stream.read(min(size - len(data), _CHUNK_BYTES))
        if not chunk:
            break
        data += chunk
    return data


def _read_npy(file: Path, where: str) -> np.ndarray:
    """Read a 2-D numeric array from an ``.npy`` file, its declared size checked first."""
    with _open(file, where) as stream:
        if _signature(stream, where) == "zip":
            raise PotsInputError(f"{where}: not a .npy array (looks like an .npz archive)")
        try:
            shape, _, dtype = _npy_header(stream, where)
            _check_declared(shape, dtype, os.fstat(stream.fileno()).st_size - stream.tell(), where)
            stream.seek(0)
            array = np.load(stream, allow_pickle=False)
        except PotsInputError:
            raise
        except (OSError, ValueError, EOFError) as error:
            raise PotsInputError(f"{where}: not a valid numpy file ({_one_line(error)})") from error
    return as_feature_matrix(array, where)


def _read_csv(file: Path, where: str) -> tuple[np.ndarray, np.ndarray | None]:
    """Read a numeric comma-separated file with an optional header and label column.

    The first row is a header when none of its cells is a number, a data row when all are;
    a first row that mixes the two (a typo in a data row, a number in a header) is an error,
    since either reading of it would be a guess. Rows are parsed as they are read, into 8
    bytes a value, and reading stops past :data:`~pyro_pots.data.limits.MAX_VALUES` values.
    Messages number rows as file lines (from 1, header and blank lines included) and columns
    from 1, as a text editor shows them.
    """
    try:
        # utf-8-sig drops the byte-order mark that spreadsheet exports often start with.
        with file.open(newline="", encoding="utf-8-sig") as handle:
            header, values = _parse_csv(handle, where)
    except UnicodeDecodeError as error:
        raise PotsInputError(f"{where}: not a UTF-8 text file ({_one_line(error)})") from error
    except csv.Error as error:
        raise PotsInputError(f"{where}: malformed CSV ({_one_line(error)})") from error
    except OSError as error:
        raise PotsInputError(f"{where}: cannot be read ({error.strerror or error})") from None
    label_col = _label_column(header, where) if header is not None else None
    if label_col is None:
        return values, None
    label_where = f"{where}: column {shown(header[label_col])}"
    labels = as_labels(values[:, label_col], len(values), label_where)
    return np.delete(values, label_col, axis=1), labels


def _parse_csv(handle: Iterable[str], where: str) -> tuple[list[str] | None, np.ndarray]:
    """The header (or None) and the (rows, columns) float64 values of a CSV text; rows that
    hold only whitespace are skipped."""
    reader = csv.reader(handle)
    header: list[str] | None = None
    width = 0
    values = array.array("d")
    first_bad: tuple[int, int, str] | None = None  # (line, column, cell) of a NaN or inf
    for row in reader:
        if all(not cell.strip() for cell in row):
            continue
        line = reader.line_num
        if not width:
            width, header = len(row), _csv_header(line, row, where)
            if header is not None:
                label_col = _label_column(header, where)
                if label_col is not None and width < 2:
                    raise PotsInputError(f"{where}: has only the label column, no feature columns")
                continue
        if len(row) != width:
            raise PotsInputError(f"{where}: row {line} has {len(row)} columns, expected {width}")
        if len(values) + width > limits.MAX_VALUES:
            raise PotsInputError(
                f"{where}: more than {limits.MAX_VALUES} values by row {line}, the limit "
                "(pyro_pots.data.limits.MAX_VALUES)"
            )
        parsed = _parse_row(row, line, where)
        if first_bad is None and not all(map(math.isfinite, parsed)):
            col = next(i for i, value in enumerate(parsed) if not math.isfinite(value))
            first_bad = (line, col + 1, row[col])
        values.extend(parsed)
    if not width:
        raise PotsInputError(f"{where}: empty file (no rows)")
    if not values:
        raise PotsInputError(f"{where}: has a header row but no data rows")
    matrix = np.frombuffer(values, dtype=np.float64).reshape(-1, width)
    if first_bad is not None:
        n_bad = int(np.count_nonzero(~np.isfinite(matrix)))
        line, col, cell = first_bad
        raise PotsInputError(
            f"{where}: {n_bad} non-finite value(s) (NaN or inf); first at row {line}, "
            f"column {col}: {shown(cell)}"
        )
    return header, matrix


def _csv_header(line: int, row: list[str], where: str) -> list[str] | None:
    """The first row as a header (no cell is a number), or None (every cell is a number)."""
    numeric = [_is_number(cell) for cell in row]
    if all(numeric):
        return None
    if not any(numeric):
        return row
    # A mixed row: name the cell in the minority, the likely typo.
    data_like = sum(numeric) >= len(row) - sum(numeric)
    col = numeric.index(not data_like)
    what = "non-numeric value" if data_like else "numeric value"
    among = "numbers" if data_like else "names"
    raise PotsInputError(
        f"{where}: row {line}, column {col + 1}: {what} {shown(row[col])} among {among}; "
        "the first row must be all names (a header) or all numbers (data)"
    )


def _is_number(cell: str) -> bool:
    try:
        float(cell)
    except ValueError:
        return False
    return True


def _label_column(header: list[str], where: str) -> int | None:
    """Index of the header column named ``label`` or ``y`` (case-insensitive), if any."""
    matches = [i for i, cell in enumerate(header) if cell.strip().lower() in CSV_LABEL_COLUMNS]
    if len(matches) > 1:
        names = ", ".join(shown(header[i]) for i in matches)
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
                f"{where}: row {line}, column {col}: non-numeric value {shown(cell)}{hint}"
            ) from None
    raise AssertionError("unreachable: some cell failed to parse")


def _read_idx_images(
    file: Path, where: str
) -> tuple[np.ndarray, np.ndarray | None, tuple[int, int]]:
    """Read MNIST IDX images scaled to [0, 1], plus labels from a sibling file if present."""
    (count, rows, cols), pixels = _read_idx(file, _IDX_IMAGES_MAGIC, 3, where)
    if count == 0 or rows * cols == 0:
        raise PotsInputError(f"{where}: no data ({count} images of {rows}x{cols})")
    X = pixels.reshape(count, rows * cols).astype(np.float32) / np.float32(255.0)
    labels_file = _idx_labels_sibling(file)
    labels = None if labels_file is None else _read_idx_labels(labels_file, count, where)
    return X, labels, (rows, cols)


def _read_idx(
    file: Path,
    magic: int,
    ndim: int,
    where: str,
    check_dims: Callable[[tuple[int, ...]], None] | None = None,
) -> tuple[tuple[int, ...], np.ndarray]:
    """Read an IDX file of unsigned bytes: its ``ndim`` dimension sizes and its values.

    The header is read alone; the declared size is checked against :data:`MAX_VALUES` (and
    by ``check_dims``) and, for an uncompressed file, against the file's size before the
    body is read; a gzipped body is read to at most one byte past the declared size.
    """
    gz = file.name.lower().endswith(".gz")
    header_len = 4 + 4 * ndim
    with _open(file, where) as raw:
        try:
            stream = gzip.GzipFile(fileobj=raw, mode="rb") if gz else raw
            dims = _idx_header(stream.read(header_len), magic, ndim, where)
            if check_dims is not None:
                check_dims(dims)
            expected = header_len + _check_count(dims, where)
            if not gz:
                _check_idx_size(os.fstat(raw.fileno()).st_size, expected, where)
            body = _read_at_most(stream, expected - header_len + 1)
        except (OSError, EOFError, zlib.error) as error:
            raise PotsInputError(f"{where}: cannot read ({_one_line(error)})") from error
    if len(body) > expected - header_len:
        raise PotsInputError(
            f"{where}: IDX size mismatch (more than {expected} bytes, header promises {expected})"
        )
    _check_idx_size(header_len + len(body), expected, where)
    return dims, np.frombuffer(body, dtype=np.uint8)


def _idx_header(header: bytes, magic: int, ndim: int, where: str) -> tuple[int, ...]:
    """Check the big-endian IDX magic number and return the ``ndim`` dimension sizes."""
    header_len = 4 + 4 * ndim
    if len(header) < 4:
        raise PotsInputError(f"{where}: truncated IDX file ({len(header)} bytes, no header)")
    found = int.from_bytes(header[:4], "big")
    if found != magic:
        raise PotsInputError(
            f"{where}: wrong IDX magic number {found} (0x{found:08x}), expected {magic}"
        )
    if len(header) < header_len:
        raise PotsInputError(
            f"{where}: truncated IDX header ({len(header)} bytes, expected {header_len})"
        )
    return tuple(int.from_bytes(header[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))


def _check_idx_size(size: int, expected: int, where: str) -> None:
    """Insist on the exact size the header promises."""
    if size < expected:
        raise PotsInputError(
            f"{where}: truncated IDX file ({size} bytes, header promises {expected})"
        )
    if size > expected:
        raise PotsInputError(
            f"{where}: IDX size mismatch ({size} bytes, header promises {expected})"
        )


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

    def one_per_image(dims: tuple[int, ...]) -> None:
        if dims[0] != n_images:
            raise PotsInputError(
                f"{where}: {dims[0]} labels for {n_images} images; counts must match"
            )

    _, labels = _read_idx(file, _IDX_LABELS_MAGIC, 1, where, one_per_image)
    return labels.astype(np.int64)
