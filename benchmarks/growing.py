"""
Growing on new data: fit on the old classes, grow that run on all of the data with
``fit --resume-from`` (once per lever of the ``grow`` config section), and compare with a
fit on all of it from scratch.

    python benchmarks/growing.py --out runs/growing --set train.threads=1
    python benchmarks/growing.py --data synthetic --seeds 0 1 2 --out runs/growing_syn

``--data digits``: fit on digits 0-4, grow on 0-9. ``--data synthetic``:
``synthetic:k=6,seed=S`` (2000 rows, 6 clusters), fit on clusters 0-2, grow on all 6.
Seed ``S`` is the held-out split's and the training seed (and the synthetic data's).

Reports, per lever and seed, the pots after growth, the ARI on all the data, the ARI of the
old classes' rows and forgetting (its change from the first run), and the time of the
growth alone; then the mean over seeds. Labels are used only for scoring. ``--out`` keeps
every run directory (a finished one is reused: an interrupted benchmark goes on) and
``results.json``.
"""

import argparse
import csv
import json
from pathlib import Path

import numpy as np
from sklearn.metrics import adjusted_rand_score

from pyro_pots import fit
from pyro_pots.config import load_config
from pyro_pots.data import load_data, load_digits

#: the ablation rows: name -> the grow section's overrides ("none": growth as it was).
LEVERS = {
    "none": [],
    "freeze": ["grow.freeze_old_pots=true"],
    "reservoir": ["grow.replay=reservoir"],
    "generative": ["grow.replay=generative"],
    "seed pot": ["grow.seed_new_pot=true"],
    "freeze+reservoir": ["grow.freeze_old_pots=true", "grow.replay=reservoir"],
    "freeze+generative": ["grow.freeze_old_pots=true", "grow.replay=generative"],
    "reservoir+seed": ["grow.replay=reservoir", "grow.seed_new_pot=true"],
    "seed, old whole": ["grow.seed_new_pot=true", "grow.split_old_pots=false"],
    "freeze+seed, old whole": [
        "grow.freeze_old_pots=true",
        "grow.seed_new_pot=true",
        "grow.split_old_pots=false",
    ],
    # half the growth budget: a growth that costs less than a fit from scratch
    "generative, 400 epochs": ["grow.replay=generative", "train.max_epochs=400"],
    "none, 400 epochs": ["train.max_epochs=400"],
    "all": ["grow.freeze_old_pots=true", "grow.replay=reservoir", "grow.seed_new_pot=true"],
}


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


def datasets(name: str, seed: int, out: Path):
    """(old spec, new spec, labels of the new data, mask of its old rows)."""
    if name == "digits":
        data, old_spec, new_spec = load_digits(), out / "digits_0-4.npz", "digits"
        old = data.labels <= 4
    else:
        new_spec = f"synthetic:k=6,seed={seed}"
        data, old_spec = load_data(new_spec), out / f"synthetic_k6_s{seed}_0-2.npz"
        old = data.labels <= 2
    if not old_spec.exists():
        np.savez(old_spec, X=data.X[old], y=data.labels[old])
    return str(old_spec), new_spec, data.labels, old


def one_seed(name: str, seed: int, out: Path, levers, extra) -> list:
    old_spec, new_spec, y, old = datasets(name, seed, out)
    base = [f"train.seed={seed}", f"data.seed={seed}", *extra]
    first_dir = out / f"s{seed}_first"
    first = run_fit(first_dir, [f"data.spec={old_spec}", *base])
    ari_before = adjusted_rand_score(y[old], pots_of(first_dir))
    rows = []
    runs = [
        (lever, out / f"s{seed}_grown_{lever.replace('+', '_').replace(' ', '_')}")
        for lever in levers
    ]
    for lever, run in runs:
        summary = run_fit(run, [f"data.spec={new_spec}", *base, *LEVERS[lever]], first_dir)
        rows.append((f"grown: {lever}", run, summary))
    scratch_dir = out / f"s{seed}_scratch"
    rows.append(
        ("from scratch", scratch_dir, run_fit(scratch_dir, [f"data.spec={new_spec}", *base]))
    )
    result = []
    for label, run, summary in rows:
        pots = pots_of(run)
        ari_old = adjusted_rand_score(y[old], pots[old])
        log = json.loads((run / "stages.json").read_text())
        actions = [e["action"] for e in log]
        after = log[actions.index("grow") :] if "grow" in actions else log
        result.append(
            {
                "run": label,
                "seed": seed,
                "first_pots": first["n_active"],
                "first_ari_old": ari_before,
                "pots": summary["n_active"],
                "ari": summary["clustering"]["ari"],
                "ari_old": ari_old,
                "forgetting": ari_old - ari_before if label != "from scratch" else None,
                "time_s": summary["time_s"],
                "accepted": sum(e["action"] == "accept" for e in after),
                "pruned": sum(e["action"] == "prune" for e in after),
            }
        )
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="runs/growing")
    parser.add_argument("--data", choices=["digits", "synthetic"], default="digits")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--levers", nargs="+", default=list(LEVERS), choices=list(LEVERS))
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    results = []
    for seed in args.seeds:
        results += one_seed(args.data, seed, out, args.levers, args.set)
        (out / "results.json").write_text(json.dumps(results, indent=1))
    print("| run | seed | pots (first) | ARI all | ARI old rows (first) | forgetting | time s |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for r in results:
        change = "-" if r["forgetting"] is None else f"{r['forgetting']:+.3f}"
        print(
            f"| {r['run']} | {r['seed']} | {r['pots']} ({r['first_pots']}) | {r['ari']:.3f} | "
            f"{r['ari_old']:.3f} ({r['first_ari_old']:.3f}) | {change} | {r['time_s']:.0f} |"
        )
    print()
    print(f"mean over seeds {args.seeds}:")
    print("| run | pots | ARI all | ARI old rows | forgetting (worst) | time s |")
    print("| --- | --- | --- | --- | --- | --- |")
    for label in dict.fromkeys(r["run"] for r in results):
        mine = [r for r in results if r["run"] == label]
        mean = {
            k: float(np.mean([r[k] for r in mine])) for k in ("pots", "ari", "ari_old", "time_s")
        }
        forget = [r["forgetting"] for r in mine if r["forgetting"] is not None]
        change = f"{np.mean(forget):+.3f} ({min(forget):+.3f})" if forget else "-"
        print(
            f"| {label} | {mean['pots']:.1f} | {mean['ari']:.3f} | {mean['ari_old']:.3f} | "
            f"{change} | {mean['time_s']:.0f} |"
        )


if __name__ == "__main__":
    main()
