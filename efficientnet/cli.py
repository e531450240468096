"""The error boundary of every `python -m efficientnet...` command.

An anticipated failure ends with one line on stderr, `error: <what, naming the file, flag or
shard> <what to do>`, and exit status 2 for bad input (a flag, a file, a directory the user
chose) or 1 for a failure at run time (a full disk, a corrupt record met while training, out of
memory). `--verbose` (or EFFICIENTNET_VERBOSE=1) prints the traceback above that line.
Unexpected errors, bugs included, keep their full traceback.
"""

from __future__ import annotations

import errno
import os
import re
import sys
import traceback
from collections.abc import Callable

EXIT_RUNTIME = 1
EXIT_BAD_INPUT = 2
VERBOSE_FLAGS = ("--verbose", "-v")
VERBOSE_ENV = "EFFICIENTNET_VERBOSE"

_DISK_FULL = (errno.ENOSPC, errno.EFBIG, errno.EDQUOT)
_NOT_WRITABLE = (errno.EACCES, errno.EPERM, errno.EROFS)


class CommandError(Exception):
    """An anticipated failure: `str(error)` is the line printed, `exit_code` the status."""

    def __init__(self, message: str, exit_code: int = EXIT_RUNTIME):
        super().__init__(message)
        self.exit_code = exit_code


def split_verbose(argv: list[str]) -> tuple[list[str], bool]:
    """(argv without --verbose, whether the traceback is wanted)."""
    verbose = os.environ.get(VERBOSE_ENV, "") not in ("", "0", "false", "False")
    kept = [arg for arg in argv if arg not in VERBOSE_FLAGS]
    return kept, verbose or len(kept) != len(argv)


def first_line(text: str) -> str:
    """The first non-empty line of a (TensorFlow) error message, without its op trailer."""
    for line in str(text).splitlines():
        line = re.sub(r"\{\{[^}]*\}\}\s*", "", line).strip()
        if line:
            line = line.split(" [[")[0].split(" [Op:")[0].strip()
            return re.sub(r"\.tempstate\d+", "", line)
    return ""


def os_error_message(error: OSError) -> tuple[str, int] | None:
    """(line, exit status) for the OSErrors a user can act on, else None."""
    name = error.filename or ""
    what = f"{name}: " if name else ""
    if error.errno is None and isinstance(error, FileNotFoundError):
        return str(error), EXIT_BAD_INPUT  # raised with a message of its own
    if error.errno in _DISK_FULL:
        return (f"{what}disk full ({error.strerror}) while writing: free space (or raise the "
                "file size limit) and re-run the same command; completed work is kept",
                EXIT_RUNTIME)
    if error.errno in _NOT_WRITABLE:
        return (f"{what}{error.strerror}: choose a directory you can write to, or fix its "
                "permissions", EXIT_BAD_INPUT)
    if isinstance(error, FileNotFoundError):
        return f"{what}no such file or directory: check the path", EXIT_BAD_INPUT
    if isinstance(error, (IsADirectoryError, NotADirectoryError, FileExistsError)):
        return f"{what}{error.strerror}: check the path (a file where a folder should be?)", \
            EXIT_BAD_INPUT
    return None


def tensorflow_error_message(error: Exception) -> tuple[str, int] | None:
    """(line, exit status) for TensorFlow runtime errors that have a plain cause."""
    tf = sys.modules.get("tensorflow")
    if tf is None or not isinstance(error, tf.errors.OpError):
        return None
    text = first_line(error.message)
    lowered = text.lower()
    if any(word in lowered for word in ("no space left", "file too large", "disk quota")):
        return (f"disk full while writing ({text}): free space and re-run the same command; "
                "completed work is kept", EXIT_RUNTIME)
    if isinstance(error, tf.errors.ResourceExhaustedError):
        return (f"out of memory ({text}): lower the batch size (--train_batch_size / "
                "--eval_batch_size / --batch_size)", EXIT_RUNTIME)
    if isinstance(error, tf.errors.DataLossError):
        return (f"corrupt or truncated data ({text}): check the input files with "
                "`python -m tfrecord_tools verify DIR`", EXIT_RUNTIME)
    if "pixels is over the limit" in text:
        return text, EXIT_RUNTIME
    return None


def describe(error: BaseException, known: dict | None = None) -> tuple[str, int] | None:
    """(one line, exit status) for an anticipated failure, None for an unexpected one.

    `known`: {exception type: exit status} of the command's own error types, whose messages are
    already written for people.
    """
    if isinstance(error, CommandError):
        return str(error), error.exit_code
    for kind, code in (known or {}).items():
        if isinstance(error, kind):
            return str(error).strip() or type(error).__name__, code
    try:
        from tfrecord_tools.locking import DirectoryBusy
    except ImportError:  # pragma: no cover - the same distribution
        DirectoryBusy = ()  # noqa: N806
    if DirectoryBusy and isinstance(error, DirectoryBusy):
        return str(error), EXIT_BAD_INPUT
    if isinstance(error, OSError):
        return os_error_message(error)
    if isinstance(error, MemoryError):
        return ("out of memory: lower the batch size (--train_batch_size / --eval_batch_size / "
                "--batch_size)", EXIT_RUNTIME)
    return tensorflow_error_message(error)


def run(main: Callable[[list[str]], int], argv: list[str] | None = None,
        known: dict | None = None) -> int:
    """Runs `main(argv)` inside the boundary; returns the exit status (see `describe`)."""
    argv, verbose = split_verbose(list(sys.argv[1:] if argv is None else argv))
    try:
        return main(argv)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as error:
        described = describe(error, known)
        if described is None:
            raise
        if verbose:
            traceback.print_exc()
        message, code = described
        print(f"error: {message}", file=sys.stderr)
        return code
