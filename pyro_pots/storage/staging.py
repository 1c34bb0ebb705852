"""Where a fit writes, and how its run takes the place of ``--out``.

- A new fit into a missing or empty ``--out`` writes there directly (nothing to protect,
  and a run killed by SIGKILL stays resumable with ``--resume``). If it fails before it
  could be resumed, the files it wrote are removed again.
- A new fit with ``--overwrite`` over an existing run writes into a temporary sibling,
  ``.NAME.tmp-PID`` in the same parent, and swaps it with the old run only when it ends
  well (finished, or interrupted with its checkpoint saved): one ``renameat2`` exchange
  where the OS offers it, else two renames. The old run's own files are then removed. If
  the fit fails or is killed, the old run is left as it was; a temporary sibling left by a
  killed fit is removed by the next fit into the same ``--out``.
- ``--resume`` writes in place.

The target (and the temporary sibling) stays locked (:class:`~pyro_pots.storage.lock.RunLock`)
for the whole fit. Only the process that writes (rank 0 under torchrun) creates a staging.
"""

import ctypes
import ctypes.util
import errno
import os
import sys
from pathlib import Path
from typing import List, Optional

from pyro_pots import run_dir
from pyro_pots.errors import PotsInputError
from pyro_pots.storage.lock import LOCK_FILE, RunLock, holder
from pyro_pots.storage.ownership import check_replaceable, remove_own_files

_TEMP_INFIX = ".tmp-"


def temp_sibling(out: Path, pid: Optional[int] = None) -> Path:
    """The temporary sibling a new fit over ``out`` writes into."""
    return out.parent / f".{out.name}{_TEMP_INFIX}{os.getpid() if pid is None else pid}"


class RunStaging:
    """
    The directory one fit writes into, locked from :meth:`open` to :meth:`close`.

    :param out: the run directory asked for (``--out``).
    :param bool resume: continue the run in ``out`` in place.
    :param bool overwrite: a new run may replace an existing run in ``out``.
    """

    def __init__(self, out: Path, resume: bool = False, overwrite: bool = False) -> None:
        self.out = Path(out)
        self.resume = resume
        self.overwrite = overwrite
        self.work = self.out
        self.replacing = False  # writing into a temporary sibling of an existing run
        self._created = False  # this fit created ``out``
        self.opened = False  # open() succeeded: what it made is this staging's to remove
        self._locks: List[RunLock] = []

    def open(self) -> Path:
        """Check the target, take the locks and create the directory to write into.

        :returns: the directory to write into (``out``, or its temporary sibling).
        :raises PotsInputError: in one line: the target is a file, holds another run
            without ``overwrite``, holds files pyro-pots did not write, is in use, or
            cannot be created.
        """
        try:
            self.work = self._open()
            self.opened = True
            return self.work
        except PotsInputError:
            self.close()
            raise
        except (OSError, ValueError) as error:  # a name too long, a path through a file, NUL
            self.close()
            reason = error.strerror if isinstance(error, OSError) and error.strerror else error
            raise PotsInputError(
                f"run directory '{self.out}': cannot be created ({reason})"
            ) from None

    def _open(self) -> Path:
        out = self.out
        if self.resume:
            if not out.is_dir():
                raise PotsInputError(
                    f"run directory '{out}' does not exist: no checkpoint to resume"
                )
            self._lock(out)
            return out
        if out.exists() and not out.is_dir():
            raise PotsInputError(f"run directory '{out}' is a file; choose another output.dir")
        if out.is_dir() and _entries(out):  # checked before locking: leave a user's dir alone
            self._check_replaceable()
        if not out.is_dir():
            out.mkdir(parents=True)
            self._created = True
        self._lock(out)
        if _entries(out):  # again under the lock: it may have changed meanwhile
            self._check_replaceable()
            self._remove_stale_temps()
            self.work = temp_sibling(Path(os.path.abspath(out)))
            if self.work.exists():  # a dead process of the same pid left it
                remove_own_files(self.work)
            self.work.mkdir()
            self.replacing = True
            self._lock(self.work)
        (self.work / run_dir.PLOTS).mkdir(exist_ok=True)
        return self.work

    def _check_replaceable(self) -> None:
        if not self.overwrite:
            raise PotsInputError(
                f"run directory '{self.out}' exists and is not empty; pass --overwrite "
                "(output.overwrite=true), --resume, or choose another --out"
            )
        if Path(os.path.abspath(self.out)).parent == Path(os.path.abspath(self.out)):
            raise PotsInputError("refusing to overwrite the file system's root")
        check_replaceable(self.out)

    def _lock(self, folder: Path) -> None:
        self._locks.append(RunLock(folder).acquire())

    def _remove_stale_temps(self) -> None:
        """Temporary siblings of ``out`` that no live process holds: left by a killed fit."""
        absolute = Path(os.path.abspath(self.out))
        for path in absolute.parent.glob(f".{_glob_escape(absolute.name)}{_TEMP_INFIX}*"):
            suffix = path.name.rpartition(_TEMP_INFIX)[2]
            if suffix.isdigit() and path.is_dir() and not path.is_symlink():
                if holder(path) is None:
                    remove_own_files(path)

    def commit(self) -> Optional[str]:
        """Put the run in place: swap a temporary sibling with the old run and remove the
        old run's own files. A one-line note when some of the old run's entries were not
        pyro-pots' (they appeared during the fit) and so were kept; else None."""
        if not self.replacing:
            return None
        _exchange(self.work, Path(os.path.abspath(self.out)))
        left = remove_own_files(self.work)  # the old run now sits at the sibling's path
        self.replacing = False
        if left:
            return (
                f"the previous run's entries that pyro-pots did not write were kept in "
                f"'{self.work}'"
            )
        return None

    def discard(self, keep_resumable: bool) -> None:
        """After a failed fit: remove what it wrote. A new fit into ``out`` itself keeps its
        files when ``keep_resumable`` (a checkpoint that ``--resume`` can go on from); a
        resumed run keeps everything."""
        if self.resume:
            return
        if self.replacing:
            remove_own_files(self.work)
            self.replacing = False
        elif not keep_resumable:
            remove_own_files(self.out)
            if not self._created:  # the user's empty folder stays
                self.out.mkdir(exist_ok=True)

    def close(self) -> None:
        """Release the locks."""
        for lock in reversed(self._locks):
            lock.release()
        self._locks = []


def _entries(folder: Path) -> List[str]:
    """A directory's entries other than the lock file."""
    return [entry.name for entry in folder.iterdir() if entry.name != LOCK_FILE]


def _glob_escape(name: str) -> str:
    return "".join(f"[{c}]" if c in "*?[" else c for c in name)


def _exchange(new: Path, old: Path) -> None:
    """Swap two directories' names: atomically with Linux's ``renameat2(RENAME_EXCHANGE)``,
    else by two renames (``old`` is missing for a moment between them)."""
    if _renameat2_exchange(new, old):
        return
    aside = new.with_name(new.name + ".old")
    os.rename(old, aside)
    try:
        os.rename(new, old)
    except OSError:
        os.rename(aside, old)  # put the old run back before giving up
        raise
    os.rename(aside, new)


_AT_FDCWD = -100
_RENAME_EXCHANGE = 2


def _renameat2_exchange(a: Path, b: Path) -> bool:
    """Whether ``renameat2`` swapped ``a`` and ``b`` (False where it is not offered)."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):  # no glibc 2.28+
        return False
    result = renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE)
    if result == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.ENOSYS, errno.EINVAL, errno.ENOTSUP, errno.EOPNOTSUPP):
        return False  # an older kernel or a file system without it
    raise OSError(code, os.strerror(code), str(b))
