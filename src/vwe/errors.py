"""The one user-facing exception type."""


class VweError(Exception):
    """A problem the user can fix: the message names the file or key and what to do.

    The CLI prints it as one line and exits with a non-zero code; programming errors stay
    ordinary exceptions.
    """
