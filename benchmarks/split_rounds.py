"""
How far could several splits per stage shorten a fit? Reads the decision logs
(``stages.json``) of finished runs and, for each, sets the stages it ran one after the other
against the rounds the same splits would need if every open pot could be split once per
round, all of a round's splits kicked together (DeepDPM's schedule, issue 17).

    python benchmarks/split_rounds.py runs/quality_s13_A runs/quality_s13_B
    python benchmarks/split_rounds.py runs/fit

A run directory, or a folder of them (``quality.py``'s ``--out``: ``METHOD__DATA__SEED``).

- **Kicked stages**: the splits that were kicked, kept or undone (a proposal screened
  before its kick costs no stage).
- **Rounds**: the critical path of the same kicks. A kick of parent ``p`` (kept or undone)
  lands in the round after both the round whose kept split created ``p`` and the round of
  ``p``'s previous kick: a pot is kicked at most once per round, its kicks keep their order,
  and the kicks of different pots share rounds.

The bound is optimistic: it assumes every split would have been proposed, kicked and
judged as it was in the sequential run, with the rows of the other splits moving at the
same time.
"""

import argparse
import json
import sys
from pathlib import Path
from typing import Dict, List, Tuple


def kicked_outcomes(log: List[Dict]) -> List[Dict]:
    """The judgements of the kicked splits: every ``accept``, and every ``reject`` but the
    proposal screen's (a proposal screened before its kick costs no stage)."""
    return [
        entry
        for entry in log
        if entry["action"] == "accept"
        or (entry["action"] == "reject" and not (entry.get("numbers") or {}).get("screened"))
    ]


def rounds(log: List[Dict]) -> int:
    """The critical path, in rounds, of the kicked splits (see the module docstring)."""
    created: Dict[int, int] = {}
    last_kick: Dict[int, int] = {}
    longest = 0
    for entry in kicked_outcomes(log):
        parent = entry["parent"]
        at = max(created.get(parent, 0), last_kick.get(parent, 0)) + 1
        last_kick[parent] = at
        if entry["action"] == "accept":
            created[entry["pot"]] = at
        longest = max(longest, at)
    return longest


def run_row(folder: Path) -> Tuple[str, int, int, int, int]:
    """``(name, pots, epochs, kicked stages, rounds)`` of one run."""
    log = json.loads((folder / "stages.json").read_text())
    summary = json.loads((folder / "summary.json").read_text())
    return (
        folder.name,
        summary["n_active"],
        summary["epochs"],
        len(kicked_outcomes(log)),
        rounds(log),
    )


def run_folders(paths: List[Path]) -> List[Path]:
    """Each path that is a finished run, and the finished runs inside each other path."""
    found = []
    for path in paths:
        if not path.is_dir():
            raise ValueError(f"'{path}' is not a folder")
        inner = [path] if (path / "stages.json").exists() else sorted(path.iterdir())
        found += [
            p for p in inner if (p / "stages.json").exists() and (p / "summary.json").exists()
        ]
    return found


def main(argv: List[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", type=Path, help="run folders, or folders of runs")
    args = parser.parse_args(argv)
    try:
        folders = run_folders(args.runs)
    except ValueError as error:
        parser.error(str(error))  # one line, exit code 2
    if not folders:
        parser.error("no finished run (a folder with stages.json and summary.json) found")
    print("| run | pots | epochs | kicked stages | rounds | rounds / stages |")
    print("| --- | --- | --- | --- | --- | --- |")
    for name, pots, epochs, stages, needed in map(run_row, folders):
        share = f"{needed / stages:.2f}" if stages else "-"
        print(f"| {name} | {pots} | {epochs} | {stages} | {needed} | {share} |")


if __name__ == "__main__":
    main(sys.argv[1:])
