"""The one error type for bad user input (config, data file, CLI argument, checkpoint).

The CLI turns a :class:`PotsInputError` into a single line on stderr and exit code 2;
anything else is a bug and keeps its traceback.
"""


class PotsInputError(ValueError):
    """Bad user input. The message names the offending key, file or argument."""
