"""Garbage-collector settings for the processes calibviz starts itself (the ``calibviz``
command and its pool workers); a library user's own process is left as it is.

A run imports about a million long-lived objects (NumPy, Numba, pandas, nibabel) and
allocates few reference cycles. With Python's default thresholds each full collection walks
all of them again for nothing (0.4 s of an 8-case run, in three collections), and the
interpreter's last collection at exit walks them once more (0.5-0.8 s per process).
"""

from __future__ import annotations

import atexit
import gc

#: Full collections 10 times less often than Python's default (700, 10, 10); the young
#: generations are collected as usual, so cycles of short-lived objects still go at once.
GC_THRESHOLDS = (700, 10, 100)


def tune_this_process() -> None:
    """Apply :data:`GC_THRESHOLDS` and freeze every object at exit (the final collection then
    has nothing to walk; exit handlers registered earlier still run first)."""
    gc.set_threshold(*GC_THRESHOLDS)
    atexit.register(gc.freeze)
