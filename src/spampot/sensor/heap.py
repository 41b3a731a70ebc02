"""Free pages of the C heap given back to the system after a burst (glibc's malloc_trim).

A burst of connections leaves the heap larger than what the sessions still hold: the event
lines, the frames sent to the writer and the transports' buffers of that moment are freed,
but glibc keeps the pages between the chunks still in use (sessions made during the burst),
and returns to the system only the free space at the top of its heap. Measured with 3,000
SMTP connections in an error delay, the worker kept about 2.6 KiB of freed memory per
connection (README, Performance). ``malloc_trim(0)`` releases every free page of the heap,
wherever it lies (glibc >= 2.8); it is called when the process has grown by a threshold
since the last call and its heap holds that much free, at most once per housekeeping tick,
so a steady load does not pay it.
Elsewhere than glibc (musl, macOS) it does nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
from collections.abc import Callable

#: Growth of the process (and free bytes in its heap) before they are given back.
TRIM_THRESHOLD = 1 << 20
_PAGE = os.sysconf("SC_PAGE_SIZE")


class _MallInfo2(ctypes.Structure):
    # glibc >= 2.33, malloc.h: every field a size_t.
    _fields_ = [
        (name, ctypes.c_size_t)
        for name in (
            "arena",
            "ordblks",
            "smblks",
            "hblks",
            "hblkhd",
            "usmblks",
            "fsmblks",
            "uordblks",
            "fordblks",
            "keepcost",
        )
    ]


class HeapTrimmer:
    """Call :meth:`maybe_trim` now and then (it costs a walk of the heap's free lists)."""

    __slots__ = ("_baseline", "_free_bytes", "_statm", "_trim", "threshold", "trims")

    def __init__(self, threshold: int = TRIM_THRESHOLD) -> None:
        self.threshold = threshold
        self.trims = 0
        # The resident size after the last trim (or the lowest seen since): what is compared
        # with the threshold is the growth since then. Resident, not glibc's free count:
        # trimmed chunks stay free in that count, and a burst that uses them and frees them
        # again leaves it where it was while their pages are resident once more.
        self._baseline = 0
        self._statm = "/proc/self/statm"
        self._free_bytes: Callable[[], int] | None = None
        self._trim: Callable[[int], int] | None = None
        name = ctypes.util.find_library("c")
        try:
            libc = ctypes.CDLL(name)
            trim, info = libc.malloc_trim, libc.mallinfo2
            self._resident()
        except (OSError, AttributeError, TypeError, ValueError):
            return  # not glibc (or older than 2.33), or no /proc: nothing to do
        info.restype = _MallInfo2
        info.argtypes = []
        trim.restype = ctypes.c_int
        trim.argtypes = [ctypes.c_size_t]
        self._free_bytes = lambda: int(info().fordblks)
        self._trim = trim

    @property
    def available(self) -> bool:
        return self._trim is not None

    def free_bytes(self) -> int:
        """Bytes free inside the main heap (0 where unknown)."""
        return self._free_bytes() if self._free_bytes is not None else 0

    def _resident(self) -> int:
        with open(self._statm, "rb") as f:
            return int(f.read().split()[1]) * _PAGE

    def maybe_trim(self) -> bool:
        """Give the free pages back if the process grew by ``threshold`` bytes since the last
        time and the heap holds that much free; True if it did."""
        if self._trim is None:
            return False
        resident = self._resident()
        if resident < self._baseline:
            self._baseline = resident
        if resident - self._baseline < self.threshold or self.free_bytes() < self.threshold:
            return False
        self._trim(0)
        self._baseline = self._resident()
        self.trims += 1
        return True
