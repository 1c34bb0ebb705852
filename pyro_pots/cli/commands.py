"""What each ``pyro-pots`` subcommand does (:data:`COMMANDS`): each takes the parsed
arguments and returns its result as a JSON-ready dict, or raises
:class:`~pyro_pots.errors.PotsInputError` with the one line :func:`pyro_pots.cli.main` prints."""

import argparse
import sys
from pathlib import Path
from typing import Any, Dict, List, Optional

import numpy as np
import torch

from pyro_pots import run_dir
from pyro_pots.config import load_config
from pyro_pots.data import Dataset, load_data
from pyro_pots.errors import PotsInputError, first_line
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
