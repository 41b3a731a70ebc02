"""Run a command that ends with the collector: ``python -m spampot.central.deathsig PID -- ARGV``.

The collector starts rsync and ssh in a session of their own (a terminal's Ctrl-C must reach
the collector, which stops them in order, not rsync half-way). A session of their own also
means that killing only the collector's process (``kill -9``, the OOM killer) would leave its
rsync running beside the next collection. So each command starts through this wrapper, which
asks the kernel for SIGTERM when its parent dies (prctl(2) ``PR_SET_PDEATHSIG``, kept across
execve) and then becomes the command. rsync interrupted by SIGTERM removes its temporary file,
closes ssh's input and exits; the next run finishes the work.

Why a wrapper rather than ``preexec_fn``: the collector forks from several threads at once,
and Python documents ``preexec_fn`` as unsafe with threads (the child may deadlock).
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys

PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


def wrap(argv: list[str]) -> list[str]:
    """``argv`` run through this wrapper, bound to the life of the calling process."""
    return [sys.executable, "-m", "spampot.central.deathsig", str(os.getpid()), "--", *argv]


def main(args: list[str]) -> int:
    if len(args) < 3 or args[1] != "--" or not args[0].isdigit():
        print("usage: python -m spampot.central.deathsig PARENT_PID -- COMMAND…", file=sys.stderr)
        return 2
    parent, command = int(args[0]), args[2:]
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0) != 0:
        print(f"prctl: {os.strerror(ctypes.get_errno())}", file=sys.stderr)
        return 1
    if os.getppid() != parent:  # the parent died before the prctl took effect
        return 1
    try:
        os.execvp(command[0], command)
    except OSError as exc:
        print(f"{command[0]}: {exc.strerror}", file=sys.stderr)
    return 127


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
