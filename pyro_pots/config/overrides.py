"""Names and merging: a config file's tree and ``section.key=value`` overrides, their
section and key names checked (with a "did you mean" hint) before any value is; the values
themselves are checked by the section tables when they are built.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from typing import Any

from pyro_pots.config.rules import shown_name
from pyro_pots.config.sections import SECTIONS, section_keys
from pyro_pots.config.yaml_io import load_yaml
from pyro_pots.data.limits import clipped, shown
from pyro_pots.errors import PotsInputError


def check_section(section: Any, prefix: str = "") -> str:
    """``section`` if it names a section, else a one-line error with a hint (a key's name
    given as a section points to its home)."""
    if isinstance(section, str) and section in SECTIONS:
        return section
    name = shown_name(section)
    homes = [f"{s}.{name}" for s in SECTIONS if name in section_keys(s)]
    hint = f"it is a key: did you mean {' or '.join(repr(h) for h in homes)}? " if homes else ""
    close = difflib.get_close_matches(name, list(SECTIONS), n=1)
    if close and not homes:
        hint = f"did you mean '{close[0]}'? "
    raise PotsInputError(
        f"{prefix}unknown config section '{name}' ({hint}allowed: {', '.join(SECTIONS)})"
    )


def check_key(section: str, key: Any, prefix: str = "") -> str:
    """``key`` if it is a key of ``section``, else a one-line error with the closest name."""
    keys = section_keys(section)
    if isinstance(key, str) and key in keys:
        return key
    name = shown_name(key)
    close = difflib.get_close_matches(name, keys, n=1)
    hint = f"did you mean '{close[0]}'?" if close else f"allowed: {', '.join(keys)}"
    raise PotsInputError(f"{prefix}unknown config key '{section}.{name}' ({hint})")


def add_file(tree: dict[str, dict[str, Any]], raw: Mapping) -> None:
    """Merge a config file's top-level mapping ``raw`` into ``tree`` (names checked)."""
    for section, values in raw.items():
        section = check_section(section)
        if values is None:  # "model:" with every key commented out
            continue
        if not isinstance(values, Mapping):
            raise PotsInputError(
                f"config section '{section}': must be a mapping of key: value, got {shown(values)}"
            )
        for key, value in values.items():
            tree[section][check_key(section, key)] = value


def add_override(tree: dict[str, dict[str, Any]], override: str) -> None:
    """Merge one ``section.key=value`` into ``tree``, the value read as bounded YAML."""
    if not isinstance(override, str):
        raise PotsInputError(f"override {shown(override)}: must be a string SECTION.KEY=VALUE")
    prefix = f"override '{clipped(override)}': "
    name, equals, text = override.partition("=")
    section, dot, key = name.strip().partition(".")
    if not equals or not dot or not section or not key or "." in key:
        raise PotsInputError(
            f"{prefix}expected SECTION.KEY=VALUE, e.g. model.num_pots=20 "
            f"(sections: {', '.join(SECTIONS)})"
        )
    section = check_section(section, prefix)
    key = check_key(section, key, prefix)
    tree[section][key] = load_yaml(text, f"{prefix}value")
