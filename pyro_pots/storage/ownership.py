"""Which files in a run directory pyro-pots wrote, and removing exactly those.

A directory is a run when it holds the marker file ``run.json`` with its format tag (every
run since issue 16), or, for older runs, a ``config.yaml`` with the header pyro-pots writes
next to a ``checkpoint.pt``. ``--overwrite`` replaces a run only when every entry in it is
one pyro-pots writes (:data:`OWN_FILES`, and ``plots/`` holding only ``.png`` figures); a
user's file or folder anywhere in it makes the whole directory off limits, so a user's
tree is never removed, whatever its name or content.
"""

import json
from pathlib import Path
from typing import List

from pyro_pots import run_dir
from pyro_pots.errors import PotsInputError
from pyro_pots.storage.lock import LOCK_FILE

#: the files pyro-pots writes at the top of a run directory (ppc.json by ``ppc``,
#: samples.npz by ``sample`` without ``--out``, data.npy by ``PotsMixture.save``: the
#: fitted rows, the run's data).
OWN_FILES = frozenset(
    {
        run_dir.CONFIG,
        run_dir.CHECKPOINT,
        run_dir.CHECKPOINT + ".tmp",
        run_dir.HISTORY,
        run_dir.STAGES,
        run_dir.ASSIGNMENTS,
        run_dir.SUMMARY,
        run_dir.RUN_MARKER,
        run_dir.RUN_MARKER + ".tmp",
        LOCK_FILE,
        "ppc.json",
        "samples.npz",
        run_dir.DATA,
    }
)
#: the header :func:`~pyro_pots.config.save_config` writes (marks runs older than run.json).
_CONFIG_HEADER = "# pyro-pots config"
#: entries named in a refusal at most (a project root has many).
_NAMED = 3


def is_marked(folder: Path) -> bool:
    """Whether ``folder`` carries pyro-pots' run marker (see the module docstring)."""
    marker = folder / run_dir.RUN_MARKER
    try:
        if marker.is_file() and marker.stat().st_size < 1 << 20:
            tag = json.loads(marker.read_text(encoding="utf-8")).get(run_dir.RUN_TAG)
            return tag is not None
    except (OSError, ValueError, AttributeError):  # unreadable, not JSON, not a mapping
        return False
    config = folder / run_dir.CONFIG
    try:
        with open(config, encoding="utf-8", errors="replace") as handle:
            header = handle.readline(len(_CONFIG_HEADER) + 1).strip()
    except OSError:
        return False
    return header == _CONFIG_HEADER and (folder / run_dir.CHECKPOINT).is_file()


def foreign_entries(folder: Path) -> List[str]:
    """The entries of ``folder`` that pyro-pots did not write (paths relative to it):
    anything not in :data:`OWN_FILES`, a non-regular file under an own name (a symlink, a
    folder), and anything in ``plots/`` but ``.png`` files."""
    foreign = []
    for entry in sorted(folder.iterdir()):
        if entry.name == run_dir.PLOTS and entry.is_dir() and not entry.is_symlink():
            foreign += [
                f"{run_dir.PLOTS}/{p.name}"
                for p in sorted(entry.iterdir())
                if p.suffix != ".png" or p.is_symlink() or not p.is_file()
            ]
        elif entry.name not in OWN_FILES or entry.is_symlink() or not entry.is_file():
            foreign.append(entry.name)
    return foreign


def check_replaceable(folder: Path) -> None:
    """Refuse, in one line, to replace ``folder`` unless it is a run holding only files
    pyro-pots wrote.

    :raises PotsInputError: naming the first foreign entries, or the missing marker.
    """
    foreign = foreign_entries(folder)
    if foreign:
        named = ", ".join(repr(name) for name in foreign[:_NAMED])
        more = f" and {len(foreign) - _NAMED} more" if len(foreign) > _NAMED else ""
        raise PotsInputError(
            f"refusing to overwrite '{folder}': it is not a pyro-pots run (it holds "
            f"{named}{more}, which pyro-pots did not write; --overwrite replaces only a "
            "run directory's own files); choose another --out"
        )
    if not is_marked(folder):
        raise PotsInputError(
            f"refusing to overwrite '{folder}': it is not a pyro-pots run (no "
            f"{run_dir.RUN_MARKER}); choose another --out"
        )


def remove_own_files(folder: Path) -> List[str]:
    """Remove the files pyro-pots wrote in ``folder``, then ``folder`` itself if that left
    it empty; what was left (the foreign entries), which is never touched."""
    if not folder.is_dir() or folder.is_symlink():
        return []
    for entry in folder.iterdir():
        if entry.name == run_dir.PLOTS and entry.is_dir() and not entry.is_symlink():
            for figure in entry.iterdir():
                if figure.suffix == ".png" and figure.is_file() and not figure.is_symlink():
                    figure.unlink(missing_ok=True)
            _rmdir_if_empty(entry)
        elif entry.name in OWN_FILES and entry.is_file() and not entry.is_symlink():
            entry.unlink(missing_ok=True)
    left = foreign_entries(folder)
    _rmdir_if_empty(folder)
    return left


def _rmdir_if_empty(folder: Path) -> None:
    try:
        folder.rmdir()
    except OSError:  # not empty (a foreign entry), or gone already
        pass
