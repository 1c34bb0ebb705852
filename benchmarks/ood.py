"""
Do the per-row scores of ``pyro-pots evaluate --output`` flag out-of-distribution rows?
Fit on digits 0-4, score the held-out rows of 0-4 (in distribution) against every row of
5-9 (out of distribution), and report the AUROC of each score (scikit-learn), side by side
with two baselines fitted on the same training rows in the same run: a GaussianMixture
(K = 5 given, full covariance) log-likelihood and a plain single-latent Pyro VAE's ELBO.

    python benchmarks/ood.py --out runs/ood                       # fit, then score
    python benchmarks/ood.py --out runs/ood --run runs/ood/pots   # reuse the fitted run

``--out`` receives ``digits_0-4.npz`` (the data spec of the fit: the data spec has no class
filter) and the run directory ``pots``. Prints a Markdown table.
"""

import argparse
import time
from pathlib import Path
from typing import Dict

import numpy as np
import pyro
import pyro.distributions as dist
import torch
from pyro.infer import SVI, Trace_ELBO
from pyro.optim import Adam
from sklearn.metrics import roc_auc_score
from sklearn.mixture import GaussianMixture
from torch import nn

from pyro_pots import fit, load_run
from pyro_pots.config import load_config
from pyro_pots.data import load_data, load_digits
from pyro_pots.uncertainty import calibrate, per_row_log_weights, pot_misfit, row_scores


class PlainVAE(nn.Module):
    """One Normal latent, Bernoulli pixels: the model of Pyro's ``examples/vae``."""

    def __init__(self, data_dim: int, z_dim: int = 8, hidden: int = 200) -> None:
        super().__init__()
        self.z_dim = z_dim
        self.enc = nn.Sequential(nn.Linear(data_dim, hidden), nn.Softplus())
        self.loc, self.scale = nn.Linear(hidden, z_dim), nn.Linear(hidden, z_dim)
        self.dec = nn.Sequential(
            nn.Linear(z_dim, hidden), nn.Softplus(), nn.Linear(hidden, data_dim)
        )

    def model(self, x: torch.Tensor) -> None:
        pyro.module("plain_vae", self)
        with pyro.plate("data", x.shape[0], dim=-1):
            z = pyro.sample("z", dist.Normal(x.new_zeros(self.z_dim), 1.0).to_event(1))
            pyro.sample(
                "obs", dist.Bernoulli(logits=self.dec(z), validate_args=False).to_event(1), obs=x
            )

    def guide(self, x: torch.Tensor) -> None:
        pyro.module("plain_vae", self)
        h = self.enc(x)
        scale = nn.functional.softplus(self.scale(h)) + 1e-4
        with pyro.plate("data", x.shape[0], dim=-1):
            pyro.sample("z", dist.Normal(self.loc(h), scale).to_event(1))


def fit_plain_vae(x: torch.Tensor, epochs: int, seed: int) -> PlainVAE:
    pyro.set_rng_seed(seed)
    vae = PlainVAE(x.shape[1])
    svi = SVI(vae.model, vae.guide, Adam({"lr": 1e-3}), Trace_ELBO())
    gen = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        for rows in torch.randperm(len(x), generator=gen).split(128):
            svi.step(x[rows])
    return vae


@torch.no_grad()
def plain_vae_neg_elbo(vae: PlainVAE, x: torch.Tensor, num_samples: int) -> np.ndarray:
    """-log of the IW bound with ``num_samples`` draws per row (1: the plain ELBO)."""
    log_w = per_row_log_weights(vae.model, vae.guide, x, num_samples)
    return -(log_w.logsumexp(0) - np.log(num_samples)).numpy()


def tuned_gmm(x: np.ndarray, seed: int) -> GaussianMixture:
    """K = 5, full covariance, ``reg_covar`` chosen by the likelihood of a validation fifth
    of the (in-distribution) training rows: tuned without seeing an outlier."""
    rng = np.random.default_rng(seed)
    valid = np.zeros(len(x), bool)
    valid[rng.choice(len(x), len(x) // 5, replace=False)] = True

    def held_loglik(reg: float) -> float:
        gmm = GaussianMixture(5, covariance_type="full", reg_covar=reg, random_state=seed)
        return gmm.fit(x[~valid]).score(x[valid])

    best = max(10.0 ** np.arange(-6, 0), key=held_loglik)
    return GaussianMixture(5, covariance_type="full", reg_covar=best, random_state=seed).fit(x)


@torch.no_grad()
def zscore_variant(vae, train_x: torch.Tensor, x: torch.Tensor, samples) -> np.ndarray:
    """The misfit in the row's pot as a robust z-score: (l_c - median_c) / (1.4826 MAD_c),
    the statistics over the pot's training rows (the variant ood_score does not use)."""
    resp, _, nll = pot_misfit(vae, train_x, samples)
    assign = resp.argmax(-1)
    centre, spread = [], []
    for j in range(resp.shape[1]):
        own = nll[assign == j, j]
        centre.append(own.median())
        spread.append(1.4826 * (own - own.median()).abs().median())
    resp, _, nll = pot_misfit(vae, x, samples)
    a = resp.argmax(-1)
    own = nll.gather(-1, a[:, None]).squeeze(-1)
    return ((own - torch.stack(centre)[a]) / torch.stack(spread)[a]).numpy()


def auroc_and_se(is_ood: np.ndarray, score: np.ndarray, seed: int, reps: int = 500):
    """AUROC and its bootstrap standard error (rows resampled within each group)."""
    rng = np.random.default_rng(seed)
    inl, out = np.flatnonzero(is_ood == 0), np.flatnonzero(is_ood == 1)
    boot = [
        roc_auc_score(is_ood[rows], score[rows])
        for rows in (
            np.r_[rng.choice(inl, len(inl)), rng.choice(out, len(out))] for _ in range(reps)
        )
    ]
    return roc_auc_score(is_ood, score), float(np.std(boot))


def write_inlier_data(out: Path) -> Path:
    digits = load_digits()
    keep = digits.labels <= 4
    path = out / "digits_0-4.npz"
    np.savez(path, X=digits.X[keep], y=digits.labels[keep])
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="runs/ood")
    parser.add_argument("--run", help="reuse this fitted run on digits_0-4.npz")
    parser.add_argument("--samples", type=int, default=64, help="S of the IW scores")
    parser.add_argument("--vae-epochs", type=int, default=800, help="as the pots budget")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--set", action="append", default=[], help="config overrides")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    spec = write_inlier_data(out)
    run = Path(args.run) if args.run else out / "pots"
    if args.run is None:
        overrides = [f"data.spec={spec}", f"output.dir={run}", f"train.seed={args.seed}"]
        cfg = load_config(None, overrides + ["output.overwrite=true"] + args.set)
        vae = fit(cfg, progress=False).vae
    else:
        fitted = load_run(run)
        cfg, vae = fitted.config, fitted.model
    inliers = load_data(cfg.data.spec, cfg.model.likelihood)
    train, held = inliers.split(cfg.data.heldout_fraction, cfg.data.seed)
    digits = load_digits()
    outliers = digits.X[digits.labels >= 5]
    x = torch.from_numpy(np.concatenate([held.X, outliers]))
    is_ood = np.r_[np.zeros(held.n_rows), np.ones(len(outliers))]
    train_x = torch.from_numpy(train.X)

    scores: Dict[str, np.ndarray] = {}
    plain = row_scores(vae, x, calibrate(vae, train_x, None))
    iw = row_scores(vae, x, calibrate(vae, train_x, args.samples), args.samples)
    scores["pots: 1 - max_resp"] = 1 - plain["max_resp"]
    scores["pots: entropy"] = plain["entropy"]
    scores["pots: neg_elbo (ELBO)"] = plain["neg_elbo"]
    scores[f"pots: neg_elbo (IW, S={args.samples})"] = iw["neg_elbo"]
    scores["pots: ood_score (ELBO)"] = plain["ood_score"]
    scores[f"pots: ood_score (IW, S={args.samples})"] = iw["ood_score"]
    scores["pots: ood_score as a z-score (ELBO; not used)"] = zscore_variant(vae, train_x, x, None)

    gmm = GaussianMixture(5, covariance_type="full", random_state=args.seed).fit(train.X)
    scores["baseline: GaussianMixture K=5 (defaults: reg_covar=1e-6), -log p"] = -gmm.score_samples(
        x.numpy()
    )
    tuned = tuned_gmm(train.X, args.seed)
    name = f"baseline: GaussianMixture K=5, reg_covar={tuned.reg_covar:g} (validation), -log p"
    scores[name] = -tuned.score_samples(x.numpy())
    start = time.perf_counter()
    plain_vae = fit_plain_vae(train_x, args.vae_epochs, args.seed)
    vae_s = time.perf_counter() - start
    scores["baseline: plain VAE, -ELBO"] = plain_vae_neg_elbo(plain_vae, x, 1)
    scores[f"baseline: plain VAE, -IW (S={args.samples})"] = plain_vae_neg_elbo(
        plain_vae, x, args.samples
    )

    print(
        f"Run `{run}`: {int(vae.active.sum())} open pots; in distribution: {held.n_rows} "
        f"held-out rows of digits 0-4; out: {len(outliers)} rows of digits 5-9 "
        f"(plain VAE: d = 8, {args.vae_epochs} epochs, {vae_s:.0f} s).\n"
    )
    print("| score (higher = more OOD) | AUROC | bootstrap SE |\n| --- | --- | --- |")
    for name, value in scores.items():
        auroc, se = auroc_and_se(is_ood, value, args.seed)
        print(f"| {name} | {auroc:.3f} | {se:.3f} |")


if __name__ == "__main__":
    main()
