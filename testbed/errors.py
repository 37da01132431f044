"""The one error type the command line turns into a one-line message and exit code 2."""


class TestbedError(Exception):
    """Bad input or an impossible request: the message names the file, key and value."""

    __test__ = False  # not a pytest test class despite the name


def one_line(exc: BaseException) -> str:
    """An exception as one line for a record or a log: its type and the first line of its message."""
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__
