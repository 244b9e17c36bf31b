#!/usr/bin/env bash
# Line coverage of the SIMT kernel sources (kernels/simt.h, kernels/flash_attention_{fwd,bwd}.cuh,
# kernels/rope_swiglu.cuh, kernels/cross_entropy_kernel.cuh and its row math
# kernels/cross_entropy_row.h, kernels/rmsnorm_kernel.cuh and its row math kernels/rmsnorm_row.h)
# by the emulation tests (tests/unit/test_simt.cpp, test_rope_swiglu_simt.cpp,
# test_rmsnorm_simt.cpp), with gcov: builds those tests alone with --coverage in a temporary
# directory, runs them, and prints gcov's per-file summary.
#   tests/bench/kernel_coverage.sh
set -euo pipefail
SRC=$(cd "$(dirname "$0")/../.." && pwd)
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
cd "$T"
for f in tests/unit/test_simt.cpp tests/unit/test_rope_swiglu_simt.cpp tests/unit/test_rmsnorm_simt.cpp \
    kernels/simt_emulation.cpp kernels/flash_attention_emulated.cpp kernels/rope_swiglu_emulated.cpp \
    kernels/cross_entropy_emulated.cpp kernels/rmsnorm_emulated.cpp kernels/rmsnorm_cpu.cpp; do
  g++ -std=c++20 -O0 --coverage -I"$SRC" -c "$SRC/$f" -o "$(basename "$f" .cpp).o"
done
g++ --coverage ./*.o -o test_simt -lgtest -lgtest_main -pthread
./test_simt --gtest_brief=1 >/dev/null
gcov -r -s "$SRC" ./*.o 2>/dev/null | awk -v src="$SRC" '
  /^File/ { file = $2; gsub(/\x27/, "", file) }
  /^Lines executed/ && (file ~ /simt\.h$/ || file ~ /flash_attention_(fwd|bwd)\.cuh$/ || file ~ /rope_swiglu\.cuh$/ ||
                        file ~ /simt_emulation\.cpp$/ || file ~ /cross_entropy_(kernel\.cuh|row\.h)$/ ||
                        file ~ /rmsnorm_(kernel\.cuh|row\.h)$/) {
    print file ": " $0 }'
