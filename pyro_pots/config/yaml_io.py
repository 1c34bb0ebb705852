"""YAML in and out, bounded: a safe loader that also reads ``1e-3`` as a number, refuses
duplicate keys and bounds what a small text can expand to; a dumper that quotes what the
loader would read as a number; and the reading of a config file, which must be a regular
file of at most :data:`MAX_CONFIG_BYTES`.
"""

from __future__ import annotations

import os
import re
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from pyro_pots.config.rules import shown_name
from pyro_pots.config.sections import SECTIONS
from pyro_pots.data.limits import MAX_SHOWN_CHARS, MAX_SHOWN_PATH, clipped
from pyro_pots.errors import PotsInputError

#: the largest config file read (real ones are a few KiB).
MAX_CONFIG_BYTES = 2**20
#: the most values (scalars, lists and mappings) a YAML document may expand to, an alias
#: counted at the full size of what it names: a few hundred bytes of nested aliases would
#: otherwise stand for 10^9 values, which any walk over them (a message's repr) visits.
MAX_YAML_NODES = 10_000
#: the longest integer literal converted: Python refuses to convert more than 4300 decimal
#: digits, and the sexagesimal form (``1:2:3``) converts in quadratic time.
MAX_INT_CHARS = 100

_FLOAT_TAG = "tag:yaml.org,2002:float"
# YAML 1.1 (PyYAML) reads 1e-3 and 1.5e3 as strings; YAML 1.2 and users read them as numbers.
_EXPONENT_FLOAT = re.compile(r"^[-+]?[0-9][0-9_]*(?:\.[0-9_]*)?[eE][-+]?[0-9]+$")


@dataclass(frozen=True)
class _LongInteger:
    """What an integer literal longer than :data:`MAX_INT_CHARS` reads as: no key's rule
    accepts it, so the message names the key, and nothing tries to convert it."""

    chars: int

    def __repr__(self) -> str:
        return f"<an integer literal of {self.chars} characters>"


class Loader(yaml.SafeLoader):
    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._nodes = 0  # values composed so far, aliases counted at their full size
        self._size: dict[int, int] = {}  # id(node) -> its full size, once composed

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node:
        if self.check_event(yaml.AliasEvent):
            mark = self.peek_event().start_mark
            node = super().compose_node(parent, index)
            size = self._size.get(id(node))
            if size is None:  # the alias sits inside the node it names
                raise yaml.composer.ComposerError(
                    None, None, "an alias to a node that contains it (recursive)", mark
                )
            self._count(size, mark)
            return node
        start = self._nodes
        self._count(1, self.peek_event().start_mark)
        node = super().compose_node(parent, index)
        self._size[id(node)] = self._nodes - start
        return node

    def _count(self, size: int, mark: yaml.Mark) -> None:
        self._nodes += size
        if self._nodes > MAX_YAML_NODES:
            raise yaml.composer.ComposerError(
                None,
                None,
                f"expands to more than {MAX_YAML_NODES} values (aliases counted in full)",
                mark,
            )

    def construct_yaml_int(self, node: yaml.ScalarNode) -> int | _LongInteger:
        if len(node.value) > MAX_INT_CHARS:
            return _LongInteger(len(node.value))
        return super().construct_yaml_int(node)

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        seen: set = set()
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node, deep=deep)
            try:
                duplicate = key in seen
            except TypeError:  # unhashable: the base class reports it
                continue
            if duplicate:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key '{shown_name(key)}'", key_node.start_mark
                )
            seen.add(key)
        return super().construct_mapping(node, deep)


class Dumper(yaml.SafeDumper):
    """Quotes the strings :class:`Loader` would read as numbers, so saving round-trips."""


for _yaml_class in (Loader, Dumper):
    _yaml_class.add_implicit_resolver(_FLOAT_TAG, _EXPONENT_FLOAT, list("-+0123456789"))
Loader.add_constructor("tag:yaml.org,2002:int", Loader.construct_yaml_int)


def yaml_problem(error: yaml.YAMLError) -> str:
    """A YAML error as one line: where (1-based line and column) and what."""
    if isinstance(error, yaml.MarkedYAMLError):
        mark = error.problem_mark or error.context_mark
        what = ", ".join(part for part in (error.context, error.problem) if part)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        return clipped(" ".join(f"invalid YAML{where}: {what}".split()), 2 * MAX_SHOWN_CHARS)
    return clipped(" ".join(f"invalid YAML: {error}".split()), 2 * MAX_SHOWN_CHARS)


#: PyYAML builds nested lists and mappings recursively; a deep enough nesting overflows the stack.
TOO_DEEP = "invalid YAML: lists or mappings nested too deeply"


def _read_text(path: Path, where: str) -> str:
    """The text of a config file: a regular file (symlinks followed) of at most
    :data:`MAX_CONFIG_BYTES`, so that neither a FIFO nor ``/dev/zero`` is read."""
    try:
        # O_NONBLOCK: a FIFO opens at once instead of waiting for a writer; fstat then
        # judges the file that was opened, not one that a path might name a moment later.
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except FileNotFoundError:
        raise PotsInputError(f"{where}: no such file") from None
    except IsADirectoryError:
        raise PotsInputError(f"{where}: is a directory, not a file") from None
    except OSError as error:
        raise PotsInputError(f"{where}: cannot be read ({error.strerror or error})") from None
    try:
        mode = os.fstat(fd).st_mode
        if stat.S_ISDIR(mode):
            raise PotsInputError(f"{where}: is a directory, not a file")
        if not stat.S_ISREG(mode):
            raise PotsInputError(f"{where}: not a regular file (a device, FIFO or socket)")
        with os.fdopen(fd, "rb", closefd=False) as handle:
            data = handle.read(MAX_CONFIG_BYTES + 1)
    except OSError as error:
        raise PotsInputError(f"{where}: cannot be read ({error.strerror or error})") from None
    finally:
        os.close(fd)
    if len(data) > MAX_CONFIG_BYTES:
        raise PotsInputError(
            f"{where}: larger than {MAX_CONFIG_BYTES} bytes (MAX_CONFIG_BYTES); a config is a "
            "few KiB"
        )
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise PotsInputError(f"{where}: is not UTF-8 text") from None


def load_yaml(text: str, where: str) -> Any:
    """``text`` parsed by the bounded :class:`Loader`; a problem is one line that starts
    with ``where`` (the file, or the override and key)."""
    try:
        return yaml.load(text, Loader=Loader)
    except yaml.YAMLError as error:
        raise PotsInputError(f"{where}: {yaml_problem(error)}") from None
    except RecursionError:
        raise PotsInputError(f"{where}: {TOO_DEEP}") from None


def read_yaml(path: Path) -> dict:
    where = f"config file '{clipped(str(path), MAX_SHOWN_PATH)}'"
    tree = load_yaml(_read_text(path, where), where)
    if tree is None:  # an empty file, or only comments: all defaults
        return {}
    if not isinstance(tree, dict):
        raise PotsInputError(
            f"{where}: must be a mapping of sections ({', '.join(SECTIONS)}) at the top "
            f"level, got a {type(tree).__name__}"
        )
    return tree


def dump_yaml(tree: dict) -> str:
    """``tree`` as block YAML in its own key order, that :class:`Loader` reads back equal."""
    return yaml.dump(
        tree,
        Dumper=Dumper,
        sort_keys=False,
        default_flow_style=False,
        allow_unicode=True,
    )


def yaml_scalar(value: Any) -> str:
    """One value as a YAML flow scalar (how the reference shows a default)."""
    return yaml.dump(value, Dumper=Dumper, default_flow_style=True).splitlines()[0]
