"""The reader of MNIST IDX files (optionally gzipped), for :func:`~pyro_pots.data.read_file`:
images scaled to [0, 1], with labels from the sibling ``idx1-ubyte`` file when there is one.
The header's sizes are checked against :data:`~pyro_pots.data.limits.MAX_VALUES` and the
bytes that follow (a gzip stream read to one byte past them) before the body is read."""

from __future__ import annotations

import gzip
import os
import re
import zlib
from collections.abc import Callable
from pathlib import Path

import numpy as np

from pyro_pots.data.reading import check_count, error_text, open_binary, read_at_most
from pyro_pots.errors import PotsInputError

_IDX_IMAGES_MAGIC = 2051  # 0x00000803: unsigned bytes, 3 dimensions (count, rows, cols)
_IDX_LABELS_MAGIC = 2049  # 0x00000801: unsigned bytes, 1 dimension (count)
IDX_IMAGES_NAME = re.compile(r"idx3-ubyte(\.gz)?$", re.IGNORECASE)
IDX_LABELS_NAME = re.compile(r"idx1-ubyte(\.gz)?$", re.IGNORECASE)


def read_idx_images(
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
    with open_binary(file, where) as raw:
        try:
            stream = gzip.GzipFile(fileobj=raw, mode="rb") if gz else raw
            dims = _idx_header(stream.read(header_len), magic, ndim, where)
            if check_dims is not None:
                check_dims(dims)
            expected = header_len + check_count(dims, where)
            if not gz:
                _check_idx_size(os.fstat(raw.fileno()).st_size, expected, where)
            body = read_at_most(stream, expected - header_len + 1)
        except (OSError, EOFError, zlib.error) as error:
            raise PotsInputError(f"{where}: cannot read ({error_text(error)})") from error
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
