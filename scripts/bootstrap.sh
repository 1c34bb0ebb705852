#!/usr/bin/env bash
# Set up .venv for pyro-pots: torch first, then the package (with extras given as $1).
#
# torch is pinned and installed on its own first: on this project's CPU machines
# `pip install torch==2.13.0` resolves to a local CPU wheel, and installing it before the
# package means pip never resolves a bare `torch` to a multi-GB CUDA build.
set -euo pipefail
cd "$(dirname "$0")/.."
extras=${1:-}
python3 -m venv .venv
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet "torch==2.13.0"
if [ -n "$extras" ]; then
  .venv/bin/python -m pip install --quiet -e ".[$extras]"
else
  .venv/bin/python -m pip install --quiet -e .
fi
.venv/bin/python -c "import torch, pyro, pyro_pots; print('pyro-pots', pyro_pots.__version__, '| torch', torch.__version__, '| pyro', pyro.__version__)"
