"""One process at a time per output directory: an OS lock that dies with its process.

`hold_directory(path, flag)` takes `fcntl.flock` on `<path>/<name>` for as long as the `with`
block runs. The kernel drops the lock when the process ends however it ends (kill -9 included),
so a stale lock cannot exist; the file only records the holder's pid for the message a second
process prints. Forked children (worker pools) close their inherited copy of the descriptor, so a
lingering child never keeps a directory locked. Standard library only: `tfrecord_tools` and
`efficientnet` both use it.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os

_HELD: dict[int, str] = {}  # descriptor -> directory, for the fork hook


def _close_in_child() -> None:
    for descriptor in list(_HELD):
        with contextlib.suppress(OSError):
            os.close(descriptor)
    _HELD.clear()


os.register_at_fork(after_in_child=_close_in_child)


class DirectoryBusy(RuntimeError):
    """Another live process holds the directory; the message names it and the holder's pid."""


def _holder(path: str) -> str:
    try:
        with open(path) as handle:
            pid = handle.read().strip()
    except OSError:
        pid = ""
    return f"pid {pid}" if pid.isdigit() else "an unknown pid"


@contextlib.contextmanager
def hold_directory(directory: str, flag: str, name: str = ".lock"):
    """Within: this process alone writes into `directory` (created if missing).

    Raises DirectoryBusy at once (never waits) when another process holds it; `flag` names the
    directory in the message (e.g. "--model_dir").
    """
    os.makedirs(directory, exist_ok=True)
    path = os.path.join(directory, name)
    descriptor = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as error:
        os.close(descriptor)
        if error.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
            raise
        raise DirectoryBusy(
            f"{flag} {directory} is in use by another process ({_holder(path)}): wait for it "
            "to finish, or use another directory") from None
    _HELD[descriptor] = directory
    try:
        with contextlib.suppress(OSError):  # the pid is for messages only (a full disk is fine)
            os.ftruncate(descriptor, 0)
            os.pwrite(descriptor, f"{os.getpid()}\n".encode(), 0)
        yield path
    finally:
        _HELD.pop(descriptor, None)
        os.close(descriptor)  # releases the lock; the file stays (removing it would race)
