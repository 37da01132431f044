"""BLAS threads inside the fits: one, whatever the process started with.

The fits solve thousands of tiny systems (4 x 4 normal equations, L-BFGS on 5 parameters); multi-threaded
BLAS only adds hand-off cost to those, and on a busy 2-core machine its spinning threads made L-BFGS-B 18x
slower. `analysis/__init__.py` defaults OPENBLAS_NUM_THREADS to 1, but only when numpy is not loaded yet (a
notebook or a training process may have loaded it first); `capped` limits the BLAS pools of the loaded
libraries for the call itself (threadpoolctl), and restores them after.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import ParamSpec, TypeVar

from threadpoolctl import ThreadpoolController

BLAS_THREADS = 1
P = ParamSpec("P")
R = TypeVar("R")
_state = threading.local()  # depth of nested capped calls in this thread: only the outermost sets the limit


@functools.cache
def _controller() -> ThreadpoolController:
    """The loaded BLAS libraries, found once (a scan costs milliseconds; a limit through it, microseconds)."""
    import numpy  # noqa: F401  (loaded before the scan, so that its BLAS is found)
    import scipy.linalg  # noqa: F401

    return ThreadpoolController()


@contextmanager
def blas_threads(limit: int = BLAS_THREADS) -> Iterator[None]:
    """BLAS pools limited to `limit` threads inside the block (nested blocks keep the outer limit)."""
    depth = getattr(_state, "depth", 0)
    _state.depth = depth + 1
    try:
        if depth:
            yield
        else:
            with _controller().limit(limits=limit, user_api="blas"):
                yield
    finally:
        _state.depth = depth


def capped(func: Callable[P, R]) -> Callable[P, R]:
    """`func` run with BLAS_THREADS BLAS threads."""

    @functools.wraps(func)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        with blas_threads():
            return func(*args, **kwargs)

    return wrapper
