"""The one user-facing exception type, and one-line descriptions of the OS errors users meet."""

import errno
import re


class VweError(Exception):
    """A problem the user can fix: the message names the file or key and what to do.

    The CLI prints it as one line and exits with a non-zero code; programming errors stay
    ordinary exceptions.
    """


_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


def one_line(text: str) -> str:
    """A message as one plain line: no ANSI colour codes, no line breaks."""
    return " ".join(_ANSI.sub("", text).split())


def describe_os_error(err: OSError, command: str) -> str:
    """What a user does about an OS error, naming the path; the atomic writes left no part."""
    where = f" ({err.filename})" if err.filename else ""
    advice = {
        errno.ENOSPC: "no space left on the device{where}: free space or set run_dir to another "
                      "disk, then rerun (finished files are kept, nothing half-written)",
        errno.EDQUOT: "disk quota exceeded{where}: free space or set run_dir to another disk",
        errno.EACCES: "permission denied{where}: fix its permissions or choose another run_dir",
        errno.EPERM: "operation not permitted{where}: fix its permissions or choose another "
                     "run_dir",
        errno.EROFS: "read-only file system{where}: set run_dir (or the output key) to a "
                     "writable folder",
        errno.EMFILE: "too many open files: raise `ulimit -n` or lower data.num_workers and the "
                      "*.workers keys",
        errno.ENFILE: "too many open files on this system: lower data.num_workers and the "
                      "*.workers keys",
        errno.ENOMEM: "out of memory in vwe {command}: lower the batch size, the crop size or "
                      "the number of scales",
    }.get(err.errno)
    if advice is None:
        return f"{err.strerror or err}{where}"
    return advice.format(where=where, command=command)


def describe_memory_error(command: str) -> str:
    return (f"out of memory in vwe {command}: lower the batch size, the crop size or the "
            "number of scales (or the worker counts)")
