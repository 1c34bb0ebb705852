"""
The numbers the stage manager judges by, computed from the model and the data.

Every epoch: the held-out mixture loss (comparable across numbers of open pots, see
:mod:`~pyro_pots.model.scoring`) and each pot's share of the training rows. At a stage
end, in addition: each pot's misfit and normality, the pending split's agreement with its
kick, and the split's **evidence**: the paired per-row held-out gain over the model before
the split, with its standard error; with the neighbour graph on, the held-out rows are
scored under the Potts prior (:func:`potts_heldout_rows`). Every score reuses fixed noise
(common random numbers), so epoch-to-epoch and before/after differences are real ones.
"""

import math
from dataclasses import dataclass
from typing import Any, Dict, Optional

import torch

from pyro_pots.curriculum.neighbours import conditional_log_prior
from pyro_pots.curriculum.normality import split_normality, whitened
from pyro_pots.model import PotsVAE
from pyro_pots.model.scoring import (
    PotScores,
    labelled_loss,
    mixture_loss,
    pot_scores,
    weights_from_mean,
)
from pyro_pots.training import distributed

#: rows each normality test and each split proposal sees at most.
MAX_SPLIT_ROWS = 5000

#: draws of z per held-out row in a split's evidence (:func:`potts_heldout_rows`): with one
#: draw the Monte Carlo noise of a row's ELBO (sd 1.2 nats on digits) outweighs what a split
#: changes; eight draws cut it to 0.46 (measured on a fitted digits run). Only at stage ends.
EVIDENCE_SAMPLES = 8

#: offsets of the noise seeds from ``train.seed``: one stream per kind of score.
TRAIN_NOISE, HELDOUT_NOISE = 1, 2

#: rows per chunk of the per-epoch responsibility pass (bounds the encoder's ``rows x
#: hidden`` activations; a training set of up to this many rows is one chunk). The decoding
#: passes go through :func:`~pyro_pots.model.scoring.pot_scores`, which chunks by itself.
RESP_CHUNK_ROWS = 1 << 14


@dataclass
class EpochScores:
    """The per-epoch numbers (:func:`epoch_scores`)."""

    heldout_loss: float  #: mean negative mixture ELBO of the held-out rows, nats per row
    heldout_rows: torch.Tensor  #: ``(M,)`` this rank's held-out rows' losses (float64)
    usage: Dict[int, float]  #: each open pot's share of the training rows (argmax)
    mean_max_resp: float  #: the training rows' mean largest responsibility


@torch.no_grad()
def epoch_scores(
    vae: PotsVAE, train_x: torch.Tensor, heldout_x: torch.Tensor, seed: int
) -> EpochScores:
    """The held-out mixture loss, with the mixture weights from the training rows' mean
    responsibilities, and the pots' usage. Under torchrun each rank scores its share of
    the rows and the sums are reduced across ranks."""
    active = vae.active
    pots = vae.open_ids()
    a = len(pots)
    rows = distributed.strided(train_x)
    resp = torch.cat([vae.responsibilities(chunk, active) for chunk in rows.split(RESP_CHUNK_ROWS)])
    resp = resp.index_select(-1, pots).double()
    sums = torch.cat(
        [
            resp.sum(0),
            resp.argmax(-1).bincount(minlength=a).double(),
            resp.max(-1).values.sum().reshape(1),
            resp.new_tensor([len(resp)]),
        ]
    )
    sums = distributed.all_reduce_sum(sums)
    n = sums[-1]
    weights = weights_from_mean(sums[:a] / n).to(heldout_x.dtype)
    noise = torch.Generator().manual_seed(seed + HELDOUT_NOISE)
    held_rows = distributed.strided(heldout_x)
    held = mixture_loss(pot_scores(vae, held_rows, active, generator=noise), weights).double()
    held_sum = torch.cat([held.sum().reshape(1), n.new_tensor([len(held_rows)])])
    held_sum = distributed.all_reduce_sum(held_sum)
    return EpochScores(
        heldout_loss=(held_sum[0] / held_sum[1]).item(),
        heldout_rows=held,
        usage=dict(zip(pots.tolist(), (sums[a : 2 * a] / n).tolist())),
        mean_max_resp=(sums[2 * a] / n).item(),
    )


@torch.no_grad()
def train_scores(vae: PotsVAE, train_x: torch.Tensor, seed: int) -> PotScores:
    """The training rows' :class:`PotScores` (one draw of z per row, fixed noise)."""
    noise = torch.Generator().manual_seed(seed + TRAIN_NOISE)
    return pot_scores(vae, train_x, vae.active, generator=noise)


@torch.no_grad()
def potts_heldout_rows(
    vae: PotsVAE,
    heldout_x: torch.Tensor,
    train: PotScores,
    neighbours: torch.Tensor,
    beta: float,
    seed: int,
) -> torch.Tensor:
    """
    Each held-out row's negative ELBO ``(M,)`` (float64) under the prior the model was
    trained with: its pot's prior is the Potts conditional given the pots of its
    ``neighbours`` among the training rows (``train``, the training rows' stage-end
    scores), not the mixture weights. Under the mixture weights a split of a pot with share
    ``s`` costs up to ``s log 2`` nats per row to name the halves, however far apart they
    are; under the Potts prior naming costs nothing where no neighbour is cut, and ``beta``
    per cut neighbour where one is. Each row's ELBO is averaged over
    :data:`EVIDENCE_SAMPLES` draws of z, with the same noise at every call.
    """
    noise = torch.Generator().manual_seed(seed + HELDOUT_NOISE)
    held = pot_scores(vae, heldout_x, vae.active, EVIDENCE_SAMPLES, generator=noise)
    log_prior = conditional_log_prior(train.resp.to(held.resp.dtype), neighbours, beta)
    return labelled_loss(held, log_prior.to(held.resp.device)).double()


def split_evidence(
    before: Dict[str, Any], heldout_rows: torch.Tensor, potts_rows: Optional[torch.Tensor]
) -> Optional[Dict[str, float]]:
    """
    The pending split's evidence (:func:`paired_gain`) against the losses kept from before
    it, ``before`` (the trainer's ``pre_split``): the held-out rows under the Potts prior
    when both sides have them (computed on rank 0 and held whole by every rank), else the
    per-epoch mixture losses (this rank's shard); None without a baseline. With the Potts
    rows and the held-out rows that were the parent's (``before["parent_rows"]``), also
    the gain controlled for the stage's training (:func:`controlled_gain`).
    """
    if before.get("potts_rows") is not None and potts_rows is not None:
        evidence = paired_gain(before["potts_rows"], potts_rows, sharded=False)
        if before.get("parent_rows") is not None:
            evidence.update(
                controlled_gain(before["potts_rows"], potts_rows, before["parent_rows"])
            )
        return evidence
    if before.get("heldout_rows") is not None:
        return paired_gain(before["heldout_rows"], heldout_rows)
    return None


def controlled_gain(
    before: torch.Tensor, after: torch.Tensor, parent_rows: torch.Tensor
) -> Dict[str, float]:
    """
    What the split itself gained: the paired gain of the held-out rows that were the
    parent's before the split, less that of the other rows (a difference in differences).
    The plain gain (:func:`paired_gain` over all rows) also counts what one more stage of
    training gains everywhere, split or not: on ``synthetic:k=8`` splits that faded back
    into their parent read z up to 7, more than the real splits. The other rows see the
    same stage (kick included) without being split, so their gain is the control; with no
    other rows (the first split) or fewer than two on either side the control is taken as
    0. The two groups are disjoint, so the standard errors add in quadrature.

    :returns: ``parent_gain``, ``parent_se``, ``control_gain``, ``control_se`` (nats per
        row), ``split_gain = parent_gain - control_gain``, ``split_se`` and ``split_z``.
    """
    d = (before - after).double()
    mask = parent_rows.to(d.device, torch.bool)

    def mean_se(values: torch.Tensor):
        n = len(values)
        if n < 2:
            return 0.0, 0.0
        return values.mean().item(), (values.var(unbiased=True) / n).sqrt().item()

    parent_gain, parent_se = mean_se(d[mask])
    control_gain, control_se = mean_se(d[~mask])
    split_gain = parent_gain - control_gain
    split_se = math.sqrt(parent_se**2 + control_se**2)
    z = split_gain / split_se if split_se > 0 else (math.inf if split_gain > 0 else 0.0)
    return {
        "parent_gain": parent_gain,
        "parent_se": parent_se,
        "control_gain": control_gain,
        "control_se": control_se,
        "parent_rows": int(mask.sum()),
        "split_gain": split_gain,
        "split_se": split_se,
        "split_z": z,
    }


def heldout_pots(vae: PotsVAE, heldout_x: torch.Tensor) -> torch.Tensor:
    """The pot id each held-out row is routed to (its largest responsibility), ``(M,)``."""
    with torch.no_grad():
        chunks = heldout_x.split(RESP_CHUNK_ROWS)
        return torch.cat([vae.responsibilities(c, vae.active).argmax(-1).cpu() for c in chunks])


def misfit(scores: PotScores) -> Dict[int, float]:
    """Each open pot's misfit: the total negative ELBO of the training rows, weighted by
    responsibility (it explains its data worst when this is largest)."""
    total = -(scores.resp * scores.elbo).sum(0)
    return dict(zip(scores.pots.tolist(), total.tolist()))


def normality_tests(
    scores: PotScores, train_x: torch.Tensor, seed: int, whitened_codes: bool = False
) -> Dict[int, Dict[str, float]]:
    """Each open pot's normality statistics by test: the split test
    (:func:`~pyro_pots.curriculum.normality.split_normality`) on its latent ``codes``, on
    its ``rows`` themselves and, with ``whitened_codes``, on its
    :func:`~pyro_pots.curriculum.normality.whitened` codes (``whitened``). (On codes
    alone, measured on synthetic K = 8, a pot holding two clusters could score below the
    critical value: the KL term had pulled the two clusters' codes into one blob; on raw
    codes and rows, clusters beside a wider Gaussian nuisance direction scored 0.2-0.3, and
    40 whitened.)"""
    own = scores.resp.argmax(-1)
    statistics = {}
    for j, pot in enumerate(scores.pots.tolist()):
        codes = scores.codes[j][own == j]
        tests = {"codes": codes, "rows": train_x[own == j][:MAX_SPLIT_ROWS]}
        if whitened_codes:
            tests["whitened"] = whitened(codes)
        statistics[pot] = {name: split_normality(data, seed) for name, data in tests.items()}
    return statistics


def pots_of_rows(scores: PotScores) -> torch.Tensor:
    """The pot id each row is in (its largest responsibility), ``(N,)``."""
    return scores.pots.cpu()[scores.resp.argmax(-1).cpu()]


def rows_of_pot(scores: PotScores, pot: int) -> torch.Tensor:
    """The indices of the rows whose largest responsibility is ``pot``."""
    return (pots_of_rows(scores) == pot).nonzero().squeeze(-1)


def paired_gain(
    before: torch.Tensor, after: torch.Tensor, sharded: bool = True
) -> Dict[str, float]:
    """
    The held-out gain of a split, measured against its own noise: the mean of the per-row
    differences ``before - after`` of the held-out losses (nats per row; positive is
    better), its standard error, and ``z = gain / se``. Both losses use the same rows and
    the same noise, so the difference's spread is the rows', not the noise's. Under
    torchrun with ``sharded`` each rank holds its shard and the sums are reduced across
    ranks; without, every rank holds all the rows.
    """
    d = (before - after).double()
    sums = torch.stack([d.sum(), (d * d).sum(), d.new_tensor(float(len(d)))])
    s, s2, n = (distributed.all_reduce_sum(sums) if sharded else sums).tolist()
    gain = s / n
    var = max(s2 / n - gain * gain, 0.0) * n / max(n - 1, 1)
    se = math.sqrt(var / n)
    z = gain / se if se > 0 else (math.inf if gain > 0 else 0.0)
    return {"gain": gain, "se": se, "z": z}
