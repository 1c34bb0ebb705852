"""
Does the curriculum find the number of modes? Fits with the default configuration, one
run per (dataset, seed), and reports the discovered number of pots, ARI / NMI and time.

    python benchmarks/curriculum.py                      # synthetic K = 3, 5, 8 and digits
    python benchmarks/curriculum.py --only synthetic --seeds 0 1
    python benchmarks/curriculum.py --only synthetic --k 8 --set curriculum.kick_steps=900

Each run's summary is kept in ``--out`` (default ``runs/bench``), so an interrupted
benchmark keeps what it finished; the table is printed as Markdown at the end.
Runs one at a time: timings are only meaningful on an otherwise idle machine.
"""

import argparse
import json
import statistics
from pathlib import Path
from typing import List

from pyro_pots import fit
from pyro_pots.config import load_config

CASES = {
    "synthetic": [(f"synthetic k={k}", f"synthetic:k={k},seed={{seed}}", k) for k in (3, 5, 8)],
    "digits": [("digits", "digits", 10)],
}


def run_case(spec: str, seed: int, out: Path, overrides: List[str]) -> dict:
    summary_file = out / "summary.json"
    if summary_file.exists():
        return json.loads(summary_file.read_text())
    cfg = load_config(
        None,
        [f"data.spec={spec}", f"train.seed={seed}", f"data.seed={seed}", f"output.dir={out}"]
        + overrides,
    )
    return fit(cfg, progress=False).summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", choices=sorted(CASES), action="append")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--digits-seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--k", type=int, nargs="+", help="synthetic K values (default 3 5 8)")
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="config override for every run, as in `pyro-pots fit --set`",
    )
    parser.add_argument("--out", default="runs/bench")
    args = parser.parse_args()
    lines = [
        "| data | true K | seeds | K found (per seed) | K found = K | ARI (median, min) "
        "| NMI (median) | time s (median) |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for group in args.only or sorted(CASES, reverse=True):
        seeds = args.digits_seeds if group == "digits" else args.seeds
        for name, spec, true_k in CASES[group]:
            if group == "synthetic" and args.k and true_k not in args.k:
                continue
            found, ari, nmi, secs = [], [], [], []
            for seed in seeds:
                out = Path(args.out) / f"{name.replace(' ', '_').replace('=', '')}_seed{seed}"
                s = run_case(spec.format(seed=seed), seed, out, args.set)
                found.append(s["n_active"])
                ari.append(s["clustering"]["ari"])
                nmi.append(s["clustering"]["nmi"])
                secs.append(s["time_s"])
                print(
                    f"{name} seed {seed}: k_eff {s['k_eff']} open {s['n_active']} "
                    f"ARI {ari[-1]:.3f} NMI {nmi[-1]:.3f} {secs[-1]:.0f}s",
                    flush=True,
                )
            hits = sum(k == true_k for k in found)
            lines.append(
                f"| {name.split()[0]} | {true_k} | {len(seeds)} | {', '.join(map(str, found))} "
                f"| {hits}/{len(seeds)} | {statistics.median(ari):.3f}, {min(ari):.3f} "
                f"| {statistics.median(nmi):.3f} | {statistics.median(secs):.0f} |"
            )
    print("\n".join(lines))


if __name__ == "__main__":
    main()
