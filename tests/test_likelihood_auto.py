"""``model.likelihood: auto``: Bernoulli when every value is in [0, 1], Normal otherwise,
resolved against the data before a model is built and recorded under its own name."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pyro_pots import PotsMixture, fit
from pyro_pots.config import load_config, model_kwargs, resolve_likelihood
from pyro_pots.data import AUTO_LIKELIHOOD, Dataset, load_data, make_synthetic
from pyro_pots.errors import PotsInputError
from pyro_pots.model import LIKELIHOODS

#: a fit of a second or two (as tests/test_estimator.py's)
TINY = {
    "model.num_pots": 3,
    "model.hidden_dim": 16,
    "model.decoder_hidden_dim": 16,
    "train.max_epochs": 6,
    "train.threads": 1,
    "curriculum.start_pots": 2,
}


@pytest.fixture(scope="module")
def unit():
    """Rows in (0, 1): the synthetic set is squashed into the unit interval."""
    return make_synthetic(n_clusters=3, n_features=8, n_rows=200, seed=0).X


@pytest.fixture(scope="module")
def standardised(unit):
    return (unit - unit.mean(0)) / unit.std(0)


def test_auto_picks_bernoulli_on_the_unit_interval_and_normal_otherwise(unit, standardised):
    assert Dataset(unit).auto_likelihood() == "bernoulli"
    assert Dataset(standardised).auto_likelihood() == "normal"
    # both ends of [0, 1] are in the support; one value past either end is not
    assert Dataset(np.array([[0.0, 1.0], [1.0, 0.0]])).auto_likelihood() == "bernoulli"
    for outside in (-1e-6, 1.0 + 1e-6):
        assert Dataset(np.array([[0.5, outside]])).auto_likelihood() == "normal"


def test_auto_is_a_config_value_and_resolves_against_the_data(unit, standardised):
    cfg = load_config(None, ["model.likelihood=auto"])
    assert cfg.model.likelihood == AUTO_LIKELIHOOD
    assert resolve_likelihood(cfg, Dataset(unit)).model.likelihood == "bernoulli"
    resolved = resolve_likelihood(cfg, Dataset(standardised))
    assert resolved.model.likelihood == "normal"
    # only the likelihood changes
    assert resolved.model.num_pots == cfg.model.num_pots and resolved.train == cfg.train


def test_auto_looks_at_every_part_of_the_data(unit):
    cfg = load_config(None, ["model.likelihood=auto"])
    train, held = torch.from_numpy(unit[:150]), torch.from_numpy(unit[150:])
    assert resolve_likelihood(cfg, train, held).model.likelihood == "bernoulli"
    # one held-out value outside [0, 1] is enough: the held-out rows are scored too
    assert resolve_likelihood(cfg, train, held + 1.0).model.likelihood == "normal"
    assert resolve_likelihood(cfg, unit, np.array([[2.0] * 8])).model.likelihood == "normal"
    # an empty part (no held-out rows) says nothing
    assert resolve_likelihood(cfg, train, held[:0]).model.likelihood == "bernoulli"


@pytest.mark.parametrize("name", LIKELIHOODS)
def test_an_explicit_likelihood_is_kept(name, standardised):
    scaling = "standard" if name == "normal" else "none"
    cfg = load_config(None, [f"model.likelihood={name}", f"data.scaling={scaling}"])
    assert resolve_likelihood(cfg, Dataset(standardised)) is cfg
    # data.scaling: auto is named by the likelihood, which stays
    cfg = load_config(None, [f"model.likelihood={name}"])
    resolved = resolve_likelihood(cfg, Dataset(standardised))
    assert (resolved.model.likelihood, resolved.data.scaling) == (name, scaling)


def test_auto_is_not_a_model_argument():
    cfg = load_config(None, ["model.likelihood=auto"])
    with pytest.raises(PotsInputError, match="model.likelihood.*resolve_likelihood") as info:
        model_kwargs(cfg)
    assert "\n" not in str(info.value)


def test_load_data_takes_auto_and_still_refuses_an_unknown_name():
    assert load_data("synthetic:n=40", AUTO_LIKELIHOOD).n_rows == 40
    with pytest.raises(PotsInputError, match="auto"):
        load_data("synthetic:n=40", "gamma")


def test_estimator_with_auto_fits_standardised_data_with_normal(standardised, unit, tmp_path):
    est = PotsMixture(config={**TINY, "model.likelihood": "auto"}, random_state=0)
    est.fit(standardised)
    assert est.config_.model.likelihood == "normal"
    assert est.model_.likelihood.kind == "normal"
    est.save(tmp_path / "run", plots=False)
    assert load_config(tmp_path / "run" / "config.yaml").model.likelihood == "normal"
    assert est.get_params()["config"]["model.likelihood"] == "auto"  # the parameter stays
    est.fit(unit)
    assert est.config_.model.likelihood == "bernoulli"


def test_estimator_keeps_an_explicit_likelihood(unit):
    est = PotsMixture(config={**TINY, "model.likelihood": "normal"}, random_state=0).fit(unit)
    assert est.config_.model.likelihood == "normal"
    with pytest.raises(PotsInputError, match="outside"):
        PotsMixture(config={**TINY, "model.likelihood": "bernoulli"}).fit(unit * 3 - 1)


def test_fit_records_the_resolved_likelihood_in_config_yaml(standardised, tmp_path):
    data = tmp_path / "standardised.npy"
    np.save(data, standardised)
    overrides = [f"{key}={value}" for key, value in TINY.items()]
    cfg = load_config(
        None,
        overrides
        + ["model.likelihood=auto", f"data.spec={data}", f"output.dir={tmp_path / 'run'}"],
    )
    fit(cfg, progress=False)
    saved = load_config(tmp_path / "run" / "config.yaml")
    assert saved.model.likelihood == "normal"
