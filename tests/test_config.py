"""Tests for pyro_pots.config: defaults from signatures, load/save, overrides, every error."""

from __future__ import annotations

import dataclasses
import inspect
import os
import threading
from pathlib import Path

import pytest
from test_data import peak_allocation_below

import pyro_pots.config as config_module
from pyro_pots.config import (
    Config,
    config_to_dict,
    default_config,
    load_config,
    model_kwargs,
    save_config,
)
from pyro_pots.distributions import ROUTING_MODES
from pyro_pots.errors import PotsInputError
from pyro_pots.handlers import KickMessenger
from pyro_pots.model import LIKELIHOODS, LOGIT_PRIORS, LOGITS_GUIDES, PotsVAE
from pyro_pots.model.priors import FlatLogitPrior, LogitMoGPrior
from pyro_pots.training.svi_fit import fit_svi, lambda_schedule

EXAMPLES = Path(__file__).resolve().parent.parent / "examples" / "configs"

# ---------------------------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------------------------


def _write(tmp_path: Path, text: str, name: str = "run.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def _error(*names: str, path=None, overrides=(), text=None, tmp_path=None) -> str:
    """Load, expect PotsInputError with a one-line message naming every ``names``."""
    if text is not None:
        path = _write(tmp_path, text)
    with pytest.raises(PotsInputError) as info:
        load_config(path, overrides)
    message = str(info.value)
    assert "\n" not in message and message.strip() == message, message
    for name in names:
        assert name in message, f"{name!r} not in {message!r}"
    return message


def _get(cfg: Config, dotted: str):
    section, key = dotted.split(".")
    return getattr(getattr(cfg, section), key)


def _default(function, parameter: str):
    return inspect.signature(function).parameters[parameter].default


# ---------------------------------------------------------------------------------------------
# defaults: one source of truth
# ---------------------------------------------------------------------------------------------

# Written out here, independently of config.py, so a retyped default there cannot drift.
SIGNATURE_DEFAULTS = [
    ("model.latent_dim", PotsVAE.__init__, "latent_dim"),
    ("model.hidden_dim", PotsVAE.__init__, "hidden_dim"),
    ("model.decoder_hidden_dim", PotsVAE.__init__, "decoder_hidden_dim"),
    ("model.responsibility_kl", PotsVAE.__init__, "responsibility_kl"),
    ("prior.kind", PotsVAE.__init__, "logit_prior"),
    ("prior.logits_guide", PotsVAE.__init__, "logits_guide"),
    ("prior.M", LogitMoGPrior.__init__, "M"),
    ("prior.sigma", LogitMoGPrior.__init__, "sigma"),
    ("prior.lam_max", lambda_schedule, "lam_max"),
    ("routing.mode", PotsVAE.__init__, "routing"),
    ("routing.temperature", PotsVAE.__init__, "temperature"),
    ("curriculum.kick_temperature", KickMessenger.__init__, "temperature"),
    ("train.batch_size", fit_svi, "batch_size"),
    ("train.lr", fit_svi, "lr"),
    ("train.seed", fit_svi, "seed"),
]

TABLE_DEFAULTS = {
    "data.spec": "digits",
    "model.num_pots": 20,
    "model.likelihood": "auto",
    "data.heldout_fraction": 0.1,
    "data.seed": 0,
    "data.scaling": "auto",
    "prior.lam_warmup_epochs": 10,
    "curriculum.start_pots": 1,
    "curriculum.min_stage_epochs": 10,
    "curriculum.patience": 5,
    "curriculum.rel_tol": 2e-3,
    "curriculum.smoothing": 0.3,
    "curriculum.min_gain": 0.0,
    "curriculum.evidence_z": 4.0,
    "curriculum.min_evidence_z": 0.0,
    "curriculum.normality_whitened": True,
    "curriculum.max_cut_ratio": 0.15,
    "curriculum.min_cut_contrast": 2.0,
    "curriculum.split_proposals": "spectral,two_means",
    "curriculum.neighbour_weight": 1.0,
    "curriculum.neighbours": 10,
    "curriculum.heldout_stop": False,
    "curriculum.max_fades": 3,
    "curriculum.normality_critical": 1.8692,
    "curriculum.kick_weight": 10.0,
    "curriculum.refine_weight": 10.0,
    "curriculum.refine_rows": 0,
    "curriculum.refine_every": 5,
    "curriculum.screen_cut_ratio": 0.15,
    "curriculum.screen_first_proposals": True,
    "curriculum.kick_bias": 0.0,
    "curriculum.min_usage": 0.02,
    "curriculum.min_usage_apart": 0.01,
    "curriculum.max_cut_ratio_apart": 0.02,
    "curriculum.kick_steps": 600,
    "curriculum.retry_kick_factor": 1.0,
    "curriculum.kick_max_steps": 0,
    "curriculum.kick_lam_factor": 1.0,
    "curriculum.min_agreement": 0.5,
    "curriculum.init_noise": 0.01,
    "curriculum.new_pot_init": "copy",
    "curriculum.parent_rule": "usage",
    "train.max_epochs": 1600,
    "train.device": "auto",
    "train.threads": 1,
    "train.jit": True,
    "train.bad_step_patience": 5,
    "train.rollback_lr_factor": 0.5,
    "grow.freeze_old_pots": False,
    "grow.replay": "off",
    "grow.replay_share": 0.5,
    "grow.seed_new_pot": False,
    "grow.split_old_pots": True,
    "grow.seed_quantile": 0.95,
    "grow.seed_min_share": 0.02,
    "output.dir": "runs/fit",
    "output.overwrite": False,
    "output.plots": True,
}


@pytest.mark.parametrize("dotted, function, parameter", SIGNATURE_DEFAULTS)
def test_default_read_from_signature(dotted, function, parameter):
    value = _get(default_config(), dotted)
    assert value == _default(function, parameter)
    assert type(value) is type(_default(function, parameter)) or isinstance(value, float)


def test_table_defaults_and_every_key_covered():
    cfg = default_config()
    for dotted, value in TABLE_DEFAULTS.items():
        assert _get(cfg, dotted) == value, dotted
    covered = {d for d, _, _ in SIGNATURE_DEFAULTS} | set(TABLE_DEFAULTS)
    every = {f"{s}.{k}" for s, keys in config_to_dict(cfg).items() for k in keys}
    assert covered == every
    assert default_config() == Config() == load_config() == load_config(None, [])


def test_reference_in_docstring_names_every_key_with_default():
    doc = config_module.__doc__
    for section, keys in config_to_dict(default_config()).items():
        for key in keys:
            assert f"``{section}.{key}``" in doc
    assert "default ``gumbel`` from ``PotsVAE(routing=...)``" in doc


def test_model_section_is_pots_vae_arguments():
    parameters = set(inspect.signature(PotsVAE.__init__).parameters)
    kwargs = model_kwargs(load_config(None, ["model.likelihood=bernoulli"]))
    assert set(kwargs) == parameters - {"self", "data_dim", "name"}
    assert kwargs["routing"] == "gumbel" and kwargs["logits_guide"] == "delta"


def test_model_kwargs_build_pots_vae():
    kwargs = model_kwargs(
        load_config(overrides=["prior.M=7", "prior.sigma=2", "model.likelihood=bernoulli"])
    )
    assert isinstance(kwargs["logit_prior"], LogitMoGPrior)
    assert (kwargs["logit_prior"].M, kwargs["logit_prior"].sigma) == (7.0, 2.0)
    vae = PotsVAE(64, **model_kwargs(load_config(None, ["model.likelihood=normal"])))
    assert vae.num_pots == default_config().model.num_pots
    cfg = load_config(
        overrides=[
            "prior.kind=none",
            "routing.mode=softmax",
            "model.num_pots=3",
            "model.likelihood=bernoulli",
        ]
    )
    kwargs = model_kwargs(cfg)
    assert kwargs["logit_prior"] == "none"
    vae = PotsVAE(8, **kwargs)
    assert isinstance(vae.logit_prior, FlatLogitPrior) and vae.routing == "softmax"


@pytest.mark.parametrize(
    "dotted, table",
    [
        ("model.likelihood", LIKELIHOODS),
        ("prior.kind", list(LOGIT_PRIORS)),
        ("prior.logits_guide", list(LOGITS_GUIDES)),
        ("routing.mode", ROUTING_MODES),
    ],
)
def test_choices_come_from_library_tables(dotted, table):
    for name in table:
        assert _get(load_config(overrides=[f"{dotted}={name}"]), dotted) == name
    message = _error(dotted, "got 'nope'", overrides=[f"{dotted}=nope"])
    assert f"one of {', '.join(table)}" in message


# ---------------------------------------------------------------------------------------------
# loading, overrides, round trip
# ---------------------------------------------------------------------------------------------


def test_partial_file_merges_over_defaults(tmp_path):
    path = _write(tmp_path, "model:\n  num_pots: 12\nprior:\n  sigma: 2\ntrain:\n")
    cfg = load_config(str(path))
    assert cfg.model.num_pots == 12 and cfg.model.latent_dim == default_config().model.latent_dim
    assert cfg.prior.sigma == 2.0 and isinstance(cfg.prior.sigma, float)
    assert cfg.train == default_config().train
    assert load_config(_write(tmp_path, "# only a comment\n", "empty.yaml")) == default_config()


def test_overrides_parse_values_and_win_over_file(tmp_path):
    path = _write(tmp_path, "model:\n  num_pots: 12\n")
    cfg = load_config(
        path,
        [
            "model.num_pots=30",
            "curriculum.start_pots=2",
            "train.lr=3e-4",
            "routing.temperature=1",
            "output.plots=false",
            "data.spec=synthetic:k=5,d=20",
            "train.device=cuda:1",
            " prior.kind = categorical_kl",
        ],
    )
    assert cfg.model.num_pots == 30 and cfg.curriculum.start_pots == 2
    assert cfg.train.lr == 3e-4
    assert cfg.routing.temperature == 1.0 and isinstance(cfg.routing.temperature, float)
    assert cfg.output.plots is False
    assert cfg.data.spec == "synthetic:k=5,d=20" and cfg.train.device == "cuda:1"
    assert cfg.prior.kind == "categorical_kl"
    assert load_config(path, "model.num_pots=5").model.num_pots == 5  # a lone string
    assert load_config(path, ["model.num_pots=5", "model.num_pots=6"]).model.num_pots == 6


def test_exponent_without_dot_is_a_number_in_files(tmp_path):
    cfg = load_config(_write(tmp_path, "train:\n  lr: 1e-4\ncurriculum:\n  rel_tol: 5E-3\n"))
    assert cfg.train.lr == 1e-4 and cfg.curriculum.rel_tol == 5e-3


def test_save_load_round_trip(tmp_path):
    cfg = load_config(
        overrides=[
            "model.num_pots=7",
            "prior.sigma=0.25",
            "train.lr=1e-5",
            "routing.mode=straight_through",
            "output.dir='1e3'",  # a string that looks like a number must stay a string
            "data.spec='yes'",  # quoted: YAML 1.1 reads a bare yes as true
            "curriculum.kick_bias=-3",
        ]
    )
    path = tmp_path / "saved.yaml"
    save_config(cfg, path)
    assert load_config(path) == cfg
    assert load_config(path).output.dir == "1e3"
    save_config(default_config(), path)
    assert load_config(path) == default_config()
    sections = ["data", "model", "prior", "routing", "curriculum", "train", "grow", "output"]
    assert list(config_to_dict(cfg)) == sections
    assert config_to_dict(cfg)["prior"]["sigma"] == 0.25


def test_sections_are_frozen_and_validate_when_built():
    cfg = default_config()
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.model.num_pots = 3
    with pytest.raises(PotsInputError, match=r"'model\.num_pots'"):
        dataclasses.replace(cfg.model, num_pots=0)


@pytest.mark.parametrize("name", ["digits.yaml", "synthetic.yaml"])
def test_example_configs_load(name):
    assert isinstance(load_config(EXAMPLES / name), Config)


def test_digits_example_is_the_defaults():
    cfg = load_config(EXAMPLES / "digits.yaml")
    assert cfg == default_config()
    text = (EXAMPLES / "digits.yaml").read_text()
    for keys in config_to_dict(cfg).values():  # its comments name every key
        for key in keys:
            assert key in text, key


def test_synthetic_example():
    cfg = load_config(EXAMPLES / "synthetic.yaml")
    assert cfg.data.spec == "synthetic:k=5,d=20,n=2000,seed=0"
    assert cfg.model.likelihood == "bernoulli"


# ---------------------------------------------------------------------------------------------
# errors: one line, naming the key, override or file
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, names",
    [
        # unknown names
        ("modle:\n  num_pots: 3\n", ["unknown config section 'modle'", "'model'", "allowed: data"]),
        ("num_pots: 3\n", ["unknown config section 'num_pots'", "'model.num_pots'"]),
        ("model:\n  num_pot: 3\n", ["unknown config key 'model.num_pot'", "'num_pots'"]),
        ("model:\n  zzz: 3\n", ["unknown config key 'model.zzz'", "allowed: num_pots"]),
        ("model: 3\n", ["config section 'model'", "mapping", "got 3"]),
        # wrong types
        ("model:\n  num_pots: ten\n", ["'model.num_pots'", "an integer in [1, 1024]", "got 'ten'"]),
        ("model:\n  num_pots: true\n", ["'model.num_pots'", "got True"]),
        ("model:\n  num_pots: 2.5\n", ["'model.num_pots'", "got 2.5"]),
        ("prior:\n  sigma: [1, 2]\n", ["'prior.sigma'", "a number in [0.001", "got [1, 2]"]),
        ("prior:\n  M: '5'\n", ["'prior.M'", "a number in (0, 1000.0]", "got '5'"]),
        ("train:\n  jit: 1\n", ["'train.jit'", "true or false", "got 1"]),
        ("output:\n  dir: 12\n", ["'output.dir'", "a non-empty string", "got 12"]),
        ("data:\n  spec: ''\n", ["'data.spec'", "a non-empty string"]),
        ("model:\n  num_pots:\n", ["'model.num_pots'", "got None"]),
        # bad values
        (
            "prior:\n  sigma: -1\n",
            ["config key 'prior.sigma': must be a number in [0.001, 1000.0], got -1"],
        ),
        ("prior:\n  sigma: 0\n", ["'prior.sigma'", "a number in [0.001, 1000.0]"]),
        ("prior:\n  M: .inf\n", ["'prior.M'", "got inf"]),
        ("model:\n  num_pots: 0\n", ["'model.num_pots'", "an integer in [1, 1024]", "got 0"]),
        (
            "routing:\n  mode: hardmax\n",
            [
                "config key 'routing.mode': must be one of softmax, gumbel, straight_through, "
                "got 'hardmax'"
            ],
        ),
        ("prior:\n  kind: dirichlet\n", ["'prior.kind'", "logit_mog, none, categorical_kl"]),
        ("model:\n  likelihood: poisson\n", ["'model.likelihood'", "bernoulli"]),
        ("prior:\n  logits_guide: flow\n", ["'prior.logits_guide'", "delta, normal"]),
        ("data:\n  heldout_fraction: 1.5\n", ["'data.heldout_fraction'", "[0, 0.9]", "1.5"]),
        ("curriculum:\n  smoothing: 0\n", ["'curriculum.smoothing'", "(0, 1]"]),
        ("curriculum:\n  min_usage: 1\n", ["'curriculum.min_usage'", "[0, 1)"]),
        (
            "curriculum:\n  parent_rule: random\n",
            ["'curriculum.parent_rule'", "normality, recon, usage"],
        ),
        ("train:\n  rollback_lr_factor: 0\n", ["'train.rollback_lr_factor'", "(0, 1]"]),
        ("train:\n  device: gpu\n", ["'train.device'", "cuda:N", "got 'gpu'"]),
        ("train:\n  threads: 0\n", ["'train.threads'", "[1, 1024]"]),
        # scales float32 cannot carry (the fuzz suite found tracebacks past these)
        ("prior:\n  sigma: 1.0e-300\n", ["'prior.sigma'", "[0.001, 1000.0]"]),
        ("prior:\n  M: 1.0e+9\n", ["'prior.M'", "(0, 1000.0]"]),
        ("prior:\n  lam_max: 1.0e+300\n", ["'prior.lam_max'", "[0, 1000.0]"]),
        ("routing:\n  temperature: 1.0e-300\n", ["'routing.temperature'", "[0.001, 1000.0]"]),
        ("train:\n  lr: 1.0e+30\n", ["'train.lr'", "(0, 1]"]),
        ("train:\n  threads: 100000\n", ["'train.threads'", "[1, 1024]"]),
        (
            "model:\n  num_pots: 4\ncurriculum:\n  start_pots: 5\n",
            ["'curriculum.start_pots'", "<= model.num_pots (4)", "got 5"],
        ),
    ],
)
def test_file_errors_name_the_key(tmp_path, text, names):
    _error(*names, text=text, tmp_path=tmp_path)


@pytest.mark.parametrize(
    "override, names",
    [
        ("model.num_pots", ["override 'model.num_pots'", "SECTION.KEY=VALUE"]),
        ("num_pots=3", ["override 'num_pots=3'", "SECTION.KEY=VALUE"]),
        ("model.=3", ["override 'model.=3'", "SECTION.KEY=VALUE"]),
        ("model.num_pots.x=3", ["override 'model.num_pots.x=3'", "SECTION.KEY=VALUE"]),
        ("model.num_pot=3", ["override 'model.num_pot=3'", "unknown config key", "'num_pots'"]),
        ("modle.num_pots=3", ["override 'modle.num_pots=3'", "unknown config section 'modle'"]),
        ("model.num_pots=[", ["override 'model.num_pots=['", "invalid YAML"]),
        ("model.num_pots=x", ["config key 'model.num_pots'", "got 'x'"]),
        ("train.jit=maybe", ["config key 'train.jit'", "got 'maybe'"]),
    ],
)
def test_override_errors_name_the_override(override, names):
    _error(*names, overrides=[override])


def test_missing_file(tmp_path):
    _error("config file", "nope.yaml", "no such file", path=tmp_path / "nope.yaml")
    _error("config file", "is a directory", path=tmp_path)


def test_invalid_yaml_names_file_and_line(tmp_path):
    path = _write(tmp_path, "model:\n  num_pots: 3\n  latent_dim: [1, 2\n")
    message = _error(str(path), "invalid YAML", "line", path=path)
    assert "line 3" in message or "line 4" in message
    path = _write(tmp_path, "model:\n  num_pots: 3\nmodel:\n  latent_dim: 2\n")
    _error(str(path), "line 3", "duplicate key 'model'", path=path)
    path = _write(tmp_path, "a: b: c\n")
    _error(str(path), "line 1", path=path)


def test_top_level_must_be_a_mapping(tmp_path):
    path = _write(tmp_path, "- model\n- data\n")
    _error(str(path), "mapping", "got a list", path=path)
    path = _write(tmp_path, "just text\n")
    _error(str(path), "mapping", "got a str", path=path)


def test_not_utf8(tmp_path):
    path = tmp_path / "latin1.yaml"
    path.write_bytes("data:\n  spec: caf\xe9\n".encode("latin-1"))
    _error(str(path), "UTF-8", path=path)


def test_nesting_too_deep_for_the_yaml_parser(tmp_path):
    # found by tests/test_fuzz.py: PyYAML recursed until RecursionError, a traceback
    path = _write(tmp_path, "data: " + "[" * 5000 + "]" * 5000 + "\n")
    _error(str(path), "nested too deeply", path=path)
    _error("override 'data.spec=", "nested too deeply", overrides=["data.spec=" + "{a: " * 3000])


def test_train_seed_is_one_every_generator_takes():
    # found by tests/test_fuzz.py: numpy's seeding (pyro.set_rng_seed) raised a traceback
    for seed in ("-1", str(2**32)):
        _error("train.seed", "[0, 4294967295]", overrides=[f"train.seed={seed}"])
    assert load_config(None, [f"train.seed={2**32 - 1}"]).train.seed == 2**32 - 1


def test_a_line_break_from_the_input_stays_escaped_in_the_message(tmp_path):
    # found by tests/test_fuzz.py: a key holding a line break made a two-line message
    message = _error("unknown config section 'a\\nb'", text='? "a\\nb"\n: 1\n', tmp_path=tmp_path)
    assert len(message.splitlines()) == 1


# ---------------------------------------------------------------------------------------------
# bounds on what is read (issue 16): file kind and size, alias expansion, huge integers
# ---------------------------------------------------------------------------------------------


def test_config_that_is_a_symlink_to_a_device(tmp_path):
    # was read until memory ran out
    (tmp_path / "zero.yaml").symlink_to("/dev/zero")
    _error("zero.yaml", "not a regular file", path=tmp_path / "zero.yaml")


def test_config_that_is_a_fifo(tmp_path):
    # was a hang: open() waited for a writer. Loaded in a thread, so that a regression fails
    # (a writer is then opened to release it) instead of hanging the suite.
    fifo = tmp_path / "fifo.yaml"
    os.mkfifo(fifo)
    messages: list[str] = []
    loader = threading.Thread(
        target=lambda: messages.append(_error("fifo.yaml", "not a regular file", path=fifo)),
        daemon=True,
    )
    loader.start()
    loader.join(timeout=60)
    if loader.is_alive():
        os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
        pytest.fail("load_config waited on a FIFO")
    assert messages, "the loader raised something other than a one-line PotsInputError"


def test_config_larger_than_the_limit(tmp_path):
    path = _write(tmp_path, "# " + "x" * config_module.MAX_CONFIG_BYTES + "\n")
    _error(str(path), f"larger than {config_module.MAX_CONFIG_BYTES} bytes", path=path)
    path = _write(tmp_path, "# " + "x" * (config_module.MAX_CONFIG_BYTES - 3) + "\n")
    assert load_config(path) == default_config()


#: the report's 535-byte case: nine levels of ten aliases each stand for 10^9 values.
BOMB = "a: &a [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{b}: &{b} [{', '.join([f'*{a}'] * 10)}]\n" for a, b in zip("abcdefgh", "bcdefghi")
)


def test_yaml_alias_bomb_is_refused_while_composing(tmp_path):
    assert len(BOMB.encode()) < 600
    with peak_allocation_below(2**21):
        _error("invalid YAML", "more than 10000 values", text=BOMB, tmp_path=tmp_path)
    _error("override 'data.spec=", "more than 10000 values", overrides=["data.spec=" + BOMB])
    value = "{" + BOMB.replace("\n", ", ") + "}"
    _error("override 'model.num_pots=", "more than 10000", overrides=[f"model.num_pots={value}"])


def test_aliases_within_the_limit_still_work(tmp_path):
    text = "model: &m {num_pots: 4, latent_dim: 3}\nrouting: {temperature: 0.5}\n"
    assert load_config(_write(tmp_path, text)).model.num_pots == 4
    text = "model:\n  num_pots: &k 6\ncurriculum:\n  start_pots: *k\n"
    assert load_config(_write(tmp_path, text)).curriculum.start_pots == 6


def test_recursive_alias(tmp_path):
    _error(
        "invalid YAML", "line 2", "recursive", text="data:\n  spec: &a [1, *a]\n", tmp_path=tmp_path
    )


def test_a_huge_value_is_never_rendered_whole():
    # built in Python, where no YAML limit applies: 10^9 items that share their lists
    value = [0] * 10
    for _ in range(8):
        value = [value] * 10
    with peak_allocation_below(2**20), pytest.raises(PotsInputError) as info:
        config_module.DataConfig(spec=value)
    assert "config key 'data.spec'" in str(info.value) and len(str(info.value)) < 200
    with pytest.raises(PotsInputError) as info:
        config_module.TrainConfig(seed=10**5000)  # repr() refuses more than 4300 digits
    assert "an integer of about 5001 digits" in str(info.value)


@pytest.mark.parametrize(
    "literal",
    ["9" * 5000, "-" + "9" * 5000, "0x" + "f" * 5000, "0b" + "1" * 5000, "1:" * 2000 + "1"],
)
def test_huge_integer_literals_name_the_key(tmp_path, literal):
    # --set train.seed=<5000 digits> was a ValueError traceback (Python's int-digit limit)
    for where in ("file", "override"):
        names = ["config key 'train.seed'", "[0, 4294967295]", "<an integer literal of"]
        if where == "file":
            message = _error(*names, text=f"train:\n  seed: {literal}\n", tmp_path=tmp_path)
        else:
            message = _error(*names, overrides=[f"train.seed={literal}"])
        assert len(message) < 300


def test_huge_integers_as_names_and_in_lists(tmp_path):
    big = "9" * 5000
    message = _error(
        "unknown config section '<an integer literal", text=f"? {big}\n: 1\n", tmp_path=tmp_path
    )
    assert len(message) < 300
    message = _error(
        "'model.num_pots'", "got [1, <an integer", overrides=[f"model.num_pots=[1, {big}]"]
    )
    assert len(message) < 300
    message = _error(
        "unknown config key 'model.", text=f"model:\n  ? {big}\n  : 1\n", tmp_path=tmp_path
    )
    assert len(message) < 300


def test_long_names_and_overrides_are_cut_in_messages(tmp_path):
    long = "k" * 100_000
    for message in (
        _error("unknown config section", text=f"? {long}\n: 1\n", tmp_path=tmp_path),
        _error(
            "unknown config key 'model.kkk", text=f"model:\n  ? {long}\n  : 1\n", tmp_path=tmp_path
        ),
        _error("override 'data.spec=", overrides=["data.spec=" + "[" * 100 + long]),
        _error("override 'kkk", overrides=[long]),
        _error("duplicate key", text=f"? {long}\n: 1\n? {long}\n: 2\n", tmp_path=tmp_path),
    ):
        assert len(message) < 400, message[:100]
    message = _error("config file", "cannot be read", path=tmp_path / (long + ".yaml"))
    assert len(message) < 6000


@pytest.mark.parametrize(
    "override, allowed",
    [
        ("train.max_epochs=1000001", "[1, 1000000]"),
        ("prior.lam_warmup_epochs=1000001", "[0, 1000000]"),
        ("train.bad_step_patience=1000001", "[1, 1000000]"),
        ("model.num_pots=1025", "[1, 1024]"),
        ("model.hidden_dim=65537", "[1, 65536]"),
        ("model.decoder_hidden_dim=65537", "[1, 65536]"),
        ("model.latent_dim=65537", "[1, 65536]"),
        ("data.seed=-1", "[0, 4294967295]"),
        ("data.seed=4294967296", "[0, 4294967295]"),
        ("curriculum.kick_steps=1000001", "[0, 1000000]"),
        ("curriculum.min_stage_epochs=1000001", "[1, 1000000]"),
        ("curriculum.patience=1000001", "[1, 1000000]"),
        ("curriculum.max_fades=1025", "[1, 1024]"),
        ("train.batch_size=2147483648", "[1, 2147483647]"),
    ],
)
def test_every_integer_key_has_an_upper_bound(override, allowed):
    dotted = override.split("=")[0]
    _error(f"config key '{dotted}'", allowed, overrides=[override])
    at_bound = allowed.strip("[]").split(", ")[1]
    assert _get(load_config(None, [f"{dotted}={at_bound}"]), dotted) == int(at_bound)


def test_every_integer_key_is_bounded_in_the_reference():
    for section in config_to_dict(default_config()).values():
        assert all(isinstance(v, (bool, float, str)) or v < 2**31 for v in section.values())
    for cls in config_module._SECTIONS.values():
        for key in dataclasses.fields(cls):
            allowed = key.metadata["rule"].allowed
            assert not allowed.startswith("an integer") or allowed.startswith("an integer in ["), (
                cls.section,
                key.name,
            )
