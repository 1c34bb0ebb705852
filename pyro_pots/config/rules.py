"""The validation language of the section tables: what one key accepts (:class:`Rule`), the
rules the tables are written in, and :func:`key`, one row of a table.

A rule's ``allowed`` phrase is what messages and the key reference print after "must be";
its ``clean`` returns the accepted value or :data:`REJECT`. Every integer rule has an upper
bound, so that no key can ask for an allocation proportional to a huge number.
"""

from __future__ import annotations

import inspect
import math
import numbers
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, fields
from typing import Any, ClassVar

from pyro_pots.curriculum.proposals import PROPOSALS, parse_proposals
from pyro_pots.data.limits import clipped, shown
from pyro_pots.errors import PotsInputError

#: what ``Rule.clean`` returns for a value the key does not accept (None is a value).
REJECT = object()

#: the largest seed every generator takes (numpy's legacy seeding, via pyro.set_rng_seed;
#: torch.manual_seed takes up to 2**64 - 1).
MAX_SEED = 2**32 - 1
#: the ceiling of every integer key without a tighter one: a C int, as torch and numpy take.
MAX_COUNT = 2**31 - 1
#: the most epochs (of a fit, a warm-up or a wait): a million epochs is days of the tiniest fit.
MAX_EPOCHS = 10**6
#: the widest layer or latent space: each pot's decoder alone holds latent x hidden x D weights.
MAX_WIDTH = 2**16
#: the most pots: every pot holds its own decoder, allocated when the model is built.
MAX_POTS = 1024
#: bounds of scales (prior M and sigma, temperatures, lambda) that float32 arithmetic can
#: carry: past them the logit prior's normaliser or the routing softmax over- or underflows.
MIN_SCALE, MAX_SCALE = 1e-3, 1e3


@dataclass(frozen=True)
class Rule:
    """What one key accepts.

    :param allowed: the phrase after "must be" in messages, e.g. ``a number > 0``.
    :param clean: returns the accepted value (an integer given for a number becomes a
        float) or :data:`REJECT`.
    """

    allowed: str
    clean: Callable[[Any], Any]


def integer(low: int = 0, high: int = MAX_COUNT) -> Rule:
    """An integer in ``[low, high]``; a boolean is not an integer."""

    def clean(value: Any) -> Any:
        if isinstance(value, bool) or not isinstance(value, numbers.Integral):
            return REJECT
        if not low <= value <= high:
            return REJECT
        return int(value)

    return Rule(f"an integer in [{low}, {high}]", clean)


def number(
    low: float | None = None,
    high: float | None = None,
    *,
    low_open: bool = False,
    high_open: bool = False,
) -> Rule:
    """A finite number within the bounds given (closed unless ``*_open``); an integer is
    accepted and becomes a float, a boolean is refused."""
    if low is not None and high is not None:
        allowed = f"a number in {'(' if low_open else '['}{low}, {high}{')' if high_open else ']'}"
    elif low is not None:
        allowed = f"a number {'>' if low_open else '>='} {low}"
    else:
        allowed = "a number"

    def clean(value: Any) -> Any:
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            return REJECT
        try:
            value = float(value)
        except OverflowError:
            return REJECT
        if not math.isfinite(value):
            return REJECT
        if low is not None and (value <= low if low_open else value < low):
            return REJECT
        if high is not None and (value >= high if high_open else value > high):
            return REJECT
        return value

    return Rule(allowed, clean)


def flag() -> Rule:
    """``true`` or ``false``, and nothing that merely converts to one."""
    return Rule("true or false", lambda value: value if isinstance(value, bool) else REJECT)


def choice(options: Sequence[str]) -> Rule:
    """One of the names ``options`` (a library table, so that the two cannot disagree)."""
    options = tuple(options)
    return Rule(
        f"one of {', '.join(options)}",
        lambda value: value if isinstance(value, str) and value in options else REJECT,
    )


def proposal_list() -> Rule:
    """A comma-separated list of split proposals, normalised as the curriculum parses it."""

    def clean(value: Any) -> Any:
        if not isinstance(value, str):
            return REJECT
        try:
            return ",".join(parse_proposals(value))
        except ValueError:
            return REJECT

    return Rule(f"a comma-separated list of {', '.join(sorted(PROPOSALS))}", clean)


def nonempty_text() -> Rule:
    """A string that is not only white space."""
    return Rule(
        "a non-empty string",
        lambda value: value if isinstance(value, str) and value.strip() else REJECT,
    )


_DEVICE = re.compile(r"cpu|cuda|cuda:[0-9]+|auto")


def device_name() -> Rule:
    """A torch device name the trainer resolves (``auto`` picks cuda when it is there)."""
    return Rule(
        "one of cpu, cuda, cuda:N, auto",
        lambda value: value if isinstance(value, str) and _DEVICE.fullmatch(value) else REJECT,
    )


# ---------------------------------------------------------------------------------------------
# Rows of a table: rule, default, help
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FromSignature:
    """A default read from a callable's signature, remembered with its source: the callable
    is the one source of the default, and the reference names it."""

    function: Callable
    parameter: str

    @property
    def source(self) -> str:
        return self.function.__qualname__.removesuffix(".__init__")

    def value(self) -> Any:
        default = inspect.signature(self.function).parameters[self.parameter].default
        if default is inspect.Parameter.empty:
            raise RuntimeError(
                f"{self.function.__qualname__} has no default for {self.parameter!r}"
            )
        return default


def from_signature(function: Callable, parameter: str) -> FromSignature:
    """The default of ``parameter`` in ``function``'s signature. Only for callables below
    the config in the layering (model, handlers): reading a default must not import the
    training code that is configured."""
    return FromSignature(function, parameter)


def key(rule: Rule, default: Any, doc: str, *, same_as: str | None = None) -> Any:
    """One row of a section table: a dataclass field carrying its rule and help.

    :param rule: what the key accepts.
    :param default: its default, or a :class:`FromSignature`.
    :param doc: one line of help for the reference.
    :param same_as: a callable's default this one is kept equal to (by a test, not by an
        import: the callable sits above the config), shown in the reference.
    """
    source = None
    if isinstance(default, FromSignature):
        source = f"from ``{default.source}({default.parameter}=...)``"
        default = default.value()
    elif same_as is not None:
        source = f"as in ``{same_as}``"
    return field(default=default, metadata={"rule": rule, "doc": doc, "source": source})


def shown_name(value: Any) -> str:
    """A section or key name quoted in a message: a string as it is, cut short."""
    return clipped(value) if isinstance(value, str) else shown(value)


class Section:
    """Validation shared by the section dataclasses: each value is checked (and an
    integer given for a number converted) when the section is built."""

    section: ClassVar[str]

    def __post_init__(self) -> None:
        for row in fields(self):  # type: ignore[arg-type]
            value = getattr(self, row.name)
            rule: Rule = row.metadata["rule"]
            clean = rule.clean(value)
            if clean is REJECT:
                raise PotsInputError(
                    f"config key '{self.section}.{row.name}': must be {rule.allowed}, "
                    f"got {shown(value)}"
                )
            object.__setattr__(self, row.name, clean)
