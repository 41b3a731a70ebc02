"""Test-only: an audit hook that fails loudly on any outbound network attempt.

Put this directory on ``PYTHONPATH`` and set ``SPAMPOT_AUDIT_LOG``: every Python process of
the sensor under test (the supervisor, its forked workers and writers: an audit hook survives
``fork``) then records any name resolution or outbound connection to that file, one JSON line,
and aborts at once, before the operation runs. The product code never imports this.

uvloop does its own connects and look-ups in libuv, below the ``socket`` module, so the
outbound methods of ``uvloop.Loop`` raise an audit event of their own here; the network
namespace test watches the kernel for whatever is left.

``SPAMPOT_AUDIT_CANARY`` is the negative control: ``main`` makes a connect as this module
loads, ``child`` in every child forked afterwards (the writer, the workers). Each process
that runs with the hook adds its pid to ``$SPAMPOT_AUDIT_LOG.installed``.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import sys
from typing import Any

_LOG = os.environ.get("SPAMPOT_AUDIT_LOG")

# Audit events that mean "resolve a name" or "reach out to another host".
_WATCHED = {
    "socket.connect",
    "socket.getaddrinfo",
    "socket.gethostbyname",
    "socket.gethostbyaddr",
    "socket.getnameinfo",
    "socket.sendto",
    "socket.sendmsg",
    "spampot.test.loop_outbound",
}
_LOOPBACK_LITERALS = {None, "", "127.0.0.1", "::1", "localhost"}
_UVLOOP_OUTBOUND = (
    "create_connection",
    "create_datagram_endpoint",
    "create_unix_connection",
    "getaddrinfo",
    "getnameinfo",
    "sock_connect",
    "sock_sendto",
)


def _allowed(event: str, args: tuple[Any, ...]) -> bool:
    # Binding the listeners may look up the numeric bind addresses (AI_PASSIVE); that is all.
    if event == "socket.getaddrinfo":
        host = args[0]
        if isinstance(host, bytes):
            host = host.decode("ascii", "replace")
        return host in _LOOPBACK_LITERALS
    return False


def _record(event: str, args: tuple[Any, ...]) -> None:
    line = json.dumps({"pid": os.getpid(), "event": event, "args": repr(args)[:500]}) + "\n"
    fd = os.open(_LOG, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)  # type: ignore[arg-type]
    try:
        os.write(fd, line.encode())
    finally:
        os.close(fd)
    os.write(2, b"spampot audit hook: outbound network attempt: " + line.encode())
    os.abort()  # no except clause in the code under test can swallow this


def _hook(event: str, args: tuple[Any, ...]) -> None:
    if event in _WATCHED and not _allowed(event, args):
        _record(event, args)


def _guard_uvloop() -> None:
    try:
        import uvloop
    except ImportError:
        return

    def guarded(name: str) -> Any:
        original = getattr(uvloop.Loop, name)

        def method(self: Any, *args: Any, **kwargs: Any) -> Any:
            sys.audit("spampot.test.loop_outbound", name, args)
            return original(self, *args, **kwargs)

        return method

    for name in _UVLOOP_OUTBOUND:
        setattr(uvloop.Loop, name, guarded(name))


def _mark_installed() -> None:
    """One line per process that runs with the hook, so a test can count them."""
    fd = os.open(f"{_LOG}.installed", os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        os.write(fd, f"{os.getpid()}\n".encode())
    finally:
        os.close(fd)


def _canary() -> None:
    with contextlib.suppress(OSError):
        socket.create_connection(("192.0.2.1", 25), timeout=1).close()


if _LOG:
    sys.addaudithook(_hook)
    _guard_uvloop()
    _mark_installed()
    os.register_at_fork(after_in_child=_mark_installed)
    canary = os.environ.get("SPAMPOT_AUDIT_CANARY")
    if canary == "main":
        _canary()
    elif canary == "child":
        os.register_at_fork(after_in_child=_canary)
