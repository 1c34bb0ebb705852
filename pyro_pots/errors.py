"""The error types a user meets: bad input, and a fit stopped by Ctrl-C.

The CLI turns a :class:`PotsInputError` into a single line on stderr and exit code 2, and
a :class:`FitInterrupted` into a single line and exit code 130 (the shell's code for
SIGINT); anything else is a bug and keeps its traceback.
"""

import re

#: the characters ``str.splitlines`` breaks lines at.
_LINE_BREAKS = re.compile("[\n\r\v\f\x1c\x1d\x1e\x85\u2028\u2029]")


def one_line(text: str) -> str:
    """``text`` with its line breaks escaped (``\\n``, ``\\r``, ...): one line on a terminal."""
    return _LINE_BREAKS.sub(lambda m: repr(m.group())[1:-1], text)


class PotsInputError(ValueError):
    """Bad user input. The message names the offending key, file or argument.

    The message is always one line: a line break that came in with the input (a file name,
    a key or a value quoted in the message) is shown escaped, as ``\\n``.
    """

    def __str__(self) -> str:
        return one_line(super().__str__())


class FitInterrupted(Exception):
    """SIGINT (Ctrl-C) stopped :func:`~pyro_pots.fit` at the end of an epoch, after its
    checkpoint was saved: ``fit(cfg, resume=True)`` goes on exactly from there."""
