"""
Replay while a fitted run grows on new data (``fit --resume-from``, config section
``grow``): rows of the old data mixed into the new training rows, so that the old pots keep
seeing what they were fitted on.

- ``reservoir``: a fixed random sample of the old run's training rows (a reservoir kept
  beside the model).
- ``generative``: rows drawn from the old model itself, before it grows: a pot ``c`` by the
  old mixture weights, ``z ~ N(0, I)``, and the mean of ``p_c(x | z)`` (the decoder's
  output through the likelihood), so no old row needs to be kept.
"""

from typing import Dict, Sequence

import torch

from pyro_pots.model.pots_vae import PotsVAE

#: How old rows are replayed during growth: ``off``, a ``reservoir`` of the old run's
#: training rows, or ``generative`` draws from the old pots' decoders.
REPLAY_MODES = ("off", "reservoir", "generative")


def reservoir_rows(old_rows: torch.Tensor, count: int, generator: torch.Generator) -> torch.Tensor:
    """``count`` of ``old_rows`` drawn without replacement (all of them, in a random order,
    when there are fewer)."""
    order = torch.randperm(len(old_rows), generator=generator)[:count]
    return old_rows[order]


@torch.no_grad()
def generative_rows(
    vae: PotsVAE, weights: Dict[int, float], count: int, generator: torch.Generator
) -> Dict[str, torch.Tensor]:
    """``count`` rows drawn from the pots of ``weights`` (pot id -> mixture weight, e.g. the
    old run's usage): a pot by its weight, ``z ~ N(0, I)`` and the mean of ``p_c(x | z)``.
    Returns ``{"rows": (count, D), "pots": (count,)}``, the pot each row was drawn from."""
    pots = torch.tensor(sorted(weights), dtype=torch.long)
    probs = torch.tensor([max(weights[int(p)], 0.0) for p in pots], dtype=torch.float64)
    chosen = pots[torch.multinomial(probs / probs.sum(), count, True, generator=generator)]
    param = next(vae.parameters())
    z = torch.randn(count, vae.latent_dim, generator=generator).to(param)
    rows = torch.empty(count, vae.encoder.trunk.in_features, dtype=param.dtype)
    for pot in chosen.unique():
        mine = chosen == pot
        out = vae.decode(z[mine.to(z.device)].unsqueeze(0), [int(pot)])[0]
        rows[mine] = vae.likelihood(out).mean.to(rows)
    return {"rows": rows, "pots": chosen}


def replay_count(new_rows: int, share: float) -> int:
    """Rows to replay beside ``new_rows`` new training rows: ``share`` of them, rounded."""
    return int(round(share * new_rows))


def old_weights(usage: Dict, open_pots: Sequence[int]) -> Dict[int, float]:
    """The old mixture weights of the open pots (a history row's ``usage``, keys possibly
    strings), renormalised; equal weights when none is recorded."""
    weights = {int(p): float(usage.get(p, usage.get(str(p), 0.0))) for p in open_pots}
    total = sum(weights.values())
    if total <= 0:
        return {p: 1.0 / len(open_pots) for p in open_pots}
    return {p: w / total for p, w in weights.items()}
