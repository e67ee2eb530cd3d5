"""Reading ahead: while a case's channel ``c`` is checked and binned, channel ``c + 1`` is
already being read in a thread (decoding ``.gz``/``.npz`` and the Numba kernel release the
GIL, so the two overlap on separate cores).

:class:`ReadAhead` wraps any :class:`~calibviz.io.source.Source`; it hands out the same arrays
in the same order, raises the same errors (when the channel is asked for, not when it was
read ahead), and never touches the wrapped source from two threads at once. Channel 0 is
read from the start, while the case's label is read and its headers checked.
"""

from __future__ import annotations

import threading

import numpy as np

from .source import Source


class _Read(threading.Thread):
    """One channel read in a daemon thread (a Ctrl-C never waits for it)."""

    def __init__(self, source: Source, c: int) -> None:
        super().__init__(name=f"calibviz-read-{c}", daemon=True)
        self.source, self.c = source, c
        self.data: np.ndarray | None = None
        self.error: BaseException | None = None
        self.start()

    def run(self) -> None:
        try:
            self.data = self.source.channel(self.c)
        except BaseException as error:  # handed to the caller with the channel
            self.error = error
        finally:
            self.source = None

    def result(self) -> np.ndarray:
        self.join()
        if self.error is not None:
            error, self.error = self.error, None
            raise error
        data, self.data = self.data, None
        return data


class ReadAhead:
    """``source`` with channel ``c + 1`` read in a thread as channel ``c`` is handed out, and
    channel 0 as soon as it is opened.

    Every attribute but :meth:`channel` and :meth:`close` is the wrapped source's. At most one
    read is in flight (one channel of memory more); asking for another channel than the one
    read ahead waits for that read, drops it and reads the channel asked for.
    """

    def __init__(self, source: Source) -> None:
        self.inner = source
        # channel 0 first: read while the label is read and the case is checked
        self._ahead: _Read | None = _Read(source, 0) if source.n_channels else None

    def __getattr__(self, name: str):
        if name == "inner":  # not set yet (copy, pickle): no endless lookup
            raise AttributeError(name)
        return getattr(self.inner, name)

    def channel(self, c: int) -> np.ndarray:
        ahead, self._ahead = self._ahead, None
        if ahead is not None and ahead.c == c:
            data = ahead.result()
        else:
            if ahead is not None:
                ahead.join()  # the source is free again; its channel is not wanted
            data = self.inner.channel(c)
        if c + 1 < self.inner.n_channels:
            self._ahead = _Read(self.inner, c + 1)
        return data

    def close(self) -> None:
        ahead, self._ahead = self._ahead, None
        if ahead is not None:
            ahead.join()  # never close a file a read is using
        self.inner.close()
