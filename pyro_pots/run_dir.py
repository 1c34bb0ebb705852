"""
The run directory: everything a fit leaves on disk, and reading it back.

::

    config.yaml       the resolved configuration
    checkpoint.pt     trainer state (model, optimizer, stage manager, RNG): resumes exactly
    history.csv       one row per epoch: losses, open pots, lambda, temperature, usage
    stages.json       the stage manager's decision log (reasons and numbers)
    assignments.csv   row, pot, max responsibility, label (when known)
    summary.json      the headline numbers
    plots/            loss curve with unlocks, usage over time, responsibilities, samples
"""

import csv
import json
import os
import shutil
from pathlib import Path
from typing import Any, Dict, List, Optional

import numpy as np
import torch

from pyro_pots.errors import PotsInputError

CONFIG = "config.yaml"
CHECKPOINT = "checkpoint.pt"
HISTORY = "history.csv"
STAGES = "stages.json"
ASSIGNMENTS = "assignments.csv"
SUMMARY = "summary.json"
PLOTS = "plots"

#: files whose presence marks a directory as a pyro-pots run (so --overwrite may replace it).
_MARKERS = (CONFIG, CHECKPOINT, SUMMARY)


def prepare(out: Path, overwrite: bool) -> None:
    """Create ``out`` for a new run. An existing non-empty directory is replaced only with
    ``overwrite`` and only when it is a pyro-pots run; anything else is left untouched."""
    try:
        _prepare(out, overwrite)
    except PotsInputError:
        raise
    except (OSError, ValueError) as error:  # a name too long, a path through a file, a NUL
        reason = error.strerror if isinstance(error, OSError) and error.strerror else error
        raise PotsInputError(f"run directory '{out}': cannot be created ({reason})") from None


def _prepare(out: Path, overwrite: bool) -> None:
    if out.exists() and not out.is_dir():
        raise PotsInputError(f"run directory '{out}' is a file; choose another output.dir")
    if out.exists() and any(out.iterdir()):
        if not overwrite:
            raise PotsInputError(
                f"run directory '{out}' exists and is not empty; pass --overwrite "
                "(output.overwrite=true), --resume, or choose another --out"
            )
        if not any((out / name).exists() for name in _MARKERS):
            raise PotsInputError(
                f"refusing to overwrite '{out}': it is not a pyro-pots run directory "
                f"(it has none of {', '.join(_MARKERS)})"
            )
        shutil.rmtree(out)
    (out / PLOTS).mkdir(parents=True, exist_ok=True)


def save_checkpoint(state: Dict[str, Any], out: Path) -> None:
    """Write the checkpoint atomically: a crash mid-write leaves the previous one intact."""
    tmp = out / (CHECKPOINT + ".tmp")
    torch.save(state, tmp)
    os.replace(tmp, out / CHECKPOINT)


def load_checkpoint(run: Path) -> Dict[str, Any]:
    """A run's checkpoint, read with ``weights_only=True`` (it cannot run code); any
    unreadable file is a one-line :class:`PotsInputError`."""
    path = run / CHECKPOINT
    if not path.is_file():
        raise PotsInputError(f"no checkpoint in '{run}' (expected {path})")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # any unreadable file: one line naming it
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise PotsInputError(f"cannot read checkpoint '{path}': {reason}") from None
    required = ("trainer", "data_dim", "format")
    if not isinstance(state, dict) or any(key not in state for key in required):
        raise PotsInputError(f"'{path}' is not a pyro-pots checkpoint")
    return state


def write_history(rows: List[Dict[str, Any]], num_pots: int, path: Path) -> None:
    """``history.csv``: one line per epoch, with a ``usage_k`` column per pot."""
    columns = ["epoch", "stage", "n_open", "open", "train_loss", "heldout_loss", "lam"]
    columns += ["temperature", "kicking", "mean_max_resp", "action", "bad_steps", "rolled_back"]
    columns += ["lr"]
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
    path.write_text(json.dumps(_plain(value), indent=2, allow_nan=False) + "\n")


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, np.generic) or (torch.is_tensor(value) and value.dim() == 0):
        value = value.item()
    if isinstance(value, float) and not np.isfinite(value):
        return None
    return value
