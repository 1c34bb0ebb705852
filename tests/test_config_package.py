"""The config package's own contracts: defaults it keeps equal to the training code's (it
does not import that code), and the split into modules keeping the public names."""

from __future__ import annotations

import inspect

import pyro_pots.config as config_module
from pyro_pots.config import Config, default_config
from pyro_pots.config.sections import BATCH_SIZE, LAM_MAX, LR, SEED
from pyro_pots.training.svi_fit import fit_svi, lambda_schedule


def _default(function, parameter: str):
    return inspect.signature(function).parameters[parameter].default


def test_training_defaults_equal_fit_svi_and_lambda_schedule():
    # The config sits below training in the layering, so these are written twice; this
    # is what keeps the two from drifting.
    assert (BATCH_SIZE, LR, SEED) == tuple(
        _default(fit_svi, name) for name in ("batch_size", "lr", "seed")
    )
    assert LAM_MAX == _default(lambda_schedule, "lam_max")
    cfg = default_config()
    assert (cfg.train.batch_size, cfg.train.lr, cfg.train.seed) == (BATCH_SIZE, LR, SEED)
    assert cfg.prior.lam_max == LAM_MAX


def test_reference_names_where_a_training_default_is_kept_equal():
    assert "default ``128`` as in ``fit_svi(batch_size=...)``" in config_module.__doc__


def test_public_names_unchanged():
    for name in config_module.__all__:
        assert hasattr(config_module, name), name
    assert config_module._SECTIONS["train"] is type(Config().train)
