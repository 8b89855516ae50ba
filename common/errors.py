"""The one exception type for bad input: its message is shown to the user as one line."""


class UserError(Exception):
    """A problem the user can fix; the message names the problem and the fix."""

    exit_code = 2  # the command's exit status, as argparse's for a bad flag


class DataError(UserError):
    """A missing, truncated, corrupt or mismatched data file."""


class InputTooSmallError(UserError, ValueError):
    """An input side too small for AlexNet's stack of strided layers."""
