"""``data.scaling``: the model reads and models each feature in units of its standard
deviation over the training rows, stays a density over the data as given, and the
curriculum measures distances in those units."""

from __future__ import annotations

import math

import numpy as np
import pyro
import pytest
import torch
from pyro.infer import Trace_ELBO
from test_likelihood_auto import TINY  # a fit of a second or two

from pyro_pots import PotsMixture, fit, load_run, run_dir
from pyro_pots.config import load_config, resolve_likelihood
from pyro_pots.curriculum.neighbours import nearest_neighbours
from pyro_pots.data import Dataset
from pyro_pots.errors import PotsInputError
from pyro_pots.model import PotsVAE
from pyro_pots.model.pots_vae import UNIT_BUFFERS
from pyro_pots.training.trainer import CurriculumTrainer


def raw_rows(n: int = 120, seed: int = 0) -> torch.Tensor:
    """Two clusters apart in feature 1 (tenths), beside feature 0 in thousands that is
    noise: raw distances see only feature 0."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % 2
    x = torch.randn(n, 3, generator=g)
    x[:, 0] = 1000.0 + 300.0 * x[:, 0]
    x[:, 1] = 0.1 * x[:, 1] + 1.0 * labels
    return x


def normal_vae(seed: int = 0) -> PotsVAE:
    pyro.set_rng_seed(seed)
    vae = PotsVAE(3, num_pots=3, hidden_dim=8, decoder_hidden_dim=8, likelihood="normal")
    vae.open_pots([0, 1])
    return vae


def test_auto_scaling_follows_the_likelihood():
    cfg = load_config(None, [])
    normal = resolve_likelihood(cfg, Dataset(np.array([[2.0, -1.0], [0.0, 3.0]])))
    assert (normal.model.likelihood, normal.data.scaling) == ("normal", "standard")
    unit = resolve_likelihood(cfg, Dataset(np.array([[0.0, 1.0], [0.5, 0.2]])))
    assert (unit.model.likelihood, unit.data.scaling) == ("bernoulli", "none")
    kept = load_config(None, ["model.likelihood=normal", "data.scaling=none"])
    assert resolve_likelihood(kept, Dataset(np.array([[2.0]]))) is kept


def test_standard_scaling_with_a_bernoulli_likelihood_is_one_clear_error():
    cfg = load_config(None, ["model.likelihood=bernoulli", "data.scaling=standard"])
    with pytest.raises(PotsInputError, match="data.scaling.*bernoulli") as info:
        resolve_likelihood(cfg, Dataset(np.array([[0.0, 1.0]])))
    assert "\n" not in str(info.value)
    with pytest.raises(PotsInputError, match="data.scaling"):
        load_config(None, ["data.scaling=minmax"])


def test_a_model_never_standardised_reads_the_data_as_they_are():
    vae = normal_vae()
    x = raw_rows()
    assert torch.equal(vae.standardize(x), x)
    out = torch.randn(5, 3)
    assert torch.equal(vae.likelihood(out).mean, out)
    bernoulli = PotsVAE(3, num_pots=2, hidden_dim=8, decoder_hidden_dim=8)
    with pytest.raises(ValueError, match="bernoulli"):
        bernoulli.standardize_to(x)


def test_standardize_to_sets_each_features_mean_and_standard_deviation():
    x = raw_rows()
    x[:, 2] = 7.0  # a feature that never varies keeps unit 1
    vae = normal_vae()
    vae.standardize_to(x)
    z = vae.standardize(x)
    expected = (x.numpy() - x.numpy().mean(0)) / np.where(x.numpy().std(0) > 0, x.numpy().std(0), 1)
    np.testing.assert_allclose(z.numpy(), expected, rtol=1e-5, atol=1e-5)
    assert torch.equal(z[:, 2], torch.zeros(len(x)))
    torch.testing.assert_close(vae.likelihood.unit, vae.encoder.input_scale)


def test_the_likelihood_is_the_standardised_density_times_the_jacobian():
    x = raw_rows()
    vae = normal_vae()
    vae.standardize_to(x)
    loc, unit = x.mean(0), x.std(0, unbiased=False)
    out = torch.randn(len(x), 3)
    scale = vae.likelihood.scale.detach()
    u = (x - loc) / unit
    expected = torch.distributions.Normal(out, scale).log_prob(u).sum(-1) - unit.log().sum()
    got = vae.likelihood(out).log_prob(x)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-3)


def test_the_elbo_of_rescaled_data_differs_by_the_log_jacobian_alone():
    """The same weights, standardised to x and to a * x + b: the encoder reads the same
    numbers, and each row's ELBO moves by exactly -sum(log a)."""
    x = raw_rows()
    a, b = torch.tensor([3.0, 0.01, 50.0]), torch.tensor([-7.0, 2.0, 1e4])
    first, second = normal_vae(), normal_vae()
    first.standardize_to(x)
    second.load_state_dict(first.state_dict())
    second.standardize_to(a * x + b)
    torch.testing.assert_close(
        second.standardize(a * x + b), first.standardize(x), rtol=1e-4, atol=1e-4
    )
    losses = []
    for vae, rows in ((first, x), (second, a * x + b)):
        pyro.set_rng_seed(3)
        losses.append(Trace_ELBO().loss(vae.model, vae.guide, rows))
    shift = len(x) * float(a.log().sum())
    assert math.isclose(losses[1] - losses[0], shift, rel_tol=1e-4, abs_tol=0.05)


def test_the_units_travel_with_the_state_dict_and_old_states_load_as_the_identity():
    x = raw_rows()
    vae = normal_vae()
    vae.standardize_to(x)
    copy = normal_vae(seed=1)
    copy.load_state_dict(vae.state_dict())
    assert torch.equal(copy.standardize(x), vae.standardize(x))
    old = {
        k: v
        for k, v in vae.state_dict().items()
        if not k.endswith(("input_loc", "input_scale", "likelihood.loc", "likelihood.unit"))
    }
    again = normal_vae(seed=2)
    again.standardize_to(x + 5.0)
    again.load_state_dict(old)  # a model saved before the units: the data as they are
    assert torch.equal(again.standardize(x), x)


def test_the_curriculum_measures_distances_in_the_models_units():
    x = raw_rows()
    cfg = load_config(None, [f"{k}={v}" for k, v in TINY.items()] + ["model.likelihood=normal"])
    trainer = CurriculumTrainer.from_config(cfg, x[:100], x[100:])
    assert trainer.cfg.data.scaling == "standard"
    scaled = trainer.scaled(trainer.train_x)
    expected = nearest_neighbours(scaled, trainer.neighbour_prior.k)
    assert torch.equal(trainer.neighbour_prior.neighbours, expected)
    # in raw units feature 0 (noise in thousands) decides every neighbour; standardised,
    # the two clusters of feature 1 do
    labels = (torch.arange(100) % 2)[:, None]
    same = (labels[trainer.neighbour_prior.neighbours] == labels[:, :, None]).float().mean()
    raw = nearest_neighbours(x[:100], trainer.neighbour_prior.k)
    raw_same = (labels[raw] == labels[:, :, None]).float().mean()
    assert same > 0.9 and raw_same < 0.7


def test_a_fitted_mixture_scores_raw_rows_as_it_was_trained(tmp_path):
    x = raw_rows(200).numpy()
    model = PotsMixture(config={**TINY, "model.likelihood": "auto"}, random_state=0, progress=False)
    model.fit(x)
    assert model.config_.data.scaling == "standard"
    path = tmp_path / "mixture"
    model.save(path)
    loaded = load_run(path)
    np.testing.assert_array_equal(loaded.predict(x), model.predict(x))
    np.testing.assert_allclose(loaded.score_samples(x), model.score_samples(x), rtol=1e-6)
    # samples come back in the data's units, not the standardised ones
    rows, _ = model.sample(400, random_state=0)
    assert abs(rows[:, 0].mean() - 1000.0) < 150.0


def _strip_units(value):
    """A trainer state as written before the data's units existed."""
    if isinstance(value, dict):
        for key, inner in list(value.items()):
            if key == "vae" and isinstance(inner, dict):
                for name in UNIT_BUFFERS:
                    inner.pop(name, None)
            else:
                _strip_units(inner)
    elif isinstance(value, list):
        for inner in value:
            _strip_units(inner)


def test_a_run_saved_before_the_units_loads_resumes_and_grows(tmp_path):
    data = tmp_path / "rows.npy"
    np.save(data, raw_rows(200).numpy())
    base = [f"{k}={v}" for k, v in TINY.items()] + [f"data.spec={data}"]
    run = tmp_path / "old"
    fit(load_config(None, base + [f"output.dir={run}", "data.scaling=none"]), progress=False)
    checkpoint = torch.load(run / "checkpoint.pt", weights_only=True)
    _strip_units(checkpoint["trainer"])
    assert "encoder.input_loc" not in checkpoint["trainer"]["vae"]
    torch.save(checkpoint, run / "checkpoint.pt")
    before = load_run(run).predict(raw_rows(200).numpy())
    # read as the data as they are: the identity units
    loaded = run_dir.load_checkpoint(run)["trainer"]["vae"]
    assert torch.equal(loaded["encoder.input_scale"], torch.ones(3))
    grown = tmp_path / "grown"
    cfg = load_config(None, base + [f"output.dir={grown}", "train.max_epochs=2"])
    fit(cfg, progress=False, grow_from=run)
    assert load_run(grown).predict(raw_rows(200).numpy()).shape == before.shape
    resumed = load_config(None, base + [f"output.dir={run}", "train.max_epochs=8"])
    fit(resumed, resume=True, progress=False)
