"""
Run configuration: one YAML file with the sections ``data``, ``model``, ``prior``,
``routing``, ``curriculum``, ``train`` and ``output``, validated when it is loaded.

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
    vae = PotsVAE(dataset.X.shape[1], **model_kwargs(cfg))

Defaults have one source. A key that is an argument of a library callable takes that
callable's default, read from its signature (:class:`~pyro_pots.model.PotsVAE`,
:class:`~pyro_pots.model.LogitMoGPrior`, :class:`~pyro_pots.handlers.KickMessenger`,
:func:`~pyro_pots.training.svi_fit.lambda_schedule`,
:func:`~pyro_pots.training.svi_fit.fit_svi`); the other defaults are set in the section
tables of this module. The allowed names of priors, logits guides, likelihoods and routing
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

The reference of every key follows (generated from the section tables, so it shows the
defaults in force).
"""

from __future__ import annotations

import difflib
import inspect
import math
import numbers
import os
import re
import stat
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, ClassVar

import yaml

from pyro_pots.curriculum.normality import CRITICAL_1E4
from pyro_pots.curriculum.proposals import PROPOSALS, parse_proposals
from pyro_pots.curriculum.split import NEW_POT_INITS
from pyro_pots.curriculum.stage_manager import PARENT_RULES
from pyro_pots.data.limits import MAX_SHOWN_CHARS, MAX_SHOWN_PATH, clipped, shown
from pyro_pots.distributions import ROUTING_MODES
from pyro_pots.errors import PotsInputError
from pyro_pots.handlers import KickMessenger
from pyro_pots.model.guides import LOGITS_GUIDES
from pyro_pots.model.likelihoods import LIKELIHOODS
from pyro_pots.model.pots_vae import PotsVAE
from pyro_pots.model.priors import LOGIT_PRIORS, LogitMoGPrior
from pyro_pots.training.svi_fit import fit_svi, lambda_schedule

__all__ = [
    "Config",
    "CurriculumConfig",
    "DataConfig",
    "ModelConfig",
    "OutputConfig",
    "PriorConfig",
    "RoutingConfig",
    "TrainConfig",
    "config_to_dict",
    "default_config",
    "load_config",
    "model_kwargs",
    "save_config",
]

# ---------------------------------------------------------------------------------------------
# Rules: what a key accepts
# ---------------------------------------------------------------------------------------------

_REJECT = object()

#: the largest seed every generator takes (numpy's legacy seeding, via pyro.set_rng_seed;
#: torch.manual_seed takes up to 2**64 - 1).
_MAX_SEED = 2**32 - 1
#: the ceiling of every integer key without a tighter one: a C int, as torch and numpy take.
_MAX_COUNT = 2**31 - 1
#: the most epochs (of a fit, a warm-up or a wait): a million epochs is days of the tiniest fit.
_MAX_EPOCHS = 10**6
#: the widest layer or latent space: each pot's decoder alone holds latent x hidden x D weights.
_MAX_WIDTH = 2**16
#: the most pots: every pot holds its own decoder, allocated when the model is built.
_MAX_POTS = 1024
#: bounds of scales (prior M and sigma, temperatures, lambda) that float32 arithmetic can
#: carry: past them the logit prior's normaliser or the routing softmax over- or underflows.
_MIN_SCALE, _MAX_SCALE = 1e-3, 1e3


@dataclass(frozen=True)
class Rule:
    """What one key accepts.

    :param allowed: the phrase after "must be" in messages, e.g. ``a number > 0``.
    :param clean: returns the accepted value (an integer given for a number becomes a
        float) or ``_REJECT``.
    """

    allowed: str
    clean: Callable[[Any], Any]


def _integer(low: int = 0, high: int = _MAX_COUNT) -> Rule:
    def clean(value: Any) -> Any:
        if isinstance(value, bool) or not isinstance(value, numbers.Integral):
            return _REJECT
        if not low <= value <= high:
            return _REJECT
        return int(value)

    return Rule(f"an integer in [{low}, {high}]", clean)


def _number(
    low: float | None = None,
    high: float | None = None,
    *,
    low_open: bool = False,
    high_open: bool = False,
) -> Rule:
    if low is not None and high is not None:
        allowed = f"a number in {'(' if low_open else '['}{low}, {high}{')' if high_open else ']'}"
    elif low is not None:
        allowed = f"a number {'>' if low_open else '>='} {low}"
    else:
        allowed = "a number"

    def clean(value: Any) -> Any:
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            return _REJECT
        try:
            value = float(value)
        except OverflowError:
            return _REJECT
        if not math.isfinite(value):
            return _REJECT
        if low is not None and (value <= low if low_open else value < low):
            return _REJECT
        if high is not None and (value >= high if high_open else value > high):
            return _REJECT
        return value

    return Rule(allowed, clean)


def _flag() -> Rule:
    return Rule("true or false", lambda value: value if isinstance(value, bool) else _REJECT)


def _choice(options: Sequence[str]) -> Rule:
    options = tuple(options)
    return Rule(
        f"one of {', '.join(options)}",
        lambda value: value if isinstance(value, str) and value in options else _REJECT,
    )


def _proposals() -> Rule:
    def clean(value: Any) -> Any:
        if not isinstance(value, str):
            return _REJECT
        try:
            return ",".join(parse_proposals(value))
        except ValueError:
            return _REJECT

    return Rule(f"a comma-separated list of {', '.join(sorted(PROPOSALS))}", clean)


def _text() -> Rule:
    return Rule(
        "a non-empty string",
        lambda value: value if isinstance(value, str) and value.strip() else _REJECT,
    )


_DEVICE = re.compile(r"cpu|cuda|cuda:[0-9]+|auto")


def _device() -> Rule:
    return Rule(
        "one of cpu, cuda, cuda:N, auto",
        lambda value: value if isinstance(value, str) and _DEVICE.fullmatch(value) else _REJECT,
    )


# ---------------------------------------------------------------------------------------------
# Keys: rule, default, help
# ---------------------------------------------------------------------------------------------


def _signature_default(function: Callable, parameter: str) -> Any:
    """The default of ``parameter`` in ``function``'s signature (the one source of truth)."""
    default = inspect.signature(function).parameters[parameter].default
    if default is inspect.Parameter.empty:
        raise RuntimeError(f"{function.__qualname__} has no default for {parameter!r}")
    return default


@dataclass(frozen=True)
class _FromSignature:
    """A default read from a callable's signature, remembered with its source."""

    function: Callable
    parameter: str

    @property
    def source(self) -> str:
        return self.function.__qualname__.removesuffix(".__init__")


def _sig(function: Callable, parameter: str) -> _FromSignature:
    return _FromSignature(function, parameter)


def _key(rule: Rule, default: Any, doc: str) -> Any:
    """One row of a section table: a dataclass field carrying its rule and help."""
    source = None
    if isinstance(default, _FromSignature):
        source = f"{default.source}({default.parameter}=...)"
        default = _signature_default(default.function, default.parameter)
    return field(default=default, metadata={"rule": rule, "doc": doc, "source": source})


def _show(value: Any) -> str:
    """A value quoted in a message: a bounded prefix of its repr (never built whole)."""
    return shown(value)


def _name(value: Any) -> str:
    """A section or key name quoted in a message: a string as it is, cut short."""
    return clipped(value) if isinstance(value, str) else shown(value)


class _Section:
    """Validation shared by the section dataclasses: each value is checked (and an
    integer given for a number converted) when the section is built."""

    section: ClassVar[str]

    def __post_init__(self) -> None:
        for key in fields(self):  # type: ignore[arg-type]
            value = getattr(self, key.name)
            rule: Rule = key.metadata["rule"]
            clean = rule.clean(value)
            if clean is _REJECT:
                raise PotsInputError(
                    f"config key '{self.section}.{key.name}': must be {rule.allowed}, "
                    f"got {_show(value)}"
                )
            object.__setattr__(self, key.name, clean)


@dataclass(frozen=True)
class DataConfig(_Section):
    """What to fit, and the rows held out to judge the curriculum's stages."""

    section: ClassVar[str] = "data"

    spec: str = _key(
        _text(),
        "digits",
        "the data: ``digits``, ``synthetic[:k=5,d=20,n=2000,latent=2,sep=6.0,seed=0]`` or "
        "a data file (see :func:`pyro_pots.data.load_data`)",
    )
    heldout_fraction: float = _key(
        _number(0, 0.9), 0.1, "share of the rows held out (not trained on) to score stages"
    )
    seed: int = _key(_integer(0, _MAX_SEED), 0, "seed of the held-out split")


@dataclass(frozen=True)
class ModelConfig(_Section):
    """The network and the likelihood (keyword arguments of :class:`PotsVAE`)."""

    section: ClassVar[str] = "model"

    num_pots: int = _key(
        _integer(1, _MAX_POTS),
        20,
        "K_max, the most pots the curriculum may open (a cap, not a guess of K: the "
        "curriculum decides how many it opens)",
    )
    latent_dim: int = _key(
        _integer(1, _MAX_WIDTH), _sig(PotsVAE.__init__, "latent_dim"), "d, latent size of each pot"
    )
    hidden_dim: int = _key(
        _integer(1, _MAX_WIDTH), _sig(PotsVAE.__init__, "hidden_dim"), "width of the encoder trunk"
    )
    decoder_hidden_dim: int = _key(
        _integer(1, _MAX_WIDTH),
        _sig(PotsVAE.__init__, "decoder_hidden_dim"),
        "width of each pot's decoder",
    )
    likelihood: str = _key(
        _choice(LIKELIHOODS),
        _sig(PotsVAE.__init__, "likelihood"),
        "p(x | decoder output); the bernoulli ones need data in [0, 1]",
    )
    responsibility_kl: bool = _key(
        _flag(),
        _sig(PotsVAE.__init__, "responsibility_kl"),
        "weight each pot's latent KL by its responsibility",
    )


@dataclass(frozen=True)
class PriorConfig(_Section):
    """The prior on the logits, its weight lambda, and the guide of the logits."""

    section: ClassVar[str] = "prior"

    kind: str = _key(
        _choice(LOGIT_PRIORS),
        _sig(PotsVAE.__init__, "logit_prior"),
        "prior on the logits: ``logit_mog`` (logit-space Gaussian mixture, near one-hot), "
        "``none`` (flat), ``categorical_kl`` (KL of the responsibilities to uniform)",
    )
    M: float = _key(
        _number(0, _MAX_SCALE, low_open=True),
        _sig(LogitMoGPrior.__init__, "M"),
        "logit_mog: distance of each component from the origin",
    )
    sigma: float = _key(
        _number(_MIN_SCALE, _MAX_SCALE),
        _sig(LogitMoGPrior.__init__, "sigma"),
        "logit_mog: per-coordinate standard deviation; peakiness grows with M / sigma",
    )
    lam_max: float = _key(
        _number(0, _MAX_SCALE),
        _sig(lambda_schedule, "lam_max"),
        "weight lambda of the prior after warm-up",
    )
    lam_warmup_epochs: int = _key(
        _integer(0, _MAX_EPOCHS), 10, "epochs over which lambda rises linearly from 0 to lam_max"
    )
    logits_guide: str = _key(
        _choice(LOGITS_GUIDES),
        _sig(PotsVAE.__init__, "logits_guide"),
        "q(y | x): ``delta`` (y = y(x)) or ``normal``",
    )


@dataclass(frozen=True)
class RoutingConfig(_Section):
    """How the logits send each row to the pots."""

    section: ClassVar[str] = "routing"

    mode: str = _key(
        _choice(ROUTING_MODES),
        _sig(PotsVAE.__init__, "routing"),
        "``softmax`` (deterministic), ``gumbel`` (relaxed sample) or ``straight_through`` "
        "(one-hot forward, relaxed gradient)",
    )
    temperature: float = _key(
        _number(_MIN_SCALE, _MAX_SCALE),
        _sig(PotsVAE.__init__, "temperature"),
        "routing temperature; lower is closer to one-hot",
    )


@dataclass(frozen=True)
class CurriculumConfig(_Section):
    """When pots are opened, how a new pot is started, and the kick that feeds it."""

    section: ClassVar[str] = "curriculum"

    start_pots: int = _key(_integer(1, _MAX_POTS), 1, "pots open at the start (<= model.num_pots)")
    min_stage_epochs: int = _key(
        _integer(1, _MAX_EPOCHS), 10, "fewest epochs of a stage (after the kick)"
    )
    patience: int = _key(
        _integer(1, _MAX_EPOCHS), 5, "epochs without progress of the smoothed loss that end a stage"
    )
    rel_tol: float = _key(
        _number(0), 2e-3, "relative improvement of the smoothed loss that counts as progress"
    )
    smoothing: float = _key(
        _number(0, 1, low_open=True),
        0.3,
        "weight of the newest epoch in the smoothed loss (1: no smoothing)",
    )
    normality_critical: float = _key(
        _number(0),
        CRITICAL_1E4,
        "split only pots whose codes' normality statistic (G-means' Anderson-Darling test on "
        "the 2-means axis) exceeds this; the default is its critical value at alpha = 1e-4; "
        "0 switches the test off",
    )
    heldout_stop: bool = _key(
        _flag(),
        False,
        "also stop at the first split whose held-out mixture loss does not gain min_gain "
        "(greedy; off by default: on digits and on synthetic data it stops too early)",
    )
    max_fades: int = _key(
        _integer(1, _MAX_POTS),
        3,
        "parents in a row whose every split proposal faded or drifted before the curriculum stops",
    )
    min_agreement: float = _key(
        _number(0, 1),
        0.5,
        "least adjusted Rand index between a split's kick targets and where its rows are at "
        "the stage end (0: off); a split that drifted below it is undone",
    )
    min_gain: float = _key(
        _number(0), 0.0, "with heldout_stop: least held-out gain of a split, nats per row"
    )
    evidence_z: float = _key(
        _number(0),
        0.0,
        "a split whose paired held-out gain is at least this many standard errors above zero "
        "is kept even when it drifted from its proposal (0: off; the agreement test alone)",
    )
    split_proposals: str = _key(
        _proposals(),
        "two_means",
        "the split proposals a parent gets in turn before it is marked as tried, comma "
        "separated: ``two_means`` (2-means on its rows) and ``spectral`` (a bisection of "
        "its rows' k-nearest-neighbour graph, which follows curved modes)",
    )
    min_usage: float = _key(
        _number(0, 1, high_open=True), 0.02, "usage below which a pot counts as unused"
    )
    kick_steps: int = _key(
        _integer(0, _MAX_EPOCHS),
        600,
        "SVI steps of the kick after a pot opens, rounded up to whole epochs (0: none)",
    )
    kick_temperature: float = _key(
        _number(_MIN_SCALE, _MAX_SCALE),
        _sig(KickMessenger.__init__, "temperature"),
        "routing temperature during the kick",
    )
    kick_bias: float = _key(
        _number(),
        0.0,
        "added to the new pot's routing logit during the kick; 0 by default, because the "
        "ELBO's gradient against a routing bias pulls the encoder's logits back to the "
        "parent and undoes the kick's cross-entropy",
    )
    kick_lam_factor: float = _key(
        _number(0),
        1.0,
        "multiplier of lambda during the kick (the handler's own default relaxes it; the "
        "curriculum keeps the prior on, so that a real split is not lost when the kick ends)",
    )
    kick_weight: float = _key(
        _number(0),
        10.0,
        "weight of the kick's cross-entropy (nats per kicked row) that teaches the encoder "
        "the parent's split; at 1 the ELBO's pull on the logits undid real splits",
    )
    init_noise: float = _key(
        _number(0), 0.01, "scale of the noise added when a new pot is copied from its parent"
    )
    new_pot_init: str = _key(
        _choice(NEW_POT_INITS),
        "copy",
        "how a new pot's weights start: ``copy`` of its parent's (plus init_noise) or "
        "``fresh`` from the layers' default initialisation (an ablation)",
    )
    parent_rule: str = _key(
        _choice(PARENT_RULES),
        "usage",
        "which candidate pot a new pot is split from: ``usage`` (the most data, as bisecting "
        "k-means splits its largest cluster), ``normality`` (least normal codes) or "
        "``recon`` (largest misfit)",
    )


@dataclass(frozen=True)
class TrainConfig(_Section):
    """The optimiser, the epochs, and where it runs."""

    section: ClassVar[str] = "train"

    max_epochs: int = _key(_integer(1, _MAX_EPOCHS), 800, "most epochs, all stages together")
    batch_size: int = _key(_integer(1), _sig(fit_svi, "batch_size"), "rows per SVI step")
    lr: float = _key(_number(0, 1, low_open=True), _sig(fit_svi, "lr"), "Adam learning rate")
    seed: int = _key(
        _integer(0, _MAX_SEED), _sig(fit_svi, "seed"), "seed of initialisation and batches"
    )
    device: str = _key(_device(), "auto", "``auto`` picks cuda when it is available")
    threads: int = _key(_integer(1, 1024), 2, "torch CPU threads")
    jit: bool = _key(_flag(), False, "compile the ELBO with JitTrace_ELBO")
    bad_step_patience: int = _key(
        _integer(1, _MAX_EPOCHS),
        5,
        "non-finite SVI steps in a row (skipped) before the model rolls back to the start "
        "of its last clean epoch",
    )
    rollback_lr_factor: float = _key(
        _number(0, 1, low_open=True), 0.5, "learning-rate multiplier at each rollback"
    )


@dataclass(frozen=True)
class OutputConfig(_Section):
    """The run directory."""

    section: ClassVar[str] = "output"

    dir: str = _key(_text(), "runs/fit", "run directory (summary, history, model, plots)")
    overwrite: bool = _key(_flag(), False, "replace a run directory that is not empty")
    plots: bool = _key(_flag(), True, "write the plots")


@dataclass(frozen=True)
class Config:
    """A whole run configuration: one frozen dataclass per section (``cfg.model.num_pots``).

    ``Config()`` is the default configuration; building one checks the keys that depend on
    each other (``curriculum.start_pots <= model.num_pots``).
    """

    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    prior: PriorConfig = field(default_factory=PriorConfig)
    routing: RoutingConfig = field(default_factory=RoutingConfig)
    curriculum: CurriculumConfig = field(default_factory=CurriculumConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    output: OutputConfig = field(default_factory=OutputConfig)

    def __post_init__(self) -> None:
        for name, section_class in _SECTIONS.items():
            if not isinstance(getattr(self, name), section_class):
                raise TypeError(f"Config.{name} must be a {section_class.__name__}")
        if self.curriculum.start_pots > self.model.num_pots:
            raise PotsInputError(
                f"config key 'curriculum.start_pots': must be <= model.num_pots "
                f"({self.model.num_pots}), got {self.curriculum.start_pots}"
            )


#: section name -> its dataclass, in file order.
_SECTIONS: dict[str, type] = {
    "data": DataConfig,
    "model": ModelConfig,
    "prior": PriorConfig,
    "routing": RoutingConfig,
    "curriculum": CurriculumConfig,
    "train": TrainConfig,
    "output": OutputConfig,
}


def _section_keys(section: str) -> list[str]:
    return [key.name for key in fields(_SECTIONS[section])]


# ---------------------------------------------------------------------------------------------
# YAML: a safe loader that also reads 1e-3 as a number, refuses duplicate keys, and bounds
# what a small text can expand to
# ---------------------------------------------------------------------------------------------

#: the largest config file read (real ones are a few KiB).
MAX_CONFIG_BYTES = 2**20
#: the most values (scalars, lists and mappings) a YAML document may expand to, an alias
#: counted at the full size of what it names: a few hundred bytes of nested aliases would
#: otherwise stand for 10^9 values, which any walk over them (a message's repr) visits.
MAX_YAML_NODES = 10_000
#: the longest integer literal converted: Python refuses to convert more than 4300 decimal
#: digits, and the sexagesimal form (``1:2:3``) converts in quadratic time.
MAX_INT_CHARS = 100

_FLOAT_TAG = "tag:yaml.org,2002:float"
# YAML 1.1 (PyYAML) reads 1e-3 and 1.5e3 as strings; YAML 1.2 and users read them as numbers.
_EXPONENT_FLOAT = re.compile(r"^[-+]?[0-9][0-9_]*(?:\.[0-9_]*)?[eE][-+]?[0-9]+$")


@dataclass(frozen=True)
class _LongInteger:
    """What an integer literal longer than :data:`MAX_INT_CHARS` reads as: no key's rule
    accepts it, so the message names the key, and nothing tries to convert it."""

    chars: int

    def __repr__(self) -> str:
        return f"<an integer literal of {self.chars} characters>"


class _Loader(yaml.SafeLoader):
    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._nodes = 0  # values composed so far, aliases counted at their full size
        self._size: dict[int, int] = {}  # id(node) -> its full size, once composed

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node:
        if self.check_event(yaml.AliasEvent):
            mark = self.peek_event().start_mark
            node = super().compose_node(parent, index)
            size = self._size.get(id(node))
            if size is None:  # the alias sits inside the node it names
                raise yaml.composer.ComposerError(
                    None, None, "an alias to a node that contains it (recursive)", mark
                )
            self._count(size, mark)
            return node
        start = self._nodes
        self._count(1, self.peek_event().start_mark)
        node = super().compose_node(parent, index)
        self._size[id(node)] = self._nodes - start
        return node

    def _count(self, size: int, mark: yaml.Mark) -> None:
        self._nodes += size
        if self._nodes > MAX_YAML_NODES:
            raise yaml.composer.ComposerError(
                None,
                None,
                f"expands to more than {MAX_YAML_NODES} values (aliases counted in full)",
                mark,
            )

    def construct_yaml_int(self, node: yaml.ScalarNode) -> int | _LongInteger:
        if len(node.value) > MAX_INT_CHARS:
            return _LongInteger(len(node.value))
        return super().construct_yaml_int(node)

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        seen: set = set()
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node, deep=deep)
            try:
                duplicate = key in seen
            except TypeError:  # unhashable: the base class reports it
                continue
            if duplicate:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key '{_name(key)}'", key_node.start_mark
                )
            seen.add(key)
        return super().construct_mapping(node, deep)


class _Dumper(yaml.SafeDumper):
    """Quotes the strings :class:`_Loader` would read as numbers, so saving round-trips."""


for _yaml_class in (_Loader, _Dumper):
    _yaml_class.add_implicit_resolver(_FLOAT_TAG, _EXPONENT_FLOAT, list("-+0123456789"))
_Loader.add_constructor("tag:yaml.org,2002:int", _Loader.construct_yaml_int)


def _yaml_problem(error: yaml.YAMLError) -> str:
    """A YAML error as one line: where (1-based line and column) and what."""
    if isinstance(error, yaml.MarkedYAMLError):
        mark = error.problem_mark or error.context_mark
        what = ", ".join(part for part in (error.context, error.problem) if part)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        return clipped(" ".join(f"invalid YAML{where}: {what}".split()), 2 * MAX_SHOWN_CHARS)
    return clipped(" ".join(f"invalid YAML: {error}".split()), 2 * MAX_SHOWN_CHARS)


#: PyYAML builds nested lists and mappings recursively; a deep enough nesting overflows the stack.
_TOO_DEEP = "invalid YAML: lists or mappings nested too deeply"


def _read_text(path: Path, where: str) -> str:
    """The text of a config file: a regular file (symlinks followed) of at most
    :data:`MAX_CONFIG_BYTES`, so that neither a FIFO nor ``/dev/zero`` is read."""
    try:
        # O_NONBLOCK: a FIFO opens at once instead of waiting for a writer; fstat then
        # judges the file that was opened, not one that a path might name a moment later.
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except FileNotFoundError:
        raise PotsInputError(f"{where}: no such file") from None
    except IsADirectoryError:
        raise PotsInputError(f"{where}: is a directory, not a file") from None
    except OSError as error:
        raise PotsInputError(f"{where}: cannot be read ({error.strerror or error})") from None
    try:
        mode = os.fstat(fd).st_mode
        if stat.S_ISDIR(mode):
            raise PotsInputError(f"{where}: is a directory, not a file")
        if not stat.S_ISREG(mode):
            raise PotsInputError(f"{where}: not a regular file (a device, FIFO or socket)")
        with os.fdopen(fd, "rb", closefd=False) as handle:
            data = handle.read(MAX_CONFIG_BYTES + 1)
    except OSError as error:
        raise PotsInputError(f"{where}: cannot be read ({error.strerror or error})") from None
    finally:
        os.close(fd)
    if len(data) > MAX_CONFIG_BYTES:
        raise PotsInputError(
            f"{where}: larger than {MAX_CONFIG_BYTES} bytes (MAX_CONFIG_BYTES); a config is a "
            "few KiB"
        )
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise PotsInputError(f"{where}: is not UTF-8 text") from None


def _read_yaml(path: Path) -> dict:
    where = f"config file '{clipped(str(path), MAX_SHOWN_PATH)}'"
    text = _read_text(path, where)
    try:
        tree = yaml.load(text, Loader=_Loader)
    except yaml.YAMLError as error:
        raise PotsInputError(f"{where}: {_yaml_problem(error)}") from None
    except RecursionError:
        raise PotsInputError(f"{where}: {_TOO_DEEP}") from None
    if tree is None:  # an empty file, or only comments: all defaults
        return {}
    if not isinstance(tree, dict):
        raise PotsInputError(
            f"{where}: must be a mapping of sections ({', '.join(_SECTIONS)}) at the top "
            f"level, got a {type(tree).__name__}"
        )
    return tree


# ---------------------------------------------------------------------------------------------
# Names: sections and keys
# ---------------------------------------------------------------------------------------------


def _check_section(section: Any, prefix: str = "") -> str:
    if isinstance(section, str) and section in _SECTIONS:
        return section
    name = _name(section)
    homes = [f"{s}.{name}" for s in _SECTIONS if name in _section_keys(s)]
    hint = f"it is a key: did you mean {' or '.join(repr(h) for h in homes)}? " if homes else ""
    close = difflib.get_close_matches(name, list(_SECTIONS), n=1)
    if close and not homes:
        hint = f"did you mean '{close[0]}'? "
    raise PotsInputError(
        f"{prefix}unknown config section '{name}' ({hint}allowed: {', '.join(_SECTIONS)})"
    )


def _check_key(section: str, key: Any, prefix: str = "") -> str:
    keys = _section_keys(section)
    if isinstance(key, str) and key in keys:
        return key
    name = _name(key)
    close = difflib.get_close_matches(name, keys, n=1)
    hint = f"did you mean '{close[0]}'?" if close else f"allowed: {', '.join(keys)}"
    raise PotsInputError(f"{prefix}unknown config key '{section}.{name}' ({hint})")


def _add_file(tree: dict[str, dict[str, Any]], raw: Mapping) -> None:
    for section, values in raw.items():
        section = _check_section(section)
        if values is None:  # "model:" with every key commented out
            continue
        if not isinstance(values, Mapping):
            raise PotsInputError(
                f"config section '{section}': must be a mapping of key: value, got {_show(values)}"
            )
        for key, value in values.items():
            tree[section][_check_key(section, key)] = value


def _add_override(tree: dict[str, dict[str, Any]], override: str) -> None:
    if not isinstance(override, str):
        raise PotsInputError(f"override {_show(override)}: must be a string SECTION.KEY=VALUE")
    prefix = f"override '{clipped(override)}': "
    name, equals, text = override.partition("=")
    section, dot, key = name.strip().partition(".")
    if not equals or not dot or not section or not key or "." in key:
        raise PotsInputError(
            f"{prefix}expected SECTION.KEY=VALUE, e.g. model.num_pots=20 "
            f"(sections: {', '.join(_SECTIONS)})"
        )
    section = _check_section(section, prefix)
    key = _check_key(section, key, prefix)
    try:
        value = yaml.load(text, Loader=_Loader)
    except yaml.YAMLError as error:
        raise PotsInputError(f"{prefix}value: {_yaml_problem(error)}") from None
    except RecursionError:
        raise PotsInputError(f"{prefix}value: {_TOO_DEEP}") from None
    tree[section][key] = value


# ---------------------------------------------------------------------------------------------
# Public API
# ---------------------------------------------------------------------------------------------


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
    tree: dict[str, dict[str, Any]] = {section: {} for section in _SECTIONS}
    if path is not None:
        _add_file(tree, _read_yaml(Path(path)))
    for override in overrides:
        _add_override(tree, override)
    sections = {name: _SECTIONS[name](**values) for name, values in tree.items()}
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
    text = yaml.dump(
        config_to_dict(cfg),
        Dumper=_Dumper,
        sort_keys=False,
        default_flow_style=False,
        allow_unicode=True,
    )
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
    :returns: the ``model`` section's keys, plus ``logit_prior`` (a
        :class:`LogitMoGPrior` with ``prior.M`` and ``prior.sigma`` when ``prior.kind`` is
        ``logit_mog``, else the prior's name), ``logits_guide``, ``routing`` and
        ``temperature``.
    """
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


# ---------------------------------------------------------------------------------------------
# The reference of every key, appended to this module's docstring
# ---------------------------------------------------------------------------------------------


def _yaml_scalar(value: Any) -> str:
    return yaml.dump(value, Dumper=_Dumper, default_flow_style=True).splitlines()[0]


def _reference() -> str:
    lines = ["", "Keys", "----", ""]
    for name, section_class in _SECTIONS.items():
        lines += [f"``{name}``: {section_class.__doc__.splitlines()[0]}", ""]
        for key in fields(section_class):
            default = f"default ``{_yaml_scalar(key.default)}``"
            if key.metadata["source"]:
                default += f" from ``{key.metadata['source']}``"
            lines += [
                f"    ``{name}.{key.name}`` -- {key.metadata['rule'].allowed}; {default}",
                f"        {key.metadata['doc']}",
                "",
            ]
    return "\n".join(lines)


if __doc__ is not None:  # None under python -OO
    __doc__ += _reference()
