"""
Whole fits through the CLI, each in a fresh process, for ``benchmarks/speed.py`` (issue 17):
a digits fit against the same fit at a pinned older commit (run from a temporary git
worktree), the same fit idle and beside one CPU-bound spinning process, and the peak RSS of
a fit on 60 000 x 784 rows with 20 pots open.

Each fit is ``python -m pyro_pots fit --data SPEC --out DIR --quiet --set ...`` with
``PYTHONPATH`` pointing at the tree whose code runs (this checkout or the worktree) and the
working directory a temporary folder (``-m`` puts the working directory first on
``sys.path``); the module's path is checked before any timing. ``train.threads`` and
``OMP_NUM_THREADS``/``MKL_NUM_THREADS`` carry the thread count. Wall time is the
subprocess's (imports and the run's outputs included); peak RSS is the child's
``ru_maxrss`` as ``os.wait4`` reports it for that one process (the same number
``resource.getrusage(RUSAGE_CHILDREN)`` would give around a fresh process).
"""

import contextlib
import csv
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Sequence

REPO = Path(__file__).resolve().parents[1]
#: the pinned older commit of issue 17's first row (main before the speed work)
PINNED_COMMIT = "0c7f2d4"
#: issue 17's bound on the peak RSS of a fit at 60 000 x 784 with 20 pots (decimal GB)
RSS_LIMIT_BYTES = 1.5e9


def _env(tree: Path, threads: int) -> Dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(tree)
    for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        env[name] = str(threads)
    return env


def check_tree(tree: Path, workdir: Path) -> str:
    """The ``pyro_pots/__init__.py`` a child process with this tree imports; raise unless it
    is the tree's own (an editable install or the working directory could shadow it)."""
    found = subprocess.run(
        [sys.executable, "-c", "import pyro_pots; print(pyro_pots.__file__)"],
        cwd=workdir,
        env=_env(tree, 1),
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    if Path(found).resolve() != (tree / "pyro_pots" / "__init__.py").resolve():
        raise RuntimeError(f"a child process with PYTHONPATH={tree} imports {found}")
    return found


def cli_fit(
    tree: Path,
    data: str,
    sets: Sequence[str],
    threads: int,
    workdir: Path,
    name: str,
    ranks: int = 1,
) -> Dict:
    """One ``pyro_pots fit`` of ``tree``'s code in a fresh process (with ``ranks > 1``, that
    many under ``torchrun --standalone``), into ``workdir/name``: its wall seconds, peak RSS
    (bytes; the launcher's under torchrun) and what ``summary.json`` says (pots, ARI,
    epochs)."""
    out = workdir / name
    launcher = ["-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={ranks}"]
    command = [sys.executable, *(launcher if ranks > 1 else [])]
    command += ["-m", "pyro_pots", "fit", "--data", data, "--out", str(out)]
    command += ["--quiet", "--set", f"train.threads={threads}"]
    for item in sets:
        command += ["--set", item]
    log = workdir / f"{name}.log"
    with open(log, "w") as stream:
        start = time.perf_counter()
        child = subprocess.Popen(
            command, cwd=workdir, env=_env(tree, threads), stdout=stream, stderr=stream
        )
        try:
            _, status, usage = os.wait4(child.pid, 0)
        except BaseException:
            child.kill()
            child.wait()
            raise
        seconds = time.perf_counter() - start
        child.returncode = os.waitstatus_to_exitcode(status)  # reaped: keep Popen quiet
    if child.returncode != 0:
        tail = log.read_text()[-2000:]
        raise RuntimeError(f"{' '.join(command)} failed ({child.returncode}):\n{tail}")
    summary = json.loads((out / "summary.json").read_text())
    return {
        "seconds": seconds,
        "max_rss_bytes": usage.ru_maxrss * 1024,  # Linux: kilobytes
        "n_active": summary.get("n_active"),
        "ari": ari_of(summary, out, data),
        "epochs": summary.get("epochs"),
        "time_s": summary.get("time_s"),
    }


def ari_of(summary: Dict, out: Path, data: str) -> Optional[float]:
    """The run's ARI: ``summary.json``'s ``clustering.ari``, else its ``assignments.csv``
    against the digits labels (None for other data without it)."""
    ari = (summary.get("clustering") or {}).get("ari")
    if ari is not None or data != "digits":
        return ari
    from sklearn.datasets import load_digits
    from sklearn.metrics import adjusted_rand_score

    with open(out / "assignments.csv", newline="") as stream:
        rows = list(csv.DictReader(stream))
    labels = load_digits().target
    return float(
        adjusted_rand_score([labels[int(r["row"])] for r in rows], [int(r["pot"]) for r in rows])
    )


@contextlib.contextmanager
def pinned_worktree(commit: str, folder: Path) -> Iterator[Path]:
    """``commit`` checked out (detached) in a git worktree under ``folder``; removed
    afterwards, on error too."""
    tree = folder / f"pinned-{commit}"
    subprocess.run(
        ["git", "-C", str(REPO), "worktree", "add", "--detach", str(tree), commit],
        check=True,
        capture_output=True,
    )
    try:
        yield tree
    finally:
        subprocess.run(
            ["git", "-C", str(REPO), "worktree", "remove", "--force", str(tree)],
            capture_output=True,
        )
        subprocess.run(["git", "-C", str(REPO), "worktree", "prune"], capture_output=True)


@contextlib.contextmanager
def spinning() -> Iterator[subprocess.Popen]:
    """One CPU-bound process (``while True: pass``) beside the block; killed afterwards, on
    error too."""
    spinner = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(0.5)  # running before the fit starts
        yield spinner
    finally:
        spinner.kill()
        spinner.wait()


def _median(fits: List[Dict], key: str) -> float:
    return statistics.median(f[key] for f in fits)


def pinned_fits(
    data: str, threads: int, repeats: int, sets: Sequence[str], commit: str = PINNED_COMMIT
) -> Dict:
    """The fit of today's code (this checkout) against the same fit at ``commit``, the same
    ``threads`` for both, alternating which runs first, after an untimed one-epoch fit of
    each (bytecode, caches); medians over ``repeats``."""
    runs: Dict[str, List[Dict]] = {"today": [], "pinned": []}
    with tempfile.TemporaryDirectory(prefix="speed-pinned-") as tmp:
        folder = Path(tmp)
        with pinned_worktree(commit, folder) as worktree:
            trees = {"today": REPO, "pinned": worktree}
            modules = {side: check_tree(tree, folder) for side, tree in trees.items()}
            for side, tree in trees.items():
                warm = [*sets, "train.max_epochs=1"]
                cli_fit(tree, data, warm, threads, folder, f"warm-{side}")
            for repeat in range(repeats):
                for side in list(runs)[:: 1 if repeat % 2 == 0 else -1]:
                    fit = cli_fit(trees[side], data, sets, threads, folder, f"{side}-{repeat}")
                    runs[side].append(fit)
    summary: Dict = {"commit": commit, "threads": threads, "modules": modules}
    for side, fits in runs.items():
        summary[side] = {"seconds": _median(fits, "seconds"), "fits": fits}
    summary["ratio"] = summary["today"]["seconds"] / summary["pinned"]["seconds"]
    return summary


def torchrun_fits(data: str, ranks: int, threads: int, repeats: int, sets: Sequence[str]) -> Dict:
    """Today's fit as one process and as ``ranks`` torchrun ranks (gloo), each process with
    ``threads`` torch threads, alternating, after one untimed one-epoch fit of each;
    medians over ``repeats`` and the ratio torchrun / one."""
    runs: Dict[str, List[Dict]] = {"one": [], "torchrun": []}
    count = {"one": 1, "torchrun": ranks}
    with tempfile.TemporaryDirectory(prefix="speed-torchrun-") as tmp:
        folder = Path(tmp)
        check_tree(REPO, folder)
        for side in runs:
            warm = [*sets, "train.max_epochs=1"]
            cli_fit(REPO, data, warm, threads, folder, f"warm-{side}", count[side])
        for repeat in range(repeats):
            for side in list(runs)[:: 1 if repeat % 2 == 0 else -1]:
                fit = cli_fit(REPO, data, sets, threads, folder, f"{side}-{repeat}", count[side])
                runs[side].append(fit)
    summary: Dict = {"ranks": ranks, "threads": threads}
    for side, fits in runs.items():
        summary[side] = {"seconds": _median(fits, "seconds"), "fits": fits}
    summary["ratio"] = summary["torchrun"]["seconds"] / summary["one"]["seconds"]
    return summary


def busy_fits(data: str, threads: Sequence[int], repeats: int, sets: Sequence[str]) -> Dict:
    """For each thread count, today's fit idle and beside one spinning process, alternating
    which runs first, after one untimed one-epoch fit; medians over ``repeats`` and the
    ratio busy / idle."""
    summary: Dict = {}
    with tempfile.TemporaryDirectory(prefix="speed-busy-") as tmp:
        folder = Path(tmp)
        check_tree(REPO, folder)
        cli_fit(REPO, data, [*sets, "train.max_epochs=1"], threads[0], folder, "warm")
        for count in threads:
            runs: Dict[str, List[Dict]] = {"idle": [], "busy": []}
            for repeat in range(repeats):
                for mode in list(runs)[:: 1 if repeat % 2 == 0 else -1]:
                    name = f"{count}-{mode}-{repeat}"
                    with spinning() if mode == "busy" else contextlib.nullcontext():
                        runs[mode].append(cli_fit(REPO, data, sets, count, folder, name))
            row = {mode: {"seconds": _median(f, "seconds"), "fits": f} for mode, f in runs.items()}
            row["ratio"] = row["busy"]["seconds"] / row["idle"]["seconds"]
            summary[count] = row
    return summary


def rss_fit(data: str, threads: int, sets: Sequence[str]) -> Dict:
    """The peak RSS of one fit in a fresh process (bytes), against issue 17's 1.5 GB."""
    with tempfile.TemporaryDirectory(prefix="speed-rss-") as tmp:
        folder = Path(tmp)
        check_tree(REPO, folder)
        before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024
        fit = cli_fit(REPO, data, sets, threads, folder, "rss")
        after = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024
    # RUSAGE_CHILDREN is the largest of all children so far: it names this fit's peak only
    # when the fit is the largest yet; wait4's number is the fit's own in any case.
    fit["rusage_children_bytes"] = {"before": before, "after": after}
    fit["within_limit"] = fit["max_rss_bytes"] <= RSS_LIMIT_BYTES
    return fit
