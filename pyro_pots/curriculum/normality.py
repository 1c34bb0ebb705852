"""
The within-pot normality statistic: is one pot's data one Gaussian blob in its latent
space, or more?

We use the split test of G-means (Hamerly and Elkan, "Learning the k in k-means", NIPS
2003): split the pot's latent codes in two by 2-means, project every code on the line
through the two centres, standardise, and take the Anderson-Darling statistic of the
projection against the normal, with the small-sample correction
:math:`A^{*2} = A^2 (1 + 4/n - 25/n^2)` (D'Agostino and Stephens, 1986).

Why this one: a pot's aggregate codes are pulled towards N(0, I) by the KL term, so tests of
the whole distribution (multivariate normality, per-axis tests) barely react to two
clusters inside a pot; the projection on the 2-means axis is the one direction where two
blobs show as two modes, and Anderson-Darling weighs the tails, where a second mode
appears first. The statistic needs no class sizes and no loss scale; its critical value
at level alpha is a property of the normal distribution (1.8692 at alpha = 1e-4, the
level of the G-means paper).

The 2-means axis is where the data spread most, which is not always where its modes lie: a
pot whose rows vary most along one Gaussian nuisance direction hides its clusters from the
test on its raw rows and on its codes alike (measured 2026-11-27 on a synthetic set of
three clusters beside a nuisance direction five times their spread: statistic 0.2-0.3, the
fit stopped at one pot). The test is not affine invariant; on :func:`whitened` codes it is,
and every direction counts by its shape, not its spread (statistic 40 on that set).
"""

import warnings

import torch
from scipy.stats import anderson

from pyro_pots.curriculum.split import two_means

#: fewest codes the test runs on; a smaller pot counts as normal.
MIN_ROWS = 8

#: critical value of the corrected statistic at alpha = 1e-4 (D'Agostino and Stephens).
CRITICAL_1E4 = 1.8692

#: :func:`whitened` keeps the principal directions whose variance is at least this share of
#: the largest one: a latent dimension the pot does not use (its codes near 0, sd 0.09
#: against 1 on the set above) carries no structure worth scaling up.
MIN_VARIANCE_SHARE = 1e-2


def whitened(codes: torch.Tensor) -> torch.Tensor:
    """
    ``codes`` ``(n, d)`` centred and rotated onto their principal axes, each scaled to unit
    variance (PCA whitening; float64), keeping the axes whose variance is at least
    :data:`MIN_VARIANCE_SHARE` of the largest. Returns ``(n, 0)`` when nothing varies.
    """
    x = codes.detach().cpu().double()
    x = x - x.mean(0)
    if len(x) < 2:
        return x[:, :0]
    d = x.shape[1]
    variance, axes = torch.linalg.eigh(torch.cov(x.T).reshape(d, d))
    if not variance.max() > 0:
        return x[:, :0]
    keep = variance > variance.max() * MIN_VARIANCE_SHARE
    return x @ axes[:, keep] / variance[keep].sqrt()


def split_normality(codes: torch.Tensor, seed: int = 0) -> float:
    """
    Corrected Anderson-Darling statistic of ``codes`` ``(n, d)`` projected on their 2-means
    axis: near 0.3 for one Gaussian blob, large for two. Returns 0.0 below
    :data:`MIN_ROWS` rows or when the codes do not vary.
    """
    x = codes.detach().cpu().double().numpy()
    n = len(x)
    if n < MIN_ROWS or x.shape[1] == 0:
        return 0.0
    halves = two_means(codes, seed)
    if halves.min() == halves.max():
        return 0.0
    axis = x[halves == 1].mean(0) - x[halves == 0].mean(0)
    projection = x @ axis
    spread = projection.std()
    if not spread > 0:
        return 0.0
    with warnings.catch_warnings():  # SciPy >= 1.17 asks for a p-value method; we need none
        warnings.simplefilter("ignore", FutureWarning)
        statistic = anderson((projection - projection.mean()) / spread, "norm").statistic
    return float(statistic * (1 + 4 / n - 25 / n**2))
