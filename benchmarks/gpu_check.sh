#!/usr/bin/env bash
# The one GPU check: builds bldm_fast in place, runs the test suite's Triton and CUDA cases on
# CUDA tensors, then benchmarks every op and GPU backend (benchmarks/gpu_bench.py: call time and
# GPU busy time side by side, each kernel's floor, a whole 64-step sampling loop eager vs CUDA
# graph vs the official sampler) and the training throughput (packed vs official online recipe).
# Meant to finish in under 8 minutes (the stage caps add up to 495 s); each stage has a time cap so
# that a hang or a slow stage still leaves the others' results. Writes at most 9 files to $OUT
# (default benchmarks/results/gpu-latest): summary.txt (this output), build.log, tests.log,
# bench.log, gpu_bench.md, gpu_bench.json, training_throughput.txt, the built extension and a
# tarball of Triton's kernel cache (the last two let a rerun on a fresh machine skip the build and
# the JIT: pass them back through GPU_CHECK_PREBUILT and GPU_CHECK_TRITON_CACHE). The compact
# table is printed last.
# Usage, from anywhere: bash benchmarks/gpu_check.sh
# Environment: GPU_CHECK_JOBS (parallel build jobs and test workers, default: the core count, at
# most 16), GPU_CHECK_BUILD_S / GPU_CHECK_TESTS_S / GPU_CHECK_BENCH_S / GPU_CHECK_TRAIN_S (stage
# caps in seconds, default 180 / 120 / 150 / 45).
set -uo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-benchmarks/results/gpu-latest}"
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
JOBS="${GPU_CHECK_JOBS:-$(( $(nproc) < 16 ? $(nproc) : 16 ))}"
export MAX_JOBS="$JOBS" TORCH_CUDA_ARCH_LIST="${TORCH_CUDA_ARCH_LIST:-9.0}"
start=$(date +%s)
stage() { echo "== $1 ($(( $(date +%s) - start )) s)"; }

check() {
  nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm,clocks.max.sm --format=csv,noheader
  python3 -c "import torch, triton; print('torch', torch.__version__, 'CUDA', torch.version.cuda, 'triton', triton.__version__)"

  stage build
  if [ -n "${GPU_CHECK_TRITON_CACHE:-}" ] && [ -f "$GPU_CHECK_TRITON_CACHE" ]; then
    mkdir -p ~/.triton && tar xzf "$GPU_CHECK_TRITON_CACHE" -C ~/.triton && echo "Triton cache restored"
  fi
  if [ -n "${GPU_CHECK_PREBUILT:-}" ] && [ -f "$GPU_CHECK_PREBUILT" ]; then
    cp "$GPU_CHECK_PREBUILT" bldm_fast/ && echo "prebuilt extension $(basename "$GPU_CHECK_PREBUILT") used"
  elif timeout "${GPU_CHECK_BUILD_S:-180}" python3 setup.py build_ext --inplace > "$OUT/build.log" 2>&1; then
    echo "build ok"
  else
    echo "BUILD FAILED"; tail -30 "$OUT/build.log"
  fi
  python3 -c "import bldm_fast as bf; print('backends:', bf.available_backends())"

  stage "GPU tests"
  # The Triton and CUDA cases of every test (the CPU backends are CI's); -k matches the backend ids.
  # The .cu compile check is CI's too. pytest-xdist and pytest-timeout are used where installed.
  xdist=(); python3 -c "import xdist" 2>/dev/null && xdist=(-n "$(( JOBS < 8 ? JOBS : 8 ))")
  ptimeout=(); python3 -c "import pytest_timeout" 2>/dev/null && ptimeout=(--timeout 90)
  # -v logs each result as it comes, so a run stopped at the cap still shows what failed.
  timeout "${GPU_CHECK_TESTS_S:-120}" python3 -m pytest tests -v --tb=short -p no:cacheprovider "${xdist[@]}" \
    "${ptimeout[@]}" -k "(triton or cuda) and not sources_compile" > "$OUT/tests.log" 2>&1
  echo "tests exit code $? (124: stopped at the stage cap)"
  grep -E "(^|\] )(FAILED|ERROR) " "$OUT/tests.log" | sort -u | head -30
  tail -1 "$OUT/tests.log"

  stage benchmarks
  bench_s="${GPU_CHECK_BENCH_S:-150}"
  timeout "$bench_s" python3 benchmarks/gpu_bench.py --out "$OUT" --deadline "$(( bench_s * 3 / 4 ))" > "$OUT/bench.log" 2>&1
  echo "benchmark exit code $? (1: a row failed; 124: stopped at the stage cap)"
  grep -E "FAILED|Error" "$OUT/bench.log" | head -10

  stage "training throughput"
  timeout "${GPU_CHECK_TRAIN_S:-45}" python3 -c "from bldm_fast.bench.training import training_throughput as f; print(f(batch=64, steps=5, warmup=2, device='cuda')['table'])" | tee "$OUT/training_throughput.txt"
  echo "training throughput exit code ${PIPESTATUS[0]} (124: stopped at the stage cap)"

  for so in bldm_fast/_C*.so; do [ -f "$so" ] && strip --strip-debug -o "$OUT/$(basename "$so")" "$so"; done
  [ -d ~/.triton/cache ] && tar czf "$OUT/triton-cache.tgz" -C ~/.triton cache
  stage done
  cat "$OUT/gpu_bench.md" 2>/dev/null
}

check 2>&1 | tee "$OUT/summary.txt"
