"""
The run directory: everything a fit leaves on disk, and reading it back.

::

    run.json          the run marker and the fingerprint of the run's data
    config.yaml       the resolved configuration (the data as an absolute path)
    checkpoint.pt     trainer state (model, optimizer, stage manager, RNG): resumes exactly
    history.csv       one row per epoch: losses, open pots, lambda, temperature, usage
    stages.json       the stage manager's decision log (reasons and numbers)
    assignments.csv   row, pot, max responsibility, label (when known)
    summary.json      the headline numbers
    data.npy          the fitted rows, the run's data (only a run PotsMixture.save wrote)
    plots/            loss curve with unlocks, usage over time, responsibilities, samples
    .pyro-pots.lock   the lock a writer holds (see :mod:`pyro_pots.storage.lock`)

How a fit creates, locks and replaces this directory is :mod:`pyro_pots.storage`'s job.
"""

import csv
import hashlib
import json
import os
from pathlib import Path
from typing import Any, Dict, List, Optional

import numpy as np
import torch

from pyro_pots.errors import PotsInputError, first_line
from pyro_pots.model.pots_vae import fill_unit_buffers

CONFIG = "config.yaml"
CHECKPOINT = "checkpoint.pt"
HISTORY = "history.csv"
STAGES = "stages.json"
ASSIGNMENTS = "assignments.csv"
SUMMARY = "summary.json"
PLOTS = "plots"
#: the fitted rows :meth:`~pyro_pots.estimator.PotsMixture.save` writes, named by the run's
#: ``data.spec`` (a run fitted from the command line names its data file instead).
DATA = "data.npy"

#: version of the checkpoint layout; a checkpoint of another version is refused. 2: the kick
#: and the pre-split state are the trainer's (2026-11-27; 1 kept them in the stage manager).
CHECKPOINT_FORMAT = 2

RUN_MARKER = "run.json"
#: the key of ``run.json`` that marks a directory as a pyro-pots run; its value is the
#: layout's version.
RUN_TAG = "pyro_pots_run"
RUN_VERSION = 1


def write_marker(data_fingerprint: Dict[str, Any], out: Path) -> None:
    """``run.json``: the run marker (``--overwrite`` replaces only marked runs; see
    :mod:`pyro_pots.storage.ownership`) and the fingerprint of the run's data (see
    :mod:`pyro_pots.storage.fingerprint`). Written atomically."""
    tmp = out / (RUN_MARKER + ".tmp")
    write_json({RUN_TAG: RUN_VERSION, "data": data_fingerprint}, tmp)
    os.replace(tmp, out / RUN_MARKER)


def read_marker(run: Path) -> Optional[Dict[str, Any]]:
    """The contents of a run's ``run.json``; None for a run written before it existed.

    :raises PotsInputError: an unreadable or malformed ``run.json``.
    """
    path = run / RUN_MARKER
    if not path.exists():
        return None
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise PotsInputError(f"cannot read '{path}': {first_line(error)}") from None
    if not isinstance(value, dict) or value.get(RUN_TAG) != RUN_VERSION:
        raise PotsInputError(f"'{path}' is not a run marker this version of pyro-pots reads")
    if not isinstance(value.get("data"), dict):
        raise PotsInputError(f"'{path}' has no data fingerprint")
    return value


def file_sha256(path: Path) -> str:
    """The SHA-256 of a file's bytes (the config a checkpoint was written with)."""
    return hashlib.sha256(path.read_bytes()).hexdigest()


def save_checkpoint(state: Dict[str, Any], out: Path) -> None:
    """Write the checkpoint atomically: a crash mid-write leaves the previous one intact.

    :raises PotsInputError: the run directory cannot be written (read-only, full).
    """
    tmp = out / (CHECKPOINT + ".tmp")
    try:
        torch.save(state, tmp)
        os.replace(tmp, out / CHECKPOINT)
    except OSError as error:
        tmp.unlink(missing_ok=True)
        raise PotsInputError(
            f"cannot write the checkpoint in '{out}' ({error.strerror or first_line(error)})"
        ) from None


def load_checkpoint(run: Path) -> Dict[str, Any]:
    """A run's checkpoint, read with ``weights_only=True`` (it cannot run code); any
    unreadable file is a one-line :class:`PotsInputError`."""
    path = run / CHECKPOINT
    if not path.is_file():
        raise PotsInputError(f"no checkpoint in '{run}' (expected {path})")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # any unreadable file: one line naming it, no ANSI colours
        raise PotsInputError(f"cannot read checkpoint '{path}': {first_line(error)}") from None
    required = ("trainer", "data_dim", "format")
    if not isinstance(state, dict) or any(key not in state for key in required):
        raise PotsInputError(f"'{path}' is not a pyro-pots checkpoint")
    _fill_model_states(state["trainer"])
    return state


def _fill_model_states(value: Any) -> None:
    """Complete every model state in a checkpoint (the model's, and those of the snapshots
    it may restore) with the data's units where it was saved before they existed."""
    if isinstance(value, dict):
        for key, inner in value.items():
            if key == "vae" and isinstance(inner, dict):
                fill_unit_buffers(inner)
            else:
                _fill_model_states(inner)
    elif isinstance(value, list):
        for inner in value:
            _fill_model_states(inner)


#: the columns of ``history.csv`` before the ``usage_k`` ones (keys of a history row).
HISTORY_COLUMNS = (
    *("epoch", "stage", "n_open", "open", "train_loss", "heldout_loss", "lam"),
    *("temperature", "kicking", "mean_max_resp", "action", "bad_steps", "rolled_back"),
    "lr",
)


def write_history(rows: List[Dict[str, Any]], num_pots: int, path: Path) -> None:
    """``history.csv``: one line per epoch, with a ``usage_k`` column per pot."""
    columns = list(HISTORY_COLUMNS)
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(columns + [f"usage_{k}" for k in range(num_pots)])
        for row in rows:
            values = [row[c] for c in columns]
            values[3] = " ".join(map(str, row["open"]))
            usage = [row["usage"].get(k, 0.0) for k in range(num_pots)]
            writer.writerow(values + [f"{u:.4f}" for u in usage])


def write_assignments(
    resp: np.ndarray, pots: List[int], labels: Optional[np.ndarray], path: Path
) -> None:
    """One line per row: its pot (argmax responsibility), that responsibility, its label."""
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["row", "pot", "max_resp"] + (["label"] if labels is not None else []))
        best = resp.argmax(-1)
        for i, column in enumerate(best):
            line = [i, pots[column], f"{resp[i, column]:.6f}"]
            writer.writerow(line + ([int(labels[i])] if labels is not None else []))


def write_json(value: Any, path: Path) -> None:
    """Standard JSON: numpy and torch scalars become numbers, inf and NaN become null."""
    path.write_text(json.dumps(plain(value), indent=2, allow_nan=False) + "\n")


def plain(value: Any) -> Any:
    """``value`` with numpy and torch scalars made numbers and inf and NaN made None (what
    :func:`write_json` writes)."""
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, np.generic) or (torch.is_tensor(value) and value.dim() == 0):
        value = value.item()
    if isinstance(value, float) and not np.isfinite(value):
        return None
    return value
