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
"""

import contextlib
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Mapping, Optional, Tuple, Union

import pyro
import torch
from pyro import poutine
from pyro.infer import Predictive
from pyro.poutine.messenger import Messenger
from pyro.poutine.runtime import Message
from pyro.util import get_rng_state, set_rng_state

from pyro_pots import run_dir
from pyro_pots.distributions import pots_mask
from pyro_pots.errors import PotsInputError
from pyro_pots.fitted_run import load_model, model_features
from pyro_pots.model import PotsVAE
from pyro_pots.sites import LOGITS, OBS, RESPONSIBILITIES, ROUTE, Z

#: a test statistic: data ``(N, D)`` -> a tensor of any fixed shape.
Statistic = Callable[[torch.Tensor], torch.Tensor]

#: the sites :func:`posterior_predictive` and :func:`prior_predictive` return; ``_RETURN``
#: is the model's return value, the mixed decoder output (natural parameters), ``(S, N, D)``.
RETURN_SITES = (LOGITS, RESPONSIBILITIES, ROUTE, Z, OBS, "_RETURN")

#: names of the built-in statistics of :func:`check`.
BUILTIN_STATISTICS = ("mean", "variance", "occupancy", "log_likelihood")

#: the file :func:`check_run` writes into the run directory, and its figures.
PPC_JSON = "ppc.json"
PPC_PLOTS = ("ppc_statistics.png", "ppc_replicates.png")
#: the value of the ``tool`` key that marks a ``ppc.json`` as written by :func:`check_run`.
TOOL = "pyro-pots ppc"


# -- drawing replicates --------------------------------------------------------------------
@contextlib.contextmanager
def _seeded(seed: Optional[int]) -> Iterator[None]:
    """Seed Pyro's RNGs for the block and restore the caller's RNG state after it."""
    if seed is None:
        yield
        return
    state = get_rng_state()
    pyro.set_rng_seed(seed)
    try:
        yield
    finally:
        set_rng_state(state)


class _LogitsPlaceholder(Messenger):
    """
    Give the ``logits`` site a value of zeros where nothing else gives it one.

    The ``none`` and ``categorical_kl`` logit priors cannot be sampled, and
    :class:`~pyro.infer.Predictive` runs the model once unconditioned to learn its shapes.
    For posterior replicates the guide's logits replace the placeholder (Predictive's
    ``condition`` handler is outermost, so it acts after this one); with a single open pot
    the logits do not change the routing, so per-pot prior draws need no logit prior.
    """

    def __init__(self, like: torch.Tensor) -> None:
        super().__init__()
        self.like = like  # dtype and device of the zeros

    def _pyro_sample(self, msg: Message) -> None:
        if msg["name"] == LOGITS and msg["value"] is None:
            fn = msg["fn"]
            msg["value"] = self.like.new_zeros(fn.batch_shape + fn.event_shape)


def can_sample_logit_prior(vae: PotsVAE) -> bool:
    """Whether the model's logit prior has a sampler (``logit_mog`` does; ``none`` and
    ``categorical_kl`` do not). Probed on forked RNGs, so the caller's stream is untouched."""
    prior = vae.logit_prior(vae.active, next(vae.parameters()).dtype)
    with torch.random.fork_rng(devices=[]):
        try:
            prior.sample()
        except NotImplementedError:
            return False
    return True


def _open_set(vae: PotsVAE, active: Optional[torch.Tensor]) -> torch.Tensor:
    return vae.active if active is None else active


def posterior_predictive(
    vae: PotsVAE,
    x: torch.Tensor,
    active: Optional[torch.Tensor] = None,
    num_samples: int = 100,
    seed: Optional[int] = None,
    guide: Optional[Callable] = None,
    parallel: bool = False,
) -> Dict[str, torch.Tensor]:
    """
    Posterior predictive draws by :class:`~pyro.infer.Predictive` with a guide.

    For each of ``num_samples`` draws the guide samples ``logits``, ``route`` and ``z`` given
    ``x``, and the unconditioned model samples ``obs`` given them.

    :param PotsVAE vae: a fitted model.
    :param torch.Tensor x: observed data ``(N, D)``.
    :param torch.Tensor active: boolean ``(K,)`` open pots; default ``vae.active``.
    :param int num_samples: S, the number of replicates.
    :param int seed: seed of the draws (the caller's RNG state is restored afterwards);
        None draws from the current state.
    :param guide: a guide with the model's signature ``guide(x, active)`` that samples
        every latent site; default ``vae.guide``.
    :param bool parallel: draw all replicates at once (Predictive's ``parallel``): several
        times faster, with memory for all ``S`` draws of every open pot's decoder at once.
    :returns: Predictive's dict of :data:`RETURN_SITES`: ``obs``, ``logits``, ``route``
        and ``responsibilities`` of shape ``(S, 1, N, .)``, ``z`` of shape ``(S, K, N, d)``
        and ``_RETURN`` (the mixed decoder output) of shape ``(S, N, D)``.
    """
    active = _open_set(vae, active)
    model = poutine.uncondition(vae.model)
    if not can_sample_logit_prior(vae):
        model = _LogitsPlaceholder(x)(model)
    guide = vae.guide if guide is None else guide
    predictive = Predictive(
        model,
        guide=guide,
        num_samples=num_samples,
        return_sites=RETURN_SITES,
        parallel=parallel,
    )
    with _seeded(seed):
        return predictive(x, active)


def prior_predictive(
    vae: PotsVAE,
    num_rows: int,
    num_samples: int = 1,
    active: Optional[torch.Tensor] = None,
    pot: Optional[int] = None,
    seed: Optional[int] = None,
) -> Dict[str, torch.Tensor]:
    """
    Prior predictive draws of the whole model, or of one pot, by
    :class:`~pyro.infer.Predictive` on the model alone.

    With ``pot`` the model runs with that pot as its only open pot (the model's own
    ``active`` argument): the logit mixture has one component, every row is routed to
    ``pot`` and only that pot's decoder is evaluated, so the draws are
    :math:`x \\sim p(x \\mid z_k),\\ z_k \\sim \\mathcal N(0, I)`.

    :param PotsVAE vae: the model.
    :param int num_rows: rows per draw.
    :param int num_samples: number of draws.
    :param torch.Tensor active: boolean ``(K,)`` open pots; default ``vae.active``.
    :param int pot: draw from this pot only; it must be open in ``active``.
    :param int seed: seed of the draws (the caller's RNG state is restored afterwards).
    :returns: Predictive's dict of :data:`RETURN_SITES` (as in :func:`posterior_predictive`
        with ``N = num_rows``). With ``pot`` and a logit prior that cannot be sampled
        (``none``, ``categorical_kl``), ``logits`` holds zeros: with one open pot they do
        not change the routing.
    :raises ValueError: ``pot`` is not open, or the whole model is asked for with a logit
        prior that cannot be sampled.
    """
    active = _open_set(vae, active)
    model = vae.model
    if pot is not None:
        open_pots = vae.open_ids(active).tolist()
        if pot not in open_pots:
            raise ValueError(f"pot {pot} is not open; open pots: {open_pots}")
        active = pots_mask(vae.num_pots, [pot], device=active.device)
        if not can_sample_logit_prior(vae):
            model = _LogitsPlaceholder(next(vae.parameters()))(model)
    elif not can_sample_logit_prior(vae):
        raise ValueError(
            f"the logit prior {type(vae.logit_prior).__name__} cannot be sampled; prior "
            "predictive draws of the whole model need logit_mog (draws of one pot work "
            "with any prior: pass pot=...)"
        )
    predictive = Predictive(model, num_samples=num_samples, return_sites=RETURN_SITES)
    with _seeded(seed):
        return predictive(None, active, num_rows=num_rows)


def replicates(samples: Mapping[str, torch.Tensor]) -> torch.Tensor:
    """The replicated data ``(S, N, D)`` of a Predictive result (``obs`` without its
    plate dims of size 1)."""
    obs = samples[OBS]
    return obs.reshape(obs.shape[0], *obs.shape[-2:])


# -- statistics and p-values ---------------------------------------------------------------
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
    active = _open_set(vae, active)
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
    active = _open_set(vae, active)
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


# -- a fitted run --------------------------------------------------------------------------
def image_shape_of(n_features: int, known: Optional[Tuple[int, int]] = None):
    """The image shape of a row: ``known`` when the data say so, else a square when
    ``n_features`` is a perfect square (> 1), else None."""
    if known is not None:
        return tuple(known)
    side = math.isqrt(n_features)
    return (side, side) if side > 1 and side * side == n_features else None


@torch.no_grad()
def pot_rows(
    vae: PotsVAE, check_result: PredictiveCheck, per_pot: int, seed: Optional[int] = 0
) -> Dict[str, torch.Tensor]:
    """
    Rows for the per-pot figure, ``(pots, per_pot, D)`` each, NaN where a pot has fewer
    rows: ``observed`` (the first rows the encoder gives to the pot), ``replicated`` (their
    first replicate) and ``prior`` (:func:`prior_predictive` draws of the pot alone).

    :param PotsVAE vae: the model that was checked.
    :param PredictiveCheck check_result: what :func:`check` returned.
    :param int per_pot: rows per pot.
    :param int seed: seed of the prior draws.
    """
    x, pots = check_result.x, check_result.pots
    active = pots_mask(vae.num_pots, pots, device=x.device)
    columns = torch.as_tensor(pots, device=x.device)
    best = vae.responsibilities(x, active).index_select(-1, columns).argmax(-1)
    first_rep = check_result.replicates[0]
    shape = (len(pots), per_pot, x.shape[-1])
    observed = x.new_full(shape, math.nan)
    replicated = x.new_full(shape, math.nan)
    prior = x.new_full(shape, math.nan)
    for j, pot in enumerate(pots):
        rows = (best == j).nonzero().squeeze(-1)[:per_pot]
        observed[j, : len(rows)] = x[rows]
        replicated[j, : len(rows)] = first_rep[rows]
        draws = prior_predictive(vae, per_pot, 1, active, pot=pot, seed=seed)
        prior[j] = replicates(draws)[0]
    return {"observed": observed, "replicated": replicated, "prior": prior}


def _claim_ppc_json(run: Path) -> Path:
    """The path of ``ppc.json``; an existing one is replaced only if this tool wrote it."""
    path = run / PPC_JSON
    if path.exists():
        try:
            owner = json.loads(path.read_text()).get("tool")
        except (OSError, ValueError, AttributeError):  # unreadable, not JSON, not a dict
            owner = None
        if owner != TOOL:
            raise PotsInputError(
                f"'{path}' exists and was not written by {TOOL}; move it away first "
                "(only this tool's ppc.json is replaced)"
            )
    return path


def check_run(
    run: Union[str, Path],
    num_samples: int = 100,
    seed: int = 0,
    data: Optional[str] = None,
    alpha: float = 0.05,
    per_pot: int = 8,
) -> Dict[str, Any]:
    """
    The posterior predictive check of a fitted run, written into its directory.

    Loads the run's final model, draws ``num_samples`` replicates of the run's data (or of
    ``data``), checks the built-in statistics, and writes ``ppc.json`` (the numbers of
    :meth:`PredictiveCheck.to_dict`, with ``tool``, ``run``, ``data`` and ``seed``) and the
    figures ``plots/ppc_statistics.png`` and, for image data (known image shape or a square
    number of features), ``plots/ppc_replicates.png`` (per pot: data, posterior replicates,
    prior draws of the pot). Only those files are written; a ``ppc.json`` that this tool did
    not write is never replaced.

    :param run: the run directory.
    :param int num_samples: replicates to draw (>= 1).
    :param int seed: seed of the draws.
    :param str data: a data spec (:func:`~pyro_pots.data.load_data`); default the run's.
    :param float alpha: two-sided level at which components are flagged.
    :param int per_pot: images per pot in the replicate figure.
    :returns: the contents of ``ppc.json``, plus ``plots`` (the figures written).
    :raises PotsInputError: a missing or unreadable run, bad data, data with another number
        of features, ``num_samples < 1``, or a foreign ``ppc.json``.
    """
    from pyro_pots.data import load_data
    from pyro_pots.ppc_plots import plot_replicates, plot_statistics

    if num_samples < 1:
        raise PotsInputError(f"num_samples must be >= 1, got {num_samples}")
    run = Path(run)
    cfg, vae = load_model(run)  # the final model on the CPU, no trainer built
    spec = data or cfg.data.spec
    dataset = load_data(spec, cfg.model.likelihood)
    n_features = model_features(vae)
    if dataset.n_features != n_features:
        raise PotsInputError(
            f"data has {dataset.n_features} features, the run's model takes {n_features}"
        )
    json_path = _claim_ppc_json(run)
    x = torch.from_numpy(dataset.X).to(vae.active.device)
    result = check(vae, x, num_samples=num_samples, seed=seed)

    plots_dir = run / run_dir.PLOTS
    plots_dir.mkdir(exist_ok=True)
    written = [plots_dir / PPC_PLOTS[0]]
    plot_statistics(result, written[0], alpha)
    image_shape = image_shape_of(n_features, dataset.image_shape)
    if image_shape is not None:
        written.append(plots_dir / PPC_PLOTS[1])
        rows = {k: v.cpu().numpy() for k, v in pot_rows(vae, result, per_pot, seed).items()}
        plot_replicates(rows, image_shape, result.pots, written[-1])

    report = {"tool": TOOL, "run": str(run), "data": spec, "seed": seed}
    report.update(result.to_dict(alpha))
    report["summary"] = result.summary(alpha)
    report["plots"] = [str(path.relative_to(run)) for path in written]
    run_dir.write_json(report, json_path)
    return report
