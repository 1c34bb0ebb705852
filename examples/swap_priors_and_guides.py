"""
Swap the prior on the logits and the guide of the logits, and compare the fits side by
side: how many pots the curriculum opened, how peaky the routing is (mean max
responsibility), and how well the pots match the true clusters (NMI, ARI).

    python examples/swap_priors_and_guides.py
    python examples/swap_priors_and_guides.py --priors logit_mog categorical_kl --guides delta

Priors (``pyro_pots.model.LOGIT_PRIORS``): ``logit_mog`` (a Gaussian mixture in logit space
with one component per open pot, near one-hot), ``none`` (flat) and ``categorical_kl``
(the textbook mixture-VAE penalty, KL of the responsibilities to uniform). Logits guides
(``pyro_pots.model.LOGITS_GUIDES``): ``delta`` (y = y(x)) and ``normal``. Each is one config
key (``prior.kind``, ``prior.logits_guide``), or an object passed to ``PotsVAE``.
"""

import argparse
import tempfile
from pathlib import Path

import pyro

from pyro_pots import fit
from pyro_pots.config import load_config
from pyro_pots.model import LOGIT_PRIORS, LOGITS_GUIDES

_COLUMNS = ("prior", "guide", "pots", "mean max resp", "NMI", "ARI", "time s")


def fit_one(args, prior, guide, out):
    """Fit with one prior and one guide; the numbers of one row of the table."""
    overrides = [
        f"data.spec={args.data}",
        f"output.dir={out}",
        "output.plots=false",
        f"prior.kind={prior}",
        f"prior.logits_guide={guide}",
        f"model.num_pots={args.num_pots}",
        f"train.max_epochs={args.num_epochs}",
        f"curriculum.kick_steps={args.kick_steps}",
        f"train.seed={args.seed}",
        f"train.device={'cuda' if args.cuda else 'cpu'}",
        f"train.jit={'true' if args.jit else 'false'}",
        *args.set,
    ]
    summary = fit(load_config(overrides=overrides), progress=False).summary
    scores = summary.get("clustering", {})
    return {
        "prior": prior,
        "guide": guide,
        "pots": summary["n_active"],
        "mean max resp": summary["peakiness"]["mean_max_resp"],
        "NMI": scores.get("nmi", float("nan")),
        "ARI": scores.get("ari", float("nan")),
        "time s": summary["time_s"],
    }


def show(row):
    cells = [f"{row[c]:.3f}" if isinstance(row[c], float) else str(row[c]) for c in _COLUMNS]
    print("  ".join(cell.rjust(max(len(c), 14)) for cell, c in zip(cells, _COLUMNS)))


def main(args):
    print(f"data {args.data}, at most {args.num_pots} pots, {args.num_epochs} epochs each")
    print("  ".join(c.rjust(max(len(c), 14)) for c in _COLUMNS))
    rows = []
    with tempfile.TemporaryDirectory(prefix="swap_priors_") as scratch:
        for prior in args.priors:
            for guide in args.guides:
                rows.append(fit_one(args, prior, guide, Path(scratch) / f"{prior}_{guide}"))
                show(rows[-1])
    return rows


if __name__ == "__main__":
    assert pyro.__version__.startswith("1.")
    parser = argparse.ArgumentParser(description="swap logit priors and logits guides")
    parser.add_argument("--priors", nargs="+", default=list(LOGIT_PRIORS), choices=LOGIT_PRIORS)
    parser.add_argument("--guides", nargs="+", default=list(LOGITS_GUIDES), choices=LOGITS_GUIDES)
    parser.add_argument("--data", default="synthetic:k=3,n=1000", help="data spec")
    parser.add_argument("--num-pots", default=10, type=int, help="K_max, a cap")
    parser.add_argument("-n", "--num-epochs", default=200, type=int, help="epoch budget per fit")
    parser.add_argument("--kick-steps", default=300, type=int, help="SVI steps of each kick")
    parser.add_argument(
        "--set", action="append", default=[], metavar="SECTION.KEY=VALUE", help="config override"
    )
    parser.add_argument("--seed", default=0, type=int)
    parser.add_argument("--cuda", action="store_true", default=False)
    parser.add_argument("--jit", action="store_true", default=False)
    result = main(parser.parse_args())
