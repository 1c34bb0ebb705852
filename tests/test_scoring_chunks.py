"""pot_scores decodes in chunks of rows: the same numbers at every chunk size, bounded work."""

import pytest
import torch
from torch.nn.functional import softplus

from pyro_pots import PotsVAE
from pyro_pots.model import scoring
from pyro_pots.model.networks import MIN_SCALE
from pyro_pots.model.scoring import MAX_DECODE_FLOATS, default_chunk_rows, pot_scores
from pyro_pots.training import stage_scores
from pyro_pots.uncertainty import mean_max_posterior, pot_misfit, pot_posterior

N, D = 23, 8


@pytest.fixture
def vae():
    torch.manual_seed(0)
    model = PotsVAE(D, num_pots=4, hidden_dim=16, decoder_hidden_dim=16).double()
    model.open_pots([0, 1, 3])
    return model


@pytest.fixture
def x():
    return torch.rand(N, D, generator=torch.Generator().manual_seed(1), dtype=torch.float64)


def unchunked(vae, x, num_samples, seed):
    """Today's pot_scores written out by hand: all rows at once, noise (S, A, N, d)."""
    pots = vae.active.nonzero().squeeze(-1)
    h = softplus(vae.encoder.trunk(x))
    resp = vae.responsibilities(x)[:, pots]
    w, b = vae.encoder.latent_heads.weight[pots], vae.encoder.latent_heads.bias[pots]
    out = torch.einsum("nh,aho->ano", h, w) + b[:, None]
    loc, raw = out[..., : vae.latent_dim], out[..., vae.latent_dim :]
    scale = softplus(raw) + MIN_SCALE
    gen = torch.Generator().manual_seed(seed)
    noise = torch.randn((num_samples,) + loc.shape, generator=gen, dtype=loc.dtype)
    z = loc + scale * noise  # (S, A, N, d)
    dec = vae.decoders
    hid = softplus(
        torch.einsum("sand,adh->sanh", z, dec.hidden_layer.weight[pots])
        + dec.hidden_layer.bias[pots][:, None]
    )
    logit = (
        torch.einsum("sanh,ahD->sanD", hid, dec.output_layer.weight[pots])
        + dec.output_layer.bias[pots][:, None]
    )
    log_lik = torch.distributions.Bernoulli(logits=logit, validate_args=False).log_prob(x)
    log_lik = log_lik.sum(-1).mean(0)  # (A, N)
    kl = 0.5 * (loc**2 + scale**2 - 1 - 2 * scale.log()).sum(-1)
    return (log_lik - kl).T, resp, loc


@pytest.mark.parametrize("num_samples", [1, 3])
def test_pot_scores_is_the_same_at_every_chunk_size(vae, x, num_samples):
    ref_elbo, ref_resp, ref_codes = unchunked(vae, x, num_samples, seed=5)
    for rows in (1, 7, N, N + 100, None):
        gen = torch.Generator().manual_seed(5)
        got = pot_scores(vae, x, vae.active, num_samples, generator=gen, rows=rows)
        # float64: only the rounding of matmuls over a different number of rows may differ;
        # a different draw for any row would move its ELBO by far more than this
        torch.testing.assert_close(got.elbo, ref_elbo, rtol=1e-12, atol=1e-10)
        torch.testing.assert_close(got.resp, ref_resp, rtol=1e-12, atol=1e-14)
        torch.testing.assert_close(got.codes, ref_codes, rtol=1e-12, atol=1e-12)
        assert got.pots.tolist() == [0, 1, 3]
    # a different seed is a different draw: the check above can tell draws apart
    other = pot_scores(vae, x, vae.active, num_samples, generator=torch.Generator().manual_seed(6))
    assert (other.elbo - ref_elbo).abs().max() > 1e-3


def test_default_chunk_is_one_call_for_small_inputs_bit_for_bit(vae, x):
    assert default_chunk_rows(vae, D, 3) >= N
    one = pot_scores(vae, x, vae.active, generator=torch.Generator().manual_seed(2), rows=N)
    auto = pot_scores(vae, x, vae.active, generator=torch.Generator().manual_seed(2))
    for name in ("elbo", "resp", "codes"):
        assert torch.equal(getattr(one, name), getattr(auto, name))


def test_chunks_bound_the_decoding(vae, x, monkeypatch):
    seen = []
    decode = vae.decoders.decode

    def spy(z, idx):
        seen.append(tuple(z.shape))
        return decode(z, idx)

    monkeypatch.setattr(vae.decoders, "decode", spy)
    pot_scores(vae, x, vae.active, num_samples=2, rows=7)
    assert seen == [(2, 3, 7, vae.latent_dim)] * 3 + [(2, 3, 2, vae.latent_dim)]
    # the default: the widest decoded layer of one chunk stays within MAX_DECODE_FLOATS
    seen.clear()
    monkeypatch.setattr(scoring, "MAX_DECODE_FLOATS", 2 * 3 * 16 * 5)  # 5 rows of width 16
    pot_scores(vae, x, vae.active, num_samples=2)
    assert [shape[2] for shape in seen] == [5, 5, 5, 5, 3]
    assert default_chunk_rows(vae, 784, 20) * 20 * 784 <= MAX_DECODE_FLOATS
    assert default_chunk_rows(vae, 10**9, 20) == 1
    with pytest.raises(ValueError, match="rows"):
        pot_scores(vae, x, vae.active, rows=0)


def test_mean_max_posterior_goes_through_the_chunked_scores(vae, x, monkeypatch):
    resp, _, nll = pot_misfit(vae, x, None)
    expected = pot_posterior(nll, resp.mean(0)).max(-1).values.mean().item()
    monkeypatch.setattr(scoring, "MAX_DECODE_FLOATS", 1)  # one row per chunk
    assert mean_max_posterior(vae, x) == pytest.approx(expected, rel=1e-12)


def test_epoch_responsibility_pass_is_the_same_in_chunks(vae, x, monkeypatch):
    whole = stage_scores.epoch_scores(vae, x, x[:5], seed=0)
    monkeypatch.setattr(stage_scores, "RESP_CHUNK_ROWS", 4)
    monkeypatch.setattr(scoring, "MAX_DECODE_FLOATS", 1)
    chunked = stage_scores.epoch_scores(vae, x, x[:5], seed=0)
    assert chunked.heldout_loss == pytest.approx(whole.heldout_loss, rel=1e-12)
    assert chunked.mean_max_resp == pytest.approx(whole.mean_max_resp, rel=1e-12)
    assert chunked.usage.keys() == whole.usage.keys()
    for pot in whole.usage:
        assert chunked.usage[pot] == pytest.approx(whole.usage[pot], rel=1e-12)
