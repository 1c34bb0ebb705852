"""
The ``pyro-pots`` command line.

- ``pyro-pots fit [--config FILE] [--data SPEC] [--out DIR] [--set section.key=value ...]
  [--overwrite] [--resume] [--resume-from DIR]``: grow a model by the curriculum and write a
  run directory (``--resume-from``: grow a fitted run on new data into a new directory).
  With no arguments it fits the bundled digits data with the defaults.
- ``pyro-pots evaluate --run DIR [--data SPEC] [--output FILE.csv [--samples S]]``: the
  summary numbers of a run's model on its data or on other data with the same number of
  features; ``--output`` adds per-row uncertainty and OOD scores (:mod:`pyro_pots.uncertainty`).
- ``pyro-pots label --run DIR --labels FILE [--data SPEC] [--output FILE.csv]``: map pots
  to classes from a few labelled rows of the run's data and predict labels
  (:mod:`pyro_pots.labels`).
- ``pyro-pots sample --run DIR [--pot K] [-n N] [--out FILE]``: draw rows from the model
  (a pot by the mixture weights, or ``--pot``; then a draw of the likelihood, not its mean)
  into an ``.npz`` file.
- ``pyro-pots ppc --run DIR [--data SPEC] [-n/--num-samples N] [--seed S]``: posterior
  predictive check of a run (:mod:`pyro_pots.ppc`); writes ``ppc.json`` and
  ``plots/ppc_*.png`` into the run directory.

Bad input (config, data, argument, checkpoint, an existing output, an output that cannot
be written, a run that is unfinished or in use) ends in one line on stderr and exit code 2;
a fit stopped by SIGINT or SIGTERM in one line and exit code 130 or 143. Warnings raised
while a command runs are shown after it succeeds, and dropped when it fails (the one line
says what went wrong). ``docs/reliability.md`` states what a run directory guarantees.
"""

import argparse
import importlib.metadata
import json
import sys
import warnings
from pathlib import Path
from typing import Any, Dict, List, Optional

import numpy as np
import torch

from pyro_pots import run_dir
from pyro_pots.config import load_config
from pyro_pots.data import Dataset, load_data
from pyro_pots.errors import FitInterrupted, PotsInputError, first_line, one_line
from pyro_pots.fitted_run import (
    FittedRun,
    check_fits,
    load_model,
    load_run,
    run_data,
    sample_mixture,
    training_rows,
)
from pyro_pots.storage import RunLock, fingerprint
from pyro_pots.training.distributed import launched_rank
from pyro_pots.training.parts import resolve_device

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


def fit_command(args: argparse.Namespace) -> Dict[str, Any]:
    """``pyro-pots fit``: the run's summary."""
    from pyro_pots.training.fitting import fit  # imports torch-heavy modules only when fitting

    overrides = list(args.set)
    if args.data is not None:
        overrides.append(f"data.spec={args.data}")
    if args.out is not None:
        overrides.append(f"output.dir={args.out}")
    if args.overwrite:
        overrides.append("output.overwrite=true")
    if args.resume and args.overwrite:
        raise PotsInputError("--resume continues a run; it cannot be combined with --overwrite")
    if args.resume:
        _check_resume_arguments(args, overrides)
    base = args.config
    if args.resume_from is not None:
        if args.resume or args.config:
            raise PotsInputError(
                "--resume-from takes its config from the run; drop --resume/--config"
            )
        if args.out is None:
            raise PotsInputError("--resume-from needs --out, a new run directory to grow into")
        base = Path(args.resume_from) / run_dir.CONFIG
        if not base.is_file():
            raise PotsInputError(
                f"'{args.resume_from}' is not a run directory (no {run_dir.CONFIG})"
            )
    cfg = load_config(base, overrides)
    result = fit(cfg, resume=args.resume, progress=not args.quiet, grow_from=args.resume_from)
    if launched_rank() == 0:
        print(f"run written to {result.out}", file=sys.stderr)
    return result.summary


#: keys ``--resume`` takes from the command line: the budget, and where the run is.
_RESUME_KEYS = ("train.max_epochs", "output.dir", "output.overwrite")


def _check_resume_arguments(args: argparse.Namespace, overrides: List[str]) -> None:
    """``--resume`` goes on with the run's saved config and data. An argument that asks
    for another value (``--data``, ``--config``, ``--set``) is refused in one line naming
    the keys, not silently ignored; one that repeats the run's own value is fine, so the
    command that started a run, with ``--resume`` added, goes on with it. The epoch budget
    is the exception: ``--set train.max_epochs`` extends the run."""
    from pyro_pots.config import config_to_dict

    out = Path(args.out) if args.out is not None else Path(load_config(args.config).output.dir)
    saved_path = out / run_dir.CONFIG
    if not saved_path.is_file():
        return  # no run to compare with: fit() says what is missing
    saved = config_to_dict(load_config(saved_path))
    asked = config_to_dict(load_config(args.config or saved_path, overrides))
    differ = []
    for section, keys in saved.items():
        for key, value in keys.items():
            name, wanted = f"{section}.{key}", asked[section][key]
            if name == "data.spec" and isinstance(wanted, str):
                wanted = fingerprint.resolved_spec(wanted)
                value = fingerprint.resolved_spec(value)
            if name not in _RESUME_KEYS and wanted != value:
                differ.append(name)
    if differ:
        raise PotsInputError(
            f"--resume goes on with the run's own config.yaml and data, but the arguments "
            f"ask for other values of {', '.join(differ)}; drop them (only train.max_epochs "
            "may change), start a new run with --overwrite, or grow this one with "
            "--resume-from"
        )


def _read_run(run: Path) -> FittedRun:
    """A finished run, read by :func:`pyro_pots.load_run` (no trainer; its checks and
    one-line refusals), its model on the config's ``train.device``, where the fit ran."""
    fitted = load_run(run)
    fitted.model.to(resolve_device(fitted.config.train.device))
    return fitted


def evaluate_command(args: argparse.Namespace) -> Dict[str, Any]:
    """``pyro-pots evaluate``: the summary numbers of a run's model on data."""
    from pyro_pots.training.outputs import heldout_loss, summarize

    run = Path(args.run)
    fitted = _read_run(run)
    cfg, model = fitted.config, fitted.model
    out = _new_output(args.output, args.overwrite) if args.output else None
    own = None if args.data else run_data(run, cfg)  # checked against its fingerprint
    data = load_data(args.data, cfg.model.likelihood) if args.data else own
    check_fits(data, model)
    rows = torch.from_numpy(data.X).to(model.active.device)
    # every row gives the mixture weights and is scored (the fit: training rows, held-out rows)
    summary = summarize(model, data, heldout_loss(model, rows, rows, cfg.train.seed))
    summary["heldout_loss_note"] = "mixture loss on all rows of this data (nats per row)"
    if out is not None:
        _write_row_scores(fitted, data, own, args.samples, out)
        summary["output"] = str(out)
    return summary


def _new_output(path: str, overwrite: bool) -> Path:
    """An output file path that may be written: an existing file only with --overwrite,
    never a directory; checked before any work is done."""
    out = Path(path)
    _check_file_name(path, "--output")
    try:
        if out.is_dir():
            raise PotsInputError(f"--output '{out}' is a directory; name a file")
        if out.exists() and not overwrite:
            raise PotsInputError(f"'{out}' exists; pass --overwrite or choose another --output")
        if not out.parent.is_dir():
            raise PotsInputError(f"cannot write '{out}': no directory '{out.parent}'")
    except OSError as error:  # a name too long, a path through a file
        raise PotsInputError(f"--output '{out}': {error.strerror or error}") from None
    return out


def _check_file_name(path: str, option: str) -> None:
    """Refuse a name no file can have (the OS would raise ValueError, not OSError)."""
    if "\x00" in path:
        raise PotsInputError(f"{option} '{path}': a file name cannot hold a NUL byte")


def _write_output(out: Path, write) -> None:
    """``write(out)``, with an OS error (a read-only folder, a full disk, ``/dev/full``)
    turned into one line; a new regular file it left half-written is removed."""
    existed = out.exists()
    try:
        write(out)
    except OSError as error:
        if not existed and out.is_file():
            out.unlink(missing_ok=True)
        raise PotsInputError(
            f"--output '{out}': cannot be written ({error.strerror or first_line(error)})"
        ) from None


def _write_row_scores(
    fitted: FittedRun, data: Dataset, own: Optional[Dataset], samples: Optional[int], out: Path
) -> None:
    """Per-row scores of ``data``, compared with the run's own training rows (``own``: the
    run's data when already read)."""
    from pyro_pots import uncertainty

    model = fitted.model
    train = training_rows(fitted.path, fitted.config, own).to(model.active.device)
    calibration = uncertainty.calibrate(model, train, samples)
    rows = torch.from_numpy(data.X).to(model.active.device)
    scores = uncertainty.row_scores(model, rows, calibration, samples)
    _write_output(out, lambda path: uncertainty.write_scores_csv(scores, path))


def label_command(args: argparse.Namespace) -> Dict[str, Any]:
    """``pyro-pots label``: the pot-to-class map and its votes."""
    from pyro_pots import labels

    run = Path(args.run)
    fitted = _read_run(run)
    cfg = fitted.config
    out = _new_output(args.output, args.overwrite) if args.output else None
    own = run_data(run, cfg)
    given = labels.read_labels_file(args.labels, own.n_rows)
    data = load_data(args.data, cfg.model.likelihood) if args.data else own
    check_fits(data, fitted.model)
    result = labels.label_data(fitted.model, own.X, given, data.X, args.fallback)
    report = {"data": data.name, "n_rows": data.n_rows, "n_labelled": int((given >= 0).sum())}
    report.update(result.label_map.report())
    report["fallback"] = args.fallback
    if data.labels is not None:  # the data's own labels score the prediction, nothing else
        report["accuracy"] = float((result.predicted == data.labels).mean())
    if out is not None:
        _write_output(out, lambda path: labels.write_predictions_csv(result, data.labels, path))
        report["output"] = str(out)
    return report


def sample_command(args: argparse.Namespace) -> Dict[str, Any]:
    """``pyro-pots sample``: rows drawn from a run's model (a pot by the mixture weights, or
    ``--pot``; ``z ~ N(0, I)``; ``x ~ p(x | decode(z))``, a draw, not the mean), to an
    ``.npz`` with ``X`` and ``pot``."""
    run = Path(args.run)
    fitted = _read_run(run)
    pots = fitted.pots.tolist()
    if args.pot is not None and args.pot not in pots:
        raise PotsInputError(f"--pot {args.pot} is not an open pot of this run; open: {pots}")
    if args.out:
        _check_file_name(args.out, "--out")
    out = Path(args.out) if args.out else run / "samples.npz"
    if out.suffix != ".npz":  # np.savez adds it; check and report the file it writes
        out = out.with_name(out.name + ".npz")
    try:
        taken = out.exists()
    except OSError as error:
        raise PotsInputError(f"--out '{out}': {error.strerror or error}") from None
    if taken:
        raise PotsInputError(f"'{out}' exists; choose another --out (samples are never replaced)")
    if args.pot is not None:  # one pot: all its weight on it
        weights = torch.tensor([float(pot == args.pot) for pot in pots])
    else:  # the mixture the model defines (reads the run's training rows, checked)
        weights = torch.as_tensor(fitted.weights, dtype=torch.float32)
    rows, drawn = sample_mixture(fitted.model, weights, args.n, args.seed)
    try:
        np.savez(out, X=rows, pot=drawn)
    except OSError as error:
        if out.is_file():  # np.savez created it, then failed (a full disk)
            out.unlink(missing_ok=True)
        reason = error.strerror or error
        raise PotsInputError(f"--out '{out}': cannot be written ({reason})") from None
    result = {"file": str(out), "rows": args.n, "pots": sorted(set(drawn.tolist()))}
    if args.pot is None:
        result["weights"] = dict(zip(pots, weights.tolist()))
    return result


def ppc_command(args: argparse.Namespace) -> Dict[str, Any]:
    """``pyro-pots ppc``: a posterior predictive check of a run."""
    from pyro_pots.ppc import PPC_JSON, check_run

    run = Path(args.run)
    cfg, _ = load_model(run)  # a finished run whose checkpoint fits its config
    data = args.data
    if data is None:  # the run's own data, checked against its fingerprint
        run_data(run, cfg)
        data = cfg.data.spec
    with RunLock(run):  # ppc writes into the run: never while a fit writes it
        report = check_run(run, num_samples=args.num_samples, seed=args.seed, data=data)
    return {
        "file": str(Path(args.run) / PPC_JSON),
        "plots": report["plots"],
        "alpha": report["alpha"],
        "statistics": report["summary"],
    }


COMMANDS = {
    "fit": fit_command,
    "evaluate": evaluate_command,
    "sample": sample_command,
    "label": label_command,
    "ppc": ppc_command,
}


def main(argv: Optional[List[str]] = None) -> int:
    """Run one subcommand; print its result as JSON. Exit code 0; 2 on bad input or an
    output that cannot be written; 128 + the signal (130, 143) when SIGINT or SIGTERM
    stopped a fit, 130 on Ctrl-C elsewhere."""
    args = build_parser().parse_args(argv)
    # Warnings wait for the outcome: a command that fails says so in one line, without
    # the 5 to 13 lines Pyro and torch warn on the way (data of extreme values, say).
    with warnings.catch_warnings(record=True) as caught:
        code, result = _run_command(args)
    if code != 0:
        return code
    for warning in caught:
        warnings.showwarning(warning.message, warning.category, warning.filename, warning.lineno)
    if launched_rank() == 0:  # under torchrun every rank runs this; one prints
        print(json.dumps(result, indent=2))
    return 0


def _run_command(args: argparse.Namespace):
    """The exit code and the result of one subcommand; an error in one line on stderr."""
    try:
        return 0, COMMANDS[args.command](args)
    except PotsInputError as error:
        message, code = f"error: {error}", 2
    except FitInterrupted as stop:
        message, code = str(stop), 128 + stop.signum
    except KeyboardInterrupt:  # Ctrl-C outside a fit's epochs (a fit stops on its own)
        message, code = "interrupted", 130
    except OSError as error:  # a file the OS refuses (permissions, a full disk) anywhere
        where = f" '{error.filename}'" if error.filename else ""
        message, code = f"error:{where} {error.strerror or first_line(error)}", 2
    print(one_line(f"pyro-pots: {message}"), file=sys.stderr)
    return code, None


if __name__ == "__main__":
    sys.exit(main())
