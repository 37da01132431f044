"""The one error type the command line turns into a one-line message and exit code 2."""


class TestbedError(Exception):
    """Bad input or an impossible request: the message names the file, key and value."""

    __test__ = False  # not a pytest test class despite the name
