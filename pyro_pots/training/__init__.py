"""Training loops. :func:`fit_svi` runs plain :class:`pyro.infer.SVI` on a fixed open set;
the curriculum (stage manager) builds on it."""

from pyro_pots.training.svi_fit import EpochRecord, fit_svi, lambda_schedule

__all__ = ["EpochRecord", "fit_svi", "lambda_schedule"]
