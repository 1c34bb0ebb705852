"""
Posterior and prior predictive checks of a :class:`~pyro_pots.model.PotsVAE`.

Replicated data come from :class:`pyro.infer.Predictive`: the guide draws the latent sites
(``logits``, ``route``, ``z``) of each observed row, and the unconditioned model draws a
new ``obs`` given them, as in the README::

    Predictive(pyro.poutine.uncondition(vae.model), guide=vae.guide, num_samples=S)(x, active)

A test statistic :math:`T` is computed on the observed data and on each of the :math:`S`
replicates, and its posterior predictive p-value is

.. math::

    p = \\frac{1}{S} \\sum_{s=1}^S \\mathbf 1\\left[T(x^{rep}_s) \\ge T(x^{obs})\\right],

the fraction of replicates at least as large as the data (Gelman, Meng and Stern, 1996).
It is one-sided: a p-value near 0 says the data are larger than the model predicts, near
1 smaller. Both ends signal misfit, so each check also reports the two-sided
``min(1, 2 min(P(T_rep >= T_obs), P(T_rep <= T_obs)))`` and flags components whose
two-sided p-value is below ``alpha``. Posterior predictive p-values are not uniform
under a correct model (they gather around 0.5), so a flag is a strong signal and its
absence is a weak one.

Built-in statistics (:func:`check`): per-feature ``mean`` and ``variance``, per-pot
``occupancy`` (the share of rows whose largest responsibility, by the fitted encoder, is
that pot) and the ``log_likelihood`` discrepancy :math:`T(x, \\theta_s)`, the mean over rows
of :math:`\\log p(x_n \\mid \\theta_s)` under draw :math:`s`'s decoder output, compared on
the data and on replicate :math:`s` with the same :math:`\\theta_s`. A user statistic is any
callable ``stat(x) -> tensor`` on an ``(N, D)`` data tensor.

:func:`check_run` does all of it for a fitted run directory and writes ``ppc.json`` and
``plots/ppc_*.png`` there.

The package's parts: :mod:`~pyro_pots.ppc.draws` (replicates and prior draws by
:class:`~pyro.infer.Predictive`) and :mod:`~pyro_pots.ppc.checks` (statistics, p-values,
:func:`check`) are the library a Pyro user calls; :mod:`~pyro_pots.ppc.report`
(:func:`check_run`) writes a run's ``ppc.json`` and figures. Every name is importable from
:mod:`pyro_pots.ppc`.
"""

from pyro_pots.errors import PotsInputError
from pyro_pots.ppc.checks import (
    BUILTIN_STATISTICS,
    PredictiveCheck,
    Statistic,
    StatisticCheck,
    check,
    feature_mean,
    feature_variance,
    log_likelihood_check,
    occupancy,
    p_values,
)
from pyro_pots.ppc.draws import (
    RETURN_SITES,
    can_sample_logit_prior,
    posterior_predictive,
    prior_predictive,
    replicates,
)
from pyro_pots.ppc.report import PPC_JSON, PPC_PLOTS, TOOL, check_run, image_shape_of, pot_rows

__all__ = [
    "BUILTIN_STATISTICS",
    "PPC_JSON",
    "PPC_PLOTS",
    "RETURN_SITES",
    "TOOL",
    "PotsInputError",  # what check_run raises, importable here as before
    "PredictiveCheck",
    "Statistic",
    "StatisticCheck",
    "can_sample_logit_prior",
    "check",
    "check_run",
    "feature_mean",
    "feature_variance",
    "image_shape_of",
    "log_likelihood_check",
    "occupancy",
    "p_values",
    "pot_rows",
    "posterior_predictive",
    "prior_predictive",
    "replicates",
]
