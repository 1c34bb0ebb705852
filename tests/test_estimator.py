"""PotsMixture (the scikit-learn estimator) and load_run (a fitted run without a trainer)."""

import csv
import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.base import clone
from sklearn.utils import estimator_checks

from pyro_pots import PotsMixture, PotsVAE, cli, fit, load_run, run_dir
from pyro_pots.config import load_config
from pyro_pots.data import make_synthetic
from pyro_pots.errors import PotsInputError
from pyro_pots.model.priors import LogitMoGPrior
from pyro_pots.storage.checkpoints import load_trainer_state
from pyro_pots.training.trainer import CurriculumTrainer

#: a fit of a second or two: two pots open from the start, one thread
TINY = {
    "model.num_pots": 3,
    "model.hidden_dim": 16,
    "model.decoder_hidden_dim": 16,
    "train.max_epochs": 15,
    "train.threads": 1,
    "curriculum.start_pots": 2,
}
#: a curriculum that splits at epoch 2 and is cut by the budget before the split is judged
PENDING = {
    **TINY,
    "curriculum.start_pots": 1,
    "curriculum.min_stage_epochs": 2,
    "curriculum.patience": 1,
    "curriculum.rel_tol": 1.0,
    "curriculum.kick_steps": 20,
    "curriculum.normality_critical": 0,
    "curriculum.min_agreement": 0,
    "train.max_epochs": 7,
}


def finished_by_a_trainer(run: Path) -> CurriculumTrainer:
    """The run's final model as the trainer makes it: its checkpoint loaded into the
    trainer its config builds, then ``finish()`` (what ``cli.load_run`` did before
    ``load_run`` read runs without a trainer): the reference load_run must match."""
    cfg = load_config(run / run_dir.CONFIG)
    state = run_dir.load_checkpoint(run)
    rows = torch.zeros(len(state["trainer"]["kick"]["targets"]), state["data_dim"])
    trainer = CurriculumTrainer.from_config(cfg, rows, rows[:0])
    load_trainer_state(trainer, state["trainer"], run / run_dir.CHECKPOINT)
    trainer.finish()
    return trainer


@pytest.fixture(scope="module")
def data():
    return make_synthetic(n_clusters=3, n_features=8, n_rows=300, seed=0).X


@pytest.fixture(scope="module")
def fitted(data):
    return PotsMixture(config=TINY, random_state=0).fit(data)


@pytest.fixture(scope="module")
def saved(fitted, tmp_path_factory):
    path = tmp_path_factory.mktemp("runs") / "run"
    fitted.save(path, plots=False)
    return path


def test_clone_and_params():
    vae = PotsVAE(8, num_pots=3, hidden_dim=16, decoder_hidden_dim=16)
    est = PotsMixture(config={"train": {"max_epochs": 5}}, model=vae, random_state=3)
    params = est.get_params()
    assert params == {
        "config": {"train": {"max_epochs": 5}},
        "model": vae,
        "random_state": 3,
        "progress": False,
    }
    copy = clone(est)
    assert copy is not est and copy.get_params()["config"] == params["config"]
    assert copy.get_params()["random_state"] == 3
    assert isinstance(copy.get_params()["model"], PotsVAE)
    assert est.set_params(random_state=7, progress=True) is est
    assert est.get_params()["random_state"] == 7 and est.progress is True
    assert not hasattr(clone(est), "model_")  # an unfitted copy


def test_sklearn_conventions():
    for check in (
        estimator_checks.check_parameters_default_constructible,
        estimator_checks.check_no_attributes_set_in_init,
        estimator_checks.check_get_params_invariance,
        estimator_checks.check_set_params,
    ):
        check("PotsMixture", PotsMixture())
    assert PotsMixture().__sklearn_tags__().estimator_type == "clusterer"


def test_fit_predict_round_trip(fitted, data):
    assert fitted.n_pots_ == len(fitted.pots_) == 2
    assert fitted.n_features_in_ == 8
    np.testing.assert_array_equal(fitted.labels_, fitted.predict(data))
    assert set(fitted.labels_) <= set(fitted.pots_)
    assert isinstance(fitted.model_, PotsVAE)
    assert len(fitted.history_) == fitted.config_.train.max_epochs
    assert fitted.stages_[-1]["action"] == "stop"
    assert fitted.config_.model.hidden_dim == 16 and fitted.config_.train.seed == 0
    np.testing.assert_allclose(fitted.weights_.sum(), 1.0, rtol=1e-5)
    # fit_predict is a fresh fit of the same seed: the same labels
    again = PotsMixture(config=TINY, random_state=0).fit_predict(data)
    np.testing.assert_array_equal(again, fitted.labels_)


def test_predict_proba(fitted, data):
    proba = fitted.predict_proba(data)
    assert proba.shape == (len(data), fitted.n_pots_)
    np.testing.assert_allclose(proba.sum(1), 1.0, rtol=1e-5)
    np.testing.assert_array_equal(fitted.pots_[proba.argmax(1)], fitted.predict(data))


def test_input_types_agree(fitted, data):
    expected = fitted.predict_proba(data)
    for X in (data.astype(np.float64), torch.from_numpy(data), torch.from_numpy(data).double()):
        np.testing.assert_array_equal(fitted.predict_proba(X), expected)
    np.testing.assert_array_equal(
        fitted.score_samples(data.astype(np.float64)), fitted.score_samples(data)
    )
    # a fit on float64 rows is the fit on their float32 cast
    est = PotsMixture(config=TINY, random_state=0).fit(torch.from_numpy(data).double())
    np.testing.assert_array_equal(est.labels_, fitted.labels_)
    np.testing.assert_array_equal(est.weights_, fitted.weights_)


@pytest.mark.parametrize(
    "X, words",
    [
        (np.zeros(8), "1-D"),
        (np.full((4, 8), np.nan), "non-finite"),
        (np.zeros((4, 5)), "5 features, the model takes 8"),
        (np.full((4, 8), 3.0), "[0, 1]"),
        (np.array([["a"] * 8]), "numeric"),
        (np.zeros((0, 8)), "no data"),
        ([[0.0] * 8, [0.0]], "not an array"),
        (torch.zeros(4, 8).to_sparse(), "not an array"),
    ],
)
def test_bad_input_is_one_line(fitted, X, words):
    with pytest.raises(PotsInputError, match=None) as info:
        fitted.predict(X)
    message = str(info.value)
    assert words in message and "\n" not in message


@pytest.mark.parametrize(
    "config, words",
    [
        ({"train.max_epoch": 5}, "did you mean 'max_epochs'"),
        ({"train": {"max_epochs": -1}}, "config key 'train.max_epochs'"),
        ({"nosuch.key": 1}, "unknown config section"),
        ([("train.max_epochs", 1)], "config must be a mapping"),
    ],
)
def test_bad_config_is_one_line(data, config, words):
    with pytest.raises(PotsInputError) as info:
        PotsMixture(config=config).fit(data)
    assert words in str(info.value) and "\n" not in str(info.value)


def test_nested_and_dotted_config_agree():
    from pyro_pots.estimator import resolve_config

    nested, _ = resolve_config({"train": {"max_epochs": 5, "lr": 1e-3}, "prior": {"M": 4}})
    dotted, _ = resolve_config({"train.max_epochs": 5, "train.lr": 0.001, "prior.M": 4.0})
    assert nested == dotted
    assert nested.train.max_epochs == 5 and nested.train.lr == 1e-3 and nested.prior.M == 4.0
    assert resolve_config(nested)[0] == nested  # a Config itself


def test_bad_input_to_fit(data):
    with pytest.raises(PotsInputError, match="non-finite"):
        PotsMixture(config=TINY).fit(np.where(data > 0.5, np.inf, data))
    with pytest.raises(PotsInputError, match="likelihood 'bernoulli' needs every value"):
        PotsMixture(config={**TINY, "model.likelihood": "bernoulli"}).fit(data * 5)


def _evaluate_neg_elbo(run: Path, tmp_path: Path) -> np.ndarray:
    out = tmp_path / "scores.csv"
    assert cli.main(["evaluate", "--run", str(run), "--output", str(out)]) == 0
    with open(out) as handle:
        return np.array([float(row["neg_elbo"]) for row in csv.DictReader(handle)])


def test_score_samples_is_minus_evaluates_neg_elbo(fitted, saved, data, tmp_path):
    neg_elbo = _evaluate_neg_elbo(saved, tmp_path)  # the CLI on the run's own rows
    scores = fitted.score_samples(data)
    assert scores.shape == (len(data),)
    np.testing.assert_allclose(scores, -neg_elbo, rtol=2e-6, atol=1e-5)  # CSV: 6 digits
    assert fitted.score(data) == pytest.approx(scores.mean())


def test_sample_draws_the_likelihood(fitted):
    X, pot = fitted.sample(200)
    assert X.shape == (200, 8) and X.dtype == np.float32 and pot.shape == (200,)
    assert set(pot) <= set(fitted.pots_)
    assert set(np.unique(X)) <= {0.0, 1.0}  # Bernoulli draws, not decoder means
    again, pot_again = fitted.sample(200)  # random_state=0: the same draws
    np.testing.assert_array_equal(X, again)
    np.testing.assert_array_equal(pot, pot_again)
    other, _ = fitted.sample(200, random_state=1)
    assert not np.array_equal(X, other)
    state = torch.get_rng_state()
    fitted.sample(5)
    assert torch.equal(torch.get_rng_state(), state)  # the caller's RNG is left alone


def test_save_then_load_run(fitted, saved, data):
    for path in (saved, str(saved)):
        run = load_run(path)
        np.testing.assert_array_equal(run.predict(data), fitted.predict(data))
        np.testing.assert_array_equal(run.predict_proba(data), fitted.predict_proba(data))
    np.testing.assert_array_equal(run.pots, fitted.pots_)
    np.testing.assert_allclose(run.weights, fitted.weights_, rtol=1e-6)
    np.testing.assert_array_equal(run.score_samples(data), fitted.score_samples(data))
    assert not run.model.training
    assert run.history == fitted.history_ and run.stages == fitted.stages_
    assert run.summary == fitted.summary_
    assert run.config.model == fitted.config_.model
    X, pot = run.sample(10, random_state=0)
    np.testing.assert_array_equal(X, fitted.sample(10, random_state=0)[0])


def test_load_run_matches_the_cli_with_a_pending_split(data, tmp_path):
    est = PotsMixture(config=PENDING, random_state=0).fit(data)
    pending = est._trainer_state["manager"]["pending"]
    assert pending is not None  # the budget cut a split before it was judged
    est.save(tmp_path / "run", plots=False)
    run = load_run(tmp_path / "run")
    trainer = finished_by_a_trainer(tmp_path / "run")
    assert pending["pot"] not in run.pots.tolist()
    np.testing.assert_array_equal(run.pots, trainer.vae.open_ids().numpy())
    np.testing.assert_array_equal(run.pots, est.pots_)
    for theirs in (trainer.vae.state_dict(), est.model_.state_dict()):
        ours = run.model.state_dict()
        assert ours.keys() == theirs.keys()
        for key in ours:
            assert torch.equal(ours[key], theirs[key].cpu()), key
    assert run.stages == est.stages_


def test_load_run_errors_are_one_line(tmp_path, saved):
    with pytest.raises(PotsInputError, match="does not exist"):
        load_run(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(PotsInputError, match="not finished"):
        load_run(tmp_path / "empty")


def test_curriculum_on_a_user_model(data, tmp_path):
    vae = PotsVAE(
        8,
        num_pots=3,
        hidden_dim=16,
        decoder_hidden_dim=16,
        logit_prior="none",
        logits_guide="normal",
        routing="softmax",
    )
    est = PotsMixture(config={**TINY, "model.hidden_dim": 99}, model=vae, random_state=0)
    est.fit(data)
    assert est.model_ is vae and est.n_pots_ == 2
    assert est.config_.prior.kind == "none" and est.config_.prior.logits_guide == "normal"
    assert est.config_.model.hidden_dim == 16  # the model's, not the config's model section
    est.save(tmp_path / "run", plots=False)
    run = load_run(tmp_path / "run")
    np.testing.assert_array_equal(run.predict_proba(data), est.predict_proba(data))
    assert run.model.logits_guide.params_per_pot == 2


def test_a_model_the_config_cannot_describe(data, tmp_path):
    class MyPrior(LogitMoGPrior):
        pass

    vae = PotsVAE(8, num_pots=3, hidden_dim=16, decoder_hidden_dim=16, logit_prior=MyPrior())
    est = PotsMixture(config={**TINY, "train.max_epochs": 3}, model=vae).fit(data)
    assert est.model_ is vae and est.config_.model.num_pots == 3
    with pytest.raises(PotsInputError, match="state_dict"):
        est.save(tmp_path / "run")
    with pytest.raises(PotsInputError, match="the model takes 8"):
        PotsMixture(config=TINY, model=vae).fit(data[:, :5])


def test_fit_leaves_no_trace(data, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    threads, rng = torch.get_num_threads(), torch.get_rng_state()
    PotsMixture(config={**TINY, "train.max_epochs": 2, "train.threads": 3}).fit(data)
    assert list(tmp_path.iterdir()) == []
    assert torch.get_num_threads() == threads
    assert torch.equal(torch.get_rng_state(), rng)


def test_unfitted_estimator_refuses(data):
    from sklearn.exceptions import NotFittedError

    with pytest.raises(NotFittedError):
        PotsMixture().predict(data)


def test_load_run_of_a_cli_fit_matches_the_cli(tmp_path):
    overrides = [f"{key}={value}" for key, value in PENDING.items()]
    overrides += ["data.spec=synthetic:k=3,d=8,n=300", f"output.dir={tmp_path / 'run'}"]
    threads = torch.get_num_threads()
    try:  # fit() sets the thread count for the process
        fit(load_config(None, overrides + ["output.plots=false"]), progress=False)
    finally:
        torch.set_num_threads(threads)
    assert run_dir.load_checkpoint(tmp_path / "run")["trainer"]["manager"]["pending"] is not None
    run = load_run(tmp_path / "run")
    trainer = finished_by_a_trainer(tmp_path / "run")
    np.testing.assert_array_equal(run.pots, trainer.vae.open_ids().numpy())
    theirs = trainer.vae.state_dict()
    assert all(torch.equal(value, theirs[key]) for key, value in run.model.state_dict().items())
    x = make_synthetic(n_clusters=3, n_features=8, n_rows=300, seed=0).X
    assert run.score_samples(x).shape == (300,)  # the run's data, read back by its spec


def test_a_fitted_estimator_pickles(fitted, data):
    copy = pickle.loads(pickle.dumps(fitted))
    np.testing.assert_array_equal(copy.predict_proba(data), fitted.predict_proba(data))
    np.testing.assert_array_equal(copy.score_samples(data), fitted.score_samples(data))


@pytest.mark.parametrize(
    "damage, words",
    [
        (lambda t: t["vae"].update({"encoder.trunk.weight": torch.zeros(2, 2)}), "model entry"),
        (lambda t: t["manager"].update({"open": [0, 99]}), "are not distinct pots of 3"),
        (lambda t: t["manager"].update({"open": [-1]}), "are not distinct pots of 3"),
        (lambda t: t.pop("manager"), "no manager"),
    ],
)
def test_load_run_refuses_a_damaged_checkpoint(saved, tmp_path, damage, words):
    run = tmp_path / "run"
    shutil.copytree(saved, run)
    state = torch.load(run / run_dir.CHECKPOINT, weights_only=True)
    damage(state["trainer"])
    torch.save(state, run / run_dir.CHECKPOINT)
    with pytest.raises(PotsInputError) as info:
        load_run(run)
    message = str(info.value)
    assert words in message and "\n" not in message and str(run / run_dir.CHECKPOINT) in message
