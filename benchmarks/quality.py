"""
Discovery quality side by side: pyro-pots with K discovered, its ablations, and classical
clusterings with the true K given, on the same data and seeds. Labels only score.

    python benchmarks/quality.py --only classical            # seconds: the anchors
    python benchmarks/quality.py --only ours --seeds 0 1     # fits: minutes each
    python benchmarks/quality.py                             # everything (hours on 2 cores)
    python benchmarks/quality.py --report                    # tables of the cached runs only

Data: scikit-learn's digits (1797 8x8 images, 10 classes); synthetic sets with K = 3, 5, 8
(``synthetic:k=K,seed=SEED``); and the harder real set, scikit-learn's bundled Wisconsin
breast cancer table (569 rows, 30 real-valued cell measurements on very different scales,
2 overlapping classes; standardised, and fitted with the ``normal`` likelihood). It ships
offline with scikit-learn, unlike every larger labelled set there, and it is harder than
digits in the ways that test a mode finder: real-valued, heavy-tailed, unequal classes
that are not separate clusters, and a K of 2 that the curriculum must stop at. Three sets
where raw Euclidean clusters are weak are generated (``write_rings``,
``write_shifted_templates``, ``write_nuisance``: three clusters beside a wider Gaussian
direction, where k-means with K given scores ~0).

Methods:

- ``pyro-pots``: the defaults (K_max = 20, one pot at the start, the curriculum);
- ablations: ``all pots open`` (no curriculum: plain SVI, ``fit_svi``, with all K_max pots
  open for the same epoch budget; the curriculum with ``start_pots`` = K_max would prune
  the pots that collapse and grow again, which is not the ablation), ``prior none`` and
  ``prior categorical_kl`` (instead of ``logit_mog``), ``no kick``
  (``curriculum.kick_steps=0``), ``new pot fresh`` (``curriculum.new_pot_init=fresh``: a
  new pot starts from the layers' default initialisation instead of a copy of its parent);
- the other parent rules: ``parent rule normality`` (split the least normal candidate; the
  default until 2026-11-26) and ``parent rule recon`` (the largest total misfit), against
  the default ``usage`` (the candidate holding the most data);
- a sensitivity row, ``prior M=7`` (the logit prior's corners at 7 instead of 5: at a
  corner with K pots open the largest responsibility is e^M / (e^M + K - 1), 0.93 for
  M = 5 and K = 12, so M bounds the peakiness);
- stop rules: ``stop: held-out gain`` (``curriculum.heldout_stop=true``: stop at the
  first split that does not lower the held-out mixture loss) and ``stop: default, 3x
  budget`` (``train.max_epochs=2400``: where the default rule stops when the epoch budget
  does not stop it first);
- classical, from scikit-learn: k-means and GaussianMixture (full covariance, on PCA-20
  for data of more than 20 features) with the true K, agglomerative (ward) with the true
  K, and BayesianGaussianMixture (Dirichlet process, 20 components, K inferred: K-hat is
  the components holding >= 1 % of the rows).

Every (method, data, seed) result is cached as JSON in ``--out``, so an interrupted run
keeps what it finished and ``--only`` runs can be combined. Prints (and writes to
``--out``/quality.md, with every number in quality.json) one Markdown table: ACC / NMI /
ARI as mean +- std over seeds, K-hat (open pots and k_eff for ours), mean max
responsibility and mean max mixture posterior (ours; see ``pyro_pots.uncertainty``), fit
time; then the stop-rule table: the held-out loss of the
default runs at each number of open pots, and the K-hat and ARI each stop rule picks.
"""

import argparse
import csv
import json
import math
import os
import statistics
import time
from pathlib import Path
from typing import Callable, Dict, List

import numpy as np
import pyro
import torch
from sklearn.cluster import HDBSCAN, AgglomerativeClustering, KMeans
from sklearn.decomposition import PCA
from sklearn.manifold import SpectralEmbedding
from sklearn.mixture import BayesianGaussianMixture, GaussianMixture

from pyro_pots import PotsVAE, fit, load_run, pots_mask
from pyro_pots.config import load_config, model_kwargs, resolve_likelihood
from pyro_pots.data import load_data
from pyro_pots.metrics import clustering_scores
from pyro_pots.training.svi_fit import fit_svi
from pyro_pots.uncertainty import mean_max_posterior

#: name -> (data spec, with {seed} and {out} filled in; config overrides for our runs)
DATASETS = {
    "digits": ("digits", []),
    **{f"synthetic k={k}": (f"synthetic:k={k},seed={{seed}}", []) for k in (3, 5, 8)},
    "breast cancer": ("{out}/breast_cancer.npz", ["model.likelihood=normal"]),
    "wine (raw)": ("{out}/wine.npz", []),
    "rings": ("{out}/rings_{seed}.npz", ["model.likelihood=normal"]),
    "shifted templates": ("{out}/shifted_{seed}.npz", []),
    "nuisance": ("{out}/nuisance_{seed}.npz", ["model.likelihood=normal"]),
}

#: Config overrides on top of the defaults of the day a row is run (None: plain SVI with
#: every pot open, see ``run_all_open``). Rows measured under older defaults pin what has
#: changed since only where a section of docs/benchmarks.md quotes them; the rest follow
#: today's defaults (``two_means`` and 800 epochs until 2026-11-27's spectral default).
OURS = {
    "pyro-pots": [],
    "all pots open": None,
    "data as given (default until 2026-11-27)": ["data.scaling=none"],
    "no routing refinement (default until 2026-11-27)": [
        "curriculum.refine_weight=0",
        "curriculum.screen_cut_ratio=0",
    ],
    "refinement every step, no screen (default until 2026-11-28)": [
        "curriculum.refine_every=1",
        "curriculum.screen_cut_ratio=0",
    ],
    "refinement targets kept 5 epochs": [
        "curriculum.refine_every=5",
        "curriculum.screen_cut_ratio=0",
    ],
    "screened at cut ratio 0.2 + targets kept 5 epochs": [
        "curriculum.refine_every=5",
        "curriculum.screen_cut_ratio=0.2",
        "curriculum.screen_first_proposals=true",
    ],
    "screened at cut ratio 0.15 + targets kept 5 epochs": [
        "curriculum.refine_every=5",
        "curriculum.screen_cut_ratio=0.15",
        "curriculum.screen_first_proposals=true",
    ],
    "screen retries only at 0.15 + targets kept 5 epochs": [
        "curriculum.refine_every=5",
        "curriculum.screen_cut_ratio=0.15",
        "curriculum.screen_first_proposals=false",
    ],
    "kick 300 steps (with the refinement)": ["curriculum.kick_steps=300"],
    "min_stage_epochs 5": ["curriculum.min_stage_epochs=5"],
    "kick 300 steps, retries x2": [
        "curriculum.kick_steps=300",
        "curriculum.retry_kick_factor=2",
    ],
    "kick 300 steps, up to 600 until parted": [
        "curriculum.kick_steps=300",
        "curriculum.kick_max_steps=600",
    ],
    "retry kick x2": ["curriculum.retry_kick_factor=2"],
    "kick until parted (up to 1800 steps)": ["curriculum.kick_max_steps=1800"],
    "prior none": ["prior.kind=none"],
    "prior categorical_kl": ["prior.kind=categorical_kl"],
    "no kick": ["curriculum.kick_steps=0"],
    "new pot fresh": ["curriculum.new_pot_init=fresh"],
    "prior M=7": ["prior.M=7"],
    "parent rule normality": ["curriculum.parent_rule=normality"],
    "parent rule recon": ["curriculum.parent_rule=recon"],
    "stop: held-out gain": ["curriculum.heldout_stop=true"],
    "stop: default, 3x budget": ["train.max_epochs=4800"],
    "default, 2x budget": ["train.max_epochs=3200"],
    "retry spectral": ["curriculum.split_proposals=two_means,spectral"],
    "evidence z=3": ["curriculum.evidence_z=3"],
    "retry spectral + evidence z=3": [
        "curriculum.split_proposals=two_means,spectral",
        "curriculum.evidence_z=3",
    ],
    "spectral first + evidence z=3": [
        "curriculum.split_proposals=spectral,two_means",
        "curriculum.evidence_z=3",
    ],
    "no Potts prior (default until 2026-11-27)": ["curriculum.neighbour_weight=0"],
    "Potts beta=0.3": ["curriculum.neighbour_weight=0.3"],
    "Potts beta=1": ["curriculum.neighbour_weight=1"],
    "Potts beta=3": ["curriculum.neighbour_weight=3"],
    "Potts beta=1, 2x budget": ["curriculum.neighbour_weight=1", "train.max_epochs=1600"],
    "Potts beta=1 + spectral first": [
        "curriculum.neighbour_weight=1",
        "curriculum.split_proposals=spectral,two_means",
    ],
    "JIT": ["train.jit=true"],
    "two_means, cut ratio <= 0.25, 800 epochs (default until 2026-11-27)": [
        "curriculum.split_proposals=two_means",
        "curriculum.max_cut_ratio=0.25",
        "train.max_epochs=800",
    ],
    "JIT + batch 256": ["train.jit=true", "train.batch_size=256"],
    "JIT + batch 256, kick 300 steps": [
        "train.jit=true",
        "train.batch_size=256",
        "curriculum.kick_steps=300",
    ],
    "Potts evidence z>=2": ["curriculum.min_evidence_z=2"],
    "Potts evidence z>=2, 2x budget": ["curriculum.min_evidence_z=2", "train.max_epochs=1600"],
    # measured before max_cut_ratio = 0.25 became the default (2026-11-27): pinned off
    "whitened normality": ["curriculum.normality_whitened=true", "curriculum.max_cut_ratio=0"],
    "whitened + codes first": [
        "curriculum.normality_whitened=true",
        "curriculum.split_proposals=codes,two_means",
        "curriculum.max_cut_ratio=0",
    ],
    "cut ratio <= 0.25": ["curriculum.max_cut_ratio=0.25"],
    "whitened + codes first + cut ratio <= 0.25": [
        "curriculum.normality_whitened=true",
        "curriculum.split_proposals=codes,two_means",
        "curriculum.max_cut_ratio=0.25",
    ],
    "whitened + retry codes": [
        "curriculum.normality_whitened=true",
        "curriculum.split_proposals=two_means,codes",
        "curriculum.max_cut_ratio=0",
    ],
    "whitened + retry codes + cut ratio <= 0.25": [
        "curriculum.normality_whitened=true",
        "curriculum.split_proposals=two_means,codes",
        "curriculum.max_cut_ratio=0.25",
        "train.max_epochs=800",
    ],
    "spectral first + cut ratio <= 0.25": [
        "curriculum.split_proposals=spectral,two_means",
        "curriculum.max_cut_ratio=0.25",
        "train.max_epochs=800",
    ],
    "whitened + spectral first + cut ratio <= 0.25": [
        "curriculum.normality_whitened=true",
        "curriculum.split_proposals=spectral,two_means",
        "curriculum.max_cut_ratio=0.25",
        "train.max_epochs=800",
    ],
    "min_usage 0.01": ["curriculum.min_usage=0.01"],
    "no cut-ratio test (default until 2026-11-27)": ["curriculum.max_cut_ratio=0"],
    "no cut-contrast test (default until 2026-11-27)": ["curriculum.min_cut_contrast=0"],
    "no small pots apart (default until 2026-11-27)": ["curriculum.min_usage_apart=0"],
    "whitened normality, codes first where the rows look normal": [
        "curriculum.normality_whitened=true"
    ],
    "kick 1200 steps": ["curriculum.kick_steps=1200"],
    "kick 1200 steps, 2x budget": ["curriculum.kick_steps=1200", "train.max_epochs=3200"],
    "normality on rows and codes (default until 2026-11-27)": [
        "curriculum.normality_whitened=false",
        "curriculum.evidence_z=0",
    ],
    "Potts evidence z>=2 + spectral first": [
        "curriculum.min_evidence_z=2",
        "curriculum.split_proposals=spectral,two_means",
    ],
}


def write_breast_cancer(out: Path) -> None:
    """scikit-learn's bundled breast cancer table, each feature standardised, as .npz."""
    from sklearn.datasets import load_breast_cancer

    path = out / "breast_cancer.npz"
    if path.exists():
        return
    bunch = load_breast_cancer()
    x = bunch.data
    partial = out / f"breast_cancer.{os.getpid()}.npz"  # runs side by side share --out
    np.savez(partial, X=(x - x.mean(0)) / x.std(0), y=bunch.target)
    partial.replace(path)


def write_wine(out: Path) -> None:
    """scikit-learn's bundled wine table (178 rows, 3 cultivars) as it is: 13 measurements
    on their own scales (proline in the hundreds to 1680, hue 0.5-1.7), the way a user's
    table arrives."""
    from sklearn.datasets import load_wine

    path = out / "wine.npz"
    if path.exists():
        return
    bunch = load_wine()
    partial = out / f"wine.{os.getpid()}.npz"  # runs side by side share --out
    np.savez(partial, X=bunch.data, y=bunch.target)
    partial.replace(path)


def write_rings(out: Path, seed: int, n: int = 1500, dim: int = 8) -> None:
    """Three concentric rings (radii 1, 2.5, 4; 500 rows each, noise 0.15) in a random
    2-d plane of ``dim`` dimensions, with noise 0.15 in the others, standardised, as .npz:
    modes that no straight cut separates (k-means with K = 3 given scores ARI ~0)."""
    path = out / f"rings_{seed}.npz"
    if path.exists():
        return
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % 3
    angle = rng.uniform(0, 2 * np.pi, n)
    radius = np.array([1.0, 2.5, 4.0])[labels] + 0.15 * rng.standard_normal(n)
    plane = np.c_[radius * np.cos(angle), radius * np.sin(angle)]
    basis, _ = np.linalg.qr(rng.standard_normal((dim, dim)))
    x = np.c_[plane, 0.15 * rng.standard_normal((n, dim - 2))] @ basis.T
    partial = out / f"rings_{seed}.{os.getpid()}.npz"  # runs side by side share --out
    np.savez(partial, X=(x - x.mean(0)) / x.std(0), y=labels)
    partial.replace(path)


def write_shifted_templates(out: Path, seed: int, n: int = 1500, dim: int = 32) -> None:
    """Three templates (two Gaussian bumps of template-specific width, gap and heights on
    ``dim`` points, peak 1), each row one of them circularly shifted by a uniform offset,
    plus noise 0.05, clipped to [0, 1], as .npz: rows of one template are far apart in
    Euclidean distance and rows of two templates with the same shift are close, so raw
    clusters follow the shift, not the template (k-means with K = 3 given: ARI ~0)."""
    path = out / f"shifted_{seed}.npz"
    if path.exists():
        return
    rng = np.random.default_rng(seed)
    t = np.arange(dim)
    templates = []
    for _ in range(3):
        width, gap, height = rng.uniform(1.0, 3.0), rng.integers(4, 12), rng.uniform(0.4, 1.0)
        bumps = np.exp(-0.5 * ((t - 8) / width) ** 2)
        bumps = bumps + height * np.exp(-0.5 * ((t - 8 - gap) / width) ** 2)
        templates.append(bumps / bumps.max())
    labels = np.arange(n) % 3
    shift = rng.integers(0, dim, n)
    x = np.stack([np.roll(templates[label], s) for label, s in zip(labels, shift)])
    x = np.clip(x + 0.05 * rng.standard_normal((n, dim)), 0, 1)
    partial = out / f"shifted_{seed}.{os.getpid()}.npz"  # runs side by side share --out
    np.savez(partial, X=x, y=labels)
    partial.replace(path)


def write_nuisance(out: Path, seed: int, n: int = 1500, dim: int = 12) -> None:
    """Three Gaussian clusters (shares 0.5, 0.3, 0.2; unit spread, centres 5 apart in a
    plane) beside one Gaussian nuisance direction of spread 5 and nine of spread 1, in a
    random rotation of ``dim`` dimensions, scaled by one number (so the rotation stays), as
    .npz: the widest direction is not where the clusters are, so 2-means cuts across all
    three (k-means with K = 3 given: ARI ~0), while the clusters are 5 standard deviations
    apart."""
    path = out / f"nuisance_{seed}.npz"
    if path.exists():
        return
    rng = np.random.default_rng(seed)
    labels = rng.choice(3, size=n, p=[0.5, 0.3, 0.2])
    angle = np.array([0, 2 * np.pi / 3, 4 * np.pi / 3]) + rng.uniform(0, 2 * np.pi)
    centres = 5.0 / np.sqrt(3) * np.c_[np.cos(angle), np.sin(angle)]  # an equilateral triangle
    x = rng.standard_normal((n, dim))
    x[:, :2] += centres[labels]
    x[:, 2] *= 5.0
    basis, _ = np.linalg.qr(rng.standard_normal((dim, dim)))
    x = x @ basis.T
    partial = out / f"nuisance_{seed}.{os.getpid()}.npz"  # runs side by side share --out
    np.savez(partial, X=(x - x.mean(0)) / x.std(), y=labels)
    partial.replace(path)


def _features(x: np.ndarray) -> np.ndarray:
    return PCA(20, random_state=0).fit_transform(x) if x.shape[1] > 20 else x


def _umap_hdbscan(x: np.ndarray, seed: int) -> np.ndarray:
    """UMAP (30 neighbours, min_dist 0, 2-d) then HDBSCAN (min_cluster_size 20): the
    strongest K-free anchor on digits. HDBSCAN's noise rows (-1) count as one more label."""
    import umap  # the ``bench`` extra: pip install -e ".[bench]"

    embedding = umap.UMAP(n_neighbors=30, min_dist=0.0, n_components=2, random_state=seed)
    return HDBSCAN(min_cluster_size=20).fit_predict(embedding.fit_transform(x))


def _spectral_hdbscan(x: np.ndarray, seed: int) -> np.ndarray:
    """A 10-d spectral embedding of the 30-nearest-neighbour graph, then HDBSCAN
    (min_cluster_size 20); noise rows (-1) count as one more label."""
    embedding = SpectralEmbedding(n_components=10, n_neighbors=30, random_state=seed)
    return HDBSCAN(min_cluster_size=20).fit_predict(embedding.fit_transform(x))


def _classical(k: int, seed: int) -> Dict[str, Callable[[np.ndarray], np.ndarray]]:
    return {
        "UMAP + HDBSCAN (K inferred)": lambda x: _umap_hdbscan(x, seed),
        "spectral embedding + HDBSCAN (K inferred)": lambda x: _spectral_hdbscan(x, seed),
        "k-means (K given)": lambda x: KMeans(k, n_init=10, random_state=seed).fit_predict(x),
        "GMM full (K given)": lambda x: GaussianMixture(k, random_state=seed).fit_predict(
            _features(x)
        ),
        "agglomerative ward (K given)": lambda x: AgglomerativeClustering(k).fit_predict(x),
        "DP-GMM (20, K inferred)": lambda x: BayesianGaussianMixture(
            n_components=20,
            weight_concentration_prior_type="dirichlet_process",
            random_state=seed,
            max_iter=500,
        ).fit_predict(_features(x)),
    }


def run_classical(name: str, spec: str, seed: int, out: Path) -> dict:
    data = load_data(spec.format(seed=seed, out=out))
    k = len(np.unique(data.labels))
    results = {}
    for method, cluster in _classical(k, seed).items():
        cache = out / f"{method}__{name}__{seed}.json".replace(" ", "_")
        if cache.exists():
            results[method] = json.loads(cache.read_text())
            continue
        start = time.perf_counter()
        assign = cluster(data.X)
        noise = assign < 0  # HDBSCAN's unclustered rows: scored as one more label
        counts = np.bincount(assign[~noise]) / len(assign)
        assign = np.where(noise, assign.max() + 1, assign)
        result = {
            **clustering_scores(data.labels, assign),
            "k_hat": int((counts >= 0.01).sum()),
            "noise": float(noise.mean()),
            "time_s": time.perf_counter() - start,
        }
        cache.write_text(json.dumps(result))
        results[method] = result
    return results


def cached_result(method: str, name: str, seed: int, out: Path) -> Path:
    """Where one of our runs keeps its result: the run directory's summary, or a JSON file
    for the all-pots-open ablation (plain SVI writes no run directory)."""
    stem = f"{method}__{name}__{seed}".replace(" ", "_")
    if OURS[method] is None:
        return out / f"{stem}.json"
    return out / stem / "summary.json"


def run_all_open(overrides: List[str], name: str, spec: str, seed: int, out: Path) -> dict:
    """The no-curriculum ablation: ``fit_svi`` with every pot open, the config's budget."""
    cache = cached_result("all pots open", name, seed, out)
    if cache.exists():
        return json.loads(cache.read_text())
    cfg = load_config(
        None, [f"data.spec={spec.format(seed=seed, out=out)}", f"train.seed={seed}"] + overrides
    )
    torch.set_num_threads(cfg.train.threads)
    data = load_data(cfg.data.spec, cfg.model.likelihood)
    cfg = resolve_likelihood(cfg, data)
    pyro.set_rng_seed(seed)
    vae = PotsVAE(data.n_features, **model_kwargs(cfg))
    x = torch.from_numpy(data.X)
    active = pots_mask(cfg.model.num_pots, range(cfg.model.num_pots))
    start = time.perf_counter()
    fit_svi(
        vae,
        x,
        active,
        cfg.train.max_epochs,
        cfg.train.batch_size,
        cfg.train.lr,
        cfg.prior.lam_warmup_epochs,
        seed,
    )
    resp = vae.responsibilities(x, active).detach().numpy()
    assign = resp.argmax(-1)
    counts = np.bincount(assign, minlength=resp.shape[1]) / len(assign)
    result = {
        **clustering_scores(data.labels, assign),
        "k_hat": int((counts > 0).sum()),
        "k_eff": int((counts >= 0.01).sum()),
        "mean_max_resp": float(resp.max(-1).mean()),
        "time_s": time.perf_counter() - start,
    }
    cache.write_text(json.dumps(result))
    return result


def run_ours(method: str, extra: List[str], name: str, spec: str, seed: int, out: Path) -> dict:
    if OURS[method] is None:
        return run_all_open(extra, name, spec, seed, out)
    overrides = OURS[method] + extra
    run = cached_result(method, name, seed, out).parent
    if not (run / "summary.json").exists():
        cfg = load_config(
            None,
            [
                f"data.spec={spec.format(seed=seed, out=out)}",
                f"train.seed={seed}",
                f"data.seed={seed}",
            ]
            + overrides
            + [f"output.dir={run}", "output.overwrite=true"],
        )
        fit(cfg, progress=False)
    s = json.loads((run / "summary.json").read_text())
    return {
        **s["clustering"],
        "k_hat": s["n_active"],
        "k_eff": s["k_eff"],
        "mean_max_resp": s["peakiness"]["mean_max_resp"],
        "mean_max_posterior": max_posterior(run, s),
        "time_s": s["time_s"],
        "stop_reason": s["stop_reason"],
        "heldout_by_pots": heldout_by_pots(run),
    }


def max_posterior(run: Path, summary: dict) -> float:
    """The run's mean largest mixture posterior over the pots: from its summary or, for a
    run fitted before summaries had it, from its checkpoint."""
    if "mean_max_posterior" in summary["peakiness"]:
        return summary["peakiness"]["mean_max_posterior"]
    fitted = load_run(run)  # the final model, on the CPU
    data = load_data(fitted.config.data.spec, fitted.config.model.likelihood)
    return mean_max_posterior(fitted.model, torch.from_numpy(data.X))


def heldout_by_pots(run: Path) -> Dict[int, float]:
    """The best held-out mixture loss (nats per row) seen with each number of open pots,
    kick epochs left out, from the run's history."""
    losses: Dict[int, float] = {}
    with open(run / "history.csv", newline="") as handle:
        for row in csv.DictReader(handle):
            if row["kicking"] == "True":
                continue
            k, loss = int(row["n_open"]), float(row["heldout_loss"])
            losses[k] = min(losses.get(k, math.inf), loss)
    return dict(sorted(losses.items()))


def _cell(values: List[float]) -> str:
    if len(values) == 1:
        return f"{values[0]:.3f}"
    return f"{statistics.mean(values):.3f} +- {statistics.stdev(values):.3f}"


def method_rows(name: str, rows: Dict[str, List[dict]]) -> List[str]:
    """One Markdown row per method: scores as mean +- std over seeds."""
    lines = []
    for method, results in rows.items():
        k_hat = ", ".join(
            f"{r['k_hat']}" + (f" ({r['k_eff']})" if "k_eff" in r else "") for r in results
        )
        resp = [r["mean_max_resp"] for r in results if "mean_max_resp" in r]
        posterior = [r["mean_max_posterior"] for r in results if "mean_max_posterior" in r]
        lines.append(
            f"| {name} | {method} | {_cell([r['acc'] for r in results])} "
            f"| {_cell([r['nmi'] for r in results])} | {_cell([r['ari'] for r in results])} "
            f"| {k_hat} | {_cell(resp) if resp else '-'} "
            f"| {_cell(posterior) if posterior else '-'} "
            f"| {statistics.median(r['time_s'] for r in results):.1f} |"
        )
    return lines


#: (phrase in a stop reason, its short name), the first match wins.
STOP_KINDS = (
    ("epoch budget", "epoch budget"),
    ("held-out gain", "held-out gain < min_gain"),
    ("parents in a row", "max_fades splits undone in a row"),
    ("no pot left to split", "no candidate pot left"),
)


def stop_kind(reason: str) -> str:
    """A stop reason from ``summary.json`` in a few words."""
    return next((short for phrase, short in STOP_KINDS if phrase in reason), reason)


def stop_rule_rows(name: str, rows: Dict[str, List[dict]]) -> List[str]:
    """The held-out loss by open pots (median over seeds of the default runs) and the
    K-hat and ARI of each stop rule: the default's, the held-out-gain rule's, and the
    number of pots with the lowest held-out loss on the default run's path."""
    default = rows.get("pyro-pots", [])
    if not default:
        return []
    curves = [{int(k): v for k, v in r["heldout_by_pots"].items()} for r in default]
    ks = sorted(set().union(*curves))

    def at(k: int) -> str:
        values = [c[k] for c in curves if k in c]
        seeds = "" if len(values) == len(curves) else f" ({len(values)} of {len(curves)} seeds)"
        return f"{k}: {statistics.median(values):.2f}{seeds}"

    curve = ", ".join(at(k) for k in ks)
    argmin = ", ".join(str(min(c, key=c.get)) for c in curves)
    lines = [f"| {name} | held-out loss by open pots (median over seeds) | {curve} | | |"]
    lines.append(f"| {name} | lowest held-out loss on the default path | {argmin} | - | |")
    for method, rule in (
        ("pyro-pots", "default"),
        ("stop: default, 3x budget", "default, 3x epoch budget"),
        ("stop: held-out gain", "held-out gain"),
    ):
        if method in rows:
            results = rows[method]
            reasons = sorted({stop_kind(r["stop_reason"]) for r in results})
            lines.append(
                f"| {name} | {rule} | {', '.join(str(r['k_hat']) for r in results)} "
                f"| {_cell([r['ari'] for r in results])} | {'; '.join(reasons)} |"
            )
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", choices=("classical", "ours"))
    parser.add_argument("--data", choices=sorted(DATASETS), action="append")
    parser.add_argument("--methods", nargs="+", choices=sorted(OURS), help="ours to run")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="config override for every pyro-pots run",
    )
    parser.add_argument("--out", default="runs/quality")
    parser.add_argument(
        "--report", action="store_true", help="run none of ours: tabulate the cached runs only"
    )
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    write_breast_cancer(out)
    write_wine(out)
    for seed in args.seeds:
        write_rings(out, seed)
        write_shifted_templates(out, seed)
        write_nuisance(out, seed)
    table = [
        "| data | method | ACC | NMI | ARI | K-hat (k_eff) | mean max resp "
        "| mean max posterior | time s |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    stops = [
        "| data | stop rule | K-hat per seed | ARI | why it stopped |",
        "| --- | --- | --- | --- | --- |",
    ]
    print("\n".join(table))
    everything: Dict[str, Dict[str, List[dict]]] = {}
    for name in args.data or list(DATASETS):
        spec, data_overrides = DATASETS[name]
        rows: Dict[str, List[dict]] = everything.setdefault(name, {})
        for seed in args.seeds:
            if args.only != "ours":
                for method, result in run_classical(name, spec, seed, out).items():
                    rows.setdefault(method, []).append(result)
            if args.only != "classical":
                for method in args.methods or list(OURS):
                    if args.report and not cached_result(method, name, seed, out).exists():
                        continue
                    extra = data_overrides + args.set
                    result = run_ours(method, extra, name, spec, seed, out)
                    rows.setdefault(method, []).append(result)
        lines = method_rows(name, rows)
        print("\n".join(lines), flush=True)
        table += lines
        stops += stop_rule_rows(name, rows)
    print("\n" + "\n".join(stops))
    (out / "quality.md").write_text("\n".join(table) + "\n\n" + "\n".join(stops) + "\n")
    (out / "quality.json").write_text(json.dumps(everything, indent=1))


if __name__ == "__main__":
    main()
