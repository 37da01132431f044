"""SIGTERM as a request to checkpoint and stop (exit 75), honoured from the first moment of a process.

The handler only sets a flag; the training loop reads it between steps, checkpoints and raises Preempted.
Installed before the slow imports and setup, so a signal that arrives there too ends in a clean stop.
"""

from __future__ import annotations

import contextlib
import signal
import threading

_requested = threading.Event()


class Preempted(RuntimeError):
    """SIGTERM arrived: the state was checkpointed and the run can resume (exit code 75)."""


def _handler(signum, frame) -> None:
    _requested.set()


def install():
    """Route SIGTERM to the flag; returns the previous handler (None off the main thread, where it can't)."""
    if threading.current_thread() is not threading.main_thread():
        return None
    return signal.signal(signal.SIGTERM, _handler)


def requested() -> bool:
    return _requested.is_set()


@contextlib.contextmanager
def handling():
    """SIGTERM sets the flag inside the block; afterwards the flag is cleared (it has been acted on) and the
    previous handler is back."""
    previous = install()
    try:
        yield
    finally:
        _requested.clear()
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
