"""
Test statistics and posterior predictive p-values (see :mod:`pyro_pots.ppc`): the built-in
statistics, :class:`StatisticCheck` and :class:`PredictiveCheck`, and :func:`check`, the
posterior predictive check of a fitted model on data.
"""

from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Mapping, Optional, Tuple, Union

import torch

from pyro_pots.model import PotsVAE
from pyro_pots.ppc.draws import open_set, posterior_predictive, replicates

#: a test statistic: data ``(N, D)`` -> a tensor of any fixed shape.
Statistic = Callable[[torch.Tensor], torch.Tensor]

#: names of the built-in statistics of :func:`check`.
BUILTIN_STATISTICS = ("mean", "variance", "occupancy", "log_likelihood")


def feature_mean(x: torch.Tensor) -> torch.Tensor:
    """Mean of each feature over the rows: ``(N, D) -> (D,)``."""
    return x.mean(-2)


def feature_variance(x: torch.Tensor) -> torch.Tensor:
    """Variance of each feature over the rows (unbiased): ``(N, D) -> (D,)``."""
    return x.var(-2)


def occupancy(vae: PotsVAE, active: Optional[torch.Tensor] = None) -> Statistic:
    """
    The statistic "share of rows per open pot": each row goes to the open pot of largest
    responsibility under the fitted encoder, ``(N, D) -> (number of open pots,)``. The
    encoder is fixed, so this is a function of the data alone.
    """
    active = open_set(vae, active)
    pots = vae.open_ids(active)

    def stat(x: torch.Tensor) -> torch.Tensor:
        best = vae.responsibilities(x, active).index_select(-1, pots).argmax(-1)
        return best.bincount(minlength=len(pots)).to(x.dtype) / len(x)

    return stat


def p_values(t_obs: torch.Tensor, t_rep: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """
    Posterior predictive p-values of a statistic, element by element.

    :param torch.Tensor t_obs: ``T(x_obs)``, broadcastable to ``t_rep`` (for a discrepancy
        that depends on the draw, shape ``(S, ...)``).
    :param torch.Tensor t_rep: ``T(x_rep)`` of each replicate, ``(S, ...)``.
    :returns: ``(p, p_two_sided)`` of shape ``t_rep.shape[1:]``: ``p`` is the fraction of
        replicates with ``T(x_rep) >= T(x_obs)``; ``p_two_sided`` is
        ``min(1, 2 min(p, fraction with T(x_rep) <= T(x_obs)))`` (ties count on both sides).
    """
    upper = (t_rep >= t_obs).to(torch.get_default_dtype()).mean(0)
    lower = (t_rep <= t_obs).to(torch.get_default_dtype()).mean(0)
    return upper, (2 * torch.minimum(upper, lower)).clamp(max=1.0)


@dataclass
class StatisticCheck:
    """
    One statistic checked against the replicates.

    :ivar observed: ``T(x_obs)``; ``(S, ...)`` for a discrepancy that depends on the draw.
    :ivar replicated: ``T(x_rep)`` of each replicate, ``(S, ...)``.
    :ivar p_value: fraction of replicates with ``T(x_rep) >= T(x_obs)``, shape of ``T``.
    :ivar p_two_sided: the two-sided p-value (see :func:`p_values`).
    """

    observed: torch.Tensor
    replicated: torch.Tensor
    p_value: torch.Tensor
    p_two_sided: torch.Tensor

    @classmethod
    def compare(cls, observed: torch.Tensor, replicated: torch.Tensor) -> "StatisticCheck":
        p, p_two = p_values(observed, replicated)
        return cls(observed, replicated, p, p_two)

    def flagged(self, alpha: float) -> int:
        """Number of components whose two-sided p-value is below ``alpha``."""
        return int((self.p_two_sided < alpha).sum())

    def to_dict(self, alpha: float) -> Dict[str, Any]:
        """Plain numbers for JSON: the observed value (averaged over draws for a
        discrepancy), the replicates' mean, both p-values and the flag count."""
        observed = self.observed
        if observed.dim() > 0 and observed.shape == self.replicated.shape:
            observed = observed.mean(0)
        return {
            "observed": _listed(observed),
            "replicated_mean": _listed(self.replicated.mean(0)),
            "p_value": _listed(self.p_value),
            "p_two_sided": _listed(self.p_two_sided),
            "flagged": self.flagged(alpha),
            "size": self.p_value.numel(),
        }


def _listed(value: torch.Tensor) -> Union[float, List]:
    return value.detach().cpu().tolist()


@dataclass
class PredictiveCheck:
    """
    What :func:`check` returns.

    :ivar x: the observed data ``(N, D)``.
    :ivar samples: the :func:`posterior_predictive` draws (every site).
    :ivar pots: the open pot ids (the order of ``occupancy``).
    :ivar statistics: name -> :class:`StatisticCheck`.
    """

    x: torch.Tensor
    samples: Dict[str, torch.Tensor]
    pots: List[int]
    statistics: Dict[str, StatisticCheck] = field(default_factory=dict)

    @property
    def replicates(self) -> torch.Tensor:
        """The replicated data ``(S, N, D)``."""
        return replicates(self.samples)

    def summary(self, alpha: float = 0.05) -> Dict[str, Any]:
        """Per statistic: its size, how many components are flagged at ``alpha``, and the
        smallest two-sided p-value."""
        return {
            name: {
                "size": c.p_value.numel(),
                "flagged": c.flagged(alpha),
                "min_p_two_sided": float(c.p_two_sided.min()),
            }
            for name, c in self.statistics.items()
        }

    def to_dict(self, alpha: float = 0.05) -> Dict[str, Any]:
        """Everything but the draws, as plain numbers (the body of ``ppc.json``)."""
        n, d = self.x.shape
        return {
            "n_rows": n,
            "n_features": d,
            "num_samples": self.replicates.shape[0],
            "active": self.pots,
            "alpha": alpha,
            "p_value": "fraction of replicates with T(x_rep) >= T(x_obs)",
            "p_two_sided": "min(1, 2 min(P(T(x_rep) >= T(x_obs)), P(T(x_rep) <= T(x_obs))))",
            "statistics": {name: c.to_dict(alpha) for name, c in self.statistics.items()},
        }


def _each_replicate(stat: Statistic, x_rep: torch.Tensor) -> torch.Tensor:
    """``stat`` on each replicate ``(N, D)`` (user statistics see one data set at a time)."""
    return torch.stack([torch.as_tensor(stat(rep)) for rep in x_rep])


@torch.no_grad()
def log_likelihood_check(
    vae: PotsVAE, x: torch.Tensor, samples: Mapping[str, torch.Tensor]
) -> StatisticCheck:
    """
    The discrepancy :math:`T(x, \\theta_s)`: mean over rows of :math:`\\log p(x_n \\mid
    \\theta_s)`, with :math:`\\theta_s` draw ``s``'s mixed decoder output, on the data and
    on replicate ``s``. A small p-value: the data fit their own posterior draws better
    than replicates do (over-fit); near 1: worse (misfit).
    """
    out = samples["_RETURN"]
    likelihood = vae.likelihood(out)
    observed = likelihood.log_prob(x).mean(-1)
    replicated = likelihood.log_prob(replicates(samples)).mean(-1)
    return StatisticCheck.compare(observed, replicated)


@torch.no_grad()
def check(
    vae: PotsVAE,
    x: torch.Tensor,
    active: Optional[torch.Tensor] = None,
    num_samples: int = 100,
    seed: Optional[int] = 0,
    statistics: Optional[Mapping[str, Statistic]] = None,
    guide: Optional[Callable] = None,
    parallel: bool = False,
) -> PredictiveCheck:
    """
    Posterior predictive check of a fitted model on data ``x``.

    Draws ``num_samples`` replicates by :func:`posterior_predictive` and checks the built-in
    statistics (:data:`BUILTIN_STATISTICS`) and any of the user's.

    :param PotsVAE vae: a fitted model.
    :param torch.Tensor x: observed data ``(N, D)``.
    :param torch.Tensor active: boolean ``(K,)`` open pots; default ``vae.active``.
    :param int num_samples: S, the number of replicates (>= 1).
    :param int seed: seed of the replicates (the caller's RNG state is restored).
    :param statistics: more statistics by name, each ``stat(x) -> tensor`` on an
        ``(N, D)`` tensor (called on the data and on each replicate).
    :param guide: the guide that draws the latent sites (see :func:`posterior_predictive`);
        default ``vae.guide``.
    :param bool parallel: draw the replicates at once (see :func:`posterior_predictive`).
    :returns: a :class:`PredictiveCheck`.
    :raises ValueError: a user statistic reuses a built-in name, or ``num_samples < 1``.
    """
    statistics = dict(statistics or {})
    taken = sorted(set(statistics) & set(BUILTIN_STATISTICS))
    if taken:
        raise ValueError(f"statistic names {taken} are built in; choose other names")
    if num_samples < 1:
        raise ValueError(f"num_samples must be >= 1, got {num_samples}")
    active = open_set(vae, active)
    samples = posterior_predictive(vae, x, active, num_samples, seed, guide, parallel)
    x_rep = replicates(samples)
    pots = vae.open_ids(active).tolist()
    result = PredictiveCheck(x, samples, pots)
    plain = {"mean": feature_mean, "variance": feature_variance}
    plain.update(occupancy=occupancy(vae, active), **statistics)
    for name, stat in plain.items():
        t_obs = torch.as_tensor(stat(x))
        result.statistics[name] = StatisticCheck.compare(t_obs, _each_replicate(stat, x_rep))
    result.statistics["log_likelihood"] = log_likelihood_check(vae, x, samples)
    return result
