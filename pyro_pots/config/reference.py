"""The reference of every key, generated from the section tables so that it shows the
defaults in force; :mod:`pyro_pots.config` appends it to its docstring."""

from __future__ import annotations

from dataclasses import fields

from pyro_pots.config.sections import SECTIONS
from pyro_pots.config.yaml_io import yaml_scalar


def reference() -> str:
    """Every section and key: its rule, default (and the default's source) and help.

    :returns: reStructuredText, one entry per key, in file order.
    """
    lines = ["", "Keys", "----", ""]
    for section, section_class in SECTIONS.items():
        lines += [f"``{section}``: {section_class.__doc__.splitlines()[0]}", ""]
        for row in fields(section_class):
            default = f"default ``{yaml_scalar(row.default)}``"
            if row.metadata["source"]:
                default += f" {row.metadata['source']}"
            lines += [
                f"    ``{section}.{row.name}`` -- {row.metadata['rule'].allowed}; {default}",
                f"        {row.metadata['doc']}",
                "",
            ]
    return "\n".join(lines)
