#!/usr/bin/env bash
# The one GPU check: builds bldm_fast in place, runs the test suite's Triton and CUDA cases on
# CUDA tensors, then benchmarks every op and GPU backend (benchmarks/gpu_bench.py).
# Meant to finish in under 6 minutes on an H100. Full logs and tables go to $OUT (default
# benchmarks/results/gpu-latest); the compact table is printed last.
# Usage, from anywhere: bash benchmarks/gpu_check.sh
set -uo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-benchmarks/results/gpu-latest}"
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
start=$(date +%s)

{
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
  python3 -c "import torch, triton; print('torch', torch.__version__, 'CUDA', torch.version.cuda, 'triton', triton.__version__)"
} 2>&1 | tee "$OUT/machine.txt"

echo "== build ($(( $(date +%s) - start )) s)"
if python3 setup.py build_ext --inplace > "$OUT/build.log" 2>&1; then echo "build ok"; else echo "BUILD FAILED"; tail -30 "$OUT/build.log"; fi

echo "== GPU tests ($(( $(date +%s) - start )) s)"
# the Triton and CUDA cases of every test (the CPU backends are CI's); -k matches the backend ids
python3 -m pytest tests -q -p no:cacheprovider -k "triton or cuda" > "$OUT/tests.log" 2>&1
echo "tests exit code $?"
tail -5 "$OUT/tests.log"

echo "== benchmarks ($(( $(date +%s) - start )) s)"
python3 benchmarks/gpu_bench.py --out "$OUT" > "$OUT/bench.log" 2>&1 || { echo "BENCHMARK FAILED"; tail -30 "$OUT/bench.log"; }
echo "== done in $(( $(date +%s) - start )) s"
cat "$OUT/gpu_bench.md" 2>/dev/null
