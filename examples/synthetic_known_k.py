"""
Does the curriculum find the number of modes? Fit synthetic data whose number of clusters
K is known (Gaussian blobs pushed through a fixed random network, see
``pyro_pots.data.make_synthetic``) with ``pyro_pots.fit`` and compare the number of pots it
opened with K, and its clustering with the true one (ARI).

    python examples/synthetic_known_k.py --k 3
    python examples/synthetic_known_k.py --k 5 --num-rows 2000 --out runs/syn5

``model.num_pots`` (K_max) is a cap, not a guess: the curriculum decides how many pots to
open. benchmarks/curriculum.py runs this over several K and seeds.
"""

import argparse
import tempfile
from pathlib import Path

import pyro

from pyro_pots import fit
from pyro_pots.config import load_config


def main(args):
    spec = f"synthetic:k={args.k},d={args.num_features},n={args.num_rows},seed={args.data_seed}"
    with tempfile.TemporaryDirectory(prefix="synthetic_known_k_") as scratch:
        out = Path(args.out) if args.out else Path(scratch) / "run"
        overrides = [
            f"data.spec={spec}",
            f"output.dir={out}",
            f"model.num_pots={args.num_pots}",
            f"train.max_epochs={args.num_epochs}",
            f"train.seed={args.seed}",
            f"train.device={'cuda' if args.cuda else 'cpu'}",
            f"train.jit={'true' if args.jit else 'false'}",
            f"output.plots={'true' if args.out else 'false'}",
            *args.set,
        ]
        print(f"fitting {spec} with at most {args.num_pots} pots")
        summary = fit(load_config(overrides=overrides), progress=args.progress).summary
    for entry in ("n_active", "epochs", "stop_reason", "time_s"):
        print(f"{entry:>12}: {summary[entry]}")
    usage = ", ".join(f"pot {k}: {u:.2f}" for k, u in summary["usage"].items())
    print(f"{'usage':>12}: {usage}")
    ari = summary["clustering"]["ari"]
    print(f"K found {summary['n_active']} (true K {args.k}), ARI {ari:.3f}")
    return {"true_k": args.k, "k_found": summary["n_active"], "ari": ari, "summary": summary}


if __name__ == "__main__":
    assert pyro.__version__.startswith("1.")
    parser = argparse.ArgumentParser(description="discovery of a known number of clusters")
    parser.add_argument("--k", default=3, type=int, help="true number of clusters")
    parser.add_argument("--num-rows", default=1000, type=int)
    parser.add_argument("--num-features", default=20, type=int)
    parser.add_argument("--data-seed", default=0, type=int)
    parser.add_argument("--num-pots", default=20, type=int, help="K_max, a cap")
    parser.add_argument("-n", "--num-epochs", default=800, type=int, help="epoch budget")
    parser.add_argument("--out", help="keep the run directory here (default: a temporary one)")
    parser.add_argument(
        "--set", action="append", default=[], metavar="SECTION.KEY=VALUE", help="config override"
    )
    parser.add_argument("--progress", action="store_true", default=False, help="progress bar")
    parser.add_argument("--seed", default=0, type=int)
    parser.add_argument("--cuda", action="store_true", default=False)
    parser.add_argument("--jit", action="store_true", default=False)
    result = main(parser.parse_args())
