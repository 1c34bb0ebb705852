"""
How a fit stops: a first SIGINT or SIGTERM is deferred to the end of the epoch (its
checkpoint saved), a second one stops at once; and what the run directory keeps in each case
(the swap that puts a stopped run in place, the one line that says where to go on).
"""

import contextlib
import signal
import sys
import threading
from pathlib import Path
from typing import Any, Dict, Iterator

from pyro_pots import run_dir
from pyro_pots.errors import FitInterrupted
from pyro_pots.storage import RunStaging
from pyro_pots.training import distributed

#: the signals a fit stops on at the end of an epoch: Ctrl-C, and what job schedulers send.
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class StoppedAgain(KeyboardInterrupt):
    """A second stop signal: the fit stops at once (a KeyboardInterrupt, so that no
    ``except Exception`` on the way swallows it)."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


@contextlib.contextmanager
def deferred_signals() -> Iterator[Dict[str, Any]]:
    """While fitting, a first SIGINT or SIGTERM only records itself; the loop reads it at
    the end of the epoch (so the checkpoint is of a whole epoch). A second one stops at once
    (:class:`StoppedAgain`), except inside a block marked ``critical`` (the swap that puts
    a run in place), which always runs to its end. Signals can only be caught on the main
    thread; elsewhere they are left alone."""
    flag: Dict[str, Any] = {"signum": None, "critical": False}
    if threading.current_thread() is not threading.main_thread():
        yield flag
        return

    def handler(signum, frame):
        if flag["signum"] is not None and not flag["critical"]:
            raise StoppedAgain(signum)
        flag["signum"] = flag["signum"] or signum

    previous = {signum: signal.signal(signum, handler) for signum in STOP_SIGNALS}
    try:
        yield flag
    finally:
        for signum, old in previous.items():
            signal.signal(signum, old)


def signal_name(signum: int) -> str:
    return signal.Signals(signum).name


def put_in_place(staging: RunStaging, signals: Dict[str, Any]) -> None:
    """The swap that puts a new run in place, shielded from a second signal."""
    signals["critical"] = True
    try:
        note = staging.commit()
    finally:
        signals["critical"] = False
    if note:
        print(f"pyro-pots: {note}", file=sys.stderr)


def stopped_again(
    stop: StoppedAgain,
    out: Path,
    staging: RunStaging,
    signals: Dict[str, Any],
    state: Dict[str, Any],
) -> FitInterrupted:
    """A second signal stopped the fit mid-epoch: keep the last checkpoint if there is one
    (it resumes exactly), else remove what the fit wrote; the line that says which."""
    name = signal_name(stop.signum)
    during = f"{name} again during epoch {state['epoch'] + 1}"
    main = distributed.is_main()
    if not staging.opened:
        return FitInterrupted(f"interrupted ({during}); nothing was written", stop.signum)
    if (staging.work / run_dir.CHECKPOINT).is_file():
        if main:
            put_in_place(staging, signals)
        epoch = state["saved_epoch"]
        saved = f"of epoch {epoch} " if epoch is not None else ""
        return FitInterrupted(
            f"interrupted ({during}); the checkpoint {saved}in '{out}' is kept: go on with "
            f"`pyro-pots fit --out {out} --resume`",
            stop.signum,
        )
    replacing = staging.replacing
    if main:
        staging.discard(keep_resumable=False)
    kept = f"'{out}' still holds the previous run" if replacing else "nothing was kept"
    return FitInterrupted(
        f"interrupted ({during}) before the first checkpoint; {kept}", stop.signum
    )


def interruption(signals: Dict[str, Any], when: str, out: Path) -> FitInterrupted:
    signum = signals["signum"] or signal.SIGINT
    return FitInterrupted(
        f"interrupted {when} ({signal_name(signum)}); the checkpoint in '{out}' is saved: "
        f"go on with `pyro-pots fit --out {out} --resume`",
        signum,
    )
