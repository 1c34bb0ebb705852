"""Readers of ``.npz`` archives and ``.npy`` arrays, for :func:`~pyro_pots.data.read_file`.

No pickle is loaded, and every declared shape (the ``.npy`` header, each ``.npz`` member's
header) is checked against :data:`~pyro_pots.data.limits.MAX_VALUES` and the bytes that
follow before any array of that shape is allocated.
"""

from __future__ import annotations

import lzma
import math
import os
import zipfile
import zlib
from pathlib import Path
from typing import BinaryIO

import numpy as np

from pyro_pots.data.dataset import as_feature_matrix, as_labels
from pyro_pots.data.limits import clipped, shown
from pyro_pots.data.reading import check_count, error_text, open_binary, read_at_most
from pyro_pots.errors import PotsInputError

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
    needed = check_count(shape, where) * dtype.itemsize
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


def read_npz(file: Path, where: str) -> tuple[np.ndarray, np.ndarray | None, None]:
    """Read array ``X`` and optional ``y`` from an ``.npz`` archive.

    Each member's header is read first and its declared size checked against
    :data:`MAX_VALUES` and the member's size, so a small archive that declares a huge array
    (or decompresses to one) is refused before anything of that size is allocated.
    """
    with open_binary(file, where) as stream:
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
            raise PotsInputError(
                f"{where}: not a valid numpy file ({error_text(error)})"
            ) from error
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
        data = read_at_most(member, count * dtype.itemsize)
    if len(data) < count * dtype.itemsize:
        raise PotsInputError(
            f"{where}: not a valid numpy file (truncated: {len(data)} of the "
            f"{count * dtype.itemsize} bytes its header declares)"
        )
    array = np.frombuffer(data, dtype=dtype, count=count)  # writable: data is a bytearray
    return array.reshape(shape[::-1]).transpose() if fortran else array.reshape(shape)


def read_npy(file: Path, where: str) -> np.ndarray:
    """Read a 2-D numeric array from an ``.npy`` file, its declared size checked first."""
    with open_binary(file, where) as stream:
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
            raise PotsInputError(
                f"{where}: not a valid numpy file ({error_text(error)})"
            ) from error
    return as_feature_matrix(array, where)
