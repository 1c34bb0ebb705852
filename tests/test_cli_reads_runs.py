"""The commands that read a finished run (``evaluate``, ``label``, ``sample``, ``ppc``) read
it through :func:`pyro_pots.load_run`, without a trainer, with the same checks and lines as
the library; ``sample`` draws from the mixture the model defines; ``--version`` and the
defaults in ``--help``."""

import json

import numpy as np
import pytest
import torch
from test_cli_and_examples import TINY
from test_estimator import TINY as TWO_POTS  # two pots open from the start: weights 0.35, 0.65

import pyro_pots
from pyro_pots import PotsMixture, load_run
from pyro_pots.cli import main
from pyro_pots.data import make_synthetic
from pyro_pots.errors import PotsInputError
from pyro_pots.fitted_run import sample_mixture
from pyro_pots.training.trainer import CurriculumTrainer

#: a CLI fit of a few epochs
QUICK = [*TINY, "--set", "output.plots=false", "--set", "train.max_epochs=3"]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A saved run of two open pots, Bernoulli likelihood (the data lie in [0, 1])."""
    out = tmp_path_factory.mktemp("reads") / "run"
    x = make_synthetic(n_clusters=3, n_features=8, n_rows=300, seed=0).X
    est = PotsMixture(config=TWO_POTS, random_state=0).fit(x)
    assert est.n_pots_ == 2 and est.config_.model.likelihood == "bernoulli"
    est.save(out, plots=False)
    return out


def test_version_prints_the_package_version(capsys):
    with pytest.raises(SystemExit) as stop:
        main(["--version"])
    assert stop.value.code == 0
    assert capsys.readouterr().out.strip() == f"pyro-pots {pyro_pots.__version__}"


@pytest.mark.parametrize(
    "command, default",
    [
        ("fit", "default: digits)"),
        ("evaluate", "(default: the plain ELBO)"),
        ("label", "(default: next)"),
        ("sample", "(default: 16)"),
        ("ppc", "(default: 100)"),
    ],
)
def test_every_subcommand_help_shows_its_defaults(capsys, command, default):
    with pytest.raises(SystemExit) as stop:
        main([command, "--help"])
    assert stop.value.code == 0
    shown = " ".join(capsys.readouterr().out.split())  # argparse wraps lines
    assert default in shown
    assert "(default: None)" not in shown and "(default: False)" not in shown


def test_sample_draws_pots_by_the_mixture_weights(run, tmp_path, capsys):
    n = 20_000
    out = tmp_path / "mix.npz"
    capsys.readouterr()
    assert main(["sample", "--run", str(run), "-n", str(n), "--seed", "5", "--out", str(out)]) == 0
    report = json.loads(capsys.readouterr().out)
    drawn = np.load(out)
    fitted = load_run(run)
    weights = fitted.weights  # the training rows' mean responsibilities over the open pots
    assert report["weights"] == pytest.approx(dict(zip(map(str, fitted.pots), weights)))
    assert drawn["X"].shape == (n, 8) and drawn["X"].dtype == np.float32
    assert set(np.unique(drawn["X"])) <= {0.0, 1.0}  # Bernoulli draws, not decoder means
    frequency = np.array([(drawn["pot"] == pot).mean() for pot in fitted.pots])
    error = np.sqrt(weights * (1 - weights) / n)
    assert (np.abs(frequency - weights) <= 4 * error + 1e-12).all(), (frequency, weights)
    # the draws are sample_mixture's, with the seed given
    rows, pots = sample_mixture(fitted.model, torch.as_tensor(weights, dtype=torch.float32), n, 5)
    np.testing.assert_array_equal(drawn["X"], rows)
    np.testing.assert_array_equal(drawn["pot"], pots)


def test_sample_of_one_pot(run, tmp_path):
    pot = int(load_run(run).pots[-1])
    out = tmp_path / "one.npz"
    assert (
        main(["sample", "--run", str(run), "--pot", str(pot), "-n", "50", "--out", str(out)]) == 0
    )
    drawn = np.load(out)
    assert (drawn["pot"] == pot).all() and set(np.unique(drawn["X"])) <= {0.0, 1.0}


def test_the_commands_build_no_trainer(run, tmp_path, monkeypatch, capsys):
    def refuse(*args, **kwargs):
        raise AssertionError("a command that reads a run built a CurriculumTrainer")

    monkeypatch.setattr(CurriculumTrainer, "from_config", refuse)
    monkeypatch.setattr(CurriculumTrainer, "finish", refuse)
    labels = tmp_path / "labels.csv"
    labels.write_text("row,label\n0,1\n1,0\n")
    scores = tmp_path / "scores.csv"
    assert main(["evaluate", "--run", str(run), "--output", str(scores)]) == 0
    assert main(["label", "--run", str(run), "--labels", str(labels)]) == 0
    assert main(["sample", "--run", str(run), "-n", "4", "--out", str(tmp_path / "s.npz")]) == 0
    assert main(["ppc", "--run", str(run), "-n", "2"]) == 0


def _cli_error(argv, capsys) -> str:
    capsys.readouterr()
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1
    return err.strip().removeprefix("pyro-pots: error: ")


def test_load_run_refuses_an_unfinished_run_as_the_cli_does(run, tmp_path, capsys):
    import shutil

    unfinished = tmp_path / "unfinished"
    shutil.copytree(run, unfinished)
    (unfinished / "summary.json").unlink()
    with pytest.raises(PotsInputError) as info:
        load_run(unfinished)
    assert "fit --out" in str(info.value) and "--resume" in str(info.value)
    for command in ("evaluate", "sample", "ppc"):
        assert _cli_error([command, "--run", str(unfinished)], capsys) == str(info.value)


def test_load_run_refuses_a_changed_data_file_as_the_cli_does(tmp_path, capsys):
    data = tmp_path / "d.npy"
    rng = np.random.default_rng(0)
    np.save(data, rng.random((60, 8)).astype(np.float32))
    out = tmp_path / "run"
    assert main(["fit", "--out", str(out), *QUICK, "--data", str(data)]) == 0
    np.save(data, rng.random((60, 8)).astype(np.float32))  # same shape, other values
    fitted = load_run(out)  # the model needs no data
    with pytest.raises(PotsInputError) as info:
        _ = fitted.weights  # the mixture weights read the run's own rows: checked
    assert "is not the data the run in" in str(info.value)
    assert _cli_error(["evaluate", "--run", str(out)], capsys) == str(info.value)
    assert _cli_error(["sample", "--run", str(out)], capsys) == str(info.value)


def test_growing_refuses_an_unfinished_run_and_a_crafted_checkpoint(run, tmp_path, capsys):
    import shutil

    grow = ["fit", "--quiet", "--data", "synthetic:k=2,d=8,n=240,seed=4"]
    unfinished = tmp_path / "unfinished"
    shutil.copytree(run, unfinished)
    (unfinished / "summary.json").unlink()
    argv = [*grow, "--resume-from", str(unfinished), "--out", str(tmp_path / "a")]
    assert "--resume" in _cli_error(argv, capsys)
    crafted = tmp_path / "crafted"
    shutil.copytree(run, crafted)
    state = torch.load(crafted / "checkpoint.pt", weights_only=True)
    moments = next(iter(state["trainer"]["optimizer"]["state"].values()))
    moments["exp_avg"] = torch.zeros(7)  # smaller than its parameter: the fused kernel's heap
    torch.save(state, crafted / "checkpoint.pt")
    argv = [*grow, "--resume-from", str(crafted), "--out", str(tmp_path / "b")]
    assert "optimizer entry" in _cli_error(argv, capsys)
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_a_saved_run_with_its_data_file_can_be_overwritten(run, tmp_path):
    import shutil

    from pyro_pots import run_dir

    saved = tmp_path / "saved"
    shutil.copytree(run, saved)
    assert (saved / run_dir.DATA).is_file()  # the estimator's rows: a run's own file
    est = PotsMixture(config={**TWO_POTS, "train.max_epochs": 2}, random_state=1)
    est.fit(make_synthetic(n_clusters=2, n_features=8, n_rows=100, seed=1).X)
    with pytest.raises(PotsInputError, match="exists"):
        est.save(saved, plots=False)
    est.save(saved, overwrite=True, plots=False)
    assert load_run(saved).summary["n_rows"] == 100
    argv = ["fit", "--out", str(saved), *QUICK, "--overwrite"]
    assert main(argv) == 0  # the CLI replaces it too, data.npy included
    assert not (saved / run_dir.DATA).exists()
