"""Waiting in tests for something another process does (a checkpoint, a lock released, a job requeued)."""

import time


def wait_for(predicate, timeout: float, what: str):
    """Poll `predicate` until it returns something true (returned), or fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
