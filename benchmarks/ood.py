"""
Do the per-row scores of ``pyro-pots evaluate --output`` flag out-of-distribution rows?

The protocol of issue 18, on two pairs (in distribution / out of distribution):

- ``digits``: scikit-learn's digits 0-4 against 5-9;
- ``synthetic``: ``synthetic:k=8,d=20,n=2000,latent=4,sep=4,seed=0``, clusters 0-3
  against 4-7 (chosen, before any pots score was seen, as a setting where the baselines
  are not saturated: k-NN AUROC about 0.97).

For each seed, half of the in-distribution rows (drawn with that seed) is the data of one
pots fit (defaults; the fit holds out its own tenth, ``data.heldout_fraction``, for the
curriculum, with ``data.seed`` = the seed) and of every baseline; the other half (in) and
every out-of-distribution row (out) are scored. AUROC from ``sklearn.metrics``, OOD =
positive. Reported per score: the mean AUROC over the seeds, its bootstrap standard error
(rows resampled within each group of each seed, the mean over the seeds recomputed, 200
resamples) and the seeds' standard deviation.

    python benchmarks/ood.py --out runs/ood --set train.threads=1            # both pairs
    python benchmarks/ood.py --out runs/ood --pairs synthetic --seeds 0 1 2  # a part

Fits are cached in ``--out/<pair>/seed<S>/pots`` (a run with a ``summary.json`` is
reused) and every score of every test row in ``.../scores.npz``, so a rerun only
tabulates; a row the cache lacks (a score added since) is computed and added to it without
refitting or rescoring the others (delete the file to rescore after changing a score).
Runs one fit at a time; set
``OMP_NUM_THREADS=1`` for one torch thread. ``--set train.max_epochs=3000`` with another
``--out`` gives the second table of ``docs/benchmarks.md`` (fits to the curriculum's end).
"""

import argparse
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, List, Sequence, Tuple

import numpy as np
import pyro
import pyro.distributions as dist
import torch
from pyro.infer import SVI, Trace_ELBO
from pyro.optim import Adam
from scipy.special import logsumexp
from scipy.stats import rankdata
from sklearn.decomposition import PCA
from sklearn.metrics import roc_auc_score
from sklearn.mixture import GaussianMixture
from sklearn.neighbors import NearestNeighbors
from torch import nn

from pyro_pots import fit, load_run
from pyro_pots.config import load_config
from pyro_pots.data import load_data, load_digits, make_synthetic
from pyro_pots.model.scoring import pot_scores
from pyro_pots.uncertainty import calibrate, per_row_log_weights, pot_misfit, row_scores

#: the second pair's data, clusters 0-3 in distribution.
SYNTHETIC = dict(n_clusters=8, n_features=20, n_rows=2000, latent_dim=4, separation=4.0, seed=0)


@dataclass
class Pair:
    """One in/out pair: every in-distribution and every out-of-distribution row."""

    name: str
    inliers: np.ndarray
    outliers: np.ndarray


def load_pair(name: str) -> Pair:
    if name == "digits":
        digits = load_digits()
        return Pair(name, digits.X[digits.labels <= 4], digits.X[digits.labels >= 5])
    if name == "synthetic":
        data = make_synthetic(**SYNTHETIC)
        return Pair(name, data.X[data.labels <= 3], data.X[data.labels >= 4])
    raise ValueError(f"unknown pair {name!r}")


def halves(n_rows: int, seed: int) -> Tuple[np.ndarray, np.ndarray]:
    """The rows of the fit and the in-distribution test rows: a seeded half each."""
    rows = np.random.default_rng(seed).permutation(n_rows)
    return np.sort(rows[: n_rows // 2]), np.sort(rows[n_rows // 2 :])


def fitted_run(pair: Pair, seed: int, out: Path, overrides: Sequence[str]):
    """The pots fit on the seed's half (cached), and its own train / held-out split."""
    fit_rows, _ = halves(len(pair.inliers), seed)
    folder = out / pair.name / f"seed{seed}"
    folder.mkdir(parents=True, exist_ok=True)
    spec = folder / "fit_rows.npz"
    if not spec.exists():
        np.savez(spec, X=pair.inliers[fit_rows])
    run = folder / "pots"
    if not (run / "summary.json").exists():
        cfg = load_config(
            None,
            [
                f"data.spec={spec}",
                f"data.seed={seed}",
                f"train.seed={seed}",
                f"output.dir={run}",
                "output.overwrite=true",
                *overrides,
            ],
        )
        start = time.perf_counter()
        fit(cfg, progress=False)
        (folder / "fit_seconds.txt").write_text(f"{time.perf_counter() - start:.1f}\n")
    fitted = load_run(run)
    data = load_data(fitted.config.data.spec, fitted.config.model.likelihood)
    train, held = data.split(fitted.config.data.heldout_fraction, fitted.config.data.seed)
    return fitted, train.X, held.X


#: importance samples of the IW scores, and of the "more samples" lever.
SAMPLES, MORE_SAMPLES = 64, 512
#: k of the k-NN distances (the baseline's and the pots' neighbours option).
K_NEIGHBOURS = 5


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


def plain_vae_neg_iw(x_fit: np.ndarray, x: np.ndarray, epochs: int, seed: int) -> np.ndarray:
    """Fit the plain VAE (Adam 1e-3, batches of 128) and return -IW (S = 64) of ``x``."""
    pyro.clear_param_store()
    pyro.set_rng_seed(seed)
    vae = PlainVAE(x_fit.shape[1])
    svi = SVI(vae.model, vae.guide, Adam({"lr": 1e-3}), Trace_ELBO())
    rows = torch.from_numpy(x_fit)
    gen = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        for batch in torch.randperm(len(rows), generator=gen).split(128):
            svi.step(rows[batch])
    with torch.no_grad():
        log_w = per_row_log_weights(vae.model, vae.guide, torch.from_numpy(x), SAMPLES)
    pyro.clear_param_store()
    return -(log_w.logsumexp(0) - np.log(SAMPLES)).numpy()


def knn_distance(ref: np.ndarray, x: np.ndarray, k: int = K_NEIGHBOURS) -> np.ndarray:
    """Mean Euclidean distance to the ``k`` nearest rows of ``ref``."""
    return NearestNeighbors(n_neighbors=k).fit(ref).kneighbors(x)[0].mean(1)


def baseline_scores(x_fit: np.ndarray, x: np.ndarray, seed: int, vae_epochs: int):
    """The baselines, each fitted on the seed's half (higher = more OOD)."""
    pca = PCA(20, random_state=seed).fit(x_fit)
    gmm = GaussianMixture(10, covariance_type="full", random_state=seed)
    gmm.fit(pca.transform(x_fit))
    raw = GaussianMixture(5, covariance_type="full", random_state=seed).fit(x_fit)
    return {
        f"baseline: k-NN distance (k = {K_NEIGHBOURS}, mean)": knn_distance(x_fit, x),
        "baseline: GaussianMixture K=10 full on PCA-20, -log p": -gmm.score_samples(
            pca.transform(x)
        ),
        "baseline: GaussianMixture K=5 full (defaults), -log p": -raw.score_samples(x),
        f"baseline: plain VAE, -IW (S={SAMPLES})": plain_vae_neg_iw(x_fit, x, vae_epochs, seed),
    }


def _own(nll: np.ndarray, pot: np.ndarray) -> np.ndarray:
    return nll[np.arange(len(pot)), pot]


def _pot_medians(nll: np.ndarray, pot: np.ndarray) -> np.ndarray:
    """Each pot's median misfit over its rows (all rows' for an empty pot), as calibrate."""
    overall = _own(nll, pot)
    return np.array(
        [np.median(nll[pot == j, j] if (pot == j).any() else overall) for j in range(nll.shape[1])]
    )


def _robust_z(values: np.ndarray, ref: np.ndarray) -> np.ndarray:
    centre = np.median(ref)
    return (values - centre) / (1.4826 * np.median(np.abs(ref - centre)))


def lever_scores(vae, train: np.ndarray, x: np.ndarray) -> Dict[str, np.ndarray]:
    """The levers that are not options of the library, from the same per-pot numbers
    (:func:`pyro_pots.uncertainty.pot_misfit`, IW with ``SAMPLES``; codes of ``pot_scores``)."""
    with torch.no_grad():
        t_resp, _, t_nll = (v.numpy() for v in pot_misfit(vae, torch.from_numpy(train), SAMPLES))
        resp, _, nll = (v.numpy() for v in pot_misfit(vae, torch.from_numpy(x), SAMPLES))
        gen = torch.Generator()
        t_codes = pot_scores(vae, torch.from_numpy(train), vae.active, generator=gen.manual_seed(0))
        codes = pot_scores(vae, torch.from_numpy(x), vae.active, generator=gen.manual_seed(0))
    t_pot, pot = t_resp.argmax(1), resp.argmax(1)
    median = _pot_medians(t_nll, t_pot)
    log_pi = np.log(np.clip(t_resp.mean(0), 1e-6, None))
    ood = _own(nll, pot) - median[pot]
    t_ood = _own(t_nll, t_pot) - median[t_pot]
    # distance of the row's latent mean (in its pot) to the pot's training rows' means
    dist, t_dist = np.zeros(len(x)), np.zeros(len(train))
    for j in range(len(median)):
        ref = t_codes.codes[j].numpy()[t_pot == j]
        if (pot == j).any():
            dist[pot == j] = knn_distance(ref, codes.codes[j].numpy()[pot == j])
        nn = NearestNeighbors(n_neighbors=K_NEIGHBOURS + 1).fit(ref)
        t_dist[t_pot == j] = nn.kneighbors(ref)[0][:, 1:].mean(1)  # leave the row out
    posterior_pot = (log_pi - nll).argmax(1)
    return {
        f"lever 3: + distance to the pot's latent codes (z-sum, IW S={SAMPLES})": _robust_z(
            ood, t_ood
        )
        + _robust_z(dist, t_dist),
        f"lever 4: pot = argmax of the mixture posterior (IW S={SAMPLES})": _own(nll, posterior_pot)
        - median[posterior_pot],
        f"lever 4: mixture of the calibrated pots, -log sum pi e^-ood (IW S={SAMPLES})": -(
            logsumexp(log_pi - nll + median, axis=1)
        ),
    }


def pots_scores(fitted, train: np.ndarray, held: np.ndarray, x: np.ndarray):
    """The pots' scores through :mod:`pyro_pots.uncertainty` (each option as a user sets
    it), then the levers that are not options."""
    vae, tx, hx, rows = fitted.model, *(torch.from_numpy(v) for v in (train, held, x))
    plain = row_scores(vae, rows, calibrate(vae, tx, None))
    iw = row_scores(vae, rows, calibrate(vae, tx, SAMPLES), SAMPLES)

    def ood(calibration_rows, samples=SAMPLES, **options) -> np.ndarray:
        calibration = calibrate(vae, calibration_rows, samples, **options)
        return row_scores(vae, rows, calibration, samples)["ood_score"]

    k = K_NEIGHBOURS
    scores = {
        "pots: 1 - max_resp": 1 - plain["max_resp"],
        "pots: entropy": plain["entropy"],
        "pots: neg_elbo (ELBO)": plain["neg_elbo"],
        f"pots: neg_elbo (IW, S={SAMPLES})": iw["neg_elbo"],
        "pots: ood_score (ELBO; the default)": plain["ood_score"],
        f"pots: ood_score (IW, S={SAMPLES})": iw["ood_score"],
        f"lever 1: ood_score calibrated on the fit's held-out rows (IW, S={SAMPLES})": ood(hx),
        f"lever 2: ood_score (IW, S={MORE_SAMPLES})": ood(tx, MORE_SAMPLES),
        f"lever 3: ood_score, neighbours={k} (IW, S={SAMPLES})": ood(tx, neighbours=k),
        f"lever 5: ood_score, saturated (IW, S={SAMPLES})": ood(tx, saturated=True),
        f"levers 3+5: ood_score, neighbours={k}, saturated (IW, S={SAMPLES})": ood(
            tx, neighbours=k, saturated=True
        ),
        f"levers 3+5: ood_score, neighbours={k}, saturated (ELBO)": ood(
            tx, None, neighbours=k, saturated=True
        ),
    }
    scores.update(lever_scores(vae, train, x))
    return scores


def _neighbour_rows(
    vae, train: np.ndarray, held: np.ndarray, x: np.ndarray
) -> Dict[str, Callable[[], np.ndarray]]:
    """Issue 18's second round of distance rows, each computed only when a seed's cache
    lacks it: the new ``calibrate`` options (``among``, ``ratio``, ``combine``) and three
    distances that are not options (runner-up pot, latent means scaled by the posterior
    scale, reconstructions), each added to the pot-relative misfit as robust z-scores.
    Rows marked "the whole half" calibrate on all of it (the fit's training and held-out
    rows), the rows every baseline is fitted on."""
    tx, rows, k = torch.from_numpy(train), torch.from_numpy(x), K_NEIGHBOURS
    whole = torch.from_numpy(np.concatenate([train, held]))

    def ood(calibration_rows=tx, **options) -> Callable[[], np.ndarray]:
        def score() -> np.ndarray:
            calibration = calibrate(vae, calibration_rows, SAMPLES, neighbours=k, **options)
            return row_scores(vae, rows, calibration, SAMPLES)["ood_score"]

        return score

    shared: Dict[str, Dict[str, np.ndarray]] = {}

    def lever(name: str) -> Callable[[], np.ndarray]:
        def score() -> np.ndarray:
            if not shared:
                shared["rows"] = distance_levers(vae, train, x)
            return shared["rows"][name]

        return score

    table = {
        f"option combine=fisher: neighbours={k}, Fisher's -2 log(p_m p_d) (IW, S={SAMPLES})": ood(
            combine="fisher"
        ),
        f"option among=all: neighbours={k} among all calibration rows, z-sum (IW, S={SAMPLES})": (
            ood(among="all")
        ),
        f"options among=all, combine=fisher: neighbours={k} (IW, S={SAMPLES})": ood(
            among="all", combine="fisher"
        ),
        f"option ratio: neighbours={k}, local density ratio in the pot, z-sum (IW, S={SAMPLES})": (
            ood(ratio=True)
        ),
        f"options ratio, combine=fisher: neighbours={k} (IW, S={SAMPLES})": ood(
            ratio=True, combine="fisher"
        ),
        f"options ratio, among=all: neighbours={k}, z-sum (IW, S={SAMPLES})": ood(
            ratio=True, among="all"
        ),
        f"options saturated, combine=fisher: neighbours={k} (IW, S={SAMPLES})": ood(
            saturated=True, combine="fisher"
        ),
        f"options saturated, among=all, combine=fisher: neighbours={k} (IW, S={SAMPLES})": ood(
            saturated=True, among="all", combine="fisher"
        ),
        f"options saturated, ratio: neighbours={k}, z-sum (IW, S={SAMPLES})": ood(
            saturated=True, ratio=True
        ),
    }
    table[f"options ratio, among=all, calibrated on the whole half (IW, S={SAMPLES})"] = ood(
        whole, ratio=True, among="all"
    )
    name = f"options saturated, among=all, combine=fisher, on the whole half (IW, S={SAMPLES})"
    table[name] = ood(whole, saturated=True, among="all", combine="fisher")
    for name in DISTANCE_LEVERS:
        table[name] = lever(name)
    return table


#: the rows of :func:`distance_levers`.
DISTANCE_LEVERS = (
    f"lever 3: misfit + distance to the rows of the pot and its runner-up, z-sum (IW S={SAMPLES})",
    f"lever 3: misfit + distance of latent means / posterior scale, z-sum (IW S={SAMPLES})",
    f"lever 3: misfit + distance between reconstructions in the pot, z-sum (IW S={SAMPLES})",
)


def distance_levers(vae, train: np.ndarray, x: np.ndarray) -> Dict[str, np.ndarray]:
    """Distance terms that are not options, each added to the pot-relative misfit (IW,
    ``SAMPLES``) as a robust z-score over the training rows (each training row's own
    distance leaves the row itself out):

    - to the ``k`` nearest training rows of the row's pot or its runner-up pot (the second
      largest responsibility);
    - between latent means in the row's pot, each coordinate divided by the row's posterior
      scale: ``|| (mu_c(x) - mu_c(x')) / sigma_c(x) ||``;
    - between reconstructions (the decoder's mean at the posterior mean) in the row's pot.
    """
    k = K_NEIGHBOURS
    with torch.no_grad():
        t_resp, _, t_nll = (v.numpy() for v in pot_misfit(vae, torch.from_numpy(train), SAMPLES))
        resp, _, nll = (v.numpy() for v in pot_misfit(vae, torch.from_numpy(x), SAMPLES))
        t_q = vae.latent_posterior(torch.from_numpy(train), vae.open_ids())
        q = vae.latent_posterior(torch.from_numpy(x), vae.open_ids())
        mean = vae.likelihood(vae.decode(t_q.loc, vae.open_ids())).mean.numpy()
        t_rec, rec = mean, vae.likelihood(vae.decode(q.loc, vae.open_ids())).mean.numpy()
        t_loc, t_scale = t_q.loc.numpy(), t_q.scale.numpy()
        loc, scale = q.loc.numpy(), q.scale.numpy()
    t_pot, pot = t_resp.argmax(1), resp.argmax(1)
    t_second, second = np.argsort(-t_resp, 1)[:, 1], np.argsort(-resp, 1)[:, 1]
    median = _pot_medians(t_nll, t_pot)
    t_ood, ood = _own(t_nll, t_pot) - median[t_pot], _own(nll, pot) - median[pot]

    def nearest(rows, refs, own: bool) -> float:
        near = np.sort(np.linalg.norm(refs - rows, axis=-1))
        return near[int(own) : k + int(own)].mean()

    def runner_up(rows, first, runner, own):
        return np.array(
            [
                nearest(row, train[(t_pot == a) | (t_pot == b)], own)
                for row, a, b in zip(rows, first, runner)
            ]
        )

    def latent(locs, scales, assign, own):
        return np.array(
            [
                nearest(locs[c, i] / scales[c, i], t_loc[c, t_pot == c] / scales[c, i], own)
                for i, c in enumerate(assign)
            ]
        )

    def reconstruction(recs, assign, own):
        return np.array(
            [nearest(recs[c, i], t_rec[c, t_pot == c], own) for i, c in enumerate(assign)]
        )

    base = _robust_z(ood, t_ood)
    distances = (
        (runner_up(x, pot, second, False), runner_up(train, t_pot, t_second, True)),
        (latent(loc, scale, pot, False), latent(t_loc, t_scale, t_pot, True)),
        (reconstruction(rec, pot, False), reconstruction(t_rec, t_pot, True)),
    )
    return {
        name: base + _robust_z(dist, t_dist)
        for name, (dist, t_dist) in zip(DISTANCE_LEVERS, distances)
    }


def seed_scores(pair: Pair, seed: int, out: Path, overrides: Sequence[str], vae_epochs: int):
    """Every score of one seed on its test rows (in, then out), cached in ``scores.npz``:
    a rerun computes only the rows the cache lacks (no refit, no rescoring of the others)."""
    folder = out / pair.name / f"seed{seed}"
    path = folder / "scores.npz"
    fitted, train, held = fitted_run(pair, seed, out, overrides)
    fit_rows, test_rows = halves(len(pair.inliers), seed)
    x = np.concatenate([pair.inliers[test_rows], pair.outliers])
    is_ood = np.r_[np.zeros(len(test_rows)), np.ones(len(pair.outliers))]
    scores: Dict[str, np.ndarray] = {}
    if path.exists():
        cached = np.load(path)
        names = json.loads(str(cached["names"]))
        scores = {name: cached[f"s{i}"] for i, name in enumerate(names)}
    else:
        scores = pots_scores(fitted, train, held, x)
        scores.update(baseline_scores(pair.inliers[fit_rows], x, seed, vae_epochs))
    missing = {
        n: f for n, f in _neighbour_rows(fitted.model, train, held, x).items() if n not in scores
    }
    if missing or not path.exists():
        scores.update({name: score() for name, score in missing.items()})
        names = list(scores)
        arrays = {f"s{i}": scores[n] for i, n in enumerate(names)}
        np.savez(path, names=json.dumps(names), **arrays)
    return fitted, is_ood, scores


def auroc(is_ood: np.ndarray, score: np.ndarray) -> float:
    """AUROC by the rank-sum (Mann-Whitney) formula, ties counted half."""
    ranks = rankdata(score)
    n_out = is_ood.sum()
    n_in = len(is_ood) - n_out
    return float((ranks[is_ood == 1].sum() - n_out * (n_out + 1) / 2) / (n_in * n_out))


def seeds_auroc(results, name: str, reps: int = 200, seed: int = 0):
    """Mean AUROC over the seeds, its bootstrap SE (rows resampled within each group of
    each seed, the mean recomputed) and the seeds' standard deviation."""
    per_seed = [roc_auc_score(is_ood, scores[name]) for is_ood, scores in results]
    rng = np.random.default_rng(seed)
    boot = np.zeros(reps)
    for is_ood, scores in results:
        inl, out = np.flatnonzero(is_ood == 0), np.flatnonzero(is_ood == 1)
        for r in range(reps):
            rows = np.r_[rng.choice(inl, len(inl)), rng.choice(out, len(out))]
            boot[r] += auroc(is_ood[rows], scores[name][rows]) / len(results)
    return float(np.mean(per_seed)), float(np.std(boot)), float(np.std(per_seed)), per_seed


def main(argv: List[str] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="runs/ood")
    parser.add_argument("--pairs", nargs="+", default=["digits", "synthetic"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2, 3, 4])
    parser.add_argument("--vae-epochs", type=int, default=800, help="plain VAE, as the pots")
    parser.add_argument("--fit-only", action="store_true", help="fit (cached), no scores")
    parser.add_argument("--set", action="append", default=[], help="config overrides")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    out = Path(args.out)
    for name in args.pairs:
        pair = load_pair(name)
        results, pots, fit_s = [], [], []
        for seed in args.seeds:
            if args.fit_only:
                fitted_run(pair, seed, out, args.set)
                print(f"{name} seed {seed}: fitted", flush=True)
                continue
            fitted, is_ood, scores = seed_scores(pair, seed, out, args.set, args.vae_epochs)
            results.append((is_ood, scores))
            pots.append(int(fitted.model.active.sum()))
            fit_s.append(float((out / name / f"seed{seed}" / "fit_seconds.txt").read_text()))
        if not results:
            continue
        is_ood = results[0][0]
        print(
            f"\n### {name}: {int((is_ood == 0).sum())} rows in, {int(is_ood.sum())} out, "
            f"seeds {args.seeds}; pots per fit {pots}, fit time {np.mean(fit_s):.0f} s (mean)\n"
        )
        print("| score (higher = more OOD) | AUROC, mean of seeds | bootstrap SE | seed std |")
        print("| --- | --- | --- | --- |")
        names = [n for n in results[0][1] if not n.startswith("baseline")]
        names += [n for n in results[0][1] if n.startswith("baseline")]  # baselines last
        table = [(n, *seeds_auroc(results, n)) for n in names]
        for n, mean, se, std, _ in table:
            print(f"| {n} | {mean:.4f} | {se:.4f} | {std:.4f} |")
        ranked = sorted(table, key=lambda row: -row[1])
        print("\nranked: " + "; ".join(f"{n} {mean:.4f}" for n, mean, *_ in ranked[:4]))


if __name__ == "__main__":
    main()
