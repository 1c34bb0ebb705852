"""The bounds that input is checked against before anything proportional to it is allocated,
and the bounded rendering of input values in error messages.

A file states its own size (an ``.npy`` or IDX header, a zip member's header); the readers
check that declared size against :data:`MAX_VALUES`, and against the bytes the file really
holds where the format is raw, before they allocate an array of it. These are module
constants, not configuration keys: a user who needs more can set them before reading.
"""

from __future__ import annotations

import reprlib

#: the most numbers a data file's matrix ``X`` (N rows times D features) may hold, checked
#: against the declared shape before the array is allocated: 2**27, about 134 million (MNIST's
#: 70000 x 784 is 55 million), 512 MiB as float32 and 1 GiB as float64.
MAX_VALUES = 2**27

#: the largest absolute value of a class label: every integer up to 2**53 is exact in a
#: float64 (a CSV column is read as floats), and it is far inside int64's range.
MAX_ABS_LABEL = 2**53

#: the most characters of an input value (a cell, an override, a YAML value) that an error
#: message quotes; what is longer is cut and ends in ``...``.
MAX_SHOWN_CHARS = 80

#: the most characters of a file path or data spec that a message quotes (Linux's PATH_MAX):
#: a name the file system takes is shown whole.
MAX_SHOWN_PATH = 4096


class _BoundedRepr(reprlib.Repr):
    """``repr`` that visits a bounded part of a value: a few items of each container, a few
    levels deep, so that an alias-built list of 10^9 items costs as little as a short one."""

    def __init__(self) -> None:
        super().__init__()
        self.maxlevel = 3
        self.maxlist = self.maxtuple = self.maxset = self.maxfrozenset = self.maxdict = 6
        self.maxstring = self.maxother = self.maxlong = MAX_SHOWN_CHARS

    def repr_int(self, x: int, level: int) -> str:
        # repr() itself refuses an int of more than 4300 digits (sys.int_info's limit).
        if x.bit_length() > 4 * MAX_SHOWN_CHARS:
            return f"<an integer of about {int(x.bit_length() * 0.30103) + 1} digits>"
        return super().repr_int(x, level)


_REPR = _BoundedRepr()


def shown(value: object, limit: int = MAX_SHOWN_CHARS) -> str:
    """``repr(value)`` cut to at most ``limit`` characters, without ever building the whole.

    :param value: any value taken from user input.
    :param limit: the most characters returned.
    :returns: a bounded rendering for an error message, ending in ``...`` when cut.
    """
    if isinstance(value, str):
        return repr(clipped(value, limit))
    text = _REPR.repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def clipped(text: str, limit: int = MAX_SHOWN_CHARS) -> str:
    """``text`` cut to at most ``limit`` characters, ending in ``...`` when cut.

    :param text: a string taken from user input (a name, a spec, a cell).
    :param limit: the most characters returned.
    :returns: ``text`` itself when short enough.
    """
    return text if len(text) <= limit else text[: limit - 3] + "..."
