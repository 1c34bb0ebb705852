"""What data a run was fitted on, so that a run never silently reloads other data.

The run's ``config.yaml`` names its data by an absolute path (a built-in spec such as
``digits`` or ``synthetic:k=3`` is kept as it is), so that ``evaluate``, ``label``, ``ppc``
and ``--resume`` read the same file from any working directory; ``run.json`` holds the
data's fingerprint (rows, features and the SHA-256 of the float32 matrix), which they check
whenever they reload the run's own data.
"""

import hashlib
import os
from typing import Any, Dict

import numpy as np

from pyro_pots.data import Dataset
from pyro_pots.errors import PotsInputError

#: spec names that are not files (see :func:`pyro_pots.data.load_data`).
_BUILTIN = ("digits", "synthetic")


def is_builtin(spec: str) -> bool:
    """Whether ``spec`` names a built-in dataset rather than a file."""
    return spec.strip().partition(":")[0] in _BUILTIN


def resolved_spec(spec: str) -> str:
    """``spec`` with a file path made absolute (symlinks resolved); built-ins unchanged."""
    spec = spec.strip()
    return spec if is_builtin(spec) else os.path.realpath(spec)


def fingerprint(data: Dataset) -> Dict[str, Any]:
    """Rows, features and the SHA-256 of the data matrix's bytes (C order, float32)."""
    matrix = np.ascontiguousarray(data.X)
    digest = hashlib.sha256(memoryview(matrix).cast("B")).hexdigest()
    return {"rows": int(data.n_rows), "features": int(data.n_features), "sha256": digest}


def verify(
    recorded: Dict[str, Any],
    data: Dataset,
    spec: str,
    where: str,
    hint: str = "pass --data to score other data",
) -> None:
    """Refuse ``data`` (read from ``spec``) unless it is the data the run recorded.

    :param recorded: the run's fingerprint (:func:`fingerprint` at fit time).
    :param where: the run directory, for the message.
    :param hint: what the user may do instead, ending the message.
    :raises PotsInputError: in one line, saying how the data differ.
    """
    found = fingerprint(data)
    if found == {key: recorded.get(key) for key in found}:
        return
    if (found["rows"], found["features"]) != (recorded.get("rows"), recorded.get("features")):
        change = (
            f"{found['rows']} rows x {found['features']} features, the run was fitted on "
            f"{recorded.get('rows')} x {recorded.get('features')}"
        )
    else:
        change = "same shape, different values"
    raise PotsInputError(
        f"the data '{spec}' is not the data the run in '{where}' was fitted on ({change}): "
        f"it changed since the fit; {hint}"
    )
