"""
A Potts prior on the pots over the rows' nearest-neighbour graph.

Each training row and its ``k`` nearest neighbours (in the data's own space) form the edges
of a graph; the prior ``p(c) ∝ exp(-beta * #{edges (i, j): c_i != c_j})`` prefers labelings
that cut few edges. Under a mean-field ``q(c_i) = r(x_i)`` (the encoder's responsibilities)
its expected log is, up to a constant that no parameter changes,

    E_q[log p(c)] = -beta * sum_(i, j) (1 - <r(x_i), r(x_j)>),

the expected number of cut edges, in nats at ``beta`` nats each. Added to the ELBO it ties
each row's routing to its neighbours': a boundary across a gap between two modes cuts no
edge and costs nothing, a boundary through one connected mode cuts many, so the model
moves it to where the graph is thin or lets the split fade. The likelihood alone cannot
tell these apart when one pot's decoder models two modes about as well as two pots do
(``docs/curriculum.md``); the graph is the signal UMAP and HDBSCAN cluster by.

The term is one more addition to the SVI loss, as the kick's is; the model and guide stay
as they are. The same prior gives a held-out row's pot its prior probability
(:func:`conditional_log_prior`): the Potts conditional given the pots of its nearest
training rows, which is what a split's evidence is measured under (``min_evidence_z``).
"""

from typing import Optional

import sklearn
import torch
from sklearn.neighbors import NearestNeighbors

from pyro_pots.distributions import masked_softmax
from pyro_pots.model.pots_vae import PotsVAE

#: scikit-learn's working memory for the distance blocks, MB
WORKING_MEMORY_MB = 256


def nearest_neighbours(x: torch.Tensor, k: int) -> torch.Tensor:
    """
    Each row's ``k`` nearest other rows by Euclidean distance, ``(N, k)`` row ids (exact,
    in float64, and deterministic).

    :param torch.Tensor x: rows ``(N, D)``, ``N > k``.
    """
    if not 0 < k < len(x):
        raise ValueError(f"k must be in [1, {len(x) - 1}] for {len(x)} rows, got {k}")
    # k + 1: each row is its own nearest neighbour (duplicates aside: dropped below)
    ids = nearest_among(x, x, k + 1)
    own = torch.arange(len(x)).unsqueeze(-1)
    # drop the row itself; when duplicates put it later than first, drop the first other
    not_self = ids != own
    keep = torch.where(not_self.all(-1, keepdim=True), torch.arange(k + 1) < k, not_self)
    return ids[keep].view(len(x), k)


def nearest_among(x: torch.Tensor, rows: torch.Tensor, k: int) -> torch.Tensor:
    """
    Each row of ``x``'s ``k`` nearest rows of ``rows`` by Euclidean distance, ``(M, k)``
    ids into ``rows`` (exact, float64). For rows that are not among ``rows``, such as
    held-out rows against the training rows: nothing is excluded. The distances go in
    blocks of at most :data:`WORKING_MEMORY_MB`, so memory stays bounded at scale.
    """
    if not 0 < k <= len(rows):
        raise ValueError(f"k must be in [1, {len(rows)}] for {len(rows)} rows, got {k}")
    with sklearn.config_context(working_memory=WORKING_MEMORY_MB):
        search = NearestNeighbors(n_neighbors=k).fit(rows.detach().cpu().double().numpy())
        _, ids = search.kneighbors(x.detach().cpu().double().numpy())
    return torch.from_numpy(ids)


def conditional_log_prior(
    resp: torch.Tensor, neighbours: torch.Tensor, beta: float
) -> torch.Tensor:
    """
    Each row's log prior over the open pots under the Potts prior, given the pots of its
    graph neighbours: ``log p(c | neighbours) = log softmax_c(beta * m_c)``, with ``m_c``
    the expected number of its neighbours in pot ``c`` (the mean-field field,
    ``m_c = sum_j r_jc``). A row deep inside one pot pays about nothing for its label
    however many pots are open; a row whose neighbours are split between two pots pays
    for the boundary. ``(M, A)``.

    :param torch.Tensor resp: the neighbours' responsibilities over the open pots ``(N, A)``.
    :param torch.Tensor neighbours: each row's neighbours, ``(M, k)`` ids into ``resp``.
    :param float beta: nats per cut edge, as in the prior the model was trained under.
    """
    field = resp[neighbours.to(resp.device)].sum(1)
    return torch.log_softmax(beta * field, dim=-1)


class NeighbourPrior:
    """
    The mean-field Potts prior over the training rows' ``k``-nearest-neighbour graph, as an
    SVI loss term (:meth:`loss`): ``beta`` nats per expected cut edge.

    :param torch.Tensor train_x: the training rows ``(N, D)`` the graph is built on.
    :param int k: neighbours per row.
    :param float beta: nats per cut edge, > 0 (a trainer without the prior holds None).
    :param int seed: seeds which neighbour each step's rows are paired with.
    """

    def __init__(self, train_x: torch.Tensor, k: int, beta: float, seed: int) -> None:
        if not beta > 0:
            raise ValueError(f"beta must be > 0, got {beta}")
        self.k = k
        self.beta = beta
        self.seed = seed
        self.neighbours = nearest_neighbours(train_x, k)
        self._generator = torch.Generator()

    def start_epoch(self, epoch: int) -> None:
        """Reseed the neighbour draws from the epoch number, so that a resumed run draws
        the same neighbours as one that never stopped (no state to checkpoint)."""
        self._generator.manual_seed(self.seed * 100_003 + epoch)

    def loss(
        self,
        vae: PotsVAE,
        train_x: torch.Tensor,
        rows: torch.Tensor,
        active: torch.Tensor,
        logits: Optional[torch.Tensor] = None,
    ) -> torch.Tensor:
        """
        ``beta * k * sum_i (1 - <r(x_i), r(x_j)>)`` over the batch's training rows ``rows``,
        each paired with one of its neighbours ``j`` drawn uniformly: an unbiased estimate
        of the batch rows' expected cut edges times ``beta``, differentiable through both
        ends of every edge.

        :param torch.Tensor logits: the batch rows' :meth:`PotsVAE.mean_logits`, when the
            caller has them (one encoder pass shared by the loss terms); None: computed here.
        """
        pick = torch.randint(self.k, (len(rows),), generator=self._generator)
        partners = self.neighbours[rows.cpu(), pick].to(rows.device)
        if logits is None:  # one encoder pass over both ends of the edges
            both = vae.mean_logits(train_x[torch.cat([rows, partners])])
            logits, theirs = both[: len(rows)], both[len(rows) :]
        else:
            theirs = vae.mean_logits(train_x[partners])
        r_i, r_j = masked_softmax(logits, active), masked_softmax(theirs, active)
        same = (r_i * r_j).sum(-1)
        return self.beta * self.k * (1.0 - same).sum()


def cut_ratio(pots: torch.Tensor, neighbours: torch.Tensor, a: int, b: int) -> Optional[float]:
    """
    How far the split of pots ``a`` and ``b`` follows the neighbour graph: among the edges
    between rows of either pot, the fraction that join a row of ``a`` to a row of ``b``,
    over the fraction expected if the same rows were split at random in the same sizes,
    ``2 n_a n_b / (n (n - 1))``. 0: no edge crosses (the pots are apart in the graph); about
    1: the boundary ignores the graph. None when a pot is empty or no edge joins their rows.

    :param torch.Tensor pots: one pot id per row, ``(N,)``.
    :param torch.Tensor neighbours: :func:`nearest_neighbours`' ``(N, k)`` row ids.
    """
    pots = pots.cpu()
    inside = (pots == a) | (pots == b)
    n_a, n_b = int((pots == a).sum()), int((pots == b).sum())
    n = n_a + n_b
    if n_a == 0 or n_b == 0:
        return None
    rows = inside.nonzero().squeeze(-1)
    ends = neighbours.cpu()[rows]
    edge = inside[ends]  # edges that stay among the two pots' rows
    if not edge.any():
        return None
    crosses = pots[ends] != pots[rows].unsqueeze(-1)
    observed = float((crosses & edge).sum()) / float(edge.sum())
    return observed / (2.0 * n_a * n_b / (n * (n - 1)))
