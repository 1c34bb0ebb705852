"""Per-row uncertainty and OOD scores: the estimator, the columns, the CSV, bad input."""

import csv
import json

import numpy as np
import pyro
import pytest
import torch
from pyro.infer import RenyiELBO
from scipy.stats import entropy as scipy_entropy

from pyro_pots import PotsVAE
from pyro_pots.cli import main
from pyro_pots.training.scoring import pot_scores
from pyro_pots.uncertainty import (
    COLUMNS,
    calibrate,
    iw_log_likelihood,
    per_row_log_weights,
    pot_model_and_guide,
    row_scores,
)
from tests.test_labels import TINY


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    out = tmp_path_factory.mktemp("uncertainty") / "run"
    assert main([*TINY, "--out", str(out)]) == 0
    return out


@pytest.fixture
def vae():
    torch.manual_seed(0)
    model = PotsVAE(8, num_pots=3, hidden_dim=16, decoder_hidden_dim=16)
    model.open_pots([0, 2])
    return model


def test_per_row_weights_are_pyros_renyi_elbo_on_each_row(vae):
    x = torch.rand(4, 8)
    model, guide = pot_model_and_guide(vae, 2)
    renyi = RenyiELBO(alpha=0, num_particles=7, vectorize_particles=True, max_plate_nesting=1)
    for i in range(len(x)):
        pyro.set_rng_seed(i)
        ours = per_row_log_weights(model, guide, x[i : i + 1], 7).logsumexp(0) - np.log(7)
        pyro.set_rng_seed(i)
        assert ours.item() == pytest.approx(-renyi.loss(model, guide, x[i : i + 1]), rel=1e-6)


def test_one_sample_iw_is_the_elbo_in_expectation_and_more_samples_raise_it(vae):
    x = torch.rand(6, 8)
    # ELBO_c with analytic KL and many reconstruction draws: the reference
    elbo = pot_scores(vae, x, vae.active, num_samples=4000).elbo  # (N, A)
    draws = torch.stack([iw_log_likelihood(vae, x, 1) for _ in range(400)])  # (400, N, A)
    sem = draws.std(0) / 400**0.5
    assert ((draws.mean(0) - elbo).abs() < 4 * sem + 1e-3).all()
    # the IW bound is above the ELBO on average (a tighter bound on log p_c(x))
    iw = torch.stack([iw_log_likelihood(vae, x, 64) for _ in range(20)]).mean(0)
    assert (iw > elbo).all()


def test_entropy_max_resp_and_neg_elbo_against_independent_formulas(vae):
    x = torch.rand(30, 8)
    calibration = calibrate(vae, x, None)
    scores = row_scores(vae, x, calibration)
    resp = vae.responsibilities(x)[:, [0, 2]].double().numpy()
    np.testing.assert_allclose(scores["entropy"], scipy_entropy(resp, axis=1), rtol=1e-5)
    np.testing.assert_allclose(scores["max_resp"], resp.max(1), rtol=1e-6)
    assert scores["pot"].tolist() == np.array([0, 2])[resp.argmax(1)].tolist()
    # the mixture's posterior over pots: pi_c exp(ELBO_c) normalised, pi the calibration rows'
    # mean responsibility, ELBO_c with the same (seeded) draw as pot_misfit
    elbo = pot_scores(vae, x, vae.active, generator=torch.Generator().manual_seed(0)).elbo
    joint = np.log(resp.mean(0)) + elbo.double().numpy()
    posterior = np.exp(joint - joint.max(1, keepdims=True))
    posterior /= posterior.sum(1, keepdims=True)
    np.testing.assert_allclose(scores["max_posterior"], posterior.max(1), rtol=1e-5)
    # the plain neg_elbo is above the IW one (a looser upper bound on -log p(x)) on average
    iw = row_scores(vae, x, calibrate(vae, x, 64), num_samples=64)
    assert iw["neg_elbo"].mean() < scores["neg_elbo"].mean()
    # ood_score compares with the calibration rows: on those rows each pot's (lower) median
    # is 0, the same draws being reused
    for pot in np.unique(scores["pot"]):
        own = np.sort(scores["ood_score"][scores["pot"] == pot])
        assert own[(len(own) - 1) // 2] == pytest.approx(0, abs=1e-5)


def read_csv(path):
    return list(csv.DictReader(open(path)))


def test_evaluate_output_csv_one_row_per_input_row_in_order(run, tmp_path, capsys):
    output = tmp_path / "scores.csv"
    capsys.readouterr()
    assert main(["evaluate", "--run", str(run), "--output", str(output)]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["output"] == str(output) and "clustering" in summary  # JSON kept
    rows = read_csv(output)
    assigned = read_csv(run / "assignments.csv")  # fit's own per-row output, input order
    assert list(rows[0]) == ["row", *COLUMNS]
    assert len(rows) == len(assigned) == 240
    assert [r["pot"] for r in rows] == [a["pot"] for a in assigned]
    np.testing.assert_allclose(
        [float(r["max_resp"]) for r in rows], [float(a["max_resp"]) for a in assigned], atol=2e-6
    )
    for column in COLUMNS[1:]:
        assert np.isfinite([float(r[column]) for r in rows]).all()
    # importance weighted: same rows, a tighter (lower) neg_elbo on average
    iw_output = tmp_path / "iw.csv"
    argv = ["evaluate", "--run", str(run), "--output", str(iw_output), "--samples", "16"]
    assert main(argv) == 0
    iw = read_csv(iw_output)
    assert [r["pot"] for r in iw] == [r["pot"] for r in rows]
    assert np.mean([float(r["neg_elbo"]) for r in iw]) < np.mean(
        [float(r["neg_elbo"]) for r in rows]
    )


def test_evaluate_never_replaces_an_output_without_overwrite(run, tmp_path, capsys):
    output = tmp_path / "mine.csv"
    output.write_text("precious")
    argv = ["evaluate", "--run", str(run), "--output", str(output)]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "mine.csv" in err[0] and "--overwrite" in err[0]
    assert output.read_text() == "precious"
    assert main(argv + ["--overwrite"]) == 0
    assert len(read_csv(output)) == 240


def test_evaluate_bad_input_is_one_line(tmp_path, capsys):
    argv = ["evaluate", "--run", str(tmp_path / "nope"), "--output", str(tmp_path / "o.csv")]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "nope" in err[0]
    assert not (tmp_path / "o.csv").exists()
