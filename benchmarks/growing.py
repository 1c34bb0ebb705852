"""
Growing on new data: fit on digits 0-4, grow that run on all of digits 0-9 with
``fit --resume-from``, and compare with a fit on 0-9 from scratch, in one run.

    python benchmarks/growing.py --out runs/growing

Reports how many pots the growth opened, the ARI on 0-9 afterwards, and forgetting: how
much the ARI of the old classes' rows (0-4) moved between the first run and the grown one.
The grown run's time counts the growth only.
Labels are used only for scoring. Prints a Markdown table; ``--out`` keeps the three run
directories and ``digits_0-4.npz`` (the data spec has no class filter).
"""

import argparse
import csv
import json
from pathlib import Path

import numpy as np
from sklearn.metrics import adjusted_rand_score

from pyro_pots import fit
from pyro_pots.config import load_config
from pyro_pots.data import load_digits


def pots_of(run: Path) -> np.ndarray:
    with open(run / "assignments.csv") as handle:
        return np.array([int(row["pot"]) for row in csv.DictReader(handle)])


def summary_of(run: Path) -> dict:
    return json.loads((run / "summary.json").read_text())


def run_fit(out: Path, overrides, grow_from=None) -> dict:
    if not (out / "summary.json").exists():  # an interrupted benchmark keeps what it finished
        cfg = load_config(None, [*overrides, f"output.dir={out}", "output.overwrite=true"])
        fit(cfg, progress=False, grow_from=grow_from)
    return summary_of(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="runs/growing")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    digits = load_digits()
    old = digits.labels <= 4
    old_file = out / "digits_0-4.npz"
    np.savez(old_file, X=digits.X[old], y=digits.labels[old])

    first = run_fit(out / "first_0-4", [f"data.spec={old_file}", *args.set])
    grown = run_fit(out / "grown_0-9", ["data.spec=digits", *args.set], out / "first_0-4")
    scratch = run_fit(out / "scratch_0-9", ["data.spec=digits", *args.set])

    y = digits.labels
    ari_old_before = adjusted_rand_score(y[old], pots_of(out / "first_0-4"))
    rows = []
    for name, run, summary in [
        ("grown from 0-4", out / "grown_0-9", grown),
        ("from scratch", out / "scratch_0-9", scratch),
    ]:
        pots = pots_of(run)
        rows.append(
            (
                name,
                summary["n_active"],
                summary["clustering"]["ari"],
                adjusted_rand_score(y[old], pots[old]),
                summary["time_s"],
            )
        )
    # from the decision log: pot ids are reused, so set differences undercount
    log = json.loads((out / "grown_0-9" / "stages.json").read_text())
    after = log[[e["action"] for e in log].index("grow") :]
    opened = [e["pot"] for e in after if e["action"] == "accept"]
    closed = [e["pot"] for e in after if e["action"] == "prune"]
    print(f"first run on 0-4: {first['n_active']} pots, ARI {ari_old_before:.3f}")
    print(
        f"growth: {len(opened)} splits accepted (new pots {opened}), {len(closed)} pruned {closed}"
    )
    print("| run | pots | ARI on 0-9 | ARI on the rows of 0-4 | forgetting | time s |")
    print("| --- | --- | --- | --- | --- | --- |")
    for name, n, ari, ari_old, secs in rows:
        change = f"{ari_old - ari_old_before:+.3f}" if name.startswith("grown") else "-"
        print(f"| {name} | {n} | {ari:.3f} | {ari_old:.3f} | {change} | {secs:.0f} |")


if __name__ == "__main__":
    main()
