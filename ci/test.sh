#!/usr/bin/env bash
# The test command (README, .ci/run): install dependencies, build, and run every CTest
# suite, again with the counters compiled out; then the sanitizer and checker matrix
# (ci/sanitizers.sh). Set HAKMEM_TEST_SANITIZERS=0 to skip the sanitizer builds.
set -euo pipefail
cd "$(dirname "$0")/.."
bash ci/deps.sh
jobs=$(nproc)

run_tree() {  # run_tree DIR LABEL-REGEX CMAKE-ARGS...
  local dir=$1 labels=$2; shift 2
  cmake -S . -B "$dir" "$@" >/dev/null
  cmake --build "$dir" -j"$jobs" >/dev/null
  (cd "$dir" && ctest --output-on-failure -j"$jobs" ${labels:+-L "$labels"})
}

echo "== release build: all tests"
run_tree build-ci "" -DCMAKE_BUILD_TYPE=Release  # bench/ too: its smoke tests and runner test
echo "== counters compiled out (-DHAKMEM_STATS=OFF): all tests (those that read counters skip)"
run_tree build-ci-nostats "" -DCMAKE_BUILD_TYPE=Release -DHAKMEM_STATS=OFF -DHAKMEM_BUILD_BENCH=OFF
# AddressSanitizer+UBSan, ThreadSanitizer, Valgrind and a libFuzzer run (skips itself when
# HAKMEM_TEST_SANITIZERS=0)
bash ci/sanitizers.sh build-ci
