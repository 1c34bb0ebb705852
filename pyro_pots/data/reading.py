"""What every data-file reader shares: opening a file, a one-line error text, a declared
size checked against :data:`~pyro_pots.data.limits.MAX_VALUES`, and reading a stream in
chunks (memory grows with what a stream holds, not with what its header declares)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import BinaryIO

from pyro_pots.data import limits
from pyro_pots.data.limits import MAX_SHOWN_CHARS, clipped, shown
from pyro_pots.errors import PotsInputError


def error_text(error: BaseException) -> str:
    """Collapse an exception's text to one line (and a bounded length) for our message."""
    return clipped(" ".join(str(error).split()) or type(error).__name__, 2 * MAX_SHOWN_CHARS)


def open_binary(file: Path, where: str) -> BinaryIO:
    """Open ``file`` for reading bytes; an OS refusal (permissions, ...) is one line."""
    try:
        return file.open("rb")
    except OSError as error:
        raise PotsInputError(f"{where}: cannot be read ({error.strerror or error})") from None


def check_count(shape: tuple[int, ...], where: str) -> int:
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


#: how much of a compressed stream is read at a time.
_CHUNK_BYTES = 2**20


def read_at_most(stream: BinaryIO, size: int) -> bytearray:
    """Up to ``size`` bytes of ``stream``, read in chunks: a stream that ends early costs
    only what it held (a single ``read(size)`` would allocate ``size`` bytes first)."""
    data = bytearray()
    while len(data) < size:
        chunk = stream.read(min(size - len(data), _CHUNK_BYTES))
        if not chunk:
            break
        data += chunk
    return data
