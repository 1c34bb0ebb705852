import sys

from pyro_pots.cli import main

sys.exit(main())
