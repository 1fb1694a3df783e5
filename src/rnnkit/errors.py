"""Errors that describe a problem with the user's input rather than a bug in rnnkit.

The command line prints these as a single line and exits with a nonzero status; everything else
is a bug and keeps its traceback.
"""


class RnnkitError(Exception):
    """A problem the user can fix: bad data, a bad checkpoint, an invalid option."""


class DataError(RnnkitError):
    """Training or evaluation text that cannot be used (empty, binary, not UTF-8, too short)."""


class CheckpointError(RnnkitError):
    """A run directory or checkpoint that is missing, truncated or not in rnnkit's format."""
