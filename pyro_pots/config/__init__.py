"""
Run configuration: one YAML file with the sections ``data``, ``model``, ``prior``,
``routing``, ``curriculum``, ``train``, ``grow`` and ``output``, validated when it is loaded.

Example file (every key is optional; a key that is not set takes its default)::

    data:
      spec: synthetic:k=5,d=20
    model:
      num_pots: 12
    prior:
      sigma: 1.5

and its use::

    cfg = load_config("run.yaml", overrides=["train.lr=3e-4", "routing.mode=softmax"])
    dataset = load_data(cfg.data.spec, cfg.model.likelihood)
    cfg = resolve_likelihood(cfg, dataset)  # model.likelihood: auto -> bernoulli or normal
    vae = PotsVAE(dataset.X.shape[1], **model_kwargs(cfg))

Defaults have one source. A key that is an argument of a model-side callable takes that
callable's default, read from its signature (:class:`~pyro_pots.model.PotsVAE`,
:class:`~pyro_pots.model.LogitMoGPrior`, :class:`~pyro_pots.handlers.KickMessenger`); the
other defaults are set in the section tables (:mod:`pyro_pots.config.sections`). The
training defaults (``train.batch_size``, ``train.lr``, ``train.seed``, ``prior.lam_max``)
are set there too, since the config does not import the training code above it;
:func:`~pyro_pots.training.svi_fit.fit_svi` and
:func:`~pyro_pots.training.svi_fit.lambda_schedule` keep equal signature defaults, which a
test compares. The allowed names of priors, logits guides, likelihoods and routing
modes are those of the library's tables (``LOGIT_PRIORS``, ``LOGITS_GUIDES``,
``LIKELIHOODS``, ``ROUTING_MODES``).

Overrides ``section.key=value`` are applied after the file; the value is read as YAML, so
``3`` is an integer, ``0.5`` and ``1e-3`` are numbers, ``true`` is a boolean and anything
else is a string. An integer is accepted where a number is expected; a boolean is not an
integer, and a quoted ``"0.5"`` is a string, not a number.

Bad input (an unreadable or invalid file, an unknown section or key, a value of the wrong
type or out of range) raises :class:`~pyro_pots.errors.PotsInputError` with one line that
names the file, override or dotted key and says what is allowed.

Input is bounded before it is trusted: a config file must be a regular file (after symlinks
are followed) of at most :data:`MAX_CONFIG_BYTES`; a YAML document (a file, or an override's
value) may expand, aliases counted at their full size, to at most :data:`MAX_YAML_NODES`
values, and an alias to a node that contains it is refused; an integer literal longer than
:data:`MAX_INT_CHARS` characters is refused by every key (it is never converted); every
integer key has an upper bound; and a message quotes at most a short prefix of a value.

The package: :mod:`~pyro_pots.config.sections` (the tables),
:mod:`~pyro_pots.config.rules` (what a key accepts), :mod:`~pyro_pots.config.yaml_io`
(bounded reading and writing), :mod:`~pyro_pots.config.overrides` (names and merging) and
:mod:`~pyro_pots.config.reference` (this reference).

The reference of every key follows (generated from the section tables, so it shows the
defaults in force).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

from pyro_pots.config.overrides import add_file, add_override
from pyro_pots.config.reference import reference
from pyro_pots.config.sections import (
    SECTIONS,
    Config,
    CurriculumConfig,
    DataConfig,
    GrowConfig,
    ModelConfig,
    OutputConfig,
    PriorConfig,
    RoutingConfig,
    TrainConfig,
)
from pyro_pots.config.yaml_io import (
    MAX_CONFIG_BYTES,
    MAX_INT_CHARS,
    MAX_YAML_NODES,
    dump_yaml,
    read_yaml,
)
from pyro_pots.data.dataset import (
    AUTO_LIKELIHOOD,
    AUTO_SCALING,
    Dataset,
    auto_likelihood,
    auto_scaling,
)
from pyro_pots.errors import PotsInputError
from pyro_pots.model.priors import LogitMoGPrior

__all__ = [
    "MAX_CONFIG_BYTES",
    "MAX_INT_CHARS",
    "MAX_YAML_NODES",
    "Config",
    "CurriculumConfig",
    "DataConfig",
    "GrowConfig",
    "ModelConfig",
    "OutputConfig",
    "PriorConfig",
    "RoutingConfig",
    "TrainConfig",
    "config_to_dict",
    "default_config",
    "load_config",
    "model_kwargs",
    "resolve_likelihood",
    "save_config",
]

#: section name -> its dataclass, in file order (the name this module always had).
_SECTIONS = SECTIONS


def default_config() -> Config:
    """The configuration with every key at its default.

    :returns: ``Config()``.
    """
    return Config()


def load_config(path: str | Path | None = None, overrides: Sequence[str] = ()) -> Config:
    """Read a YAML config, merge it over the defaults, apply overrides, and validate.

    Sections and keys may be left out (partial sections are fine); an empty file gives the
    defaults.

    :param path: the YAML file, or None for the defaults alone.
    :param overrides: ``section.key=value`` items applied after the file, in order; each
        value is read as YAML (``3`` int, ``0.5`` float, ``true`` bool, else a string).
    :returns: the validated configuration.
    :raises PotsInputError: on a missing, unreadable or invalid file, a top level that is
        not a mapping, an unknown section or key, a malformed override, a value of the wrong
        type or out of range, or ``curriculum.start_pots > model.num_pots``; the one-line
        message names the file, override or dotted key.
    """
    if isinstance(overrides, str):  # a lone string would be iterated per character
        overrides = [overrides]
    tree: dict[str, dict[str, Any]] = {section: {} for section in SECTIONS}
    if path is not None:
        add_file(tree, read_yaml(Path(path)))
    for override in overrides:
        add_override(tree, override)
    sections = {name: SECTIONS[name](**values) for name, values in tree.items()}
    return Config(**sections)


def config_to_dict(cfg: Config) -> dict[str, dict[str, Any]]:
    """The configuration as plain nested dicts ``{section: {key: value}}``, in file order.

    :param cfg: a configuration.
    :returns: a dict that :func:`save_config` writes and :func:`load_config` reads back.
    """
    return asdict(cfg)


def save_config(cfg: Config, path: str | Path) -> None:
    """Write ``cfg`` as YAML, every key spelled out, so that ``load_config(path) == cfg``.

    :param cfg: a configuration.
    :param path: the file to write (replaced if it exists).
    :raises PotsInputError: if the file cannot be written.
    """
    text = dump_yaml(config_to_dict(cfg))
    try:
        Path(path).write_text("# pyro-pots config\n" + text, encoding="utf-8")
    except OSError as error:
        raise PotsInputError(
            f"config file '{path}': cannot be written ({error.strerror or error})"
        ) from None


def model_kwargs(cfg: Config) -> dict[str, Any]:
    """The keyword arguments of :class:`PotsVAE` given by ``cfg``:
    ``PotsVAE(data_dim, **model_kwargs(cfg))``.

    :param cfg: a configuration.
    :raises PotsInputError: ``model.likelihood`` is ``auto``: resolve it against the data
        first (:func:`resolve_likelihood`); a model takes a likelihood's name.
    :returns: the ``model`` section's keys, plus ``logit_prior`` (a
        :class:`LogitMoGPrior` with ``prior.M`` and ``prior.sigma`` when ``prior.kind`` is
        ``logit_mog``, else the prior's name), ``logits_guide``, ``routing`` and
        ``temperature``.
    """
    if cfg.model.likelihood == AUTO_LIKELIHOOD:
        raise PotsInputError(
            "config key 'model.likelihood': 'auto' is resolved against the data before a "
            "model is built (pyro_pots.config.resolve_likelihood)"
        )
    prior = cfg.prior
    logit_prior: str | LogitMoGPrior = prior.kind
    if prior.kind == "logit_mog":
        logit_prior = LogitMoGPrior(M=prior.M, sigma=prior.sigma)
    return {
        **asdict(cfg.model),
        "routing": cfg.routing.mode,
        "temperature": cfg.routing.temperature,
        "logit_prior": logit_prior,
        "logits_guide": prior.logits_guide,
    }


def resolve_likelihood(cfg: Config, *data: Dataset | Any) -> Config:
    """``cfg`` with ``model.likelihood: auto`` replaced by the likelihood the data calls
    for: ``bernoulli`` when every value lies in [0, 1], ``normal`` otherwise
    (:func:`~pyro_pots.data.dataset.auto_likelihood`), and ``data.scaling: auto`` by the
    scaling that likelihood takes (:func:`~pyro_pots.data.dataset.auto_scaling`). Call it
    where the data meets the config, before the config is saved or a model built, so that
    a run's ``config.yaml`` names the likelihood and the scaling it was fitted with.

    :param cfg: a configuration.
    :param data: what ``cfg`` is fitted to, all of it (held-out rows too, so that they lie
        in the chosen likelihood's support): :class:`~pyro_pots.data.Dataset` objects,
        numpy arrays or torch tensors.
    :returns: ``cfg`` itself when both are named, else a resolved copy.
    :raises PotsInputError: ``data.scaling: standard`` with a bernoulli likelihood.
    """
    likelihood = cfg.model.likelihood
    if likelihood == AUTO_LIKELIHOOD:
        rows = [part.X if isinstance(part, Dataset) else part for part in data]
        likelihood = auto_likelihood(*rows)
    scaling = cfg.data.scaling
    if scaling == AUTO_SCALING:
        scaling = auto_scaling(likelihood)
    elif scaling == "standard" and auto_scaling(likelihood) != "standard":
        raise PotsInputError(
            f"config key 'data.scaling': 'standard' needs the normal likelihood; the "
            f"{likelihood} likelihood reads data in [0, 1] as they are (set data.scaling: "
            "none, or model.likelihood: normal)"
        )
    if (likelihood, scaling) == (cfg.model.likelihood, cfg.data.scaling):
        return cfg
    return replace(
        cfg,
        model=replace(cfg.model, likelihood=likelihood),
        data=replace(cfg.data, scaling=scaling),
    )


if __doc__ is not None:  # None under python -OO
    __doc__ += reference()
