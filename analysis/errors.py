"""The one error type of the analysis package."""


class AnalysisError(Exception):
    """Bad input or an impossible request; the message names what is wrong and where.

    The command line turns it into one line on stderr and exit code 2.
    """
