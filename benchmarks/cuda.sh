#!/usr/bin/env bash
# The checks that need a CUDA GPU, in one go: the CUDA tests, the speed tables on the GPU
# (benchmarks/speed.py --device cuda) and a digits fit with defaults on the GPU.
#
#     bash benchmarks/cuda.sh              # writes to runs/cuda (or to $OUT where it is set)
#
# Run it with the python that has torch (CUDA build), pyro-ppl and this repo's needs.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${OUT:-runs/cuda}
mkdir -p "$out"
export PYTHONPATH=".${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
python=${PYTHON:-python3}

$python -c "import torch, pyro; print('torch', torch.__version__, '| pyro', pyro.__version__,
      '|', torch.cuda.get_device_name(0))" | tee "$out/versions.txt"
$python -m pytest -q -p no:cacheprovider tests/test_cuda.py 2>&1 | tee "$out/cuda_tests.log"
$python benchmarks/speed.py --device cuda --out "$out" 2>&1 | tee "$out/speed.log"

fit_dir=$(mktemp -d)
TIMEFORMAT="digits fit on cuda, defaults: %R s wall"
{ time $python -m pyro_pots fit --quiet --out "$fit_dir/fit" --set train.device=cuda \
    >"$out/fit.log" 2>&1; } 2>>"$out/fit.log"
tail -n 12 "$out/fit.log"
cp "$fit_dir/fit/summary.json" "$out/fit_summary.json"
