"""The error types a user meets: bad input, and a fit stopped by Ctrl-C.

The CLI turns a :class:`PotsInputError` into a single line on stderr and exit code 2, and
a :class:`FitInterrupted` into a single line and exit code 130 (the shell's code for
SIGINT); anything else is a bug and keeps its traceback.
"""


class PotsInputError(ValueError):
    """Bad user input. The message names the offending key, file or argument."""


class FitInterrupted(Exception):
    """SIGINT (Ctrl-C) stopped :func:`~pyro_pots.fit` at the end of an epoch, after its
    checkpoint was saved: ``fit(cfg, resume=True)`` goes on exactly from there."""
