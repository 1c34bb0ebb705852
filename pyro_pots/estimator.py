"""
:class:`PotsMixture`: the curriculum as a scikit-learn estimator, in the manner of
:class:`sklearn.mixture.GaussianMixture`.

::

    from pyro_pots import PotsMixture
    est = PotsMixture(config={"train.max_epochs": 300}).fit(X)
    est.labels_, est.n_pots_, est.predict_proba(X), est.score_samples(X)
    X_new, pot = est.sample(64)
    est.save("runs/mine")          # a run directory: pyro-pots evaluate --run runs/mine

``fit`` runs in memory (no files, no change of the current directory, the torch thread
count and the global random state put back afterwards); :meth:`PotsMixture.save` writes a
normal run directory on request.
"""

import contextlib
import copy
import os
import time
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any, Iterator, List, Optional, Tuple, Union

import numpy as np
import torch
import yaml
from pyro.util import get_rng_state, set_rng_state
from sklearn.base import BaseEstimator, ClusterMixin, DensityMixin
from sklearn.utils import check_random_state
from sklearn.utils.validation import check_is_fitted
from tqdm import tqdm

from pyro_pots import run_dir, uncertainty
from pyro_pots.config import (
    Config,
    config_to_dict,
    load_config,
    model_kwargs,
    resolve_likelihood,
    save_config,
)
from pyro_pots.errors import PotsInputError, first_line
from pyro_pots.fitted_run import PotsPredictions, as_dataset, check_fits, model_features
from pyro_pots.model import PotsVAE
from pyro_pots.model.guides import LOGITS_GUIDES
from pyro_pots.model.networks import Encoder, PotDecoders
from pyro_pots.model.priors import LOGIT_PRIORS, LogitMoGPrior
from pyro_pots.storage import RunStaging, fingerprint
from pyro_pots.training.fitting import (
    NonFiniteGuard,
    RunEnd,
    steps_per_epoch,
    summarize,
    write_outputs,
)
from pyro_pots.training.trainer import CurriculumTrainer


class PotsMixture(PotsPredictions, ClusterMixin, DensityMixin, BaseEstimator):
    """
    A mixture of VAEs whose number of components (pots) the curriculum finds: it opens
    pots one at a time while the held-out data support them (``docs/curriculum.md``).

    :param config: the run configuration, with the keys of the YAML file: nested
        (``{"train": {"max_epochs": 50}}``), dotted (``{"train.max_epochs": 50}``) or a
        :class:`~pyro_pots.config.Config`; None for the defaults. Checked at :meth:`fit`
        with the CLI's one-line :class:`~pyro_pots.errors.PotsInputError`. ``data.spec``
        and ``output.dir`` are not used (the data is ``X``); ``data.heldout_fraction`` and
        ``data.seed`` choose the held-out rows that judge the stages.
    :param PotsVAE model: a model to train instead of one built from the config (a swapped
        logit prior, logits guide, routing or networks). The config's ``model`` section is
        then ignored (``model.num_pots`` is taken from it, and ``config_`` describes it
        where the config can), its number of features must be ``X``'s, and :meth:`fit`
        trains this object in place: ``model_`` is ``model``. Its open set is the
        curriculum's (one pot at the start).
    :param random_state: an int seeds the fit (``train.seed``: initialisation and batches)
        and :meth:`sample`; None keeps the config's ``train.seed`` for the fit, and
        :meth:`sample` draws fresh randomness, as scikit-learn does.
    :param bool progress: show a tqdm bar while fitting.

    Fitted attributes: ``n_pots_`` (open pots), ``pots_`` (their ids, increasing; the
    columns of :meth:`predict_proba`), ``labels_`` (each fitted row's pot id), ``weights_``
    (mixture weights over ``pots_``: the training rows' mean responsibilities),
    ``model_`` (the :class:`~pyro_pots.model.PotsVAE`), ``history_`` (one dict per
    epoch), ``stages_`` (the decision log, as ``stages.json``), ``config_`` (the resolved
    :class:`~pyro_pots.config.Config`), ``summary_`` (as ``summary.json``) and
    ``n_features_in_``.
    """

    def __init__(
        self,
        config: Union[Mapping, Config, None] = None,
        model: Optional[PotsVAE] = None,
        random_state: Any = None,
        progress: bool = False,
    ) -> None:
        self.config = config
        self.model = model
        self.random_state = random_state
        self.progress = progress

    # -- fitting ------------------------------------------------------------------------
    def fit(self, X: Any, y: Any = None) -> "PotsMixture":
        """Grow the model on ``X`` by the curriculum.

        :param X: ``(N, D)`` rows: numpy, torch or array-like, float32 or float64 (cast to
            float32), finite; in ``[0, 1]`` for the Bernoulli likelihoods (with
            ``model.likelihood: auto``, Bernoulli is chosen only for such data).
        :param y: ignored.
        :returns: self.
        :raises PotsInputError: bad config or data, in one line.
        :raises TrainingFailed: the model cannot train on this data (every step
            non-finite).
        """
        cfg, describable = resolve_config(self.config, self.model, self.random_state)
        data = as_dataset(X)
        if self.model is not None:
            check_fits(data, self.model)
        else:  # model.likelihood: auto is named by the data before the model is built
            cfg = resolve_likelihood(cfg, data)
            data.check_support(cfg.model.likelihood)
        train, held = data.split(cfg.data.heldout_fraction, cfg.data.seed)
        start = time.perf_counter()
        with _fit_scope(cfg.train.threads):
            trainer = CurriculumTrainer.from_config(
                cfg, torch.from_numpy(train.X), torch.from_numpy(held.X), model=self.model
            )
            _run(trainer, cfg, train.n_rows, self.progress)
            state = copy.deepcopy(trainer.state_dict())  # what fit() checkpoints: pre-finish
            trainer.finish()
            calibration = uncertainty.calibrate(trainer.vae, trainer.train_x, None)
            end = RunEnd.of(trainer, time.perf_counter() - start)
            summary = summarize(
                trainer.vae, data, trainer.evaluate(full=False)["heldout_loss"], end
            )
        self.model_ = trainer.vae.eval()
        self.config_ = cfg
        self.history_ = trainer.history
        self.stages_ = run_dir.plain(trainer.manager.log)
        self.summary_ = run_dir.plain(summary)
        self.pots_ = self.model_.open_ids().cpu().numpy()
        self.n_pots_ = len(self.pots_)
        self.n_features_in_ = data.n_features
        self._calibration = calibration
        self.weights_ = calibration.weights.cpu().double().numpy()
        self._trainer_state = state
        self._describable = describable
        self._fit_data = data  # float32 rows: what save() writes as the run's data
        self.labels_ = self.predict(data.X)
        return self

    # -- what a fitted model answers (one implementation: fitted_run.PotsPredictions) ---
    def _fitted_model(self) -> PotsVAE:
        check_is_fitted(self, "model_")
        return self.model_

    def _fitted_calibration(self) -> uncertainty.Calibration:
        check_is_fitted(self, "model_")
        return self._calibration

    def sample(self, n_samples: int = 1, random_state: Any = None) -> Tuple[np.ndarray, np.ndarray]:
        """``(X, pot)``: ``n_samples`` rows drawn from the fitted model: a pot by
        ``weights_``, ``z ~ N(0, I)``, then ``x ~ p(x | decode(z))`` (real draws of the
        likelihood, not decoder means: 0/1 for Bernoulli).

        :param random_state: seeds the draws; defaults to the estimator's ``random_state``.
        """
        chosen = self.random_state if random_state is None else random_state
        return self._sample(n_samples, chosen)

    # -- a run directory ------------------------------------------------------------------
    def save(
        self, path: Union[str, Path], overwrite: bool = False, plots: Optional[bool] = None
    ) -> Path:
        """Write a normal run directory (``config.yaml``, ``checkpoint.pt``,
        ``history.csv``, ``stages.json``, ``assignments.csv``, ``summary.json``, the
        marker ``run.json``) that ``pyro-pots evaluate --run`` and
        :func:`~pyro_pots.load_run` read. The fitted rows are written as ``data.npy``
        (the run's ``data.spec``), so the commands that reread the run's data work.

        :param path: the run directory: a new or empty one, or with ``overwrite`` an
            existing run (replaced only when every file in it is a run's own).
        :param plots: write ``plots/``; defaults to the config's ``output.plots``.
        :returns: ``path``.
        :raises PotsInputError: the directory cannot be written or is not replaceable, or
            the model is one the config cannot describe (see :class:`PotsMixture`).
        """
        check_is_fitted(self, "model_")
        if not self._describable:
            raise PotsInputError(
                "the model given to PotsMixture(model=...) has parts the config cannot "
                "describe, and a run directory rebuilds its model from config.yaml; save "
                "model_.state_dict() instead"
            )
        out = Path(path)
        cfg = replace(
            self.config_,
            data=replace(self.config_.data, spec=os.path.realpath(out / run_dir.DATA)),
            output=replace(self.config_.output, dir=str(out), overwrite=bool(overwrite)),
        )
        staging = RunStaging(out, overwrite=bool(overwrite))
        try:
            work = staging.open()
            try:
                self._write_run(work, cfg, cfg.output.plots if plots is None else plots)
            except OSError as error:
                staging.discard(keep_resumable=False)
                raise PotsInputError(
                    f"run directory '{out}': cannot be written "
                    f"({error.strerror or first_line(error)})"
                ) from None
            except BaseException:
                staging.discard(keep_resumable=False)
                raise
            staging.commit()
        finally:
            staging.close()
        return out

    def _write_run(self, work: Path, cfg: Config, with_plots: bool) -> None:
        """The files of :meth:`save`: the fitted rows, then what a fit writes, in its order
        (:func:`~pyro_pots.training.fitting.write_outputs`: the summary last, since a run
        directory with a summary is a finished run)."""
        data, model = self._fit_data, self.model_
        np.save(work / run_dir.DATA, data.X)
        save_config(cfg, work / run_dir.CONFIG)
        run_dir.write_marker(fingerprint.fingerprint(data), work)
        checkpoint = {
            "format": run_dir.CHECKPOINT_FORMAT,
            "data_dim": data.n_features,
            "config_sha256": run_dir.file_sha256(work / run_dir.CONFIG),
            "trainer": self._trainer_state,
            "time_s": self.summary_.get("time_s", 0.0),
        }
        run_dir.save_checkpoint(checkpoint, work)
        resp = (self.pots_.tolist(), self.predict_proba(data.X))
        write_outputs(
            model, self.history_, self.stages_, data, self.summary_, resp, work, with_plots
        )


def _run(trainer: CurriculumTrainer, cfg: Config, rows: int, progress: bool) -> None:
    """``trainer.run()`` with :func:`pyro_pots.fit`'s guard against a model that cannot
    train, and an optional progress bar."""
    guard = NonFiniteGuard(cfg.train.bad_step_patience, steps_per_epoch(cfg, rows))
    bar = tqdm(total=cfg.train.max_epochs, desc="pyro-pots", unit="epoch", disable=not progress)

    def on_epoch(row: dict) -> None:
        guard.observe(row)
        bar.set_postfix(
            stage=row["stage"], pots=row["n_open"], heldout=f"{row['heldout_loss']:.3f}"
        )
        bar.update()

    with bar:
        trainer.run(on_epoch)
    guard.check_trained(trainer.history)


@contextlib.contextmanager
def _fit_scope(threads: int) -> Iterator[None]:
    """The fit's torch thread count (``train.threads``), and the global random state the
    trainer seeds, for this block only: the caller's are put back after it."""
    before, rng = torch.get_num_threads(), get_rng_state()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)
        set_rng_state(rng)


# -- the config -------------------------------------------------------------------------
def resolve_config(
    config: Union[Mapping, Config, None], model: Optional[PotsVAE] = None, random_state: Any = None
) -> Tuple[Config, bool]:
    """The :class:`Config` of ``PotsMixture(config, model, random_state)``, through
    :func:`~pyro_pots.config.load_config` (the CLI's checks and messages), and whether
    it describes the model (always, unless ``model`` has parts no config key names).

    :raises PotsInputError: an unknown section or key, or a bad value, in one line.
    """
    overrides = config_overrides(config)
    if random_state is not None:
        seed = random_state
        if not isinstance(seed, (int, np.integer)) or isinstance(seed, bool):
            seed = check_random_state(random_state).randint(np.iinfo(np.int32).max)
        overrides.append(f"train.seed={int(seed)}")
    if model is None:
        return load_config(None, overrides), True
    if not isinstance(model, PotsVAE):
        raise PotsInputError(f"model must be a PotsVAE, got {type(model).__name__}")
    # the curriculum needs the model's K_max; the rest is recorded where keys can say it
    needed = [f"model.num_pots={model.num_pots}", f"model.likelihood={model.likelihood.kind}"]
    described = _describe(model)
    if described is not None:
        try:
            cfg = load_config(None, overrides + described)
        except PotsInputError:  # a value outside the config's ranges: not describable
            pass
        else:
            return cfg, _rebuilds(cfg, model)
    return load_config(None, overrides + needed), False


def config_overrides(config: Union[Mapping, Config, None]) -> List[str]:
    """``config`` (nested, dotted or a :class:`Config`) as ``section.key=value``
    overrides for :func:`~pyro_pots.config.load_config`."""
    if config is None:
        return []
    if isinstance(config, Config):
        config = config_to_dict(config)
    if not isinstance(config, Mapping):
        raise PotsInputError(
            f"config must be a mapping of 'section.key' or section -> {{key: value}}, "
            f"got {type(config).__name__}"
        )
    items = []
    for name, value in config.items():
        if isinstance(value, Mapping) and "." not in str(name):
            items += [(f"{name}.{key}", inner) for key, inner in value.items()]
        else:
            items.append((str(name), value))
    return [f"{name}={_yaml_value(name, value)}" for name, value in items]


def _yaml_value(name: str, value: Any) -> str:
    """``value`` as the YAML text an override holds (read back as the same value)."""
    if isinstance(value, np.generic):
        value = value.item()
    try:
        text = yaml.safe_dump(value, default_flow_style=True, width=float("inf"))
    except yaml.YAMLError:
        raise PotsInputError(
            f"config key '{name}': a {type(value).__name__} is not a config value"
        ) from None
    return text.strip().removesuffix("\n...").strip()


def _describe(model: PotsVAE) -> Optional[List[str]]:
    """Overrides that rebuild ``model``'s architecture and parts, or None when a part has
    no config name (a prior or guide of the user's own, other networks)."""
    prior = _name_of(model.logit_prior, LOGIT_PRIORS)
    guide = _name_of(model.logits_guide, LOGITS_GUIDES)
    if prior is None or guide is None:
        return None
    if type(model.encoder) is not Encoder or type(model.decoders) is not PotDecoders:
        return None
    keys = {
        "model.num_pots": model.num_pots,
        "model.latent_dim": model.latent_dim,
        "model.hidden_dim": model.encoder.trunk.out_features,
        "model.decoder_hidden_dim": model.decoders.hidden_layer.weight.shape[-1],
        "model.likelihood": model.likelihood.kind,
        "model.responsibility_kl": model.responsibility_kl,
        "routing.mode": model.routing,
        "routing.temperature": model.temperature,
        "prior.kind": prior,
        "prior.logits_guide": guide,
    }
    if isinstance(model.logit_prior, LogitMoGPrior):
        keys.update({"prior.M": model.logit_prior.M, "prior.sigma": model.logit_prior.sigma})
    return [f"{key}={_yaml_value(key, value)}" for key, value in keys.items()]


def _name_of(part: Any, table: dict) -> Optional[str]:
    return next((name for name, kind in table.items() if type(part) is kind), None)


def _rebuilds(cfg: Config, model: PotsVAE) -> bool:
    """Whether ``PotsVAE(D, **model_kwargs(cfg))`` has ``model``'s parameters and
    buffers, shape for shape (what loading a run directory needs)."""
    if type(model) is not PotsVAE:
        return False
    with torch.random.fork_rng(devices=[]):  # its random initial weights are not wanted
        rebuilt = PotsVAE(model_features(model), **model_kwargs(cfg)).state_dict()
    own = model.state_dict()
    return rebuilt.keys() == own.keys() and all(rebuilt[key].shape == own[key].shape for key in own)
