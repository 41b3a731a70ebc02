"""Fixtures: the real servers and our sensor, each started once per test session in its
network namespace. A plugin (``pytest_plugins`` in tests/conftest.py), not a conftest.py:
a second module named ``conftest`` would shadow the root one that tests import from."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import pytest
import realservers

from conftest import need_root, need_tool


def _need_namespaces() -> None:
    need_root()
    for tool in ("ip", "unshare", "apt-get", "dpkg-deb"):
        need_tool(tool)


@pytest.fixture(scope="session")
def prepared() -> None:
    _need_namespaces()
    realservers.prepare()
    for tool in realservers.TOOLS:
        need_tool(tool)


@pytest.fixture(scope="session")
def postfix(prepared) -> Iterator[realservers.Server]:
    with realservers.postfix() as server:
        yield server


@pytest.fixture(scope="session")
def exim4(prepared) -> Iterator[realservers.Server]:
    with realservers.exim4() as server:
        yield server


@pytest.fixture(scope="session")
def sendmail(prepared) -> Iterator[realservers.Server]:
    with realservers.sendmail() as server:
        yield server


@pytest.fixture(scope="session")
def proxies(prepared) -> Iterator[tuple[realservers.Server, ...]]:
    """(squid, dante, upstream postfix), in one namespace."""
    with realservers.proxies() as servers:
        yield servers


@pytest.fixture(scope="session")
def squid(proxies) -> realservers.Server:
    return proxies[0]


@pytest.fixture(scope="session")
def dante(proxies) -> realservers.Server:
    return proxies[1]


@pytest.fixture(scope="session")
def sensors() -> Iterator[dict[str, realservers.Server]]:
    """Our sensor per SMTP dialect; the Postfix one also serves the proxy ports."""
    _need_namespaces()
    with contextlib.ExitStack() as stack:
        made = {}
        for dialect in ("postfix", "exim", "sendmail"):
            ports = realservers.SENSOR_PORTS if dialect == "postfix" else {"smtp": (25,)}
            made[dialect] = stack.enter_context(realservers.sensor(dialect, ports))
        yield made
