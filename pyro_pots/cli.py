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
  (from one pot, or from the mixture) into an ``.npz`` file.
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
from pyro_pots.plots import pot_samples
from pyro_pots.storage import RunLock, fingerprint, holder
from pyro_pots.storage.checkpoints import check_header, kick_targets, load_trainer_state
from pyro_pots.training.distributed import launched_rank

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


def build_parser() -> argparse.ArgumentParser:
    """The ``pyro-pots`` argument parser, one subcommand each (see the module docstring)."""
    parser = _Parser(
        prog="pyro-pots", description="Discover the modes of a dataset with a mixture VAE."
    )
    commands = parser.add_subparsers(dest="command", required=True)

    fit = commands.add_parser("fit", help="grow a model by the curriculum; write a run directory")
    fit.add_argument("--config", help="YAML config (see examples/configs/)")
    fit.add_argument("--data", help="digits | synthetic[:k=5,...] | a data file (data.spec)")
    fit.add_argument("--out", help="run directory (output.dir)")
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

    evaluate = commands.add_parser("evaluate", help="score a run's model on data")
    evaluate.add_argument("--run", required=True, help="run directory")
    evaluate.add_argument("--data", help="data spec (default: the run's own data)")
    evaluate.add_argument("--output", help="per-row scores CSV (pot, max_resp, entropy, ...)")
    evaluate.add_argument(
        "--samples",
        type=_count(MAX_IMPORTANCE_SAMPLES),
        help="importance-weighted neg_elbo with S draws per pot (default: the plain ELBO)",
    )
    evaluate.add_argument("--overwrite", action="store_true", help="replace an existing --output")

    label = commands.add_parser("label", help="map pots to classes; predict labels")
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

    sample = commands.add_parser("sample", help="draw rows from a run's model")
    sample.add_argument("--run", required=True, help="run directory")
    sample.add_argument("--pot", type=int, help="draw from this open pot (default: the mixture)")
    sample.add_argument("-n", type=_count(MAX_SAMPLE_ROWS), default=16, help="rows to draw")
    sample.add_argument("--seed", type=_seed, default=0)
    sample.add_argument("--out", help="output .npz (default: RUN/samples.npz; never replaced)")

    ppc = commands.add_parser("ppc", help="posterior predictive check of a run")
    ppc.add_argument("--run", required=True, help="run directory")
    ppc.add_argument("--data", help="data spec (default: the run's own data)")
    ppc.add_argument(
        "-n", "--num-samples", type=_count(MAX_REPLICATES), default=100, help="replicates"
    )
    ppc.add_argument("--seed", type=_seed, default=0)
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


def load_run(run: Path):
    """The config and the trained :class:`PotsVAE` of a finished run directory.

    :raises PotsInputError: in one line: no such directory, an unfinished run (no
        ``summary.json``: a fit writing it, or one interrupted), a ``config.yaml`` edited
        since the checkpoint, or a checkpoint that is unreadable or does not fit the config.
    """
    from pyro_pots.training.fitting import CHECKPOINT_FORMAT, new_trainer

    try:
        is_dir = run.is_dir()
        finished = (run / run_dir.SUMMARY).is_file()
    except OSError as error:  # e.g. a name too long for the file system
        raise PotsInputError(f"run directory '{run}': {error.strerror or error}") from None
    if not is_dir:
        raise PotsInputError(f"run directory '{run}' does not exist")
    if not finished:
        writer = holder(run)
        if writer is not None:
            raise PotsInputError(
                f"run '{run}' is being written by another pyro-pots process"
                f"{f' (pid {writer})' if writer else ''}; wait for its fit to end"
            )
        raise PotsInputError(
            f"run '{run}' is not finished (no {run_dir.SUMMARY}): its fit was interrupted or "
            f"failed; go on with `pyro-pots fit --out {run} --resume`"
        )
    cfg = load_config(run / run_dir.CONFIG)
    state = run_dir.load_checkpoint(run)
    dim = check_header(state, run, CHECKPOINT_FORMAT)
    # the weights come from the checkpoint: a placeholder of as many rows as its kick
    # targets (a broadcast view, no memory), for the trainer's per-row state to fit
    targets = kick_targets(state["trainer"])
    rows = len(targets) if isinstance(targets, torch.Tensor) and targets.dim() == 1 else 1
    placeholder = torch.zeros(1, dim)
    trainer = new_trainer(cfg, placeholder.expand(max(rows, 1), dim), placeholder[:0])
    # checked, and a copy of it made to stop as below (load_trainer_state's probe)
    load_trainer_state(trainer, state["trainer"], run / run_dir.CHECKPOINT)
    trainer.finish()  # the final model, as fit() wrote it
    return cfg, trainer


def run_data(run: Path, cfg) -> Dataset:
    """The run's own data, checked against the fingerprint the fit recorded (runs written
    before fingerprints are read as they are).

    :raises PotsInputError: the data cannot be read, or is not the data the run was
        fitted on.
    """
    data = load_data(cfg.data.spec, cfg.model.likelihood)
    marker = run_dir.read_marker(run)
    if marker is not None:
        fingerprint.verify(marker["data"], data, cfg.data.spec, str(run))
    return data


def evaluate_command(args: argparse.Namespace) -> Dict[str, Any]:
    """``pyro-pots evaluate``: the summary numbers of a run's model on data."""
    from pyro_pots.training.fitting import summarize

    run = Path(args.run)
    cfg, trainer = load_run(run)
    out = _new_output(args.output, args.overwrite) if args.output else None
    data = load_data(args.data, cfg.model.likelihood) if args.data else run_data(run, cfg)
    if data.n_features != trainer.vae.decoders.output_layer.weight.shape[-1]:
        raise PotsInputError(
            f"data has {data.n_features} features, the run's model takes "
            f"{trainer.vae.decoders.output_layer.weight.shape[-1]}"
        )
    trainer.train_x = trainer.heldout_x = torch.from_numpy(data.X).to(trainer.device)
    summary = summarize(trainer, data, seconds=0.0)
    for key in ("final_loss", "epochs", "stages", "stop_reason", "time_s"):
        summary.pop(key)
    summary["heldout_loss_note"] = "mixture loss on all rows of this data (nats per row)"
    if out is not None:
        _write_row_scores(run, cfg, trainer, data, args.samples, out)
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


def _training_rows(run: Path, cfg) -> torch.Tensor:
    """The rows the run was trained on: its data, split as fit() split it."""
    train, _ = run_data(run, cfg).split(cfg.data.heldout_fraction, cfg.data.seed)
    return torch.from_numpy(train.X)


def _write_row_scores(run, cfg, trainer, data, samples: Optional[int], out: Path) -> None:
    """Per-row scores of ``data``, compared with the run's own training rows."""
    from pyro_pots import uncertainty

    vae, device = trainer.vae, trainer.device
    calibration = uncertainty.calibrate(vae, _training_rows(run, cfg).to(device), samples)
    scores = uncertainty.row_scores(vae, torch.from_numpy(data.X).to(device), calibration, samples)
    _write_output(out, lambda path: uncertainty.write_scores_csv(scores, path))


def label_command(args: argparse.Namespace) -> Dict[str, Any]:
    """``pyro-pots label``: the pot-to-class map and its votes."""
    from pyro_pots import labels

    run = Path(args.run)
    cfg, trainer = load_run(run)
    out = _new_output(args.output, args.overwrite) if args.output else None
    own = run_data(run, cfg)
    given = labels.read_labels_file(args.labels, own.n_rows)
    data = load_data(args.data, cfg.model.likelihood) if args.data else own
    if data.n_features != own.n_features:
        raise PotsInputError(
            f"data has {data.n_features} features, the run's model takes {own.n_features}"
        )
    result = labels.label_data(trainer.vae, own.X, given, data.X, args.fallback)
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
    """``pyro-pots sample``: decoded draws of one pot or of the mixture, to an ``.npz``."""
    run = Path(args.run)
    cfg, trainer = load_run(run)
    vae = trainer.vae
    open_pots = vae.active.nonzero().squeeze(-1).tolist()
    if args.pot is not None and args.pot not in open_pots:
        raise PotsInputError(f"--pot {args.pot} is not an open pot of this run; open: {open_pots}")
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
    gen = torch.Generator().manual_seed(args.seed)
    if args.pot is not None:
        pots = np.full(args.n, args.pot)
    else:  # the mixture: pots drawn by their share of the training data
        usage = trainer.history[-1]["usage"] if trainer.history else {}
        weights = torch.tensor([max(usage.get(k, 0.0), 1e-12) for k in open_pots])
        pots = np.asarray(open_pots)[torch.multinomial(weights, args.n, True, generator=gen)]
    rows = np.empty((args.n, vae.decoders.output_layer.weight.shape[-1]), dtype=np.float32)
    for pot in np.unique(pots):
        mask = pots == pot
        rows[mask] = pot_samples(vae, [int(pot)], int(mask.sum()), gen)[0]
    try:
        np.savez(out, X=rows, pot=pots)
    except OSError as error:
        if out.is_file():  # np.savez created it, then failed (a full disk)
            out.unlink(missing_ok=True)
        reason = error.strerror or error
        raise PotsInputError(f"--out '{out}': cannot be written ({reason})") from None
    return {"file": str(out), "rows": args.n, "pots": sorted(set(int(p) for p in pots))}


def ppc_command(args: argparse.Namespace) -> Dict[str, Any]:
    """``pyro-pots ppc``: a posterior predictive check of a run."""
    from pyro_pots.ppc import PPC_JSON, check_run

    run = Path(args.run)
    cfg, _ = load_run(run)  # a finished run whose checkpoint fits its config
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
