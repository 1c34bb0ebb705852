"""Data loading for pyro-pots.

Everything yields a :class:`Dataset`: a float32 (N, D) matrix ``X`` with optional integer
``labels`` (used only for scoring clusterings) and an optional ``image_shape``.

- :func:`load_data` parses a SPEC string: ``digits``, ``synthetic[:k=5,d=20,...]`` or a path.
- :func:`read_file` reads ``.npz``, ``.npy``, ``.csv`` and MNIST IDX (optionally gzipped).
- :func:`load_digits` and :func:`make_synthetic` build the built-in datasets.

Bad input of any kind raises :class:`pyro_pots.errors.PotsInputError` with a one-line message.

Declared sizes are checked before anything of that size is allocated (see
:mod:`pyro_pots.data.limits`): a file's ``X`` may hold at most :data:`MAX_VALUES` numbers
(2**27, about 134 million), labels must be integers within 2**53 of 0, and a raw file
(``.npy``, IDX) must hold the bytes its header declares.
"""

from pyro_pots.data.builtin import load_digits, make_synthetic
from pyro_pots.data.dataset import AUTO_LIKELIHOOD, LIKELIHOODS, Dataset
from pyro_pots.data.files import SUPPORTED_FORMATS, read_file
from pyro_pots.data.limits import MAX_ABS_LABEL, MAX_VALUES
from pyro_pots.data.spec import SYNTHETIC_SPEC_KEYS, load_data

__all__ = [
    "AUTO_LIKELIHOOD",
    "LIKELIHOODS",
    "MAX_ABS_LABEL",
    "MAX_VALUES",
    "SUPPORTED_FORMATS",
    "SYNTHETIC_SPEC_KEYS",
    "Dataset",
    "load_data",
    "load_digits",
    "make_synthetic",
    "read_file",
]
