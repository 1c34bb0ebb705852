"""
The ``pyro-pots`` command line.

- ``pyro-pots fit [--config FILE] [--data SPEC] [--out DIR] [--set section.key=value ...]
  [--overwrite] [--resume] [--resume-from DIR]``: grow a model by the curriculum and write a
  run directory (``--resume-from``: grow a fitted run on new data into a new directory).
  With no arguments it fits the bundled digits data with the defaults.
- ``pyro-pots evaluate --run DIR [--data SPEC] [--output FILE.csv [--samples S]]``: the
  summary numbers of a run's model on its data or on other data with the same number of
  features; ``--output`` adds per-row uncertainty and OOD scores (:mod:`pyro_pots.uncertainty`).
- ``pyro-pots label --run DIR --labels FILE [--data SPEC] [--output FILE.csv]``: map pots
  to classes from a few labelled rows of the run's data and predict labels
  (:mod:`pyro_pots.labels`).
- ``pyro-pots sample --run DIR [--pot K] [-n N] [--out FILE]``: draw rows from the model
  (a pot by the mixture weights, or ``--pot``; then a draw of the likelihood, not its mean)
  into an ``.npz`` file.
- ``pyro-pots ppc --run DIR [--data SPEC] [-n/--num-samples N] [--seed S]``: posterior
  predictive check of a run (:mod:`pyro_pots.ppc`); writes ``ppc.json`` and
  ``plots/ppc_*.png`` into the run directory.

Bad input (config, data, argument, checkpoint, an existing output, an output that cannot
be written, a run that is unfinished or in use) ends in one line on stderr and exit code 2;
a fit stopped by SIGINT or SIGTERM in one line and exit code 130 or 143. Warnings raised
while a command runs are shown after it succeeds, and dropped when it fails (the one line
says what went wrong). ``docs/reliability.md`` states what a run directory guarantees.

The parts: :mod:`~pyro_pots.cli.parser` (the arguments, their types and bounds) and
:mod:`~pyro_pots.cli.commands` (what each subcommand does); :func:`main` runs one and turns
its errors into the one line and exit code above.
"""

import argparse
import json
import sys
import warnings
from typing import List, Optional

from pyro_pots.cli.commands import (
    COMMANDS,
    evaluate_command,
    fit_command,
    label_command,
    ppc_command,
    sample_command,
)
from pyro_pots.cli.parser import (
    MAX_IMPORTANCE_SAMPLES,
    MAX_REPLICATES,
    MAX_SAMPLE_ROWS,
    build_parser,
    package_version,
)
from pyro_pots.errors import FitInterrupted, PotsInputError, first_line, one_line
from pyro_pots.training.distributed import launched_rank

__all__ = [
    "COMMANDS",
    "MAX_IMPORTANCE_SAMPLES",
    "MAX_REPLICATES",
    "MAX_SAMPLE_ROWS",
    "build_parser",
    "evaluate_command",
    "fit_command",
    "label_command",
    "main",
    "package_version",
    "ppc_command",
    "sample_command",
]


def main(argv: Optional[List[str]] = None) -> int:
    """Run one subcommand; print its result as JSON. Exit code 0; 2 on bad input or an
    output that cannot be written; 128 + the signal (130, 143) when SIGINT or SIGTERM
    stopped a fit, 130 on Ctrl-C elsewhere."""
    args = build_parser().parse_args(argv)
    # Warnings wait for the outcome: a command that fails says so in one line, without
    # the 5 to 13 lines Pyro and torch warn on the way (data of extreme values, say).
    with warnings.catch_warnings(record=True) as caught:
        code, result = _run_command(args)
    if code != 0:
        return code
    for warning in caught:
        warnings.showwarning(warning.message, warning.category, warning.filename, warning.lineno)
    if launched_rank() == 0:  # under torchrun every rank runs this; one prints
        print(json.dumps(result, indent=2))
    return 0


def _run_command(args: argparse.Namespace):
    """The exit code and the result of one subcommand; an error in one line on stderr."""
    try:
        return 0, COMMANDS[args.command](args)
    except PotsInputError as error:
        message, code = f"error: {error}", 2
    except FitInterrupted as stop:
        message, code = str(stop), 128 + stop.signum
    except KeyboardInterrupt:  # Ctrl-C outside a fit's epochs (a fit stops on its own)
        message, code = "interrupted", 130
    except OSError as error:  # a file the OS refuses (permissions, a full disk) anywhere
        where = f" '{error.filename}'" if error.filename else ""
        message, code = f"error:{where} {error.strerror or first_line(error)}", 2
    print(one_line(f"pyro-pots: {message}"), file=sys.stderr)
    return code, None
