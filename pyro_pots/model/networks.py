"""Encoder and per-pot decoders. Pots are evaluated in batched tensor ops (grouped weights
and ``einsum``), and only for the pots listed in ``idx``: closed pots cost nothing."""

import math

import torch
from pyro.nn import PyroModule
from torch import nn
from torch.nn.functional import softplus

#: floor on the guide's latent scale, so log q(z) stays finite.
MIN_SCALE = 1e-4


class GroupedLinear(PyroModule):
    """
    One affine map per pot, stored as a ``(K, in, out)`` weight.

    :param int num_pots: K, the number of groups.
    :param int in_features: input size of each map.
    :param int out_features: output size of each map.
    """

    def __init__(self, num_pots: int, in_features: int, out_features: int) -> None:
        super().__init__()
        bound = 1.0 / math.sqrt(in_features)  # nn.Linear's default init, per group
        self.weight = nn.Parameter(
            torch.empty(num_pots, in_features, out_features).uniform_(-bound, bound)
        )
        self.bias = nn.Parameter(torch.empty(num_pots, out_features).uniform_(-bound, bound))

    def forward(self, x: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        """
        :param torch.Tensor x: ``(N, in)`` (the same input for every pot) or
            ``(..., len(idx), N, in)`` (one input per selected pot).
        :param torch.Tensor idx: long tensor of the pot ids to evaluate.
        :returns: ``(..., len(idx), N, out)``, one batched matmul for all pots.
        """
        weight = self.weight.index_select(0, idx)
        bias = self.bias.index_select(0, idx)
        return torch.matmul(x, weight) + bias.unsqueeze(-2)


class Encoder(PyroModule):
    """
    Shared MLP trunk, a logits head over all K pots, and per-pot (loc, scale) heads.

    :param int data_dim: D.
    :param int num_pots: K_max.
    :param int latent_dim: d, the size of each pot's latent.
    :param int hidden_dim: width of the trunk.
    :param int logits_params: numbers the logits guide needs per pot (1 for Delta, 2 for
        Normal).
    """

    def __init__(
        self, data_dim: int, num_pots: int, latent_dim: int, hidden_dim: int, logits_params: int = 1
    ) -> None:
        super().__init__()
        self.num_pots = num_pots
        self.latent_dim = latent_dim
        self.trunk = PyroModule[nn.Linear](data_dim, hidden_dim)
        self.logits_head = PyroModule[nn.Linear](hidden_dim, num_pots * logits_params)
        self.latent_heads = GroupedLinear(num_pots, hidden_dim, 2 * latent_dim)
        # the trunk reads (x - input_loc) / input_scale; the identity by default
        self.register_buffer("input_loc", torch.zeros(data_dim))
        self.register_buffer("input_scale", torch.ones(data_dim))

    def standardize(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` in the units the trunk reads: ``(x - input_loc) / input_scale``."""
        return (x - self.input_loc) / self.input_scale

    def hidden(self, x: torch.Tensor) -> torch.Tensor:
        """The shared trunk's features of ``x`` (in the data's own units), read by every
        head."""
        return softplus(self.trunk(self.standardize(x)))

    def logits_params(self, h: torch.Tensor) -> torch.Tensor:
        """Raw output of the logits head, shape ``(N, K * logits_params)``."""
        return self.logits_head(h)

    def latent_params(self, h: torch.Tensor, idx: torch.Tensor):
        """
        Loc and scale of q(z | x), shape ``(K, N, d)`` each. Only pots in ``idx`` are
        computed; the others get (0, 1), i.e. the prior, and are masked out anyway.
        """
        loc_open, scale_open = self.latent_loc_scale(h, idx)
        shape = (self.num_pots, h.shape[0], self.latent_dim)
        loc = h.new_zeros(shape).index_copy(0, idx, loc_open)
        scale = h.new_ones(shape).index_copy(0, idx, scale_open)
        return loc, scale

    def latent_loc_scale(self, h: torch.Tensor, idx: torch.Tensor):
        """Loc and scale of q(z | x) for the pots in ``idx`` only, ``(len(idx), N, d)``
        each; the one place where the head's raw scale becomes a scale."""
        loc, raw_scale = self.latent_heads(h, idx).split(self.latent_dim, dim=-1)
        return loc, softplus(raw_scale) + MIN_SCALE


class PotDecoders(PyroModule):
    """
    One MLP decoder per pot, ``d -> hidden -> D``, mixed by the routing weights in the
    space of the likelihood's natural parameter (logits for Bernoulli, mean for Normal);
    with one-hot routing this is exactly the chosen pot's output.

    :param int num_pots: K_max.
    :param int latent_dim: d.
    :param int hidden_dim: width of each decoder.
    :param int data_dim: D.
    """

    def __init__(self, num_pots: int, latent_dim: int, hidden_dim: int, data_dim: int) -> None:
        super().__init__()
        self.hidden_layer = GroupedLinear(num_pots, latent_dim, hidden_dim)
        self.output_layer = GroupedLinear(num_pots, hidden_dim, data_dim)

    def per_pot(self, z: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        """Outputs of the pots in ``idx``: ``(..., len(idx), N, D)`` from ``z`` of
        ``(..., K, N, d)`` (leading dims appear under vectorized Predictive)."""
        return self.decode(z.index_select(-3, idx), idx)

    def decode(self, z_open: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        """Outputs ``(..., len(idx), N, D)`` from codes of the pots in ``idx`` only,
        ``z_open`` of shape ``(..., len(idx), N, d)``."""
        h = softplus(self.hidden_layer(z_open, idx))
        return self.output_layer(h, idx)

    def forward(self, z: torch.Tensor, route: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        """
        Mixed output ``sum_k route_k * g_k(z_k)`` over the pots in ``idx``, with the batch
        layout of ``route``: ``(N, D)`` from ``route`` ``(N, K)`` and ``z`` ``(K, N, d)``.

        Under outer batch dims (a vectorized :class:`~pyro.infer.Predictive`, vectorized
        ELBO particles) ``route`` is ``(..., 1, N, K)``, its size-1 dim in the slot of the
        ``channels`` plate where ``z`` ``(..., K, N, d)`` has its pots; the output is then
        ``(..., 1, N, D)``, so that ``obs`` keeps the plates' dims.
        """
        weights = route.index_select(-1, idx)
        outputs = self.per_pot(z, idx)
        if weights.dim() == 2:
            return torch.einsum("nk,knd->nd", weights, outputs)
        mixed = torch.einsum("...nk,...knd->...nd", weights.squeeze(-3), outputs)
        return mixed.unsqueeze(-3)
