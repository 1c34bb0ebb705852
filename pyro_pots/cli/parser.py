"""The ``pyro-pots`` argument parser: one subcommand each (see :mod:`pyro_pots.cli`), bad
arguments reported in one line, the counts a command line may ask for bounded."""

import argparse
import importlib.metadata

from pyro_pots.config import load_config
from pyro_pots.errors import one_line

#: upper bounds of the counts a command line may ask for: each is far above any useful
#: value, and below the sizes that exhaust memory (``sample -n`` rows, ``ppc -n``
#: replicates of the whole data, ``evaluate --samples`` draws per row and pot).
MAX_SAMPLE_ROWS = 1_000_000
MAX_REPLICATES = 10_000
MAX_IMPORTANCE_SAMPLES = 10_000


class _Parser(argparse.ArgumentParser):
    """Reports a bad argument in one line, like every other bad input (no usage block)."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {one_line(message)} (see {self.prog} -h)\n")


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """``--help`` shows each option's default, except where there is none to show (None, an
    off switch, an empty list): the option's help says what happens without it."""

    def _get_help_string(self, action: argparse.Action) -> str:
        default = action.default
        if default is None or default is False or default == [] or not action.help:
            return action.help or ""
        return super()._get_help_string(action)


def package_version() -> str:
    """The installed pyro-pots version (the package metadata: ``pyproject.toml``'s)."""
    try:
        return importlib.metadata.version("pyro-pots")
    except importlib.metadata.PackageNotFoundError:  # run from a source tree, not installed
        return "unknown (not installed)"


def build_parser() -> argparse.ArgumentParser:
    """The ``pyro-pots`` argument parser, one subcommand each (see the module docstring)."""
    parser = _Parser(
        prog="pyro-pots",
        description="Discover the modes of a dataset with a mixture VAE.",
        formatter_class=_HelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {package_version()}")
    commands = parser.add_subparsers(dest="command", required=True)
    defaults = load_config()  # the config's own defaults, named in fit's help

    def add_parser(name: str, **kwargs) -> argparse.ArgumentParser:
        return commands.add_parser(name, formatter_class=_HelpFormatter, **kwargs)

    fit = add_parser("fit", help="grow a model by the curriculum; write a run directory")
    fit.add_argument("--config", help="YAML config (see examples/configs/; default: the defaults)")
    fit.add_argument(
        "--data",
        help="digits | synthetic[:k=5,...] | a data file (data.spec; "
        f"default: {defaults.data.spec})",
    )
    fit.add_argument("--out", help=f"run directory (output.dir; default: {defaults.output.dir})")
    fit.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="SECTION.KEY=VALUE",
        help="override one config key (repeatable)",
    )
    fit.add_argument("--overwrite", action="store_true", help="replace an existing run directory")
    fit.add_argument("--resume", action="store_true", help="continue the run in --out")
    fit.add_argument(
        "--resume-from",
        metavar="DIR",
        help="grow the fitted run in DIR on --data into a new run --out (its pots stay; "
        "its config is the base of this one's)",
    )
    fit.add_argument("--quiet", action="store_true", help="no progress bar")

    evaluate = add_parser("evaluate", help="score a run's model on data")
    evaluate.add_argument("--run", required=True, help="run directory")
    evaluate.add_argument("--data", help="data spec (default: the run's own data)")
    evaluate.add_argument("--output", help="per-row scores CSV (pot, max_resp, entropy, ...)")
    evaluate.add_argument(
        "--samples",
        type=_count(MAX_IMPORTANCE_SAMPLES),
        help="importance-weighted neg_elbo with S draws per pot (default: the plain ELBO)",
    )
    evaluate.add_argument("--overwrite", action="store_true", help="replace an existing --output")

    label = add_parser("label", help="map pots to classes; predict labels")
    label.add_argument("--run", required=True, help="run directory")
    label.add_argument(
        "--labels",
        required=True,
        help="CSV of 'row,label' pairs, or one label per row of the run's data",
    )
    label.add_argument("--data", help="data to predict (default: the run's own data)")
    label.add_argument("--output", help="predictions CSV (row, pot, label[, true_label])")
    label.add_argument(
        "--fallback",
        choices=("next", "unknown"),
        default="next",
        help="a row whose pot has no labelled rows: its next labelled pot, or -1",
    )
    label.add_argument("--overwrite", action="store_true", help="replace an existing --output")

    sample = add_parser(
        "sample",
        help="draw rows from a run's model",
        description="Draw rows from a run's model into an .npz (X: the rows, pot: each row's "
        "pot). Each row's pot is drawn by the model's mixture weights over its open pots (the "
        "training rows' mean responsibilities, read from the run's data), or is --pot; then "
        "z ~ N(0, I) and x ~ p(x | decode(z)): draws of the likelihood, not its mean "
        "(0/1 for Bernoulli).",
    )
    sample.add_argument("--run", required=True, help="run directory")
    sample.add_argument(
        "--pot", type=int, help="draw every row from this open pot (default: the mixture)"
    )
    sample.add_argument("-n", type=_count(MAX_SAMPLE_ROWS), default=16, help="rows to draw")
    sample.add_argument("--seed", type=_seed, default=0, help="seed of the draws")
    sample.add_argument("--out", help="output .npz (default: RUN/samples.npz; never replaced)")

    ppc = add_parser("ppc", help="posterior predictive check of a run")
    ppc.add_argument("--run", required=True, help="run directory")
    ppc.add_argument("--data", help="data spec (default: the run's own data)")
    ppc.add_argument(
        "-n", "--num-samples", type=_count(MAX_REPLICATES), default=100, help="replicates"
    )
    ppc.add_argument("--seed", type=_seed, default=0, help="seed of the replicates")
    return parser


def _count(limit: int):
    """An argparse type: an integer in ``[1, limit]`` (a huge one is refused before Python
    parses it: ``int()`` of thousands of digits is itself an error)."""

    def parse(text: str) -> int:
        shown = text if len(text) <= 20 else text[:17] + "..."
        problem = f"must be an integer in [1, {limit:_}], got {shown!r}"
        digits = text.strip().lstrip("+")
        if not digits.isdigit() or not digits.isascii():
            raise argparse.ArgumentTypeError(problem)
        if len(digits.lstrip("0")) > len(str(limit)) or not 1 <= int(digits) <= limit:
            raise argparse.ArgumentTypeError(problem)
        return int(digits)

    return parse


def _seed(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = -1
    if not 0 <= value <= 2**32 - 1:
        raise argparse.ArgumentTypeError(f"must be an integer in [0, 2**32 - 1], got {text!r}")
    return value
