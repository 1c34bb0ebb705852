"""The curriculum's parts: the comparable score, the normality test, splits, the trainer's
acting on decisions."""

import math

import numpy as np
import pyro
import pytest
import torch
from pyro.infer import Trace_ELBO
from scipy.stats import norm

from pyro_pots import PotsVAE, handlers
from pyro_pots.config import load_config
from pyro_pots.curriculum import Decision
from pyro_pots.curriculum.normality import CRITICAL_1E4, split_normality
from pyro_pots.curriculum.split import copy_pot, fresh_pot, two_means
from pyro_pots.distributions import pots_mask
from pyro_pots.training.scoring import PotScores, mixture_loss, mixture_weights, pot_scores
from pyro_pots.training.trainer import CurriculumTrainer


def _scores(elbo, resp):
    n, a = elbo.shape
    return PotScores(torch.arange(a), elbo, resp, torch.zeros(a, n, 1))


# -- the comparable score ----------------------------------------------------------------
def test_mixture_loss_matches_a_row_by_row_computation():
    g = torch.Generator().manual_seed(0)
    elbo = -10 * torch.rand(6, 3, generator=g, dtype=torch.float64)
    resp = torch.softmax(torch.randn(6, 3, generator=g, dtype=torch.float64), -1)
    weights = torch.tensor([0.5, 0.3, 0.2], dtype=torch.float64)
    expected = [
        -float(
            sum(
                resp[i, c] * (elbo[i, c] + math.log(weights[c]) - math.log(resp[i, c]))
                for c in range(3)
            )
        )
        for i in range(6)
    ]
    got = mixture_loss(_scores(elbo, resp), weights)
    assert got.tolist() == pytest.approx(expected, rel=1e-12)


def test_mixture_loss_is_a_bound_tight_at_the_posterior():
    g = torch.Generator().manual_seed(1)
    elbo = -20 * torch.rand(50, 4, generator=g, dtype=torch.float64)
    weights = torch.tensor([0.1, 0.2, 0.3, 0.4], dtype=torch.float64)
    log_joint = elbo + weights.log()
    exact = -torch.logsumexp(log_joint, -1)  # -log sum_c pi_c exp(ELBO_c)
    posterior = torch.softmax(log_joint, -1)
    assert torch.allclose(mixture_loss(_scores(elbo, posterior), weights), exact)
    other = torch.softmax(torch.randn(50, 4, generator=g, dtype=torch.float64), -1)
    assert (mixture_loss(_scores(elbo, other), weights) >= exact - 1e-12).all()


def test_one_hot_rows_pay_minus_log_weight_and_empty_pots_cost_nothing():
    elbo = torch.tensor([[-3.0, -9.0, -5.0], [-4.0, -1.0, -7.0]], dtype=torch.float64)
    resp = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]], dtype=torch.float64)
    weights = mixture_weights(resp)
    assert weights.tolist() == pytest.approx([0.5, 0.5, 1e-6])
    assert mixture_loss(_scores(elbo, resp), weights).tolist() == pytest.approx(
        [3.0 + math.log(2), 1.0 + math.log(2)]
    )


def test_pot_elbo_agrees_with_pyros_elbo_on_one_open_pot(float64):
    torch.manual_seed(0)
    vae = PotsVAE(6, num_pots=3, latent_dim=2, hidden_dim=8, decoder_hidden_dim=8).double()
    x = torch.rand(5, 6, dtype=torch.float64)
    active = pots_mask(3, 1)  # one open pot: routing is exactly one-hot
    # both sides are Monte Carlo estimates (Pyro's KL term too): many draws
    scores = pot_scores(vae, x, active, num_samples=20000, generator=torch.Generator())
    elbo = Trace_ELBO(num_particles=2000)
    pyro.set_rng_seed(0)
    with handlers.logit_prior_scale(lam=0.0):
        loss = elbo.loss(vae.model, vae.guide, x, active)
    assert -scores.elbo.sum().item() == pytest.approx(loss, rel=5e-3)


# -- the normality statistic -------------------------------------------------------------
def test_normality_is_small_for_one_blob_and_large_for_two():
    rng = np.random.default_rng(0)
    one = torch.as_tensor(rng.standard_normal((600, 3)))
    two = torch.as_tensor(
        np.concatenate([rng.standard_normal((300, 3)) + [6, 0, 0], rng.standard_normal((300, 3))])
    )
    assert split_normality(one) < CRITICAL_1E4 < 20 < split_normality(two)


def test_normality_is_the_corrected_anderson_darling_statistic_of_the_projection():
    rng = np.random.default_rng(3)
    codes = torch.as_tensor(rng.standard_normal((200, 2)) * [1.0, 0.3] + [[0.5, 0.0]])
    halves = two_means(codes, 0)
    x = codes.numpy()
    axis = x[halves == 1].mean(0) - x[halves == 0].mean(0)
    p = np.sort(x @ axis)
    y = (p - p.mean()) / p.std(ddof=1)
    n = len(y)
    i = np.arange(1, n + 1)
    a2 = -n - np.mean((2 * i - 1) * (norm.logcdf(y) + norm.logsf(y[::-1])))
    assert split_normality(codes) == pytest.approx(a2 * (1 + 4 / n - 25 / n**2), rel=1e-6)


def test_normality_of_too_few_or_constant_codes_is_zero():
    assert split_normality(torch.randn(5, 2)) == 0.0
    assert split_normality(torch.ones(50, 2)) == 0.0


def test_two_means_keeps_the_larger_half_with_the_parent():
    codes = torch.cat([torch.zeros(30, 2), torch.full((10, 2), 5.0)])
    labels = two_means(codes, 0)
    assert (labels[:30] == 0).all() and (labels[30:] == 1).all()


# -- splitting a pot ---------------------------------------------------------------------
def _grouped(vae):
    return [
        vae.encoder.latent_heads.weight,
        vae.encoder.latent_heads.bias,
        vae.decoders.hidden_layer.weight,
        vae.decoders.hidden_layer.bias,
        vae.decoders.output_layer.weight,
        vae.decoders.output_layer.bias,
    ]


@pytest.mark.parametrize("guide", ["delta", "normal"])
def test_copy_pot_copies_parent_rows_and_optimizer_state_and_nothing_else(guide):
    torch.manual_seed(0)
    vae = PotsVAE(5, num_pots=4, latent_dim=2, hidden_dim=6, logits_guide=guide)
    opt = torch.optim.Adam(vae.parameters())
    sum(p.sum() for p in vae.parameters()).backward()
    opt.step()
    before = {name: p.detach().clone() for name, p in vae.named_parameters()}
    copy_pot(vae, parent=1, new=3, noise=0.0, generator=torch.Generator(), optimizer=opt)
    for tensor in _grouped(vae):
        assert torch.equal(tensor[3], tensor[1])
        assert torch.equal(opt.state[tensor]["exp_avg"][3], opt.state[tensor]["exp_avg"][1])
    head = vae.encoder.logits_head
    for block in range(vae.logits_guide.params_per_pot):
        assert torch.equal(head.weight[block * 4 + 3], head.weight[block * 4 + 1])
    for name, p in vae.named_parameters():  # pots 0, 1, 2 are untouched
        keep = [0, 1, 2] if p.shape[0] == 4 else [i for i in range(p.shape[0]) if i % 4 != 3]
        assert torch.equal(p.detach()[keep], before[name][keep]), name


def test_copy_pot_noise_has_the_requested_scale():
    vae = PotsVAE(5, num_pots=2, latent_dim=2, hidden_dim=400, decoder_hidden_dim=400)
    copy_pot(vae, 0, 1, noise=0.05, generator=torch.Generator().manual_seed(0))
    diff = vae.decoders.output_layer.weight[1] - vae.decoders.output_layer.weight[0]
    assert diff.std().item() == pytest.approx(0.05, rel=0.05)


@pytest.mark.parametrize("guide", ["delta", "normal"])
def test_fresh_pot_redraws_its_rows_in_the_default_init_range_and_zeroes_their_state(guide):
    torch.manual_seed(0)
    vae = PotsVAE(5, num_pots=4, latent_dim=2, hidden_dim=6, logits_guide=guide)
    opt = torch.optim.Adam(vae.parameters())
    for _ in range(3):  # trained rows, far from their init, with non-zero moments
        opt.zero_grad()
        sum((p**2).sum() - 3 * p.sum() for p in vae.parameters()).backward()
        opt.step()
    before = {name: p.detach().clone() for name, p in vae.named_parameters()}
    fresh_pot(vae, new=3, generator=torch.Generator().manual_seed(1), optimizer=opt)
    fan_in = {"latent_heads": 6, "hidden_layer": 2, "output_layer": 200}
    for name, p in vae.named_parameters():
        new_rows = [3] if p.shape[0] == 4 else [i for i in range(p.shape[0]) if i % 4 == 3]
        keep = [i for i in range(p.shape[0]) if i not in new_rows]
        if p.shape[0] not in (4, 4 * vae.logits_guide.params_per_pot):
            assert torch.equal(p.detach(), before[name]), name  # trunk, likelihood
            continue
        assert torch.equal(p.detach()[keep], before[name][keep]), name
        layer = next((k for k in fan_in if k in name), None)
        bound = 1 / math.sqrt(fan_in[layer] if layer else 6)  # logits head: the trunk's width
        drawn = p.detach()[new_rows]
        assert drawn.abs().max() <= bound and not torch.equal(drawn, before[name][new_rows])
        for moment in ("exp_avg", "exp_avg_sq"):
            state = opt.state[p][moment]
            assert (state[new_rows] == 0).all() and (state[keep] != 0).any(), (name, moment)


def test_a_fresh_split_leaves_the_parent_alone_and_starts_unlike_it():
    t = _trainer(**{"curriculum.new_pot_init": "fresh"})
    t.train_epoch()
    ev = t.evaluate()
    parent_before = t.vae.decoders.output_layer.bias.detach()[0].clone()
    t.manager.open.append(1)
    t.act(Decision("unlock", 1, 1, pot=1, parent=0), ev["scores"])
    bias = t.vae.decoders.output_layer.bias.detach()
    assert torch.equal(bias[0], parent_before)
    assert (bias[1] - bias[0]).abs().max() > 0.05  # no copy: far more than init_noise apart
    assert (t.kick.targets == 1).any()  # the kick still teaches the split


# -- the trainer acting on decisions ------------------------------------------------------
def _trainer(tmp_path=None, **overrides):
    cfg = load_config(
        None,
        [
            "model.num_pots=3",
            "model.hidden_dim=8",
            "model.decoder_hidden_dim=8",
            "train.batch_size=16",
            *[f"{k}={v}" for k, v in overrides.items()],
        ],
    )
    g = torch.Generator().manual_seed(0)
    centres = torch.tensor([[0.9] * 4 + [0.1] * 4, [0.1] * 4 + [0.9] * 4])
    x = (centres[torch.arange(64) % 2] + 0.05 * torch.randn(64, 8, generator=g)).clamp(0, 1)
    return CurriculumTrainer.from_config(cfg, x[:48], x[48:])


def test_unlock_copies_the_parent_and_sets_kick_targets_on_its_rows_only():
    t = _trainer()
    t.train_epoch()
    ev = t.evaluate()
    t.manager.open.append(1)  # what the manager does on an unlock
    t.manager.pending = {"pot": 1, "parent": 0, "attempt": 0}
    t.act(Decision("unlock", 1, 1, pot=1, parent=0), ev["scores"], ev["heldout_rows"])
    assert t.vae.active.tolist() == [True, True, False]
    bias = t.vae.decoders.output_layer.bias.detach()
    assert torch.allclose(bias[1], bias[0], atol=0.05) and not torch.equal(bias[1], bias[0])
    targets = t.kick.targets
    assert set(targets.unique().tolist()) <= {0, 1, -1} and (targets == 1).any()
    assert (targets[t.evaluate()["scores"].resp.argmax(-1) != 0] == -1).all()  # parent's rows
    assert t.kick.pot == 1 and torch.equal(t.pre_split["heldout_rows"], ev["heldout_rows"])


def test_kick_loss_pushes_targets_and_ignores_rows_without_one():
    t = _trainer()
    active = pots_mask(3, [0, 1])
    rows = torch.arange(8)
    t.kick.targets[:] = -1
    assert t.kick.loss(t.vae, t.train_x[rows], rows, active).item() == 0.0
    t.kick.targets[:4] = 1
    loss = t.kick.loss(t.vae, t.train_x[rows], rows, active)
    loss.backward()
    assert loss.item() > 0 and t.vae.encoder.logits_head.weight.grad[1].abs().sum() > 0
    assert t.vae.encoder.logits_head.weight.grad[2].abs().sum() == 0  # closed pot


def test_restore_returns_model_and_optimizer_to_the_snapshot():
    t = _trainer()
    t.train_epoch()
    snap = t.snapshot()
    t.train_epoch()
    assert not torch.equal(
        snap["vae"]["decoders.output_layer.bias"], t.vae.decoders.output_layer.bias
    )
    t.pre_split = {"state": snap, "heldout_rows": None}
    t.act(Decision("reject", 2, 1, restore=True), None)
    for name, value in t.vae.state_dict().items():
        assert torch.equal(value, snap["vae"][name]), name
    assert t.optimizer.state_dict()["state"][0]["step"] == snap["optimizer"]["state"][0]["step"]
    assert (t.kick.targets == -1).all() and t.pre_split is None


def test_split_agreement_is_the_rand_index_of_kick_targets_and_pots_now():
    t = _trainer()
    t.train_epoch()
    ev = t.evaluate()
    assert t.split_agreement(ev["scores"]) is None  # no split pending
    t.manager.open.append(1)
    t.manager.pending = {"pot": 1, "parent": 0}
    t.kick.targets[:] = -1
    t.kick.targets[:8] = torch.tensor([0, 0, 0, 0, 1, 1, 1, 1])
    n = len(t.train_x)

    def scores_with(pots_of_rows):
        resp = torch.nn.functional.one_hot(torch.tensor(pots_of_rows), 2).double()
        return PotScores(torch.tensor([0, 1]), torch.zeros(n, 2), resp, torch.zeros(2, n, 1))

    rest = [0] * (n - 8)  # rows without a target do not count
    assert t.split_agreement(scores_with([0, 0, 0, 0, 1, 1, 1, 1] + rest)) == 1.0
    assert t.split_agreement(scores_with([1, 1, 1, 1, 0, 0, 0, 0] + rest)) == 1.0  # relabelled
    assert t.split_agreement(scores_with([0] * n)) == 0.0  # the split faded
    drifted = t.split_agreement(scores_with([0, 0, 0, 0, 0, 0, 1, 1] + rest))
    assert 0.0 < drifted < 0.5  # a sliver of the kicked half is left
