"""Ctrl-C and worker processes: a worker starts with Ctrl-C blocked (so one pressed while it
imports prints no traceback of its own) and then ignores it; the parent loses none."""

from __future__ import annotations

import os
import signal
import sys
import threading
from multiprocessing import get_context

import pytest

from calibviz.interrupts import leave_ctrl_c_to_parent, starting_children

pytestmark = pytest.mark.skipif(not hasattr(signal, "pthread_sigmask"),
                                reason="no signal masks on this platform")


def _report_start(queue) -> None:
    """In the child: was Ctrl-C blocked at its start; is it ignored and unblocked after?"""
    blocked = signal.SIGINT in signal.pthread_sigmask(signal.SIG_BLOCK, set())
    os.kill(os.getpid(), signal.SIGINT)  # pending while blocked: never raised here
    leave_ctrl_c_to_parent()  # discards it
    os.kill(os.getpid(), signal.SIGINT)  # ignored
    queue.put((blocked, signal.getsignal(signal.SIGINT) == signal.SIG_IGN,
               signal.SIGINT in signal.pthread_sigmask(signal.SIG_BLOCK, set())))


def test_children_start_deaf_to_ctrl_c_and_then_ignore_it():
    context = get_context("spawn")
    queue = context.Queue()
    process = context.Process(target=_report_start, args=(queue,))
    with starting_children():
        process.start()
    assert queue.get(timeout=120) == (True, True, False)
    process.join(timeout=60)
    assert process.exitcode == 0  # no KeyboardInterrupt in the child


def test_the_parent_gets_a_ctrl_c_pressed_while_it_starts_children():
    handled = []
    old = signal.signal(signal.SIGINT, lambda *_: handled.append(True))
    try:
        with starting_children():
            signal.pthread_kill(threading.get_ident(), signal.SIGINT)  # at this thread
            assert not handled  # blocked meanwhile
        for _ in range(100):  # delivered when the block ends
            if handled:
                break
            sys.getrecursionlimit()  # a bytecode boundary for the handler to run
        assert handled
        assert signal.SIGINT not in signal.pthread_sigmask(signal.SIG_BLOCK, set())
    finally:
        signal.signal(signal.SIGINT, old)
