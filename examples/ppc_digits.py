"""
A posterior predictive check of a PotsVAE fitted to scikit-learn's digits.

Replicates of the data are drawn with ``pyro.infer.Predictive`` (the guide draws each row's
pot and latent code, the model draws a new row), and test statistics of the data are
compared with those of the replicates by posterior predictive p-values (the fraction of
replicates with a statistic at least as large as the data's). The built-in statistics are
per-pixel mean and variance, per-pot occupancy and the log-likelihood; this example adds
one of its own, the share of "ink" pixels (> 0.5) per image.

    python examples/ppc_digits.py                     # fit by the curriculum, then check
    python examples/ppc_digits.py --run runs/fit      # check a fitted run directory

The check writes ``ppc.json`` and ``plots/ppc_*.png`` into the run directory (the same as
``pyro-pots ppc --run DIR``).

What to expect with the default Bernoulli likelihood: digits are grey levels, Bernoulli
replicates are 0/1, so every pixel's variance is flagged (the likelihood is the usual
cross-entropy, not a generative model of grey levels); ``--set
model.likelihood=continuous_bernoulli`` fits one that is.
"""

import argparse
import tempfile
from pathlib import Path

import pyro
import torch

from pyro_pots import fit, load_run, ppc
from pyro_pots.config import load_config
from pyro_pots.data import load_data


def ink(x):
    """Share of pixels darker than 0.5, over the whole data set."""
    return (x > 0.5).float().mean()


def fit_digits(args, out):
    overrides = [
        "data.spec=digits",
        f"output.dir={out}",
        f"model.num_pots={args.num_pots}",
        f"train.max_epochs={args.num_epochs}",
        f"train.seed={args.seed}",
        f"train.device={'cuda' if args.cuda else 'cpu'}",
        f"train.jit={'true' if args.jit else 'false'}",
        *args.set,
    ]
    summary = fit(load_config(overrides=overrides), progress=False).summary
    print(
        f"fitted {summary['n_active']} pots in {summary['epochs']} epochs ({summary['time_s']} s)"
    )


def main(args):
    if args.run:
        run = Path(args.run)
    else:
        run = Path(args.out or tempfile.mkdtemp(prefix="ppc_digits_")) / "run"
        fit_digits(args, run)
    report = ppc.check_run(run, num_samples=args.num_samples, seed=args.seed)
    print(
        f"{report['num_samples']} replicates of {report['n_rows']} rows; flagged at "
        f"two-sided p < {report['alpha']}:"
    )
    for name, numbers in report["summary"].items():
        print(f"  {name:>15}: {numbers['flagged']:3d} of {numbers['size']}")

    # The same check from Python, with a statistic of our own.
    fitted = load_run(run)  # the final model, on the CPU
    cfg = fitted.config
    x = torch.from_numpy(load_data(cfg.data.spec, cfg.model.likelihood).X)
    check = ppc.check(
        fitted.model, x, num_samples=args.num_samples, seed=args.seed, statistics={"ink": ink}
    )
    mine = check.statistics["ink"]
    print(
        f"ink: data {mine.observed.item():.3f}, replicates {mine.replicated.mean():.3f} "
        f"+- {mine.replicated.std():.3f}, p = {mine.p_value.item():.2f}"
    )
    print(f"ppc.json and figures in {run}")
    report["ink"] = mine.to_dict(report["alpha"])
    return report


if __name__ == "__main__":
    assert pyro.__version__.startswith("1.")
    parser = argparse.ArgumentParser(description="posterior predictive check on digits")
    parser.add_argument("--run", help="check this fitted run directory instead of fitting")
    parser.add_argument("--out", help="fit into OUT/run (default: a new temporary directory)")
    parser.add_argument("-n", "--num-epochs", default=200, type=int, help="epoch budget")
    parser.add_argument("--num-pots", default=20, type=int, help="K_max, a cap")
    parser.add_argument("--num-samples", default=50, type=int, help="replicates")
    parser.add_argument(
        "--set", action="append", default=[], metavar="SECTION.KEY=VALUE", help="config override"
    )
    parser.add_argument("--seed", default=0, type=int)
    parser.add_argument("--cuda", action="store_true", default=False)
    parser.add_argument("--jit", action="store_true", default=False)
    result = main(parser.parse_args())
