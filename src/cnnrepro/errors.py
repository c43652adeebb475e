"""The one exception type the command line turns into a one-line message."""


class CnnreproError(Exception):
    """A failure the user can act on: bad params, bad input file, missing weights, failed download.

    The message must fit on one line and name the file, key or source at fault.
    """


class ParamsError(CnnreproError):
    """params.yaml is invalid; the message names the key."""
