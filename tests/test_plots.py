"""The figures are drawn without pyplot: importing pyro-pots and writing a run's plots leave
the user's matplotlib backend (a notebook's inline figures) as it was."""

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

SCRIPT = """
import matplotlib, numpy as np, sys
import pyro_pots
from pyro_pots.plots import plot_responsibilities
plot_responsibilities(np.full((4, 2), 0.5), sys.argv[1])
print(matplotlib.get_backend())
"""


def test_plots_leave_the_users_backend_alone(tmp_path):
    env = dict(os.environ, PYTHONPATH=str(ROOT), MPLBACKEND="svg")
    png = tmp_path / "resp.png"
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(png)], env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "svg"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
