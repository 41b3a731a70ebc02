"""Which optional parts of spampot are installed (the ``[project.optional-dependencies]``).

A sensor installs the core only (``pip install spampot``, ``sh deploy/install.sh``): the sensor,
its gate and ``spampot health``. The central server's commands need the ``central`` extra
(``pip install 'spampot[central]'``, ``sh deploy/install.sh --central``): the analysis stack is
large and two of its parts are compiled, which a small sensor box should not pay for. What an
extra holds is read from the installed package's own metadata (pyproject.toml is the one place
it is written), so this module names no dependency.
"""

from __future__ import annotations

import importlib.metadata
import re

CENTRAL = "central"
DISTRIBUTION = "spampot"

# "duckdb>=2.0; extra == \"central\"": the requirement's name, and the extra it belongs to.
_NAME = re.compile(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)")
_EXTRA = re.compile(r"""extra\s*==\s*["']([^"']+)["']""")


class ExtraMissing(Exception):
    """A command needs an extra that is not installed; the message says how to install it."""


def requirements(extra: str) -> list[str]:
    """The distribution names the installed spampot lists for ``extra`` (none if the
    installed metadata predates it, or spampot is not installed as a distribution)."""
    try:
        declared = importlib.metadata.requires(DISTRIBUTION) or []
    except importlib.metadata.PackageNotFoundError:
        return []
    names = []
    for requirement in declared:
        spec, _, marker = requirement.partition(";")
        found, name = _EXTRA.search(marker), _NAME.match(spec)
        if found and found.group(1) == extra and name and name.group(1) != DISTRIBUTION:
            names.append(name.group(1))
    return names


def missing(extra: str) -> list[str]:
    """The distributions of ``extra`` that are not installed."""
    absent = []
    for name in requirements(extra):
        try:
            importlib.metadata.distribution(name)
        except importlib.metadata.PackageNotFoundError:
            absent.append(name)
    return absent


def require(extra: str, command: str) -> None:
    """Raise :class:`ExtraMissing` naming the extra if any of its parts is not installed."""
    absent = missing(extra)
    if absent:
        raise ExtraMissing(
            f"`spampot {command}` runs on the central server and needs the '{extra}' extra, "
            f"which this installation lacks (missing: {', '.join(absent)}). Install it with "
            f"`sh deploy/install.sh --{extra}` in the source tree, or "
            f"`pip install 'spampot[{extra}]'` in spampot's environment."
        )
