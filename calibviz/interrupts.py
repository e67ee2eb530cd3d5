"""Ctrl-C and the processes calibviz starts: only the process the user started handles it.

A terminal's Ctrl-C goes to every process of the foreground group, so a worker process that
is still importing (1-2 s after it is spawned) would print a ``KeyboardInterrupt`` traceback
of its own. Workers are therefore started with Ctrl-C blocked (:func:`starting_children`:
the signal mask is inherited through ``fork`` and ``exec``) and, once running, ignore it and
unblock it (:func:`leave_ctrl_c_to_parent`: a Ctrl-C pending in the worker is discarded).
The starting process receives its own Ctrl-C as soon as the block ends; none is lost.
"""

from __future__ import annotations

import signal
from contextlib import contextmanager

_CAN_BLOCK = hasattr(signal, "pthread_sigmask")


@contextmanager
def starting_children():
    """Inside the block, processes started by this thread begin with Ctrl-C (SIGINT)
    blocked; this thread gets a Ctrl-C pressed meanwhile when the block ends."""
    if not _CAN_BLOCK:  # pragma: no cover - Windows: no signal masks
        yield
        return
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def leave_ctrl_c_to_parent() -> None:
    """In a worker process: ignore Ctrl-C from now on (the parent stops the run), dropping
    one that arrived while it started."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if _CAN_BLOCK:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
