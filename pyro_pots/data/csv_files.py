"""The reader of numeric ``.csv`` files, for :func:`~pyro_pots.data.read_file`: an optional
header, an optional label column, values parsed row by row up to
:data:`~pyro_pots.data.limits.MAX_VALUES`."""

from __future__ import annotations

import array
import csv
import math
import re
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from pyro_pots.data import limits
from pyro_pots.data.dataset import as_labels
from pyro_pots.data.limits import shown
from pyro_pots.data.reading import error_text
from pyro_pots.errors import PotsInputError

#: Header names (case-insensitive) that mark a CSV column as class labels.
CSV_LABEL_COLUMNS: frozenset[str] = frozenset({"label", "y"})


def read_csv(file: Path, where: str) -> tuple[np.ndarray, np.ndarray | None]:
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
        raise PotsInputError(f"{where}: not a UTF-8 text file ({error_text(error)})") from error
    except csv.Error as error:
        raise PotsInputError(f"{where}: malformed CSV ({error_text(error)})") from error
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
