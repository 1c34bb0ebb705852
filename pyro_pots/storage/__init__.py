"""
Run directories users can trust (issue 16): a fit never removes what it did not write,
never mixes two runs, and never leaves the old run damaged when the new one fails.

- :mod:`~pyro_pots.storage.lock`: the advisory lock a writer holds on a run directory.
- :mod:`~pyro_pots.storage.ownership`: which files are a run's own; removing only those.
- :mod:`~pyro_pots.storage.staging`: where a new fit writes, and the swap that puts it in place.
- :mod:`~pyro_pots.storage.fingerprint`: the data a run was fitted on, checked on every reload.
- :mod:`~pyro_pots.storage.checkpoints`: a checkpoint checked against its run before loading.
- :mod:`~pyro_pots.storage.state_checks`: a trainer state's entries, checked one by one.

The layout of the files themselves is :mod:`pyro_pots.run_dir`'s; the guarantees are
stated in ``docs/reliability.md``.
"""

from pyro_pots.storage.lock import RunLock, holder
from pyro_pots.storage.staging import RunStaging

__all__ = ["RunLock", "RunStaging", "holder"]
