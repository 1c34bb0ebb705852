"""The classic mixture-VAE penalty on the responsibilities, as a potential over logits."""

import torch
from pyro.distributions import TorchDistribution, constraints

from pyro_pots.distributions.util import masked_log_softmax, masked_softmax


class CategoricalKLPotential(TorchDistribution):
    r"""
    Unnormalised potential :math:`\log\phi(y) = -\mathrm{KL}(r(y)\,\|\,\mathrm{U}(A))`
    with :math:`r(y) = \mathrm{softmax}_A(y)`, i.e. :math:`H(r) - \log|A|`.

    With a Delta logits guide the ``logits`` site then contributes exactly the categorical
    KL term of the textbook mixture-VAE ELBO. It pulls every datapoint toward *uniform*
    responsibilities: the ablation against :class:`LogitMixture`. It has no sampler; prior
    predictive draws need the ``logit_mog`` prior.

    :param torch.Tensor active: boolean mask of shape ``(..., K)``.
    """

    arg_constraints = {}
    support = constraints.real_vector

    def __init__(self, active: torch.Tensor, validate_args=None) -> None:
        self.active = active
        super().__init__(active.shape[:-1], active.shape[-1:], validate_args=validate_args)

    def mask_pots(self, active: torch.Tensor) -> "CategoricalKLPotential":
        """The same potential over the pots open in both masks."""
        return CategoricalKLPotential(self.active & active, self._validate_args)

    def expand(self, batch_shape, _instance=None) -> "CategoricalKLPotential":
        batch_shape = torch.Size(batch_shape)
        return CategoricalKLPotential(
            self.active.expand(batch_shape + self.event_shape), self._validate_args
        )

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        r = masked_softmax(value, self.active)
        entropy = -(r * masked_log_softmax(value, self.active)).sum(-1)
        n_open = self.active.sum(-1).to(value.dtype)
        return entropy - n_open.log()

    def sample(self, sample_shape=torch.Size()):
        raise NotImplementedError(
            "CategoricalKLPotential is an unnormalised penalty and cannot be sampled; "
            "use the logit_mog prior for prior predictive draws"
        )
