"""
A fitted run: the config, the final :class:`~pyro_pots.model.PotsVAE`, its history and its
decisions, read from a run directory by :func:`load_run` without any training machinery.

::

    run = pyro_pots.load_run("runs/fit")
    run.model                     # the PotsVAE, eval mode, its final open set
    run.predict(x)                # pot ids; run.predict_proba(x): responsibilities
    run.score_samples(x)          # per-row bound on log p(x), as `evaluate --output`

The methods shared with :class:`~pyro_pots.estimator.PotsMixture` live here, in
:class:`PotsPredictions`, so that both answer with one implementation. So does the one
reading of a run: the command line's ``evaluate``, ``label``, ``sample`` and ``ppc`` read
runs through :func:`load_run` (and :func:`run_data`), with the same checks and one-line
refusals (``docs/reliability.md``).
"""

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple, Union

import numpy as np
import torch
from sklearn.utils import check_random_state

from pyro_pots import run_dir, uncertainty
from pyro_pots.config import Config, load_config, model_kwargs
from pyro_pots.data import Dataset, load_data
from pyro_pots.errors import PotsInputError, first_line
from pyro_pots.model import PotsVAE
from pyro_pots.storage import fingerprint, holder
from pyro_pots.storage.checkpoints import check_finished_state, check_header


def as_rows(X: Any, model: PotsVAE, where: str = "X") -> torch.Tensor:
    """``X`` (numpy, torch or array-like, any real dtype) as float32 rows on ``model``'s
    device, checked as the data loaders check a file (:class:`~pyro_pots.data.Dataset`),
    then against the model: its number of features and its likelihood's support.

    :raises PotsInputError: in one line naming ``where``.
    """
    data = as_dataset(X, where)
    check_fits(data, model)
    return torch.from_numpy(data.X).to(model.active.device)


def check_fits(data: Dataset, model: PotsVAE) -> None:
    """Raise :class:`PotsInputError` unless ``data`` has ``model``'s number of features
    and lies in its likelihood's support."""
    dim = model_features(model)
    if data.n_features != dim:
        raise PotsInputError(
            f"dataset '{data.name}': {data.n_features} features, the model takes {dim}"
        )
    data.check_support(model.likelihood.kind)


def as_dataset(X: Any, where: str = "X") -> Dataset:
    """``X`` as a checked :class:`~pyro_pots.data.Dataset` named ``where`` (float32, 2-D,
    finite); a torch tensor is detached and moved to the CPU first."""
    try:
        if isinstance(X, torch.Tensor):
            X = X.detach().cpu()
            if X.is_floating_point() and X.dtype not in (torch.float32, torch.float64):
                X = X.float()  # half and bfloat16 have no numpy dtype; float32 holds them
            X = X.numpy()
        elif not isinstance(X, np.ndarray):
            X = np.asarray(X)
    except (TypeError, ValueError, RuntimeError) as error:  # ragged lists, sparse tensors
        raise PotsInputError(f"dataset '{where}': not an array ({first_line(error)})") from None
    return Dataset(X=X, name=where)


def model_features(model: PotsVAE) -> int:
    """The number of features ``model`` takes."""
    return int(model.encoder.trunk.in_features)


class PotsPredictions:
    """
    What a fitted model answers about rows: :meth:`predict`, :meth:`predict_proba`,
    :meth:`score_samples`, :meth:`score` and :meth:`sample`. A subclass supplies the
    model (:meth:`_fitted_model`) and the mixture's calibration on its training rows
    (:meth:`_fitted_calibration`, the weights and medians `evaluate --output` uses).
    """

    def _fitted_model(self) -> PotsVAE:
        raise NotImplementedError

    def _fitted_calibration(self) -> uncertainty.Calibration:
        raise NotImplementedError

    def predict_proba(self, X: Any) -> np.ndarray:
        """The responsibilities of each row over the open pots, ``(N, n_pots)``, columns in
        increasing pot id (``pots_``); each row sums to 1."""
        model = self._fitted_model()
        x = as_rows(X, model)
        return model.responsibilities(x)[:, model.open_ids()].cpu().double().numpy()

    def predict(self, X: Any) -> np.ndarray:
        """Each row's pot id: its most responsible open pot, ``(N,)``."""
        pots = self._fitted_model().open_ids().cpu().numpy()
        return pots[self.predict_proba(X).argmax(-1)]

    def score_samples(self, X: Any) -> np.ndarray:
        """Per row, a lower bound on ``log p(x)`` under the mixture the model defines:
        minus the ``neg_elbo`` column of ``pyro-pots evaluate --output`` (one seeded
        draw of z per row and pot; the noise follows the rows' positions in ``X``)."""
        model = self._fitted_model()
        scores = uncertainty.row_scores(model, as_rows(X, model), self._fitted_calibration())
        return -scores["neg_elbo"]

    def score(self, X: Any, y: Any = None) -> float:
        """The mean of :meth:`score_samples` (``y`` is ignored)."""
        return float(self.score_samples(X).mean())

    def _sample(self, n_samples: int, random_state: Any) -> Tuple[np.ndarray, np.ndarray]:
        """``(X, pot)``: ``n_samples`` draws from the model (see :meth:`sample`)."""
        if isinstance(n_samples, bool) or not isinstance(n_samples, (int, np.integer)):
            raise PotsInputError(f"n_samples must be an integer >= 1, got {n_samples!r}")
        if n_samples < 1:
            raise PotsInputError(f"n_samples must be an integer >= 1, got {n_samples}")
        model = self._fitted_model()
        seed = int(check_random_state(random_state).randint(np.iinfo(np.int32).max))
        return sample_mixture(model, self._fitted_calibration().weights, int(n_samples), seed)


@torch.no_grad()
def sample_mixture(
    model: PotsVAE, weights: torch.Tensor, n: int, seed: int
) -> Tuple[np.ndarray, np.ndarray]:
    """``n`` draws of the mixture: a pot by ``weights`` (over the open pots), ``z ~ N(0,
    I)``, then ``x ~ p(x | decode(z))``, a draw of the likelihood (not its mean).

    :returns: ``(X, pot)``: float32 rows ``(n, D)`` and their pot ids ``(n,)``.
    """
    device = model.active.device
    pots = model.open_ids()
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(seed)  # the caller's RNGs are left as they were
        probs = (weights / weights.sum()).to(device)
        drawn = pots[torch.multinomial(probs, n, replacement=True)]
        rows = torch.empty(n, model_features(model), device=device)
        for pot in drawn.unique():
            mask = drawn == pot
            z = torch.randn(1, int(mask.sum()), model.latent_dim, device=device)
            rows[mask] = model.likelihood(model.decode(z, pot)).sample()[0]
    return rows.cpu().numpy(), drawn.cpu().numpy()


@dataclass(eq=False)
class FittedRun(PotsPredictions):
    """
    A finished run read by :func:`load_run`.

    :ivar Config config: the run's resolved config (``config.yaml``).
    :ivar PotsVAE model: the final model, in eval mode, on the CPU, with its final open set.
    :ivar list history: one dict per epoch (the columns of ``history.csv``).
    :ivar list stages: the stage manager's decisions (``stages.json``).
    :ivar dict summary: ``summary.json``.
    :ivar path: the run directory (None for a run built in memory).
    :ivar calibration: the mixture weights and per-pot medians of the training rows
        (:class:`~pyro_pots.uncertainty.Calibration`), computed on first use.

    :meth:`predict` and :meth:`predict_proba` need only the model; :meth:`score_samples`,
    :meth:`score` and :meth:`sample` need the mixture weights of the run's training rows,
    read once from the run's own data (``data.spec``, checked against its fingerprint).
    """

    config: Config
    model: PotsVAE
    history: List[Dict[str, Any]]
    stages: List[Dict[str, Any]]
    summary: Dict[str, Any]
    path: Optional[Path] = None
    calibration: Optional[uncertainty.Calibration] = field(default=None, repr=False, compare=False)

    @property
    def pots(self) -> np.ndarray:
        """The open pot ids, increasing."""
        return self.model.open_ids().cpu().numpy()

    def _fitted_model(self) -> PotsVAE:
        return self.model

    def _fitted_calibration(self) -> uncertainty.Calibration:
        if self.calibration is None:
            if self.path is None:
                raise PotsInputError("this run has no directory to read its training rows from")
            rows = training_rows(self.path, self.config).to(self.model.active.device)
            self.calibration = uncertainty.calibrate(self.model, rows, None)
        return self.calibration

    @property
    def weights(self) -> np.ndarray:
        """The mixture weights over the open pots (the training rows' mean
        responsibilities; reads the run's data once)."""
        return self._fitted_calibration().weights.cpu().double().numpy()

    def sample(self, n_samples: int = 1, random_state: Any = None) -> Tuple[np.ndarray, np.ndarray]:
        """``(X, pot)``: ``n_samples`` rows drawn from the model. A pot is drawn by the
        mixture weights, ``z ~ N(0, I)``, then ``x ~ p(x | decode(z))`` (real draws of the
        likelihood, not decoder means); ``random_state`` as in scikit-learn."""
        return self._sample(n_samples, random_state)


def load_run(path: Union[str, Path]) -> FittedRun:
    """Read a finished run directory: config, final model, history and decisions.

    The model is built from the config and the checkpoint's weights; a split the budget
    cut before it was judged is undone (the pre-split weights, the pending pot closed), as
    :meth:`CurriculumTrainer.finish` does at the end of a fit.

    :param path: the run directory.
    :raises PotsInputError: in one line: no such directory, an unfinished run (no
        ``summary.json``: the line names ``fit --resume``, or the pid of the fit writing
        it), a ``config.yaml`` edited since the checkpoint, or a checkpoint that is
        unreadable or does not fit the model its config builds.
    """
    run = Path(path)
    cfg, model, history = _read_model(run)
    return FittedRun(
        config=cfg,
        model=model,
        history=history,
        stages=_read_json(run / run_dir.STAGES, list),
        summary=_read_json(run / run_dir.SUMMARY, dict),
        path=run,
    )


def load_model(path: Union[str, Path]) -> Tuple[Config, PotsVAE]:
    """The config and final model of a finished run, as :func:`load_run` reads them, for a
    tool that needs nothing else of the run (the posterior predictive check): only
    ``config.yaml``, ``checkpoint.pt`` and the ``summary.json`` that marks it finished are
    read.

    :param path: the run directory.
    :returns: ``(config, model)``, the model in eval mode on the CPU.
    :raises PotsInputError: as :func:`load_run`.
    """
    cfg, model, _ = _read_model(Path(path))
    return cfg, model


def _read_model(run: Path) -> Tuple[Config, PotsVAE, List[Dict[str, Any]]]:
    """The one reading of a finished run's model, for :func:`load_run`, :func:`load_model`
    and every command that reads a run: finished (else the line names ``fit --resume``),
    its ``config.yaml`` the one its checkpoint was written with, and the checkpoint checked
    against the model the config builds
    (:func:`~pyro_pots.storage.checkpoints.check_finished_state`) before its weights are
    loaded."""
    check_finished(run)
    cfg = load_config(run / run_dir.CONFIG)
    state = run_dir.load_checkpoint(run)
    dim = check_header(state, run, run_dir.CHECKPOINT_FORMAT)
    where = run / run_dir.CHECKPOINT
    # the initial weights are replaced: drawing them must not move the caller's RNG
    with torch.random.fork_rng(devices=[]):
        model = PotsVAE(dim, **model_kwargs(cfg))
    check_finished_state(state["trainer"], model, where)
    try:
        weights, pots, history = _final_state(state["trainer"])
        model.load_state_dict(weights)
        model.open_pots(pots)
    except Exception as error:  # any state that does not fit: one line naming the file
        raise PotsInputError(
            f"checkpoint '{where}' does not fit the run's config: "
            f"{type(error).__name__}: {first_line(error)}"
        ) from None
    return cfg, model.eval(), history


def check_finished(run: Path) -> None:
    """Refuse, in one line, a run that is not finished (no ``summary.json``): one a fit is
    writing (its lock is held: the line names the pid) or one interrupted (the line names
    ``fit --resume``), and a path that is not a directory.

    :raises PotsInputError: naming the run.
    """
    try:
        is_dir = run.is_dir()
        finished = (run / run_dir.SUMMARY).is_file()
    except (OSError, ValueError) as error:  # a name too long; a NUL byte
        reason = error.strerror if isinstance(error, OSError) and error.strerror else error
        raise PotsInputError(f"run directory '{run}': {reason}") from None
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


def _final_state(trainer: Dict[str, Any]) -> Tuple[Dict[str, torch.Tensor], List[int], list]:
    """The final weights, open pots and history in a checkpoint's trainer state: with a
    split pending (the budget ran out before it was judged), the pre-split weights and
    the open set without the pending pot, which is what ``finish()`` restores."""
    manager = trainer["manager"]
    pots = [int(pot) for pot in manager["open"]]
    weights = trainer["vae"]
    pending = manager.get("pending")
    if pending is not None:
        weights = trainer["pre_split"]["state"]["vae"]
        pots.remove(int(pending["pot"]))
    history = trainer["history"]
    if not isinstance(history, list):
        raise TypeError("the history is not a list")
    return weights, pots, list(history)


def _read_json(path: Path, kind: type) -> Any:
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise PotsInputError(f"cannot read '{path}': {first_line(error)}") from None
    if not isinstance(value, kind):
        raise PotsInputError(f"'{path}' does not hold a JSON {kind.__name__}")
    return value


def run_data(run: Path, cfg: Config) -> Dataset:
    """The run's own data (``data.spec``), checked against the fingerprint the fit
    recorded (runs written before fingerprints are read as they are).

    :raises PotsInputError: the data cannot be read, or is not the data the run was
        fitted on.
    """
    data = load_data(cfg.data.spec, cfg.model.likelihood)
    marker = run_dir.read_marker(run)
    if marker is not None:
        fingerprint.verify(marker["data"], data, cfg.data.spec, str(run))
    return data


def training_rows(run: Path, cfg: Config, data: Optional[Dataset] = None) -> torch.Tensor:
    """The rows the run was trained on: its data (``data`` when already read by
    :func:`run_data`), split as the fit split it."""
    data = run_data(run, cfg) if data is None else data
    train, _ = data.split(cfg.data.heldout_fraction, cfg.data.seed)
    return torch.from_numpy(train.X)
