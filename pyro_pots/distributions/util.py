"""Small tensor helpers shared by the distributions, handlers and model."""

import torch


def masked_softmax(logits: torch.Tensor, active: torch.Tensor) -> torch.Tensor:
    """Softmax over the last dim restricted to ``active`` entries.

    Closed entries get exactly 0; the logits themselves stay finite (a ``-inf`` logit would
    make log-densities NaN), only the scores fed to the softmax are filled with ``-inf``.

    :param torch.Tensor logits: tensor of shape ``(..., K)``.
    :param torch.Tensor active: boolean tensor broadcastable to ``logits`` with at least one
        ``True`` per row.
    :returns: tensor of the broadcast shape whose rows sum to 1 over ``active``.
    """
    return torch.softmax(logits.masked_fill(~active, -float("inf")), dim=-1)


def masked_log_softmax(logits: torch.Tensor, active: torch.Tensor) -> torch.Tensor:
    """Log-softmax over ``active`` entries; closed entries are 0 (not ``-inf``).

    Returning 0 where closed keeps ``r * log r`` style expressions NaN-free; callers weight
    by the (exactly zero) probabilities anyway.
    """
    log_p = torch.log_softmax(logits.masked_fill(~active, -float("inf")), dim=-1)
    return log_p.masked_fill(~active, 0.0)


def pots_mask(num_pots: int, open_pots, device=None) -> torch.Tensor:
    """Boolean mask of shape ``(num_pots,)`` that is True at the pot ids in ``open_pots``.

    :param int num_pots: K_max, the number of pots the model was built with.
    :param open_pots: an int or an iterable of ints in ``[0, num_pots)``.
    """
    ids = [open_pots] if isinstance(open_pots, int) else list(open_pots)
    bad = [k for k in ids if not 0 <= int(k) < num_pots]
    if bad or not ids:
        raise ValueError(f"pot ids must be a non-empty subset of 0..{num_pots - 1}, got {ids}")
    mask = torch.zeros(num_pots, dtype=torch.bool, device=device)
    mask[torch.as_tensor(ids, dtype=torch.long, device=device)] = True
    return mask
