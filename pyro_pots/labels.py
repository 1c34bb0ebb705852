r"""
Map pots to classes from a few labelled rows, then predict labels for any data.

A fitted model routes each row to a pot (its most responsible open pot). Given labels for a
few rows, :func:`map_pots` gives every pot the majority label of the labelled rows it holds:

- **ties**: the lowest of the tied labels wins; the pot is listed in ``LabelMap.ties``.
- **pots without labelled rows** are listed in ``LabelMap.unlabelled`` and get no label.
  :func:`predict_labels` sends a row whose top pot has no label to its most responsible
  pot *that has one* (``fallback="next"``, the default: the nearest labelled pot in the
  model's own routing), or reports it as ``-1`` (``fallback="unknown"``).

One call does both from a model and data: :func:`label_data`.

The labels file (:func:`read_labels_file`) is a CSV in one of two layouts, told apart by
its header:

- ``row,label``: one line per labelled row, ``row`` a 0-based index into the data;
- ``label`` (or no header, one column): one line per data row, in order; an empty cell or
  ``-1`` marks an unlabelled row. The file must have exactly one line per data row.

Labels are integers in [0, 2**53] (:data:`~pyro_pots.data.limits.MAX_ABS_LABEL`); anything
else is a :class:`~pyro_pots.errors.PotsInputError` naming the file and line.
"""

import csv
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch

from pyro_pots.data import limits
from pyro_pots.data.limits import shown
from pyro_pots.errors import PotsInputError
from pyro_pots.model.pots_vae import PotsVAE

#: the label of an unlabelled row (in a labels file) or of a row that cannot be labelled.
UNKNOWN = -1
#: how a row whose top pot has no label is predicted: its next labelled pot, or UNKNOWN.
FALLBACKS = ("next", "unknown")


@dataclass
class LabelMap:
    """Pot -> class map of :func:`map_pots`, with what the vote saw.

    :ivar pots: the open pot ids the map covers.
    :ivar label: pot id -> its majority label (only pots that held labelled rows).
    :ivar votes: pot id -> {label: count of labelled rows of that label in the pot}.
    :ivar ties: pots whose vote was tied (given the lowest tied label).
    :ivar unlabelled: open pots that held no labelled row (no label of their own).
    """

    pots: List[int]
    label: Dict[int, int]
    votes: Dict[int, Dict[int, int]] = field(default_factory=dict)
    ties: List[int] = field(default_factory=list)
    unlabelled: List[int] = field(default_factory=list)

    def report(self) -> Dict[str, object]:
        """A JSON-ready summary (keys are strings, as JSON needs)."""
        return {
            "map": {str(p): lab for p, lab in sorted(self.label.items())},
            "votes": {
                str(p): {str(k): v for k, v in sorted(c.items())} for p, c in self.votes.items()
            },
            "ties": self.ties,
            "unlabelled_pots": self.unlabelled,
        }


def map_pots(pot_of_row: np.ndarray, labels: np.ndarray, open_pots: Sequence[int]) -> LabelMap:
    """
    Majority vote of the labelled rows in each pot.

    :param pot_of_row: ``(N,)`` pot id of each row (its most responsible pot).
    :param labels: ``(N,)`` integer labels, :data:`UNKNOWN` (-1) for unlabelled rows.
    :param open_pots: every open pot id (pots with no labelled row are reported).
    :raises PotsInputError: when no row is labelled, or the arrays disagree in length.
    """
    pot_of_row, labels = np.asarray(pot_of_row), np.asarray(labels)
    if pot_of_row.shape != labels.shape:
        raise PotsInputError(f"{len(labels)} labels for {len(pot_of_row)} rows")
    known = labels != UNKNOWN
    if not known.any():
        raise PotsInputError("no labelled rows: at least one row needs a label >= 0")
    result = LabelMap(pots=[int(p) for p in open_pots], label={})
    for pot in result.pots:
        counts = Counter(labels[known & (pot_of_row == pot)].tolist())
        if not counts:
            result.unlabelled.append(pot)
            continue
        top = max(counts.values())
        winners = sorted(lab for lab, n in counts.items() if n == top)
        result.label[pot] = int(winners[0])  # ties: lowest label, and say so
        result.votes[pot] = {int(k): int(v) for k, v in counts.items()}
        if len(winners) > 1:
            result.ties.append(pot)
    return result


def predict_labels(resp: np.ndarray, label_map: LabelMap, fallback: str = "next") -> np.ndarray:
    """
    Labels of rows from their responsibilities over ``label_map.pots``.

    :param resp: ``(N, len(label_map.pots))`` responsibilities, columns in the order of
        ``label_map.pots``.
    :param fallback: ``"next"``: a row goes to its most responsible *labelled* pot (for a
        row whose top pot is labelled, that is its top pot); ``"unknown"``: a row whose top
        pot is unlabelled gets :data:`UNKNOWN`.
    :returns: ``(N,)`` int64 labels.
    """
    if fallback not in FALLBACKS:
        raise ValueError(f"fallback must be one of {FALLBACKS}, got {fallback!r}")
    resp = np.asarray(resp)
    lookup = np.array([label_map.label.get(p, UNKNOWN) for p in label_map.pots])
    if fallback == "unknown":
        return lookup[resp.argmax(-1)].astype(np.int64)
    # -inf on unlabelled pots, so argmax picks the best labelled one; ties in exact zeros
    # (underflowed responsibilities) are broken by the column order, i.e. the lowest pot id.
    masked = np.where(lookup != UNKNOWN, resp, -np.inf)
    return lookup[masked.argmax(-1)].astype(np.int64)


@torch.no_grad()
def open_responsibilities(vae: PotsVAE, x: Union[np.ndarray, torch.Tensor]) -> np.ndarray:
    """Responsibilities over the open pots (columns in increasing pot id), ``(N, A)``."""
    x = torch.as_tensor(x, dtype=next(vae.parameters()).dtype)
    device = next(vae.parameters()).device
    pots = vae.active.nonzero().squeeze(-1)
    return vae.responsibilities(x.to(device)).index_select(-1, pots).cpu().double().numpy()


@dataclass
class Labelling:
    """What :func:`label_data` returns."""

    label_map: LabelMap
    predicted: np.ndarray  #: ``(N,)`` predicted label of every row of the data predicted
    pot: np.ndarray  #: ``(N,)`` each predicted row's most responsible pot


def label_data(
    vae: PotsVAE,
    labelled_x: Union[np.ndarray, torch.Tensor],
    labels: np.ndarray,
    x: Optional[Union[np.ndarray, torch.Tensor]] = None,
    fallback: str = "next",
) -> Labelling:
    """
    Map the pots of ``vae`` to classes from labelled rows, and predict labels for ``x``.

    :param vae: a fitted model (its open pots are :attr:`PotsVAE.active`).
    :param labelled_x: ``(N, D)`` rows, some of them labelled.
    :param labels: ``(N,)`` their labels, :data:`UNKNOWN` (-1) where unknown.
    :param x: ``(M, D)`` rows to predict (default: ``labelled_x``).
    :param fallback: see :func:`predict_labels`.
    """
    pots = vae.active.nonzero().squeeze(-1).tolist()
    resp = open_responsibilities(vae, labelled_x)
    label_map = map_pots(np.asarray(pots)[resp.argmax(-1)], labels, pots)
    if x is not None:
        resp = open_responsibilities(vae, x)
    return Labelling(
        label_map, predict_labels(resp, label_map, fallback), np.asarray(pots)[resp.argmax(-1)]
    )


# -- the labels file ------------------------------------------------------------------------
def read_labels_file(path: Union[str, Path], n_rows: int) -> np.ndarray:
    """
    Read a labels file (layouts: see the module docstring) for data of ``n_rows`` rows.

    :returns: ``(n_rows,)`` int64 labels, :data:`UNKNOWN` (-1) for unlabelled rows.
    :raises PotsInputError: one line naming the file: missing or unreadable file, wrong
        number of lines, a label that is not an integer >= 0 (or -1 / empty in the one
        column layout), a row index out of range, or a row given two different labels.
    """
    file = Path(path)
    where = f"labels file '{path}'"
    if not file.exists():
        raise PotsInputError(f"{where}: no such file")
    if not file.is_file():  # a FIFO would block, /dev/zero would never end
        raise PotsInputError(f"{where}: not a regular file")
    try:
        # utf-8-sig drops the byte-order mark that spreadsheet exports often start with.
        text = file.read_text(encoding="utf-8-sig").splitlines()
    except (OSError, UnicodeDecodeError) as error:
        raise PotsInputError(f"{where}: not a readable text file ({shown(str(error))})") from None
    lines = [(n, line.strip()) for n, line in enumerate(text, 1)]
    while lines and not lines[-1][1]:  # a trailing newline or two is not an unlabelled row
        lines.pop()
    if not lines:
        raise PotsInputError(f"{where}: empty file")
    header = lines[0][1].lower().replace(" ", "")
    if header == "row,label":
        return _read_pairs([(n, t) for n, t in lines[1:] if t], n_rows, where)
    return _read_column(lines[1:] if header == "label" else lines, n_rows, where)


def _parse_int(text: str) -> int | None:
    """``int(text)``, or None for a text too long to be a label or a row index (more than
    the 17 characters of -2**53: Python refuses to convert 4300 digits, with a traceback)."""
    if len(text.strip()) > len(str(-limits.MAX_ABS_LABEL)):
        return None
    return int(text)


def _parse_label(text: str, line: int, where: str, allow_unknown: bool) -> int:
    try:
        value = _parse_int(text)
    except ValueError:
        raise PotsInputError(
            f"{where}: line {line}: label {shown(text)} is not an integer"
        ) from None
    if value is None or value > limits.MAX_ABS_LABEL:
        raise PotsInputError(
            f"{where}: line {line}: label {shown(text)} must be <= {limits.MAX_ABS_LABEL}"
        )
    if value < 0 and not (allow_unknown and value == UNKNOWN):
        raise PotsInputError(f"{where}: line {line}: label {value} must be >= 0")
    return value


def _read_pairs(lines: List[Tuple[int, str]], n_rows: int, where: str) -> np.ndarray:
    labels = np.full(n_rows, UNKNOWN, dtype=np.int64)
    for line, text in lines:
        cells = [cell.strip() for cell in text.split(",")]
        if len(cells) != 2:
            raise PotsInputError(f"{where}: line {line}: expected 'row,label', got {shown(text)}")
        try:
            row = _parse_int(cells[0])
        except ValueError:
            raise PotsInputError(
                f"{where}: line {line}: row {shown(cells[0])} is not an integer"
            ) from None
        if row is None or not 0 <= row < n_rows:
            raise PotsInputError(
                f"{where}: line {line}: row {shown(cells[0])} is out of range for data of "
                f"{n_rows} rows (rows are 0-based)"
            )
        label = _parse_label(cells[1], line, where, allow_unknown=False)
        if labels[row] not in (UNKNOWN, label):
            raise PotsInputError(f"{where}: line {line}: row {row} already has label {labels[row]}")
        labels[row] = label
    if (labels == UNKNOWN).all():
        raise PotsInputError(f"{where}: no labelled rows")
    return labels


def _read_column(lines: List[Tuple[int, str]], n_rows: int, where: str) -> np.ndarray:
    if len(lines) != n_rows:
        raise PotsInputError(
            f"{where}: {len(lines)} labels for {n_rows} data rows; give one line per data "
            "row (empty or -1 for an unlabelled row), or use the 'row,label' layout"
        )
    labels = np.array(
        [UNKNOWN if not text else _parse_label(text, n, where, True) for n, text in lines],
        dtype=np.int64,
    )
    if (labels == UNKNOWN).all():
        raise PotsInputError(f"{where}: no labelled rows")
    return labels


def write_predictions_csv(labelling: Labelling, truth: Optional[np.ndarray], path: Path) -> None:
    """One line per predicted row: ``row,pot,label`` (and ``true_label`` when known)."""
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["row", "pot", "label"] + (["true_label"] if truth is not None else []))
        for i, (pot, label) in enumerate(zip(labelling.pot, labelling.predicted)):
            writer.writerow(
                [i, int(pot), int(label)] + ([int(truth[i])] if truth is not None else [])
            )
