import json

import pyro
import pytest
import torch
from pyro import poutine
from pyro.infer import Predictive

from pyro_pots import PotsVAE, ppc, sites
from pyro_pots.cli import main

K, D, N = 4, 16, 30

#: a tiny curriculum run on 4x4 "images" (16 features, so the per-pot figure is drawn).
TINY = [
    "--data",
    "synthetic:k=2,d=16,n=120,seed=3",
    "--quiet",
    *("--set", "model.num_pots=3"),
    *("--set", "model.hidden_dim=16"),
    *("--set", "model.decoder_hidden_dim=16"),
    *("--set", "curriculum.min_stage_epochs=2"),
    *("--set", "curriculum.patience=1"),
    *("--set", "curriculum.rel_tol=0.5"),
    *("--set", "curriculum.kick_steps=4"),
    *("--set", "prior.lam_warmup_epochs=2"),
    *("--set", "train.threads=1"),
    *("--set", "train.max_epochs=6"),
]


def tiny_vae(**kwargs) -> PotsVAE:
    vae = PotsVAE(D, num_pots=K, latent_dim=2, hidden_dim=8, decoder_hidden_dim=8, **kwargs)
    vae.open_pots([0, 2])
    return vae


def data(seed: int = 0) -> torch.Tensor:
    """Rows strictly inside (0, 1): never equal to a Bernoulli replicate's 0/1 values."""
    return torch.rand(N, D, generator=torch.Generator().manual_seed(seed)) * 0.8 + 0.1


# -- p-values ------------------------------------------------------------------------------
def test_p_value_of_a_statistic_equal_on_data_and_replicates_is_one():
    t_rep = torch.full((20, 3), 2.5)
    p, p_two = ppc.p_values(torch.full((3,), 2.5), t_rep)
    assert torch.equal(p, torch.ones(3)) and torch.equal(p_two, torch.ones(3))


@pytest.mark.parametrize(
    "t_obs, p, p_two",
    [(6.5, 0.3, 0.6), (-1.0, 1.0, 0.0), (20.0, 0.0, 0.0), (3.0, 0.7, 0.8)],
)
def test_p_value_counts_replicates_at_least_as_large(t_obs, p, p_two):
    t_rep = torch.arange(10.0)  # 0..9; at 3.0: 7 above or equal, 4 below or equal
    got, got_two = ppc.p_values(torch.tensor(t_obs), t_rep)
    assert got.item() == pytest.approx(p) and got_two.item() == pytest.approx(p_two)


# -- replicates ----------------------------------------------------------------------------
def test_replicates_are_those_of_predictive_with_the_guide():
    vae, x = tiny_vae(), data()
    samples = ppc.posterior_predictive(vae, x, num_samples=5, seed=3)
    model = poutine.uncondition(vae.model)
    pyro.set_rng_seed(3)
    direct = Predictive(model, guide=vae.guide, num_samples=5, return_sites=ppc.RETURN_SITES)
    expected = direct(x, vae.active)
    assert set(samples) == set(expected)
    for name, value in expected.items():
        assert torch.equal(samples[name], value), name
    assert samples[sites.OBS].shape == (5, 1, N, D)
    assert samples[sites.Z].shape == (5, K, N, 2)
    assert samples[sites.LOGITS].shape == samples[sites.ROUTE].shape == (5, 1, N, K)
    assert samples["_RETURN"].shape == (5, N, D)
    assert ppc.replicates(samples).shape == (5, N, D)


def test_replicates_route_only_to_open_pots_and_follow_the_likelihood():
    samples = ppc.posterior_predictive(tiny_vae(), data(), num_samples=4, seed=0)
    route = samples[sites.ROUTE]
    assert torch.all(route[..., [1, 3]] == 0)
    assert torch.allclose(route.sum(-1), torch.ones(()))
    assert set(ppc.replicates(samples).unique().tolist()) <= {0.0, 1.0}  # Bernoulli draws


def test_seed_fixes_the_draws_and_leaves_the_callers_rng_alone():
    vae, x = tiny_vae(), data()
    torch.manual_seed(7)
    a = ppc.posterior_predictive(vae, x, num_samples=3, seed=1)[sites.OBS]
    after = torch.rand(3)
    torch.manual_seed(7)
    b = ppc.posterior_predictive(vae, x, num_samples=3, seed=1)[sites.OBS]
    assert torch.equal(a, b) and torch.equal(torch.rand(3), after)
    torch.manual_seed(7)
    assert torch.equal(torch.rand(3), after)  # as if no draws had been made
    c = ppc.posterior_predictive(vae, x, num_samples=3, seed=2)[sites.OBS]
    assert not torch.equal(a, c)


@pytest.mark.parametrize("prior", ["none", "categorical_kl"])
def test_replicates_of_a_model_whose_logit_prior_cannot_be_sampled(prior):
    vae, x = tiny_vae(logit_prior=prior), data()
    assert not ppc.can_sample_logit_prior(vae)
    samples = ppc.posterior_predictive(vae, x, num_samples=2, seed=0)
    guide_logits = vae.mean_logits(x)
    assert torch.allclose(samples[sites.LOGITS][:, 0], guide_logits.expand(2, N, K))


# -- prior predictive ----------------------------------------------------------------------
def test_prior_draws_of_one_pot_use_only_that_pot():
    vae = tiny_vae()
    draws = ppc.prior_predictive(vae, num_rows=6, num_samples=3, pot=2, seed=0)
    assert draws[sites.OBS].shape == (3, 1, 6, D)
    assert torch.all(draws[sites.ROUTE][..., 2] == 1) and torch.all(draws[sites.ROUTE][..., 0] == 0)
    assert torch.all(draws[sites.RESPONSIBILITIES][..., 2] == 1)
    with torch.no_grad():  # another pot's decoder changes nothing, this pot's does
        vae.decoders.output_layer.bias[0] += 5.0
        same = ppc.prior_predictive(vae, num_rows=6, num_samples=3, pot=2, seed=0)
        vae.decoders.output_layer.bias[2] += 5.0
        moved = ppc.prior_predictive(vae, num_rows=6, num_samples=3, pot=2, seed=0)
    assert torch.equal(same["_RETURN"], draws["_RETURN"])
    assert not torch.equal(moved["_RETURN"], draws["_RETURN"])


def test_prior_draws_of_the_whole_model_use_every_open_pot():
    draws = ppc.prior_predictive(tiny_vae(), num_rows=200, seed=0)
    picked = draws[sites.RESPONSIBILITIES][0, 0].argmax(-1)
    assert set(picked.tolist()) == {0, 2}


def test_prior_draws_refuse_a_closed_pot_and_an_unsampleable_whole_model():
    with pytest.raises(ValueError, match="pot 1 is not open"):
        ppc.prior_predictive(tiny_vae(), num_rows=2, pot=1)
    vae = tiny_vae(logit_prior="categorical_kl")
    with pytest.raises(ValueError, match="cannot be sampled"):
        ppc.prior_predictive(vae, num_rows=2)
    one_pot = ppc.prior_predictive(vae, num_rows=2, pot=0, seed=0)  # any prior: one pot
    assert torch.all(one_pot[sites.ROUTE][..., 0] == 1)


# -- the check -----------------------------------------------------------------------------
def test_check_has_every_statistic_with_its_shape():
    vae, x = tiny_vae(), data()
    result = ppc.check(vae, x, num_samples=6, seed=0)
    assert list(result.statistics) == ["mean", "variance", "occupancy", "log_likelihood"]
    shapes = {"mean": (D,), "variance": (D,), "occupancy": (2,), "log_likelihood": ()}
    for name, shape in shapes.items():
        c = result.statistics[name]
        assert c.p_value.shape == c.p_two_sided.shape == shape, name
        assert c.replicated.shape == (6, *shape), name
        assert torch.all((c.p_value >= 0) & (c.p_value <= 1)), name
    assert result.statistics["log_likelihood"].observed.shape == (6,)
    assert torch.allclose(result.statistics["mean"].observed, x.mean(0))
    occupancy = result.statistics["occupancy"]
    assert torch.allclose(occupancy.replicated.sum(-1), torch.ones(6))
    usage = vae.responsibilities(x)[:, [0, 2]].argmax(-1).bincount(minlength=2) / N
    assert torch.allclose(occupancy.observed, usage)


def test_a_users_statistic_is_checked_on_data_and_each_replicate():
    calls = []

    def rows(x):
        calls.append(x.shape)
        return torch.tensor(float(x.shape[0]))

    def non_binary(x):  # the data are grey levels, Bernoulli replicates are 0/1
        return ((x > 0) & (x < 1)).float().mean()

    result = ppc.check(
        tiny_vae(), data(), num_samples=5, statistics={"rows": rows, "grey": non_binary}
    )
    assert calls == [(N, D)] * 6  # the data, then each replicate
    same, grey = result.statistics["rows"], result.statistics["grey"]
    assert same.p_value.item() == 1.0 and same.flagged(0.05) == 0
    assert grey.observed.item() == 1.0 and torch.all(grey.replicated == 0)
    assert grey.p_value.item() == 0.0 and grey.flagged(0.05) == 1
    assert result.summary()["grey"] == {"size": 1, "flagged": 1, "min_p_two_sided": 0.0}


def test_check_refuses_a_built_in_name_and_no_replicates():
    with pytest.raises(ValueError, match="built in"):
        ppc.check(tiny_vae(), data(), statistics={"mean": lambda x: x.mean()})
    with pytest.raises(ValueError, match="num_samples"):
        ppc.check(tiny_vae(), data(), num_samples=0)


def test_log_likelihood_discrepancy_of_replicates_equal_to_the_data():
    vae, x = tiny_vae(likelihood="normal"), data()
    out = torch.randn(3, N, D)
    samples = {"_RETURN": out, sites.OBS: x.expand(3, 1, N, D)}
    c = ppc.log_likelihood_check(vae, x, samples)
    assert torch.equal(c.observed, c.replicated)
    assert c.p_value.item() == 1.0 and c.p_two_sided.item() == 1.0
    expected = vae.likelihood(out[1]).log_prob(x).mean()
    assert c.observed[1].item() == pytest.approx(expected.item())


def test_image_shape_is_known_or_a_square():
    assert ppc.image_shape_of(64) == (8, 8)
    assert ppc.image_shape_of(20) is None and ppc.image_shape_of(1) is None
    assert ppc.image_shape_of(28, (4, 7)) == (4, 7)


# -- a fitted run and the CLI --------------------------------------------------------------
@pytest.fixture(scope="module")
def fitted_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("ppc") / "run"
    assert main(["fit", "--out", str(out), *TINY]) == 0
    return out


def test_ppc_command_writes_its_files_and_leaves_the_others(fitted_run, capsys):
    mine = fitted_run / "plots" / "mine.png"
    mine.write_bytes(b"a user's figure")
    before = {p.name: p.read_bytes() for p in fitted_run.iterdir() if p.is_file()}
    capsys.readouterr()
    assert main(["ppc", "--run", str(fitted_run), "-n", "8", "--seed", "1"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert set(printed["statistics"]) == set(ppc.BUILTIN_STATISTICS)
    report = json.loads((fitted_run / "ppc.json").read_text())
    assert report["tool"] == ppc.TOOL and report["num_samples"] == 8 and report["seed"] == 1
    assert report["n_rows"] == 120 and report["n_features"] == 16
    assert len(report["statistics"]["mean"]["p_value"]) == 16
    assert report["plots"] == ["plots/ppc_statistics.png", "plots/ppc_replicates.png"]
    for name in report["plots"]:
        assert (fitted_run / name).stat().st_size > 0
    assert mine.read_bytes() == b"a user's figure"
    assert {p.name: p.read_bytes() for p in fitted_run.iterdir() if p.is_file()} == {
        **before,
        "ppc.json": (fitted_run / "ppc.json").read_bytes(),
    }
    # its own ppc.json is replaced, with the same numbers for the same seed
    assert main(["ppc", "--run", str(fitted_run), "-n", "8", "--seed", "1"]) == 0
    assert json.loads((fitted_run / "ppc.json").read_text()) == report


def test_check_run_on_other_data_with_as_many_features(fitted_run, tmp_path):
    import numpy as np

    other = tmp_path / "other.npy"
    np.save(other, np.random.default_rng(0).uniform(0.1, 0.9, (40, 16)).astype(np.float32))
    (fitted_run / "plots" / "ppc_replicates.png").unlink(missing_ok=True)
    report = ppc.check_run(fitted_run, num_samples=4, data=str(other))
    assert report["data"] == str(other) and report["n_rows"] == 40
    assert report["plots"] == ["plots/ppc_statistics.png", "plots/ppc_replicates.png"]
    assert (fitted_run / "plots" / "ppc_replicates.png").exists()  # 16 = 4 x 4


def test_ppc_never_replaces_a_ppc_json_it_did_not_write(fitted_run, tmp_path, capsys):
    copy = tmp_path / "run"
    copy.mkdir()
    for name in ("config.yaml", "checkpoint.pt", "summary.json"):
        (copy / name).write_bytes((fitted_run / name).read_bytes())
    (copy / "ppc.json").write_text('{"my": "notes"}')
    assert main(["ppc", "--run", str(copy), "-n", "2"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "ppc.json" in err[0]
    assert (copy / "ppc.json").read_text() == '{"my": "notes"}'
    assert not (copy / "plots").exists()


@pytest.mark.parametrize(
    "extra, needle",
    [
        (["--data", "synthetic:k=2,d=8,n=40"], "features"),
        (["--data", "no_such_file.npz"], "no_such_file.npz"),
    ],
)
def test_ppc_bad_data_is_one_line_exit_2(fitted_run, capsys, extra, needle):
    assert main(["ppc", "--run", str(fitted_run), "-n", "2", *extra]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and needle in err[0]


def test_ppc_bad_run_and_bad_count(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["ppc", "--run", "no_such_run"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no_such_run" in err[0]
    with pytest.raises(SystemExit) as exit_info:
        main(["ppc", "--run", "x", "--num-samples", "0"])
    assert exit_info.value.code == 2 and "--num-samples" in capsys.readouterr().err
    with pytest.raises(ppc.PotsInputError, match="num_samples"):
        ppc.check_run(tmp_path, num_samples=0)


# -- vectorized draws ----------------------------------------------------------------------
def test_parallel_replicates_have_the_sequential_shapes():
    vae, x = tiny_vae(), data()
    parallel = ppc.posterior_predictive(vae, x, num_samples=5, seed=0, parallel=True)
    sequential = ppc.posterior_predictive(vae, x, num_samples=5, seed=0)
    assert {k: v.shape for k, v in parallel.items()} == {k: v.shape for k, v in sequential.items()}
    assert torch.all(parallel[sites.ROUTE][..., [1, 3]] == 0)
    result = ppc.check(vae, x, num_samples=5, parallel=True)
    assert result.statistics["mean"].replicated.shape == (5, D)


@pytest.mark.parametrize("routing", ["softmax", "gumbel"])
def test_vectorized_model_scores_each_draw_as_the_plain_model_does(routing):
    # Under an outer plate (vectorized Predictive or ELBO particles) each draw's obs term
    # must equal the unvectorized model's on that draw's latents: the mixed decoder output
    # keeps the size-1 dim of the channels slot instead of broadcasting across draws.
    vae, x, draws = tiny_vae(routing=routing), data(), 3
    latent = (sites.LOGITS, sites.ROUTE, sites.Z)
    with pyro.plate("draws", draws, dim=-3):
        guide_trace = poutine.trace(vae.guide).get_trace(x, vae.active)
        model_trace = poutine.trace(poutine.replay(vae.model, trace=guide_trace)).get_trace(
            x, vae.active
        )
    obs = model_trace.nodes[sites.OBS]
    vectorized = obs["fn"].log_prob(obs["value"])
    assert vectorized.shape == (draws, 1, N)
    for s in range(draws):
        values = {name: guide_trace.nodes[name]["value"][s] for name in latent}
        values = {name: v.squeeze(0) if name != sites.Z else v for name, v in values.items()}
        plain = poutine.trace(poutine.condition(vae.model, data=values)).get_trace(x, vae.active)
        site = plain.nodes[sites.OBS]
        assert torch.allclose(vectorized[s, 0], site["fn"].log_prob(site["value"]), atol=1e-5)
