"""The error types a user meets: bad input, a fit that cannot train, and a fit stopped by
a signal.

The CLI turns a :class:`PotsInputError` (and so a :class:`TrainingFailed`) into a single
line on stderr and exit code 2, and a :class:`FitInterrupted` into a single line and exit
code 128 + the signal's number (130 for SIGINT, 143 for SIGTERM, the shells' codes);
anything else is a bug and keeps its traceback.
"""

import re
import signal

#: the characters ``str.splitlines`` breaks lines at.
_LINE_BREAKS = re.compile("[\n\r\v\f\x1c\x1d\x1e\x85\u2028\u2029]")
#: terminal escape sequences (colours, cursor moves): torch colours some of its messages.
_ANSI = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b[@-_]")


def one_line(text: str) -> str:
    """``text`` with its line breaks escaped (``\\n``, ``\\r``, ...): one line on a terminal."""
    return _LINE_BREAKS.sub(lambda m: repr(m.group())[1:-1], text)


def first_line(error: BaseException, limit: int = 300) -> str:
    """The first non-empty line of ``error``'s message (with the next one when it ends in a
    colon, as torch's "Error(s) in loading state_dict for ...:" does), terminal escapes
    removed and cut to ``limit`` characters: torch's load errors run to dozens of coloured
    lines. The exception's type name when the message is empty."""
    text = _ANSI.sub("", str(error))
    lines = [part.strip() for part in text.splitlines() if part.strip()]
    line = " ".join(lines[:2]) if len(lines) > 1 and lines[0].endswith(":") else "".join(lines[:1])
    line = line or type(error).__name__
    return line if len(line) <= limit else line[: limit - 3] + "..."


class PotsInputError(ValueError):
    """Bad user input. The message names the offending key, file or argument.

    The message is always one line: a line break that came in with the input (a file name,
    a key or a value quoted in the message) is shown escaped, as ``\\n``.
    """

    def __str__(self) -> str:
        return one_line(super().__str__())


class TrainingFailed(PotsInputError):
    """Training cannot proceed: every step for ``train.bad_step_patience`` steps in a row
    had a non-finite loss or gradient, with nothing good since the last rollback. The fit
    reports no success and writes no ``summary.json``."""


class FitInterrupted(Exception):
    """SIGINT (Ctrl-C) or SIGTERM stopped :func:`~pyro_pots.fit`: at the end of an epoch
    after its checkpoint was saved (``fit(cfg, resume=True)`` goes on exactly from there),
    or at once on a second signal. The message says what was kept.

    :param str message: the one line the CLI prints.
    :param int signum: the signal that stopped the fit (the CLI exits with 128 + it).
    """

    def __init__(self, message: str, signum: int = signal.SIGINT) -> None:
        super().__init__(message)
        self.signum = int(signum)
