"""``python -m pyro_pots.cli``: the ``pyro-pots`` command."""

import sys

from pyro_pots.cli import main

sys.exit(main())
