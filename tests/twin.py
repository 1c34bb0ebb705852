"""
A pure-PyTorch twin of the PotsVAE training loss: the same weights, the same noise (drawn
with the same torch RNG calls, in the same order as the guide), none of Pyro's bookkeeping.

It is an independent re-derivation of the negative ELBO from the design's math, used as
the reference for correctness (tests) and for speed (benchmarks). It covers the default
configuration: Delta logits guide, logit_mog prior, bernoulli or normal likelihood, any
routing mode, responsibility-weighted KL.
"""

import math

import torch
from torch.nn.functional import softplus

from pyro_pots.model.networks import MIN_SCALE


def _normal_log_density(z, loc, scale):
    return (-0.5 * ((z - loc) / scale) ** 2 - scale.log() - 0.5 * math.log(2 * math.pi)).sum(-1)


def _log_p_mix(y, M, sigma, active):
    """log of the uniform mixture of N(M e_k, sigma^2 I) over open k, by explicit distances."""
    K = y.shape[-1]
    corners = M * torch.eye(K, dtype=y.dtype, device=y.device)[active]  # (|A|, K)
    sq = ((y.unsqueeze(-2) - corners) ** 2).sum(-1)  # (N, |A|)
    log_comp = -sq / (2 * sigma**2) - 0.5 * K * math.log(2 * math.pi * sigma**2)
    return torch.logsumexp(log_comp, -1) - math.log(int(active.sum()))


def twin_loss(
    vae, x: torch.Tensor, active: torch.Tensor, lam: float = 1.0, batched: bool = False
) -> torch.Tensor:
    """Negative ELBO of ``vae`` on ``x`` with open pots ``active``, summed over rows.

    With ``batched`` the open pots' heads and decoders are one batched matmul each (the
    speed reference of ``benchmarks/speed.py``); without it, a Python loop over the pots
    (the plainest reading of the math). Both give the same loss."""
    p = dict(vae.named_parameters())
    K, d = vae.num_pots, vae.latent_dim
    idx = active.nonzero().squeeze(-1)
    N = x.shape[0]

    # Encoder: trunk, raw logits (Delta guide), responsibilities over the open pots.
    h = softplus(x @ p["encoder.trunk.weight"].T + p["encoder.trunk.bias"])
    y = h @ p["encoder.logits_head.weight"].T + p["encoder.logits_head.bias"]
    r = torch.softmax(y.masked_fill(~active, -math.inf), -1)

    # Routing, same noise as PotRouting.rsample.
    scores = y
    if vae.routing != "softmax":
        finfo = torch.finfo(y.dtype)
        u = torch.rand((N, K), dtype=y.dtype, device=y.device).clamp(finfo.tiny, 1 - finfo.eps)
        scores = y - torch.log(-torch.log(u))
    w = torch.softmax((scores / vae.temperature).masked_fill(~active, -math.inf), -1)
    if vae.routing == "straight_through":
        hard = torch.nn.functional.one_hot(w.argmax(-1), K).to(w)
        w = hard + (w - w.detach())

    # Per-pot latents for the open pots; z is drawn for all K as the guide does.
    W, b = p["encoder.latent_heads.weight"], p["encoder.latent_heads.bias"]
    if batched:
        heads = torch.baddbmm(b[idx].unsqueeze(1), h.expand(len(idx), -1, -1), W[idx])
    else:
        heads = torch.stack([h @ W[k] + b[k] for k in idx.tolist()])  # (|A|, N, 2d)
    loc, scale = heads[..., :d], softplus(heads[..., d:]) + MIN_SCALE
    eps = torch.empty((K, N, d), dtype=y.dtype, device=y.device).normal_()
    z = loc + scale * eps[idx]

    # Decoders of the open pots, mixed by the routing weights.
    W1, b1 = p["decoders.hidden_layer.weight"], p["decoders.hidden_layer.bias"]
    W2, b2 = p["decoders.output_layer.weight"], p["decoders.output_layer.bias"]
    if batched:
        hidden = softplus(torch.baddbmm(b1[idx].unsqueeze(1), z, W1[idx]))
        per_pot = torch.baddbmm(b2[idx].unsqueeze(1), hidden, W2[idx])  # (|A|, N, D)
        out = (w.T[idx].unsqueeze(-1) * per_pot).sum(0)
    else:
        out = sum(
            w[:, k, None] * (softplus(z[j] @ W1[k] + b1[k]) @ W2[k] + b2[k])
            for j, k in enumerate(idx.tolist())
        )

    if vae.likelihood.kind == "bernoulli":
        log_lik = (x * out - softplus(out)).sum(-1)
    else:
        log_lik = _normal_log_density(x, out, vae.likelihood.scale)

    zero, one = torch.zeros_like(z), torch.ones_like(z)
    kl = _normal_log_density(z, loc, scale) - _normal_log_density(z, zero, one)  # (|A|, N)
    prior = vae.logit_prior
    log_prior = _log_p_mix(y, prior.M, prior.sigma, active)
    elbo = log_lik.sum() + lam * log_prior.sum() - (r.T[idx] * kl).sum()
    return -elbo
