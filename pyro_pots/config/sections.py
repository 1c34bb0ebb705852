"""The section tables of a run configuration: one frozen dataclass per section of the YAML
file, each row a key with its rule, default and help (see :mod:`pyro_pots.config.rules`).

A default that is an argument of a model-side callable (:class:`~pyro_pots.model.PotsVAE`,
:class:`~pyro_pots.model.LogitMoGPrior`, :class:`~pyro_pots.handlers.KickMessenger`) is
read from that callable's signature, its one source. The training defaults (``train.lr``,
``train.batch_size``, ``train.seed``, ``prior.lam_max``) are set here instead, because the
training code sits above the config in the layering: :func:`~pyro_pots.training.svi_fit.fit_svi`
and :func:`~pyro_pots.training.svi_fit.lambda_schedule` keep their own signature defaults,
and ``tests/test_config.py`` checks that the two agree.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import ClassVar

from pyro_pots.config.rules import (
    MAX_EPOCHS,
    MAX_POTS,
    MAX_SCALE,
    MAX_SEED,
    MAX_WIDTH,
    MIN_SCALE,
    Section,
    choice,
    device_name,
    flag,
    from_signature,
    integer,
    key,
    nonempty_text,
    number,
    proposal_list,
)
from pyro_pots.curriculum.normality import CRITICAL_1E4
from pyro_pots.curriculum.replay import REPLAY_MODES
from pyro_pots.curriculum.split import NEW_POT_INITS
from pyro_pots.curriculum.stage_manager import PARENT_RULES
from pyro_pots.data.dataset import AUTO_LIKELIHOOD, AUTO_SCALING, DATA_SCALINGS
from pyro_pots.distributions import ROUTING_MODES
from pyro_pots.errors import PotsInputError
from pyro_pots.handlers import KickMessenger
from pyro_pots.model.guides import LOGITS_GUIDES
from pyro_pots.model.likelihoods import LIKELIHOODS
from pyro_pots.model.pots_vae import PotsVAE
from pyro_pots.model.priors import LOGIT_PRIORS, LogitMoGPrior

#: the training defaults, equal to ``fit_svi``'s and ``lambda_schedule``'s (a test checks).
BATCH_SIZE, LR, SEED, LAM_MAX = 128, 1e-3, 0, 1.0


@dataclass(frozen=True)
class DataConfig(Section):
    """What to fit, and the rows held out to judge the curriculum's stages."""

    section: ClassVar[str] = "data"

    spec: str = key(
        nonempty_text(),
        "digits",
        "the data: ``digits``, ``synthetic[:k=5,d=20,n=2000,latent=2,sep=6.0,seed=0]`` or "
        "a data file (see :func:`pyro_pots.data.load_data`)",
    )
    heldout_fraction: float = key(
        number(0, 0.9), 0.1, "share of the rows held out (not trained on) to score stages"
    )
    seed: int = key(integer(0, MAX_SEED), 0, "seed of the held-out split")
    scaling: str = key(
        choice(DATA_SCALINGS + (AUTO_SCALING,)),
        AUTO_SCALING,
        "``standard``: the model reads and models each feature in units of its standard "
        "deviation over the training rows, and the curriculum measures distances in them "
        "(the likelihood stays a density over the data as given; ``normal`` likelihood "
        "only); ``none``: the data as they are; ``auto``: ``standard`` with the ``normal`` "
        "likelihood, else ``none``, resolved with the likelihood and recorded in the run's "
        "config",
    )


@dataclass(frozen=True)
class ModelConfig(Section):
    """The network and the likelihood (keyword arguments of :class:`PotsVAE`)."""

    section: ClassVar[str] = "model"

    num_pots: int = key(
        integer(1, MAX_POTS),
        20,
        "K_max, the most pots the curriculum may open (a cap, not a guess of K: the "
        "curriculum decides how many it opens)",
    )
    latent_dim: int = key(
        integer(1, MAX_WIDTH),
        from_signature(PotsVAE.__init__, "latent_dim"),
        "d, latent size of each pot",
    )
    hidden_dim: int = key(
        integer(1, MAX_WIDTH),
        from_signature(PotsVAE.__init__, "hidden_dim"),
        "width of the encoder trunk",
    )
    decoder_hidden_dim: int = key(
        integer(1, MAX_WIDTH),
        from_signature(PotsVAE.__init__, "decoder_hidden_dim"),
        "width of each pot's decoder",
    )
    likelihood: str = key(
        choice(LIKELIHOODS + (AUTO_LIKELIHOOD,)),
        AUTO_LIKELIHOOD,
        "p(x | decoder output); the bernoulli ones need data in [0, 1]; ``auto``: "
        "``bernoulli`` when every value is in [0, 1], else ``normal``, resolved when the "
        "data is loaded and recorded in the run's config",
    )
    responsibility_kl: bool = key(
        flag(),
        from_signature(PotsVAE.__init__, "responsibility_kl"),
        "weight each pot's latent KL by its responsibility",
    )


@dataclass(frozen=True)
class PriorConfig(Section):
    """The prior on the logits, its weight lambda, and the guide of the logits."""

    section: ClassVar[str] = "prior"

    kind: str = key(
        choice(LOGIT_PRIORS),
        from_signature(PotsVAE.__init__, "logit_prior"),
        "prior on the logits: ``logit_mog`` (logit-space Gaussian mixture, near one-hot), "
        "``none`` (flat), ``categorical_kl`` (KL of the responsibilities to uniform)",
    )
    M: float = key(
        number(0, MAX_SCALE, low_open=True),
        from_signature(LogitMoGPrior.__init__, "M"),
        "logit_mog: distance of each component from the origin",
    )
    sigma: float = key(
        number(MIN_SCALE, MAX_SCALE),
        from_signature(LogitMoGPrior.__init__, "sigma"),
        "logit_mog: per-coordinate standard deviation; peakiness grows with M / sigma",
    )
    lam_max: float = key(
        number(0, MAX_SCALE),
        LAM_MAX,
        "weight lambda of the prior after warm-up",
        same_as="lambda_schedule(lam_max=...)",
    )
    lam_warmup_epochs: int = key(
        integer(0, MAX_EPOCHS), 10, "epochs over which lambda rises linearly from 0 to lam_max"
    )
    logits_guide: str = key(
        choice(LOGITS_GUIDES),
        from_signature(PotsVAE.__init__, "logits_guide"),
        "q(y | x): ``delta`` (y = y(x)) or ``normal``",
    )


@dataclass(frozen=True)
class RoutingConfig(Section):
    """How the logits send each row to the pots."""

    section: ClassVar[str] = "routing"

    mode: str = key(
        choice(ROUTING_MODES),
        from_signature(PotsVAE.__init__, "routing"),
        "``softmax`` (deterministic), ``gumbel`` (relaxed sample) or ``straight_through`` "
        "(one-hot forward, relaxed gradient)",
    )
    temperature: float = key(
        number(MIN_SCALE, MAX_SCALE),
        from_signature(PotsVAE.__init__, "temperature"),
        "routing temperature; lower is closer to one-hot",
    )


@dataclass(frozen=True)
class CurriculumConfig(Section):
    """When pots are opened, how a new pot is started, and the kick that feeds it."""

    section: ClassVar[str] = "curriculum"

    start_pots: int = key(integer(1, MAX_POTS), 1, "pots open at the start (<= model.num_pots)")
    min_stage_epochs: int = key(
        integer(1, MAX_EPOCHS), 10, "fewest epochs of a stage (after the kick)"
    )
    patience: int = key(
        integer(1, MAX_EPOCHS), 5, "epochs without progress of the smoothed loss that end a stage"
    )
    rel_tol: float = key(
        number(0), 2e-3, "relative improvement of the smoothed loss that counts as progress"
    )
    smoothing: float = key(
        number(0, 1, low_open=True),
        0.3,
        "weight of the newest epoch in the smoothed loss (1: no smoothing)",
    )
    normality_critical: float = key(
        number(0),
        CRITICAL_1E4,
        "split only pots whose codes' normality statistic (G-means' Anderson-Darling test on "
        "the 2-means axis) exceeds this; the default is its critical value at alpha = 1e-4; "
        "0 switches the test off",
    )
    normality_whitened: bool = key(
        flag(),
        True,
        "also run the normality test on each pot's whitened latent codes (every direction "
        "at unit spread), which finds clusters beside a wider Gaussian nuisance direction; "
        "a pot whose codes show modes while its rows look like one blob is split on its "
        "codes first (off until 2026-11-27)",
    )
    heldout_stop: bool = key(
        flag(),
        False,
        "also stop at the first split whose held-out mixture loss does not gain min_gain "
        "(greedy; off by default: on digits and on synthetic data it stops too early)",
    )
    max_fades: int = key(
        integer(1, MAX_POTS),
        3,
        "parents in a row whose every split proposal faded or drifted before the curriculum stops",
    )
    min_agreement: float = key(
        number(0, 1),
        0.5,
        "least adjusted Rand index between a split's kick targets and where its rows are at "
        "the stage end (0: off); a split that drifted below it is undone",
    )
    max_cut_ratio: float = key(
        number(0),
        0.15,
        "with the neighbour graph: a split is undone when the graph edges joining its two "
        "pots exceed this share of what a random split of the same sizes would cut (0: the "
        "pots are apart in the graph, 1: the boundary ignores it; 0 switches the test off). "
        "A spectral proposal is the graph's cheapest bisection, so a pot with no gap in it "
        "shows a high ratio even then: 0.15 with ``spectral`` first, 0.25 before",
    )
    screen_cut_ratio: float = key(
        number(0),
        0.15,
        "with the neighbour graph and max_cut_ratio: a split whose proposal itself cuts more "
        "than this share of what a random split would (its cut ratio before any training) "
        "is undone before its kick, and the next proposal or parent follows at once; a kick "
        "teaches its proposal, so the stage would likely end with a split max_cut_ratio "
        "undoes (0: off, before 2026-11-28). A proposal on the latent codes is never "
        "screened (the rows' graph says nothing of it before training)",
    )
    screen_first_proposals: bool = key(
        flag(),
        True,
        "with screen_cut_ratio: screen a parent's first proposal too (false: only its "
        "retries, the default until the codes proposal was exempted from the screen; true "
        "keeps every data set's K in the quality benchmark, in fewer epochs)",
    )
    min_cut_contrast: float = key(
        number(0),
        2.0,
        "with the neighbour graph: a split is undone as one mode cut in two when the "
        "sparsest cut inside each of its two pots (the cut ratio of its spectral bisection) "
        "is within this factor of the boundary's cut ratio, either way round, and its "
        "held-out gain is not above zero (0: off; added 2026-11-27, off before)",
    )
    min_gain: float = key(
        number(0), 0.0, "with heldout_stop: least held-out gain of a split, nats per row"
    )
    evidence_z: float = key(
        number(0),
        4.0,
        "a split whose paired held-out gain (the weaker of the plain and the controlled "
        "gain) is at least this many standard errors above zero is kept even when it "
        "drifted from its proposal or cuts more of the neighbour graph than max_cut_ratio "
        "(0: off, the default until 2026-11-27; no undone split of the benchmark sets "
        "reached 3.5)",
    )
    min_evidence_z: float = key(
        number(0),
        0.0,
        "a split whose paired held-out gain is less than this many standard errors above "
        "zero is undone (0: off); with the neighbour graph on, the held-out rows are scored "
        "under its Potts prior",
    )
    split_proposals: str = key(
        proposal_list(),
        "spectral,two_means",
        "the split proposals a parent gets in turn before it is marked as tried, comma "
        "separated: ``two_means`` (2-means on its rows), ``spectral`` (a bisection of "
        "its rows' k-nearest-neighbour graph, which follows curved modes) and ``codes`` "
        "(2-means on its whitened latent codes, blind to a wide nuisance direction); "
        "``two_means`` alone until 2026-11-27",
    )
    neighbour_weight: float = key(
        number(0),
        1.0,
        "beta of the Potts prior over the training rows' nearest-neighbour graph: nats per "
        "expected cut edge added to the SVI loss, so that pots follow the graph's components "
        "(0: off, the default until 2026-11-27)",
    )
    neighbours: int = key(
        integer(1, 1024),
        10,
        "k of the nearest-neighbour graph the Potts prior is built on (at most the training "
        "rows less one)",
    )
    min_usage: float = key(
        number(0, 1, high_open=True), 0.02, "usage below which a pot counts as unused"
    )
    min_usage_apart: float = key(
        number(0, 1, high_open=True),
        0.01,
        "with the neighbour graph: a new pot below min_usage is kept, down to this usage, "
        "when its boundary with its parent cuts at most max_cut_ratio_apart of what a random "
        "split would (a small mode apart in the graph, not a sliver of one); 0, or a value "
        "not below min_usage: min_usage for every pot (the default until 2026-11-27)",
    )
    max_cut_ratio_apart: float = key(
        number(0),
        0.02,
        "with min_usage_apart: the most a small new pot's boundary with its parent may cut, "
        "as a share of a random split's edges (cut_ratio), for the pot to count as apart",
    )
    kick_steps: int = key(
        integer(0, MAX_EPOCHS),
        600,
        "SVI steps of the kick after a pot opens, rounded up to whole epochs (0: none)",
    )
    kick_max_steps: int = key(
        integer(0, MAX_EPOCHS),
        0,
        "with more than kick_steps: the kick goes on, an epoch at a time up to this many SVI "
        "steps, while the parent's and the new pot's decoders have not parted the kicked "
        "rows (the adjusted Rand index between the kick's halves and the pot of the two "
        "whose ELBO is higher for each row is below min_agreement); 0: every kick lasts "
        "kick_steps",
    )
    retry_kick_factor: float = key(
        number(1, MAX_SCALE),
        1.0,
        "a retry of a parent's split (its next split proposal) is kicked this many times "
        "longer than the attempt before it: kick_steps x factor^attempt; 1: every kick as "
        "long",
    )
    kick_temperature: float = key(
        number(MIN_SCALE, MAX_SCALE),
        from_signature(KickMessenger.__init__, "temperature"),
        "routing temperature during the kick",
    )
    kick_bias: float = key(
        number(),
        0.0,
        "added to the new pot's routing logit during the kick; 0 by default, because the "
        "ELBO's gradient against a routing bias pulls the encoder's logits back to the "
        "parent and undoes the kick's cross-entropy",
    )
    kick_lam_factor: float = key(
        number(0),
        1.0,
        "multiplier of lambda during the kick (the handler's own default relaxes it; the "
        "curriculum keeps the prior on, so that a real split is not lost when the kick ends)",
    )
    kick_weight: float = key(
        number(0),
        10.0,
        "weight of the kick's cross-entropy (nats per kicked row) that teaches the encoder "
        "the parent's split; at 1 the ELBO's pull on the logits undid real splits",
    )
    refine_weight: float = key(
        number(0),
        10.0,
        "weight of the routing refinement (nats per row): a cross-entropy between the "
        "encoder's routing and each row's open pot of highest ELBO, on every row a kick is "
        "not teaching, so that the logit prior cannot carry rows away from the pot that "
        "explains them best (0: off, the default until 2026-11-27)",
    )
    refine_rows: int = key(
        integer(0),
        0,
        "rows of each batch the routing refinement scores: a uniform draw whose loss is "
        "scaled to the batch, at that share of the refinement's cost (0: every row)",
    )
    refine_every: int = key(
        integer(1, MAX_EPOCHS),
        5,
        "epochs the routing refinement keeps one table of the training rows' targets, "
        "scored at an epoch's start (and afresh whenever the open pots change or a kick "
        "starts or ends); 1: each batch's targets are scored at its step (the default until "
        "2026-11-28, 1.5 times the time per epoch at 14 pots)",
    )
    init_noise: float = key(
        number(0), 0.01, "scale of the noise added when a new pot is copied from its parent"
    )
    new_pot_init: str = key(
        choice(NEW_POT_INITS),
        "copy",
        "how a new pot's weights start: ``copy`` of its parent's (plus init_noise) or "
        "``fresh`` from the layers' default initialisation (an ablation)",
    )
    parent_rule: str = key(
        choice(PARENT_RULES),
        "usage",
        "which candidate pot a new pot is split from: ``usage`` (the most data, as bisecting "
        "k-means splits its largest cluster), ``normality`` (least normal codes) or "
        "``recon`` (largest misfit)",
    )


@dataclass(frozen=True)
class TrainConfig(Section):
    """The optimiser, the epochs, and where it runs."""

    section: ClassVar[str] = "train"

    max_epochs: int = key(
        integer(1, MAX_EPOCHS),
        1600,
        "most epochs, all stages together: a cap, which the curriculum's stop rule should "
        "reach first (digits stops by itself after 1150-1300 epochs; 800 until 2026-11-27, "
        "which stopped digits on the budget)",
    )
    batch_size: int = key(
        integer(1), BATCH_SIZE, "rows per SVI step", same_as="fit_svi(batch_size=...)"
    )
    lr: float = key(
        number(0, 1, low_open=True), LR, "Adam learning rate", same_as="fit_svi(lr=...)"
    )
    seed: int = key(
        integer(0, MAX_SEED),
        SEED,
        "seed of initialisation and batches",
        same_as="fit_svi(seed=...)",
    )
    device: str = key(device_name(), "auto", "``auto`` picks cuda when it is available")
    threads: int = key(
        integer(1, 1024),
        1,
        "torch CPU threads; 1 by default: on 2 idle cores a digits fit takes as long with 1 as "
        "with 2, and beside one busy process 2 threads took 2.8 times as long, 1 thread no longer",
    )
    jit: bool = key(
        flag(),
        True,
        "compile the ELBO with JitTrace_ELBO: one compiled ELBO for the whole fit (lambda and "
        "the kick's values are its tensor arguments), under torchrun too; on CPU the graph "
        "runs interpreted and eager autograd differentiates it (the faster backward there)",
    )
    bad_step_patience: int = key(
        integer(1, MAX_EPOCHS),
        5,
        "non-finite SVI steps in a row (skipped) before the model rolls back to the start "
        "of its last clean epoch",
    )
    rollback_lr_factor: float = key(
        number(0, 1, low_open=True), 0.5, "learning-rate multiplier at each rollback"
    )


@dataclass(frozen=True)
class GrowConfig(Section):
    """Growing a fitted run on new data (``fit --resume-from``; read by that only): what
    protects the old pots, and how pots for the new modes open (docs/using-pots.md)."""

    section: ClassVar[str] = "grow"

    freeze_old_pots: bool = key(
        flag(),
        False,
        "keep the old pots' decoders and latent heads bit-identical during growth (their "
        "routing logits and the shared trunk still train)",
    )
    replay: str = key(
        choice(REPLAY_MODES),
        "off",
        "old rows mixed into the training rows during growth: ``off``, a ``reservoir`` of "
        "the old run's training rows, or ``generative`` draws from the old pots' decoders",
    )
    replay_share: float = key(
        number(0, 4, low_open=True),
        0.5,
        "rows replayed, as a share of the new training rows (with replay on)",
    )
    seed_new_pot: bool = key(
        flag(),
        False,
        "open a pot at the start of growth for the new rows no old pot explains (misfit in "
        "their pot above that pot's seed_quantile on the old rows), kicked and judged as a "
        "split, instead of waiting for the curriculum to split old pots",
    )
    split_old_pots: bool = key(
        flag(),
        True,
        "whether the curriculum may split the old pots during growth; false: only pots "
        "opened during growth are split candidates (the old pots are protected in the stage "
        "manager, and stay so through fit --resume)",
    )
    seed_quantile: float = key(
        number(0.5, 1, high_open=True),
        0.95,
        "a new row is poorly explained when its misfit in its pot is above this quantile "
        "of the misfits of the pot's own old training rows",
    )
    seed_min_share: float = key(
        number(0, 1, high_open=True),
        0.02,
        "the least share of the new training rows poorly explained for a pot to be seeded",
    )


@dataclass(frozen=True)
class OutputConfig(Section):
    """The run directory."""

    section: ClassVar[str] = "output"

    dir: str = key(nonempty_text(), "runs/fit", "run directory (summary, history, model, plots)")
    overwrite: bool = key(flag(), False, "replace a run directory that is not empty")
    plots: bool = key(flag(), True, "write the plots")


@dataclass(frozen=True)
class Config:
    """A whole run configuration: one frozen dataclass per section (``cfg.model.num_pots``).

    ``Config()`` is the default configuration; building one checks the keys that depend on
    each other (``curriculum.start_pots <= model.num_pots``).
    """

    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    prior: PriorConfig = field(default_factory=PriorConfig)
    routing: RoutingConfig = field(default_factory=RoutingConfig)
    curriculum: CurriculumConfig = field(default_factory=CurriculumConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    grow: GrowConfig = field(default_factory=GrowConfig)
    output: OutputConfig = field(default_factory=OutputConfig)

    def __post_init__(self) -> None:
        for name, section_class in SECTIONS.items():
            if not isinstance(getattr(self, name), section_class):
                raise TypeError(f"Config.{name} must be a {section_class.__name__}")
        if self.curriculum.start_pots > self.model.num_pots:
            raise PotsInputError(
                f"config key 'curriculum.start_pots': must be <= model.num_pots "
                f"({self.model.num_pots}), got {self.curriculum.start_pots}"
            )


#: section name -> its dataclass, in file order.
SECTIONS: dict[str, type] = {
    "data": DataConfig,
    "model": ModelConfig,
    "prior": PriorConfig,
    "routing": RoutingConfig,
    "curriculum": CurriculumConfig,
    "train": TrainConfig,
    "grow": GrowConfig,
    "output": OutputConfig,
}


def section_keys(section: str) -> list[str]:
    """The key names of ``section``, in table order."""
    return [row.name for row in fields(SECTIONS[section])]
