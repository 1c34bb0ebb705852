"""An advisory lock on a run directory, so that two writers never mix their files.

Every process that writes into a run directory (``fit``, ``fit --overwrite``,
``fit --resume``, ``ppc``) holds an exclusive :func:`fcntl.flock` on the file
``.pyro-pots.lock`` inside it for as long as it writes. A second writer fails at once, in
one line naming the holder's pid. The kernel drops the lock when its holder exits, however
it exits (SIGKILL included), so a stale lock cannot outlive its process; the pid written
into the file is only for the message.
"""

import errno
import os
from pathlib import Path
from types import TracebackType
from typing import Optional, Type

from pyro_pots.errors import PotsInputError

try:
    import fcntl
except ImportError:  # not POSIX: no advisory locks; runs are then not protected
    fcntl = None  # type: ignore[assignment]

#: the lock file's name inside a run directory.
LOCK_FILE = ".pyro-pots.lock"


class RunLock:
    """
    The exclusive lock of one run directory; use as a ``with`` block or call
    :meth:`acquire` and :meth:`release`.

    :param folder: the run directory (it must exist; the lock file is created in it).
    :raises PotsInputError: on :meth:`acquire`, when another process holds the lock or the
        directory cannot be written.
    """

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)
        self._fd: Optional[int] = None

    def acquire(self) -> "RunLock":
        """Take the lock without waiting (a second writer is an error, not a queue)."""
        path = self.folder / LOCK_FILE
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as error:  # a read-only run, a full disk, ...
            raise PotsInputError(
                f"run directory '{self.folder}' cannot be written ({error.strerror or error})"
            ) from None
        if fcntl is not None:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as error:
                os.close(fd)
                if error.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                    raise PotsInputError(
                        f"run directory '{self.folder}' cannot be locked "
                        f"({error.strerror or error})"
                    ) from None
                raise PotsInputError(
                    f"run directory '{self.folder}' is in use by another pyro-pots process"
                    f"{_pid_note(path)}; wait for it to end, or choose another --out"
                ) from None
        try:  # the holder's pid, for the message a second writer gets
            os.ftruncate(fd, 0)
            os.write(fd, f"{os.getpid()}\n".encode())
        except OSError:  # the lock holds without the note
            pass
        self._fd = fd
        return self

    def release(self) -> None:
        """Drop the lock (closing the file drops it); the lock file stays, so that a
        process waiting on the same inode never locks a file that was unlinked."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    @property
    def held(self) -> bool:
        """Whether this object holds the lock now."""
        return self._fd is not None

    def __enter__(self) -> "RunLock":
        return self.acquire()

    def __exit__(
        self,
        kind: Optional[Type[BaseException]],
        value: Optional[BaseException],
        traceback: Optional[TracebackType],
    ) -> None:
        self.release()


def holder(folder: Path) -> Optional[str]:
    """Whether another process holds ``folder``'s lock now: its pid as text ("" when the
    file does not say), or None when nobody does. Creates nothing."""
    path = Path(folder) / LOCK_FILE
    if fcntl is None:
        return None
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # no lock file: nobody ever locked it
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except OSError:
        return _pid_of(path)
    finally:
        os.close(fd)  # also drops the shared lock just taken
    return None


def _pid_of(path: Path) -> str:
    try:
        text = path.read_text(errors="replace").strip()
    except OSError:
        return ""
    return text if text.isdigit() else ""


def _pid_note(path: Path) -> str:
    pid = _pid_of(path)
    return f" (pid {pid})" if pid else ""
