"""Per-row uncertainty and OOD scores: the estimator, the columns, the CSV, bad input."""

import csv
import json

import numpy as np
import pyro
import pytest
import torch
from pyro.infer import RenyiELBO
from scipy.stats import entropy as scipy_entropy
from sklearn.neighbors import NearestNeighbors

from pyro_pots import PotsVAE
from pyro_pots.cli import main
from pyro_pots.training.scoring import pot_scores
from pyro_pots.uncertainty import (
    COLUMNS,
    calibrate,
    iw_log_likelihood,
    per_row_log_weights,
    pot_distance_ratios,
    pot_distances,
    pot_misfit,
    pot_model_and_guide,
    row_scores,
)
from tests.test_labels import TINY
from tests.test_ood_options import routed_vae
from tests.test_ood_options import rows as uniform_rows


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


# ood_score's distance options (calibrate's among, ratio, combine), against numpy/sklearn


@pytest.fixture
def routed():
    """Three open pots, each row routed by the largest of its first three features."""
    return routed_vae()


def knn_mean(ref, queries, k, own):
    """Mean distance to the k nearest rows of ref (sklearn), leaving a row itself out."""
    near = NearestNeighbors(n_neighbors=min(k + own, len(ref))).fit(ref).kneighbors(queries)
    return (near[0][:, 1:], near[1][:, 1:]) if own else near


def density_ratio(ref, queries, k, own):
    """rho_k = d_k(x) / mean over x's k nearest reference rows of their own d_k."""
    ref_dk = knn_mean(ref, ref, k, True)[0].mean(1)
    dist, index = knn_mean(ref, queries, k, own)
    return dist.mean(1) / ref_dk[index].mean(1)


def test_density_ratio_against_sklearn_and_scale_invariant():
    gen, f64 = torch.Generator().manual_seed(8), torch.float64
    reference = [
        torch.rand(9, 4, generator=gen, dtype=f64),
        3 * torch.rand(6, 4, generator=gen, dtype=f64),
    ]
    queries = torch.rand(12, 4, generator=gen, dtype=f64)
    assign = torch.tensor([0, 1] * 6)
    got = pot_distance_ratios(queries, assign, reference, 3, own=False).numpy()
    for j in (0, 1):
        mine = (assign == j).numpy()
        want = density_ratio(reference[j].numpy(), queries[mine].numpy(), 3, False)
        np.testing.assert_allclose(got[mine], want, rtol=1e-9)
    own = torch.cat(reference)
    own_assign = torch.tensor([0] * 9 + [1] * 6)
    got_own = pot_distance_ratios(own, own_assign, reference, 3, own=True).numpy()
    for j, rows in ((0, slice(0, 9)), (1, slice(9, 15))):
        want = density_ratio(reference[j].numpy(), reference[j].numpy(), 3, True)
        np.testing.assert_allclose(got_own[rows], want, rtol=1e-9)
    # a ratio of distances: the same for the data in other units, unlike d_k itself
    scaled = pot_distance_ratios(7.5 * queries, assign, [7.5 * r for r in reference], 3, False)
    np.testing.assert_allclose(scaled.numpy(), got, rtol=1e-9)
    # pot 1's rows are spread 3 times wider: its calibration rows' ratios are about 1 as
    # pot 0's are, while their distances are about 3 times larger
    dist_own = pot_distances(own, own_assign, reference, 3, own=True).numpy()
    assert dist_own[9:].mean() > 2 * dist_own[:9].mean()
    assert abs(np.log(got_own[9:].mean() / got_own[:9].mean())) < 0.3


def lower_median(values):
    return np.sort(values)[(len(values) - 1) // 2]


def tail_probability(values, null):
    return (1 + (null[None, :] >= values[:, None]).sum(1)) / (len(null) + 1)


@pytest.mark.parametrize("among", ["pot", "all"])
@pytest.mark.parametrize("ratio", [False, True])
@pytest.mark.parametrize("combine", ["sum", "fisher"])
def test_distance_options_against_numpy_and_sklearn(routed, among, ratio, combine):
    train, x = uniform_rows(60, 4), uniform_rows(25, 5)
    assert routed.responsibilities(train)[:, [0, 1, 3]].argmax(-1).bincount().min() >= 10
    calibration = calibrate(routed, train, None, neighbours=4, among=among, ratio=ratio,
                            combine=combine)  # fmt: skip
    got = row_scores(routed, x, calibration)["ood_score"]
    # independently: the pot-relative misfits from the same seeded draws
    t_resp, _, t_nll = (v.double().numpy() for v in pot_misfit(routed, train, None))
    resp, _, nll = (v.double().numpy() for v in pot_misfit(routed, x, None))
    t_pot, pot = t_resp.argmax(1), resp.argmax(1)
    median = np.array([lower_median(t_nll[t_pot == j, j]) for j in range(3)])
    t_misfit = t_nll[np.arange(60), t_pot] - median[t_pot]
    misfit = nll[np.arange(25), pot] - median[pot]
    # the distance term, to the pot's calibration rows or to all of them
    groups = (
        [(t_pot == j, pot == j) for j in range(3)]
        if among == "pot"
        else [(np.ones(60, bool), np.ones(25, bool))]
    )
    t_dist, dist = np.zeros(60), np.zeros(25)
    measure = density_ratio if ratio else (lambda r, q, k, own: knn_mean(r, q, k, own)[0].mean(1))
    for t_mine, mine in groups:
        ref = train.numpy()[t_mine]
        t_dist[t_mine] = measure(ref, ref, 4, True)
        if mine.any():
            dist[mine] = measure(ref, x.numpy()[mine], 4, False)
    if combine == "fisher":
        p_m, p_d = tail_probability(misfit, t_misfit), tail_probability(dist, t_dist)
        want = -2 * (np.log(p_m) + np.log(p_d))
        assert (got >= 0).all() and (got <= 4 * np.log(61) + 1e-12).all()
    else:

        def robust_z(values, ref):
            centre = lower_median(ref)
            return (values - centre) / (1.4826 * lower_median(np.abs(ref - centre)))

        want = robust_z(misfit, t_misfit) + robust_z(dist, t_dist)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_fisher_tail_probabilities_saturate_beyond_every_calibration_row(routed):
    train, x = uniform_rows(60, 4), uniform_rows(25, 5)
    calibration = calibrate(routed, train, None, neighbours=4, among="all", combine="fisher")
    misfit, dist = calibration.null.numpy()  # the calibration rows' terms, sorted
    assert misfit.size == dist.size == 60 and (np.diff(misfit) >= 0).all()
    assert (np.diff(dist) >= 0).all()
    far = x.clone()
    far[:, 3:] += 5.0  # far from every calibration row, the routing features unchanged
    got = row_scores(routed, far, calibration)["ood_score"]
    # the distance term lies beyond every calibration row's: p_d = 1 / 61, and the score is
    # the misfit's part plus -2 log(1/61), never more than -4 log(1/61)
    resp, _, nll = (v.double().numpy() for v in pot_misfit(routed, far, None))
    pot = resp.argmax(1)
    own = nll[np.arange(25), pot] - calibration.median.double().numpy()[pot]
    p_m = tail_probability(own, misfit)
    np.testing.assert_allclose(got, -2 * np.log(p_m) + 2 * np.log(61), rtol=1e-9)
    assert (got <= 4 * np.log(61) + 1e-9).all()


@pytest.mark.parametrize(
    "options, match",
    [
        (dict(neighbours=3, among="everything"), "among"),
        (dict(neighbours=3, combine="product"), "combine"),
        (dict(among="all"), "among"),
        (dict(ratio=True), "ratio"),
        (dict(combine="fisher"), "combine"),
    ],
)
def test_bad_distance_options_are_refused_by_name(routed, options, match):
    with pytest.raises(ValueError, match=match):
        calibrate(routed, uniform_rows(12, 0), None, **options)


def test_default_options_keep_the_plain_misfit(routed):
    train, x = uniform_rows(40, 1), uniform_rows(10, 2)
    default = calibrate(routed, train, None)
    explicit = calibrate(routed, train, None, among="pot", ratio=False, combine="sum")
    assert default.null is None and default.reference is None and default.spread is None
    np.testing.assert_array_equal(
        row_scores(routed, x, default)["ood_score"], row_scores(routed, x, explicit)["ood_score"]
    )
