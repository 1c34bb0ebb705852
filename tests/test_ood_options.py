"""The options of ood_score (calibrate's neighbours and saturated) against independent
computations: numpy and scikit-learn's NearestNeighbors."""

import numpy as np
import pytest
import torch
from sklearn.neighbors import NearestNeighbors

from pyro_pots import PotsVAE
from pyro_pots.uncertainty import (
    calibrate,
    pot_distances,
    pot_misfit,
    row_scores,
    saturated_misfit,
)


def routed_vae() -> PotsVAE:
    """Three open pots (0, 1, 3), each row routed by the largest of its first three features."""
    torch.manual_seed(0)
    model = PotsVAE(6, num_pots=4, hidden_dim=16, decoder_hidden_dim=16)
    model.open_pots([0, 1, 3])
    with torch.no_grad():  # route each row by the largest of its first three features
        model.encoder.trunk.weight.zero_()
        model.encoder.trunk.bias.zero_()
        model.encoder.trunk.weight[:3, :3] = 20 * torch.eye(3)
        model.encoder.logits_head.weight.zero_()
        model.encoder.logits_head.bias.zero_()
        for feature, pot in enumerate([0, 1, 3]):
            model.encoder.logits_head.weight[pot, feature] = 1.0
    return model


@pytest.fixture
def vae():
    return routed_vae()


def rows(n, seed):
    return torch.rand(n, 6, generator=torch.Generator().manual_seed(seed))


def test_the_fixture_routes_rows_to_every_open_pot(vae):
    pots = vae.responsibilities(rows(60, 4))[:, [0, 1, 3]].argmax(-1)
    assert pots.bincount(minlength=3).min() >= 10


def test_saturated_misfit_is_the_binary_entropy_and_the_best_any_decoder_reaches(vae):
    x = rows(9, 1)
    x[0, :3] = torch.tensor([0.0, 1.0, 0.5])  # the ends, where x log x is taken as 0
    xs = x.double().numpy()
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.nan_to_num(xs * np.log(xs)) + np.nan_to_num((1 - xs) * np.log(1 - xs))
    np.testing.assert_allclose(saturated_misfit(vae, x).numpy(), -terms.sum(1), rtol=1e-12)
    # minus the bernoulli log-likelihood at logits reproducing the row, and below any other
    inner = x.clamp(1e-6, 1 - 1e-6)
    at_row = -vae.likelihood(torch.logit(inner.double())).log_prob(inner.double())
    np.testing.assert_allclose(
        saturated_misfit(vae, inner).numpy(), at_row.numpy(), rtol=1e-9, atol=1e-9
    )
    other = -vae.likelihood(torch.randn(9, 6, dtype=torch.float64)).log_prob(inner.double())
    assert (other > at_row).all()
    vae.likelihood.kind = "normal"
    with pytest.raises(ValueError, match="bernoulli"):
        saturated_misfit(vae, x)


def test_pot_distances_against_nearest_neighbors():
    gen = torch.Generator().manual_seed(3)
    reference = [torch.rand(7, 4, generator=gen), torch.rand(2, 4, generator=gen)]
    queries = torch.rand(10, 4, generator=gen)
    assign = torch.tensor([0, 1, 0, 0, 1, 1, 0, 1, 0, 0])
    got = pot_distances(queries, assign, reference, 3, own=False).numpy()
    for j, k in ((0, 3), (1, 2)):  # pot 1 has only 2 rows: all of them
        nn = NearestNeighbors(n_neighbors=k).fit(reference[j].numpy())
        mine = (assign == j).numpy()
        want = nn.kneighbors(queries[mine].numpy())[0].mean(1)
        np.testing.assert_allclose(got[mine], want, rtol=1e-6)
    # the reference rows themselves: each leaves itself out
    own = torch.cat(reference)
    own_assign = torch.tensor([0] * 7 + [1] * 2)
    got = pot_distances(own, own_assign, reference, 3, own=True).numpy()
    nn = NearestNeighbors(n_neighbors=4).fit(reference[0].numpy())
    np.testing.assert_allclose(got[:7], nn.kneighbors(reference[0].numpy())[0][:, 1:].mean(1))
    partner = (reference[1][0] - reference[1][1]).norm().item()  # the one other row
    np.testing.assert_allclose(got[7:], [partner, partner], rtol=1e-6)


def lower_median(values):
    """The library's median (torch.median): the lower middle value of an even count."""
    return np.sort(values)[(len(values) - 1) // 2]


def robust_z(values, ref):
    centre = lower_median(ref)
    return (values - centre) / (1.4826 * lower_median(np.abs(ref - centre)))


@pytest.mark.parametrize("samples", [None, 8])
@pytest.mark.parametrize("saturated", [False, True])
def test_neighbours_ood_score_is_the_sum_of_two_robust_z_scores(vae, samples, saturated):
    train, x = rows(60, 4), rows(25, 5)
    calibration = calibrate(vae, train, samples, neighbours=4, saturated=saturated)
    got = row_scores(vae, x, calibration, samples)
    # independently: per-pot misfits (the same seeded draws), minus the saturated term
    t_resp, _, t_nll = (v.double().numpy() for v in pot_misfit(vae, train, samples))
    resp, _, nll = (v.double().numpy() for v in pot_misfit(vae, x, samples))
    if saturated:
        t_nll = t_nll - saturated_misfit(vae, train).numpy()[:, None]
        nll = nll - saturated_misfit(vae, x).numpy()[:, None]
    t_pot, pot = t_resp.argmax(1), resp.argmax(1)
    median = np.array([lower_median(t_nll[t_pot == j, j]) for j in range(3)])
    t_misfit = t_nll[np.arange(60), t_pot] - median[t_pot]
    misfit = nll[np.arange(25), pot] - median[pot]
    t_dist, dist = np.zeros(60), np.zeros(25)
    for j in range(3):
        ref = train.numpy()[t_pot == j]
        nn = NearestNeighbors(n_neighbors=min(5, len(ref))).fit(ref)
        t_dist[t_pot == j] = nn.kneighbors(ref)[0][:, 1:].mean(1)
        if (pot == j).any():
            near = NearestNeighbors(n_neighbors=min(4, len(ref))).fit(ref)
            dist[pot == j] = near.kneighbors(x.numpy()[pot == j])[0].mean(1)
    want = robust_z(misfit, t_misfit) + robust_z(dist, t_dist)
    np.testing.assert_allclose(got["ood_score"], want, rtol=1e-5, atol=1e-5)
    # the other columns do not depend on the options
    plain = row_scores(vae, x, calibrate(vae, train, samples), samples)
    for column in ("pot", "max_resp", "entropy", "neg_elbo", "max_posterior"):
        np.testing.assert_allclose(got[column], plain[column], rtol=1e-6)


def test_saturated_alone_shifts_each_row_by_its_entropy(vae):
    train, x = rows(40, 6), rows(12, 7)
    plain_cal = calibrate(vae, train, None)
    sat_cal = calibrate(vae, train, None, saturated=True)
    plain, sat = row_scores(vae, x, plain_cal), row_scores(vae, x, sat_cal)
    # the saturated medians: of l_c(x') - H(x') over the pot's calibration rows
    resp, _, nll = pot_misfit(vae, train, None)
    t_pot = resp.argmax(-1).numpy()
    t_sat = nll.double().numpy() - saturated_misfit(vae, train).numpy()[:, None]
    median = np.array([lower_median(t_sat[t_pot == j, j]) for j in range(3)])
    np.testing.assert_allclose(sat_cal.median.numpy(), median, rtol=1e-9)
    # each row: its own misfit (plain score + plain median) minus H(x) minus the new median
    column = np.searchsorted([0, 1, 3], plain["pot"])
    own = plain["ood_score"] + plain_cal.median.numpy()[column]
    want = own - saturated_misfit(vae, x).numpy() - median[column]
    np.testing.assert_allclose(sat["ood_score"], want, rtol=1e-5, atol=1e-5)


def test_negative_neighbours_is_refused(vae):
    with pytest.raises(ValueError, match="neighbours"):
        calibrate(vae, rows(5, 0), None, neighbours=-1)
