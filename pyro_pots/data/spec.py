"""Parse a data SPEC string into a :class:`Dataset`.

Grammar::

    digits                                   scikit-learn's bundled 8x8 digits
    synthetic                                make_synthetic() with its defaults
    synthetic:k=5,d=20,n=2000,latent=2,sep=6.0,seed=0   (any subset of the keys)
    <anything else>                          a file path, read by read_file()
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

from pyro_pots.data.builtin import load_digits, make_synthetic, synthetic_arg_problem
from pyro_pots.data.dataset import Dataset
from pyro_pots.data.files import read_file
from pyro_pots.data.limits import MAX_SHOWN_PATH, clipped, shown
from pyro_pots.errors import PotsInputError


class SpecKey(NamedTuple):
    """How one ``synthetic:`` spec key maps onto a :func:`make_synthetic` argument."""

    argument: str
    parse: Callable[[str], int | float]
    kind: str  # phrase used in messages: "an integer" or "a number"


#: The one table of ``synthetic:`` spec keys -> make_synthetic arguments.
SYNTHETIC_SPEC_KEYS: dict[str, SpecKey] = {
    "k": SpecKey("n_clusters", int, "an integer"),
    "d": SpecKey("n_features", int, "an integer"),
    "n": SpecKey("n_rows", int, "an integer"),
    "latent": SpecKey("latent_dim", int, "an integer"),
    "sep": SpecKey("separation", float, "a number"),
    "seed": SpecKey("seed", int, "an integer"),
}

_BUILTIN_HELP = "built-in dataset (digits, synthetic, synthetic:KEY=VALUE,...)"


def load_data(spec: str, likelihood: str | None = None) -> Dataset:
    """Load the dataset named by ``spec`` and optionally check it suits a likelihood.

    :param spec: ``digits``, ``synthetic[:key=value,...]`` (keys: see
        :data:`SYNTHETIC_SPEC_KEYS`) or a path to a data file (see :func:`read_file`).
    :param likelihood: if given, a likelihood name checked with :meth:`Dataset.check_support`
        (``auto`` checks nothing: resolve it with the dataset,
        :func:`pyro_pots.config.resolve_likelihood`).
    :returns: the dataset.
    :raises PotsInputError: on a malformed spec, unreadable file or unsupported values.
    """
    if not isinstance(spec, str) or not spec.strip():
        raise PotsInputError(f"data spec must be a non-empty string, got {shown(spec)}")
    dataset = _load(spec.strip())
    if likelihood is not None:
        dataset.check_support(likelihood)
    return dataset


def _named(spec: str) -> str:
    """How messages name a spec: quoted, and cut at PATH_MAX (a spec may come from a config)."""
    return f"data spec '{clipped(spec, MAX_SHOWN_PATH)}'"


def _load(spec: str) -> Dataset:
    name, sep, options = spec.partition(":")
    if name == "digits":
        if sep:
            raise PotsInputError(f"{_named(spec)}: 'digits' takes no options")
        return load_digits()
    if name == "synthetic":
        return _load_synthetic(spec, options)
    try:
        exists = Path(spec).exists()
    except OSError as error:  # e.g. a name too long for the file system
        raise PotsInputError(
            f"{_named(spec)}: cannot be read as a file ({error.strerror or error})"
        ) from None
    if not exists:
        raise PotsInputError(f"{_named(spec)}: no such file, and not a {_BUILTIN_HELP}")
    return read_file(spec)


def _load_synthetic(spec: str, options: str) -> Dataset:
    kwargs = parse_synthetic_options(spec, options)
    try:
        return make_synthetic(**kwargs)
    except PotsInputError as error:
        # Cross-argument checks (e.g. n >= k) speak in argument names; keep the spec in view.
        raise PotsInputError(f"{_named(spec)}: {error}") from error


def parse_synthetic_options(spec: str, options: str) -> dict[str, int | float]:
    """Turn ``k=5,sep=4`` into make_synthetic keyword arguments.

    :param spec: the whole spec, for messages.
    :param options: the part after ``synthetic:``; may be empty.
    :returns: keyword arguments for :func:`make_synthetic`.
    :raises PotsInputError: on a malformed item, unknown or repeated key, or bad value.
    """
    allowed = _allowed_keys()
    kwargs: dict[str, int | float] = {}
    for item in (part.strip() for part in options.split(",")):
        if not item:
            continue  # tolerate "synthetic:" and a trailing comma
        key, eq, text = (s.strip() for s in item.partition("="))
        if not eq:
            raise PotsInputError(
                f"{_named(spec)}: expected KEY=VALUE, got '{clipped(item)}'; "
                f"allowed keys: {allowed}"
            )
        if key not in SYNTHETIC_SPEC_KEYS:
            raise PotsInputError(
                f"{_named(spec)}: unknown key '{clipped(key)}'; allowed keys: {allowed}"
            )
        entry = SYNTHETIC_SPEC_KEYS[key]
        if entry.argument in kwargs:
            raise PotsInputError(f"{_named(spec)}: key '{key}' given more than once")
        kwargs[entry.argument] = _parse_value(spec, key, entry, text)
    return kwargs


def _allowed_keys() -> str:
    return ", ".join(f"{key} ({entry.argument})" for key, entry in SYNTHETIC_SPEC_KEYS.items())


def _parse_value(spec: str, key: str, entry: SpecKey, text: str) -> int | float:
    prefix = f"{_named(spec)}: key '{key}' ({entry.argument})"
    try:
        value = entry.parse(text)
    except ValueError:
        raise PotsInputError(
            f"{prefix} must be {entry.kind}, got '{clipped(text)}'; allowed keys: {_allowed_keys()}"
        ) from None
    problem = synthetic_arg_problem(entry.argument, value)
    if problem:
        raise PotsInputError(f"{prefix} {problem}; allowed keys: {_allowed_keys()}")
    return value
